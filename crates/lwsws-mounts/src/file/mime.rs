//! Which files a mount may serve, and with which Content-Type (SPEC §3.2,
//! second bullet): the suffix must be known to `extra-mimetypes` (which wins)
//! or to `mime_guess`, unless the mount has `"*": ""`. Refusing unknown
//! suffixes keeps `/etc/passwd`-like files unservable even from a
//! misconfigured mount.

use lwsws_config::Mount;
use std::path::Path;

/// What the mount says about a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MimeVerdict {
    /// Served with this Content-Type (text types carry `; charset=utf-8`).
    Known(String),
    /// Unknown suffix, but the mount serves any type: no Content-Type.
    Untyped,
    /// Unknown suffix: 403.
    Refused,
}

/// The verdict for the file name of `path` on `mount`.
pub fn content_type(path: &Path, mount: &Mount) -> MimeVerdict {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if let Some(ext) = &ext {
        if let Some((_, t)) = mount.extra_mimetypes.iter().find(|(e, _)| e == ext) {
            if !t.is_empty() {
                return MimeVerdict::Known(with_charset(t));
            }
        } else if let Some(m) = mime_guess::from_ext(ext).first_raw() {
            return MimeVerdict::Known(with_charset(m));
        }
    }
    if mount.serve_any_type {
        MimeVerdict::Untyped
    } else {
        MimeVerdict::Refused
    }
}

impl MimeVerdict {
    pub fn servable(&self) -> bool {
        !matches!(self, MimeVerdict::Refused)
    }
}

/// Adds `; charset=utf-8` to text types that do not name a charset.
fn with_charset(t: &str) -> String {
    let essence = t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase();
    let texty = essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml");
    if texty && !t.to_ascii_lowercase().contains("charset=") {
        format!("{t}; charset=utf-8")
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mount;

    fn ct(name: &str, m: &Mount) -> MimeVerdict {
        content_type(Path::new(name), m)
    }

    fn known(t: &str) -> MimeVerdict {
        MimeVerdict::Known(t.to_string())
    }

    #[test]
    fn known_suffixes() {
        let m = mount();
        assert_eq!(ct("a.html", &m), known("text/html; charset=utf-8"));
        assert_eq!(ct("d/A.HTML", &m), known("text/html; charset=utf-8"));
        assert_eq!(ct("a.js", &m), known("text/javascript; charset=utf-8"));
        assert_eq!(
            ct("a.mjs", &m),
            known("application/javascript; charset=utf-8")
        );
        assert_eq!(ct("a.json", &m), known("application/json; charset=utf-8"));
        assert_eq!(ct("a.svg", &m), known("image/svg+xml; charset=utf-8"));
        assert_eq!(ct("a.png", &m), known("image/png"));
        assert_eq!(ct("a.tar.gz", &m), known("application/gzip"));
    }

    #[test]
    fn unknown_suffixes_are_refused() {
        let m = mount();
        assert_eq!(ct("passwd", &m), MimeVerdict::Refused);
        assert_eq!(ct("a.zzunknown", &m), MimeVerdict::Refused);
        assert_eq!(ct("a.", &m), MimeVerdict::Refused);
        assert!(!ct("passwd", &m).servable());
    }

    #[test]
    fn extra_mimetypes_win() {
        let mut m = mount();
        m.extra_mimetypes = vec![
            ("zz".into(), "application/x-zz".into()),
            ("js".into(), "application/x-mine".into()),
            ("txt".into(), "text/plain; charset=latin1".into()),
            ("md".into(), "text/markdown".into()),
        ];
        assert_eq!(ct("a.zz", &m), known("application/x-zz"));
        assert_eq!(ct("a.ZZ", &m), known("application/x-zz"));
        assert_eq!(ct("a.js", &m), known("application/x-mine"));
        assert_eq!(ct("a.txt", &m), known("text/plain; charset=latin1"));
        assert_eq!(ct("a.md", &m), known("text/markdown; charset=utf-8"));
    }

    #[test]
    fn serve_any_type() {
        let mut m = mount();
        m.serve_any_type = true;
        assert_eq!(ct("passwd", &m), MimeVerdict::Untyped);
        assert_eq!(ct("a.zzunknown", &m), MimeVerdict::Untyped);
        assert_eq!(ct("a.css", &m), known("text/css; charset=utf-8"));
    }
}
