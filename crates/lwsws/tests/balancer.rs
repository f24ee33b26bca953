//! Behind a load balancer (issue 18): who the client is, and how much of the
//! server one client may hold.
//!
//! - `proxy-protocol`: a PROXY header (v1 text, v2 binary, built by hand
//!   here) from a `trusted-proxies` peer names the client, over plain HTTP
//!   and before a TLS handshake; the access log, CGI `REMOTE_ADDR` /
//!   `REMOTE_PORT` and a proxy mount's `X-Forwarded-For` carry that address.
//!   `LOCAL` / `UNKNOWN` keep the TCP peer. An untrusted peer, a missing,
//!   malformed or late header: closed with nothing served, and logged at
//!   most once a second with the number left out.
//! - `X-Forwarded-For` / `-Proto` from a trusted peer (right-most untrusted
//!   hop) name the client and the scheme (`HTTPS=on`, the proxy's
//!   `X-Forwarded-Proto`); from an untrusted peer they change nothing. A
//!   proxy mount passes every line of the list on, with the client appended.
//! - `ip-limit-wsi`: connections at once per client address (keep-alive
//!   connections, WebSockets, and per PROXY source address rather than per
//!   balancer); the next one is closed at accept, logged once a minute.
//! - `ip-limit-ah`: requests in progress per client address (also after
//!   `X-Forwarded-For`): 503 with `Retry-After: 1` beyond it.
//! - `--check`: a malformed CIDR, vhosts sharing a port that disagree on
//!   `proxy-protocol`, and `proxy-protocol` on TCP without `trusted-proxies`.
//!
//! Client sockets are bound to other loopback addresses (127.0.0.2,
//! 127.0.0.3) before connecting, so that one test process can be several
//! clients. The implementation is `crates/lwsws-server/src/client.rs`
//! (PROXY header, forwarded headers, per-client tables), `conn.rs` (where
//! the header is read and connections are counted) and `pipeline.rs`
//! (requests counted, the forwarded client used).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use common::proxy::{Echo, Upstream};
use common::{Reply, bin, check, install_cgi, parse_responses, read_response, stderr, wait_until};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use rustls::{ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use std::collections::BTreeMap;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Socket reads give up after this long: a liveness bound only.
const IO_DEADLINE: Duration = Duration::from_secs(30);
/// How long a log line (access log or server log) may take to appear.
const LOG_DEADLINE: Duration = Duration::from_secs(20);
/// How long a released slot may take to be seen free by the server (it
/// notices the closed connection asynchronously): a liveness bound.
const RELEASE_DEADLINE: Duration = Duration::from_secs(20);

/// The client a balancer says it forwards.
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// Another one.
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);
/// The balancer: the only trusted peer in most tests.
const BALANCER: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Loopback addresses that are not trusted.
const UNTRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const UNTRUSTED_2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// What the server logs for every refused PROXY connection (at most once a
/// second).
const REFUSAL: &str = "proxy-protocol: connection closed";

// ---------------------------------------------------------------------------
// Client sockets and PROXY headers.

/// A TCP connection from `src` (any port) to `127.0.0.1:port`, with read and
/// write deadlines. std's `TcpStream` cannot bind before connecting.
fn connect_from(src: Ipv4Addr, port: u16) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))
        .unwrap_or_else(|e| panic!("bind {src}:0: {e}"));
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )
    .unwrap_or_else(|e| panic!("connect {src} -> 127.0.0.1:{port}: {e}"));
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(IO_DEADLINE)).unwrap();
    s.set_write_timeout(Some(IO_DEADLINE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// `PROXY TCP4 SRC 127.0.0.1 SPORT PORT\r\n`.
fn v1(src: Ipv4Addr, sport: u16, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 {sport} {port}\r\n").into_bytes()
}

/// The 12-byte signature of a v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 `PROXY` header for TCP over IPv4 from `src:sport` to
/// `127.0.0.1:port`.
fn v2(src: Ipv4Addr, sport: u16, port: u16) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&Ipv4Addr::LOCALHOST.octets());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&port.to_be_bytes());
    h
}

/// A v2 `LOCAL` header (the balancer's own connection, no addresses).
fn v2_local() -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20); // version 2, LOCAL
    h.push(0x00); // unspecified
    h.extend_from_slice(&0u16.to_be_bytes());
    h
}

/// `GET target` with `Host: host`, extra header lines (each ending in
/// CRLF) and `Connection: close`.
fn get_close(host: &str, target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// Reads until the peer closes (EOF or reset).
fn read_to_close(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            // A TLS connection closed without close_notify after its data.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && !out.is_empty() => return out,
            Err(e) => panic!(
                "connection not closed by the server ({e}); received so far: {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Sends `bytes` (ignoring a write refused because the server has already
/// closed) and returns everything received until the server closes.
fn send_and_drain(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = s.write_all(bytes);
    read_to_close(s)
}

/// The one response in `bytes`.
fn one(bytes: &[u8]) -> Reply {
    let mut replies = parse_responses(bytes);
    assert_eq!(
        replies.len(),
        1,
        "one response expected: {:?}",
        String::from_utf8_lossy(bytes)
    );
    replies.remove(0)
}

/// On a new connection from `src`: `prefix` (a PROXY header, or nothing),
/// then `request` (which asks for `Connection: close`); the one response.
fn exchange_from(src: Ipv4Addr, port: u16, prefix: &[u8], request: &[u8]) -> Reply {
    let mut s = connect_from(src, port);
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(request);
    s.write_all(&bytes).unwrap();
    one(&read_to_close(&mut s))
}

// ---------------------------------------------------------------------------
// What the server reports: the dump CGI, the echo upstream, the logs.

/// The environment the dump CGI (`fixtures/cgi/dump.sh`) was given.
fn cgi_env(r: &Reply) -> BTreeMap<String, String> {
    assert_eq!(r.status, 200, "CGI answer: {}", r.text());
    assert_eq!(r.header("x-dump"), Some("1"), "not the dump script");
    let body = &r.body;
    // `CWD \n ENV-ENTRY \0 … ENV-ENTRY \0 \0 STDIN`.
    let nl = body.iter().position(|&b| b == b'\n').expect("cwd line");
    let rest = &body[nl + 1..];
    let end = if rest.first() == Some(&0) {
        0
    } else {
        rest.windows(2)
            .position(|w| w == [0, 0])
            .expect("end of the environment block")
            + 1
    };
    rest[..end]
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let e = String::from_utf8(e.to_vec()).unwrap();
            let (k, v) = e.split_once('=').expect("NAME=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Asserts the CGI environment has `name` = `value` (`None`: not set).
fn expect_var(env: &BTreeMap<String, String>, name: &str, value: Option<&str>, what: &str) {
    assert_eq!(
        env.get(name).map(String::as_str),
        value,
        "{what}: {name} in {env:#?}"
    );
}

/// The first field (the client) of the access-log line whose request line
/// holds `needle` (a unique target), once it has been written.
fn logged_client(log: &Path, needle: &str) -> String {
    let mut found = None;
    let ok = wait_until(LOG_DEADLINE, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        found = text
            .lines()
            .find(|l| l.contains(&format!(" {needle} HTTP/")))
            .map(str::to_owned);
        found.is_some()
    });
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(ok, "no access-log line for {needle} in {log:?}:\n{text}");
    let line = found.unwrap();
    line.split(' ').next().unwrap().to_owned()
}

/// How many lines of the server log report a refused PROXY connection.
fn refusals(server: &Lwsws) -> usize {
    server.log().lines().filter(|l| l.contains(REFUSAL)).count()
}

/// Runs `refuse`, which makes the server refuse one PROXY connection, and
/// returns the log line that reports it. Refusals are logged at most once a
/// second, so this first lets a second pass since the last one.
fn refusal_logged(server: &Lwsws, refuse: impl FnOnce()) -> String {
    thread::sleep(Duration::from_millis(1500));
    let before = refusals(server);
    refuse();
    assert!(
        wait_until(LOG_DEADLINE, || refusals(server) > before),
        "no {REFUSAL:?} line for the refused connection:\n{}",
        server.log()
    );
    server
        .log()
        .lines()
        .filter(|l| l.contains(REFUSAL))
        .nth(before)
        .unwrap()
        .to_owned()
}

// ---------------------------------------------------------------------------
// Sites.

/// A configuration directory with the dump CGI at `cgi-bin/dump.sh` and
/// `www/a.txt`; returns (CGI path, document root).
fn content(dir: &ConfigDir) -> (PathBuf, PathBuf) {
    let dump = install_cgi(dir, "cgi-bin/dump.sh", "dump.sh");
    dir.write_file("www/a.txt", "alpha\n");
    dir.mkdir("logs");
    (dump, dir.path().join("www"))
}

/// The mounts of every site here: files at `/`, the dump CGI at `/cgi`,
/// and (with an upstream) the echo upstream at `/p`.
fn mounts(dump: &Path, www: &Path, up: Option<&Upstream>) -> String {
    let mut m = format!(
        r#"{{ "mountpoint": "/", "origin": "file://{}" }},
           {{ "mountpoint": "/cgi", "origin": "cgi://{}" }}"#,
        www.display(),
        dump.display()
    );
    if let Some(up) = up {
        m.push_str(&format!(
            r#", {{ "mountpoint": "/p", "origin": "{}" }}"#,
            up.url("/")
        ));
    }
    m
}

// ---------------------------------------------------------------------------
// 1. PROXY protocol from the trusted balancer.

/// A plaintext vhost `lb.test` and a TLS vhost `tls.test`, both with
/// `proxy-protocol`, behind the balancer 127.0.0.1.
struct ProxySite {
    server: Lwsws,
    up: Upstream,
    port: u16,
    tls_port: u16,
    log: PathBuf,
    tls_log: PathBuf,
    ca: tls::Ca,
    _dir: ConfigDir,
}

impl ProxySite {
    fn start() -> ProxySite {
        let up = Upstream::start("upstream.py", &["echo"]);
        let dir = ConfigDir::new();
        let (dump, www) = content(&dir);
        let ca = tls::Ca::new("Balancer test CA");
        let (cert, key) = ca.server_cert(&["tls.test"]);
        let cert = dir.write_file("tls/tls.test.crt", cert);
        let key = dir.write_file("tls/tls.test.key", key);
        let log = dir.path().join("logs/lb.log");
        let tls_log = dir.path().join("logs/tls.log");
        let (port, tls_port) = (free_port(), free_port());
        dir.write_conf(r#"{ "global": { "trusted-proxies": ["127.0.0.1/32"] } }"#);
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [
                    {{ "name": "lb.test", "port": "{port}", "proxy-protocol": "1",
                       "access-log": "{log}", "mounts": [ {m} ] }},
                    {{ "name": "tls.test", "port": "{tls_port}", "proxy-protocol": "1",
                       "host-ssl-cert": "{cert}", "host-ssl-key": "{key}",
                       "access-log": "{tls_log}", "mounts": [ {m} ] }}
                ] }}"#,
                log = log.display(),
                tls_log = tls_log.display(),
                cert = cert.display(),
                key = key.display(),
                m = mounts(&dump, &www, Some(&up)),
            ),
        );
        let server = Lwsws::start(bin(), &dir, &[], &[port, tls_port]);
        ProxySite {
            server,
            up,
            port,
            tls_port,
            log,
            tls_log,
            ca,
            _dir: dir,
        }
    }

    /// From the balancer: `header`, then a GET of `target` on `lb.test`.
    fn get(&self, header: &[u8], target: &str) -> Reply {
        exchange_from(
            BALANCER,
            self.port,
            header,
            &get_close("lb.test", target, ""),
        )
    }

    /// From the balancer: `header`, then a TLS handshake for `tls.test` and
    /// a GET of `target`; the response. With `coalesce` the header and the
    /// ClientHello go in one write, else in two.
    fn tls_get(&self, header: &[u8], target: &str, coalesce: bool) -> Reply {
        let mut sock = connect_from(BALANCER, self.tls_port);
        let cfg = tls::rustls_client(&self.ca.pem(), None, &[b"http/1.1"]);
        let mut conn =
            ClientConnection::new(cfg, ServerName::try_from("tls.test".to_owned()).unwrap())
                .unwrap();
        if coalesce {
            let mut first = header.to_vec();
            conn.write_tls(&mut first).unwrap();
            sock.write_all(&first).unwrap();
        } else {
            sock.write_all(header).unwrap();
            thread::sleep(Duration::from_millis(100));
        }
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap_or_else(|e| {
                panic!(
                    "TLS handshake after a PROXY header: {e}\n{}",
                    self.server.log()
                )
            });
        }
        tls.write_all(&get_close("tls.test", target, "")).unwrap();
        tls.flush().unwrap();
        one(&read_to_close(&mut tls))
    }

    fn fail(&self, what: &str) -> String {
        format!(
            "{what}\n--- server log ---\n{}\n--- upstream log ---\n{}",
            self.server.log(),
            self.up.log()
        )
    }
}

#[test]
fn proxy_protocol_v1_and_v2_name_the_client_everywhere() {
    let site = ProxySite::start();
    let port = site.port;
    for (version, header) in [
        ("v1", v1(CLIENT, 40001, port)),
        ("v2", v2(CLIENT, 40002, port)),
    ] {
        let sport = if version == "v1" { "40001" } else { "40002" };
        // Files: the access log's first field is the header's source.
        let target = format!("/a.txt?via={version}");
        let r = site.get(&header, &target);
        assert_eq!(r.status, 200, "{}", site.fail(version));
        assert_eq!(r.text(), "alpha\n");
        assert_eq!(
            logged_client(&site.log, &target),
            CLIENT.to_string(),
            "{version}"
        );

        // CGI: REMOTE_ADDR and REMOTE_PORT are the header's source.
        let target = format!("/cgi/x?via={version}");
        let env = cgi_env(&site.get(&header, &target));
        expect_var(&env, "REMOTE_ADDR", Some("203.0.113.7"), version);
        expect_var(&env, "REMOTE_PORT", Some(sport), version);
        expect_var(&env, "HTTPS", None, version);
        assert_eq!(logged_client(&site.log, &target), CLIENT.to_string());

        // Proxy: the upstream is told the header's source, and only it.
        let target = format!("/p/who?via={version}");
        let echo = Echo::parse(&site.get(&header, &target));
        assert_eq!(
            echo.header("x-forwarded-for"),
            Some("203.0.113.7"),
            "{}",
            site.fail(version)
        );
        assert_eq!(echo.header("x-forwarded-proto"), Some("http"));
        assert_eq!(logged_client(&site.log, &target), CLIENT.to_string());
    }
}

#[test]
fn proxy_protocol_header_in_pieces_keep_alive_local_unknown_and_ipv6() {
    let site = ProxySite::start();
    let port = site.port;

    // The v2 header in three writes, split inside the signature and the
    // addresses, then two requests on the same connection: the header is
    // read once and names the client of both.
    let header = v2(CLIENT, 40003, port);
    let mut s = connect_from(BALANCER, port);
    for piece in [&header[..5], &header[5..20], &header[20..]] {
        s.write_all(piece).unwrap();
        thread::sleep(Duration::from_millis(150));
    }
    s.write_all(b"GET /cgi/first HTTP/1.1\r\nHost: lb.test\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let env = cgi_env(&read_response(&mut reader, false));
    expect_var(&env, "REMOTE_ADDR", Some("203.0.113.7"), "first request");
    expect_var(&env, "REMOTE_PORT", Some("40003"), "first request");
    s.write_all(&get_close("lb.test", "/cgi/second", ""))
        .unwrap();
    let env = cgi_env(&read_response(&mut reader, false));
    expect_var(&env, "REMOTE_ADDR", Some("203.0.113.7"), "second request");
    assert_eq!(logged_client(&site.log, "/cgi/second"), CLIENT.to_string());

    // A v2 header with a TLV (PP2_TYPE_AUTHORITY) after the addresses, sent
    // with the request in one write: the TLV is not taken for the request.
    let mut header = v2(CLIENT, 40007, port);
    let tlv = [&[0x02u8, 0x00, 0x07][..], b"lb.test"].concat();
    let len = 12 + u16::try_from(tlv.len()).unwrap();
    header[14..16].copy_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&tlv);
    let env = cgi_env(&site.get(&header, "/cgi/tlv"));
    expect_var(&env, "REMOTE_ADDR", Some("203.0.113.7"), "v2 with a TLV");
    expect_var(&env, "REMOTE_PORT", Some("40007"), "v2 with a TLV");

    // LOCAL (v2) and UNKNOWN (v1): the balancer's own connection, whose
    // client is the TCP peer.
    for (what, header) in [
        ("v2 LOCAL", v2_local()),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
    ] {
        let target = format!("/cgi/local?{}", what.replace(' ', "-"));
        let env = cgi_env(&site.get(&header, &target));
        expect_var(&env, "REMOTE_ADDR", Some("127.0.0.1"), what);
        assert_eq!(logged_client(&site.log, &target), "127.0.0.1", "{what}");
    }

    // An IPv6 client in a v1 header.
    let six: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let header = format!("PROXY TCP6 {six} ::1 40004 {port}\r\n");
    let env = cgi_env(&site.get(header.as_bytes(), "/cgi/six"));
    expect_var(&env, "REMOTE_ADDR", Some("2001:db8::7"), "TCP6");
    expect_var(&env, "REMOTE_PORT", Some("40004"), "TCP6");
    assert_eq!(logged_client(&site.log, "/cgi/six"), six.to_string());
}

#[test]
fn proxy_protocol_header_before_tls() {
    let site = ProxySite::start();
    let port = site.tls_port;
    for (version, header) in [
        ("v1", v1(CLIENT, 40005, port)),
        ("v2", v2(CLIENT, 40006, port)),
    ] {
        // v1 in a write of its own, v2 in one with the ClientHello.
        let coalesce = version == "v2";
        let target = format!("/a.txt?tls-{version}");
        let r = site.tls_get(&header, &target, coalesce);
        assert_eq!(r.status, 200, "{}", site.fail(version));
        assert_eq!(r.text(), "alpha\n");
        assert_eq!(
            logged_client(&site.tls_log, &target),
            CLIENT.to_string(),
            "{version}"
        );

        let env = cgi_env(&site.tls_get(&header, &format!("/cgi/tls?{version}"), coalesce));
        expect_var(&env, "REMOTE_ADDR", Some("203.0.113.7"), version);
        expect_var(&env, "HTTPS", Some("on"), version);

        let echo = Echo::parse(&site.tls_get(&header, &format!("/p/tls?{version}"), coalesce));
        assert_eq!(echo.header("x-forwarded-for"), Some("203.0.113.7"));
        assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
    }
    // The plaintext vhost's log got none of these.
    let plain = std::fs::read_to_string(&site.log).unwrap_or_default();
    assert!(!plain.contains("tls-v"), "{plain}");
}

// ---------------------------------------------------------------------------
// 2. Refusals on a proxy-protocol listener.

/// `timeout-secs` of the refusal test's server.
const HEADER_TIMEOUT: Duration = Duration::from_secs(6);

#[test]
fn proxy_protocol_refuses_untrusted_missing_malformed_and_late_headers() {
    let dir = ConfigDir::new();
    let (dump, www) = content(&dir);
    let log = dir.path().join("logs/lb.log");
    let port = free_port();
    dir.write_conf(&format!(
        r#"{{ "global": {{ "trusted-proxies": ["127.0.0.1/32"],
                           "timeout-secs": "{}" }} }}"#,
        HEADER_TIMEOUT.as_secs()
    ));
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "lb.test", "port": "{port}", "proxy-protocol": "1",
                   "access-log": "{}", "mounts": [ {} ] }}] }}"#,
            log.display(),
            mounts(&dump, &www, None)
        ),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let request = get_close("lb.test", "/a.txt", "");
    let nothing = |what: &str, got: &[u8]| {
        assert!(
            got.is_empty(),
            "{what}: the server answered {:?}",
            String::from_utf8_lossy(got)
        );
    };

    // (a) A valid header and request from a peer that is not trusted.
    let line = refusal_logged(&server, || {
        let mut s = connect_from(UNTRUSTED, port);
        let mut bytes = v1(CLIENT, 40010, port);
        bytes.extend_from_slice(&request);
        nothing("untrusted peer", &send_and_drain(&mut s, &bytes));
    });
    assert!(line.contains("not in trusted-proxies"), "{line}");
    assert!(line.contains("127.0.0.2"), "{line}");

    // (b) The trusted balancer without a header.
    refusal_logged(&server, || {
        let mut s = connect_from(BALANCER, port);
        nothing("no header", &send_and_drain(&mut s, &request));
    });

    // (c) Malformed headers, each followed by a request: nothing served
    // (all at once; the first one's refusal is looked for in the log).
    let (first, rest) = malformed(port)
        .split_first()
        .map(|(f, r)| (f.clone(), r.to_vec()))
        .unwrap();
    let send = move |(what, header): (&'static str, Vec<u8>)| {
        let mut s = connect_from(BALANCER, port);
        let mut bytes = header;
        bytes.extend_from_slice(&get_close("lb.test", "/a.txt", ""));
        (what, send_and_drain(&mut s, &bytes))
    };
    let others: Vec<_> = rest
        .into_iter()
        .map(|m| thread::spawn(move || send(m)))
        .collect();
    let line = refusal_logged(&server, || {
        let (what, got) = send(first);
        nothing(what, &got);
    });
    assert!(line.contains("127.0.0.1"), "{line}");
    for t in others {
        let (what, got) = t.join().unwrap();
        nothing(what, &got);
    }

    // (d) A header that never comes: closed after timeout-secs.
    refusal_logged(&server, || {
        let start = Instant::now();
        let mut s = connect_from(BALANCER, port);
        nothing("silent", &read_to_close(&mut s));
        let took = start.elapsed();
        assert!(
            took >= HEADER_TIMEOUT - Duration::from_secs(1),
            "silent connection closed after {took:?}, before timeout-secs"
        );
    });

    // None of them reached the access log; a proper one does.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.is_empty(), "served: {text}");
    let r = exchange_from(BALANCER, port, &v1(CLIENT, 40012, port), &request);
    assert_eq!(r.status, 200, "{}", server.log());
    assert_eq!(logged_client(&log, "/a.txt"), CLIENT.to_string());
}

/// Malformed PROXY headers, each a complete line (or a complete v2 block).
fn malformed(port: u16) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("addresses missing", b"PROXY TCP4 garbage\r\n".to_vec()),
        (
            "ports missing",
            format!("PROXY TCP4 {CLIENT} 127.0.0.1\r\n").into_bytes(),
        ),
        (
            "port out of range",
            format!("PROXY TCP4 {CLIENT} 127.0.0.1 99999 {port}\r\n").into_bytes(),
        ),
        ("unknown protocol", b"PROXY SCTP 1 2 3 4\r\n".to_vec()),
        ("v2 version 3", {
            let mut h = v2(CLIENT, 40011, port);
            h[12] = 0x31;
            h
        }),
    ]
}

/// `lb.test`, a `proxy-protocol` vhost behind the balancer 127.0.0.1 with
/// `timeout-secs`; returns the server and its port.
fn start_lb(dir: &ConfigDir, timeout: Duration) -> (Lwsws, u16) {
    let (dump, www) = content(dir);
    let port = free_port();
    dir.write_conf(&format!(
        r#"{{ "global": {{ "trusted-proxies": ["127.0.0.1/32"],
                           "timeout-secs": "{}" }} }}"#,
        timeout.as_secs()
    ));
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "lb.test", "port": "{port}", "proxy-protocol": "1",
                   "mounts": [ {} ] }}] }}"#,
            mounts(&dump, &www, None)
        ),
    );
    (Lwsws::start(bin(), dir, &[], &[port]), port)
}

#[test]
fn malformed_proxy_headers_are_refused_without_waiting_for_timeout_secs() {
    // A long timeout-secs, so that waiting for it cannot pass for a refusal.
    let timeout = Duration::from_secs(30);
    let dir = ConfigDir::new();
    let (server, port) = start_lb(&dir, timeout);
    // All at once: a wrong one costs timeout-secs.
    let tried: Vec<_> = malformed(port)
        .into_iter()
        .map(|(what, header)| {
            thread::spawn(move || {
                let start = Instant::now();
                let mut s = connect_from(BALANCER, port);
                s.set_read_timeout(Some(timeout + IO_DEADLINE)).unwrap();
                let mut bytes = header;
                bytes.extend_from_slice(&get_close("lb.test", "/a.txt", ""));
                let got = send_and_drain(&mut s, &bytes);
                (what, got, start.elapsed())
            })
        })
        .collect();
    let mut slow = Vec::new();
    for t in tried {
        let (what, got, took) = t.join().unwrap();
        assert!(
            got.is_empty(),
            "{what}: served {:?}",
            String::from_utf8_lossy(&got)
        );
        if took >= Duration::from_secs(10) {
            slow.push(format!("{what}: closed after {took:?}"));
        }
    }
    assert!(
        slow.is_empty(),
        "malformed headers held until timeout-secs ({timeout:?}) instead of refused:\n{}\n{}",
        slow.join("\n"),
        server.log()
    );
}

#[test]
fn proxy_protocol_refusals_are_logged_at_most_once_a_second() {
    let dir = ConfigDir::new();
    let (server, port) = start_lb(&dir, Duration::from_secs(5));
    // Five requests without a PROXY header in quick succession: one line.
    let flood = || {
        let started = Instant::now();
        for i in 0..5 {
            let mut s = connect_from(BALANCER, port);
            let got = send_and_drain(&mut s, &get_close("lb.test", "/a.txt", ""));
            assert!(
                got.is_empty(),
                "request {i} without a PROXY header was answered"
            );
        }
        // Whether all five surely fell within one second of the first.
        started.elapsed() < Duration::from_millis(800)
    };
    // The start-up readiness probe (a connection that sends nothing) may
    // have been refused and logged: begin a second after it.
    thread::sleep(Duration::from_millis(1100));
    let base = refusals(&server);
    let quick = flood();
    assert!(
        wait_until(LOG_DEADLINE, || refusals(&server) > base),
        "{}",
        server.log()
    );
    thread::sleep(Duration::from_millis(200));
    if quick {
        assert_eq!(refusals(&server), base + 1, "{}", server.log());
    }
    // A second later the next refusal is logged with the number left out.
    thread::sleep(Duration::from_millis(1100));
    let before = refusals(&server);
    flood();
    assert!(
        wait_until(LOG_DEADLINE, || refusals(&server) > before),
        "{}",
        server.log()
    );
    let log = server.log();
    let line = log
        .lines()
        .filter(|l| l.contains(REFUSAL))
        .nth(before)
        .unwrap();
    if quick {
        assert!(line.contains("suppressed=4"), "{line}");
    } else {
        assert!(!line.contains("suppressed=0"), "{line}");
    }
}

// ---------------------------------------------------------------------------
// 3. X-Forwarded-For / -Proto on a normal listener.

#[test]
fn forwarded_headers_count_from_trusted_peers_only() {
    let up = Upstream::start("upstream.py", &["echo"]);
    let dir = ConfigDir::new();
    let (dump, www) = content(&dir);
    let log = dir.path().join("logs/xff.log");
    let port = free_port();
    // The comma-separated string form of the list.
    dir.write_conf(r#"{ "global": { "trusted-proxies": "127.0.0.1/32, 198.51.100.0/24" } }"#);
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "xff.test", "port": "{port}", "sts": "1",
                   "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
                   "access-log": "{}", "mounts": [ {} ] }}] }}"#,
            log.display(),
            mounts(&dump, &www, Some(&up))
        ),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let req = |src: Ipv4Addr, target: &str, extra: &str| {
        exchange_from(src, port, b"", &get_close("xff.test", target, extra))
    };
    let xff = "X-Forwarded-For: 203.0.113.7, 198.51.100.2\r\n";

    // From the trusted peer: the right-most untrusted hop, with port 0.
    let env = cgi_env(&req(BALANCER, "/cgi/t1", xff));
    expect_var(&env, "REMOTE_ADDR", Some("203.0.113.7"), "trusted XFF");
    expect_var(&env, "REMOTE_PORT", Some("0"), "trusted XFF");
    expect_var(&env, "HTTPS", None, "trusted XFF");
    assert_eq!(logged_client(&log, "/cgi/t1"), "203.0.113.7");
    let r = req(BALANCER, "/a.txt?t2", xff);
    assert_eq!(r.status, 200);
    assert_eq!(logged_client(&log, "/a.txt?t2"), "203.0.113.7");
    // A spoofed left-most hop does not win over the one the balancer added.
    let env = cgi_env(&req(
        BALANCER,
        "/cgi/t3",
        "X-Forwarded-For: 192.0.2.66, 203.0.113.7\r\n",
    ));
    expect_var(&env, "REMOTE_ADDR", Some("203.0.113.7"), "spoofed hop");
    // Two header lines are one list.
    let env = cgi_env(&req(
        BALANCER,
        "/cgi/t4",
        "X-Forwarded-For: 192.0.2.66\r\nX-Forwarded-For: 203.0.113.8, 198.51.100.3\r\n",
    ));
    expect_var(&env, "REMOTE_ADDR", Some("203.0.113.8"), "two lines");

    // From an untrusted peer the same header changes nothing.
    let env = cgi_env(&req(UNTRUSTED, "/cgi/u1", xff));
    expect_var(&env, "REMOTE_ADDR", Some("127.0.0.2"), "untrusted XFF");
    assert_ne!(env.get("REMOTE_PORT").map(String::as_str), Some("0"));
    assert_eq!(logged_client(&log, "/cgi/u1"), "127.0.0.2");

    // X-Forwarded-Proto: https from the trusted peer makes it https.
    let proto = "X-Forwarded-Proto: https\r\n";
    let env = cgi_env(&req(BALANCER, "/cgi/p1", &format!("{xff}{proto}")));
    expect_var(&env, "HTTPS", Some("on"), "trusted XFP");
    expect_var(&env, "REMOTE_ADDR", Some("203.0.113.7"), "trusted XFP");
    let env = cgi_env(&req(BALANCER, "/cgi/p2", proto));
    expect_var(&env, "HTTPS", Some("on"), "trusted XFP without XFF");
    expect_var(
        &env,
        "REMOTE_ADDR",
        Some("127.0.0.1"),
        "trusted XFP without XFF",
    );
    let echo = Echo::parse(&req(BALANCER, "/p/p3", proto));
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
    // … and from an untrusted one it does not.
    let env = cgi_env(&req(UNTRUSTED, "/cgi/p4", &format!("{xff}{proto}")));
    expect_var(&env, "HTTPS", None, "untrusted XFP");
    let echo = Echo::parse(&req(UNTRUSTED, "/p/p5", proto));
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));

    // https also means Strict-Transport-Security on a `sts` vhost…
    let sts = |r: &Reply| r.header("strict-transport-security").is_some();
    assert!(
        sts(&req(BALANCER, "/a.txt?s1", proto)),
        "trusted XFP: no STS"
    );
    assert!(!sts(&req(BALANCER, "/a.txt?s2", "")), "plain http: STS");
    assert!(
        !sts(&req(UNTRUSTED, "/a.txt?s3", proto)),
        "untrusted XFP: STS"
    );
    // … and the scheme of the WebSocket same-origin check.
    let https_origin = "Origin: https://xff.test\r\n";
    assert_eq!(
        upgrade_status(
            BALANCER,
            port,
            "xff.test",
            &format!("{proto}{https_origin}")
        ),
        101,
        "https Origin through a trusted https balancer"
    );
    assert_eq!(
        upgrade_status(
            UNTRUSTED,
            port,
            "xff.test",
            &format!("{proto}{https_origin}")
        ),
        403,
        "https Origin from an untrusted peer claiming https"
    );
    assert_eq!(
        upgrade_status(BALANCER, port, "xff.test", https_origin),
        403,
        "https Origin on plain http"
    );
    let http_origin = format!("Origin: http://xff.test:{port}\r\n");
    assert_eq!(
        upgrade_status(UNTRUSTED, port, &format!("xff.test:{port}"), &http_origin),
        101,
        "http Origin on plain http"
    );

    // A proxy mount appends the untrusted peer to what it was sent…
    let echo = Echo::parse(&req(UNTRUSTED, "/p/u2", "X-Forwarded-For: 203.0.113.7\r\n"));
    assert_eq!(
        echo.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.2"),
        "{}",
        server.log()
    );
    // … every line of it, as one list …
    let echo = Echo::parse(&req(
        UNTRUSTED,
        "/p/u3",
        "X-Forwarded-For: 192.0.2.66\r\nX-Forwarded-For: 203.0.113.8, 198.51.100.3\r\n",
    ));
    assert_eq!(
        echo.header("x-forwarded-for"),
        Some("192.0.2.66, 203.0.113.8, 198.51.100.3, 127.0.0.2"),
        "{}",
        server.log()
    );
    // … and behind a trusted balancer the client it resolved (as nginx's
    // realip does), with the scheme the balancer reported.
    let echo = Echo::parse(&req(BALANCER, "/p/t5", &format!("{xff}{proto}")));
    assert_eq!(
        echo.header("x-forwarded-for"),
        Some("203.0.113.7, 198.51.100.2, 203.0.113.7"),
        "{}",
        server.log()
    );
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
}

// ---------------------------------------------------------------------------
// 4. ip-limit-wsi.

/// `ip-limit-wsi` of the limit tests.
const WSI: usize = 5;

/// A keep-alive GET of `/a.txt` on `s`; panics unless it is answered.
fn keep_alive_get(s: &mut TcpStream, host: &str, what: &str) {
    s.write_all(format!("GET /a.txt HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let r = read_response(&mut BufReader::new(&*s), false);
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(r.text(), "alpha\n", "{what}");
}

/// Asserts that the connection `s` was closed by the server at accept: a
/// request gets no answer, and the close comes well before any timeout.
fn closed_at_accept(mut s: TcpStream, host: &str, what: &str, log: impl Fn() -> String) {
    let start = Instant::now();
    let got = send_and_drain(&mut s, &get_close(host, "/a.txt", ""));
    assert!(
        got.is_empty(),
        "{what}: served {:?}\n{}",
        String::from_utf8_lossy(&got),
        log()
    );
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "{what}: closed only after {took:?}"
    );
}

/// Retries a fresh connection from `src` until it is served (the server
/// notices a closed connection asynchronously); panics after
/// [`RELEASE_DEADLINE`].
fn served_again(src: Ipv4Addr, port: u16, prefix: &[u8], host: &str, what: &str) -> TcpStream {
    use std::io::BufRead;
    let deadline = Instant::now() + RELEASE_DEADLINE;
    loop {
        let mut s = connect_from(src, port);
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(format!("GET /a.txt HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        let _ = s.write_all(&bytes);
        let mut reader = BufReader::new(s);
        let answered = match reader.fill_buf() {
            Ok(buf) => !buf.is_empty(),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("{what}: {e}"),
        };
        if answered {
            let r = read_response(&mut reader, false);
            assert_eq!(r.status, 200, "{what}");
            assert!(reader.buffer().is_empty(), "{what}: more than one response");
            return reader.into_inner();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still refused after {RELEASE_DEADLINE:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A server with `ip-limit-wsi` 5 and long timeouts (so that idle
/// connections stay), with an echo WebSocket protocol; `extra_global` and
/// `extra_vhost` are inserted verbatim (each ending in a comma).
fn start_wsi(dir: &ConfigDir, port: u16, extra_global: &str, extra_vhost: &str) -> Lwsws {
    let (dump, www) = content(dir);
    dir.write_conf(&format!(
        r#"{{ "global": {{ {extra_global} "ip-limit-wsi": {WSI}, "timeout-secs": "60" }} }}"#
    ));
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "wsi.test", "port": "{port}", {extra_vhost}
                   "keepalive-timeout": "60",
                   "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
                   "mounts": [ {} ] }}] }}"#,
            mounts(&dump, &www, None)
        ),
    );
    Lwsws::start(bin(), dir, &[], &[port])
}

#[test]
fn ip_limit_wsi_counts_connections_per_address() {
    let dir = ConfigDir::new();
    let port = free_port();
    let server = start_wsi(&dir, port, "", "");

    // Five keep-alive connections from 127.0.0.2, each answered once so
    // that the server has surely counted it.
    let mut held: Vec<TcpStream> = (0..WSI)
        .map(|i| {
            let mut s = connect_from(UNTRUSTED, port);
            keep_alive_get(&mut s, "wsi.test", &format!("connection {i}"));
            s
        })
        .collect();
    // The sixth is closed at once, and says why in the log.
    closed_at_accept(
        connect_from(UNTRUSTED, port),
        "wsi.test",
        "sixth connection",
        || server.log(),
    );
    assert!(
        server.wait_for_log("ip-limit-wsi", LOG_DEADLINE),
        "{}",
        server.log()
    );
    // Another address is not limited by it.
    let r = exchange_from(UNTRUSTED_2, port, b"", &get_close("wsi.test", "/a.txt", ""));
    assert_eq!(r.status, 200);
    // The held ones still work.
    for (i, s) in held.iter_mut().enumerate() {
        keep_alive_get(s, "wsi.test", &format!("held connection {i}"));
    }
    // One closed: 127.0.0.2 gets one more, and then no more again.
    drop(held.pop());
    held.push(served_again(
        UNTRUSTED,
        port,
        b"",
        "wsi.test",
        "after closing one",
    ));
    closed_at_accept(
        connect_from(UNTRUSTED, port),
        "wsi.test",
        "sixth connection again",
        || server.log(),
    );
    // Refused twice, logged once (at most once a minute per address).
    thread::sleep(Duration::from_millis(300));
    let logged = server
        .log()
        .lines()
        .filter(|l| l.contains("ip-limit-wsi") && l.contains("127.0.0.2"))
        .count();
    assert_eq!(logged, 1, "{}", server.log());
}

/// The status of a WebSocket upgrade of `/` from `src` with `Host: host`
/// and extra header lines.
fn upgrade_status(src: Ipv4Addr, port: u16, host: &str, extra: &str) -> u16 {
    let mut s = connect_from(src, port);
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    read_response(&mut BufReader::new(s), false).status
}

/// Opens a WebSocket (`echo`) from `src` and checks that it echoes.
fn open_ws(src: Ipv4Addr, port: u16) -> TcpStream {
    let mut s = connect_from(src, port);
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: wsi.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    // Byte by byte up to the end of the head, so nothing after it is lost.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = s.read(&mut b).unwrap();
        assert!(
            n == 1,
            "closed inside the 101 head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // A masked text frame "hi"; the echo is unmasked.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    s.write_all(&frame).unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x02hi");
    s
}

#[test]
fn ip_limit_wsi_counts_open_websockets() {
    let dir = ConfigDir::new();
    let port = free_port();
    let server = start_wsi(&dir, port, "", "");
    let mut held: Vec<TcpStream> = (0..WSI).map(|_| open_ws(UNTRUSTED, port)).collect();
    // The upgraded connections still count.
    closed_at_accept(
        connect_from(UNTRUSTED, port),
        "wsi.test",
        "sixth connection beside five WebSockets",
        || server.log(),
    );
    let r = exchange_from(UNTRUSTED_2, port, b"", &get_close("wsi.test", "/a.txt", ""));
    assert_eq!(r.status, 200);
    // A WebSocket closed gives its slot back.
    drop(held.pop());
    let _again = served_again(
        UNTRUSTED,
        port,
        b"",
        "wsi.test",
        "after closing a WebSocket",
    );
    closed_at_accept(
        connect_from(UNTRUSTED, port),
        "wsi.test",
        "sixth connection again",
        || server.log(),
    );
}

#[test]
fn ip_limit_wsi_counts_the_proxy_protocol_source_not_the_balancer() {
    let dir = ConfigDir::new();
    let port = free_port();
    let server = start_wsi(
        &dir,
        port,
        r#""trusted-proxies": ["127.0.0.1/32"],"#,
        r#""proxy-protocol": "1","#,
    );
    // Five connections from the balancer for client A…
    let mut held: Vec<TcpStream> = (0..WSI)
        .map(|i| {
            let mut s = connect_from(BALANCER, port);
            let sport = 41000 + u16::try_from(i).unwrap();
            s.write_all(&v2(CLIENT, sport, port)).unwrap();
            keep_alive_get(&mut s, "wsi.test", &format!("client A, connection {i}"));
            s
        })
        .collect();
    // … and a sixth from the same balancer for client B.
    let mut b = connect_from(BALANCER, port);
    b.write_all(&v1(OTHER_CLIENT, 42000, port)).unwrap();
    keep_alive_get(&mut b, "wsi.test", "client B");
    // A sixth for client A is closed.
    let mut s = connect_from(BALANCER, port);
    s.write_all(&v2(CLIENT, 41010, port)).unwrap();
    closed_at_accept(s, "wsi.test", "client A's sixth", || server.log());
    assert!(
        server.wait_for_log("ip-limit-wsi", LOG_DEADLINE),
        "{}",
        server.log()
    );
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("ip-limit-wsi") && l.contains("203.0.113.7")),
        "the refusal does not name client A:\n{}",
        server.log()
    );
    // The balancer's own LOCAL connections are the balancer's, not A's.
    let r = exchange_from(
        BALANCER,
        port,
        &v2_local(),
        &get_close("wsi.test", "/a.txt", ""),
    );
    assert_eq!(r.status, 200);
    // One of A's closed: A gets one again.
    drop(held.pop());
    held.push(served_again(
        BALANCER,
        port,
        &v2(CLIENT, 41011, port),
        "wsi.test",
        "client A after closing one",
    ));
    let mut s = connect_from(BALANCER, port);
    s.write_all(&v2(CLIENT, 41012, port)).unwrap();
    closed_at_accept(s, "wsi.test", "client A's sixth again", || server.log());
    drop(b);
}

// ---------------------------------------------------------------------------
// 5. ip-limit-ah.

/// Creates `DIR/go` when dropped, so that gated CGI programs end even when
/// a test fails.
struct Gate(PathBuf);

impl Gate {
    fn open(&self) {
        std::fs::write(self.0.join("go"), "").unwrap();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("go"), "");
    }
}

/// A request in progress: the connection, read on another thread.
type Pending = thread::JoinHandle<Reply>;

/// Starts `GET /gate?NAME` from `src` (with extra header lines) and waits
/// until the CGI program runs, so that the request is surely in progress.
fn hold(src: Ipv4Addr, port: u16, state: &Path, name: &str, extra: &str) -> Pending {
    let mut s = connect_from(src, port);
    s.write_all(&get_close("ah.test", &format!("/gate?{name}"), extra))
        .unwrap();
    let pending = thread::spawn(move || one(&read_to_close(&mut s)));
    let pids = state.join(format!("{name}.pids"));
    assert!(
        wait_until(IO_DEADLINE, || pids.exists()),
        "the CGI program for {name} did not start"
    );
    pending
}

/// A CGI program that sends its headers and a first line at once, then
/// waits (a minute at most) for `$CGI_TEST_DIR/go` before the last line:
/// its request is in progress while the body is being sent.
const BODY_GATE: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nstarted %s\n' "$QUERY_STRING"
i=0
while [ ! -e "$CGI_TEST_DIR/go" ] && [ $i -lt 1200 ]; do
	sleep 0.05
	i=$((i + 1))
done
printf 'done %s\n' "$QUERY_STRING"
"#;

/// Starts `GET /body?NAME` from `src` and waits until the first line of
/// the body has arrived, so that the response is surely under way.
fn hold_body(src: Ipv4Addr, port: u16, name: &str) -> Pending {
    let mut s = connect_from(src, port);
    s.write_all(&get_close("ah.test", &format!("/body?{name}"), ""))
        .unwrap();
    let started = format!("started {name}\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(&started) {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "{name}: closed before the body started: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    thread::spawn(move || {
        got.extend(read_to_close(&mut s));
        one(&got)
    })
}

#[test]
fn ip_limit_ah_counts_requests_in_progress_per_address() {
    let dir = ConfigDir::new();
    let (_, www) = content(&dir);
    let gate = install_cgi(&dir, "cgi-bin/gate.sh", "gate.sh");
    let body = dir.write_file("cgi-bin/body-gate.sh", BODY_GATE);
    std::fs::set_permissions(&body, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.mkdir("state");
    let port = free_port();
    dir.write_conf(r#"{ "global": { "ip-limit-ah": 2, "trusted-proxies": ["127.0.0.1/32"] } }"#);
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "ah.test", "port": "{port}", "mounts": [
                {{ "mountpoint": "/", "origin": "file://{}" }},
                {{ "mountpoint": "/gate", "origin": "cgi://{gate}",
                   "cgi-env": [{{ "CGI_TEST_DIR": "{state}" }}] }},
                {{ "mountpoint": "/body", "origin": "cgi://{body}",
                   "cgi-env": [{{ "CGI_TEST_DIR": "{state}" }}] }} ] }}] }}"#,
            www.display(),
            gate = gate.display(),
            body = body.display(),
            state = state.display()
        ),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let gate = Gate(state.clone());

    // Two requests in progress from 127.0.0.2, one waiting for its CGI
    // program's headers, one in the middle of its body…
    let first = hold(UNTRUSTED, port, &state, "a1", "");
    let second = hold_body(UNTRUSTED, port, "a2");
    // … the third from it gets 503 with Retry-After: 1, at once.
    let r = exchange_from(UNTRUSTED, port, b"", &get_close("ah.test", "/a.txt", ""));
    assert_eq!(r.status, 503, "{}", server.log());
    assert_eq!(r.header("retry-after"), Some("1"));
    // 127.0.0.3 is not limited by it.
    let other = hold(UNTRUSTED_2, port, &state, "b1", "");

    // Behind the balancer the forwarded address counts: two for A…
    let xff_a = "X-Forwarded-For: 203.0.113.7\r\n";
    let xa1 = hold(BALANCER, port, &state, "x1", xff_a);
    let xa2 = hold(BALANCER, port, &state, "x2", xff_a);
    // … a third for A is refused, one for B from the same balancer is not.
    let r = exchange_from(BALANCER, port, b"", &get_close("ah.test", "/a.txt", xff_a));
    assert_eq!(r.status, 503, "{}", server.log());
    assert_eq!(r.header("retry-after"), Some("1"));
    let xb = hold(
        BALANCER,
        port,
        &state,
        "y1",
        "X-Forwarded-For: 198.18.0.9\r\n",
    );

    gate.open();
    for (name, pending) in [
        ("a1", first),
        ("a2", second),
        ("b1", other),
        ("x1", xa1),
        ("x2", xa2),
        ("y1", xb),
    ] {
        let r = pending.join().unwrap();
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let expected = if name == "a2" {
            format!("started {name}\ndone {name}\n")
        } else {
            format!("reply {name}\n")
        };
        assert_eq!(r.text(), expected);
    }
    // Done requests give their slots back (the last two perhaps a moment
    // after their clients saw the end).
    let get = || exchange_from(UNTRUSTED, port, b"", &get_close("ah.test", "/a.txt", ""));
    assert!(
        wait_until(RELEASE_DEADLINE, || get().status == 200),
        "127.0.0.2 still limited after its requests ended"
    );
    for i in 0..3 {
        let r = exchange_from(UNTRUSTED, port, b"", &get_close("ah.test", "/a.txt", ""));
        assert_eq!(r.status, 200, "request {i} after the others ended");
    }
    drop(server);
}

// ---------------------------------------------------------------------------
// 6. --check.

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, col)
}

/// The stderr line for `file:line:col:`; panics with all of stderr if absent.
fn line_at<'a>(err: &'a str, file: &Path, (line, col): (usize, usize)) -> &'a str {
    let place = format!("{}:{line}:{col}: ", file.display());
    err.lines()
        .find(|l| l.contains(&place))
        .unwrap_or_else(|| panic!("no diagnostic at {place}\nstderr:\n{err}"))
}

#[test]
fn check_rejects_bad_cidrs_and_mixed_proxy_protocol_on_one_port() {
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    let conf = r#"{
  "global": {
    "trusted-proxies": ["127.0.0.1/32", "10.0.0.0/33"]
  }
}
"#;
    dir.write_conf(conf);
    let site = two_vhosts(&w, "");
    dir.write_conf_d("site", &site);
    let out = check(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");

    let l = line_at(&err, &dir.path().join("conf"), pos(conf, "\"10.0.0.0/33\""));
    assert!(
        l.contains("trusted-proxies") && l.contains("10.0.0.0/33"),
        "{l}"
    );
    // The second vhost is the one that disagrees with the first.
    let file = dir.path().join("conf.d/site");
    let l = line_at(&err, &file, pos(&site, "{ \"name\": \"b.test\""));
    assert!(
        l.contains("\"proxy-protocol\"") && l.contains("a.test") && l.contains("b.test"),
        "{l}"
    );
    assert!(
        l.contains(&format!("{}:2:3", file.display())),
        "the first vhost's place: {l}"
    );

    // The string form is checked element by element too.
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    let conf = r#"{ "global": { "trusted-proxies": "127.0.0.1/32, 300.1.2.3" } }"#;
    dir.write_conf(conf);
    dir.write_conf_d("site", &common::vhost("a.test", 8080, &w));
    let out = check(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("trusted-proxies") && err.contains("300.1.2.3"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}:1:", dir.path().join("conf").display())),
        "{err}"
    );

    // The same vhosts agreeing, and good CIDRs: accepted.
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    dir.write_conf(
        r#"{ "global": { "trusted-proxies": ["127.0.0.1", "::1/128", "10.0.0.0/8"] } }"#,
    );
    dir.write_conf_d("site", &two_vhosts(&w, r#""proxy-protocol": "1","#));
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // proxy-protocol on TCP with no trusted-proxies would refuse every
    // connection: an error at the key, with the fix.
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    let site = two_vhosts(&w, r#""proxy-protocol": "1","#);
    dir.write_conf_d("site", &site);
    let out = check(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let file = dir.path().join("conf.d/site");
    let l = line_at(&err, &file, pos(&site, "\"proxy-protocol\""));
    assert!(
        l.contains("\"proxy-protocol\"") && l.contains("trusted-proxies") && l.contains("refused"),
        "{l}"
    );
    // On a Unix socket the socket's permissions decide: accepted.
    let dir = ConfigDir::new();
    let w = dir.mkdir("www");
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "u.test", "unix-socket": "1", "interface": "{}",
                 "proxy-protocol": "1",
                 "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}] }}"#,
            dir.path().join("lb.sock").display(),
            w.display()
        ),
    );
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Two vhosts on port 8080 serving `w`: `a.test` with `proxy-protocol`,
/// then `b.test` with `b_extra` (inserted verbatim, ending in a comma).
fn two_vhosts(w: &Path, b_extra: &str) -> String {
    format!(
        r#"{{ "vhosts": [
  {{ "name": "a.test", "port": "8080", "proxy-protocol": "1",
     "mounts": [{{ "mountpoint": "/", "origin": "file://{w}" }}] }},
  {{ "name": "b.test", "port": "8080", {b_extra}
     "mounts": [{{ "mountpoint": "/", "origin": "file://{w}" }}] }}
] }}
"#,
        w = w.display()
    )
}
