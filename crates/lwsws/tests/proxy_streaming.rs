//! Reverse-proxy bodies stream (SPEC §3.5): a 500 MiB response and a 500 MiB
//! upload pass through while the server's resident memory stays under 64
//! MiB, and a slow upstream's body reaches the client byte by byte, before
//! the upstream has finished sending it. A client that stops reading
//! brings the upstream to a halt (backpressure), and one that leaves frees
//! the upstream connection. The upstream is
//! `fixtures/proxy/upstream.py big` / `slow`; both directions carry blocks
//! that name their own index, so a lost, repeated or reordered block is seen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::proxy::{Upstream, rss_kib, start_proxy};
use common::{connect, read_response, read_to_close};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::io::{BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// The size of the large transfers.
const BIG: usize = 500 * 1024 * 1024;
/// The largest summed VmRSS (KiB) the server may reach meanwhile.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Block size of the pattern (as `BLOCK` in upstream.py).
const BLOCK: usize = 65536;

/// Block `i` of the pattern: its index in 16 hex digits, then `i % 251`.
fn block(i: usize) -> Vec<u8> {
    let mut b = vec![u8::try_from(i % 251).unwrap(); BLOCK];
    b[..16].copy_from_slice(format!("{i:016x}").as_bytes());
    b
}

/// lwsws with `/b` → the upstream's root, and that upstream.
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
        &format!(r#"{{ "mountpoint": "/b", "origin": "{}" }}"#, up.url("/")),
    );
    Proxy {
        server,
        up,
        port,
        dir,
    }
}

/// Runs `work` while sampling the server's memory every 50 ms; returns its
/// result and the largest sum seen (KiB).
fn max_rss_during<T>(server: &Lwsws, work: impl FnOnce() -> T) -> (T, u64) {
    /// Stops the sampler even when `work` panics.
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut max = 0;
            while !done.load(Ordering::SeqCst) {
                max = max.max(rss_kib(server));
                thread::sleep(Duration::from_millis(50));
            }
            max
        });
        let out = {
            let _done = Done(&done);
            work()
        };
        (out, sampler.join().unwrap())
    })
}

#[test]
fn a_500_mib_response_streams_with_small_server_memory() {
    let p = start("big");
    let (received, max_kib) = max_rss_during(&p.server, || {
        let sock = connect(p.port);
        (&sock)
            .write_all(
                format!(
                    "GET /b/big/{BIG} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        let mut r = BufReader::with_capacity(1 << 16, &sock);
        let head = read_response(&mut r, true);
        assert_eq!(head.status, 200, "{}", p.server.log());
        assert_eq!(
            head.header("content-length"),
            Some(BIG.to_string().as_str())
        );
        let mut buf = vec![0u8; BLOCK];
        for i in 0..BIG / BLOCK {
            r.read_exact(&mut buf)
                .unwrap_or_else(|e| panic!("block {i} of {}: {e}", BIG / BLOCK));
            assert!(buf == block(i), "block {i} differs");
        }
        // Nothing after the announced length.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes past Content-Length", rest.len());
        BIG
    });
    assert_eq!(received, BIG);
    assert!(
        max_kib < RSS_LIMIT_KIB,
        "lwsws reached {max_kib} KiB of resident memory relaying {BIG} bytes"
    );
}

#[test]
fn a_500_mib_upload_streams_with_small_server_memory() {
    let p = start("big");
    let (reply, max_kib) = max_rss_during(&p.server, || {
        let mut sock = connect(p.port);
        sock.write_all(
            format!(
                "PUT /b/count HTTP/1.1\r\nHost: proxy.test\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {BIG}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        for i in 0..BIG / BLOCK {
            if let Err(e) = sock.write_all(&block(i)) {
                let got = read_to_close(&mut sock);
                panic!(
                    "sending block {i}: {e}; the server said {:?}\n{}",
                    String::from_utf8_lossy(&got),
                    p.server.log()
                );
            }
        }
        let mut r = BufReader::new(&sock);
        read_response(&mut r, false)
    });
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), p.up.log());
    let counted: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(counted["len"], BIG, "{counted}");
    assert_eq!(counted["good"], BIG / BLOCK, "{counted}");
    assert!(counted["bad"].is_null(), "{counted}");
    assert!(
        max_kib < RSS_LIMIT_KIB,
        "lwsws reached {max_kib} KiB of resident memory relaying a {BIG}-byte upload"
    );
}

#[test]
fn a_slow_body_is_relayed_as_it_comes() {
    let p = start("slow");
    // The upstream sends one byte every 100 ms, then waits for `ack` before
    // it creates `last` and sends the last one.
    let flags = p.dir.mkdir("flags");
    let n = 20;
    let sock = connect(p.port);
    (&sock)
        .write_all(
            format!(
                "GET /b/slow?n={n}&dir={} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
                flags.display()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut r = BufReader::new(&sock);
    let head = read_response(&mut r, true);
    assert_eq!(head.status, 200, "{}", p.server.log());
    let mut first = [0u8; 1];
    r.read_exact(&mut first).unwrap();
    assert!(
        !flags.join("last").exists(),
        "the first byte arrived only after the upstream had sent its last"
    );
    assert_eq!(&first, b"a");
    std::fs::write(flags.join("ack"), "").unwrap();
    let mut body = first.to_vec();
    r.read_to_end(&mut body).unwrap();
    let expected: Vec<u8> = (b'a'..).take(n).collect();
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected)
    );
    assert!(flags.join("last").exists());
}

#[test]
fn a_client_that_stops_reading_stalls_the_upstream_and_one_that_leaves_frees_it() {
    let p = start("big");
    let progress = p.dir.path().join("progress");
    let total: u64 = 2 << 30;
    let sent = || -> u64 {
        std::fs::read_to_string(&progress)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let sock = connect(p.port);
    (&sock)
        .write_all(
            format!(
                "GET /b/big/{total}?progress={} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
                progress.display()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut r = BufReader::new(&sock);
    let head = read_response(&mut r, true);
    assert_eq!(head.status, 200, "{}", p.server.log());
    let mut first = vec![0u8; 1 << 20];
    r.read_exact(&mut first).unwrap();
    assert!(first[..BLOCK] == block(0));

    // The client reads no more: the upstream must come to a halt once the
    // buffers between them are full (its count stays the same for 1 s),
    // far short of the whole body.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = (sent(), std::time::Instant::now());
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = sent();
        if now != last.0 {
            last = (now, std::time::Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream never stopped sending ({now} bytes)"
        );
    }
    let stalled_at = last.0;
    assert!(
        stalled_at < 128 << 20,
        "the upstream sent {stalled_at} bytes to a client that read 1 MiB"
    );
    let kib = rss_kib(&p.server);
    assert!(kib < RSS_LIMIT_KIB, "lwsws holds {kib} KiB");

    // The client leaves: lwsws must let go of the upstream connection, and
    // the upstream's blocked write fails.
    drop(r);
    drop(sock);
    let aborted = progress.with_extension("aborted");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !aborted.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream is still connected 20 s after the client left ({} bytes sent)\n{}",
            sent(),
            p.up.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(sent() < total);
}
