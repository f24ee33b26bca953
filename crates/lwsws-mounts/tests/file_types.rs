//! Which files a mount serves, by suffix, and their Content-Type (SPEC
//! §3.2, second bullet).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http::Method;

#[tokio::test]
async fn known_types_carry_content_type() {
    let s = Site::new();
    s.file("a.html", "<p>");
    s.file("a.css", "p{}");
    s.file("a.js", "1");
    s.file("a.json", "{}");
    s.file("a.svg", "<svg/>");
    s.file("a.png", [0x89, b'P', b'N', b'G']);
    for (uri, ct) in [
        ("/a.html", "text/html; charset=utf-8"),
        ("/a.css", "text/css; charset=utf-8"),
        ("/a.js", "text/javascript; charset=utf-8"),
        ("/a.json", "application/json; charset=utf-8"),
        ("/a.svg", "image/svg+xml; charset=utf-8"),
        ("/a.png", "image/png"),
    ] {
        let a = get(&s, uri).await;
        assert_eq!(a.status, 200, "{uri}");
        assert_eq!(a.header("content-type"), Some(ct), "{uri}");
    }
}

#[tokio::test]
async fn unknown_suffix_is_forbidden() {
    let s = Site::new();
    s.file("passwd", "root:x:0:0");
    s.file("a.zzunknown", "?");
    for uri in ["/passwd", "/a.zzunknown"] {
        let a = get(&s, uri).await;
        assert_eq!(a.status, 403, "{uri}");
        assert!(a.body.is_empty());
    }
}

#[tokio::test]
async fn extra_mimetypes_add_and_override() {
    let s = Site::new();
    s.file("a.zz", "zz");
    s.file("a.js", "1");
    let mut m = mount();
    m.extra_mimetypes = vec![
        ("zz".into(), "application/x-zz".into()),
        ("js".into(), "application/x-mine".into()),
    ];
    let a = serve_with(&m, &s, Method::GET, "/a.zz", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/x-zz"));
    let a = serve_with(&m, &s, Method::GET, "/a.js", &[]).await;
    assert_eq!(a.header("content-type"), Some("application/x-mine"));
}

#[tokio::test]
async fn serve_any_type_omits_content_type() {
    let s = Site::new();
    s.file("README", "read me");
    s.file("a.txt", "text");
    let mut m = mount();
    m.serve_any_type = true;
    let a = serve_with(&m, &s, Method::GET, "/README", &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "read me");
    assert_eq!(a.header("content-type"), None);
    // Known types keep theirs.
    let a = serve_with(&m, &s, Method::GET, "/a.txt", &[]).await;
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    // And "*" does not open dotfiles or traversal.
    s.file(".env", "secret");
    assert_eq!(
        serve_with(&m, &s, Method::GET, "/.env", &[]).await.status,
        404
    );
    assert_eq!(
        serve_with(&m, &s, Method::GET, "/../x", &[]).await.status,
        403
    );
}
