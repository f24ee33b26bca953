//! The small-file cache (SPEC §9): `serve_cached` answers exactly like
//! `serve`, serves unchanged files from memory, and notices changes,
//! symlink swaps and limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use http::Method;
use lwsws_config::Mount;
use lwsws_mounts::file::{self, FileCache, FileCacheLimits};
use std::time::{Duration, SystemTime};

type Headers<'a> = Vec<(&'a str, &'a str)>;

/// Sets the mtime an hour back: files this fresh are not cached.
fn age(path: &std::path::Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

async fn cached(
    cache: &FileCache,
    m: &Mount,
    s: &Site,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let parts = head(method, uri, headers);
    let remainder = parts.uri.path().to_string();
    answer(file::serve_cached(&parts, m, &s.root, &remainder, cache).await).await
}

async fn cget(cache: &FileCache, s: &Site, uri: &str) -> Answer {
    cached(cache, &mount(), s, Method::GET, uri, &[]).await
}

#[tokio::test]
async fn answers_like_serve() {
    let s = Site::new();
    for (rel, content) in [
        ("a.txt", "hello"),
        ("d/index.html", "index"),
        ("app.js", "plain"),
        ("app.js.gz", "GZIPPED"),
        ("README", "readme"),
    ] {
        age(&s.file(rel, content));
    }
    let mut m = mount();
    m.default = Some("index.html".into());
    let etag = get(&s, "/a.txt").await.header("etag").unwrap().to_string();
    let cache = FileCache::default();
    let cases: Vec<(Method, &str, Headers)> = vec![
        (Method::GET, "/a.txt", vec![]),
        (Method::HEAD, "/a.txt", vec![]),
        (Method::GET, "/a.txt", vec![("range", "bytes=1-3")]),
        (Method::GET, "/a.txt", vec![("range", "bytes=9-")]),
        (Method::GET, "/a.txt", vec![("if-none-match", &etag)]),
        (Method::GET, "/a.txt", vec![("if-match", "\"x\"")]),
        (Method::GET, "/d", vec![]),
        (Method::GET, "/d/", vec![]),
        (Method::GET, "/app.js", vec![]),
        (Method::GET, "/app.js", vec![("accept-encoding", "gzip")]),
        (Method::GET, "/README", vec![]),
        (Method::GET, "/missing.txt", vec![]),
        (Method::GET, "/../x", vec![]),
        (Method::POST, "/a.txt", vec![]),
    ];
    for _round in 0..2 {
        for (method, uri, headers) in &cases {
            let plain = serve_with(&m, &s, method.clone(), uri, headers).await;
            let hit = cached(&cache, &m, &s, method.clone(), uri, headers).await;
            assert_eq!(plain.status, hit.status, "{method} {uri} {headers:?}");
            assert_eq!(plain.headers, hit.headers, "{method} {uri} {headers:?}");
            assert_eq!(plain.body, hit.body, "{method} {uri} {headers:?}");
        }
    }
    let (entries, bytes) = cache.usage();
    assert!(entries >= 4, "{entries}");
    assert!(bytes > 0);
}

#[tokio::test]
async fn hit_is_served_from_memory() {
    let s = Site::new();
    age(&s.file("a.txt", "hello"));
    let cache = FileCache::default();
    assert_eq!(cget(&cache, &s, "/a.txt").await.text(), "hello");
    assert_eq!(cache.usage(), (1, 5));
    let parts = head(Method::GET, "/a.txt", &[]);
    let resp = file::serve_cached(&parts, &mount(), &s.root, "/a.txt", &cache)
        .await
        .unwrap();
    assert!(matches!(resp.body(), lwsws_mounts::Body::Full(_)));
}

#[tokio::test]
async fn changed_files_are_reread() {
    let s = Site::new();
    let p = s.file("a.txt", "first");
    age(&p);
    let cache = FileCache::default();
    assert_eq!(cget(&cache, &s, "/a.txt").await.text(), "first");
    // Same size, same mtime: ctime still tells.
    let mtime = p.metadata().unwrap().modified().unwrap();
    std::fs::write(&p, "other").unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(mtime).unwrap();
    assert_eq!(p.metadata().unwrap().modified().unwrap(), mtime);
    assert_eq!(cget(&cache, &s, "/a.txt").await.text(), "other");
    // Replaced by another file (another inode).
    let tmp = s.file("new.tmp", "replaced!");
    age(&tmp);
    std::fs::rename(&tmp, &p).unwrap();
    assert_eq!(cget(&cache, &s, "/a.txt").await.text(), "replaced!");
    // Removed.
    std::fs::remove_file(&p).unwrap();
    assert_eq!(cget(&cache, &s, "/a.txt").await.status, 404);
    assert_eq!(cache.usage().0, 0);
}

#[tokio::test]
async fn fresh_files_are_not_cached() {
    let s = Site::new();
    s.file("a.txt", "just written");
    let cache = FileCache::default();
    assert_eq!(cget(&cache, &s, "/a.txt").await.text(), "just written");
    assert_eq!(cache.usage().0, 0);
}

#[tokio::test]
async fn symlink_swapped_to_the_outside_is_refused() {
    let s = Site::new();
    age(&s.file("real.txt", "inside"));
    let secret = s.outside("secret.txt", "secret");
    age(&secret);
    s.symlink("link.txt", "real.txt");
    let cache = FileCache::default();
    assert_eq!(cget(&cache, &s, "/link.txt").await.text(), "inside");
    assert_eq!(cache.usage().0, 1);
    std::fs::remove_file(s.root.join("link.txt")).unwrap();
    s.symlink("link.txt", &secret);
    let a = cget(&cache, &s, "/link.txt").await;
    assert_eq!(a.status, 403);
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn mounts_on_one_root_keep_their_own_rules() {
    let s = Site::new();
    age(&s.file("README", "readme"));
    let mut any = mount();
    any.serve_any_type = true;
    let cache = FileCache::default();
    let a = cached(&cache, &any, &s, Method::GET, "/README", &[]).await;
    assert_eq!(a.status, 200);
    let a = cached(&cache, &mount(), &s, Method::GET, "/README", &[]).await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn limits_are_kept() {
    let s = Site::new();
    for name in ["a.txt", "b.txt", "c.txt"] {
        age(&s.file(name, "0123456789"));
    }
    age(&s.file("big.txt", vec![b'x'; 100]));
    let cache = FileCache::new(FileCacheLimits {
        max_file_size: 50,
        max_total_size: 25,
        max_entries: 10,
        revalidate_after: Duration::from_secs(60),
    });
    for name in ["/a.txt", "/b.txt", "/c.txt", "/big.txt"] {
        assert_eq!(cget(&cache, &s, name).await.status, 200);
    }
    let (entries, bytes) = cache.usage();
    assert_eq!(entries, 2);
    assert_eq!(bytes, 20);
    // Too large to cache, but served whole.
    assert_eq!(cget(&cache, &s, "/big.txt").await.body.len(), 100);

    let cache = FileCache::new(FileCacheLimits {
        max_entries: 1,
        ..FileCacheLimits::default()
    });
    for name in ["/a.txt", "/b.txt", "/c.txt"] {
        assert_eq!(cget(&cache, &s, name).await.text(), "0123456789");
    }
    assert_eq!(cache.usage(), (1, 10));
}

#[tokio::test]
async fn new_siblings_show_after_revalidation() {
    let s = Site::new();
    age(&s.file("app.js", "plain"));
    let cache = FileCache::new(FileCacheLimits {
        revalidate_after: Duration::ZERO,
        ..FileCacheLimits::default()
    });
    let ae = [("accept-encoding", "gzip")];
    let a = cached(&cache, &mount(), &s, Method::GET, "/app.js", &ae).await;
    assert_eq!(a.text(), "plain");
    age(&s.file("app.js.gz", "GZ"));
    let a = cached(&cache, &mount(), &s, Method::GET, "/app.js", &ae).await;
    assert_eq!(a.text(), "GZ");
    assert_eq!(a.header("content-encoding"), Some("gzip"));
}
