//! `lws-openmetrics` against the real binary (SPEC §6.4, issue 15's
//! acceptance): a `callback://lws-openmetrics` mount scraped after a known
//! mix of traffic has the exact counter values of that traffic:
//! - HTTP 200 and 404 file requests, a request head no vhost took (400 on
//!   `vhost="-"`), a WebSocket session on `echo` (its 101 is a 1xx; text and
//!   binary messages count, pings and close frames do not), a CGI program
//!   and one killed by `cgi-timeout` (504), a proxy mount whose upstream
//!   nobody listens on (502, an upstream error), an HTTPS request (one good
//!   handshake) and garbage instead of a ClientHello (one failed one);
//! - the response bytes of a vhost are the sum of the body sizes its
//!   clients received, earlier scrapes included (a scrape counts neither
//!   itself nor its own body);
//! - the connection gauges while a WebSocket is open and after it closed;
//! - after a SIGHUP reload the new generation starts from zero
//!   (`lwsws_generation 2`, `lwsws_reloads_total 1`, a later
//!   `process_start_time_seconds`) and counts its own traffic;
//! - every scrape is accepted by `promtool check metrics` (Debian package
//!   `prometheus`; the tests fail without it);
//! - a `basic-auth` on the mount protects it like any mount.
//!
//! The exposition is `crates/lwsws-ws/src/builtin/openmetrics.rs`, the
//! counters `crates/lwsws-ws/src/stats.rs`; requests are counted in
//! `crates/lwsws-server/src/pipeline.rs`, body bytes in
//! `crates/lwsws-server/src/access_log.rs`, TLS handshakes in
//! `crates/lwsws-server/src/conn.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use common::ws::Ws;
use common::{Reply, bin, exchange, live_children, parse_responses, read_to_close, wait_until};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use nix::sys::signal::Signal;
use rustls::{ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tls::{Ca, rustls_client};

/// Where the Debian package `prometheus` installs promtool.
const PROMTOOL: &str = "/usr/bin/promtool";
/// The name (and Host) of the vhost that serves the metrics.
const HOST: &str = "metrics.test";
/// The TLS vhost's name (and SNI).
const TLS_HOST: &str = "tls.test";
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long gauges, reloads and workers may take to settle: liveness
/// bounds, not timing expectations.
const SETTLE: Duration = Duration::from_secs(30);
/// The status classes in the order of `CLASSES` in openmetrics.rs.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

// ---------------------------------------------------------------------------
// The exposition.

/// One scrape: its text and its samples, `name{labels}` → value as written.
struct Metrics {
    text: String,
    samples: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses the text format; panics on a duplicate series or a sample
    /// line without a value.
    fn parse(text: String) -> Metrics {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample without a value: {line:?}\n{text}"));
            let old = samples.insert(key.to_owned(), value.to_owned());
            assert!(old.is_none(), "series {key} twice:\n{text}");
        }
        Metrics { text, samples }
    }

    /// The value of a series whose values are integers.
    fn int(&self, key: &str) -> u64 {
        let v = self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no series {key} in:\n{}", self.text));
        v.parse()
            .unwrap_or_else(|_| panic!("{key} = {v:?} is not an integer:\n{}", self.text))
    }

    fn float(&self, key: &str) -> f64 {
        let v = self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no series {key} in:\n{}", self.text));
        v.parse()
            .unwrap_or_else(|_| panic!("{key} = {v:?} is not a number:\n{}", self.text))
    }

    /// Asserts the integer value of `key`.
    fn expect(&self, key: &str, want: u64) {
        assert_eq!(self.int(key), want, "{key}\n--- scrape ---\n{}", self.text);
    }

    /// How many series of family `name` there are.
    fn series(&self, name: &str) -> usize {
        self.samples
            .keys()
            .filter(|k| *k == name || k.starts_with(&format!("{name}{{")))
            .count()
    }

    fn generation(&self) -> u64 {
        self.int("lwsws_generation")
    }
}

fn requests(vhost: &str, class: &str) -> String {
    format!("lwsws_http_requests_total{{vhost=\"{vhost}\",code=\"{class}\"}}")
}

fn bytes(vhost: &str) -> String {
    format!("lwsws_http_response_bytes_total{{vhost=\"{vhost}\"}}")
}

fn proxy_errors(vhost: &str) -> String {
    format!("lwsws_proxy_upstream_errors_total{{vhost=\"{vhost}\"}}")
}

fn ws_messages(protocol: &str, direction: &str) -> String {
    format!("lwsws_websocket_messages_total{{protocol=\"{protocol}\",direction=\"{direction}\"}}")
}

fn tls_handshakes(result: &str) -> String {
    format!("lwsws_tls_handshakes_total{{result=\"{result}\"}}")
}

/// Pipes `body` to `promtool check metrics` and panics, with what promtool
/// said and the exposition, unless it exits 0 (lint problems included).
fn promtool_accepts(body: &[u8]) {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install the Debian package `prometheus` \
         (apt-get install -y --no-install-recommends prometheus)"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {PROMTOOL}: {e}"));
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics exited with {}:\n{}{}\n--- exposition ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(body)
    );
}

// ---------------------------------------------------------------------------
// What the clients saw.

/// Requests by (vhost, status class) and body bytes by vhost, as the
/// clients received them: what the server's counters must say.
#[derive(Debug, Default, Clone)]
struct Tally {
    requests: BTreeMap<(String, usize), u64>,
    bytes: BTreeMap<String, u64>,
}

impl Tally {
    /// One answer of `vhost` (`-`: none took it, its bytes are not counted).
    fn record(&mut self, vhost: &str, r: &Reply) {
        let class = usize::from(r.status / 100 - 1);
        *self.requests.entry((vhost.to_owned(), class)).or_default() += 1;
        if vhost != "-" {
            *self.bytes.entry(vhost.to_owned()).or_default() += r.body.len() as u64;
        }
    }

    /// Asserts every request and byte series of `vhosts` and `-` (and that
    /// there are no others).
    fn assert_matches(&self, m: &Metrics, vhosts: &[&str]) {
        for v in vhosts.iter().copied().chain(["-"]) {
            for (i, class) in CLASSES.iter().enumerate() {
                let want = self.requests.get(&(v.to_owned(), i)).copied().unwrap_or(0);
                m.expect(&requests(v, class), want);
            }
        }
        for v in vhosts {
            m.expect(&bytes(v), self.bytes.get(*v).copied().unwrap_or(0));
        }
        assert_eq!(
            m.series("lwsws_http_requests_total"),
            (vhosts.len() + 1) * CLASSES.len(),
            "{}",
            m.text
        );
        assert_eq!(
            m.series("lwsws_http_response_bytes_total"),
            vhosts.len(),
            "{}",
            m.text
        );
    }
}

/// `GET path` with `Host: host` and `Connection: close` on a new connection,
/// read until the server closes it (so that the request is over, body
/// counted, when this returns).
fn http_get(port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    one_response(&exchange(port, req.as_bytes()))
}

fn one_response(bytes: &[u8]) -> Reply {
    let mut replies = parse_responses(bytes);
    assert_eq!(
        replies.len(),
        1,
        "one response expected: {:?}",
        String::from_utf8_lossy(bytes)
    );
    replies.remove(0)
}

/// Scrapes `/metrics` on `port`: checks status, Content-Type and promtool,
/// and returns the answer with its samples (the answer is not recorded).
fn scrape_raw(port: u16, headers: &[(&str, &str)]) -> (Reply, Metrics) {
    let r = http_get(port, HOST, "/metrics", headers);
    assert_eq!(r.status, 200, "scrape: {}", r.text());
    assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
    promtool_accepts(&r.body);
    let m = Metrics::parse(r.text());
    (r, m)
}

// ---------------------------------------------------------------------------
// The server.

/// A server with a plain vhost ([`HOST`]: files, metrics, echo, CGI, a
/// proxy to a dead port) and a TLS vhost ([`TLS_HOST`]: files).
struct Site {
    _dir: ConfigDir,
    port: u16,
    tls_port: u16,
    ca: Ca,
    server: Lwsws,
    /// Scrapes done through [`Site::scrape`] so far.
    scrapes: std::cell::Cell<u64>,
}

const INDEX: &str = "<html><body>metrics test</body></html>\n";
const A_TXT: &str = "some file\n";
const TLS_INDEX: &str = "tls site\n";
const CGI_BODY: &str = "hello from cgi\n";

impl Site {
    fn start() -> Site {
        let dir = ConfigDir::new();
        let www = dir.mkdir("www");
        dir.write_file("www/index.html", INDEX);
        dir.write_file("www/a.txt", A_TXT);
        let tls_www = dir.mkdir("tls-www");
        dir.write_file("tls-www/index.html", TLS_INDEX);
        let hello = dir.write_file(
            "cgi-bin/hello.sh",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello from cgi\\n'\n",
        );
        let slow = dir.write_file("cgi-bin/slow.sh", "#!/bin/sh\nexec sleep 60\n");
        for p in [&hello, &slow] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let ca = Ca::new("metrics test CA");
        let (cert, key) = ca.server_cert(&[TLS_HOST, "127.0.0.1"]);
        let cert = dir.write_file("tls/tls.crt", cert);
        let key = dir.write_file("tls/tls.key", key);
        let (port, tls_port, dead) = (free_port(), free_port(), free_port());
        dir.write_conf("{ \"global\": {} }\n");
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [
  {{ "name": "{HOST}", "port": "{port}",
     "ws-protocols": [{{ "echo": {{}} }}, {{ "lws-openmetrics": {{}} }}],
     "mounts": [
       {{ "mountpoint": "/", "origin": "file://{www}", "default": "index.html" }},
       {{ "mountpoint": "/metrics", "origin": "callback://lws-openmetrics" }},
       {{ "mountpoint": "/cgi", "origin": "cgi://{hello}" }},
       {{ "mountpoint": "/slow", "origin": "cgi://{slow}", "cgi-timeout": 1 }},
       {{ "mountpoint": "/proxy", "origin": "http://127.0.0.1:{dead}/" }} ] }},
  {{ "name": "{TLS_HOST}", "port": "{tls_port}",
     "host-ssl-cert": "{cert}", "host-ssl-key": "{key}",
     "mounts": [{{ "mountpoint": "/", "origin": "file://{tls_www}", "default": "index.html" }}] }}
] }}
"#,
                www = www.display(),
                hello = hello.display(),
                slow = slow.display(),
                cert = cert.display(),
                key = key.display(),
                tls_www = tls_www.display(),
            ),
        );
        // The readiness probes connect and close without a byte: no
        // request, no TLS handshake.
        let server = Lwsws::start(bin(), &dir, &[], &[port, tls_port]);
        Site {
            _dir: dir,
            port,
            tls_port,
            ca,
            server,
            scrapes: std::cell::Cell::new(0),
        }
    }

    fn get(&self, path: &str) -> Reply {
        http_get(self.port, HOST, path, &[])
    }

    /// GET `path` on the plain vhost, recorded in `t`; asserts the status.
    fn get_recorded(&self, t: &mut Tally, path: &str, status: u16) -> Reply {
        let r = self.get(path);
        assert_eq!(
            r.status,
            status,
            "GET {path}: {}\n--- server log ---\n{}",
            r.text(),
            self.server.log()
        );
        t.record(HOST, &r);
        r
    }

    /// A scrape, recorded in `t` after its values were read: returns the
    /// samples and the tally they must match (the one before this scrape).
    fn scrape(&self, t: &mut Tally) -> (Metrics, Tally) {
        let (r, m) = scrape_raw(self.port, &[]);
        self.scrapes.set(self.scrapes.get() + 1);
        let before = t.clone();
        t.record(HOST, &r);
        (m, before)
    }

    /// Scrapes (each one recorded) until `done` holds for one; returns it
    /// and the tally before it.
    fn scrape_until(
        &self,
        t: &mut Tally,
        what: &str,
        done: impl Fn(&Metrics) -> bool,
    ) -> (Metrics, Tally) {
        let mut last = None;
        let settled = wait_until(SETTLE, || {
            let (m, before) = self.scrape(t);
            let ok = done(&m);
            last = Some((m, before));
            ok
        });
        let (m, before) = last.unwrap();
        assert!(
            settled,
            "never {what}; last scrape:\n{}\n--- server log ---\n{}",
            m.text,
            self.server.log()
        );
        (m, before)
    }

    /// Scrapes until the gauges say `http` HTTP connections (the scrape's
    /// own included) and `ws` WebSockets: a connection the client saw
    /// closed may take a moment to be gone on the server's side too.
    fn scrape_settled(&self, t: &mut Tally, http: u64, ws: u64) -> (Metrics, Tally) {
        self.scrape_until(
            t,
            &format!("{http} HTTP connection(s) and {ws} WebSocket(s)"),
            |m| {
                m.int("lwsws_http_connections") == http
                    && m.int("lwsws_websocket_connections") == ws
            },
        )
    }

    /// One HTTPS GET of `/` on the TLS vhost (a complete handshake).
    fn https_get(&self) -> Reply {
        let cfg = rustls_client(&self.ca.pem(), None, &[b"http/1.1"]);
        let conn =
            ClientConnection::new(cfg, ServerName::try_from(TLS_HOST.to_owned()).unwrap()).unwrap();
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, self.tls_port)).unwrap();
        tcp.set_read_timeout(Some(common::IO_DEADLINE)).unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        write!(
            tls,
            "GET / HTTP/1.1\r\nHost: {TLS_HOST}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        tls.flush().unwrap();
        let mut bytes = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                // Closed without close_notify after the answer.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof && !bytes.is_empty() => break,
                Err(e) => panic!("HTTPS GET: {e}\n--- server log ---\n{}", self.server.log()),
            }
        }
        one_response(&bytes)
    }

    /// A handshake record holding a malformed ClientHello: the server
    /// closes the connection (a failed handshake).
    fn tls_garbage(&self) {
        let mut s = common::connect(self.tls_port);
        let mut hello = vec![0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04];
        hello.extend(b"garb");
        s.write_all(&hello).unwrap();
        let answer = read_to_close(&mut s);
        // At most a TLS alert record, never HTTP.
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "answer to a malformed ClientHello: {answer:?}"
        );
    }
}

/// `(generation, pid)` of every `worker ready` line of the log.
fn ready_workers(log: &str) -> Vec<(u64, u32)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = &line[line.find(&format!(" {name}="))? + name.len() + 2..];
        rest.split_whitespace()
            .next()?
            .trim_matches('"')
            .parse()
            .ok()
    };
    log.lines()
        .filter(|l| l.contains("worker ready"))
        .filter_map(|l| {
            Some((
                field(l, "generation")?,
                u32::try_from(field(l, "pid")?).ok()?,
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The tests.

/// Asserts the series that did not take part in the traffic so far.
fn assert_idle_extras(m: &Metrics) {
    m.expect("lwsws_websocket_connections", 0);
    m.expect(&tls_handshakes("ok"), 0);
    m.expect(&tls_handshakes("failed"), 0);
    m.expect("lwsws_cgi_runs_total", 0);
    m.expect("lwsws_cgi_timeouts_total", 0);
    m.expect(&proxy_errors(HOST), 0);
    m.expect(&proxy_errors(TLS_HOST), 0);
    assert_eq!(m.series("lwsws_websocket_messages_total"), 0, "{}", m.text);
}

#[test]
fn counters_match_a_known_mix_of_traffic_and_restart_with_a_reload() {
    let site = Site::start();
    let vhosts = [HOST, TLS_HOST];
    let mut t = Tally::default();

    // A fresh worker: nothing counted yet (the readiness probes are not
    // requests), generation 1, no reload. (The probes' connections may
    // still be open on the server's side: the HTTP gauge is looked at below.)
    let (m0, before) = site.scrape(&mut t);
    before.assert_matches(&m0, &vhosts);
    assert_idle_extras(&m0);
    assert!(m0.int("lwsws_http_connections") >= 1, "{}", m0.text);
    m0.expect("lwsws_generation", 1);
    m0.expect("lwsws_reloads_total", 0);
    let started_1 = m0.float("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started_1 > now - 600.0 && started_1 <= now + 1.0,
        "process_start_time_seconds {started_1}, now {now}"
    );
    // Later scrapes count the earlier ones (a 2xx and its body each), not
    // themselves; the scrape is then the only HTTP connection.
    let (m, before) = site.scrape_settled(&mut t, 1, 0);
    before.assert_matches(&m, &vhosts);
    assert_idle_extras(&m);
    let scrapes = before.requests[&(HOST.to_owned(), 1)];
    assert!(scrapes >= 1);
    m.expect(&requests(HOST, "2xx"), scrapes);
    m.expect(&bytes(HOST), before.bytes[HOST]);
    assert!(before.bytes[HOST] >= m0.text.len() as u64);

    // Files: three 200s, two 404s.
    assert_eq!(site.get_recorded(&mut t, "/", 200).text(), INDEX);
    assert_eq!(site.get_recorded(&mut t, "/index.html", 200).text(), INDEX);
    assert_eq!(site.get_recorded(&mut t, "/a.txt", 200).text(), A_TXT);
    site.get_recorded(&mut t, "/missing.txt", 404);
    site.get_recorded(&mut t, "/no/such/dir/", 404);

    // A request head no vhost takes (a header line without a colon).
    let r = one_response(&exchange(
        site.port,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nno colon here\r\n\r\n").as_bytes(),
    ));
    assert_eq!(r.status, 400, "{}", r.text());
    t.record("-", &r);

    // A WebSocket session on echo: 3 text and 2 binary messages each way,
    // and a ping, which is no data message.
    let mut ws = Ws::connect(site.port, "/", Some("echo"));
    // The 101 is counted as a 1xx, without a body.
    t.record(
        HOST,
        &Reply {
            status: 101,
            headers: Vec::new(),
            body: Vec::new(),
        },
    );
    for i in 0..3 {
        let msg = format!("text message {i}");
        ws.send_text(&msg);
        assert_eq!(ws.recv_text(), msg);
    }
    for i in 0..2u8 {
        let msg = vec![i, 0xff, 0x00, i];
        ws.send_frame(true, OpCode::Binary, &msg);
        let f = ws.recv();
        assert!(f.is(OpCode::Binary) && f.fin && f.payload == msg, "{f:?}");
    }
    ws.send_frame(true, OpCode::Ping, b"are you there");
    let f = ws.recv();
    assert!(f.is(OpCode::Pong) && f.payload == b"are you there", "{f:?}");
    // While it is open: one WebSocket, and one HTTP connection (the scrape;
    // the upgraded one is no longer an HTTP connection).
    let (m, before) = site.scrape_settled(&mut t, 1, 1);
    before.assert_matches(&m, &vhosts);
    m.expect(&ws_messages("echo", "in"), 5);
    m.expect(&ws_messages("echo", "out"), 5);
    m.expect(&requests(HOST, "1xx"), 1);
    ws.send_close(1000, "bye");
    let close = ws.recv_close();
    assert_eq!(
        close.as_ref().map(|(code, _)| *code),
        Some(1000),
        "{close:?}"
    );
    assert!(ws.ends_within(SETTLE), "the server kept the WebSocket open");

    // CGI: two runs of a program that answers, one killed by cgi-timeout.
    assert_eq!(site.get_recorded(&mut t, "/cgi", 200).text(), CGI_BODY);
    assert_eq!(
        site.get_recorded(&mut t, "/cgi/x?y=1", 200).text(),
        CGI_BODY
    );
    site.get_recorded(&mut t, "/slow", 504);

    // A proxy mount whose upstream nobody listens on.
    site.get_recorded(&mut t, "/proxy/anything", 502);

    // TLS: one good handshake (and a request on the TLS vhost), one failed.
    let r = site.https_get();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), TLS_INDEX);
    t.record(TLS_HOST, &r);
    site.tls_garbage();

    // Every connection above has ended: the gauges come back to the scrape
    // alone (each scrape until then is counted too).
    let (m, before) = site.scrape_settled(&mut t, 1, 0);
    before.assert_matches(&m, &vhosts);
    // The figures spelled out, besides the tally.
    // Every scrape but this one: the three above and those until settled.
    let scrapes = site.scrapes.get() - 1;
    assert!(scrapes >= 3, "{scrapes}");
    m.expect(&requests(HOST, "1xx"), 1);
    m.expect(&requests(HOST, "2xx"), 3 + 2 + scrapes);
    m.expect(&requests(HOST, "3xx"), 0);
    m.expect(&requests(HOST, "4xx"), 2);
    m.expect(&requests(HOST, "5xx"), 2);
    m.expect(&requests(TLS_HOST, "2xx"), 1);
    m.expect(&requests("-", "4xx"), 1);
    m.expect(&bytes(TLS_HOST), TLS_INDEX.len() as u64);
    m.expect(&ws_messages("echo", "in"), 5);
    m.expect(&ws_messages("echo", "out"), 5);
    assert_eq!(m.series("lwsws_websocket_messages_total"), 2, "{}", m.text);
    m.expect(&tls_handshakes("ok"), 1);
    m.expect(&tls_handshakes("failed"), 1);
    m.expect("lwsws_cgi_runs_total", 3);
    m.expect("lwsws_cgi_timeouts_total", 1);
    m.expect(&proxy_errors(HOST), 1);
    m.expect(&proxy_errors(TLS_HOST), 0);
    m.expect("lwsws_reloads_total", 0);
    m.expect("lwsws_generation", 1);
    assert_eq!(m.float("process_start_time_seconds"), started_1);

    // Reload: scrape until generation 2 answers. Scrapes that generation 1
    // still answers count there only.
    let (_, gen1_pid) = *ready_workers(&site.server.log())
        .iter()
        .find(|(g, _)| *g == 1)
        .expect("generation 1 ready in the log");
    site.server.signal(Signal::SIGHUP);
    let mut t2 = Tally::default();
    let mut m = None;
    let switched = wait_until(SETTLE, || {
        let (r, scraped) = scrape_raw(site.port, &[]);
        let g = scraped.generation();
        let ok = g == 2;
        if ok {
            // Counted by generation 2 from the next scrape on.
            m = Some((scraped, t2.clone()));
        } else {
            assert_eq!(g, 1, "{}", scraped.text);
        }
        (if ok { &mut t2 } else { &mut t }).record(HOST, &r);
        ok
    });
    assert!(switched, "generation 2 never served\n{}", site.server.log());
    let (m2, before) = m.unwrap();
    before.assert_matches(&m2, &vhosts);
    m2.expect("lwsws_generation", 2);
    m2.expect("lwsws_reloads_total", 1);
    m2.expect(&requests(HOST, "2xx"), 0);
    m2.expect(&bytes(HOST), 0);
    m2.expect("lwsws_websocket_connections", 0);
    m2.expect(&tls_handshakes("ok"), 0);
    m2.expect(&tls_handshakes("failed"), 0);
    m2.expect("lwsws_cgi_runs_total", 0);
    m2.expect("lwsws_cgi_timeouts_total", 0);
    m2.expect(&proxy_errors(HOST), 0);
    assert_eq!(
        m2.series("lwsws_websocket_messages_total"),
        0,
        "{}",
        m2.text
    );
    let started_2 = m2.float("process_start_time_seconds");
    assert!(
        started_2 > started_1,
        "process_start_time_seconds {started_2} after the reload, {started_1} before"
    );

    // Generation 1 had nothing left to finish: it exits, and from then on
    // generation 2 takes every connection.
    let sup = site.server.pid();
    let gen2_pid = ready_workers(&site.server.log())
        .into_iter()
        .find(|(g, _)| *g == 2)
        .map(|(_, pid)| pid)
        .expect("generation 2 ready in the log");
    assert_ne!(gen1_pid, gen2_pid);
    assert!(
        wait_until(SETTLE, || live_children(sup) == [gen2_pid]),
        "workers {:?}, expected only generation 2 ({gen2_pid})\n{}",
        live_children(sup),
        site.server.log()
    );

    // Generation 2 counts its own traffic.
    assert_eq!(site.get_recorded(&mut t2, "/a.txt", 200).text(), A_TXT);
    site.get_recorded(&mut t2, "/missing.txt", 404);
    let (m, before) = site.scrape_settled(&mut t2, 1, 0);
    before.assert_matches(&m, &vhosts);
    m.expect(&requests(HOST, "4xx"), 1);
    m.expect("lwsws_generation", 2);
    m.expect("lwsws_reloads_total", 1);
    assert_eq!(m.float("process_start_time_seconds"), started_2);
}

#[test]
fn basic_auth_protects_the_metrics_mount() {
    let dir = ConfigDir::new();
    let passwd = dir.write_file("metrics.passwd", "prometheus:scrape-secret\n");
    let port = free_port();
    dir.write_conf("{ \"global\": {} }\n");
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "{HOST}", "port": "{port}",
                "ws-protocols": [{{ "lws-openmetrics": {{}} }}],
                "mounts": [{{ "mountpoint": "/metrics", "origin": "callback://lws-openmetrics",
                              "basic-auth": "{}" }}] }}] }}"#,
            passwd.display()
        ),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);

    let r = http_get(port, HOST, "/metrics", &[]);
    assert_eq!(r.status, 401, "{}\n{}", r.text(), server.log());
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic ")),
        "{:?}",
        r.headers
    );
    assert!(
        !r.text().contains("lwsws_"),
        "401 leaks metrics: {}",
        r.text()
    );
    // prometheus:wrong-password
    let wrong = (
        "Authorization",
        "Basic cHJvbWV0aGV1czp3cm9uZy1wYXNzd29yZA==",
    );
    let r = http_get(port, HOST, "/metrics", &[wrong]);
    assert_eq!(r.status, 401, "{}", r.text());
    // prometheus:scrape-secret
    let right = ("Authorization", "Basic cHJvbWV0aGV1czpzY3JhcGUtc2VjcmV0");
    let (_, m) = scrape_raw(port, &[right]);
    // The two refusals were requests like any other.
    m.expect(&requests(HOST, "4xx"), 2);
    m.expect(&requests(HOST, "2xx"), 0);
    m.expect("lwsws_generation", 1);
}
