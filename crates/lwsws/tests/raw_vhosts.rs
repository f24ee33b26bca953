//! Raw vhosts against the real binary (SPEC §7, issue 10's raw bullets):
//! - `apply-listen-accept` with the `raw-proxy` role and protocol forwards
//!   every connection byte for byte to the `onward` address of its
//!   `ws-protocols` entry: a TCP echo server on loopback (IPv4 and IPv6),
//!   a Unix socket; several round trips, 1 MiB each way;
//! - half-close both ways: the client's end of stream reaches the upstream
//!   as a write shutdown while the upstream's answer still comes back, and
//!   an upstream that shuts its side first still receives what the client
//!   sends afterwards;
//! - an onward address that refuses: the client connection is closed and
//!   the failure logged;
//! - `fallback-listen-accept` + `allow-non-tls` on a TLS port: `curl -k
//!   https://` gets 200 while an SSH-like client (`SSH-2.0-…`) reaches the
//!   onward server; plaintext HTTP there is closed without an answer
//!   (neither `redirect-http` nor `allow-http-on-https`), or redirected
//!   with `redirect-http`; a client that sends nothing within
//!   `timeout-secs` goes raw (protocols where the server speaks first);
//! - fallback on a plaintext port: HTTP is served, other bytes go raw;
//! - `apply-listen-accept` on a TLS vhost: raw after the TLS handshake;
//! - a draining generation (SIGHUP) keeps its raw connections; SIGTERM cuts
//!   them;
//! - `--check`: a malformed `onward`, a `listen-accept-protocol` that names
//!   no enabled entry or a WebSocket protocol, an unknown role.
//!
//! The server side is `crates/lwsws-server/src/raw.rs` (routes, sniffing,
//! forwarding) with the dispatch in `conn.rs`; validation in
//! `crates/lwsws-config/src/convert.rs` (`raw_protocol`, `Onward::parse`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use common::{bin, check, curl, read_to_close, stderr, stdout, wait_until};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tls::Ca;

/// Socket reads give up after this long: a liveness bound only.
const IO_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Onward servers.

/// Echoes every byte of every connection; on the client's end of stream it
/// shuts down its own sending side. Runs until the test process ends.
fn echo_on(listener: TcpListener) {
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || echo_conn(s));
        }
    });
}

fn echo_conn<S: Read + Write>(mut s: S) -> S {
    let mut buf = vec![0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return s,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return s;
                }
            }
        }
    }
}

/// An IPv4 echo server on loopback; returns its port.
fn echo_server() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    echo_on(l);
    port
}

/// Reads to the end of stream, then answers `received N` and closes: its
/// answer depends on the client's half-close having reached it.
fn counting_server() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).is_ok() {
                    let _ = s.write_all(format!("received {}\n", all.len()).as_bytes());
                }
            });
        }
    });
    port
}

/// Sends `HELLO\n`, shuts down its sending side, then reads to the end of
/// stream and reports what it got on the channel (speaks first, like SSH).
fn banner_server() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = s.write_all(b"HELLO\n");
                let _ = s.shutdown(Shutdown::Write);
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all);
                // Readiness probes connect and close without a byte.
                if !all.is_empty() {
                    let _ = tx.send(all);
                }
            });
        }
    });
    (port, rx)
}

// ---------------------------------------------------------------------------
// Configuration and clients.

/// A raw vhost on `port` forwarding to `onward`; `extra` is inserted verbatim.
fn raw_vhost(name: &str, port: u16, onward: &str, extra: &str) -> String {
    format!(
        r#"{{ "name": "{name}", "port": "{port}", {extra}
            "apply-listen-accept": "1", "listen-accept-role": "raw-proxy",
            "listen-accept-protocol": "raw-proxy",
            "ws-protocols": [{{ "raw-proxy": {{ "onward": "{onward}" }} }}] }}"#
    )
}

fn conf(vhosts: &[String], global: &str) -> String {
    format!(
        "{{ \"global\": {{ {global} }},\n  \"vhosts\": [\n{}\n] }}\n",
        vhosts.join(",\n")
    )
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(IO_DEADLINE)).unwrap();
    s
}

/// Sends `msg` and reads exactly as many bytes back.
fn round_trip(s: &mut (impl Read + Write), msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// Several round trips of growing size on one connection.
fn round_trips(s: &mut (impl Read + Write)) {
    for i in 0..10 {
        let msg = format!("message {i} {}\n", "x".repeat(i * 100));
        assert_eq!(
            round_trip(s, msg.as_bytes()),
            msg.as_bytes(),
            "round trip {i}"
        );
    }
}

/// Deterministic bytes of every value.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Sends `data` from another thread, then shuts down the sending side;
/// reads everything until the end of stream here. Returns what came back.
fn send_all_then_half_close(s: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut s = s;
    let back = read_to_close(&mut s);
    sender.join().unwrap();
    back
}

// ---------------------------------------------------------------------------
// apply-listen-accept: forwarding.

#[test]
fn bytes_both_ways_round_trips_large_payload_and_half_close() {
    let echo = echo_server();
    let counting = counting_server();
    let dir = ConfigDir::new();
    let (port, port2) = (free_port(), free_port());
    dir.write_conf(&conf(
        &[
            raw_vhost("raw.test", port, &format!("ipv4:127.0.0.1:{echo}"), ""),
            raw_vhost(
                "count.test",
                port2,
                &format!("ipv4:localhost:{counting}"),
                "",
            ),
        ],
        "",
    ));
    let _server = Lwsws::start(bin(), &dir, &[], &[port, port2]);

    // Round trips, then 1 MiB with a half-close: everything comes back,
    // then the end of stream.
    let mut s = connect(port);
    round_trips(&mut s);
    let big = payload(1 << 20);
    let back = send_all_then_half_close(s, big.clone());
    assert_eq!(back.len(), big.len(), "echoed length");
    assert!(back == big, "echoed bytes differ");

    // Several connections at once are independent.
    let mut conns: Vec<TcpStream> = (0..5).map(|_| connect(port)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(format!("conn {i}\n").as_bytes()).unwrap();
    }
    for (i, c) in conns.iter_mut().rev().enumerate() {
        let i = 4 - i;
        let want = format!("conn {i}\n");
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, want.as_bytes());
    }

    // The upstream answers only once it has seen the client's end of
    // stream: the half-close went through and the other direction stayed
    // open.
    let mut s = connect(port2);
    s.write_all(&payload(300_000)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut s), b"received 300000\n");
}

#[test]
fn upstream_half_close_leaves_the_client_direction_open() {
    let (banner, got) = banner_server();
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write_conf(&conf(
        &[raw_vhost(
            "raw.test",
            port,
            &format!("ipv4:127.0.0.1:{banner}"),
            "",
        )],
        "",
    ));
    let _server = Lwsws::start(bin(), &dir, &[], &[port]);
    let mut s = connect(port);
    // The banner, then the end of stream from the upstream's shutdown…
    assert_eq!(read_to_close(&mut s), b"HELLO\n");
    // … and what the client sends afterwards still arrives.
    s.write_all(b"after the banner").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let received = got.recv_timeout(IO_DEADLINE).expect("upstream got nothing");
    assert_eq!(received, b"after the banner");
}

#[test]
fn unix_socket_and_ipv6_onward() {
    let dir = ConfigDir::new();
    let sock = dir.path().join("upstream.sock");
    let ul = UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for s in ul.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                let s = echo_conn(s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    let (p_unix, p_rel) = (free_port(), free_port());
    let mut vhosts = vec![
        raw_vhost("unix.test", p_unix, &format!("unix:{}", sock.display()), ""),
        // A relative path is relative to the configuration directory.
        raw_vhost("rel.test", p_rel, "unix:upstream.sock", ""),
    ];
    let mut ports = vec![p_unix, p_rel];
    // IPv6 where the machine has a loopback for it, in both spellings.
    let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).ok();
    if let Some(l) = v6 {
        let echo6 = l.local_addr().unwrap().port();
        echo_on(l);
        let (a, b) = (free_port(), free_port());
        vhosts.push(raw_vhost("v6a.test", a, &format!("ipv6:[::1]:{echo6}"), ""));
        vhosts.push(raw_vhost("v6b.test", b, &format!("ipv6:::1:{echo6}"), ""));
        ports.extend([a, b]);
    } else {
        eprintln!("no IPv6 loopback here: the ipv6 onward part is skipped");
    }
    dir.write_conf(&conf(&vhosts, ""));
    let _server = Lwsws::start(bin(), &dir, &[], &ports);
    for port in ports {
        let mut s = connect(port);
        round_trips(&mut s);
        let data = payload(200_000);
        let back = send_all_then_half_close(s, data.clone());
        assert!(back == data, "port {port}: echoed bytes differ");
    }
}

#[test]
fn onward_connect_failure_closes_the_client() {
    let dir = ConfigDir::new();
    let (port, dead) = (free_port(), free_port());
    dir.write_conf(&conf(
        &[raw_vhost(
            "dead.test",
            port,
            &format!("ipv4:127.0.0.1:{dead}"),
            "",
        )],
        r#""timeout-secs": "2""#,
    ));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let mut s = connect(port);
    let _ = s.write_all(b"anyone there?\n");
    let started = Instant::now();
    assert_eq!(read_to_close(&mut s), b"", "nothing may come back");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed only after {:?}",
        started.elapsed()
    );
    assert!(
        server.wait_for_log("cannot connect onward", Duration::from_secs(10)),
        "connect failure not logged:\n{}",
        server.log()
    );
}

// ---------------------------------------------------------------------------
// fallback-listen-accept.

/// Writes a certificate for 127.0.0.1/localhost; returns the vhost keys.
fn tls_keys(dir: &ConfigDir) -> String {
    let ca = Ca::new("Raw test CA");
    let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let c = dir.write_file("tls/server.crt", cert);
    let k = dir.write_file("tls/server.key", key);
    format!(
        r#""host-ssl-cert": "{}", "host-ssl-key": "{}","#,
        c.display(),
        k.display()
    )
}

/// A vhost serving `www` at `/` with a fallback raw protocol to `onward`.
fn fallback_vhost(name: &str, port: u16, www: &Path, onward: &str, extra: &str) -> String {
    format!(
        r#"{{ "name": "{name}", "port": "{port}", {extra}
            "fallback-listen-accept": "1", "listen-accept-role": "raw-proxy",
            "listen-accept-protocol": "raw-proxy",
            "ws-protocols": [{{ "raw-proxy": {{ "onward": "{onward}" }} }}],
            "mounts": [{{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }}] }}"#,
        www.display()
    )
}

#[test]
fn ssh_like_fallback_on_a_tls_port() {
    let echo = echo_server();
    let (banner, _got) = banner_server();
    let dir = ConfigDir::new();
    dir.write_file("www/index.html", "tls site\n");
    let www = dir.path().join("www");
    let keys = tls_keys(&dir);
    let (port, redir, silent) = (free_port(), free_port(), free_port());
    let onward = format!("ipv4:127.0.0.1:{echo}");
    dir.write_conf(&conf(
        &[
            fallback_vhost(
                "localhost",
                port,
                &www,
                &onward,
                &format!(r#"{keys} "allow-non-tls": "1","#),
            ),
            fallback_vhost(
                "localhost",
                redir,
                &www,
                &onward,
                &format!(r#"{keys} "allow-non-tls": "1", "redirect-http": "1","#),
            ),
            fallback_vhost(
                "localhost",
                silent,
                &www,
                &format!("ipv4:127.0.0.1:{banner}"),
                &format!(r#"{keys} "allow-non-tls": "1","#),
            ),
        ],
        r#""timeout-secs": "2""#,
    ));
    let _server = Lwsws::start(bin(), &dir, &[], &[port, redir, silent]);

    // HTTPS is served as usual.
    for p in [port, redir] {
        let r = curl(&["-k", &format!("https://127.0.0.1:{p}/")]);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "tls site\n");
    }

    // An SSH client speaks first: its banner reaches the onward server
    // and comes back, and the connection goes on both ways.
    let mut s = connect(port);
    assert_eq!(round_trip(&mut s, b"SSH-2.0-test\r\n"), b"SSH-2.0-test\r\n");
    round_trips(&mut s);
    let back = send_all_then_half_close(s, payload(100_000));
    assert!(back == payload(100_000));
    // Sent in pieces, the first of them too short to decide on.
    let mut s = connect(port);
    s.write_all(b"SSH").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b"-2.0-split\r\n").unwrap();
    let mut back = vec![0u8; 15];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, b"SSH-2.0-split\r\n");
    // Binary garbage is not HTTP either.
    let mut s = connect(redir);
    assert_eq!(round_trip(&mut s, b"\x00\x01\x02\xff"), b"\x00\x01\x02\xff");

    // Plaintext HTTP: neither redirect-http nor allow-http-on-https → the
    // connection is closed without an answer (SPEC §2.3, §7: only
    // non-HTTP plaintext goes raw) …
    let mut s = connect(port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_to_close(&mut s), b"");
    // … and with redirect-http it is redirected, not proxied.
    let r = curl(&[&format!("http://127.0.0.1:{redir}/x")]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://127.0.0.1:{redir}/x").as_str())
    );

    // A client that sends nothing within timeout-secs goes raw: the
    // upstream speaks first.
    let mut s = connect(silent);
    let started = Instant::now();
    let mut hello = [0u8; 6];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"HELLO\n");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "went raw before timeout-secs: {:?}",
        started.elapsed()
    );
    // TLS on that port is still TLS.
    let r = curl(&["-k", &format!("https://127.0.0.1:{silent}/")]);
    assert_eq!(r.status, 200);
}

#[test]
fn fallback_on_a_plaintext_port() {
    let echo = echo_server();
    let dir = ConfigDir::new();
    dir.write_file("www/index.html", "plain site\n");
    let www = dir.path().join("www");
    let port = free_port();
    dir.write_conf(&conf(
        &[fallback_vhost(
            "localhost",
            port,
            &www,
            &format!("ipv4:127.0.0.1:{echo}"),
            "",
        )],
        "",
    ));
    let _server = Lwsws::start(bin(), &dir, &[], &[port]);
    let r = curl(&[&format!("http://127.0.0.1:{port}/")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "plain site\n");
    // Keep-alive requests on one connection still work after the sniffing.
    let r = curl(&[
        &format!("http://127.0.0.1:{port}/"),
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(r.status, 200);
    let mut s = connect(port);
    assert_eq!(round_trip(&mut s, b"SSH-2.0-test\r\n"), b"SSH-2.0-test\r\n");
    round_trips(&mut s);
}

#[test]
fn apply_on_a_tls_vhost_forwards_after_the_handshake() {
    let echo = echo_server();
    let dir = ConfigDir::new();
    let ca = Ca::new("Raw TLS CA");
    let (cert, key) = ca.server_cert(&["localhost"]);
    let c = dir.write_file("tls/s.crt", cert);
    let k = dir.write_file("tls/s.key", key);
    let port = free_port();
    dir.write_conf(&conf(
        &[raw_vhost(
            "localhost",
            port,
            &format!("ipv4:127.0.0.1:{echo}"),
            &format!(
                r#""host-ssl-cert": "{}", "host-ssl-key": "{}","#,
                c.display(),
                k.display()
            ),
        )],
        "",
    ));
    let _server = Lwsws::start(bin(), &dir, &[], &[port]);
    let cfg = tls::rustls_client(&ca.pem(), None, &[]);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, connect(port));
    round_trips(&mut s);
    let big = payload(300_000);
    let mut back = Vec::new();
    for chunk in big.chunks(16384) {
        back.extend(round_trip(&mut s, chunk));
    }
    assert!(back == big);
}

// ---------------------------------------------------------------------------
// Reload and stop.

#[test]
fn draining_keeps_raw_connections_and_stop_cuts_them() {
    let echo = echo_server();
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write_conf(&conf(
        &[raw_vhost(
            "raw.test",
            port,
            &format!("ipv4:127.0.0.1:{echo}"),
            "",
        )],
        r#""drain-timeout-secs": "60""#,
    ));
    let mut server = Lwsws::start(bin(), &dir, &[], &[port]);
    let mut old = connect(port);
    assert_eq!(round_trip(&mut old, b"before\n"), b"before\n");

    // A reload: the old generation drains; its raw connection goes on,
    // and the new generation serves new ones.
    server.signal(Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || server
            .log()
            .lines()
            .filter(|l| l.contains("worker ready"))
            .count()
            >= 2),
        "generation 2 never ready\n{}",
        server.log()
    );
    let mut fresh = connect(port);
    assert_eq!(round_trip(&mut fresh, b"new\n"), b"new\n");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        round_trip(&mut old, b"still here\n"),
        b"still here\n",
        "reload cut the raw connection"
    );

    // SIGTERM: the raw connections are cut and the server exits.
    server.signal(Signal::SIGTERM);
    let started = Instant::now();
    assert_eq!(read_to_close(&mut old), b"");
    assert_eq!(read_to_close(&mut fresh), b"");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "raw connections cut only after {:?}",
        started.elapsed()
    );
    let status = server.wait_exit(Duration::from_secs(20)).expect("exit");
    assert!(status.success(), "{status:?}\n{}", server.log());
}

// ---------------------------------------------------------------------------
// --check.

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

/// The stderr line for `DIR/conf:line:col:`.
fn line_at<'a>(err: &'a str, dir: &ConfigDir, (line, col): (usize, usize)) -> &'a str {
    let place = format!("{}/conf:{line}:{col}: ", dir.path().display());
    err.lines()
        .find(|l| l.contains(&place))
        .unwrap_or_else(|| panic!("no diagnostic at {place}\nstderr:\n{err}"))
}

#[test]
fn check_accepts_every_onward_form() {
    let dir = ConfigDir::new();
    let vhosts: Vec<String> = [
        "ipv4:127.0.0.1:22",
        "ipv4:localhost:2222",
        "ipv6:[::1]:22",
        "ipv6:::1:22",
        "ipv6:[fe80::1]:22",
        "unix:/run/some.sock",
        "unix:relative.sock",
    ]
    .iter()
    .enumerate()
    .map(|(i, o)| raw_vhost(&format!("v{i}.test"), 7000 + i as u16, o, ""))
    .collect();
    let mut vhosts = vhosts;
    // Without listen-accept-protocol: the entry marked "raw", else the
    // enabled raw-proxy entry; `onlyraw` is `apply-listen-accept`.
    vhosts.push(
        r#"{ "name": "r.test", "port": "7100", "apply-listen-accept": "1",
            "listen-accept-role": "raw-proxy",
            "ws-protocols": [{ "echo": {} },
                             { "raw-proxy": { "raw": "1", "onward": "ipv4:127.0.0.1:22" } }] }"#
            .to_string(),
    );
    vhosts.push(
        r#"{ "name": "o.test", "port": "7101", "onlyraw": "1", "listen-accept-role": "raw-proxy",
            "ws-protocols": [{ "raw-proxy": { "onward": "unix:/run/x.sock" } }] }"#
            .to_string(),
    );
    dir.write_conf(&conf(&vhosts, ""));
    let out = check(&dir);
    assert!(
        out.status.success() && stdout(&out).contains("configuration ok"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_reports_bad_onward_addresses() {
    for bad in [
        "tcp:127.0.0.1:22",
        "ipv4:127.0.0.1",
        "ipv4:127.0.0.1:99999",
        "ipv4:127.0.0.1:ssh",
        "ipv4:[::1]:22",
        "ipv6:[::1:22",
        "ipv6:127.0.0.1:22",
        "unix:",
        "ipv4::22",
    ] {
        let dir = ConfigDir::new();
        let text = conf(&[raw_vhost("raw.test", 7001, bad, "")], "");
        dir.write_conf(&text);
        let out = check(&dir);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        let l = line_at(&err, &dir, pos(&text, &format!("\"{bad}\"")));
        assert!(l.contains("\"onward\""), "{bad}: {l}");
        assert!(l.contains("(write \""), "{bad}: no hint: {l}");
    }
}

#[test]
fn check_reports_listen_accept_protocol_and_role_problems() {
    // A protocol the vhost does not enable.
    let dir = ConfigDir::new();
    let text = conf(
        &[
            r#"{ "name": "a.test", "port": "7002", "apply-listen-accept": "1",
            "listen-accept-role": "raw-proxy", "listen-accept-protocol": "raw-proxi",
            "ws-protocols": [{ "raw-proxy": { "onward": "ipv4:127.0.0.1:22" } }] }"#
                .to_string(),
        ],
        "",
    );
    dir.write_conf(&text);
    let out = check(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let l = line_at(&err, &dir, pos(&text, "\"raw-proxi\""));
    assert!(
        l.contains("\"listen-accept-protocol\"") && l.contains("raw-proxi"),
        "{l}"
    );
    assert!(l.contains("did you mean") || l.contains("raw-proxy"), "{l}");

    // A WebSocket protocol is not a raw protocol; an unknown role.
    let dir = ConfigDir::new();
    let text = conf(
        &[
            r#"{ "name": "b.test", "port": "7003", "apply-listen-accept": "1",
            "listen-accept-role": "raw-socks", "listen-accept-protocol": "echo",
            "ws-protocols": [{ "echo": {} }] }"#
                .to_string(),
        ],
        "",
    );
    dir.write_conf(&text);
    let out = check(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let l = line_at(&err, &dir, pos(&text, "\"echo\","));
    assert!(
        l.contains("\"listen-accept-protocol\"") && l.contains("not a raw protocol"),
        "{l}"
    );
    let l = line_at(&err, &dir, pos(&text, "\"raw-socks\""));
    assert!(
        l.contains("\"listen-accept-role\"") && l.contains("unknown role"),
        "{l}"
    );

    // No onward pvo; no protocol at all.
    let dir = ConfigDir::new();
    let text = conf(
        &[
            r#"{ "name": "c.test", "port": "7004", "apply-listen-accept": "1",
            "listen-accept-role": "raw-proxy", "listen-accept-protocol": "raw-proxy",
            "ws-protocols": [{ "raw-proxy": {} }] }"#
                .to_string(),
            r#"{ "name": "d.test", "port": "7005", "apply-listen-accept": "1",
            "listen-accept-role": "raw-proxy" }"#
                .to_string(),
        ],
        "",
    );
    dir.write_conf(&text);
    let out = check(&dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"onward\"") && err.contains("has no \"onward\" address"),
        "{err}"
    );
    let d = text.find("d.test").unwrap();
    let (line, col) = pos(&text[d..], "\"apply-listen-accept\"");
    let base_line = text[..d].matches('\n').count();
    let col = if line == 1 {
        col + text[..d].rsplit('\n').next().unwrap().chars().count()
    } else {
        col
    };
    let l = line_at(&err, &dir, (base_line + line, col));
    assert!(l.contains("needs a raw protocol"), "{l}");
}
