//! Helpers for the socket-free handler tests: a mount with default keys, a
//! temporary origin directory, request heads, and a call to `file::serve`
//! that collects the whole answer.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use lwsws_config::{Mount, Origin};
use lwsws_mounts::{HttpError, file};
use std::path::{Path, PathBuf};

/// A file mount on `/` with every key at its default.
pub fn mount() -> Mount {
    Mount::new("/", Origin::File("/nonexistent".into()))
}

/// A temporary directory holding `root/` (the origin) and whatever lies
/// beside it.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        Site { dir, root }
    }

    /// Writes `root/<rel>`, creating directories.
    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Writes a file beside the root (outside the origin).
    pub fn outside(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn symlink(&self, rel: &str, target: impl AsRef<Path>) {
        std::os::unix::fs::symlink(target, self.root.join(rel)).unwrap();
    }
}

/// The whole answer of a handler.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// A request head.
pub fn head(method: Method, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// Calls `file::serve` for `uri` on `mount` (mounted on `/`, so the
/// remainder is the whole path) and collects the answer; an `HttpError`
/// becomes an answer with its status and headers and an empty body.
pub async fn serve_with(
    mount: &Mount,
    site: &Site,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let parts = head(method, uri, headers);
    let remainder = parts.uri.path().to_string();
    answer(file::serve(&parts, mount, &site.root, &remainder).await).await
}

pub async fn get(site: &Site, uri: &str) -> Answer {
    serve_with(&mount(), site, Method::GET, uri, &[]).await
}

pub async fn get_h(site: &Site, uri: &str, headers: &[(&str, &str)]) -> Answer {
    serve_with(&mount(), site, Method::GET, uri, headers).await
}

pub async fn answer(r: Result<http::Response<lwsws_mounts::Body>, HttpError>) -> Answer {
    match r {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes().to_vec();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        }
        Err(e) => Answer {
            status: e.status,
            headers: e.headers,
            body: Vec::new(),
        },
    }
}
