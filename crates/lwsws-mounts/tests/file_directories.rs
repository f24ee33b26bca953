//! Directories on file mounts (SPEC §3.2, third bullet): 301 to the slash
//! form, the `default` file, 403 without one, no listings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http::Method;
use lwsws_mounts::file;

fn with_default() -> lwsws_config::Mount {
    let mut m = mount();
    m.default = Some("index.html".into());
    m
}

#[tokio::test]
async fn directory_without_slash_redirects() {
    let s = Site::new();
    s.file("docs/index.html", "index");
    let a = serve_with(&with_default(), &s, Method::GET, "/docs", &[]).await;
    assert_eq!(a.status, 301);
    assert_eq!(a.header("location"), Some("/docs/"));
    // The query is kept.
    let a = serve_with(&with_default(), &s, Method::GET, "/docs?a=1&b", &[]).await;
    assert_eq!(a.status, 301);
    assert_eq!(a.header("location"), Some("/docs/?a=1&b"));
    // No `default` does not change the redirect.
    let a = get(&s, "/docs").await;
    assert_eq!(a.status, 301);
}

#[tokio::test]
async fn redirect_is_never_protocol_relative() {
    let s = Site::new();
    s.file("evil.com/index.html", "x");
    let a = serve_with(&with_default(), &s, Method::GET, "//evil.com", &[]).await;
    assert_eq!(a.status, 301);
    assert_eq!(a.header("location"), Some("/evil.com/"));
}

#[tokio::test]
async fn mount_root_without_slash_redirects() {
    // Mount `/m`, request `/m`: the remainder is empty.
    let s = Site::new();
    s.file("index.html", "root index");
    let m = with_default();
    let parts = head(Method::GET, "/m?x=1", &[]);
    let a = answer(file::serve(&parts, &m, &s.root, "").await).await;
    assert_eq!(a.status, 301);
    assert_eq!(a.header("location"), Some("/m/?x=1"));
    let parts = head(Method::GET, "/m/", &[]);
    let a = answer(file::serve(&parts, &m, &s.root, "/").await).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "root index");
}

#[tokio::test]
async fn directory_with_slash_serves_default() {
    let s = Site::new();
    s.file("docs/index.html", "index");
    let a = serve_with(&with_default(), &s, Method::GET, "/docs/", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "index");
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    // `/` on the mount root.
    s.file("index.html", "top");
    let a = serve_with(&with_default(), &s, Method::GET, "/", &[]).await;
    assert_eq!(a.text(), "top");
}

#[tokio::test]
async fn directory_without_default_is_forbidden() {
    let s = Site::new();
    s.file("docs/a.txt", "a");
    let a = get(&s, "/docs/").await;
    assert_eq!(a.status, 403);
    assert!(a.body.is_empty(), "no listing");
}

#[tokio::test]
async fn missing_default_is_not_found() {
    let s = Site::new();
    s.file("docs/a.txt", "a");
    let a = serve_with(&with_default(), &s, Method::GET, "/docs/", &[]).await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn default_must_pass_the_mime_rule() {
    let s = Site::new();
    s.file("docs/index.zzunknown", "x");
    let mut m = mount();
    m.default = Some("index.zzunknown".into());
    let a = serve_with(&m, &s, Method::GET, "/docs/", &[]).await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn default_that_is_a_directory_is_forbidden() {
    let s = Site::new();
    std::fs::create_dir_all(s.root.join("docs/index.html")).unwrap();
    let a = serve_with(&with_default(), &s, Method::GET, "/docs/", &[]).await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn file_with_trailing_slash_is_not_found() {
    let s = Site::new();
    s.file("a.txt", "a");
    assert_eq!(get(&s, "/a.txt/").await.status, 404);
}
