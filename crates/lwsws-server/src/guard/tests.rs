//! Tests of the head guard: driven as hyper drives it (read everything it
//! yields), over in-memory pipes, with paused time for the timeouts; and a few
//! with hyper itself on top, to check that hyper reacts as the guard expects.

use super::*;
use std::convert::Infallible;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::time::timeout;

fn limits() -> Limits {
    Limits {
        max_head: 16 * 1024,
        max_headers: 100,
        max_uri: 8 * 1024,
        head_timeout: Duration::from_secs(5),
        keepalive: Duration::from_secs(60),
    }
}

fn rejected(status: u16) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nhost: lwsws.invalid\r\nx-lwsws-reject: {status}\r\nconnection: close\r\n\r\n").into_bytes()
}

const GET: &[u8] =
    b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n";

/// Sends `input` from the client in writes of `write_size` bytes over a pipe
/// whose reads return at most `pipe` bytes, closes the client's side, and
/// reads everything the guard yields in reads of up to `read_size` bytes,
/// until it reports end of stream.
async fn drive(input: &[u8], pipe: usize, read_size: usize) -> (Vec<u8>, ConnHandle) {
    let (mut client, server) = duplex(pipe);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        // The guard may stop reading (after a refusal): ignore a broken pipe.
        let _ = client.write_all(&input).await;
        let _ = client.shutdown().await;
        client
    });
    let mut out = Vec::new();
    let mut chunk = vec![0u8; read_size];
    loop {
        let n = guard.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    drop(guard);
    let _ = writer.await;
    (out, handle)
}

async fn pass(input: &[u8]) -> (Vec<u8>, ConnHandle) {
    drive(input, 64 * 1024, 8192).await
}

/// Asserts that `input` comes out unchanged, whatever the read sizes.
async fn assert_passes(input: &[u8]) {
    for (pipe, read_size) in [(64 * 1024, 8192), (64 * 1024, 7), (1, 8192), (3, 5)] {
        let (out, handle) = drive(input, pipe, read_size).await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(input),
            "pipe {pipe}, reads of {read_size}"
        );
        assert_eq!(handle.violation(), None);
    }
}

/// Asserts that `input` yields `before` unchanged, then the synthetic
/// request for `status`, then end of stream.
async fn assert_refused_after(before: &[u8], input: &[u8], status: u16) {
    let (out, handle) = pass(input).await;
    let mut want = before.to_vec();
    want.extend_from_slice(&rejected(status));
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&want)
    );
    let (got, reason) = handle.violation().unwrap();
    assert_eq!(got, status, "{reason}");
}

async fn assert_refused(input: &[u8], status: u16) {
    assert_refused_after(b"", input, status).await;
}

fn get_with(headers: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\n{headers}\r\n").into_bytes()
}

// --- what passes ----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn good_get_passes_byte_identical() {
    assert_passes(GET).await;
}

#[tokio::test(start_paused = true)]
async fn pipelined_gets_pass() {
    let two = [GET, GET].concat();
    assert_passes(&two).await;
}

#[tokio::test(start_paused = true)]
async fn post_with_content_length_then_get() {
    let input = [
        b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world".as_slice(),
        GET,
    ]
    .concat();
    assert_passes(&input).await;
}

#[tokio::test(start_paused = true)]
async fn body_that_looks_like_a_bad_head_passes() {
    // The body is not a head: only its length matters.
    let input = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 24\r\n\r\nGET /\nHost: a\n\n\x00\x01 x y\r"
            .as_slice(),
        GET,
    ]
    .concat();
    assert_passes(&input).await;
}

#[tokio::test(start_paused = true)]
async fn identical_content_lengths_pass() {
    let input = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
            .as_slice(),
        GET,
    ]
    .concat();
    assert_passes(&input).await;
}

#[tokio::test(start_paused = true)]
async fn chunked_post_with_extensions_and_trailers_then_get() {
    let input = [
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n".as_slice(),
        b"5;name=value;quoted=\"a \\\"b\\\" ;c\"\r\nhello\r\n",
        b"1A ; flag\r\nabcdefghijklmnopqrstuvwxyz\r\n",
        b"000\r\nExpires: never\r\nX-Sum: 42\r\n\r\n",
        GET,
    ]
    .concat();
    assert_passes(&input).await;
}

#[tokio::test(start_paused = true)]
async fn chunked_body_without_trailers() {
    let input = [
        b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            .as_slice(),
        GET,
    ]
    .concat();
    assert_passes(&input).await;
}

#[tokio::test(start_paused = true)]
async fn http10_without_host_and_leading_empty_line() {
    assert_passes(b"GET / HTTP/1.0\r\n\r\n").await;
    assert_passes(&[b"\r\n".as_slice(), GET].concat()).await;
}

#[tokio::test(start_paused = true)]
async fn request_target_forms() {
    assert_passes(b"GET http://Example.com:8080/a?b HTTP/1.1\r\nHost: example.COM:8080\r\n\r\n")
        .await;
    assert_passes(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_passes(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").await;
}

#[tokio::test(start_paused = true)]
async fn head_split_into_single_bytes() {
    let input = [
        GET,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        GET,
    ]
    .concat();
    let (out, handle) = drive(&input, 1, 8192).await;
    assert_eq!(out, input);
    assert_eq!(handle.violation(), None);
}

#[tokio::test(start_paused = true)]
async fn large_head_within_limits() {
    // Larger than hyper's first read buffer, smaller than the limit.
    let input = get_with(&format!("Host: a\r\nCookie: {}\r\n", "c".repeat(12 * 1024)));
    assert_passes(&input).await;
}

// --- what is refused ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn head_too_large() {
    assert_refused(
        &get_with(&format!("Host: a\r\nX-Big: {}\r\n", "b".repeat(20 * 1024))),
        431,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn too_many_headers() {
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_refused(&get_with(&format!("Host: a\r\n{many}")), 431).await;
    // 100 in all is fine.
    let enough: String = (0..99).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_passes(&get_with(&format!("Host: a\r\n{enough}"))).await;
}

#[tokio::test(start_paused = true)]
async fn uri_too_long() {
    let input = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(10 * 1024));
    assert_refused(input.as_bytes(), 414).await;
}

#[tokio::test(start_paused = true)]
async fn uri_too_long_refused_before_the_head_ends() {
    let (mut client, server) = duplex(64 * 1024);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    // The request line is not even complete.
    client
        .write_all(format!("GET /{}", "u".repeat(9 * 1024)).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = timeout(Duration::from_secs(1), guard.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], &rejected(414)[..n]);
    assert_eq!(handle.violation().map(|v| v.0), Some(414));
}

#[tokio::test(start_paused = true)]
async fn framing_conflicts() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
    )
    .await;
    // A list of one value too (hyper would refuse it with a bare 400).
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        400,
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        400,
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello",
        400,
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: five\r\n\r\nhello",
        400,
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\nhello",
        400,
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn transfer_encodings() {
    for te in [
        "chunked, identity",
        "gzip",
        "gzip, chunked",
        "deflate, chunked",
        "chunked, chunked",
        "x-unknown, chunked",
        "chunked;q=1",
        ", chunked",
    ] {
        let input =
            format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
        assert_refused(input.as_bytes(), 400).await;
    }
    assert_refused(
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    )
    .await;
    // Two fields make one list.
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn line_structure() {
    // obs-fold
    assert_refused(&get_with("Host: a\r\nX-A: b\r\n c\r\n"), 400).await;
    assert_refused(&get_with("Host: a\r\nX-A: b\r\n\tc\r\n"), 400).await;
    // bare LF, anywhere
    assert_refused(b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\nHost: a\n\n", 400).await;
    assert_refused(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    // bare CR
    assert_refused(b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400).await;
    // header names
    assert_refused(&get_with("Host: a\r\nX-\0A: b\r\n"), 400).await;
    assert_refused(&get_with("Host: a\r\nX-A : b\r\n"), 400).await;
    assert_refused(&get_with("Host: a\r\nX A: b\r\n"), 400).await;
    assert_refused(&get_with("Host: a\r\n: b\r\n"), 400).await;
    assert_refused(&get_with("Host: a\r\nX-A: b\0c\r\n"), 400).await;
    // too many empty lines first (two are let through: hyper skips them)
    assert_refused_after(
        b"\r\n\r\n",
        &[b"\r\n\r\n\r\n".as_slice(), GET].concat(),
        400,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn request_line() {
    assert_refused(b"G\0T / HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/0.9\r\n\r\n", 400).await;
    assert_refused(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400).await;
}

#[tokio::test(start_paused = true)]
async fn targets_and_host() {
    assert_refused(b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400).await;
    assert_refused(b"GET http://a/ HTTP/1.0\r\n\r\n", 400).await;
    assert_refused(b"GET http://u@a/ HTTP/1.1\r\nHost: u@a\r\n\r\n", 400).await;
    assert_refused(b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400).await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400).await;
}

#[tokio::test(start_paused = true)]
async fn reserved_header_from_a_client() {
    assert_refused(&get_with("Host: a\r\nX-LWSWS-Reject: 200\r\n"), 400).await;
}

#[tokio::test(start_paused = true)]
async fn bad_chunks() {
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-1\r\nh\r\n0\r\n\r\n",
        "+1\r\nh\r\n0\r\n\r\n",
        "0x1\r\nh\r\n0\r\n\r\n",
        " 1\r\nh\r\n0\r\n\r\n",
        "1 \r\nh\r\n0\r\n\r\n",
        "\r\nh\r\n0\r\n\r\n",
        "00000000000000001\r\nh\r\n0\r\n\r\n",
        "1\nh\r\n0\r\n\r\n",
        "1\rh\r\n0\r\n\r\n",
        "1\r\nhX\r\n0\r\n\r\n",
        "1\r\nh\n0\r\n\r\n",
        "1;\r\nh\r\n0\r\n\r\n",
        "1;a=\"b\r\nh\r\n0\r\n\r\n",
        "1;a b\r\nh\r\n0\r\n\r\n",
        "0\r\nX: a\n\r\n",
        "0\r\nX : a\r\n\r\n",
        "0\r\n folded\r\n\r\n",
        "0\r\n\n",
        "0\r\n\r\r",
    ] {
        let input =
            format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let (out, handle) = pass(input.as_bytes()).await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&rejected(400)),
            "{body:?}"
        );
        assert_eq!(handle.violation().map(|v| v.0), Some(400), "{body:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn bad_chunk_after_the_head_was_handed_on_ends_the_stream() {
    let (mut client, server) = duplex(64 * 1024);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    client.write_all(head).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = guard.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], head);
    client.write_all(b"3\r\nabc\r\nzz\r\n").await.unwrap();
    let n = guard.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"3\r\nabc\r\n");
    assert_eq!(guard.read(&mut buf).await.unwrap(), 0);
    assert_eq!(handle.violation(), Some((400, "invalid chunk size")));
}

#[tokio::test(start_paused = true)]
async fn violation_in_second_request_lets_the_first_pass() {
    let bad = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    assert_refused_after(GET, &[GET, bad.as_slice()].concat(), 400).await;
    let post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc".as_slice();
    assert_refused_after(
        &[GET, post].concat(),
        &[GET, post, b"GET / HTTP/1.1\n\n"].concat(),
        400,
    )
    .await;
    // A bad chunk in a second request still replaces that request whole.
    let chunked =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n";
    assert_refused_after(GET, &[GET, chunked.as_slice()].concat(), 400).await;
}

#[tokio::test(start_paused = true)]
async fn refused_head_split_into_single_bytes() {
    let input = [GET, b"GET / HTTP/1.1\r\nHost: a\r\n\tfold\r\n\r\n"].concat();
    let (out, handle) = drive(&input, 1, 8192).await;
    assert_eq!(out, [GET, &rejected(400)].concat());
    assert_eq!(handle.violation(), Some((400, "obsolete line folding")));
}

#[tokio::test(start_paused = true)]
async fn synthetic_request_in_small_reads() {
    let input = [GET, b"BAD\0 / HTTP/1.1\r\n\r\n"].concat();
    let (out, _) = drive(&input, 64 * 1024, 3).await;
    assert_eq!(out, [GET, &rejected(400)].concat());
}

// --- timeouts -------------------------------------------------------------

async fn read_once(guard: &mut GuardedIo<DuplexStream>) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = guard.read(&mut buf).await.unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test(start_paused = true)]
async fn stalled_first_head_ends_after_head_timeout() {
    let start = Instant::now();
    let (mut client, server) = duplex(4096);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    assert!(read_once(&mut guard).await.is_empty());
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(handle.violation(), Some((408, "head timeout")));
}

#[tokio::test(start_paused = true)]
async fn silent_first_connection_ends_after_head_timeout() {
    let start = Instant::now();
    let (_client, server) = duplex(4096);
    let (mut guard, _) = GuardedIo::new(server, limits());
    assert!(read_once(&mut guard).await.is_empty());
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn later_head_is_due_head_timeout_after_its_first_byte() {
    let (mut client, server) = duplex(4096);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    client.write_all(GET).await.unwrap();
    assert_eq!(read_once(&mut guard).await, GET);
    tokio::time::advance(Duration::from_secs(30)).await;
    client.write_all(b"GET / HT").await.unwrap();
    let first_byte = Instant::now();
    assert!(
        timeout(Duration::from_secs(4), read_once(&mut guard))
            .await
            .is_err()
    );
    client.write_all(b"TP/1.1\r\n").await.unwrap();
    assert!(read_once(&mut guard).await.is_empty());
    assert_eq!(first_byte.elapsed(), Duration::from_secs(5));
    assert_eq!(handle.violation(), Some((408, "head timeout")));
}

#[tokio::test(start_paused = true)]
async fn idle_connection_ends_after_keepalive_not_before() {
    let (mut client, server) = duplex(4096);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    client.write_all(GET).await.unwrap();
    assert_eq!(read_once(&mut guard).await, GET);
    let end = Instant::now();
    assert!(
        timeout(Duration::from_secs(59), read_once(&mut guard))
            .await
            .is_err()
    );
    assert_eq!(handle.violation(), None);
    assert!(read_once(&mut guard).await.is_empty());
    assert_eq!(end.elapsed(), Duration::from_secs(60));
    assert_eq!(handle.violation(), Some((408, "idle timeout")));
}

#[tokio::test(start_paused = true)]
async fn writes_keep_an_idle_connection_open() {
    let (mut client, server) = duplex(64 * 1024);
    let (mut guard, _) = GuardedIo::new(server, limits());
    client.write_all(GET).await.unwrap();
    assert_eq!(read_once(&mut guard).await, GET);
    // A response streamed for four minutes, a write every 50 s.
    for _ in 0..5 {
        assert!(
            timeout(Duration::from_secs(50), read_once(&mut guard))
                .await
                .is_err()
        );
        guard.write_all(b"chunk").await.unwrap();
    }
    let last = Instant::now();
    assert!(read_once(&mut guard).await.is_empty());
    assert_eq!(last.elapsed(), Duration::from_secs(60));
    let mut written = vec![0u8; 25];
    client.read_exact(&mut written).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn request_in_flight_puts_timeouts_off() {
    let (mut client, server) = duplex(4096);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    client.write_all(GET).await.unwrap();
    assert_eq!(read_once(&mut guard).await, GET);
    let busy = handle.in_flight();
    assert!(
        timeout(Duration::from_secs(600), read_once(&mut guard))
            .await
            .is_err()
    );
    drop(busy);
    guard.write_all(b"answer").await.unwrap();
    let answered = Instant::now();
    assert!(read_once(&mut guard).await.is_empty());
    assert_eq!(answered.elapsed(), Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn no_deadline_while_a_body_is_read() {
    let (mut client, server) = duplex(4096);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab";
    client.write_all(head).await.unwrap();
    assert_eq!(read_once(&mut guard).await, head);
    assert!(
        timeout(Duration::from_secs(3600), read_once(&mut guard))
            .await
            .is_err()
    );
    client.write_all(b"cd").await.unwrap();
    assert_eq!(read_once(&mut guard).await, b"cd");
    assert_eq!(handle.violation(), None);
}

// --- upgrades -------------------------------------------------------------

const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

#[tokio::test(start_paused = true)]
async fn marked_upgrade_passes_bytes_unchecked() {
    let (mut client, server) = duplex(4096);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    client.write_all(UPGRADE).await.unwrap();
    assert_eq!(read_once(&mut guard).await, UPGRADE);
    handle.mark_upgraded();
    let frames = b"\x81\x85\x00\x00\x00\x00hello\nGET / HTTP/1.1\n\n\0";
    client.write_all(frames).await.unwrap();
    assert_eq!(read_once(&mut guard).await, frames);
    // No idle timeout on the upgraded protocol.
    assert!(
        timeout(Duration::from_secs(3600), read_once(&mut guard))
            .await
            .is_err()
    );
    assert_eq!(handle.violation(), None);
}

#[tokio::test(start_paused = true)]
async fn unmarked_upgrade_keeps_checking() {
    let (mut client, server) = duplex(4096);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    client.write_all(UPGRADE).await.unwrap();
    assert_eq!(read_once(&mut guard).await, UPGRADE);
    client.write_all(GET).await.unwrap();
    assert_eq!(read_once(&mut guard).await, GET);
    client
        .write_all(b"\x81\x85\x00\x00\x00\x00hello")
        .await
        .unwrap();
    assert_eq!(read_once(&mut guard).await, rejected(400));
    assert_eq!(handle.violation().map(|v| v.0), Some(400));
}

#[tokio::test(start_paused = true)]
async fn connect_counts_as_an_upgrade() {
    let (mut client, server) = duplex(4096);
    let (mut guard, handle) = GuardedIo::new(server, limits());
    let connect = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n";
    client.write_all(connect).await.unwrap();
    assert_eq!(read_once(&mut guard).await, connect);
    handle.mark_upgraded();
    client.write_all(b"\x16\x03\x01\x02\x00").await.unwrap();
    assert_eq!(read_once(&mut guard).await, b"\x16\x03\x01\x02\x00");
}

// --- with hyper on top ----------------------------------------------------

mod with_hyper {
    use super::*;
    use hyper::body::{Body as _, Incoming};
    use hyper::server::conn::http1;
    use hyper::{Request, Response};
    use hyper_util::rt::{TokioIo, TokioTimer};

    /// Answers `200 <method> <path> <body length>`, or the reject status
    /// with `Connection: close` for the synthetic request.
    async fn service(
        mut req: Request<Incoming>,
        handle: ConnHandle,
    ) -> Result<Response<String>, Infallible> {
        let _busy = handle.in_flight();
        if let Some(status) = req.headers().get(REJECT_HEADER) {
            let status = status.to_str().unwrap().parse::<u16>().unwrap();
            return Ok(Response::builder()
                .status(status)
                .header("connection", "close")
                .body(format!("refused: {}", handle.violation().unwrap().1))
                .unwrap());
        }
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(300)).await;
        }
        let mut len = 0;
        while let Some(frame) =
            std::future::poll_fn(|cx| Pin::new(req.body_mut()).poll_frame(cx)).await
        {
            if let Ok(data) = frame.unwrap().into_data() {
                len += data.len();
            }
        }
        Ok(Response::new(format!(
            "{} {} {len}",
            req.method(),
            req.uri().path()
        )))
    }

    /// Serves one connection with hyper over the guard; returns the client's end.
    fn serve() -> (DuplexStream, ConnHandle, tokio::task::JoinHandle<()>) {
        let (client, server) = duplex(64 * 1024);
        let (io, handle) = GuardedIo::new(server, limits());
        let h = handle.clone();
        let task = tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| service(req, h.clone()));
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(None);
            let _ = builder
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades()
                .await;
        });
        (client, handle, task)
    }

    async fn read_all(client: &mut DuplexStream) -> String {
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn refused_request_is_answered_in_order_then_closed() {
        let (mut client, _, task) = serve();
        client
            .write_all(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nPOST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .await
            .unwrap();
        let start = Instant::now();
        let text = read_all(&mut client).await;
        let first = text.find("HTTP/1.1 200 OK").unwrap();
        let second = text.find("HTTP/1.1 400 Bad Request").unwrap();
        assert!(first < second, "{text}");
        assert!(text.contains("GET /first 0"), "{text}");
        assert!(
            text.ends_with("refused: both Content-Length and Transfer-Encoding"),
            "{text}"
        );
        // hyper closed the connection itself, without waiting for a timer.
        assert_eq!(start.elapsed(), Duration::ZERO);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_reach_the_service() {
        let (mut client, _, task) = serve();
        client
            .write_all(
                b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
                  POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n\
                  GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let text = read_all(&mut client).await;
        assert!(text.contains("POST /a 5"), "{text}");
        assert!(text.contains("POST /b 5"), "{text}");
        assert!(text.contains("GET /c 0"), "{text}");
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_head_closes_the_connection() {
        let (mut client, handle, task) = serve();
        let start = Instant::now();
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert_eq!(read_all(&mut client).await, "");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(handle.violation(), Some((408, "head timeout")));
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn slow_answer_is_not_cut_by_the_idle_timeout() {
        let (mut client, _, task) = serve();
        let start = Instant::now();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let text = read_all(&mut client).await;
        assert!(text.contains("GET /slow 0"), "{text}");
        // Answered after 300 s, then idle for 60 s.
        assert_eq!(start.elapsed(), Duration::from_secs(360));
        task.await.unwrap();
    }
}

// --- limits at their edges, buffering, closing ----------------------------

/// A GET whose head is exactly `len` bytes long.
fn head_of(len: usize) -> Vec<u8> {
    let bare = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n".len();
    get_with(&format!("Host: a\r\nX-Pad: {}\r\n", "p".repeat(len - bare)))
}

#[tokio::test(start_paused = true)]
async fn head_size_limit_is_exact() {
    let max = limits().max_head;
    assert_eq!(head_of(max).len(), max);
    assert_passes(&head_of(max)).await;
    assert_refused(&head_of(max + 1), 431).await;
}

#[tokio::test(start_paused = true)]
async fn uri_limit_is_exact() {
    let max = limits().max_uri;
    let with_target = |len: usize| {
        format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(len - 1)).into_bytes()
    };
    assert_passes(&with_target(max)).await;
    assert_refused(&with_target(max + 1), 414).await;
}

#[tokio::test(start_paused = true)]
async fn common_case_needs_no_buffer_of_its_own() {
    let (mut client, server) = duplex(256 * 1024);
    let (mut guard, _) = GuardedIo::new(server, limits());
    for _ in 0..3 {
        client.write_all(GET).await.unwrap();
        assert_eq!(read_once(&mut guard).await, GET);
    }
    // A large upload goes from the pipe straight into the reader's buffer.
    let size = 1 << 20;
    let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\n\r\n");
    let want = head.len() + size + GET.len();
    let writer = tokio::spawn(async move {
        client.write_all(head.as_bytes()).await.unwrap();
        client.write_all(&vec![b'x'; size]).await.unwrap();
        client.write_all(GET).await.unwrap();
        client
    });
    let mut got = Vec::new();
    while got.len() < want {
        let more = read_once(&mut guard).await;
        assert!(!more.is_empty());
        got.extend_from_slice(&more);
    }
    assert!(got.ends_with(GET));
    assert_eq!(guard.buf.capacity(), 0);
    drop(writer.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn shutdown_after_a_refusal_lingers_while_the_client_is_silent() {
    let (mut client, server) = duplex(64 * 1024);
    let (mut guard, _) = GuardedIo::new(server, limits());
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nbytes that will never be read")
        .await
        .unwrap();
    assert_eq!(read_once(&mut guard).await, rejected(400));
    let start = Instant::now();
    guard.shutdown().await.unwrap();
    assert_eq!(start.elapsed(), LINGER);
    // The client saw the end of the stream at once.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_after_a_refusal_ends_when_the_client_closes() {
    let (mut client, server) = duplex(64 * 1024);
    let (mut guard, _) = GuardedIo::new(server, limits());
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nmore")
        .await
        .unwrap();
    assert_eq!(read_once(&mut guard).await, rejected(400));
    let reader = tokio::spawn(async move {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
    });
    let start = Instant::now();
    guard.shutdown().await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    reader.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_after_a_timeout_does_not_linger() {
    let (_client, server) = duplex(64 * 1024);
    let (mut guard, _) = GuardedIo::new(server, limits());
    assert!(read_once(&mut guard).await.is_empty());
    let start = Instant::now();
    guard.shutdown().await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
}
