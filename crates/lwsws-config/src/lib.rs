//! lwsws configuration: files → commented JSON → typed, validated [`Config`].
//!
//! The way through this crate, one direction only:
//! `load` finds `DIR/conf` and `DIR/conf.d/*` (`files`), `jsonc` parses each
//! into a position-keeping tree, `convert` reads the trees into the typed
//! values of `types` while collecting every problem, `validate` checks the
//! files they name and rules across vhosts. The result is a [`Config`] that
//! the supervisor and server use as it is, or a [`ConfigError`] listing every
//! problem with its `file:line:column`, key and fix. `print` renders a
//! `Config` back as a complete configuration file for `--print-config`.

#![recursion_limit = "256"]

mod convert;
mod error;
mod jsonc;
mod print;
mod reader;
pub mod schema;
mod serde_http;
mod source;
mod types;
mod validate;

pub use convert::{normalise_host, split_host_port};
pub use error::{ConfigError, Diagnostic, Severity};
pub use print::{origin_string, print_config};
pub use types::*;
pub use validate::{describe_listen, same_listener};

use error::Diags;
use jsonc::{Node, NodeKind};
use source::{Loc, SourceFile, Sources};
use std::path::{Path, PathBuf};

/// A WebSocket protocol that the server can offer, and the pvos it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolSpec {
    pub name: String,
    pub pvos: Vec<String>,
}

/// A protocol that a `plugin-dir` library offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedProtocol {
    pub name: String,
    /// The library that offers it.
    pub library: PathBuf,
}

/// What scanning one `plugin-dir` found.
#[derive(Debug, Clone, Default)]
pub struct PluginScan {
    pub protocols: Vec<ScannedProtocol>,
    /// Libraries that could not be loaded or read, with why.
    pub errors: Vec<(PathBuf, String)>,
}

/// How the loader checks WebSocket plugin libraries (SPEC §6.4). The
/// program passes functions here so that this crate loads no code itself.
#[derive(Debug, Clone, Copy)]
pub struct PluginHooks {
    /// Loads the library at the path and resolves the init symbol of a
    /// `ws-protocols` entry with pvos `plugin` and `init`.
    pub probe: fn(&Path, &str) -> Result<(), String>,
    /// Scans one `plugin-dir` for `*.so` files exporting `lwsws_plugin_protocols`.
    pub scan: fn(&Path) -> PluginScan,
}

/// What the loader needs to know about the running program.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Replaces `_lws_ddir_` in strings.
    pub data_dir: PathBuf,
    /// Protocols that `ws-protocols` may name.
    pub protocols: Vec<ProtocolSpec>,
    /// Checks plugin libraries; `None`: entries with a `plugin` pvo and
    /// `plugin-dir` protocols are not available.
    pub plugins: Option<PluginHooks>,
    /// Started as root: users must exist, and running without `username` is warned about.
    pub as_root: bool,
}

/// A successfully loaded configuration.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Problems that do not stop the load.
    pub warnings: Vec<Diagnostic>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

/// The data directory: `LWSWS_DATA_DIR` from the environment, else the one
/// fixed at build time (`LWSWS_DATA_DIR` when building, for packages), else
/// the source tree's `share/`, so a fresh checkout finds its own files.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LWSWS_DATA_DIR") {
        return PathBuf::from(d);
    }
    match option_env!("LWSWS_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        // crates/lwsws-config → the checkout's root, without `..` in
        // what error messages show.
        None => {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            crate_dir
                .parent()
                .and_then(Path::parent)
                .unwrap_or(crate_dir)
                .join("share")
        }
    }
}

/// Names in `conf.d/` that are skipped: editor and package-manager leftovers
/// (public so that test tooling skips exactly what the loader skips).
pub fn skipped_name(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "~",
        ".swp",
        ".bak",
        ".dpkg-old",
        ".dpkg-new",
        ".dpkg-dist",
        ".rpmnew",
        ".rpmsave",
    ];
    name.starts_with('.') || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Reads, parses and validates the configuration in `dir`.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut sources = Sources::default();
    let mut early: Vec<Diagnostic> = Vec::new();
    let fail = |place: String, message: String, hint: &str| Diagnostic {
        severity: Severity::Error,
        place,
        key: String::new(),
        message,
        hint: Some(hint.to_string()),
    };

    // 1. Files, in order.
    let conf = dir.join("conf");
    let confd = dir.join("conf.d");
    let mut paths = Vec::new();
    match std::fs::metadata(&conf) {
        Ok(m) if m.is_file() => paths.push(conf.clone()),
        Ok(_) => early.push(fail(
            conf.display().to_string(),
            "is not a regular file".into(),
            "remove it or make it the global configuration file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => early.push(fail(
            conf.display().to_string(),
            e.to_string(),
            "make it readable",
        )),
    }
    match std::fs::read_dir(&confd) {
        Ok(entries) => {
            let mut names: Vec<(Vec<u8>, PathBuf)> = Vec::new();
            for entry in entries.flatten() {
                let name = entry.file_name();
                let shown = name.to_string_lossy().into_owned();
                if skipped_name(&shown) {
                    tracing::info!(file = %entry.path().display(), "skipping configuration file by its name");
                    continue;
                }
                match std::fs::metadata(entry.path()) {
                    Ok(m) if m.is_file() => {
                        use std::os::unix::ffi::OsStrExt;
                        names.push((name.as_bytes().to_vec(), confd.join(&name)));
                    }
                    Ok(_) => {
                        tracing::info!(file = %entry.path().display(), "skipping: not a regular file")
                    }
                    Err(e) => early.push(fail(
                        entry.path().display().to_string(),
                        e.to_string(),
                        "remove the broken entry",
                    )),
                }
            }
            names.sort();
            paths.extend(names.into_iter().map(|(_, p)| p));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => early.push(fail(
            confd.display().to_string(),
            e.to_string(),
            "make the directory readable",
        )),
    }
    if paths.is_empty() && early.is_empty() {
        early.push(fail(
            dir.display().to_string(),
            "no configuration found: neither conf nor conf.d/ holds a file".into(),
            "create conf and/or one file per vhost in conf.d/, or point -c at the right directory",
        ));
    }
    for p in &paths {
        match std::fs::read(p) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    sources.add(SourceFile::new(p.clone(), text));
                }
                Err(e) => early.push(fail(
                    p.display().to_string(),
                    format!("not valid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
                    "save the file as UTF-8",
                )),
            },
            Err(e) => early.push(fail(
                p.display().to_string(),
                e.to_string(),
                "make the file readable",
            )),
        }
    }

    check(dir, opts, &sources, early, paths)
}

/// Steps 2–4 of [`load`]: parses, converts and validates the files already
/// read into `sources`; `early` holds the problems met while reading them.
fn check(
    dir: &Path,
    opts: &LoadOptions,
    sources: &Sources,
    early: Vec<Diagnostic>,
    paths: Vec<PathBuf>,
) -> Result<Loaded, ConfigError> {
    let mut d = Diags::new(sources);
    d.list.extend(early);

    // 2. Parse each file.
    let ddir = opts.data_dir.to_string_lossy().into_owned();
    let mut trees: Vec<Node> = Vec::new();
    for (i, f) in sources.files.iter().enumerate() {
        match jsonc::parse(&f.text, i, &ddir) {
            Ok(Some(n)) => trees.push(n),
            Ok(None) => {}
            Err(e) => d.error(
                Loc {
                    file: i,
                    offset: e.offset,
                },
                "",
                format!("syntax error: {}", e.message),
                Some(e.hint.into()),
            ),
        }
    }

    // 3. Convert.
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut cx = convert::Ctx::new(d, base, opts.protocols.clone(), opts.as_root);
    cx.plugins = opts.plugins;
    let mut globals: Vec<&Node> = Vec::new();
    let mut vhost_nodes: Vec<&Node> = Vec::new();
    for t in &trees {
        let Some(mut top) =
            reader::Obj::from_node(&mut cx.d, t, "", "top-level", convert::TOP_KEYS)
        else {
            continue;
        };
        if let Some(g) = top.get(&mut cx.d, "global") {
            globals.push(g);
        }
        if let Some(v) = top.get(&mut cx.d, "vhosts") {
            match &v.kind {
                NodeKind::Array(items) => vhost_nodes.extend(items.iter()),
                _ => cx.d.error(
                    v.loc,
                    "vhosts",
                    format!("expected a list of vhosts, found {}", v.type_name()),
                    Some("write \"vhosts\": [ { … } ]".into()),
                ),
            }
        }
        top.finish(&mut cx.d);
    }
    let merged = convert::merge_globals(&mut cx, &globals);
    let global_loc = globals.first().map_or(Loc::default(), |g| g.loc);
    let global = convert::global(&mut cx, merged, global_loc);
    cx.acme_dir = global.acme_dir.clone();
    cx.has_trusted_proxies = !global.trusted_proxies.is_empty();
    let mut vhosts = Vec::new();
    let mut locs = Vec::new();
    for n in vhost_nodes {
        if let Some(v) = convert::vhost(&mut cx, n) {
            vhosts.push(v);
            locs.push(n.loc);
        }
    }

    // 4. Rules across vhosts, and the accounts.
    let mut d = cx.into_diags();
    validate::across_vhosts(&mut d, &vhosts, &locs);
    if vhosts.is_empty() && !d.has_errors() {
        d.push(
            Severity::Error,
            dir.display().to_string(),
            "vhosts",
            "no vhost is configured",
            Some("add a file with \"vhosts\": [ … ] to conf.d/".into()),
        );
    }
    root_warning(&mut d, &global, dir, opts.as_root);

    let (errors, warnings) = d.split();
    if !errors.is_empty() {
        return Err(ConfigError::Invalid { errors, warnings });
    }
    Ok(Loaded {
        config: Config { global, vhosts },
        warnings,
        files: paths,
    })
}

/// Entry points for the fuzz targets in `fuzz/` (not part of the API).
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    pub use crate::jsonc::blank_comments;

    /// [`load`] of a directory `dir` whose only file is `DIR/conf` holding
    /// `text`, without touching the disk for it.
    pub fn load_text(dir: &Path, text: &str, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
        let conf = dir.join("conf");
        let mut sources = Sources::default();
        sources.add(SourceFile::new(conf.clone(), text.to_string()));
        check(dir, opts, &sources, Vec::new(), vec![conf])
    }
}

/// Started as root without `username`: say so at every start and from `--check`.
fn root_warning(d: &mut Diags, g: &Global, dir: &Path, as_root: bool) {
    if as_root && g.user.is_none() {
        d.push(
            Severity::Warning,
            dir.display().to_string(),
            "username",
            "workers will run as root; set username/groupname",
            Some(
                "add \"username\": \"lwsws\" and \"groupname\": \"lwsws\" to the global section"
                    .into(),
            ),
        );
    }
}
