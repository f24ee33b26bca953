//! File mounts (SPEC §3.2): map the path remainder to a file under the
//! origin directory, refuse anything that could escape it, and answer with
//! the file and its validators. `serve_inner` (behind [`serve`] and
//! [`serve_cached`]) reads top to bottom in the order
//! a request is processed; each stage lives in a submodule with its tests:
//!
//! - `path`: the remainder → a relative path (traversal, NUL, dotfiles);
//! - `mime`: which suffixes may be served, with which Content-Type;
//! - `encoding`: which precompressed sibling the client accepts;
//! - `open`: the one blocking call that opens the file beneath the root
//!   (symlink escapes), resolves a directory's `default` and finds siblings;
//! - `conditional`: ETag / Last-Modified and the `If-*` headers;
//! - `range`: `Range` → 206 / 416;
//! - `cache`: small files kept in memory, checked by one `stat` per hit.
//!
//! The server adds `Server:` and the vhost `headers`, and renders an
//! [`HttpError`] as a page; socket-free tests are in `tests/file_*.rs`.

mod cache;
mod conditional;
mod encoding;
mod mime;
mod open;
mod path;
mod range;

pub use cache::{FileCache, FileCacheLimits};
pub use conditional::{Precondition, Validators};
pub use encoding::Coding;
pub use mime::{MimeVerdict, content_type};
pub use path::resolve_remainder;
pub use range::RangeAnswer;

use crate::body::FileBody;
use crate::{Body, HttpError};
use bytes::Bytes;
use http::header;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use lwsws_config::Mount;
use open::{Found, Located, Lookup};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Files no larger than this are read whole in the same blocking call that
/// opens them (one hop to the blocking pool instead of two).
const INLINE_READ: u64 = 64 * 1024;

/// Serves `remainder` (the request path past the mountpoint, still
/// percent-encoded, `""` or starting with `/`) from the file mount `mount`
/// whose directory is `root`.
///
/// Every refusal is an `Err` (403, 404, 301 for a directory without its
/// slash, 405, 412, 416, …); 200, 206 and 304 are `Ok`.
pub async fn serve(
    req: &Parts,
    mount: &Mount,
    root: &Path,
    remainder: &str,
) -> Result<Response<Body>, HttpError> {
    serve_inner(req, mount, root, remainder, None).await
}

/// [`serve`], keeping small files in `cache`: a repeated request for an
/// unchanged file costs one `stat(2)` and no hop to the blocking pool.
pub async fn serve_cached(
    req: &Parts,
    mount: &Mount,
    root: &Path,
    remainder: &str,
    cache: &FileCache,
) -> Result<Response<Body>, HttpError> {
    serve_inner(req, mount, root, remainder, Some(cache)).await
}

async fn serve_inner(
    req: &Parts,
    mount: &Mount,
    root: &Path,
    remainder: &str,
    cache: Option<&FileCache>,
) -> Result<Response<Body>, HttpError> {
    // 1. Only GET and HEAD.
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED)
            .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD")));
    }

    // 2. What is asked for, lexically: no traversal, NUL or dotfile.
    let rel = resolve_remainder(remainder)?;
    let servable = content_type(&rel, mount).servable();
    let default = mount.default.as_ref().map(|d| {
        let p = rel.join(d);
        let ok = content_type(&p, mount).servable();
        (p, ok)
    });
    let lookup = Lookup {
        root: root.to_path_buf(),
        rel,
        names_directory: path::names_directory(remainder),
        servable,
        default,
        codings: encoding::accepted(&req.headers),
    };

    // 3. The file: from the cache, or opened beneath the root (one hop to
    //    the blocking pool for open, fstat and a small file's read).
    let rep = match cache.and_then(|c| c.get(&lookup)) {
        Some(entry) => Representation::cached(&entry),
        None => match locate(req, lookup, cache).await? {
            Some(rep) => rep,
            None => return Err(directory_redirect(req)),
        },
    };

    // 4. The headers every answer about this file carries.
    let validators = &rep.validators;
    let mut headers = http::HeaderMap::new();
    headers.insert(header::ETAG, value(&validators.etag)?);
    if let Some(lm) = validators.last_modified_header() {
        headers.insert(header::LAST_MODIFIED, value(&lm)?);
    }
    headers.insert(header::CACHE_CONTROL, value(&mount.cache.header_value())?);
    if rep.vary {
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }

    // 5. Preconditions: 304 / 412.
    match conditional::evaluate(&req.headers, validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            return respond(StatusCode::NOT_MODIFIED, headers, Body::empty());
        }
        Precondition::Failed => return Err(StatusCode::PRECONDITION_FAILED.into()),
    }

    // 6. The representation: type, coding, length.
    if let MimeVerdict::Known(t) = content_type(&rep.rel, mount) {
        headers.insert(header::CONTENT_TYPE, value(&t)?);
    }
    if let Some(coding) = rep.coding {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.name()),
        );
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let len = rep.len;

    // 7. HEAD: the headers of a full GET, no body.
    if req.method == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        return respond(StatusCode::OK, headers, Body::empty());
    }

    // 8. Range (only when If-Range, if any, names this version).
    let range = if conditional::if_range_allows(&req.headers, validators) {
        range::answer(&req.headers, len)
    } else {
        RangeAnswer::Full
    };
    let (status, start, count) = match range {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => {
            let cr = format!("bytes {start}-{end}/{len}");
            headers.insert(header::CONTENT_RANGE, value(&cr)?);
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            return Err(HttpError::new(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(header::CONTENT_RANGE, value(&format!("bytes */{len}"))?));
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));

    // 9. The body: from memory, or streamed from the file in chunks.
    let body = match rep.source {
        Source::Memory(bytes) => {
            let (from, to) = (usize::try_from(start), usize::try_from(start + count));
            match (from, to) {
                (Ok(from), Ok(to)) if to <= bytes.len() => Body::full(bytes.slice(from..to)),
                _ => return Err(StatusCode::INTERNAL_SERVER_ERROR.into()),
            }
        }
        Source::File(mut file) => {
            if start > 0 {
                // lseek(2) only moves the offset: no I/O, fine on the reactor.
                file.seek(SeekFrom::Start(start))?;
            }
            Body::File(FileBody::new(tokio::fs::File::from_std(file), count))
        }
    };
    respond(status, headers, body)
}

/// The file chosen to answer a request, wherever its bytes come from.
struct Representation {
    validators: Validators,
    /// The file asked for (after `default`): its name gives the Content-Type.
    rel: PathBuf,
    coding: Option<Coding>,
    vary: bool,
    len: u64,
    source: Source,
}

enum Source {
    Memory(Bytes),
    /// Open at offset 0.
    File(std::fs::File),
}

impl Representation {
    fn cached(e: &cache::Entry) -> Representation {
        Representation {
            validators: e.validators.clone(),
            rel: e.rel.clone(),
            coding: e.coding,
            vary: e.vary,
            len: e.content.len() as u64,
            source: Source::Memory(e.content.clone()),
        }
    }

    fn found(f: Found) -> Representation {
        Representation {
            validators: Validators::of(&f.meta),
            len: f.meta.len(),
            rel: f.rel,
            coding: f.coding,
            vary: f.vary,
            source: match f.content {
                Some(bytes) => Source::Memory(bytes),
                None => Source::File(f.file),
            },
        }
    }
}

/// Runs `open::locate` on the blocking pool and fills `cache`; `None` for
/// a directory named without its trailing slash.
async fn locate(
    req: &Parts,
    lookup: Lookup,
    cache: Option<&FileCache>,
) -> Result<Option<Representation>, HttpError> {
    let read_limit = match cache {
        Some(c) => c.limits().max_file_size.max(INLINE_READ),
        None if req.method == Method::GET => INLINE_READ,
        None => 0,
    };
    let key = cache.map(|_| lookup.clone());
    let located = tokio::task::spawn_blocking(move || open::locate(&lookup, read_limit))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "file lookup task failed");
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR)
        })??;
    let found = match located {
        Located::Directory => return Ok(None),
        Located::File(found) => found,
    };
    if let (Some(cache), Some(key)) = (cache, key) {
        cache.insert(key, &found);
    }
    Ok(Some(Representation::found(found)))
}

/// 301 from a directory named without its trailing slash to the slash form,
/// keeping the query.
fn directory_redirect(req: &Parts) -> HttpError {
    // One leading slash: `//host` would be a protocol-relative URL.
    let mut loc = format!("/{}/", req.uri.path().trim_start_matches('/'));
    if loc == "//" {
        loc.truncate(1);
    }
    if let Some(q) = req.uri.query() {
        loc.push('?');
        loc.push_str(q);
    }
    match HeaderValue::from_str(&loc) {
        Ok(v) => HttpError::new(StatusCode::MOVED_PERMANENTLY).with_header(header::LOCATION, v),
        Err(_) => StatusCode::BAD_REQUEST.into(),
    }
}

fn respond(
    status: StatusCode,
    headers: http::HeaderMap,
    body: Body,
) -> Result<Response<Body>, HttpError> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// A header value we built; one that cannot be a header (a config value
/// with a control character, say) is a server error, not a panic.
fn value(s: &str) -> Result<HeaderValue, HttpError> {
    HeaderValue::from_str(s).map_err(|_| {
        tracing::warn!(value = s, "not a valid header value");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR)
    })
}
