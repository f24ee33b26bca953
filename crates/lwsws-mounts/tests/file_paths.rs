//! Path safety of file mounts (SPEC §3.2, first bullet): traversal,
//! encodings, NUL, dotfiles, and symlinks inside and outside the origin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http::Method;

#[tokio::test]
async fn plain_file_is_served() {
    let s = Site::new();
    s.file("a.txt", "hello");
    s.file("sub/b.html", "<p>b</p>");
    let a = get(&s, "/a.txt").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "hello");
    assert_eq!(get(&s, "/sub/b.html").await.text(), "<p>b</p>");
    assert_eq!(get(&s, "//sub///b.html").await.status, 200);
    assert_eq!(get(&s, "/missing.txt").await.status, 404);
    assert_eq!(get(&s, "/nodir/missing.txt").await.status, 404);
}

#[tokio::test]
async fn traversal_is_forbidden() {
    let s = Site::new();
    s.outside("secret.txt", "secret");
    for uri in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/x%2f..%2f..%2fsecret.txt",
    ] {
        let a = get(&s, uri).await;
        assert_eq!(a.status, 403, "{uri}");
        assert!(a.body.is_empty());
    }
}

#[tokio::test]
async fn encoded_slash_separates_segments() {
    let s = Site::new();
    s.file("sub/b.txt", "b");
    let a = get(&s, "/sub%2Fb.txt").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "b");
    assert_eq!(get(&s, "/sub%2fb.txt").await.status, 200);
}

#[tokio::test]
async fn double_encoding_is_just_a_name() {
    let s = Site::new();
    s.outside("secret.txt", "secret");
    // `%252e%252e` decodes once to the name `%2e%2e`, which does not exist.
    assert_eq!(get(&s, "/%252e%252e/secret.txt").await.status, 404);
    assert_eq!(get(&s, "/%252e%252e%252fsecret.txt").await.status, 404);
    // And it is an ordinary name when it exists.
    s.file("%2e%2e/x.txt", "literal");
    assert_eq!(get(&s, "/%252e%252e/x.txt").await.text(), "literal");
    // Percent-encoded ordinary characters decode.
    s.file("a b.txt", "space");
    assert_eq!(get(&s, "/a%20b.txt").await.text(), "space");
}

#[tokio::test]
async fn nul_is_forbidden() {
    let s = Site::new();
    s.file("a.txt", "a");
    assert_eq!(get(&s, "/a.txt%00").await.status, 403);
    assert_eq!(get(&s, "/a.txt%00.html").await.status, 403);
    assert_eq!(get(&s, "/%00").await.status, 403);
}

#[tokio::test]
async fn malformed_encoding_is_bad_request() {
    let s = Site::new();
    s.file("a.txt", "a");
    for uri in ["/%zz", "/a%4", "/a.txt%", "/%4g.txt"] {
        assert_eq!(get(&s, uri).await.status, 400, "{uri}");
    }
}

#[tokio::test]
async fn dotfiles_are_not_found() {
    let s = Site::new();
    s.file(".htpasswd.txt", "secret");
    s.file(".git/config.txt", "secret");
    s.file("sub/.env.txt", "secret");
    s.file("sub/.well-known/x.txt", "nested");
    for uri in [
        "/.htpasswd.txt",
        "/.git/config.txt",
        "/sub/.env.txt",
        "/%2egit/config.txt",
        "/sub/.well-known/x.txt",
    ] {
        assert_eq!(get(&s, uri).await.status, 404, "{uri}");
    }
}

#[tokio::test]
async fn well_known_is_allowed_first() {
    let s = Site::new();
    s.file(".well-known/acme-challenge/token.txt", "proof");
    let a = get(&s, "/.well-known/acme-challenge/token.txt").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "proof");
}

#[tokio::test]
async fn symlink_outside_the_root_is_forbidden() {
    let s = Site::new();
    let secret = s.outside("secret.txt", "secret");
    s.symlink("abs.txt", &secret);
    s.symlink("rel.txt", "../secret.txt");
    s.symlink("outdir", s.dir.path());
    for uri in ["/abs.txt", "/rel.txt", "/outdir/secret.txt"] {
        let a = get(&s, uri).await;
        assert_eq!(a.status, 403, "{uri}");
        assert!(a.body.is_empty());
    }
}

#[tokio::test]
async fn symlink_inside_the_root_is_served() {
    let s = Site::new();
    s.file("real/a.txt", "inside");
    s.symlink("link.txt", "real/a.txt");
    s.symlink("linkdir", "real");
    std::os::unix::fs::symlink("../real/a.txt", s.root.join("real/up.txt")).unwrap();
    for uri in ["/link.txt", "/linkdir/a.txt", "/real/up.txt"] {
        let a = get(&s, uri).await;
        assert_eq!(a.status, 200, "{uri}");
        assert_eq!(a.text(), "inside");
    }
}

#[tokio::test]
async fn a_symlinked_root_still_serves() {
    let s = Site::new();
    s.file("a.txt", "a");
    let alias = s.dir.path().join("alias");
    std::os::unix::fs::symlink(&s.root, &alias).unwrap();
    let parts = head(Method::GET, "/a.txt", &[]);
    let a = answer(lwsws_mounts::file::serve(&parts, &mount(), &alias, "/a.txt").await).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn special_files_are_forbidden() {
    let s = Site::new();
    nix::unistd::mkfifo(
        &s.root.join("pipe.txt"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    assert_eq!(get(&s, "/pipe.txt").await.status, 403);
}

#[tokio::test]
async fn missing_origin_directory_is_a_server_error() {
    let s = Site::new();
    let parts = head(Method::GET, "/a.txt", &[]);
    let gone = s.dir.path().join("gone");
    let a = answer(lwsws_mounts::file::serve(&parts, &mount(), &gone, "/a.txt").await).await;
    assert_eq!(a.status, 500);
}
