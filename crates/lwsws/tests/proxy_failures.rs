//! When the upstream fails (SPEC §3.5, §3.1 `proxy-timeout-secs`): nobody
//! listening gives 502; an upstream that never answers gives 504 once
//! `proxy-timeout-secs` has passed; an upstream that stops sending in the
//! middle of a body, or dies there (closing or resetting its connection,
//! with a Content-Length or a chunked body), leaves the client with an
//! aborted transfer, never one that looks complete (while a body that the
//! upstream ends by closing, as HTTP/1.0 servers do, arrives whole); a
//! client that abandons an upload never gives the upstream a
//! complete-looking body; and an upstream that closes its kept-alive
//! connections after each answer causes no error (the pool must not hand out
//! a connection the upstream has closed). The upstreams are
//! `fixtures/proxy/upstream.py hang`, `cut`, `slow`, `big` and `echo`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::proxy::{Upstream, start_proxy};
use common::{Reply, connect, curl, parse_head, read_to_close};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

/// `proxy-timeout-secs` of the mounts that use one.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a 504 may take at most: a generous liveness bound.
const TIMEOUT_BOUND: Duration = Duration::from_secs(10);

/// lwsws with `/u` → the upstream's root (`proxy-timeout-secs` 2).
struct Proxy {
    server: Lwsws,
    up: Upstream,
    port: u16,
    dir: ConfigDir,
}

fn start(mode: &str) -> Proxy {
    let up = Upstream::start("upstream.py", &[mode]);
    let dir = ConfigDir::new();
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/u", "origin": "{}", "proxy-timeout-secs": "{}" }}"#,
            up.url("/"),
            TIMEOUT.as_secs()
        ),
    );
    Proxy {
        server,
        up,
        port,
        dir,
    }
}

/// A response read until the server closed the connection, and whether
/// its framing says the body is complete.
struct Read {
    reply: Reply,
    complete: bool,
}

/// `GET path` on a new connection, read to the end.
fn fetch(port: u16, path: &str) -> Read {
    fetch_or_nothing(port, path).unwrap_or_else(|| panic!("no complete head in \"\" for {path}"))
}

/// Like [`fetch`], but `None` when the server closed without a byte: when
/// an upstream resets before its first body bytes were forwarded, the head
/// was never flushed and the client sees the connection end, which is as
/// incomplete as a response can be.
fn fetch_or_nothing(port: u16, path: &str) -> Option<Read> {
    let mut s = connect(port);
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let bytes = read_to_close(&mut s);
    if bytes.is_empty() {
        return None;
    }
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(&bytes)));
    let (status, headers) = parse_head(&String::from_utf8_lossy(&bytes[..end]));
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let raw = &bytes[end + 4..];
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let complete = if chunked {
        let (body, last_chunk) = dechunk(raw);
        reply.body = body;
        last_chunk
    } else if let Some(len) = reply.header("content-length") {
        let len: usize = len.parse().unwrap();
        reply.body = raw.to_vec();
        raw.len() >= len
    } else {
        // Delimited by the close: whatever came looks complete.
        reply.body = raw.to_vec();
        true
    };
    Some(Read { reply, complete })
}

/// The data of the chunks in `raw`, and whether the terminating zero-size
/// chunk (with its final CRLF) was among them.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let line = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        raw = &raw[eol + 2..];
        if size == 0 {
            // No trailers here: the blank line ends the message.
            return (body, raw.starts_with(b"\r\n"));
        }
        if raw.len() < size + 2 {
            body.extend_from_slice(&raw[..raw.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// curl's exit code for `GET url` (the body is thrown away).
fn curl_exit(url: &str) -> i32 {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o", "/dev/null", url])
        .output()
        .expect("run curl");
    out.status.code().expect("curl killed by a signal")
}

#[test]
fn an_upstream_nobody_listens_on_gives_502() {
    let dir = ConfigDir::new();
    let port = free_port();
    let dead = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/d", "origin": "http://127.0.0.1:{dead}/" }},
               {{ "mountpoint": "/s", "origin": "http://unix:{}:/x" }}"#,
            dir.path().join("nobody.sock").display()
        ),
    );
    for path in ["/d/x", "/d", "/s/x"] {
        let r = curl(&[
            "--data-binary",
            "a body nobody reads",
            &format!("http://127.0.0.1:{port}{path}"),
        ]);
        assert_eq!(r.status, 502, "{path}: {}", server.log());
        let r = curl(&[&format!("http://127.0.0.1:{port}{path}")]);
        assert_eq!(r.status, 502, "{path}");
    }
}

#[test]
fn an_upstream_that_never_answers_gives_504_after_the_timeout() {
    let p = start("hang");
    let started = Instant::now();
    let r = curl(&[&format!("http://127.0.0.1:{}/u/anything", p.port)]);
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", p.server.log());
    assert!(took < TIMEOUT_BOUND, "504 after {took:?}");
    // tokio timers never fire early; a little slack for clock granularity.
    assert!(
        took >= TIMEOUT - Duration::from_millis(100),
        "504 after only {took:?}"
    );
}

#[test]
fn a_body_cut_short_with_a_content_length_is_an_aborted_transfer() {
    let p = start("cut");
    for how in ["close", "reset"] {
        let path = format!("/u/cut-length?how={how}");
        let read = fetch(p.port, &path);
        assert_eq!(read.reply.status, 200, "{how}");
        assert!(
            !read.complete,
            "{how}: a complete-looking response ({} body bytes, headers {:?})",
            read.reply.body.len(),
            read.reply.headers
        );
        assert!(read.reply.body.len() <= 1000, "{how}");
        assert!(
            read.reply.body.iter().all(|&b| b == b'x'),
            "{how}: bytes the upstream never sent"
        );
        // curl: 18 "partial file", or 56 if lwsws resets the connection.
        let code = curl_exit(&format!("http://127.0.0.1:{}{path}", p.port));
        assert!(matches!(code, 18 | 56), "{how}: curl exited with {code}");
    }
}

#[test]
fn a_chunked_body_cut_short_never_gets_its_last_chunk() {
    let p = start("cut");
    for how in ["close", "reset"] {
        let path = format!("/u/cut-chunked?how={how}");
        // A reset can reach lwsws before the first chunk was forwarded; the
        // client then gets nothing at all, which is incomplete too.
        let Some(read) = fetch_or_nothing(p.port, &path) else {
            let code = curl_exit(&format!("http://127.0.0.1:{}{path}", p.port));
            assert_ne!(code, 0, "{how}: curl saw a complete response");
            continue;
        };
        assert_eq!(read.reply.status, 200, "{how}");
        assert!(
            !read.complete,
            "{how}: the terminating chunk reached the client (body {:?}, headers {:?})",
            read.reply.text(),
            read.reply.headers
        );
        assert!(
            "hello world".starts_with(&read.reply.text()),
            "{how}: {:?}",
            read.reply.text()
        );
        let code = curl_exit(&format!("http://127.0.0.1:{}{path}", p.port));
        assert!(matches!(code, 18 | 56), "{how}: curl exited with {code}");
    }
}

#[test]
fn an_upstream_that_stalls_inside_its_body_is_cut_off() {
    // The slow upstream waits 10 s for an `ack` that never comes before its
    // last byte: a gap far longer than `proxy-timeout-secs`.
    let p = start("slow");
    let flags = p.dir.mkdir("flags");
    let started = Instant::now();
    let read = fetch(p.port, &format!("/u/slow?n=3&dir={}", flags.display()));
    let took = started.elapsed();
    assert_eq!(read.reply.status, 200);
    assert!(
        !read.complete,
        "a complete-looking response after {took:?}: {:?}",
        read.reply.text()
    );
    assert_eq!(read.reply.text(), "ab");
    assert!(
        !flags.join("last").exists(),
        "the body was cut only after the upstream had sent everything ({took:?})"
    );
    assert!(p.up.log().contains("GET /slow"), "{}", p.up.log());
}

#[test]
fn an_upstream_that_closes_kept_alive_connections_causes_no_errors() {
    // Each answer is followed by a close the upstream does not announce: a
    // pooled connection may be dead by the time the next request wants it.
    // The requests follow each other at once on one kept-alive connection.
    let p = start("echo");
    let sock = connect(p.port);
    let mut r = std::io::BufReader::new(&sock);
    let mut statuses = Vec::new();
    for i in 0..200 {
        (&sock)
            .write_all(
                format!("GET /u/n{i}?close=silently HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        statuses.push(common::read_response(&mut r, false).status);
    }
    let failed = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(failed, 0, "{statuses:?}\n{}", p.server.log());
}

#[test]
fn an_upload_the_client_abandons_never_looks_complete_upstream() {
    // The `count` upstream logs "count: started" for each request, then one
    // outcome: "count: complete N" or "count: cut short ...".
    let p = start("big");
    let lines = |prefix: &str| -> Vec<String> {
        p.up.log()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    };
    let outcomes = || -> Vec<String> {
        let mut v = lines("count: complete");
        v.extend(lines("count: cut short"));
        v
    };
    for (round, (framing, head, part)) in [
        (
            "content-length",
            "Content-Length: 1000000",
            vec![b'u'; 1000],
        ),
        (
            "chunked",
            "Transfer-Encoding: chunked",
            [&b"3e8\r\n"[..], &[b'u'; 1000], b"\r\n"].concat(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = connect(p.port);
        s.write_all(
            format!("PUT /u/count HTTP/1.1\r\nHost: proxy.test\r\n{head}\r\n\r\n").as_bytes(),
        )
        .unwrap();
        s.write_all(&part).unwrap();
        // Leave once the upstream is reading the body.
        let deadline = Instant::now() + Duration::from_secs(20);
        while lines("count: started").len() <= round {
            assert!(
                Instant::now() < deadline,
                "{framing}: the upstream never got the request\n{}",
                p.server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(20);
        while outcomes().len() <= round {
            assert!(
                Instant::now() < deadline,
                "{framing}: the upstream is still reading 20 s after the client left\n{}",
                p.up.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let complete = lines("count: complete");
        assert!(
            complete.is_empty(),
            "{framing}: the upstream took an abandoned upload for a whole one: {complete:?}"
        );
    }
}

#[test]
fn a_body_the_upstream_ends_by_closing_is_complete() {
    // Neither Content-Length nor chunked: the close ends the body, and the
    // client must be told where it ends.
    let p = start("cut");
    let expected: String = (0..20000).map(|i| format!("{i:08}\n")).collect();
    for _ in 0..3 {
        let read = fetch(p.port, "/u/close-delimited");
        assert_eq!(read.reply.status, 200);
        assert!(read.complete, "{:?}", read.reply.headers);
        assert!(
            read.reply.body == expected.as_bytes(),
            "{} bytes, expected {}",
            read.reply.body.len(),
            expected.len()
        );
        let r = curl(&[&format!("http://127.0.0.1:{}/u/close-delimited", p.port)]);
        assert!(r.body == expected.as_bytes());
    }
}
