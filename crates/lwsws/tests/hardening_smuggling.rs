//! Request smuggling and malformed requests (SPEC §3.7, §8; RFC 9112),
//! directly (a file mount) and through a proxy mount whose upstream is a raw
//! TCP recorder (`common/recorder.rs`) that keeps every byte it receives and
//! frames requests as a strict origin would. Every case is written byte for
//! byte on a raw socket, followed in the same write by a valid request: a
//! refused request gets one 400, the connection closes, the follow-up is
//! never answered and nothing reaches the upstream. An accepted request
//! reaches the upstream exactly once, framed as the client framed it (same
//! body bytes, one unambiguous Content-Length or chunked), and whatever
//! follows it in the same write stays a separate request.
//!
//! Each test prints `SMUG| case | route | statuses | upstream saw |` lines
//! (`--nocapture`) for the hardening report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/recorder.rs"]
mod recorder;

use common::{bin, connect};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use recorder::{Framing, Recorder, Seen};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

/// How long a conversation may take before the test stops reading: a
/// liveness bound, well past `proxy-timeout-secs`.
const CONVERSE_BOUND: Duration = Duration::from_secs(20);

/// The host every request names.
const HOST: &str = "localhost";

/// lwsws with one vhost: `/` → files (`a.txt` = `aaa\n`), `/p` → the
/// recorder's root (`proxy-timeout-secs` 5).
struct Rig {
    port: u16,
    up: Recorder,
    server: Lwsws,
    _dir: ConfigDir,
}

fn start() -> Rig {
    let up = Recorder::start();
    let dir = ConfigDir::new();
    dir.write_file("www/a.txt", "aaa\n");
    dir.write_file("www/index.html", "index\n");
    let port = free_port();
    dir.write_conf(r#"{ "global": { "timeout-secs": "5" } }"#);
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "{HOST}", "port": "{port}", "mounts": [
                {{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }},
                {{ "mountpoint": "/p", "origin": "{}", "proxy-timeout-secs": "5" }}
            ] }}] }}"#,
            dir.path().join("www").display(),
            up.url("/")
        ),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    Rig {
        port,
        up,
        server,
        _dir: dir,
    }
}

impl Rig {
    /// The end of the server's log, for assertion messages.
    fn log_tail(&self) -> String {
        let log = self.server.log();
        let cut = log.len().saturating_sub(3000);
        let cut = (cut..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        log[cut..].to_owned()
    }

    /// `template` with `{path}`, `{port}` (lwsws) and `{up}` (recorder)
    /// filled in.
    fn fill(&self, template: &str, path: &str) -> Vec<u8> {
        template
            .replace("{path}", path)
            .replace("{port}", &self.port.to_string())
            .replace("{up}", &self.up.port.to_string())
            .into_bytes()
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The file mount.
    Direct,
    /// The proxy mount, to the recorder.
    Proxy,
}

impl Via {
    /// The path the case's request names.
    fn path(self) -> &'static str {
        match self {
            Via::Direct => "/a.txt",
            Via::Proxy => "/p/x",
        }
    }

    /// A valid request sent behind the case's bytes, in the same write.
    fn follow(self) -> &'static [u8] {
        match self {
            Via::Direct => b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            Via::Proxy => b"GET /p/second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        }
    }
}

/// What came back on one connection.
struct Outcome {
    bytes: Vec<u8>,
    /// The server closed the connection (rather than the test giving up).
    closed: bool,
}

impl Outcome {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status of each response, in order; tolerant of garbage (parsing
    /// stops at the first thing that is not a response).
    fn statuses(&self) -> Vec<u16> {
        responses(&self.bytes).into_iter().map(|r| r.0).collect()
    }

    /// The body of each response.
    fn bodies(&self) -> Vec<Vec<u8>> {
        responses(&self.bytes).into_iter().map(|r| r.2).collect()
    }

    /// Whether every response is one of lwsws's own small HTML error pages
    /// (SPEC §3.7) rather than, say, hyper's bare fallback answer.
    fn all_error_pages(&self) -> bool {
        responses(&self.bytes).iter().all(|(status, head, body)| {
            head.to_ascii_lowercase()
                .contains("\r\ncontent-type: text/html")
                && String::from_utf8_lossy(body).contains(&status.to_string())
        })
    }
}

/// `(status, head, body)` of each response in `b`.
fn responses(b: &[u8]) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let Some(end) = b[at..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + at)
        else {
            break;
        };
        let head = String::from_utf8_lossy(&b[at..end]).into_owned();
        let mut lines = head.split("\r\n");
        let Some(status) = lines
            .clone()
            .next()
            .filter(|l| l.starts_with("HTTP/1."))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        lines.next();
        let mut length = None;
        let mut chunked = false;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.to_ascii_lowercase().contains("chunked");
                }
            }
        }
        at = end + 4;
        let mut body = Vec::new();
        if (100..200).contains(&status) || status == 204 || status == 304 {
        } else if chunked {
            loop {
                let Some(eol) = b[at..].windows(2).position(|w| w == b"\r\n") else {
                    at = b.len();
                    break;
                };
                let size = String::from_utf8_lossy(&b[at..at + eol]).into_owned();
                let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or(0);
                at += eol + 2;
                if n == 0 {
                    at = (at + 2).min(b.len());
                    break;
                }
                let stop = (at + n).min(b.len());
                body.extend_from_slice(&b[at..stop]);
                at = (stop + 2).min(b.len());
            }
        } else if b[at..].starts_with(b"HTTP/1.1 ") {
            // The answer to a HEAD request: its Content-Length describes a
            // body that is not sent, and the next response follows at once.
        } else if let Some(n) = length {
            let stop = (at + n).min(b.len());
            body.extend_from_slice(&b[at..stop]);
            at = stop;
        } else {
            body.extend_from_slice(&b[at..]);
            at = b.len();
        }
        out.push((status, head, body));
    }
    out
}

/// Writes `parts` on a new connection (pausing `gap` between parts; write
/// errors after the first part are ignored: the server may have closed
/// already) and reads until the server closes or [`CONVERSE_BOUND`] passes.
fn converse_parts(port: u16, parts: &[&[u8]], gap: Duration) -> Outcome {
    let mut s = connect(port);
    s.set_nodelay(true).unwrap();
    let since = Instant::now();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        if s.write_all(p).is_err() {
            break;
        }
    }
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    let closed = loop {
        let left = CONVERSE_BOUND.saturating_sub(since.elapsed());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false;
            }
            Err(_) => break true,
        }
    };
    Outcome { bytes, closed }
}

fn converse(port: u16, request: &[u8]) -> Outcome {
    converse_parts(port, &[request], Duration::ZERO)
}

/// Prints one line of the case table.
fn note(case: &str, via: Via, out: &Outcome, up: &Recorder) {
    eprintln!(
        "SMUG| {case} | {via:?} | {:?}{} | {} |",
        out.statuses(),
        if out.closed { " closed" } else { " OPEN" },
        up.summary()
    );
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends each of `templates` (see [`Rig::fill`]; `{path}` is the route's
/// path) followed by the route's valid follow-up, on a new connection per
/// variant and route, and asserts: exactly one response, a 400; the
/// connection closed; the upstream received not a byte.
fn assert_refused(case: &str, templates: &[&str]) {
    let rig = start();
    for template in templates {
        for via in [Via::Direct, Via::Proxy] {
            let mut req = rig.fill(template, via.path());
            req.extend_from_slice(via.follow());
            let out = converse(rig.port, &req);
            rig.up.settle();
            note(case, via, &out, &rig.up);
            let ctx = || {
                format!(
                    "{case} ({via:?}): sent {:?}\nlwsws answered {:?} (closed: {})\n{}\nserver log tail:\n{}",
                    lossy(&req),
                    out.text(),
                    out.closed,
                    rig.up.describe(),
                    rig.log_tail()
                )
            };
            assert_eq!(out.statuses(), [400], "{}", ctx());
            assert!(out.all_error_pages(), "not lwsws's error page: {}", ctx());
            assert!(out.closed, "connection left open: {}", ctx());
            assert_eq!(
                rig.up.total_bytes(),
                0,
                "a refused request reached the upstream: {}",
                ctx()
            );
        }
    }
}

/// The requests the upstream saw for `target`.
fn seen<'a>(reqs: &'a [Seen], target: &str) -> Vec<&'a Seen> {
    reqs.iter().filter(|r| r.target == target).collect()
}

// ---------------------------------------------------------------------------
// Conflicting framing.

#[test]
fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    // CL.TE and TE.CL: whichever length a hop believed, the other would read
    // `GET /p/smuggled` as a request of its own.
    assert_refused(
        "CL+TE",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\nGET /p/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n\
             0\r\n\r\nGET /p/smuggled HTTP/1.1\r\nX: ",
            // Content-Length: 0 is no excuse either.
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\n",
        ],
    );
}

#[test]
fn two_different_content_lengths_are_refused() {
    assert_refused(
        "CL 5 + CL 6",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nContent-Length: 5\r\n\r\nhello!",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ],
    );
}

#[test]
fn a_malformed_content_length_is_refused() {
    assert_refused(
        "CL +5 / -5 / 0x5 / 5 5 / empty / 5a / 2^64",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0x5\r\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5 5\r\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length:\r\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5a\r\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 18446744073709551621\r\n\r\nhello",
        ],
    );
}

/// `Content-Length: 5, 5` and two `Content-Length: 5` fields are one value
/// (RFC 9110 §8.6 lets a recipient accept them as `5`). lwsws may refuse them
/// or accept them; if it accepts, the upstream must get the body framed as
/// one plain `Content-Length: 5` (a list or a repeated field is something a
/// strict upstream refuses and a lax one may read otherwise), and the
/// follow-up stays a request of its own.
#[test]
fn identical_content_lengths_reach_the_upstream_as_one_value() {
    let rig = start();
    for (i, framing) in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        for via in [Via::Direct, Via::Proxy] {
            let target = format!("/p/cl{i}");
            let path = if via == Via::Proxy {
                target.as_str()
            } else {
                via.path()
            };
            let mut req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n{framing}\r\nhello")
                .into_bytes();
            req.extend_from_slice(via.follow());
            let before = rig.up.requests().len();
            let out = converse(rig.port, &req);
            rig.up.settle();
            note("CL \"5, 5\" / CL 5 + CL 5", via, &out, &rig.up);
            let ctx = format!(
                "sent {:?}\nlwsws answered {:?}\n{}\nserver log tail:\n{}",
                lossy(&req),
                out.text(),
                rig.up.describe(),
                rig.log_tail()
            );
            let statuses = out.statuses();
            if statuses == [400] {
                assert!(out.closed, "{ctx}");
                // Refused by lwsws's head check (SPEC §3.7), not left to
                // hyper, whose bare 400 has no page and leaves no log line.
                assert!(
                    out.all_error_pages(),
                    "the 400 is not lwsws's error page (the head check let it \
                     through and hyper refused it): {ctx}"
                );
                assert_eq!(rig.up.requests().len(), before, "{ctx}");
                continue;
            }
            assert!(
                rig.up.unframed().is_empty(),
                "upstream could not frame: {ctx}"
            );
            match via {
                // POST on a file mount: 405, then the follow-up.
                Via::Direct => assert_eq!(statuses, [405, 200], "{ctx}"),
                Via::Proxy => {
                    assert_eq!(statuses, [200, 200], "{ctx}");
                    let reqs = rig.up.requests();
                    let name = format!("/cl{i}");
                    let first = seen(&reqs, &name);
                    assert_eq!(first.len(), 1, "{ctx}");
                    assert_eq!(first[0].framing, Framing::Length(5), "{ctx}");
                    assert_eq!(first[0].body, b"hello", "{ctx}");
                    assert_eq!(first[0].all("content-length"), ["5"], "{ctx}");
                    assert_eq!(seen(&reqs, "/second").len(), 1, "{ctx}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Transfer-Encoding.

#[test]
fn transfer_encoding_chunked_then_identity_is_refused() {
    assert_refused(
        "TE chunked, identity",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn transfer_encoding_identity_is_refused() {
    assert_refused(
        "TE identity",
        &["POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: identity\r\n\r\nhello"],
    );
}

#[test]
fn transfer_encoding_not_ending_in_chunked_is_refused() {
    // RFC 9112 §6.3 item 4: a request whose final coding is not chunked
    // cannot be framed; 400 and close.
    assert_refused(
        "TE gzip (no chunked last)",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn chunked_applied_twice_or_disguised_is_refused() {
    assert_refused(
        "TE chunked twice / xchunked / quoted / chunked;x",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: \"chunked\"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked;q=1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn http_1_0_with_transfer_encoding_is_refused() {
    // RFC 9112 §6.1: faulty framing in HTTP/1.0, whatever else it says.
    assert_refused(
        "HTTP/1.0 + TE",
        &[
            "POST {path} HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
        ],
    );
}

/// `Transfer-Encoding: gzip, chunked` is well framed (chunked last), but the
/// gzip coding belongs to the message as it travels: a proxy that removes
/// `Transfer-Encoding` as hop-by-hop and re-chunks must either decode gzip
/// or keep it in what it forwards, or refuse (501, RFC 9112 §6.1) — never
/// pass the gzip bytes on as if they were the content.
#[test]
fn a_gzip_transfer_coding_is_not_dropped_on_the_way_upstream() {
    let rig = start();
    for via in [Via::Direct, Via::Proxy] {
        let mut req = rig.fill(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            via.path(),
        );
        req.extend_from_slice(via.follow());
        let out = converse(rig.port, &req);
        rig.up.settle();
        note("TE gzip, chunked", via, &out, &rig.up);
        if via == Via::Direct {
            continue;
        }
        let ctx = format!(
            "sent {:?}\nlwsws answered {:?}\n{}",
            lossy(&req),
            out.text(),
            rig.up.describe()
        );
        let statuses = out.statuses();
        if matches!(statuses.first(), Some(400 | 501)) {
            assert_eq!(statuses.len(), 1, "{ctx}");
            assert_eq!(rig.up.total_bytes(), 0, "{ctx}");
            continue;
        }
        let reqs = rig.up.requests();
        let first = seen(&reqs, "/x");
        assert_eq!(first.len(), 1, "{ctx}");
        let codings = first[0].all("transfer-encoding").join(",");
        assert!(
            codings.to_ascii_lowercase().contains("gzip"),
            "the upstream got the gzip-coded bytes {:?} as plain content \
             (Transfer-Encoding {codings:?}): {ctx}",
            lossy(&first[0].body)
        );
    }
}

#[test]
fn transfer_encoding_is_case_insensitive_and_forwarded_chunked() {
    // A control: a valid chunked body with a valid extension, in any case,
    // reaches the upstream as the same bytes.
    let rig = start();
    let out = converse(
        rig.port,
        b"POST /p/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: Chunked\r\n\r\n\
          5;name=\"v a\"\r\nhello\r\n1 ; x = y\r\n!\r\n0\r\n\r\n\
          GET /p/second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    note(
        "TE Chunked + valid extensions (control)",
        Via::Proxy,
        &out,
        &rig.up,
    );
    let ctx = format!("lwsws answered {:?}\n{}", out.text(), rig.up.describe());
    assert_eq!(out.statuses(), [200, 200], "{ctx}");
    let reqs = rig.up.requests();
    assert_eq!(reqs.len(), 2, "{ctx}");
    assert_eq!(reqs[0].target, "/x", "{ctx}");
    assert!(
        matches!(reqs[0].framing, Framing::Chunked | Framing::Length(6)),
        "{ctx}"
    );
    assert_eq!(reqs[0].body, b"hello!", "{ctx}");
    assert_eq!(reqs[1].target, "/second", "{ctx}");
}

// ---------------------------------------------------------------------------
// Line syntax.

#[test]
fn obsolete_line_folding_is_refused() {
    assert_refused(
        "obs-fold (SP, HTAB, folded TE, whitespace before the first field)",
        &[
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\r\n",
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n\tb\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
        ],
    );
}

#[test]
fn bare_lf_line_endings_are_refused() {
    assert_refused(
        "bare LF",
        &[
            "GET {path} HTTP/1.1\nHost: localhost\n\n",
            "GET {path} HTTP/1.1\r\nHost: localhost\nX: y\r\n\r\n",
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n\n",
            "\nGET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        ],
    );
}

#[test]
fn bare_cr_is_refused() {
    assert_refused(
        "bare CR",
        &[
            "GET {path} HTTP/1.1\rHost: localhost\r\n\r\n",
            "GET {path} HTTP/1.1\r\nHost: localhost\rX: y\r\n\r\n",
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX: a\rb\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\rhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn a_request_line_with_extra_whitespace_is_refused() {
    assert_refused(
        "request line: two spaces / tab",
        &[
            "GET  {path} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            " GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            // HTTP/0.9 (no version): no headers, so no framing to trust.
            "GET {path}\r\nHost: localhost\r\n\r\n",
            "GET {path}  HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "GET\t{path} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "GET {path} HTTP/1.1 \r\nHost: localhost\r\n\r\n",
        ],
    );
}

// ---------------------------------------------------------------------------
// Header names.

#[test]
fn nul_in_a_header_name_is_refused() {
    assert_refused(
        "NUL in header name",
        &[
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-A\0B: 1\r\n\r\n",
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n\0X: 1\r\n\r\n",
            // In a value or the target, too.
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX: a\0b\r\n\r\n",
            "GET {path}\0 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding\0: chunked\r\n\r\nhello",
        ],
    );
}

#[test]
fn space_before_the_colon_is_refused() {
    // RFC 9112 §5.1: MUST be rejected with 400 — a hop that strips the space
    // and one that keeps it disagree on which framing field exists.
    assert_refused(
        "space before colon",
        &[
            "GET {path} HTTP/1.1\r\nHost : localhost\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\nhello",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length\t: 5\r\n\r\nhello",
        ],
    );
}

#[test]
fn space_inside_a_header_name_is_refused() {
    assert_refused(
        "space inside header name",
        &[
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX Forwarded: 1\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer Encoding: chunked\r\n\r\nhello",
        ],
    );
}

#[test]
fn two_host_fields_are_refused() {
    assert_refused(
        "two Host fields",
        &["GET {path} HTTP/1.1\r\nHost: localhost\r\nHost: other.test\r\n\r\n"],
    );
}

// ---------------------------------------------------------------------------
// Chunked bodies.

#[test]
fn a_chunk_size_with_a_0x_prefix_is_refused() {
    assert_refused(
        "chunk size 0x5",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn a_negative_chunk_size_is_refused() {
    assert_refused(
        "chunk size -1",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn an_overflowing_chunk_size_is_refused() {
    // 17 hex digits: 2^68 - 1 does not fit 64 bits; wrapped, it would be a
    // small size and the rest of the body a new request.
    assert_refused(
        "chunk size fffffffffffffffff / 10000000000000005",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn a_chunk_extension_with_invalid_characters_is_refused() {
    assert_refused(
        "chunk ext invalid chars",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;\x01\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b c\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;a\0=b\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5;\nhello\r\n0\r\n\r\n",
        ],
    );
}

#[test]
fn a_chunk_size_with_surrounding_spaces_is_refused() {
    assert_refused(
        "chunk size with leading/trailing SP/HTAB",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\t\r\nhello\r\n0\r\n\r\n",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n 0\r\n\r\n",
        ],
    );
}

#[test]
fn chunk_data_longer_than_its_size_is_refused() {
    assert_refused(
        "chunk data overruns its size",
        &[
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        ],
    );
}

/// The head and a first good chunk arrive first (so lwsws has already
/// started forwarding), the bad chunk a second later: the upstream must not
/// see a complete request (lwsws may not end the body it forwards with a
/// last-chunk the client never sent), the client gets no 2xx for it, and the
/// follow-up is never answered.
#[test]
fn an_invalid_chunk_after_the_head_was_forwarded_never_completes_upstream() {
    let rig = start();
    for (case, bad) in [
        ("late chunk size 0x5", "0x5\r\nworld\r\n0\r\n\r\n"),
        (
            "late chunk size overflow",
            "fffffffffffffffff\r\nworld\r\n0\r\n\r\n",
        ),
        ("late bare LF chunk", "5\nworld\r\n0\r\n\r\n"),
    ] {
        for via in [Via::Direct, Via::Proxy] {
            let head = rig.fill(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                via.path(),
            );
            let mut rest = bad.as_bytes().to_vec();
            rest.extend_from_slice(via.follow());
            let before = rig.up.requests().len();
            let out = converse_parts(rig.port, &[&head, &rest], Duration::from_secs(1));
            rig.up.settle();
            note(case, via, &out, &rig.up);
            let ctx = format!(
                "{case} ({via:?}): sent {:?} then {:?}\nlwsws answered {:?} (closed: {})\n{}\nserver log tail:\n{}",
                lossy(&head),
                lossy(&rest),
                out.text(),
                out.closed,
                rig.up.describe(),
                rig.log_tail()
            );
            let statuses = out.statuses();
            assert!(out.closed, "connection left open: {ctx}");
            assert!(statuses.len() <= 1, "the follow-up was answered: {ctx}");
            match via {
                // The file mount may answer GET/POST before reading the body
                // (405); the follow-up never.
                Via::Direct => {}
                Via::Proxy => {
                    assert!(
                        !statuses.iter().any(|s| (200..300).contains(s)),
                        "a broken body got a 2xx: {ctx}"
                    );
                    assert_eq!(
                        rig.up.requests().len(),
                        before,
                        "the upstream saw a complete request: {ctx}"
                    );
                    // The client's body is at fault, not the upstream: 400,
                    // not 502 (which also logs and counts an upstream error).
                    assert_eq!(statuses, [400], "{ctx}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Request targets.

#[test]
fn an_absolute_form_target_naming_another_host_is_refused() {
    // RFC 9112 §3.2.2 would have the target's authority replace Host; lwsws
    // refuses the disagreement instead, which the issue accepts. What must
    // never happen is the Host and the target disagreeing downstream.
    assert_refused(
        "absolute-form, Host differs",
        &[
            "GET http://other.test{path} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "GET http://localhost:1{path} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "GET http://user@localhost{path} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ],
    );
}

#[test]
fn an_absolute_form_target_matching_host_is_served_consistently() {
    let rig = start();
    for via in [Via::Direct, Via::Proxy] {
        let mut req = rig.fill(
            "GET http://localhost:{port}{path}?q=1 HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n",
            via.path(),
        );
        req.extend_from_slice(via.follow());
        let out = converse(rig.port, &req);
        rig.up.settle();
        note("absolute-form, Host equal", via, &out, &rig.up);
        let ctx = format!(
            "sent {:?}\nlwsws answered {:?}\n{}\nserver log tail:\n{}",
            lossy(&req),
            out.text(),
            rig.up.describe(),
            rig.log_tail()
        );
        assert_eq!(out.statuses(), [200, 200], "{ctx}");
        match via {
            Via::Direct => assert_eq!(out.bodies()[0], b"aaa\n", "{ctx}"),
            Via::Proxy => {
                let reqs = rig.up.requests();
                assert_eq!(reqs.len(), 2, "{ctx}");
                // Origin-form upstream, Host the upstream's, the client's
                // authority in X-Forwarded-Host.
                assert_eq!(reqs[0].target, "/x?q=1", "{ctx}");
                assert_eq!(reqs[0].version, "HTTP/1.1", "{ctx}");
                assert_eq!(
                    reqs[0].all("host"),
                    [format!("127.0.0.1:{}", rig.up.port)],
                    "{ctx}"
                );
                assert_eq!(
                    reqs[0].all("x-forwarded-host"),
                    [format!("localhost:{}", rig.port)],
                    "{ctx}"
                );
                assert_eq!(reqs[0].framing, Framing::None, "{ctx}");
            }
        }
    }
}

#[test]
fn an_authority_form_target_without_connect_is_refused() {
    assert_refused(
        "authority-form without CONNECT",
        &[
            "GET localhost:{port} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "GET 127.0.0.1:{up} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ],
    );
}

/// CONNECT on a vhost without any tunnelling: never a 2xx, never a byte to
/// any upstream (in particular not to the proxy mount's, named as the
/// CONNECT target), and the bytes behind it are never relayed anywhere.
#[test]
fn connect_on_a_plain_vhost_opens_no_tunnel() {
    let rig = start();
    for (case, template, follow) in [
        (
            "CONNECT localhost:80",
            "CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
            Via::Direct.follow(),
        ),
        (
            "CONNECT <upstream>",
            "CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\n",
            Via::Proxy.follow(),
        ),
        (
            "CONNECT <upstream> + raw bytes",
            "CONNECT 127.0.0.1:{up} HTTP/1.1\r\nHost: 127.0.0.1:{up}\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: x\r\n\r\n",
            Via::Proxy.follow(),
        ),
    ] {
        let mut req = rig.fill(template, "");
        req.extend_from_slice(follow);
        let out = converse(rig.port, &req);
        rig.up.settle();
        note(case, Via::Direct, &out, &rig.up);
        let ctx = format!(
            "{case}: sent {:?}\nlwsws answered {:?} (closed: {})\n{}\nserver log tail:\n{}",
            lossy(&req),
            out.text(),
            out.closed,
            rig.up.describe(),
            rig.log_tail()
        );
        let statuses = out.statuses();
        assert!(out.closed, "{ctx}");
        assert!(
            statuses.first().is_some_and(|s| (400..500).contains(s)),
            "{ctx}"
        );
        assert!(
            !rig.up.requests().iter().any(|r| r.target == "/tunnelled"),
            "bytes behind a CONNECT were relayed: {ctx}"
        );
        assert!(
            rig.up.requests().iter().all(|r| r.method != "CONNECT"),
            "{ctx}"
        );
    }
}

// ---------------------------------------------------------------------------
// Pipelining: what follows a message stays a message of its own.

#[test]
fn a_request_pipelined_behind_a_body_is_not_merged_into_it() {
    let rig = start();
    let cases: [(&str, &str, &[u8], Framing); 3] = [
        (
            "pipelined after CL body",
            "POST /p/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello\
             GET /p/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            b"hello",
            Framing::Length(5),
        ),
        (
            "pipelined after chunked body",
            "POST /p/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n\
             GET /p/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            b"hello",
            Framing::Chunked,
        ),
        (
            "pipelined after a CL body with trailing bytes",
            // Two bytes of body; the rest starts the next request, whose
            // method is then `lloGET`: a request of its own all the same.
            "POST /p/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhello\
             GET /p/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            b"he",
            Framing::Length(2),
        ),
    ];
    for (case, req, body, framing) in cases {
        let before = rig.up.requests().len();
        let out = converse(rig.port, req.as_bytes());
        rig.up.settle();
        note(case, Via::Proxy, &out, &rig.up);
        let ctx = format!(
            "{case}: sent {req:?}\nlwsws answered {:?}\n{}\nserver log tail:\n{}",
            out.text(),
            rig.up.describe(),
            rig.log_tail()
        );
        assert!(out.closed, "{ctx}");
        assert_eq!(out.statuses(), [200, 200], "{ctx}");
        let reqs = rig.up.requests();
        let new = &reqs[before..];
        assert_eq!(new.len(), 2, "{ctx}");
        assert_eq!(
            (new[0].method.as_str(), new[0].target.as_str()),
            ("POST", "/x"),
            "{ctx}"
        );
        assert_eq!(new[0].body, body, "{ctx}");
        // Re-chunking a chunked body is fine; a chunked body arriving with a
        // length (or the reverse) is fine too as long as the bytes match.
        match framing {
            Framing::Length(n) => assert_eq!(new[0].framing, Framing::Length(n), "{ctx}"),
            _ => assert!(
                matches!(new[0].framing, Framing::Chunked | Framing::Length(5)),
                "{ctx}"
            ),
        }
        assert_eq!(new[1].target, "/admin", "{ctx}");
        assert_eq!(new[1].framing, Framing::None, "{ctx}");
        assert!(new[1].method.ends_with("GET"), "{ctx}");
        assert!(rig.up.unframed().is_empty(), "{ctx}");
    }
    // Directly: the file mount answers the POST (405) and the GET apart.
    let out = converse(
        rig.port,
        b"POST /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello\
          GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    note("pipelined after CL body", Via::Direct, &out, &rig.up);
    assert_eq!(out.statuses(), [405, 200], "{}", out.text());
    assert_eq!(out.bodies()[1], b"aaa\n");
}

/// A body on a method that rarely has one (GET, HEAD, DELETE) is still the
/// body its framing says: the upstream gets it with the same framing, and the
/// request behind it stays separate (a proxy that dropped the body but kept
/// its length, or the reverse, would hand the upstream a smuggled request).
#[test]
fn a_body_on_get_head_or_delete_keeps_its_framing_upstream() {
    let rig = start();
    let cases: [(&str, &str, &str, &[u8]); 4] = [
        (
            "GET + CL body",
            "GET /p/g HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
            "GET",
            b"hello",
        ),
        (
            "HEAD + CL body",
            "HEAD /p/g HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
            "HEAD",
            b"hello",
        ),
        (
            "DELETE + chunked body",
            "DELETE /p/g HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "DELETE",
            b"hello",
        ),
        (
            "GET + Expect: 100-continue + CL body",
            "GET /p/g HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
            "GET",
            b"hello",
        ),
    ];
    for (case, req, method, body) in cases {
        let mut bytes = req.as_bytes().to_vec();
        bytes.extend_from_slice(
            b"GET /p/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        let before = rig.up.requests().len();
        let out = converse(rig.port, &bytes);
        rig.up.settle();
        note(case, Via::Proxy, &out, &rig.up);
        let ctx = format!(
            "{case}: sent {:?}\nlwsws answered {:?}\n{}",
            lossy(&bytes),
            out.text(),
            rig.up.describe()
        );
        let finals: Vec<u16> = out.statuses().into_iter().filter(|s| *s >= 200).collect();
        assert_eq!(finals, [200, 200], "{ctx}");
        let reqs = rig.up.requests();
        let new = &reqs[before..];
        assert_eq!(new.len(), 2, "{ctx}");
        assert_eq!(
            (new[0].method.as_str(), new[0].target.as_str()),
            (method, "/g"),
            "{ctx}"
        );
        assert_eq!(new[0].body, body, "{ctx}");
        assert_eq!(
            (new[1].method.as_str(), new[1].target.as_str()),
            ("GET", "/admin"),
            "{ctx}"
        );
        assert!(rig.up.unframed().is_empty(), "{ctx}");
    }
}

/// A WebSocket upgrade the upstream declines (here with `200 ok`) leaves the
/// connection HTTP: what follows is parsed, mapped and forwarded by lwsws as
/// a request of its own (`/p/admin` arrives as `/admin`), never relayed raw
/// through a tunnel (where it would arrive as `/p/admin`, or with a body
/// lwsws never framed).
#[test]
fn a_declined_websocket_upgrade_opens_no_tunnel() {
    let rig = start();
    for (case, req) in [
        (
            "declined upgrade + pipelined request",
            "GET /p/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\
             GET /p/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
        (
            "declined upgrade with a CL body + pipelined request",
            "GET /p/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Content-Length: 5\r\n\r\nhello\
             GET /p/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
        (
            "h2c upgrade + pipelined request",
            "GET /p/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n\
             GET /p/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let before = rig.up.requests().len();
        let out = converse(rig.port, req.as_bytes());
        rig.up.settle();
        note(case, Via::Proxy, &out, &rig.up);
        let ctx = format!(
            "{case}: sent {req:?}\nlwsws answered {:?}\n{}",
            out.text(),
            rig.up.describe()
        );
        assert_eq!(out.statuses(), [200, 200], "{ctx}");
        let reqs = rig.up.requests();
        let new = &reqs[before..];
        assert_eq!(new.len(), 2, "{ctx}");
        assert_eq!(new[0].target, "/ws", "{ctx}");
        assert_eq!(new[1].target, "/admin", "relayed raw: {ctx}");
        assert!(
            new[1].all("via").contains(&"1.1 lwsws"),
            "relayed raw: {ctx}"
        );
        if case.contains("h2c") {
            assert!(
                new[0].all("upgrade").is_empty(),
                "h2c upgrade forwarded: {ctx}"
            );
        }
        assert!(rig.up.unframed().is_empty(), "{ctx}");
    }
}

/// Trailer fields arrive after the head has gone upstream; whatever lwsws
/// does with them, framing fields among them (Content-Length,
/// Transfer-Encoding, Host) must not reach the upstream, and the body ends
/// where the client's last-chunk said.
#[test]
fn framing_fields_in_a_trailer_do_not_reach_the_upstream() {
    let rig = start();
    let req = "POST /p/t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nTE: trailers\r\n\r\n\
               5\r\nhello\r\n0\r\nX-T: 1\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\nHost: evil.test\r\n\r\n\
               GET /p/admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let out = converse(rig.port, req.as_bytes());
    rig.up.settle();
    note("framing fields in trailers", Via::Proxy, &out, &rig.up);
    let ctx = format!(
        "sent {req:?}\nlwsws answered {:?}\n{}",
        out.text(),
        rig.up.describe()
    );
    // Refusing the trailer section would be fine too.
    if out.statuses() == [400] {
        assert_eq!(rig.up.requests().len(), 0, "{ctx}");
        return;
    }
    assert_eq!(out.statuses(), [200, 200], "{ctx}");
    let reqs = rig.up.requests();
    assert_eq!(reqs.len(), 2, "{ctx}");
    assert_eq!(reqs[0].body, b"hello", "{ctx}");
    for t in &reqs[0].trailers {
        let name = t.split(':').next().unwrap_or_default().trim();
        assert!(
            !["content-length", "transfer-encoding", "host"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n)),
            "trailer {t:?} forwarded: {ctx}"
        );
    }
    assert_eq!(
        reqs[0].all("host"),
        [format!("127.0.0.1:{}", rig.up.port)],
        "{ctx}"
    );
    assert_eq!(reqs[1].target, "/admin", "{ctx}");
}

/// The head-level cases again, written a few bytes at a time, so that lwsws
/// sees each head in many reads (its head check then works on a buffered,
/// incomplete head rather than a whole one): the same 400, the same close,
/// nothing upstream.
#[test]
fn refused_heads_trickled_in_small_pieces_are_refused_too() {
    let rig = start();
    for (case, template) in [
        (
            "trickled CL+TE",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "trickled CL 5 + CL 6",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "trickled obs-fold",
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "trickled bare LF",
            "GET {path} HTTP/1.1\nHost: localhost\n\n",
        ),
        (
            "trickled bare LF at the end",
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n\n",
        ),
        (
            "trickled bare CR",
            "GET {path} HTTP/1.1\r\nHost: localhost\rX: y\r\n\r\n",
        ),
        (
            "trickled space before colon",
            "GET {path} HTTP/1.1\r\nHost : localhost\r\n\r\n",
        ),
        (
            "trickled TE chunked, identity",
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "trickled absolute-form, Host differs",
            "GET http://other.test{path} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
    ] {
        for via in [Via::Direct, Via::Proxy] {
            let mut req = rig.fill(template, via.path());
            // The follow-up goes in one piece after the trickle.
            let pieces: Vec<&[u8]> = req.chunks(3).collect();
            let mut parts = pieces.clone();
            parts.push(via.follow());
            let out = converse_parts(rig.port, &parts, Duration::from_millis(5));
            rig.up.settle();
            note(case, via, &out, &rig.up);
            req.extend_from_slice(via.follow());
            let ctx = format!(
                "{case} ({via:?}): sent {:?} in 3-byte pieces\nlwsws answered {:?} (closed: {})\n{}\nserver log tail:\n{}",
                lossy(&req),
                out.text(),
                out.closed,
                rig.up.describe(),
                rig.log_tail()
            );
            assert_eq!(out.statuses(), [400], "{ctx}");
            assert!(out.all_error_pages(), "{ctx}");
            assert!(out.closed, "{ctx}");
            assert_eq!(rig.up.total_bytes(), 0, "{ctx}");
        }
    }
}
