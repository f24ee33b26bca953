//! Limits, framing defences and connection handling (SPEC §3.7, §3.8, §2.3):
//! oversized heads (431) and URIs (414), heads that never complete
//! (`timeout-secs`), ambiguous framing (400 and a closed connection),
//! keep-alive that outlives `timeout-secs`, pipelining, HTTP/1.0 without
//! Host, and the small HTML error pages. Requests are written byte for byte
//! on raw sockets, since ordinary clients refuse to send most of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Reply, bin, connect, exchange, get, parse_responses, read_response, read_to_close};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

/// `timeout-secs` of every server here.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client that stalls may stay connected, at most: a generous
/// liveness bound, several times `HEAD_TIMEOUT`.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// A server with `timeout-secs` 2 and two vhosts on one port, `first.test`
/// (keep-alive timeout 30 s) and `second.test`. The server's files live as
/// long as the returned [`Site`].
fn start() -> Site {
    let dir = ConfigDir::new();
    dir.write_file("www1/index.html", "first\n");
    dir.write_file("www1/a.txt", "aaa\n");
    dir.write_file("www1/b.txt", "bbbb\n");
    dir.write_file("www2/index.html", "second\n");
    let port = free_port();
    dir.write_conf(&format!(
        r#"{{ "global": {{ "timeout-secs": "{}" }} }}"#,
        HEAD_TIMEOUT.as_secs()
    ));
    let mount = |root: &str| {
        format!(
            r#"[{{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }}]"#,
            dir.path().join(root).display()
        )
    };
    dir.write_conf_d(
        "sites",
        &format!(
            r#"{{ "vhosts": [
                {{ "name": "first.test", "port": "{port}", "keepalive-timeout": "30", "mounts": {} }},
                {{ "name": "second.test", "port": "{port}", "keepalive-timeout": "30", "mounts": {} }}
            ] }}"#,
            mount("www1"),
            mount("www2")
        ),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    Site {
        port,
        server,
        _dir: dir,
    }
}

struct Site {
    port: u16,
    server: Lwsws,
    /// The document roots; deleted when the test ends.
    _dir: ConfigDir,
}

/// Asserts `r` is a small HTML error page for `code`.
fn assert_error_page(r: &Reply, code: u16) {
    assert_eq!(r.status, code, "{:?}", r.text());
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/html"), "{code}: Content-Type {ct:?}");
    assert!(r.text().contains(&code.to_string()), "{:?}", r.text());
    assert!(
        r.body.len() < 2048,
        "{code}: a {}-byte error page",
        r.body.len()
    );
}

/// Sends `request` on a new connection and reads the first response.
fn first_response(port: u16, request: &[u8]) -> Reply {
    let s = connect(port);
    (&s).write_all(request).unwrap();
    read_response(&mut BufReader::new(&s), false)
}

#[test]
fn a_20_kib_header_gets_431() {
    let site = start();
    let port = site.port;
    let big = "a".repeat(20 * 1024);
    let r = first_response(
        port,
        format!("GET /a.txt HTTP/1.1\r\nHost: first.test\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_error_page(&r, 431);
    // Just under the limit is fine.
    let ok = "a".repeat(15 * 1024);
    let r = first_response(
        port,
        format!("GET /a.txt HTTP/1.1\r\nHost: first.test\r\nX-Ok: {ok}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", site.server.log());
    assert_eq!(r.text(), "aaa\n");
}

#[test]
fn more_than_100_headers_get_431() {
    let site = start();
    let port = site.port;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = first_response(
        port,
        format!("GET /a.txt HTTP/1.1\r\nHost: first.test\r\n{many}\r\n").as_bytes(),
    );
    assert_error_page(&r, 431);
}

#[test]
fn a_10_kib_uri_gets_414() {
    let site = start();
    let port = site.port;
    let path = "a".repeat(10 * 1024);
    let r = first_response(
        port,
        format!("GET /{path} HTTP/1.1\r\nHost: first.test\r\n\r\n").as_bytes(),
    );
    assert_error_page(&r, 414);
}

/// Reads from `s` for one second and asserts that nothing arrived and the
/// connection is still open.
fn assert_open_for_a_second(s: &mut std::net::TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 1024];
    match s.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("closed or answered within the first second: {other:?}"),
    }
}

/// Waits for the server to close `s` (anything it sends first, such as a
/// 408, is accepted) and asserts that it did so within [`CLOSE_BOUND`] of
/// `since`.
fn assert_closed_soon(s: &mut std::net::TcpStream, since: Instant) {
    s.set_read_timeout(Some(CLOSE_BOUND)).unwrap();
    read_to_close(s);
    assert!(
        since.elapsed() < CLOSE_BOUND,
        "closed only after {:?}",
        since.elapsed()
    );
}

#[test]
fn half_a_request_head_is_disconnected_after_timeout_secs() {
    let site = start();
    let port = site.port;
    let since = Instant::now();
    let mut s = connect(port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert_open_for_a_second(&mut s);
    assert_closed_soon(&mut s, since);
}

#[test]
fn a_silent_connection_is_disconnected_after_timeout_secs() {
    let site = start();
    let port = site.port;
    let since = Instant::now();
    let mut s = connect(port);
    assert_open_for_a_second(&mut s);
    assert_closed_soon(&mut s, since);
}

#[test]
fn a_head_trickled_line_by_line_is_disconnected_after_timeout_secs() {
    let site = start();
    let port = site.port;
    let since = Instant::now();
    let mut s = connect(port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1024];
    // A new header line every 300 ms keeps the connection busy but the head
    // never ends: the server must close it anyway.
    loop {
        assert!(
            since.elapsed() < CLOSE_BOUND,
            "still open after {:?}",
            since.elapsed()
        );
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if s.write_all(b"X-Slow: y\r\n").is_err() {
            break;
        }
    }
    assert!(
        since.elapsed() >= Duration::from_secs(1),
        "closed before the head timeout: {:?}",
        since.elapsed()
    );
}

#[test]
fn content_length_with_transfer_encoding_is_a_400_and_a_close() {
    let site = start();
    let port = site.port;
    // The body would smuggle a second request to a server that believed
    // the wrong length.
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let bytes = exchange(
            port,
            format!(
                "POST /a.txt HTTP/1.1\r\nHost: first.test\r\n{framing}\r\n\
                 0\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: first.test\r\n\r\n"
            )
            .as_bytes(),
        );
        let responses = parse_responses(&bytes);
        assert_eq!(
            responses.len(),
            1,
            "{framing:?}: {:?}\n{}",
            String::from_utf8_lossy(&bytes),
            site.server.log()
        );
        assert_error_page(&responses[0], 400);
    }
}

#[test]
fn differing_content_lengths_are_a_400_and_a_close() {
    let site = start();
    let port = site.port;
    let bytes = exchange(
        port,
        b"POST /a.txt HTTP/1.1\r\nHost: first.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
    let responses = parse_responses(&bytes);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
    assert_error_page(&responses[0], 400);
}

#[test]
fn obsolete_line_folding_is_a_400_and_a_close() {
    let site = start();
    let port = site.port;
    let bytes = exchange(
        port,
        b"GET /a.txt HTTP/1.1\r\nHost: first.test\r\nX-Folded: a\r\n b\r\n\r\n",
    );
    let responses = parse_responses(&bytes);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
    assert_error_page(&responses[0], 400);
}

#[test]
fn an_idle_keep_alive_connection_outlives_timeout_secs() {
    let site = start();
    let port = site.port;
    let s = connect(port);
    let mut r = BufReader::new(&s);
    (&s).write_all(b"GET /a.txt HTTP/1.1\r\nHost: first.test\r\n\r\n")
        .unwrap();
    let first = read_response(&mut r, false);
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "aaa\n");
    // Idle longer than timeout-secs (2 s) but far less than the keep-alive
    // timeout (30 s).
    thread::sleep(HEAD_TIMEOUT + Duration::from_secs(1));
    (&s).write_all(b"GET /b.txt HTTP/1.1\r\nHost: first.test\r\n\r\n")
        .unwrap();
    let second = read_response(&mut r, false);
    assert_eq!(second.status, 200, "{}", site.server.log());
    assert_eq!(second.text(), "bbbb\n");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let site = start();
    let port = site.port;
    let bytes = exchange(
        port,
        b"GET /a.txt HTTP/1.1\r\nHost: first.test\r\n\r\n\
          GET /b.txt HTTP/1.1\r\nHost: first.test\r\n\r\n\
          GET / HTTP/1.1\r\nHost: second.test\r\n\r\n\
          GET /a.txt HTTP/1.1\r\nHost: first.test\r\nConnection: close\r\n\r\n",
    );
    let bodies: Vec<(u16, String)> = parse_responses(&bytes)
        .iter()
        .map(|r| (r.status, r.text()))
        .collect();
    assert_eq!(
        bodies,
        [
            (200, "aaa\n".to_owned()),
            (200, "bbbb\n".to_owned()),
            (200, "second\n".to_owned()),
            (200, "aaa\n".to_owned()),
        ]
    );
}

#[test]
fn http_1_0_without_host_is_served_by_the_first_vhost() {
    let site = start();
    let port = site.port;
    let bytes = exchange(port, b"GET / HTTP/1.0\r\n\r\n");
    let responses = parse_responses(&bytes);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(responses[0].status, 200, "{}", site.server.log());
    assert_eq!(responses[0].text(), "first\n");
    // And with a Host, HTTP/1.0 reaches the other vhost.
    let bytes = exchange(port, b"GET / HTTP/1.0\r\nHost: second.test\r\n\r\n");
    assert_eq!(parse_responses(&bytes)[0].text(), "second\n");
}

#[test]
fn http_1_1_without_host_is_a_400() {
    let site = start();
    let port = site.port;
    let r = first_response(port, b"GET / HTTP/1.1\r\n\r\n");
    assert_error_page(&r, 400);
    assert!(!r.text().contains("first"));
}

#[test]
fn error_pages_are_small_html_with_the_status() {
    let site = start();
    let port = site.port;
    let r = get(&format!("http://127.0.0.1:{port}/missing.txt"), &[]);
    assert_error_page(&r, 404);
    let r = first_response(port, b"GET /.hidden HTTP/1.1\r\nHost: first.test\r\n\r\n");
    assert_error_page(&r, 404);
    let r = first_response(port, b"GET /../x HTTP/1.1\r\nHost: first.test\r\n\r\n");
    assert_error_page(&r, 403);
}
