//! Range requests on file mounts (SPEC §3.2; RFC 9110 §14): 206, 416,
//! several ranges, invalid syntax, and If-Range.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

const DIGITS: &str = "0123456789";

#[tokio::test]
async fn single_ranges_give_206() {
    let s = Site::new();
    s.file("d.txt", DIGITS);
    for (range, body, cr) in [
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=0-0", "0", "bytes 0-0/10"),
        ("bytes=5-999", "56789", "bytes 5-9/10"),
        ("bytes=-50", DIGITS, "bytes 0-9/10"),
    ] {
        let a = get_h(&s, "/d.txt", &[("range", range)]).await;
        assert_eq!(a.status, 206, "{range}");
        assert_eq!(a.text(), body, "{range}");
        assert_eq!(a.header("content-range"), Some(cr), "{range}");
        assert_eq!(
            a.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(a.header("etag").is_some());
    }
}

#[tokio::test]
async fn ranges_across_chunks_of_a_large_file() {
    let s = Site::new();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    s.file("big.bin", &data);
    let a = get_h(&s, "/big.bin", &[("range", "bytes=65000-200000")]).await;
    assert_eq!(a.status, 206);
    assert_eq!(a.body, &data[65000..=200000]);
    assert_eq!(a.header("content-range"), Some("bytes 65000-200000/300000"));
}

#[tokio::test]
async fn unsatisfiable_gives_416() {
    let s = Site::new();
    s.file("d.txt", DIGITS);
    s.file("empty.txt", "");
    for (uri, range, cr) in [
        ("/d.txt", "bytes=10-", "bytes */10"),
        ("/d.txt", "bytes=20-30", "bytes */10"),
        ("/d.txt", "bytes=-0", "bytes */10"),
        ("/empty.txt", "bytes=0-", "bytes */0"),
    ] {
        let a = get_h(&s, uri, &[("range", range)]).await;
        assert_eq!(a.status, 416, "{range}");
        assert_eq!(a.header("content-range"), Some(cr), "{range}");
    }
}

#[tokio::test]
async fn several_ranges_give_the_whole_file() {
    let s = Site::new();
    s.file("d.txt", DIGITS);
    let a = get_h(&s, "/d.txt", &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), DIGITS);
    assert_eq!(a.header("content-range"), None);
}

#[tokio::test]
async fn invalid_range_is_ignored() {
    let s = Site::new();
    s.file("d.txt", DIGITS);
    for range in ["bytes=5-2", "bytes=a-b", "lines=1-2", "bytes=", "bytes 1-2"] {
        let a = get_h(&s, "/d.txt", &[("range", range)]).await;
        assert_eq!(a.status, 200, "{range}");
        assert_eq!(a.text(), DIGITS);
    }
}

#[tokio::test]
async fn if_range_with_current_validators_honours_range() {
    let s = Site::new();
    s.file("d.txt", DIGITS);
    let full = get(&s, "/d.txt").await;
    let etag = full.header("etag").unwrap();
    let lm = full.header("last-modified").unwrap();
    for if_range in [etag, lm] {
        let a = get_h(
            &s,
            "/d.txt",
            &[("range", "bytes=1-2"), ("if-range", if_range)],
        )
        .await;
        assert_eq!(a.status, 206, "{if_range}");
        assert_eq!(a.text(), "12");
    }
}

#[tokio::test]
async fn if_range_mismatch_gives_the_whole_file() {
    let s = Site::new();
    s.file("d.txt", DIGITS);
    let etag = get(&s, "/d.txt").await.header("etag").unwrap().to_string();
    let weak = format!("W/{etag}");
    for if_range in [
        "\"stale\"",
        weak.as_str(),
        "Sun, 09 Sep 2001 01:46:40 GMT",
        "junk",
    ] {
        let a = get_h(
            &s,
            "/d.txt",
            &[("range", "bytes=1-2"), ("if-range", if_range)],
        )
        .await;
        assert_eq!(a.status, 200, "{if_range}");
        assert_eq!(a.text(), DIGITS);
    }
    // Mismatch with an unsatisfiable range: the whole file, not 416.
    let a = get_h(
        &s,
        "/d.txt",
        &[("range", "bytes=50-"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn not_modified_wins_over_range() {
    let s = Site::new();
    s.file("d.txt", DIGITS);
    let etag = get(&s, "/d.txt").await.header("etag").unwrap().to_string();
    let a = get_h(
        &s,
        "/d.txt",
        &[("range", "bytes=1-2"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(a.status, 304);
}
