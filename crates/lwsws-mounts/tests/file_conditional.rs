//! Conditional requests on file mounts (SPEC §3.2; RFC 9110 §13):
//! If-None-Match and If-Modified-Since (304), If-Match and
//! If-Unmodified-Since (412).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http::Method;
use std::time::{Duration, SystemTime};

async fn validators(s: &Site, uri: &str) -> (String, String) {
    let a = get(s, uri).await;
    (
        a.header("etag").unwrap().to_string(),
        a.header("last-modified").unwrap().to_string(),
    )
}

fn assert_304(a: &Answer) {
    assert_eq!(a.status, 304);
    assert!(a.body.is_empty());
    assert!(a.header("etag").is_some());
    assert!(a.header("last-modified").is_some());
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("content-length"), None);
    assert_eq!(a.header("content-type"), None);
}

#[tokio::test]
async fn if_none_match_gives_304() {
    let s = Site::new();
    s.file("a.txt", "hello");
    let (etag, _) = validators(&s, "/a.txt").await;
    let a = get_h(&s, "/a.txt", &[("if-none-match", &etag)]).await;
    assert_304(&a);
    assert_eq!(a.header("etag"), Some(etag.as_str()));
    // In a list, weak, or `*`.
    let list = format!("\"other\", {etag}");
    assert_304(&get_h(&s, "/a.txt", &[("if-none-match", &list)]).await);
    let weak = format!("W/{etag}");
    assert_304(&get_h(&s, "/a.txt", &[("if-none-match", &weak)]).await);
    assert_304(&get_h(&s, "/a.txt", &[("if-none-match", "*")]).await);
    // HEAD too.
    let a = serve_with(
        &mount(),
        &s,
        Method::HEAD,
        "/a.txt",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_304(&a);
    // Another tag: the file.
    let a = get_h(&s, "/a.txt", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "hello");
}

#[tokio::test]
async fn if_modified_since_gives_304() {
    let s = Site::new();
    let p = s.file("a.txt", "hello");
    let (_, lm) = validators(&s, "/a.txt").await;
    assert_304(&get_h(&s, "/a.txt", &[("if-modified-since", &lm)]).await);
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    assert_304(&get_h(&s, "/a.txt", &[("if-modified-since", &later)]).await);
    // Modified since: the file.
    let earlier = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now()).unwrap();
    let a = get_h(&s, "/a.txt", &[("if-modified-since", &earlier)]).await;
    assert_eq!(a.status, 200);
    // An invalid date is ignored.
    let a = get_h(&s, "/a.txt", &[("if-modified-since", "last tuesday")]).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn if_modified_since_is_ignored_with_if_none_match() {
    let s = Site::new();
    s.file("a.txt", "hello");
    let (_, lm) = validators(&s, "/a.txt").await;
    let a = get_h(
        &s,
        "/a.txt",
        &[("if-none-match", "\"other\""), ("if-modified-since", &lm)],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "hello");
}

#[tokio::test]
async fn if_match_and_if_unmodified_since_give_412() {
    let s = Site::new();
    s.file("a.txt", "hello");
    let (etag, lm) = validators(&s, "/a.txt").await;
    assert_eq!(
        get_h(&s, "/a.txt", &[("if-match", &etag)]).await.status,
        200
    );
    assert_eq!(
        get_h(&s, "/a.txt", &[("if-match", "\"other\"")])
            .await
            .status,
        412
    );
    assert_eq!(
        get_h(&s, "/a.txt", &[("if-unmodified-since", &lm)])
            .await
            .status,
        200
    );
    let old = "Sun, 09 Sep 2001 01:46:40 GMT";
    assert_eq!(
        get_h(&s, "/a.txt", &[("if-unmodified-since", old)])
            .await
            .status,
        412
    );
}

#[tokio::test]
async fn old_and_far_future_mtimes_do_not_panic() {
    let s = Site::new();
    let p = s.file("a.txt", "hello");
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    // Before 1970: no Last-Modified, still an ETag.
    f.set_modified(SystemTime::UNIX_EPOCH - Duration::from_secs(86_400))
        .unwrap();
    let a = get(&s, "/a.txt").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("last-modified"), None);
    assert!(a.header("etag").is_some());
    let a = get_h(
        &s,
        "/a.txt",
        &[("if-modified-since", "Sun, 09 Sep 2001 01:46:40 GMT")],
    )
    .await;
    assert_eq!(a.status, 200);
    // After 9999 (ext4 stops at 2446, so the file system may clamp it).
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(300_000_000_000))
        .unwrap();
    let a = get(&s, "/a.txt").await;
    assert_eq!(a.status, 200);
    if let Some(lm) = a.header("last-modified") {
        assert!(httpdate::parse_http_date(lm).is_ok());
    }
}
