//! File mounts (SPEC §3.2): map the path remainder to a file under the
//! origin directory, refuse anything that could escape it, and answer with
//! the file and its validators.

use crate::{Body, HttpError};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use lwsws_config::Mount;
use std::path::{Path, PathBuf};

/// Serves `remainder` (the request path past the mountpoint, still
/// percent-encoded) from the file mount `mount` whose directory is `root`.
pub async fn serve(
    req: &Parts,
    mount: &Mount,
    root: &Path,
    remainder: &str,
) -> Result<Response<Body>, HttpError> {
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED)
            .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD")));
    }
    let rel = resolve_remainder(remainder)?;
    let mut path: PathBuf = root.join(&rel);
    let meta = tokio::fs::metadata(&path).await?;
    if meta.is_dir() {
        if !remainder.is_empty() && !remainder.ends_with('/') || remainder.is_empty() {
            let mut loc = req.uri.path().to_string();
            loc.push('/');
            if let Some(q) = req.uri.query() {
                loc.push('?');
                loc.push_str(q);
            }
            let v =
                HeaderValue::from_str(&loc).map_err(|_| HttpError::new(StatusCode::BAD_REQUEST))?;
            return Err(
                HttpError::new(StatusCode::MOVED_PERMANENTLY).with_header(header::LOCATION, v)
            );
        }
        let Some(index) = &mount.default else {
            return Err(HttpError::new(StatusCode::FORBIDDEN));
        };
        path = path.join(index);
    }
    let content_type = content_type(&path, mount).ok_or(HttpError::new(StatusCode::FORBIDDEN))?;
    let file = tokio::fs::File::open(&path).await?;
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Err(HttpError::new(StatusCode::FORBIDDEN));
    }
    let len = meta.len();
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, len);
    if let Some(ct) = content_type {
        resp = resp.header(header::CONTENT_TYPE, ct);
    }
    resp = resp.header(header::CACHE_CONTROL, mount.cache.header_value());
    let body = if req.method == http::Method::HEAD {
        Body::empty()
    } else {
        Body::File(crate::body::FileBody::new(file, len))
    };
    resp.body(body)
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR))
}

/// Percent-decodes the remainder once and checks every segment: `..` or a
/// NUL → 403, malformed encoding → 400, a dotfile (but `.well-known` first) → 404.
pub fn resolve_remainder(remainder: &str) -> Result<PathBuf, HttpError> {
    let decoded = decode(remainder)?;
    let mut out = PathBuf::new();
    for (i, seg) in decoded.split('/').enumerate() {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg == ".." || seg.contains('\0') {
            return Err(HttpError::new(StatusCode::FORBIDDEN));
        }
        if seg.starts_with('.') && !(i <= 1 && seg == ".well-known") {
            return Err(HttpError::new(StatusCode::NOT_FOUND));
        }
        out.push(seg);
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(HttpError::new(StatusCode::BAD_REQUEST));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    let v: Vec<u8> = percent_encoding::percent_decode_str(s).collect();
    String::from_utf8(v).map_err(|_| HttpError::new(StatusCode::BAD_REQUEST))
}

/// The Content-Type for `path`: `Some(Some(type))` when known, `Some(None)`
/// when unknown but the mount serves any type, `None` when not servable.
pub fn content_type(path: &Path, mount: &Mount) -> Option<Option<String>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if let Some(ext) = &ext {
        if let Some((_, t)) = mount.extra_mimetypes.iter().find(|(e, _)| e == ext) {
            return Some(Some(t.clone()));
        }
        if let Some(m) = mime_guess::from_ext(ext).first() {
            let mut t = m.essence_str().to_string();
            if m.type_() == mime_guess::mime::TEXT
                || t == "application/javascript"
                || t == "application/json"
                || t == "image/svg+xml"
            {
                t.push_str("; charset=utf-8");
            }
            return Some(Some(t));
        }
    }
    if mount.serve_any_type {
        return Some(None);
    }
    None
}
