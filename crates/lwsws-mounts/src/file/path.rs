//! From the raw request path past the mountpoint to a relative file path
//! (SPEC §3.2, first bullet): percent-decode once, split on `/`, refuse what
//! could escape or expose. This is the lexical half of path safety; the
//! other half, symlinks, is checked when the file is opened (`open.rs`).

use crate::HttpError;
use http::StatusCode;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Percent-decodes `remainder` once and checks every segment.
///
/// - malformed encoding (`%zz`, `%4`) → 400;
/// - a `..` segment or a NUL anywhere → 403 (checked over the whole path
///   before the next rule, so `/.git/../x` is 403, not 404);
/// - a segment starting with `.` → 404, except a first segment `.well-known`.
///
/// `%2F` decodes to `/` and separates segments like `/`; empty segments are
/// dropped. The result is relative (empty for the origin directory itself)
/// and may hold any bytes but `/` and NUL: file names need not be UTF-8.
pub fn resolve_remainder(remainder: &str) -> Result<PathBuf, HttpError> {
    let decoded = decode(remainder)?;
    let segments = || decoded.split(|&b| b == b'/').filter(|s| !s.is_empty());
    if segments().any(|s| s == b".." || s.contains(&0)) {
        return Err(HttpError::new(StatusCode::FORBIDDEN));
    }
    let mut out = PathBuf::new();
    for (i, seg) in segments().enumerate() {
        if seg.starts_with(b".") && !(i == 0 && seg == b".well-known") {
            return Err(HttpError::new(StatusCode::NOT_FOUND));
        }
        out.push(OsStr::from_bytes(seg));
    }
    Ok(out)
}

/// Whether the decoded remainder ends with `/` (`%2F` counts): the client
/// names a directory.
pub(crate) fn names_directory(remainder: &str) -> bool {
    let b = remainder.as_bytes();
    b.ends_with(b"/") || b.len() >= 3 && b[b.len() - 3..].eq_ignore_ascii_case(b"%2f")
}

/// Strict percent-decoding: every `%` must start two hex digits.
fn decode(s: &str) -> Result<Vec<u8>, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&c| hex(c));
            let lo = bytes.get(i + 2).and_then(|&c| hex(c));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(HttpError::new(StatusCode::BAD_REQUEST));
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: &str) -> u16 {
        match resolve_remainder(r) {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    fn ok(r: &str) -> PathBuf {
        resolve_remainder(r).unwrap()
    }

    #[test]
    fn plain_paths() {
        assert_eq!(ok(""), PathBuf::new());
        assert_eq!(ok("/"), PathBuf::new());
        assert_eq!(ok("/a/b.html"), PathBuf::from("a/b.html"));
        assert_eq!(ok("//a///b"), PathBuf::from("a/b"));
        assert_eq!(ok("/a%20b.txt"), PathBuf::from("a b.txt"));
        assert_eq!(ok("/%C3%A9.txt"), PathBuf::from("é.txt"));
        // Not UTF-8: still a name.
        assert_eq!(ok("/%FF.txt").as_os_str().as_bytes(), b"\xff.txt");
    }

    #[test]
    fn encoded_slash_separates() {
        assert_eq!(ok("/a%2Fb"), PathBuf::from("a/b"));
        assert_eq!(ok("/a%2fb"), PathBuf::from("a/b"));
    }

    #[test]
    fn traversal_is_forbidden() {
        assert_eq!(status("/../etc/passwd"), 403);
        assert_eq!(status("/a/.."), 403);
        assert_eq!(status("/%2e%2e/x"), 403);
        assert_eq!(status("/%2E%2E/x"), 403);
        assert_eq!(status("/a%2f..%2fb"), 403);
        assert_eq!(status("/..%2fx"), 403);
        // `..` wins over a dotfile earlier in the path.
        assert_eq!(status("/.git/../x"), 403);
    }

    #[test]
    fn nul_is_forbidden() {
        assert_eq!(status("/a%00.html"), 403);
        assert_eq!(status("/%00"), 403);
    }

    #[test]
    fn malformed_encoding_is_bad_request() {
        assert_eq!(status("/%zz"), 400);
        assert_eq!(status("/%4"), 400);
        assert_eq!(status("/a%"), 400);
        assert_eq!(status("/%g0"), 400);
    }

    #[test]
    fn double_encoding_decodes_once() {
        assert_eq!(ok("/%252e%252e/x"), PathBuf::from("%2e%2e/x"));
        assert_eq!(ok("/%252f"), PathBuf::from("%2f"));
    }

    #[test]
    fn dotfiles_are_not_found() {
        assert_eq!(status("/.htaccess"), 404);
        assert_eq!(status("/a/.git/config"), 404);
        assert_eq!(status("/."), 404);
        assert_eq!(status("/%2ehidden"), 404);
        assert_eq!(status("/a/.well-known/x"), 404);
        assert_eq!(status("/.well-known/.x"), 404);
        assert_eq!(
            ok("/.well-known/acme-challenge/t"),
            PathBuf::from(".well-known/acme-challenge/t")
        );
        assert_eq!(ok("//.well-known/x"), PathBuf::from(".well-known/x"));
    }

    #[test]
    fn directory_names() {
        assert!(names_directory("/a/"));
        assert!(names_directory("/a%2F"));
        assert!(names_directory("/a%2f"));
        assert!(!names_directory("/a"));
        assert!(!names_directory(""));
        assert!(!names_directory("/%2"));
    }
}
