//! HTTP/2 abuse (hardening): a Python client (`tests/fixtures/h2abuse.py`,
//! raw frames with python3-h2's hyperframe and hpack) attacks a TLS vhost
//! that speaks h2 for a few seconds:
//! - rapid reset (CVE-2023-44487): HEADERS and RST_STREAM at once, in
//!   batches, on as many connections as the server allows;
//! - a CONTINUATION flood: a header block that never ends;
//! - a SETTINGS flood and a PING flood that never read the ACKs;
//! - an oversized header list: 1 MiB of literal header fields (HEADERS and
//!   CONTINUATION frames), and an HPACK bomb (a small frame that decodes to
//!   1 MiB by referencing one 4000-byte dynamic-table entry 260 times).
//!
//! Meanwhile, every [`PROBE_EVERY`], another client (HTTP/1.1 over TLS on
//! a new connection) must get a small file within [`PROBE_BOUND`] (a
//! liveness bound), and the worker's VmRSS is sampled: it, and its VmHWM at
//! the end, must stay under the resident size before the attack plus
//! [`RSS_MARGIN_KIB`]. The worker must be the same process at the end (no
//! crash hidden by a restart). The floods (2–4) must be limited: the
//! server ends the connection (GOAWAY, EOF, reset) or stops reading it;
//! for rapid reset, what the server did is printed (hyper/h2 sends GOAWAY
//! ENHANCE_YOUR_CALM `too_many_resets` once more than
//! `max_pending_accept_reset_streams` reset streams wait to be accepted).
//!
//! The attacks run one at a time (a lock), so that each one alone is
//! measured on a small machine. Each test prints a line with what happened
//! (`cargo test --test hardening_h2 -- --nocapture`).
//!
//! Needs the Debian package python3-h2 (for `/usr/bin/python3`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use common::{live_children, proc_status_kib};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tls::{Ca, rustls_client};

const PYTHON: &str = "/usr/bin/python3";
/// The TLS vhost (h2 and HTTP/1.1).
const HOST: &str = "h2.test";
/// The small file the other client fetches, and its contents.
const PROBE_PATH: &str = "/a.txt";
const PROBE_BODY: &str = "file a\n";
/// How long each attack runs.
const ATTACK_SECS: u64 = 8;
/// How often the other client asks for the file and the RSS is sampled.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How long the other client may wait for its answer (connect, TLS
/// handshake, request, whole response): a liveness bound.
const PROBE_BOUND: Duration = Duration::from_secs(1);
/// How much the worker's resident set may grow during an attack (KiB).
const RSS_MARGIN_KIB: u64 = 100 * 1024;
/// How long the Python client may take beyond [`ATTACK_SECS`] (set-up,
/// its grace periods): a liveness bound.
const ATTACKER_GRACE: Duration = Duration::from_secs(90);

/// One attack at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A running server with one TLS vhost (default ALPN: h2 and http/1.1)
/// serving a small file.
struct Site {
    dir: ConfigDir,
    ca_pem: String,
    ca_file: PathBuf,
    port: u16,
    server: Lwsws,
}

impl Site {
    fn start() -> Site {
        Site::start_with("")
    }

    /// With `extra` (vhost keys, each followed by a comma) added.
    fn start_with(extra: &str) -> Site {
        let dir = ConfigDir::new();
        let ca = Ca::new("lwsws hardening_h2 test CA");
        let ca_file = dir.write_file("tls/ca.pem", ca.pem());
        let (cert, key) = ca.server_cert(&[HOST]);
        let cert = dir.write_file("tls/h2.pem", cert);
        let key = dir.write_file("tls/h2.key", key);
        let www = dir.mkdir("www");
        dir.write_file(&format!("www{PROBE_PATH}"), PROBE_BODY);
        dir.write_file("www/index.html", "<h1>home</h1>\n");
        let port = free_port();
        dir.write_conf(&format!(
            r#"{{ "vhosts": [
    {{ "name": "{HOST}", "port": "{port}", "interface": "127.0.0.1",
       "host-ssl-cert": "{cert}", "host-ssl-key": "{key}", {extra}
       "mounts": [
         {{ "mountpoint": "/", "origin": "file://{www}", "default": "index.html" }}
       ] }}
  ] }}"#,
            cert = cert.display(),
            key = key.display(),
            www = www.display(),
        ));
        let server = Lwsws::start(common::bin(), &dir, &[], &[port]);
        Site {
            dir,
            ca_pem: ca.pem(),
            ca_file,
            port,
            server,
        }
    }

    /// The worker processes (children of the supervisor).
    fn workers(&self) -> Vec<u32> {
        let mut w = live_children(self.server.pid());
        w.sort_unstable();
        w
    }
}

/// Panics with what to install when python3-h2 is missing.
fn require_python_h2() {
    let out = Command::new(PYTHON)
        .args(["-c", "import h2, hpack, hyperframe"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}"));
    assert!(
        out.status.success(),
        "these tests need the Debian package python3-h2 for {PYTHON} \
         (apt-get install -y --no-install-recommends python3-h2; it belongs \
         in tests/run's PACKAGES): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h2abuse.py")
}

/// The summed `field` (VmRSS, VmHWM; KiB) of `pids`.
fn kib(pids: &[u32], field: &str) -> u64 {
    pids.iter().filter_map(|&p| proc_status_kib(p, field)).sum()
}

/// The other client: `GET /a.txt` over HTTP/1.1 on a new TLS connection
/// (`Connection: close`). Returns how long it took, or what went wrong
/// (including a complete answer that took longer than [`PROBE_BOUND`]).
fn probe(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Result<Duration, String> {
    let start = Instant::now();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let tcp =
        TcpStream::connect_timeout(&addr, PROBE_BOUND).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(PROBE_BOUND)).unwrap();
    tcp.set_write_timeout(Some(PROBE_BOUND)).unwrap();
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {PROBE_PATH} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .map_err(|e| format!("send the request: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if start.elapsed() > PROBE_BOUND {
            return Err(format!(
                "no complete answer within {PROBE_BOUND:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // The answer is complete even without close_notify.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                return Err(format!(
                    "read after {:?}: {e}; got {:?}",
                    start.elapsed(),
                    String::from_utf8_lossy(&got)
                ));
            }
        }
    }
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&got);
    if !text.starts_with("HTTP/1.1 200 ") || !text.ends_with(&format!("\r\n\r\n{PROBE_BODY}")) {
        return Err(format!("unexpected answer after {took:?}: {text:?}"));
    }
    if took > PROBE_BOUND {
        return Err(format!("answer took {took:?}"));
    }
    Ok(took)
}

/// What the other client and the RSS sampler saw during an attack, and
/// what the attacker reported.
struct Outcome {
    attack: String,
    summary: Value,
    /// Every probe: its duration or its failure, with its time since the
    /// attack started.
    probes: Vec<(Duration, Result<Duration, String>)>,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    hwm_after_kib: u64,
    workers_before: Vec<u32>,
    workers_after: Vec<u32>,
    log: String,
    stderr: String,
}

impl Outcome {
    fn totals(&self) -> &Value {
        &self.summary["totals"]
    }

    /// How the attacker's connections ended: `(ended, count)`.
    fn ended_counts(&self) -> Vec<(String, u64)> {
        self.totals()["ended"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn max_probe(&self) -> Duration {
        self.probes
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().copied())
            .max()
            .unwrap_or_default()
    }

    /// Context for an assertion message.
    fn context(&self) -> String {
        let tail: String = {
            let lines: Vec<&str> = self.stderr.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        let log: String = {
            let lines: Vec<&str> = self.log.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        format!(
            "\n--- attacker summary ---\n{}\n--- attacker stderr (tail) ---\n{tail}\n\
             --- server log (tail) ---\n{log}\n",
            serde_json::to_string_pretty(&self.summary).unwrap_or_default()
        )
    }

    /// The assertions every attack shares: the other client was served
    /// every time within the bound, memory stayed bounded, the worker
    /// survived. Prints the report line.
    fn check_common(&self) {
        let failed: Vec<String> = self
            .probes
            .iter()
            .filter_map(|(at, r)| r.as_ref().err().map(|e| format!("at {at:?}: {e}")))
            .collect();
        let peak = self.rss_peak_kib.max(self.hwm_after_kib);
        println!(
            "{}: attacker {}; probes {} ok of {} (slowest {:?}); worker VmRSS before {} KiB, \
             sampled peak {} KiB, VmHWM after {} KiB (+{} KiB)",
            self.attack,
            self.totals(),
            self.probes.len() - failed.len(),
            self.probes.len(),
            self.max_probe(),
            self.rss_before_kib,
            self.rss_peak_kib,
            self.hwm_after_kib,
            peak.saturating_sub(self.rss_before_kib),
        );
        assert!(
            self.probes.len() >= 5,
            "{}: only {} probes during the attack{}",
            self.attack,
            self.probes.len(),
            self.context()
        );
        assert!(
            failed.is_empty(),
            "{}: the other client was not served within {PROBE_BOUND:?} {} time(s) of {}:\n{}{}",
            self.attack,
            failed.len(),
            self.probes.len(),
            failed.join("\n"),
            self.context()
        );
        assert!(
            peak <= self.rss_before_kib + RSS_MARGIN_KIB,
            "{}: worker memory grew from {} KiB to {peak} KiB (sampled peak {} KiB, VmHWM {} \
             KiB), more than {RSS_MARGIN_KIB} KiB{}",
            self.attack,
            self.rss_before_kib,
            self.rss_peak_kib,
            self.hwm_after_kib,
            self.context()
        );
        assert_eq!(
            self.workers_before,
            self.workers_after,
            "{}: the worker processes changed (crash and restart?){}",
            self.attack,
            self.context()
        );
    }

    /// Asserts that every connection of the attacker ended with a GOAWAY
    /// or was closed by the server (`also_ok`: other acceptable `ended`
    /// values), and that at least one got a GOAWAY with an error code.
    fn check_connections_ended(&self, also_ok: &[&str]) {
        let ended = self.ended_counts();
        assert!(
            ended.iter().map(|(_, n)| n).sum::<u64>() > 0,
            "{}: the attacker made no connection{}",
            self.attack,
            self.context()
        );
        let bad: Vec<&(String, u64)> = ended
            .iter()
            .filter(|(k, _)| k != "goaway" && k != "closed" && !also_ok.contains(&k.as_str()))
            .collect();
        assert!(
            bad.is_empty(),
            "{}: connections not ended by the server: {bad:?} (of {ended:?}){}",
            self.attack,
            self.context()
        );
        let goaways = self.totals()["goaway"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(
            goaways.keys().any(|k| k != "NO_ERROR"),
            "{}: no GOAWAY with an error code (got {goaways:?}){}",
            self.attack,
            self.context()
        );
    }
}

/// Runs `h2abuse.py ATTACK EXTRA…` against `site` for [`ATTACK_SECS`],
/// probing and sampling meanwhile.
fn run_attack(site: &Site, attack: &str, extra: &[&str]) -> Outcome {
    let cfg = rustls_client(&site.ca_pem, None, &[b"http/1.1"]);
    // Warm up (TLS, the file, thread buffers) before measuring.
    for _ in 0..5 {
        if let Err(e) = probe(site.port, &cfg) {
            panic!(
                "{attack}: the other client failed before the attack: {e}\n{}",
                site.server.log()
            );
        }
    }
    let workers_before = site.workers();
    assert!(
        !workers_before.is_empty(),
        "no worker process\n{}",
        site.server.log()
    );
    let rss_before_kib = kib(&workers_before, "VmRSS");

    let out_path = site.dir.path().join(format!("{attack}.out"));
    let err_path = site.dir.path().join(format!("{attack}.err"));
    let mut child = Command::new(PYTHON)
        .arg(fixture())
        .arg(attack)
        .args(["--port", &site.port.to_string(), "--host", HOST, "--cafile"])
        .arg(&site.ca_file)
        .args(["--seconds", &ATTACK_SECS.to_string(), "--path", PROBE_PATH])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {PYTHON} {}: {e}", fixture().display()));

    let start = Instant::now();
    let mut probes = Vec::new();
    let mut rss_peak_kib = rss_before_kib;
    let status = loop {
        let tick = Instant::now();
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(ATTACK_SECS) + ATTACKER_GRACE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{attack}: the attacker did not finish within {:?}\n{}",
                Duration::from_secs(ATTACK_SECS) + ATTACKER_GRACE,
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        // Only while the attack is on (the client prints at the end).
        if start.elapsed() < Duration::from_secs(ATTACK_SECS) {
            probes.push((start.elapsed(), probe(site.port, &cfg)));
        }
        rss_peak_kib = rss_peak_kib.max(kib(&site.workers(), "VmRSS"));
        if let Some(rest) = PROBE_EVERY.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "{attack}: the attacker failed ({status}):\n{stderr}\n{stdout}"
    );
    let summary: Value = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{attack}: no JSON summary on stdout:\n{stdout}\n{stderr}"));
    let workers_after = site.workers();
    Outcome {
        attack: attack.to_owned(),
        summary,
        probes,
        rss_before_kib,
        rss_peak_kib,
        hwm_after_kib: kib(&workers_after, "VmHWM"),
        workers_before,
        workers_after,
        log: site.server.log(),
        stderr,
    }
}

/// Runs `attack` (with the client's `extra` arguments) on a fresh server,
/// alone.
fn attack(name: &str, extra: &[&str]) -> Outcome {
    require_python_h2();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let site = Site::start();
    let mut out = run_attack(&site, name, extra);
    if !extra.is_empty() {
        out.attack = format!("{name} {}", extra.join(" "));
    }
    // And the server still answers once it is over.
    let cfg = rustls_client(&site.ca_pem, None, &[b"http/1.1"]);
    if let Err(e) = probe(site.port, &cfg) {
        panic!(
            "{name}: the other client failed after the attack: {e}{}",
            out.context()
        );
    }
    out
}

#[test]
fn rapid_reset_keeps_the_server_responsive_with_bounded_memory() {
    let out = attack("rapid-reset", &[]);
    out.check_common();
    let streams = out.totals()["streams_opened"].as_u64().unwrap_or(0);
    assert!(
        streams >= 1000,
        "rapid-reset: only {streams} streams opened and reset: no attack{}",
        out.context()
    );
    // What hyper/h2 does is reported, not required: its limit on reset
    // streams waiting to be accepted (max_pending_accept_reset_streams)
    // may or may not be reached depending on how fast streams are accepted.
    let first = &out.summary["connections"][0];
    println!(
        "rapid-reset: {streams} streams on {} connection(s); first connection: ended {}, \
         GOAWAY {}, {} frames sent",
        out.totals()["connections"],
        first["ended"],
        first["goaway"],
        first["frames_sent"],
    );
}

/// Rapid reset paced to stay under h2's limit on reset streams waiting to
/// be accepted: 5 streams opened and reset per batch, reading for 1 ms
/// between batches, so that a connection lasts and the server accepts (and
/// starts serving) most streams before their reset.
#[test]
fn rapid_reset_paced_below_the_pending_reset_limit_keeps_the_server_responsive() {
    let out = attack("rapid-reset", &["--batch", "5", "--pace-ms", "1"]);
    out.check_common();
    let streams = out.totals()["streams_opened"].as_u64().unwrap_or(0);
    assert!(
        streams >= 1000,
        "{}: only {streams} streams opened and reset: no attack{}",
        out.attack,
        out.context()
    );
    let longest = out.summary["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["streams_opened"].as_u64())
        .max()
        .unwrap_or(0);
    println!(
        "{}: {streams} streams on {} connection(s) (up to {longest} on one of the reported ones)",
        out.attack,
        out.totals()["connections"],
    );
}

#[test]
fn continuation_flood_gets_goaway_and_the_server_stays_responsive() {
    let out = attack("continuation-flood", &[]);
    out.check_common();
    out.check_connections_ended(&[]);
}

#[test]
fn settings_flood_without_reading_acks_is_limited() {
    let out = attack("settings-flood", &[]);
    out.check_common();
    check_control_flood(&out);
}

#[test]
fn ping_flood_without_reading_acks_is_limited() {
    let out = attack("ping-flood", &[]);
    out.check_common();
    check_control_flood(&out);
}

/// A flood of control frames whose ACKs are never read is limited: the
/// server ends the connection or stops reading it (back-pressure: it does
/// not queue ACKs without bound).
fn check_control_flood(out: &Outcome) {
    let ended = out.ended_counts();
    let bad: Vec<&(String, u64)> = ended
        .iter()
        .filter(|(k, _)| !["goaway", "closed", "blocked"].contains(&k.as_str()))
        .collect();
    assert!(
        !ended.is_empty() && bad.is_empty(),
        "{}: the flood was neither stopped nor held back: {ended:?}{}",
        out.attack,
        out.context()
    );
}

#[test]
fn oversized_header_list_of_big_literals_gets_goaway() {
    let out = attack("big-headers", &[]);
    out.check_common();
    out.check_connections_ended(&[]);
}

#[test]
fn oversized_header_list_hpack_bomb_gets_goaway() {
    let out = attack("hpack-bomb", &[]);
    out.check_common();
    out.check_connections_ended(&[]);
}

/// Opens an HTTP/2 connection, sends the preface, SETTINGS and `then`, and
/// reads until the server closes: (GOAWAY seen, time until closed).
fn idle_h2(site: &Site, then: &[u8], bound: Duration) -> (bool, Duration) {
    let cfg = rustls_client(&site.ca_pem, None, &[b"h2"]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, site.port));
    let tcp = TcpStream::connect_timeout(&addr, bound).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let start = Instant::now();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    // An empty SETTINGS frame, then whatever the case sends.
    tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    tls.write_all(then).unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(b"h2".as_slice()));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            start.elapsed() < bound,
            "the idle HTTP/2 connection was still open after {bound:?}"
        );
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    // Walk the frames: 9-byte headers, type 7 is GOAWAY.
    let mut goaway = false;
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = (usize::from(got[at]) << 16)
            | (usize::from(got[at + 1]) << 8)
            | usize::from(got[at + 2]);
        goaway |= got[at + 3] == 7;
        at += 9 + len;
    }
    (goaway, start.elapsed())
}

/// hyper has no idle timeout for HTTP/2; lwsws closes a connection with no
/// request in progress after keepalive-timeout, with GOAWAY — also one whose
/// header block never ends (slowloris over HTTP/2).
#[test]
fn idle_http2_connections_are_closed_after_keepalive_timeout() {
    let site = Site::start_with(r#""keepalive-timeout": "2","#);
    let (goaway, took) = idle_h2(&site, &[], Duration::from_secs(20));
    assert!(goaway, "no GOAWAY before the close");
    assert!(took >= Duration::from_secs(2), "closed too early: {took:?}");
    // HEADERS on stream 1 without END_HEADERS (":method GET", indexed), then nothing.
    let headers = [0, 0, 1, 1, 0x01, 0, 0, 0, 1, 0x82];
    let (_, took) = idle_h2(&site, &headers, Duration::from_secs(20));
    assert!(took >= Duration::from_secs(2), "closed too early: {took:?}");
}
