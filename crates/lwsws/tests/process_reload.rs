//! SIGHUP reloads against the real binary (SPEC §4, issue 6's acceptance):
//! - under load: HTTP/1.1 keep-alive and new-connection clients see no
//!   failed request across five reloads that add a vhost, change a mount,
//!   add and remove a port; each change becomes visible; an idle keep-alive
//!   connection and a slow download of the old generation are not cut;
//!   WebSockets of the old generation keep working until
//!   `drain-timeout-secs`, then get 1001; the old workers exit;
//! - a broken configuration is refused with the same `file:line` errors
//!   `--check` prints, and the old configuration and worker go on serving;
//! - a binary replaced on disk (renamed over, or a switched symlink) is
//!   what the next generation runs; a missing or failing one makes the
//!   reload fail and the worker in service serve on;
//! - ten reloads in a row while old generations still drain (each holding
//!   WebSockets): every request is served, at most 8 generations serve or
//!   drain, the oldest are closed with 1001;
//! - a burst of SIGHUPs faster than workers start ends with the last
//!   configuration serving.
//!
//! The supervisor is `crates/lwsws-supervisor/src/supervise.rs`, the worker
//! `crates/lwsws/src/worker.rs`; draining HTTP/1 connections get
//! `Connection: close` in `crates/lwsws-server/src/pipeline.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ws::{Handshake, NoFrame, Ws};
use common::{alive, bin, live_children, wait_until};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MIRROR: &str = "lws-mirror-protocol";
/// What every load request fetches; the same bytes in every document root
/// the load's vhost ever points at.
const LOAD_BODY: &str = "load body, the same in every generation\n";
/// How long a change may take to become visible, a worker to start or
/// finish: liveness bounds, not timing expectations.
const SETTLE: Duration = Duration::from_secs(30);
/// Socket reads of the load clients give up after this long (a failure).
const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// HTTP: a client that reports every problem instead of panicking, so the
// load threads can count failures.

/// One response: status, whether it said `Connection: close`, body.
struct Resp {
    status: u16,
    close: bool,
    body: Vec<u8>,
}

fn read_resp(r: &mut BufReader<TcpStream>) -> Result<Resp, String> {
    let mut status = None;
    let mut close = false;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => {
                return Err(if status.is_none() {
                    "connection closed before a response".into()
                } else {
                    "connection closed inside a response head".into()
                });
            }
            Ok(_) => {}
            Err(e) => return Err(format!("reading the response head: {e}")),
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status.is_none() {
            status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            if status.is_none() {
                return Err(format!("bad status line {line:?}"));
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "connection" => close |= v.split(',').any(|t| t.trim() == "close"),
            "content-length" => length = v.parse::<usize>().ok(),
            "transfer-encoding" => chunked = v.contains("chunked"),
            _ => {}
        }
    }
    let status = status.unwrap_or_default();
    let mut body = Vec::new();
    let io = |e: std::io::Error| format!("reading the response body: {e}");
    if status == 304 || status == 204 || (100..200).contains(&status) {
    } else if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(io)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {size:?}"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io)?;
    } else {
        r.read_to_end(&mut body).map_err(io)?;
        close = true;
    }
    Ok(Resp {
        status,
        close,
        body,
    })
}

fn open(port: u16) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

/// GET on a new connection that is closed afterwards.
fn fetch(port: u16, host: &str, path: &str) -> Result<Resp, String> {
    let mut c = open(port).map_err(|e| format!("connect to port {port}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    c.get_mut()
        .write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    read_resp(&mut c)
}

/// The body of a 200 answer to `GET path`, `None` for anything else.
fn text(port: u16, host: &str, path: &str) -> Option<String> {
    match fetch(port, host, path) {
        Ok(r) if r.status == 200 => Some(String::from_utf8_lossy(&r.body).into_owned()),
        _ => None,
    }
}

/// Whether nothing listens on `127.0.0.1:port` any more.
fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

// ---------------------------------------------------------------------------
// Load: keep-alive clients (one connection reused until the server answers
// `Connection: close`, then a new one) and new-connection clients, all
// fetching `/load.txt` and counting whatever is not a 200 with LOAD_BODY.

#[derive(Default)]
struct LoadStats {
    ok: AtomicU64,
    /// Keep-alive connections the server ended with `Connection: close`.
    closed_by_server: AtomicU64,
    /// Requests answered on a keep-alive connection that had already
    /// carried one (so the connection really was reused).
    reused: AtomicU64,
    failures: Mutex<Vec<String>>,
    failed: AtomicUsize,
}

impl LoadStats {
    fn fail(&self, t0: Instant, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock().unwrap();
        if f.len() < 50 {
            f.push(format!("at {:.3}s: {what}", t0.elapsed().as_secs_f64()));
        }
    }

    fn check(&self, t0: Instant, who: &str, r: Result<Resp, String>) -> Option<Resp> {
        match r {
            Ok(r) if r.status == 200 && r.body == LOAD_BODY.as_bytes() => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(r)
            }
            Ok(r) => {
                self.fail(
                    t0,
                    format!(
                        "{who}: status {} body {:?}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ),
                );
                None
            }
            Err(e) => {
                self.fail(t0, format!("{who}: {e}"));
                None
            }
        }
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    stats: Arc<LoadStats>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Two keep-alive and two new-connection clients on `port`.
    fn start(port: u16, t0: Instant) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LoadStats::default());
        let mut threads = Vec::new();
        for n in 0..2 {
            let (s, st) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || {
                keep_alive_client(port, n, t0, &s, &st);
            }));
            let (stop, stats) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let who = format!("new-connection client {n}");
                    stats.check(t0, &who, fetch(port, "localhost", "/load.txt"));
                    std::thread::sleep(Duration::from_millis(3));
                }
            }));
        }
        Load {
            stop,
            stats,
            threads,
        }
    }

    /// Requests answered so far.
    fn ok(&self) -> u64 {
        self.stats.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` further requests have been answered, so that
    /// traffic demonstrably flows at this point of the test.
    fn flowing(&self, more: u64) {
        let target = self.ok() + more;
        assert!(
            wait_until(SETTLE, || self.ok() >= target
                || self.stats.failed.load(Ordering::Relaxed) > 0),
            "the load made no progress"
        );
    }

    /// Stops the clients; panics unless every request succeeded.
    fn finish(self, log: &str) -> Arc<LoadStats> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failed = self.stats.failed.load(Ordering::Relaxed);
        assert_eq!(
            failed,
            0,
            "{failed} failed requests out of {}:\n{}\n--- server log ---\n{log}",
            failed as u64 + self.stats.ok.load(Ordering::Relaxed),
            self.stats.failures.lock().unwrap().join("\n")
        );
        self.stats
    }
}

fn keep_alive_client(port: u16, n: usize, t0: Instant, stop: &AtomicBool, stats: &LoadStats) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut served = 0u64;
    let req = "GET /load.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    while !stop.load(Ordering::Relaxed) {
        let c = match &mut conn {
            Some(c) => c,
            None => match open(port) {
                Ok(c) => {
                    served = 0;
                    conn.insert(c)
                }
                Err(e) => {
                    stats.fail(t0, format!("keep-alive client {n}: connect: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let who = format!(
            "keep-alive client {n}, request {} on its connection",
            served + 1
        );
        let r = c
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("send: {e}"))
            .and_then(|()| read_resp(c));
        match stats.check(t0, &who, r) {
            Some(r) => {
                if served > 0 {
                    stats.reused.fetch_add(1, Ordering::Relaxed);
                }
                served += 1;
                if r.close {
                    stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
            }
            None => conn = None,
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// The size of the file [`SlowDownload`] fetches.
const BIG: usize = 32 << 20;

/// `GET /big.bin`, read slowly (about 2 s) by a thread of its own.
struct SlowDownload {
    thread: JoinHandle<Result<Vec<u8>, String>>,
}

impl SlowDownload {
    /// Starts the download and returns once its first bytes arrived.
    fn start(port: u16) -> SlowDownload {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut c = open(port).map_err(|e| e.to_string())?;
            c.get_mut()
                .write_all(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut head = String::new();
            while !head.ends_with("\r\n\r\n") {
                if c.read_line(&mut head).map_err(|e| e.to_string())? == 0 {
                    return Err(format!("closed inside the head {head:?}"));
                }
            }
            if !head.starts_with("HTTP/1.1 200") {
                return Err(head);
            }
            let _ = tx.send(());
            let mut body = Vec::new();
            let mut buf = vec![0; 256 << 10];
            while body.len() < BIG {
                match c.read(&mut buf) {
                    Ok(0) => return Err(format!("ended after {} bytes", body.len())),
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(format!("after {} bytes: {e}", body.len())),
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            Ok(body)
        });
        let _ = rx.recv_timeout(SETTLE);
        SlowDownload { thread }
    }

    /// Panics unless the whole file arrived intact.
    fn finish(self) {
        let body = self.thread.join().unwrap().unwrap_or_else(|e| {
            panic!("download in flight during the reload: {e}");
        });
        assert!(body == big_file(), "download in flight arrived corrupted");
    }
}

fn big_file() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

// ---------------------------------------------------------------------------
// WebSockets and the log.

/// Writes one masked frame; unlike `Ws::send_frame`, a connection the
/// server has already ended is an error, not a panic.
fn try_send(ws: &Ws, opcode: OpCode, payload: &[u8]) -> std::io::Result<()> {
    let mut out = bytes::BytesMut::new();
    lwsws_ws::frame::encode_masked_frame(&mut out, true, opcode, false, [1, 2, 3, 4], payload);
    let mut stream: &TcpStream = ws.stream();
    stream.write_all(&out)
}

/// Answers a close frame as a client should (the server may be gone already).
fn answer_close(ws: &Ws, code: u16) {
    let _ = try_send(ws, OpCode::Close, &code.to_be_bytes());
}

/// Sends `msg` and waits for its echo (the mirror answers the sender too).
fn roundtrip(ws: &mut Ws, msg: &str) -> Result<(), String> {
    try_send(ws, OpCode::Text, msg.as_bytes()).map_err(|e| format!("send {msg:?}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.recv_within(left) {
            Ok(f) if f.is(OpCode::Ping) => ws.send_frame(true, OpCode::Pong, &f.payload),
            Ok(f) if f.is(OpCode::Text) && f.text() == msg => return Ok(()),
            Ok(f) if f.is(OpCode::Close) => {
                return Err(format!(
                    "closed ({:?}) instead of echoing {msg:?}",
                    f.close()
                ));
            }
            Ok(f) => return Err(format!("unexpected frame {f:?} instead of {msg:?}")),
            Err(e) => return Err(format!("no echo of {msg:?}: {e:?}")),
        }
    }
}

/// Waits until `deadline` for a close frame; returns its code and when it
/// came.
fn wait_close(ws: &mut Ws, deadline: Instant) -> Result<(Option<u16>, Instant), String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.recv_within(left) {
            Ok(f) if f.is(OpCode::Close) => {
                return Ok((f.close().map(|(c, _)| c), Instant::now()));
            }
            Ok(f) if f.is(OpCode::Ping) => ws.send_frame(true, OpCode::Pong, &f.payload),
            Ok(_) => {}
            Err(NoFrame::Timeout) => return Err("no close frame in time".into()),
            Err(NoFrame::Closed) => return Err("connection ended without a close frame".into()),
        }
    }
}

fn mirror(port: u16, instance: &str) -> Ws {
    Ws::connect(port, &format!("/?mirror={instance}"), Some(MIRROR))
}

/// The value of ` NAME=value` (or ` NAME="value"`) in a log line.
fn field(line: &str, name: &str) -> Option<String> {
    let rest = &line[line.find(&format!(" {name}="))? + name.len() + 2..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted[..quoted.find('"')?].to_string(),
        None => rest.split_whitespace().next()?.to_string(),
    })
}

/// `(generation, pid, binary)` of every `worker ready` line of the log.
fn ready_lines(log: &str) -> Vec<(u64, u32, String)> {
    log.lines()
        .filter(|l| l.contains("worker ready"))
        .filter_map(|l| {
            Some((
                field(l, "generation")?.parse().ok()?,
                field(l, "pid")?.parse().ok()?,
                field(l, "binary").unwrap_or_default(),
            ))
        })
        .collect()
}

/// Waits for generation `generation` to report ready; its pid and binary.
fn ready(server: &Lwsws, generation: u64) -> (u32, String) {
    let mut found = None;
    wait_until(SETTLE, || {
        found = ready_lines(&server.log())
            .into_iter()
            .find(|(g, _, _)| *g == generation);
        found.is_some()
    });
    let (_, pid, binary) = found.unwrap_or_else(|| {
        panic!(
            "generation {generation} never ready\n--- log ---\n{}",
            server.log()
        )
    });
    (pid, binary)
}

/// Waits until the supervisor has exactly the worker `pid` left.
fn only_worker_left(server: &Lwsws, pid: u32) {
    let sup = server.pid();
    assert!(
        wait_until(SETTLE, || live_children(sup) == [pid]),
        "workers {:?}, expected only {pid}\n--- log ---\n{}",
        live_children(sup),
        server.log()
    );
}

fn write_file(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

// ---------------------------------------------------------------------------

/// The five configurations of the reload-under-load test.
struct Steps {
    port: u16,
    extra_port: u16,
    www1: String,
    www2: String,
    second: String,
    extra: String,
    five: String,
}

const DRAIN_UNDER_LOAD: Duration = Duration::from_secs(4);

impl Steps {
    /// The configuration after `step` reloads (0: the first one).
    fn conf(&self, step: u32) -> String {
        let port = self.port;
        let main_root = if step >= 2 { &self.www2 } else { &self.www1 };
        let five = if step >= 5 {
            format!(
                r#", {{ "mountpoint": "/five", "origin": "file://{}", "default": "index.html" }}"#,
                self.five
            )
        } else {
            String::new()
        };
        let mut vhosts = vec![format!(
            r#"{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
                 "ws-protocols": [{{ "{MIRROR}": {{}} }}],
                 "mounts": [{{ "mountpoint": "/", "origin": "file://{main_root}",
                               "default": "index.html" }}{five}] }}"#
        )];
        if step >= 1 {
            vhosts.push(format!(
                r#"{{ "name": "second.test", "port": "{port}", "interface": "127.0.0.1",
                     "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}"#,
                self.second
            ));
        }
        if step == 3 {
            vhosts.push(format!(
                r#"{{ "name": "extra.test", "port": "{}", "interface": "127.0.0.1",
                     "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}"#,
                self.extra_port, self.extra
            ));
        }
        format!(
            r#"{{ "global": {{ "drain-timeout-secs": "{}" }},
                 "vhosts": [{}] }}"#,
            DRAIN_UNDER_LOAD.as_secs(),
            vhosts.join(",\n")
        )
    }

    /// Whether what reload `step` changed is what the server now does.
    fn visible(&self, step: u32) -> bool {
        let p = self.port;
        match step {
            1 => text(p, "second.test", "/version.txt").as_deref() == Some("second"),
            2 => text(p, "localhost", "/version.txt").as_deref() == Some("v2"),
            3 => text(self.extra_port, "extra.test", "/version.txt").as_deref() == Some("extra"),
            4 => refused(self.extra_port),
            5 => text(p, "localhost", "/five/version.txt").as_deref() == Some("five"),
            _ => unreachable!(),
        }
    }
}

#[test]
fn five_reloads_under_load_lose_no_request_and_drain_websockets_with_1001() {
    let t0 = Instant::now();
    let dir = ConfigDir::new();
    let root = |name: &str, version: &str| {
        let d = dir.mkdir(name);
        write_file(&d, "version.txt", version);
        write_file(&d, "load.txt", LOAD_BODY);
        write_file(&d, "index.html", "<p>index</p>");
        d.display().to_string()
    };
    let steps = Steps {
        port: free_port(),
        extra_port: free_port(),
        www1: root("www1", "v1"),
        www2: root("www2", "v2"),
        second: root("second", "second"),
        extra: root("extra", "extra"),
        five: root("five", "five"),
    };
    // Served by generation 2 (configuration 1) when reload 2 comes.
    std::fs::write(Path::new(&steps.www1).join("big.bin"), big_file()).unwrap();
    let port = steps.port;
    dir.write_conf(&steps.conf(0));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let (first_pid, _) = ready(&server, 1);
    assert_eq!(
        text(port, "localhost", "/version.txt").as_deref(),
        Some("v1")
    );
    assert!(refused(steps.extra_port));

    // 20 WebSockets on generation 1, each on a mirror instance of its own
    // (so each hears only its own messages).
    let mut sockets: Vec<Ws> = (0..20).map(|i| mirror(port, &format!("ws{i}"))).collect();
    for (i, ws) in sockets.iter_mut().enumerate() {
        roundtrip(ws, &format!("before {i}")).unwrap();
    }

    let load = Load::start(port, t0);
    load.flowing(50);
    let mut pids = vec![first_pid];
    for step in 1..=5u32 {
        dir.write_conf(&steps.conf(step));
        // A keep-alive connection that has carried a request and is idle
        // when the reload comes.
        let mut idle = open(port).unwrap();
        let req = "GET /load.txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
        idle.get_mut().write_all(req.as_bytes()).unwrap();
        let r = read_resp(&mut idle).unwrap();
        assert!(r.status == 200 && !r.close, "keep-alive refused");
        // A slow download in flight when the reload comes.
        let download = (step == 2).then(|| SlowDownload::start(port));

        let hup = Instant::now();
        server.signal(Signal::SIGHUP);
        assert!(
            wait_until(SETTLE, || steps.visible(step)),
            "reload {step} never visible\n--- log ---\n{}",
            server.log()
        );
        let (pid, _) = ready(&server, u64::from(step) + 1);
        pids.push(pid);

        // The idle connection is not cut: its next request is answered,
        // with `Connection: close` once the old generation drains (it
        // says so when it has the supervisor's message).
        let draining = format!("a newer generation serves generation={step} ");
        assert!(
            server.wait_for_log(&draining, SETTLE),
            "generation {step} never drained\n{}",
            server.log()
        );
        idle.get_mut().write_all(req.as_bytes()).unwrap();
        let r = read_resp(&mut idle).unwrap_or_else(|e| {
            panic!(
                "reload {step}: request on an idle keep-alive connection: {e}\n{}",
                server.log()
            )
        });
        assert_eq!(r.status, 200);
        assert!(
            r.close,
            "reload {step}: draining generation kept the connection"
        );
        let mut rest = Vec::new();
        assert!(
            matches!(idle.read_to_end(&mut rest), Ok(0)),
            "not closed after `Connection: close`: {rest:?}"
        );
        if let Some(d) = download {
            assert!(
                !d.thread.is_finished(),
                "the download was over before the old generation drained: not a test"
            );
            d.finish();
        }

        if step == 1 {
            // The old generation drains: its WebSockets still work...
            for (i, ws) in sockets.iter_mut().enumerate() {
                roundtrip(ws, &format!("draining {i}")).unwrap_or_else(|e| {
                    panic!(
                        "WebSocket {i} after the first reload: {e}\n--- log ---\n{}",
                        server.log()
                    )
                });
            }
            std::thread::sleep(Duration::from_millis(1500));
            for (i, ws) in sockets.iter_mut().enumerate() {
                roundtrip(ws, &format!("still draining {i}")).unwrap_or_else(|e| {
                    panic!(
                        "WebSocket {i} 1.5 s after the first reload (drain-timeout {DRAIN_UNDER_LOAD:?}): {e}\n--- log ---\n{}",
                        server.log()
                    )
                });
            }
            // ...until drain-timeout, then 1001 (never before the
            // deadline, which starts after the SIGHUP).
            let deadline = hup + DRAIN_UNDER_LOAD + Duration::from_secs(15);
            for (i, ws) in sockets.iter_mut().enumerate() {
                let (code, at) = wait_close(ws, deadline).unwrap_or_else(|e| {
                    panic!("WebSocket {i}: {e}\n--- log ---\n{}", server.log())
                });
                assert_eq!(code, Some(1001), "WebSocket {i}");
                assert!(
                    at >= hup + DRAIN_UNDER_LOAD - Duration::from_millis(50),
                    "WebSocket {i} closed {:?} after the SIGHUP, before drain-timeout",
                    at - hup
                );
                answer_close(ws, 1001);
                assert!(
                    ws.ends_within(Duration::from_secs(10)),
                    "WebSocket {i} left open"
                );
            }
            assert!(
                wait_until(SETTLE, || !alive(first_pid)),
                "generation 1 (pid {first_pid}) still runs after its WebSockets closed\n{}",
                server.log()
            );
        }
        // The new configuration serves the load for a while.
        load.flowing(50);
    }
    // The last configuration is still the one in service, all of it.
    for step in [1, 2, 4, 5] {
        assert!(steps.visible(step), "change of reload {step} lost");
    }
    let last = *pids.last().unwrap();
    only_worker_left(&server, last);
    for &pid in &pids[..pids.len() - 1] {
        assert!(!alive(pid), "old worker {pid} still runs");
    }
    let log = server.log();
    let stats = load.finish(&log);
    assert!(
        stats.closed_by_server.load(Ordering::Relaxed) >= 1,
        "no keep-alive connection was ever told `Connection: close` by a draining generation"
    );
    assert!(
        stats.reused.load(Ordering::Relaxed) >= 10,
        "keep-alive unused"
    );
    for g in 1..=5 {
        assert!(
            log.contains(&format!("old generation draining generation={g}")),
            "generation {g} was never told to drain\n{log}"
        );
    }
    eprintln!(
        "reload under load: {} requests, {} keep-alive connections closed by draining workers",
        stats.ok.load(Ordering::Relaxed),
        stats.closed_by_server.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------

/// The diagnostics `lwsws --check` prints for `dir`, without the `lwsws: `
/// prefix and the summary line.
fn check_lines(dir: &ConfigDir) -> Vec<String> {
    let out = common::check(dir);
    assert!(
        !out.status.success(),
        "--check accepted the broken configuration"
    );
    common::stderr(&out)
        .lines()
        .filter(|l| !l.contains("error(s) in the configuration"))
        .map(|l| l.strip_prefix("lwsws: ").unwrap_or(l).to_string())
        .collect()
}

#[test]
fn a_broken_configuration_is_refused_with_check_errors_and_the_old_one_serves_on() {
    let dir = ConfigDir::new();
    let port = free_port();
    let old = dir.mkdir("old");
    let new = dir.mkdir("new");
    write_file(&old, "version.txt", "old");
    write_file(&new, "version.txt", "new");
    let conf = |root: &Path, extra: &str| {
        format!(
            "{{ \"vhosts\": [{{ \"name\": \"localhost\", \"port\": \"{port}\",\n\
             \"interface\": \"127.0.0.1\",{extra}\n\
             \"mounts\": [{{ \"mountpoint\": \"/\", \"origin\": \"file://{}\" }}] }}] }}\n",
            root.display()
        )
    };
    dir.write_conf(&conf(&old, ""));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let (worker, _) = ready(&server, 1);
    assert_eq!(
        text(port, "localhost", "/version.txt").as_deref(),
        Some("old")
    );

    // Each broken version would also move `/` to the new root.
    let broken = [
        ("an unknown key", conf(&new, "\n\"prot\": \"80\","), None),
        (
            "a syntax error",
            conf(&new, "\n\"keepalive-timeout\" \"5\","),
            None,
        ),
        (
            "a bad value in conf.d",
            conf(&new, ""),
            Some(r#"{ "vhosts": [{ "name": "bad.test", "port": "not-a-port" }] }"#),
        ),
    ];
    for (n, (what, broken_conf, conf_d)) in broken.iter().enumerate() {
        dir.write_conf(broken_conf);
        if let Some(d) = conf_d {
            dir.write_conf_d("site", d);
        }
        let expected = check_lines(&dir);
        assert!(
            expected.iter().any(|l| l.contains("conf")
                && l.split(':')
                    .nth(1)
                    .is_some_and(|line| line.parse::<u32>().is_ok())),
            "{what}: --check shows no file:line: {expected:?}"
        );
        server.signal(Signal::SIGHUP);
        assert!(
            wait_until(SETTLE, || server.log().matches("reload refused").count()
                > n),
            "{what}: no `reload refused`\n--- log ---\n{}",
            server.log()
        );
        let log = server.log();
        for line in &expected {
            assert!(
                log.contains(line.as_str()),
                "{what}: `--check` says\n  {line}\nbut the log does not\n--- log ---\n{log}"
            );
        }
        assert_eq!(
            text(port, "localhost", "/version.txt").as_deref(),
            Some("old"),
            "{what}: the old configuration no longer serves"
        );
        assert!(
            !log.contains("worker starting generation=2"),
            "{what}\n{log}"
        );
        assert_eq!(live_children(server.pid()), [worker], "{what}");
        assert!(alive(worker));
    }

    // Fixed, the same SIGHUP takes effect.
    std::fs::remove_file(dir.path().join("conf.d/site")).unwrap();
    dir.write_conf(&conf(&new, ""));
    server.signal(Signal::SIGHUP);
    assert!(
        wait_until(SETTLE, || text(port, "localhost", "/version.txt")
            .as_deref()
            == Some("new")),
        "the fixed configuration never served\n{}",
        server.log()
    );
    let (pid2, _) = ready(&server, 2);
    only_worker_left(&server, pid2);
}

// ---------------------------------------------------------------------------

/// `N bytes, …` → N.
fn size_of(binary: &str) -> u64 {
    binary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in binary={binary:?}"))
}

#[test]
fn a_binary_replaced_on_disk_runs_from_the_next_reload() {
    use std::os::unix::fs::PermissionsExt;
    let bin_dir = tempfile::Builder::new()
        .prefix("lwsws-bin-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let installed = bin_dir.path().join("lwsws");
    std::fs::copy(bin(), &installed).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
    let original = std::fs::metadata(&installed).unwrap().len();

    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    write_file(&www, "version.txt", "served");
    dir.write_conf(&common::vhost("localhost", port, &www));
    let server = Lwsws::start(&installed, &dir, &[], &[port]);
    let (_, binary1) = ready(&server, 1);
    assert_eq!(size_of(&binary1), original, "{binary1}");

    // An upgrade as a package manager does it: a new file renamed over the
    // old one (the running processes keep the old inode).
    let mut upgraded = std::fs::read(&installed).unwrap();
    upgraded.extend_from_slice(b"\0upgrade marker\0");
    let staging = bin_dir.path().join(".lwsws.new");
    std::fs::write(&staging, &upgraded).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staging, &installed).unwrap();

    server.signal(Signal::SIGHUP);
    let (pid2, binary2) = ready(&server, 2);
    assert_eq!(
        size_of(&binary2),
        upgraded.len() as u64,
        "generation 2 runs {binary2}, not the upgraded binary\n{}",
        server.log()
    );
    assert_ne!(binary1, binary2);
    assert_eq!(
        text(port, "localhost", "/version.txt").as_deref(),
        Some("served")
    );
    only_worker_left(&server, pid2);
    let exe = std::fs::read_link(format!("/proc/{pid2}/exe")).unwrap();
    assert_eq!(exe, installed, "the new worker runs {}", exe.display());

    // An upgrade caught half-way: no binary at the path, then one that
    // exits at once. Each reload fails and the worker in service serves on.
    let aside = bin_dir.path().join("lwsws.aside");
    std::fs::rename(&installed, &aside).unwrap();
    server.signal(Signal::SIGHUP);
    assert!(
        wait_until(SETTLE, || server.log().matches("reload failed").count()
            >= 1),
        "no `reload failed` without a binary\n{}",
        server.log()
    );
    std::fs::write(&installed, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.signal(Signal::SIGHUP);
    assert!(
        wait_until(SETTLE, || server.log().matches("reload failed").count()
            >= 2),
        "no `reload failed` with a binary that exits\n{}",
        server.log()
    );
    assert_eq!(
        text(port, "localhost", "/version.txt").as_deref(),
        Some("served")
    );
    assert_eq!(live_children(server.pid()), [pid2]);
    assert!(
        !server
            .log()
            .contains("old generation draining generation=2")
    );

    // The binary back in place, the next reload works.
    std::fs::rename(&aside, &installed).unwrap();
    server.signal(Signal::SIGHUP);
    let newest = |log: &str| ready_lines(log).iter().map(|r| r.0).max().unwrap_or(0);
    assert!(
        wait_until(SETTLE, || newest(&server.log()) > 2),
        "no generation after the binary came back\n{}",
        server.log()
    );
    let (pid3, binary3) = ready(&server, newest(&server.log()));
    assert_eq!(binary3, binary2);
    only_worker_left(&server, pid3);
    assert_eq!(
        text(port, "localhost", "/version.txt").as_deref(),
        Some("served")
    );
}

/// Installations that switch a symlink to a new release directory
/// (`/usr/sbin/lwsws -> /opt/lwsws/1.2/lwsws`, update-alternatives, a
/// deploy tool's `current` link): the upgrade is the binary the started
/// path now names, so the next reload runs it.
#[test]
fn a_binary_upgraded_by_switching_a_symlink_runs_from_the_next_reload() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::Builder::new()
        .prefix("lwsws-bin-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let release = |name: &str, extra: &[u8]| {
        let d = root.path().join(name);
        std::fs::create_dir(&d).unwrap();
        let mut b = std::fs::read(bin()).unwrap();
        b.extend_from_slice(extra);
        std::fs::write(d.join("lwsws"), &b).unwrap();
        std::fs::set_permissions(d.join("lwsws"), std::fs::Permissions::from_mode(0o755)).unwrap();
        (d.join("lwsws"), b.len() as u64)
    };
    let (old, old_size) = release("1.0", b"");
    let (new, new_size) = release("1.1", b"\0release 1.1\0");
    let link = root.path().join("lwsws");
    std::os::unix::fs::symlink(&old, &link).unwrap();

    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    write_file(&www, "version.txt", "served");
    dir.write_conf(&common::vhost("localhost", port, &www));
    let server = Lwsws::start(&link, &dir, &[], &[port]);
    let (_, binary1) = ready(&server, 1);
    assert_eq!(size_of(&binary1), old_size, "{binary1}");

    // Switch the link atomically, as `ln -sfn` + `mv -T` does.
    let staging = root.path().join(".lwsws.new");
    std::os::unix::fs::symlink(&new, &staging).unwrap();
    std::fs::rename(&staging, &link).unwrap();
    server.signal(Signal::SIGHUP);
    let (pid2, binary2) = ready(&server, 2);
    assert_eq!(
        size_of(&binary2),
        new_size,
        "generation 2 runs {binary2} ({}), not the release {} now points at\n{}",
        std::fs::read_link(format!("/proc/{pid2}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        link.display(),
        server.log()
    );
    only_worker_left(&server, pid2);
}

// ---------------------------------------------------------------------------

/// At most this many generations run at once (SPEC §4).
const MAX_GENERATIONS: usize = 8;

#[test]
fn ten_reloads_in_a_row_while_generations_drain_keep_serving_and_cap_generations() {
    let t0 = Instant::now();
    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    write_file(&www, "load.txt", LOAD_BODY);
    let conf = |version: u32| {
        write_file(&www, &format!("v{version}.txt"), &format!("v{version}"));
        format!(
            r#"{{ "global": {{ "drain-timeout-secs": "30" }},
                 "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
                   "ws-protocols": [{{ "{MIRROR}": {{}} }}],
                   "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }},
                              {{ "mountpoint": "/version", "origin": "file://{}",
                                 "default": "v{version}.txt" }}] }}] }}"#,
            www.display(),
            www.display()
        )
    };
    dir.write_conf(&conf(0));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let sup = server.pid();
    ready(&server, 1);
    assert_eq!(text(port, "localhost", "/version/").as_deref(), Some("v0"));
    let mut first = mirror(port, "first");
    roundtrip(&mut first, "hello").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    // Workers alive at once, sampled all along: every process, and the
    // generations among them that serve or drain (ready, not yet told to
    // close by the cap).
    let sampler = {
        let stop = stop.clone();
        let log_path = server.log_path().to_path_buf();
        let log = move || String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
        std::thread::spawn(move || {
            let mut worst_procs: Vec<u32> = Vec::new();
            let mut worst_gens: Vec<u64> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let procs = live_children(sup);
                let mut gens = in_service(&procs, &log());
                if gens.len() > MAX_GENERATIONS {
                    // The supervisor logs a generation's readiness and the
                    // closing of the oldest one after the other: look again.
                    std::thread::sleep(Duration::from_millis(300));
                    gens = in_service(&procs, &log());
                }
                if procs.len() > worst_procs.len() {
                    worst_procs = procs;
                }
                if gens.len() > worst_gens.len() {
                    worst_gens = gens;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (worst_procs, worst_gens)
        })
    };
    // New WebSockets all along, so every generation holds some and stays
    // draining (drain-timeout is 30 s) instead of finishing at once. Nobody
    // reads them until the end: they are clients that do not answer a close.
    let opener = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut opened = Vec::new();
            let mut refused = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let h = Handshake::new(port, &format!("/?mirror=o{i}")).protocol(MIRROR);
                match h.send() {
                    (_, Some(mut ws)) => match roundtrip(&mut ws, "hi") {
                        Ok(()) => opened.push(ws),
                        Err(e) => refused.push(format!("WebSocket {i}: {e}")),
                    },
                    (reply, None) => refused.push(format!("WebSocket {i}: {}", reply.status)),
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(40));
            }
            (opened, refused)
        })
    };
    let load = Load::start(port, t0);
    load.flowing(20);

    for version in 1..=10 {
        dir.write_conf(&conf(version));
        server.signal(Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        wait_until(SETTLE, || text(port, "localhost", "/version/").as_deref()
            == Some("v10")),
        "the last configuration never served\n{}",
        server.log()
    );
    let newest = ready_lines(&server.log())
        .iter()
        .map(|g| g.0)
        .max()
        .unwrap();
    let newest_pid = ready(&server, newest).0;
    // Let the newest generation take WebSockets too.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (worst_procs, worst_gens) = sampler.join().unwrap();
    let (mut opened, refused) = opener.join().unwrap();
    assert!(refused.is_empty(), "{refused:?}\n{}", server.log());
    let log = server.log();
    eprintln!(
        "{newest} generations, {} WebSockets opened; at most {} generations serving or draining \
         and {} worker processes at once",
        opened.len(),
        worst_gens.len(),
        worst_procs.len()
    );
    assert!(
        worst_gens.len() <= MAX_GENERATIONS,
        "generations {worst_gens:?} served or drained at once\n--- log ---\n{log}"
    );

    // Eleven generations all holding WebSockets: the cap closed the
    // oldest ones long before their 30 s drain deadline, and they exit
    // although their clients never answer the close.
    let closed_gens = told_to_close(&log);
    assert!(
        newest as usize <= MAX_GENERATIONS || !closed_gens.is_empty(),
        "{newest} generations, none closed\n{log}"
    );
    assert!(closed_gens.contains(&1), "{closed_gens:?}\n{log}");
    let starts = started(&log);
    for g in &closed_gens {
        let pid = starts[g];
        assert!(
            wait_until(SETTLE, || !alive(pid)),
            "generation {g} (pid {pid}) told to close still runs\n{}",
            server.log()
        );
    }
    // Its clients got 1001.
    let (code, _) = wait_close(&mut first, Instant::now() + Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("oldest generation's WebSocket: {e}\n{log}"));
    assert_eq!(code, Some(1001));
    let mut closed = 0;
    for (i, ws) in opened.iter_mut().enumerate() {
        // A close frame came seconds ago if it came at all.
        match ws.recv_within(Duration::from_millis(20)) {
            Ok(f) if f.is(OpCode::Close) => {
                assert_eq!(f.close().map(|c| c.0), Some(1001), "WebSocket {i}");
                closed += 1;
                continue;
            }
            Ok(f) => panic!("WebSocket {i}: unexpected {f:?}"),
            Err(NoFrame::Closed) => panic!(
                "WebSocket {i} ended without a close frame\n--- log ---\n{}",
                server.log()
            ),
            Err(NoFrame::Timeout) => {}
        }
        // Still open: it works, then the client ends it, so that its
        // draining generation has nothing left and finishes at once.
        roundtrip(ws, "after the reloads")
            .unwrap_or_else(|e| panic!("WebSocket {i}: {e}\n--- log ---\n{}", server.log()));
        answer_close(ws, 1000);
    }
    assert!(closed > 0, "no WebSocket was closed by the cap");
    only_worker_left(&server, newest_pid);
    let stats = load.finish(&server.log());
    eprintln!(
        "{closed} WebSockets closed with 1001 by the cap; {} requests served",
        stats.ok.load(Ordering::Relaxed)
    );
    let log = server.log();
    for g in 1..newest {
        assert!(
            log.contains(&format!("old generation finished generation={g} ")),
            "generation {g} never finished\n{log}"
        );
    }
}

/// Generation of each worker pid (`worker starting generation=N pid=P`).
fn started(log: &str) -> std::collections::HashMap<u64, u32> {
    log.lines()
        .filter(|l| l.contains("worker starting"))
        .filter_map(|l| {
            Some((
                field(l, "generation")?.parse().ok()?,
                field(l, "pid")?.parse().ok()?,
            ))
        })
        .collect()
}

/// Generations the supervisor closed for exceeding the cap.
fn told_to_close(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("closing the oldest"))
        .filter_map(|l| field(l, "generation")?.parse().ok())
        .collect()
}

/// The generations among the processes `procs` that are ready and not
/// told to close, as far as `log` says.
fn in_service(procs: &[u32], log: &str) -> Vec<u64> {
    let ready: Vec<u64> = ready_lines(log).iter().map(|r| r.0).collect();
    let closing = told_to_close(log);
    let mut gens: Vec<u64> = started(log)
        .into_iter()
        .filter(|(g, pid)| procs.contains(pid) && ready.contains(g) && !closing.contains(g))
        .map(|(g, _)| g)
        .collect();
    gens.sort_unstable();
    gens
}

// ---------------------------------------------------------------------------

/// SIGHUPs faster than generations start: those that come while one is
/// starting are queued (and coalesced), and whatever the configuration
/// says when the last one arrives is what serves in the end.
#[test]
fn a_burst_of_sighups_ends_with_the_last_configuration_serving() {
    let t0 = Instant::now();
    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    write_file(&www, "load.txt", LOAD_BODY);
    let conf = |version: u32| {
        write_file(&www, &format!("v{version}.txt"), &format!("v{version}"));
        format!(
            r#"{{ "global": {{ "drain-timeout-secs": "5" }},
                 "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
                   "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }},
                              {{ "mountpoint": "/version", "origin": "file://{}",
                                 "default": "v{version}.txt" }}] }}] }}"#,
            www.display(),
            www.display()
        )
    };
    dir.write_conf(&conf(0));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    ready(&server, 1);
    let load = Load::start(port, t0);
    load.flowing(20);
    for round in 0..3 {
        for i in 1..=10 {
            dir.write_conf(&conf(round * 10 + i));
            server.signal(Signal::SIGHUP);
            std::thread::sleep(Duration::from_millis(2));
        }
        let last = format!("v{}", round * 10 + 10);
        assert!(
            wait_until(SETTLE, || text(port, "localhost", "/version/").as_deref()
                == Some(last.as_str())),
            "round {round}: {last} never served\n{}",
            server.log()
        );
        load.flowing(20);
    }
    // Queued reloads run out: one worker is left, the newest generation.
    let sup = server.pid();
    let newest = || {
        ready_lines(&server.log())
            .into_iter()
            .max_by_key(|r| r.0)
            .unwrap()
    };
    assert!(
        wait_until(SETTLE, || live_children(sup) == [newest().1]),
        "workers {:?}\n{}",
        live_children(sup),
        server.log()
    );
    let (generation, pid, _) = newest();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(newest().0, generation, "a generation started later");
    assert_eq!(live_children(sup), [pid]);
    assert_eq!(text(port, "localhost", "/version/").as_deref(), Some("v30"));
    let log = server.log();
    let stats = load.finish(&log);
    eprintln!(
        "30 SIGHUPs: {generation} generations, {} queued; {} requests",
        log.matches("reloading once it is ready").count(),
        stats.ok.load(Ordering::Relaxed)
    );
}
