//! Response headers of file mounts, HEAD and methods (SPEC §3.2, fourth
//! and fifth bullets), and streaming of large files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http::Method;
use lwsws_config::CachePolicy;
use std::os::unix::fs::MetadataExt;

#[tokio::test]
async fn validators_and_cache_control() {
    let s = Site::new();
    let p = s.file("a.txt", "hello");
    let meta = std::fs::metadata(&p).unwrap();
    let a = get(&s, "/a.txt").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("5"));
    assert_eq!(a.header("accept-ranges"), Some("bytes"));
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let etag = a.header("etag").unwrap();
    assert!(
        etag.starts_with(&format!("\"{:x}-5-", meta.ino())),
        "{etag}"
    );
    assert!(!etag.starts_with("W/"));
    let lm = a.header("last-modified").unwrap();
    let mtime = meta.modified().unwrap();
    assert_eq!(
        httpdate::parse_http_date(lm).unwrap(),
        httpdate::parse_http_date(&httpdate::fmt_http_date(mtime)).unwrap()
    );
    assert_eq!(a.header("vary"), None);
    assert_eq!(a.header("content-encoding"), None);
}

#[tokio::test]
async fn etag_changes_with_the_file() {
    let s = Site::new();
    let p = s.file("a.txt", "one");
    let e1 = get(&s, "/a.txt").await.header("etag").unwrap().to_string();
    std::fs::write(&p, "three").unwrap();
    let e2 = get(&s, "/a.txt").await.header("etag").unwrap().to_string();
    assert_ne!(e1, e2);
}

#[tokio::test]
async fn cache_policy_is_sent() {
    let s = Site::new();
    s.file("a.txt", "a");
    let mut m = mount();
    m.cache = CachePolicy {
        max_age: Some(600),
        reuse: true,
        revalidate: true,
        intermediaries: true,
    };
    let a = serve_with(&m, &s, Method::GET, "/a.txt", &[]).await;
    assert_eq!(
        a.header("cache-control"),
        Some("public, max-age=600, must-revalidate")
    );
}

#[tokio::test]
async fn head_has_get_headers_and_no_body() {
    let s = Site::new();
    s.file("a.html", "<p>hello</p>");
    let g = get(&s, "/a.html").await;
    let h = serve_with(&mount(), &s, Method::HEAD, "/a.html", &[]).await;
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some("12"));
    for name in [
        "content-type",
        "etag",
        "last-modified",
        "cache-control",
        "accept-ranges",
    ] {
        assert_eq!(h.header(name), g.header(name), "{name}");
    }
    // Range is defined for GET only.
    let h = serve_with(
        &mount(),
        &s,
        Method::HEAD,
        "/a.html",
        &[("range", "bytes=0-1")],
    )
    .await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("12"));
    // Errors are the same as for GET.
    assert_eq!(
        serve_with(&mount(), &s, Method::HEAD, "/nope.html", &[])
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn other_methods_are_not_allowed() {
    let s = Site::new();
    s.file("a.txt", "a");
    for m in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ] {
        let a = serve_with(&mount(), &s, m.clone(), "/a.txt", &[]).await;
        assert_eq!(a.status, 405, "{m}");
        assert_eq!(a.header("allow"), Some("GET, HEAD"), "{m}");
    }
}

#[tokio::test]
async fn empty_file() {
    let s = Site::new();
    s.file("empty.txt", "");
    let a = get(&s, "/empty.txt").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("0"));
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn large_file_streams_in_chunks() {
    let s = Site::new();
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    s.file("big.bin", &data);
    let parts = head(Method::GET, "/big.bin", &[]);
    let resp = lwsws_mounts::file::serve(&parts, &mount(), &s.root, "/big.bin")
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], "1000003");
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let mut body = resp.into_body();
    assert!(matches!(body, lwsws_mounts::Body::File(_)));
    assert_eq!(http_body::Body::size_hint(&body).exact(), Some(1_000_003));
    let mut got = Vec::new();
    let mut frames = 0;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let chunk = frame.unwrap().into_data().unwrap();
        assert!(chunk.len() <= 64 * 1024);
        got.extend_from_slice(&chunk);
        frames += 1;
    }
    assert_eq!(got, data);
    assert!(frames >= 16, "{frames} frames");
}

#[tokio::test]
async fn small_files_are_read_in_the_same_hop() {
    let s = Site::new();
    s.file("small.txt", vec![b'a'; 64 * 1024]);
    s.file("large.txt", vec![b'a'; 64 * 1024 + 1]);
    for (uri, in_memory) in [("/small.txt", true), ("/large.txt", false)] {
        let parts = head(Method::GET, uri, &[]);
        let resp = lwsws_mounts::file::serve(&parts, &mount(), &s.root, uri)
            .await
            .unwrap();
        assert_eq!(
            matches!(resp.body(), lwsws_mounts::Body::Full(_)),
            in_memory,
            "{uri}"
        );
    }
    // A range of an in-memory file.
    s.file("d.txt", "0123456789");
    let a = get_h(&s, "/d.txt", &[("range", "bytes=3-4")]).await;
    assert_eq!(a.text(), "34");
}
