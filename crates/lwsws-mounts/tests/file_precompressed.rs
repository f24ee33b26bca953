//! Precompressed siblings on file mounts (SPEC §3.2, last bullet): `X.br`
//! and `X.gz` for clients that accept them, with Content-Encoding and Vary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http::Method;

fn site() -> Site {
    let s = Site::new();
    s.file("app.js", "plain");
    s.file("app.js.gz", "GZIPPED");
    s.file("app.js.br", "BROTLI");
    s.file("only-gz.css", "plain css");
    s.file("only-gz.css.gz", "GZ CSS");
    s.file("none.txt", "just text");
    s
}

#[tokio::test]
async fn gzip_sibling_is_served() {
    let s = site();
    let a = get_h(&s, "/only-gz.css", &[("accept-encoding", "gzip, deflate")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "GZ CSS");
    assert_eq!(a.header("content-encoding"), Some("gzip"));
    assert_eq!(a.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(a.header("vary"), Some("Accept-Encoding"));
    assert_eq!(a.header("content-length"), Some("6"));
    // Its own validators.
    let plain = get(&s, "/only-gz.css").await;
    assert_ne!(a.header("etag"), plain.header("etag"));
}

#[tokio::test]
async fn brotli_is_preferred() {
    let s = site();
    let a = get_h(&s, "/app.js", &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(a.text(), "BROTLI");
    assert_eq!(a.header("content-encoding"), Some("br"));
    assert_eq!(
        a.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(a.header("vary"), Some("Accept-Encoding"));
    // Unless the client prefers gzip, or refuses br.
    let a = get_h(&s, "/app.js", &[("accept-encoding", "br;q=0.5, gzip")]).await;
    assert_eq!(a.header("content-encoding"), Some("gzip"));
    let a = get_h(&s, "/app.js", &[("accept-encoding", "br;q=0, gzip")]).await;
    assert_eq!(a.header("content-encoding"), Some("gzip"));
    // br accepted but only .gz exists.
    let a = get_h(&s, "/only-gz.css", &[("accept-encoding", "br")]).await;
    assert_eq!(a.text(), "plain css");
    assert_eq!(a.header("content-encoding"), None);
    assert_eq!(a.header("vary"), Some("Accept-Encoding"));
}

#[tokio::test]
async fn uncompressed_answer_varies_when_a_sibling_exists() {
    let s = site();
    let a = get(&s, "/app.js").await;
    assert_eq!(a.text(), "plain");
    assert_eq!(a.header("content-encoding"), None);
    assert_eq!(a.header("vary"), Some("Accept-Encoding"));
    let a = get_h(&s, "/app.js", &[("accept-encoding", "gzip;q=0, br;q=0")]).await;
    assert_eq!(a.text(), "plain");
    assert_eq!(a.header("vary"), Some("Accept-Encoding"));
    // No sibling: no Vary.
    let a = get_h(&s, "/none.txt", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(a.text(), "just text");
    assert_eq!(a.header("vary"), None);
}

#[tokio::test]
async fn range_applies_to_the_compressed_bytes() {
    let s = site();
    let a = get_h(
        &s,
        "/app.js",
        &[("accept-encoding", "gzip"), ("range", "bytes=1-3")],
    )
    .await;
    assert_eq!(a.status, 206);
    assert_eq!(a.text(), "ZIP");
    assert_eq!(a.header("content-range"), Some("bytes 1-3/7"));
    assert_eq!(a.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn head_and_304_of_a_compressed_variant() {
    let s = site();
    let ae = ("accept-encoding", "gzip");
    let h = serve_with(&mount(), &s, Method::HEAD, "/app.js", &[ae]).await;
    assert_eq!(h.header("content-length"), Some("7"));
    assert_eq!(h.header("content-encoding"), Some("gzip"));
    assert!(h.body.is_empty());
    let etag = h.header("etag").unwrap();
    let a = get_h(&s, "/app.js", &[ae, ("if-none-match", etag)]).await;
    assert_eq!(a.status, 304);
    assert_eq!(a.header("vary"), Some("Accept-Encoding"));
}

#[tokio::test]
async fn default_file_has_siblings_too() {
    let s = Site::new();
    s.file("d/index.html", "plain index");
    s.file("d/index.html.gz", "GZ INDEX");
    let mut m = mount();
    m.default = Some("index.html".into());
    let a = serve_with(&m, &s, Method::GET, "/d/", &[("accept-encoding", "gzip")]).await;
    assert_eq!(a.text(), "GZ INDEX");
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(a.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn sibling_symlinked_outside_is_ignored() {
    let s = Site::new();
    s.file("a.txt", "plain");
    let out = s.outside("secret.gz", "SECRET");
    s.symlink("a.txt.gz", &out);
    let a = get_h(&s, "/a.txt", &[("accept-encoding", "gzip")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "plain");
    assert_eq!(a.header("content-encoding"), None);
}

#[tokio::test]
async fn sibling_needs_the_file_itself() {
    let s = Site::new();
    s.file("gone.js.gz", "GZ");
    let a = get_h(&s, "/gone.js", &[("accept-encoding", "gzip")]).await;
    assert_eq!(a.status, 404);
}
