//! Opening a file beneath the origin directory, and everything else a file
//! request asks of the file system, in one blocking call (`locate`), so a
//! request costs a single hop to the blocking pool.
//!
//! Symlinks are followed only while they stay under the origin directory:
//! `openat2(2)` with `RESOLVE_BENEATH` on a descriptor of the directory
//! (the kernel refuses an escape with `EXDEV`); where the kernel lacks
//! `openat2` (before Linux 5.6, or behind a seccomp filter), the path is
//! canonicalized and checked to start with the canonical origin instead.
//! The lexical checks happened before, in `path.rs`.

use super::cache::Stamp;
use super::encoding::Coding;
use crate::HttpError;
use bytes::Bytes;
use http::StatusCode;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sys::stat::Mode;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Whether this kernel lets us use `openat2` (probed once: the kernel is
/// the same for the whole process).
static OPENAT2: OnceLock<bool> = OnceLock::new();

fn have_openat2() -> bool {
    *OPENAT2.get_or_init(|| {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH);
        // ENOSYS: before Linux 5.6; EPERM: some seccomp filters.
        match openat2(AT_FDCWD, ".", how) {
            Err(e @ (Errno::ENOSYS | Errno::EPERM)) => {
                tracing::info!(errno = %e, "openat2 unavailable; checking paths with canonicalize");
                false
            }
            _ => true,
        }
    })
}

/// What `locate` needs to know, owned so it can move to the blocking pool.
/// Everything that decides the outcome is here, so it is also the key of
/// the file cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Lookup {
    /// The origin directory.
    pub root: PathBuf,
    /// The file, relative to `root` (empty: `root` itself).
    pub rel: PathBuf,
    /// The request path ends with `/`.
    pub names_directory: bool,
    /// The MIME rule allows `rel`'s file name.
    pub servable: bool,
    /// `rel` joined with the mount's `default`, and whether the MIME rule
    /// allows it; `None` when the mount has no `default`.
    pub default: Option<(PathBuf, bool)>,
    /// Precompressed variants the client accepts, best first.
    pub codings: Vec<Coding>,
}

/// The outcome of a lookup that did not fail.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per request and moved once"
)]
pub(crate) enum Located {
    /// A directory named without a trailing slash: 301 to the slash form.
    Directory,
    /// A regular file to answer with.
    File(Found),
}

#[derive(Debug)]
pub(crate) struct Found {
    /// The representation to send: the file itself or a precompressed sibling.
    pub file: File,
    pub meta: Metadata,
    /// `file` relative to the root (`rel`, or `rel` plus `.br` / `.gz`).
    pub file_rel: PathBuf,
    /// The whole of `file`, when it is no longer than the read limit and
    /// did not change while being read.
    pub content: Option<Bytes>,
    /// The file that was asked for (after `default`), relative to the root:
    /// its name decides the Content-Type, also of a compressed sibling.
    pub rel: PathBuf,
    /// `Some` when `file` is the `X.br` / `X.gz` sibling.
    pub coding: Option<Coding>,
    /// A precompressed sibling exists, so the answer varies with
    /// Accept-Encoding.
    pub vary: bool,
}

/// Finds and opens the file for a request (blocking: run it on the
/// blocking pool), and reads it whole if it has at most `read_limit` bytes.
/// Errors are the statuses to answer with.
pub(crate) fn locate(l: &Lookup, read_limit: u64) -> Result<Located, HttpError> {
    let mut located = find(l)?;
    if let Located::File(found) = &mut located
        && found.meta.len() <= read_limit
    {
        found.content = read_whole(&found.file, &found.meta);
    }
    Ok(located)
}

/// The contents of `file`, if reading them gives `meta.len()` bytes and
/// the file did not change meanwhile (else it is streamed instead).
fn read_whole(file: &File, meta: &Metadata) -> Option<Bytes> {
    let len = usize::try_from(meta.len()).ok()?;
    let mut buf = vec![0; len];
    // pread: the descriptor's offset stays at 0 for streaming.
    file.read_exact_at(&mut buf, 0).ok()?;
    let after = file.metadata().ok()?;
    (Stamp::of(&after) == Stamp::of(meta)).then(|| Bytes::from(buf))
}

/// Finds and opens the file for a request.
fn find(l: &Lookup) -> Result<Located, HttpError> {
    let root = Root::new(&l.root)?;
    let (mut file, mut meta) = root.open(&l.rel, Access::Read)?;
    let mut rel = l.rel.clone();
    if meta.is_dir() {
        if !l.names_directory {
            return Ok(Located::Directory);
        }
        let Some((default, servable)) = &l.default else {
            return Err(StatusCode::FORBIDDEN.into());
        };
        (file, meta) = root.open(default, Access::Read)?;
        if !meta.is_file() || !servable {
            return Err(StatusCode::FORBIDDEN.into());
        }
        rel.clone_from(default);
    } else if !meta.is_file() {
        // FIFOs, sockets, devices.
        return Err(StatusCode::FORBIDDEN.into());
    } else if l.names_directory {
        // `/file.html/`: not a directory.
        return Err(StatusCode::NOT_FOUND.into());
    } else if !l.servable {
        return Err(StatusCode::FORBIDDEN.into());
    }

    let mut found = Found {
        file,
        meta,
        file_rel: rel.clone(),
        content: None,
        rel,
        coding: None,
        vary: false,
    };
    // The best accepted sibling that exists replaces the file.
    for &coding in &l.codings {
        let name = sibling_name(&found.rel, coding);
        if let Some((f, m)) = root.sibling(&name, Access::Read) {
            (found.file, found.meta, found.coding, found.vary) = (f, m, Some(coding), true);
            found.file_rel = name;
            return Ok(Located::File(found));
        }
    }
    // None accepted: does any exist at all (for `Vary`)?
    found.vary = Coding::ALL
        .iter()
        .filter(|c| !l.codings.contains(c))
        .any(|&c| {
            root.sibling(&sibling_name(&found.rel, c), Access::Probe)
                .is_some()
        });
    Ok(Located::File(found))
}

/// `X.br` / `X.gz` for `X`.
fn sibling_name(rel: &Path, coding: Coding) -> PathBuf {
    let mut name = OsString::from(rel.as_os_str());
    name.push(coding.suffix());
    PathBuf::from(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Open for reading.
    Read,
    /// Only learn whether it exists (`O_PATH`).
    Probe,
}

/// The origin directory, as a descriptor for `openat2`, or as its canonical
/// path for the fallback.
enum Root {
    Fd(OwnedFd),
    Canonical(PathBuf),
}

impl Root {
    fn new(root: &Path) -> Result<Root, HttpError> {
        if have_openat2() {
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            return match open(root, flags, Mode::empty()) {
                Ok(fd) => Ok(Root::Fd(fd)),
                Err(e) => {
                    tracing::warn!(root = ?root, errno = %e, "cannot open the origin directory");
                    Err(StatusCode::INTERNAL_SERVER_ERROR.into())
                }
            };
        }
        match std::fs::canonicalize(root) {
            Ok(p) => Ok(Root::Canonical(p)),
            Err(e) => {
                tracing::warn!(root = ?root, error = %e, "cannot open the origin directory");
                Err(StatusCode::INTERNAL_SERVER_ERROR.into())
            }
        }
    }

    /// Opens `rel` beneath the root; the descriptor and what `fstat` says.
    fn open(&self, rel: &Path, access: Access) -> Result<(File, Metadata), HttpError> {
        let file = match self {
            Root::Fd(dir) => {
                File::from(open_beneath(dir, rel, access).map_err(|e| errno_status(e, rel))?)
            }
            Root::Canonical(root) => open_canonical(root, rel, access)?,
        };
        let meta = file.metadata()?;
        Ok((file, meta))
    }

    /// A precompressed sibling, when it is a regular file beneath the root.
    fn sibling(&self, name: &Path, access: Access) -> Option<(File, Metadata)> {
        match self.open(name, access) {
            Ok((f, m)) if m.is_file() => Some((f, m)),
            _ => None,
        }
    }
}

/// `openat2(dir, rel, RESOLVE_BENEATH)`. `O_NONBLOCK` keeps a FIFO from
/// blocking the open; it changes nothing for regular files.
fn open_beneath(dir: &OwnedFd, rel: &Path, access: Access) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let flags = match access {
        Access::Read => OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
        Access::Probe => OFlag::O_PATH,
    } | OFlag::O_CLOEXEC;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a concurrent rename made the kernel unsure about `..`; retry.
    let mut tries = 0;
    loop {
        match openat2(dir, rel, how) {
            Err(Errno::EAGAIN) if tries < 3 => tries += 1,
            r => return r,
        }
    }
}

/// The fallback: canonicalize, then check the result is under `root`
/// (itself canonical). Racy against a concurrent rename, which `openat2`
/// is not; only used where the kernel has no `openat2`.
fn open_canonical(root: &Path, rel: &Path, access: Access) -> Result<File, HttpError> {
    let full = std::fs::canonicalize(root.join(rel))?;
    if !full.starts_with(root) {
        tracing::debug!(path = ?rel, "symlink leads out of the origin directory");
        return Err(StatusCode::FORBIDDEN.into());
    }
    let mut opts = std::fs::OpenOptions::new();
    match access {
        Access::Read => opts
            .read(true)
            .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits()),
        Access::Probe => opts.read(true).custom_flags(OFlag::O_PATH.bits()),
    };
    Ok(opts.open(full)?)
}

/// The status for a failed open.
fn errno_status(e: Errno, path: &Path) -> HttpError {
    let status = match e {
        Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG => StatusCode::NOT_FOUND,
        // EXDEV: the path leads out of the origin directory; ELOOP: too
        // many symlinks (or a magic link).
        Errno::EXDEV | Errno::ELOOP | Errno::EACCES | Errno::EPERM => {
            tracing::debug!(path = ?path, errno = %e, "file refused");
            StatusCode::FORBIDDEN
        }
        _ => {
            tracing::warn!(path = ?path, errno = %e, "cannot open file");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    status.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// root/ {a.txt, d/b.txt, in -> d/b.txt, out -> ../secret.txt, d/up -> ../a.txt}
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("d")).unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        fs::write(root.join("d/b.txt"), "b").unwrap();
        fs::write(t.path().join("secret.txt"), "s").unwrap();
        symlink("d/b.txt", root.join("in")).unwrap();
        symlink("../secret.txt", root.join("out")).unwrap();
        symlink("../a.txt", root.join("d/up")).unwrap();
        symlink(t.path().join("secret.txt"), root.join("abs")).unwrap();
        symlink(t.path(), root.join("outdir")).unwrap();
        (t, root)
    }

    fn status<T>(r: Result<T, HttpError>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn openat2_beneath() {
        let (_t, root) = tree();
        let r = Root::new(&root).unwrap();
        for (rel, want) in [
            ("a.txt", 200),
            ("d/b.txt", 200),
            ("in", 200),
            ("d/up", 200),
            ("out", 403),
            ("abs", 403),
            ("outdir/secret.txt", 403),
            ("missing", 404),
            ("a.txt/x", 404),
            ("", 200),
        ] {
            assert_eq!(status(r.open(Path::new(rel), Access::Read)), want, "{rel}");
        }
    }

    #[test]
    fn canonical_fallback() {
        let (_t, root) = tree();
        let r = Root::Canonical(fs::canonicalize(&root).unwrap());
        for (rel, want) in [
            ("a.txt", 200),
            ("d/b.txt", 200),
            ("in", 200),
            ("d/up", 200),
            ("out", 403),
            ("abs", 403),
            ("outdir/secret.txt", 403),
            ("missing", 404),
            ("", 200),
        ] {
            assert_eq!(status(r.open(Path::new(rel), Access::Read)), want, "{rel}");
        }
        let gz = sibling_name(Path::new("a"), Coding::Gzip);
        assert_eq!(gz, Path::new("a.gz"));
        assert!(r.sibling(&gz, Access::Probe).is_none());
        assert!(r.sibling(Path::new("a.txt"), Access::Probe).is_some());
        assert!(r.sibling(Path::new("d"), Access::Probe).is_none());
    }

    #[test]
    fn fifo_does_not_block() {
        let (_t, root) = tree();
        nix::unistd::mkfifo(&root.join("f.txt"), Mode::from_bits_truncate(0o600)).unwrap();
        let l = Lookup {
            root,
            rel: "f.txt".into(),
            names_directory: false,
            servable: true,
            default: None,
            codings: vec![],
        };
        assert_eq!(status(locate(&l, 1024)), 403);
    }
}
