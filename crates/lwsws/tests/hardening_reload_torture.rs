//! Reload torture (SPEC §4, README "Reloading", "Processes and signals"):
//! N SIGHUPs, one every 200–500 ms (a pseudo-random interval, seed printed
//! and settable with `LWSWS_TORTURE_SEED`), while load generators keep
//! going all along:
//!
//! - HTTP/1.1 keep-alive clients and new-connection clients fetching a
//!   file, a CGI program and a proxied URL (an echo upstream);
//! - HTTP/2 clients (TLS, ALPN h2) fetching the same three;
//! - WebSocket echo sessions (`echo` protocol): a new one every ~150 ms,
//!   each echoing a few messages, kept open and echoed again now and then.
//!
//! Pass: no failed request; every WebSocket is still open (and echoes) at
//! the end or was closed by the server with 1001 no earlier than its
//! generation's drain deadline (or after the 8-generation cap closed that
//! generation); afterwards no zombie child, exactly one worker, and the
//! supervisor's descriptor count and VmRSS within 10 % of their values
//! after the warm-up (plus a small absolute slack, see [`FD_SLACK`] and
//! [`RSS_SLACK_KIB`]).
//!
//! `cargo test -p lwsws --test hardening_reload_torture` runs 20 reloads
//! (`LWSWS_TORTURE_RELOADS` overrides that); the ignored
//! `reload_torture_long` runs 100 by default and is what
//! `tests/stress/reload-torture.sh` runs.
//!
//! Retry rule: a request on a *reused* keep-alive connection (HTTP/1.1) or
//! HTTP/2 connection that fails before any byte of a response came may be
//! retried once on a new connection. That is what real clients do (RFC 9112
//! §9.3.1: a server may close an idle persistent connection at any time;
//! RFC 9113 §8.7: streams a GOAWAY did not process may be retried), and a
//! draining generation does end idle keep-alive connections. A request on a
//! fresh connection must never fail, and neither may the retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use bytes::Bytes;
use common::proxy::Upstream;
use common::ws::{Handshake, NoFrame, Ws};
use common::{bin, live_children, proc_stat, proc_status_kib, wait_until, zombie_children};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `drain-timeout-secs`: short, so that old generations finish quickly and
/// no more than a handful drain at once (one reload per 200 ms at most
/// means at most 5 draining generations, below the cap of 8).
const DRAIN: Duration = Duration::from_secs(1);
/// Liveness bound for a worker to start or old generations to finish.
const SETTLE: Duration = Duration::from_secs(30);
/// Socket reads give up after this long (a failure).
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// How much later than the server the monitor may see a log line: a
/// WebSocket closed up to this long before the drain deadline *as seen*
/// still counts as closed at the deadline.
const LOG_LAG: Duration = Duration::from_millis(250);
/// Absolute slack on top of 10 % for the supervisor's descriptors.
const FD_SLACK: u64 = 8;
/// Absolute slack on top of 10 % for the supervisor's VmRSS (allocator
/// arenas settling).
const RSS_SLACK_KIB: u64 = 2048;

const FILE_BODY: &str = "torture load body\n";
const CGI_BODY: &str = "cgi torture ok\n";
const PLAIN_HOST: &str = "localhost";
const TLS_HOST: &str = "torture.test";

// ---------------------------------------------------------------------------
// Failure accounting.

#[derive(Default)]
struct Stats {
    ok: Mutex<HashMap<&'static str, u64>>,
    failures: Mutex<Vec<String>>,
    /// Requests retried once after a reused connection ended before any
    /// response byte (allowed, see the module comment).
    retried: AtomicU64,
    /// Keep-alive connections ended by the server after a response
    /// (`Connection: close`, or an HTTP/2 GOAWAY seen before sending).
    closed_by_server: AtomicU64,
}

impl Stats {
    fn ok(&self, kind: &'static str) {
        *self.ok.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn total_ok(&self) -> u64 {
        self.ok.lock().unwrap().values().sum()
    }

    fn fail(&self, t0: Instant, what: String) {
        let mut f = self.failures.lock().unwrap();
        f.push(format!("at {:.3}s: {what}", t0.elapsed().as_secs_f64()));
    }

    fn failed(&self) -> usize {
        self.failures.lock().unwrap().len()
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1.

struct Resp {
    status: u16,
    close: bool,
    body: Vec<u8>,
}

enum ReqError {
    /// The connection ended (EOF, reset, broken pipe) before any byte of a
    /// response: retryable on a reused connection.
    NoResponse(String),
    /// Anything else: never retryable.
    Other(String),
}

impl ReqError {
    fn text(&self) -> &str {
        match self {
            ReqError::NoResponse(s) | ReqError::Other(s) => s,
        }
    }
}

fn connection_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::BrokenPipe
            | ErrorKind::ConnectionAborted
            | ErrorKind::UnexpectedEof
    )
}

fn read_resp(r: &mut BufReader<TcpStream>) -> Result<Resp, ReqError> {
    match r.fill_buf() {
        Ok([]) => {
            return Err(ReqError::NoResponse(
                "connection closed before a response".into(),
            ));
        }
        Ok(_) => {}
        Err(e) if connection_gone(&e) => {
            return Err(ReqError::NoResponse(format!("before a response: {e}")));
        }
        Err(e) => return Err(ReqError::Other(format!("waiting for a response: {e}"))),
    }
    let other = |e: std::io::Error| ReqError::Other(format!("inside a response: {e}"));
    let mut status = None;
    let mut close = false;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(other)? == 0 {
            return Err(ReqError::Other(
                "connection closed inside a response head".into(),
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status.is_none() {
            status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            if status.is_none() {
                return Err(ReqError::Other(format!("bad status line {line:?}")));
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(ReqError::Other(format!("bad header line {line:?}")));
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
    if status == 304 || status == 204 || (100..200).contains(&status) {
    } else if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(other)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| ReqError::Other(format!("bad chunk size {size:?}")))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).map_err(other)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(other)?;
    } else {
        r.read_to_end(&mut body).map_err(other)?;
        close = true;
    }
    Ok(Resp {
        status,
        close,
        body,
    })
}

fn open(port: u16) -> Result<BufReader<TcpStream>, String> {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .map_err(|e| format!("connect to port {port}: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    Ok(BufReader::new(s))
}

fn send_and_read(c: &mut BufReader<TcpStream>, req: &str) -> Result<Resp, ReqError> {
    match c.get_mut().write_all(req.as_bytes()) {
        Ok(()) => {}
        Err(e) if connection_gone(&e) => {
            return Err(ReqError::NoResponse(format!("send: {e}")));
        }
        Err(e) => return Err(ReqError::Other(format!("send: {e}"))),
    }
    read_resp(c)
}

/// What a load request fetches and how its answer is judged.
#[derive(Clone, Copy)]
struct Target {
    kind: &'static str,
    path: &'static str,
}

const TARGETS: [Target; 3] = [
    Target {
        kind: "file",
        path: "/load.txt",
    },
    Target {
        kind: "cgi",
        path: "/cgi/torture",
    },
    Target {
        kind: "proxy",
        path: "/p/torture",
    },
];

fn body_ok(t: Target, status: u16, body: &[u8]) -> Result<(), String> {
    let good = status == 200
        && match t.kind {
            "file" => body == FILE_BODY.as_bytes(),
            "cgi" => body == CGI_BODY.as_bytes(),
            // The echo upstream's JSON names the method and the target.
            _ => {
                let text = String::from_utf8_lossy(body);
                text.contains("\"GET\"") && text.contains("torture")
            }
        };
    if good {
        Ok(())
    } else {
        Err(format!(
            "status {status}, body {:?}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    }
}

/// An HTTP/1.1 client: with `keep_alive`, one connection reused until the
/// server closes it; else a new connection (`Connection: close`) per
/// request.
fn http1_client(
    port: u16,
    t: Target,
    keep_alive: bool,
    name: String,
    t0: Instant,
    stop: &AtomicBool,
    stats: &Stats,
) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut served = 0u64;
    let req = if keep_alive {
        format!("GET {} HTTP/1.1\r\nHost: {PLAIN_HOST}\r\n\r\n", t.path)
    } else {
        format!(
            "GET {} HTTP/1.1\r\nHost: {PLAIN_HOST}\r\nConnection: close\r\n\r\n",
            t.path
        )
    };
    while !stop.load(Ordering::Relaxed) {
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let reused = conn.is_some();
            if conn.is_none() {
                match open(port) {
                    Ok(c) => {
                        served = 0;
                        conn = Some(c);
                    }
                    Err(e) => break Err(e),
                }
            }
            let c = conn.as_mut().unwrap();
            match send_and_read(c, &req) {
                Ok(r) => break Ok(r),
                Err(ReqError::NoResponse(e)) if reused && attempt == 1 => {
                    // Closed by the server between two requests: retry once
                    // on a new connection, as real clients do.
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                    let _ = e;
                    conn = None;
                }
                Err(e) => {
                    break Err(format!(
                        "{} (request {} on its connection, attempt {attempt})",
                        e.text(),
                        served + 1
                    ));
                }
            }
        };
        match result {
            Ok(r) => {
                served += 1;
                match body_ok(t, r.status, &r.body) {
                    Ok(()) => stats.ok(t.kind),
                    Err(e) => stats.fail(t0, format!("{name} {}: {e}", t.path)),
                }
                if r.close || !keep_alive {
                    if keep_alive {
                        stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    }
                    conn = None;
                }
            }
            Err(e) => {
                stats.fail(t0, format!("{name} {}: {e}", t.path));
                conn = None;
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

// ---------------------------------------------------------------------------
// HTTP/2 (hyper over tokio-rustls).

type H2Body = Full<Bytes>;

async fn h2_connect(
    cfg: Arc<rustls::ClientConfig>,
    port: u16,
) -> Result<SendRequest<H2Body>, String> {
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| format!("TCP connect: {e}"))?;
    let name = rustls_pki_types::ServerName::try_from(TLS_HOST.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    if tls.get_ref().1.alpn_protocol() != Some(&b"h2"[..]) {
        return Err("ALPN h2 not chosen".into());
    }
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// `Err((got_a_response_head, message))`.
async fn h2_get(
    send: &mut SendRequest<H2Body>,
    port: u16,
    path: &str,
) -> Result<(u16, Vec<u8>), (bool, String)> {
    let req = http::Request::builder()
        .method(http::Method::GET)
        .uri(format!("https://{TLS_HOST}:{port}{path}"))
        .body(H2Body::new(Bytes::new()))
        .unwrap();
    let resp = match tokio::time::timeout(IO_TIMEOUT, send.send_request(req)).await {
        Err(_) => return Err((false, "no response head in time".into())),
        Ok(Err(e)) => return Err((false, format!("request: {e:?}"))),
        Ok(Ok(r)) => r,
    };
    let (parts, body) = resp.into_parts();
    match tokio::time::timeout(IO_TIMEOUT, body.collect()).await {
        Err(_) => Err((true, "no complete body in time".into())),
        Ok(Err(e)) => Err((true, format!("body: {e:?}"))),
        Ok(Ok(b)) => Ok((parts.status.as_u16(), b.to_bytes().to_vec())),
    }
}

fn h2_client(
    port: u16,
    cfg: Arc<rustls::ClientConfig>,
    name: String,
    t0: Instant,
    stop: &AtomicBool,
    stats: &Stats,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn: Option<SendRequest<H2Body>> = None;
        let mut served = 0u64;
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let t = TARGETS[i % TARGETS.len()];
            i += 1;
            // A connection the server has ended (GOAWAY after a drain) is
            // known closed before anything is sent on it: a new one.
            if let Some(c) = &mut conn {
                let ready = tokio::time::timeout(IO_TIMEOUT, c.ready()).await;
                if c.is_closed() || !matches!(ready, Ok(Ok(()))) {
                    stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
            }
            let mut attempt = 0;
            let result = loop {
                attempt += 1;
                let reused = conn.is_some();
                if conn.is_none() {
                    match h2_connect(cfg.clone(), port).await {
                        Ok(c) => {
                            served = 0;
                            conn = Some(c);
                        }
                        Err(e) => break Err(e),
                    }
                }
                match h2_get(conn.as_mut().unwrap(), port, t.path).await {
                    Ok(r) => break Ok(r),
                    Err((false, _)) if reused && attempt == 1 => {
                        // Refused before any response (GOAWAY / closed
                        // connection): retried once, as RFC 9113 §8.7 allows.
                        stats.retried.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                    Err((_, e)) => {
                        break Err(format!(
                            "{e} (request {} on its connection, attempt {attempt})",
                            served + 1
                        ));
                    }
                }
            };
            match result {
                Ok((status, body)) => {
                    served += 1;
                    match body_ok(t, status, &body) {
                        Ok(()) => stats.ok(match t.kind {
                            "file" => "h2 file",
                            "cgi" => "h2 cgi",
                            _ => "h2 proxy",
                        }),
                        Err(e) => stats.fail(t0, format!("{name} {}: {e}", t.path)),
                    }
                }
                Err(e) => {
                    stats.fail(t0, format!("{name} {}: {e}", t.path));
                    conn = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
}

// ---------------------------------------------------------------------------
// WebSockets.

enum WsEnd {
    Open,
    Closed { code: Option<u16>, at: Instant },
    Failed(String),
}

struct Session {
    id: usize,
    ws: Option<Ws>,
    opened: Instant,
    /// The worker that accepted it, if it could be found in /proc.
    worker: Option<u32>,
    end: WsEnd,
    echoes: u32,
}

fn try_send(ws: &Ws, opcode: OpCode, payload: &[u8]) -> std::io::Result<()> {
    let mut out = bytes::BytesMut::new();
    lwsws_ws::frame::encode_masked_frame(&mut out, true, opcode, false, [7, 3, 5, 1], payload);
    let mut stream: &TcpStream = ws.stream();
    stream.write_all(&out)
}

impl Session {
    fn closed(&mut self, code: Option<u16>) {
        if let Some(ws) = &self.ws {
            // Answer the close, as a client should.
            let _ = try_send(ws, OpCode::Close, &code.unwrap_or(1000).to_be_bytes());
        }
        self.ws = None;
        self.end = WsEnd::Closed {
            code,
            at: Instant::now(),
        };
    }

    fn failed(&mut self, why: String) {
        self.ws = None;
        self.end = WsEnd::Failed(why);
    }

    /// Sends `msg` and waits for its echo; a close frame ends the session.
    fn echo(&mut self, msg: &str) {
        let Some(ws) = self.ws.as_mut() else { return };
        if let Err(e) = try_send(ws, OpCode::Text, msg.as_bytes()) {
            // A close frame may be waiting behind the broken pipe.
            return self.drain_close(format!("send {msg:?}: {e}"));
        }
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ws = self.ws.as_mut().unwrap();
            match ws.recv_within(left) {
                Ok(f) if f.is(OpCode::Ping) => {
                    let _ = try_send(ws, OpCode::Pong, &f.payload);
                }
                Ok(f) if f.is(OpCode::Text) && f.text() == msg => {
                    self.echoes += 1;
                    return;
                }
                Ok(f) if f.is(OpCode::Close) => return self.closed(f.close().map(|c| c.0)),
                Ok(f) => return self.failed(format!("unexpected {f:?} instead of {msg:?}")),
                Err(NoFrame::Timeout) => return self.failed(format!("no echo of {msg:?}")),
                Err(NoFrame::Closed) => {
                    return self.failed(format!("ended without a close frame (echo {msg:?})"));
                }
            }
        }
    }

    /// After a failed send: whatever close frame the server sent.
    fn drain_close(&mut self, why: String) {
        let ws = self.ws.as_mut().unwrap();
        loop {
            match ws.recv_within(Duration::from_millis(200)) {
                Ok(f) if f.is(OpCode::Close) => return self.closed(f.close().map(|c| c.0)),
                Ok(_) => {}
                Err(_) => return self.failed(why),
            }
        }
    }

    /// Notices a close frame that came while nobody spoke.
    fn poll(&mut self) {
        let Some(ws) = self.ws.as_mut() else { return };
        match ws.recv_within(Duration::from_millis(1)) {
            Ok(f) if f.is(OpCode::Close) => self.closed(f.close().map(|c| c.0)),
            Ok(f) if f.is(OpCode::Ping) => {
                let _ = try_send(ws, OpCode::Pong, &f.payload);
            }
            Ok(f) => self.failed(format!("unsolicited {f:?}")),
            Err(NoFrame::Timeout) => {}
            Err(NoFrame::Closed) => self.failed("ended without a close frame".into()),
        }
    }
}

/// Server-side socket inodes in /proc/net/tcp for the connection from
/// `client_port` to `server_port`.
fn server_socket_inode(server_port: u16, client_port: u16) -> Option<String> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{server_port:04X}");
    let remote = format!("0100007F:{client_port:04X}");
    tcp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1] == local && f[2] == remote).then(|| f[9].to_string())
    })
}

/// The worker (child of `sup`) holding the server side of `ws`.
fn owner(sup: u32, port: u16, ws: &Ws) -> Option<u32> {
    let client_port = ws.stream().local_addr().ok()?.port();
    let inode = server_socket_inode(port, client_port)?;
    let want = format!("socket:[{inode}]");
    live_children(sup).into_iter().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))
        })
    })
}

fn ws_client(port: u16, sup: u32, stop: &AtomicBool) -> Vec<Session> {
    let mut sessions: Vec<Session> = Vec::new();
    let mut next_open = Instant::now();
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_open {
            next_open = Instant::now() + Duration::from_millis(150);
            let id = sessions.len();
            let opened = Instant::now();
            let h = Handshake::new(port, &format!("/?session={id}")).protocol("echo");
            let mut s = match h.send() {
                (_, Some(ws)) => {
                    let worker = owner(sup, port, &ws);
                    Session {
                        id,
                        ws: Some(ws),
                        opened,
                        worker,
                        end: WsEnd::Open,
                        echoes: 0,
                    }
                }
                (reply, None) => Session {
                    id,
                    ws: None,
                    opened,
                    worker: None,
                    end: WsEnd::Failed(format!(
                        "handshake answered {} {:?}",
                        reply.status,
                        reply.text()
                    )),
                    echoes: 0,
                },
            };
            for m in 0..3 {
                s.echo(&format!("session {id} message {m}"));
            }
            sessions.push(s);
        }
        for s in &mut sessions {
            s.poll();
        }
        // Old sessions keep talking: one echo on one open session per turn.
        let open: Vec<usize> = (0..sessions.len())
            .filter(|&i| sessions[i].ws.is_some())
            .collect();
        if !open.is_empty() {
            let i = open[turn % open.len()];
            turn += 1;
            let msg = format!("session {i} turn {turn}");
            sessions[i].echo(&msg);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sessions
}

// ---------------------------------------------------------------------------
// The supervisor's log, watched as it grows.

/// The value of ` NAME=value` (or ` NAME="value"`) in a log line.
fn field(line: &str, name: &str) -> Option<String> {
    let rest = &line[line.find(&format!(" {name}="))? + name.len() + 2..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted[..quoted.find('"')?].to_string(),
        None => rest.split_whitespace().next()?.to_string(),
    })
}

/// When the monitor first saw each generation told to drain, or closed by
/// the cap; and each worker pid's generation.
#[derive(Default)]
struct Events {
    draining: HashMap<u64, Instant>,
    capped: HashMap<u64, Instant>,
    generation_of: HashMap<u32, u64>,
}

fn watch_log(path: &Path, events: &Mutex<Events>, stop: &AtomicBool) {
    let mut seen = 0usize;
    let mut pending = String::new();
    loop {
        let done = stop.load(Ordering::Relaxed);
        let bytes = std::fs::read(path).unwrap_or_default();
        if bytes.len() > seen {
            pending.push_str(&String::from_utf8_lossy(&bytes[seen..]));
            seen = bytes.len();
            let now = Instant::now();
            let mut ev = events.lock().unwrap();
            while let Some(nl) = pending.find('\n') {
                let line: String = pending.drain(..=nl).collect();
                let generation = field(&line, "generation").and_then(|g| g.parse::<u64>().ok());
                let Some(g) = generation else { continue };
                if line.contains("old generation draining") {
                    ev.draining.entry(g).or_insert(now);
                } else if line.contains("closing the oldest") {
                    ev.capped.entry(g).or_insert(now);
                } else if line.contains("worker starting")
                    && let Some(pid) = field(&line, "pid").and_then(|p| p.parse().ok())
                {
                    ev.generation_of.insert(pid, g);
                }
            }
        }
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// The supervisor's resources.

fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS").unwrap_or(0)
}

/// Zombies among the children of `pid` and of its children.
fn zombies_below(pid: u32) -> Vec<u32> {
    let mut z = zombie_children(pid);
    for c in live_children(pid) {
        z.extend(zombie_children(c));
    }
    z
}

/// A small xorshift generator: reload intervals without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// ---------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn conf(port: u16, tls_port: u16, dir: &Path, up: &Upstream, version: usize) -> String {
    let www = dir.join("www");
    let cgi = dir.join("cgi-bin/torture.sh");
    std::fs::write(www.join(format!("v{version}.txt")), format!("v{version}")).unwrap();
    let mounts = format!(
        r#"{{ "mountpoint": "/", "origin": "file://{www}" }},
           {{ "mountpoint": "/version", "origin": "file://{www}", "default": "v{version}.txt" }},
           {{ "mountpoint": "/cgi", "origin": "cgi://{cgi}" }},
           {{ "mountpoint": "/p", "origin": "{up}" }}"#,
        www = www.display(),
        cgi = cgi.display(),
        up = up.url("/"),
    );
    format!(
        r#"{{ "global": {{ "drain-timeout-secs": "{drain}" }},
             "vhosts": [
               {{ "name": "{PLAIN_HOST}", "port": "{port}", "interface": "127.0.0.1",
                  "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
                  "mounts": [ {mounts} ] }},
               {{ "name": "{TLS_HOST}", "port": "{tls_port}", "interface": "127.0.0.1",
                  "host-ssl-cert": "{cert}", "host-ssl-key": "{key}",
                  "mounts": [ {mounts} ] }}
             ] }}"#,
        drain = DRAIN.as_secs(),
        cert = dir.join("tls/torture.crt").display(),
        key = dir.join("tls/torture.key").display(),
    )
}

fn version(port: u16) -> Option<String> {
    let mut c = open(port).ok()?;
    let req = format!("GET /version/ HTTP/1.1\r\nHost: {PLAIN_HOST}\r\nConnection: close\r\n\r\n");
    let r = send_and_read(&mut c, &req).ok()?;
    (r.status == 200).then(|| String::from_utf8_lossy(&r.body).into_owned())
}

fn torture(reloads: usize) {
    let t0 = Instant::now();
    let seed = env_u64("LWSWS_TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("reload torture: {reloads} SIGHUPs, LWSWS_TORTURE_SEED={seed}");
    let mut rng = Rng(seed);

    let up = Upstream::start("upstream.py", &["echo"]);
    let dir = ConfigDir::new();
    dir.write_file("www/load.txt", FILE_BODY);
    let cgi = dir.write_file(
        "cgi-bin/torture.sh",
        format!(
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n{}'\n",
            CGI_BODY.replace('\n', "\\n")
        ),
    );
    std::fs::set_permissions(&cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca = tls::Ca::new("reload torture CA");
    let (cert, key) = ca.server_cert(&[TLS_HOST]);
    dir.write_file("tls/torture.crt", cert);
    dir.write_file("tls/torture.key", key);
    let (port, tls_port) = (free_port(), free_port());
    dir.write_conf(&conf(port, tls_port, dir.path(), &up, 0));
    let server = Lwsws::start(bin(), &dir, &[], &[port, tls_port]);
    let sup = server.pid();
    let fail_log = |what: String| -> String {
        format!(
            "{what}\n--- server log (last 200 lines) ---\n{}\n--- upstream log ---\n{}",
            server
                .log()
                .lines()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
            up.log()
        )
    };
    assert!(
        wait_until(SETTLE, || version(port).as_deref() == Some("v0")),
        "{}",
        fail_log("never served".into())
    );

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let events = Arc::new(Mutex::new(Events::default()));
    let monitor = {
        let (stop, events) = (stop.clone(), events.clone());
        let path = server.log_path().to_path_buf();
        std::thread::spawn(move || watch_log(&path, &events, &stop))
    };
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for t in TARGETS {
        for keep_alive in [true, false] {
            let (stop, stats) = (stop.clone(), stats.clone());
            let name = format!(
                "HTTP/1.1 {} {} client",
                if keep_alive {
                    "keep-alive"
                } else {
                    "new-connection"
                },
                t.kind
            );
            threads.push(std::thread::spawn(move || {
                http1_client(port, t, keep_alive, name, t0, &stop, &stats);
            }));
        }
    }
    // A second keep-alive file client: the most common traffic.
    {
        let (stop, stats) = (stop.clone(), stats.clone());
        threads.push(std::thread::spawn(move || {
            http1_client(
                port,
                TARGETS[0],
                true,
                "HTTP/1.1 keep-alive file client 2".into(),
                t0,
                &stop,
                &stats,
            );
        }));
    }
    let cfg = tls::rustls_client(&ca.pem(), None, &[b"h2"]);
    for n in 0..2 {
        let (stop, stats, cfg) = (stop.clone(), stats.clone(), cfg.clone());
        threads.push(std::thread::spawn(move || {
            h2_client(
                tls_port,
                cfg,
                format!("HTTP/2 client {n}"),
                t0,
                &stop,
                &stats,
            );
        }));
    }
    let ws_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || ws_client(port, sup, &stop))
    };

    // Warm-up: every kind of request served, then the baseline.
    let kinds = ["file", "cgi", "proxy", "h2 file", "h2 cgi", "h2 proxy"];
    assert!(
        wait_until(SETTLE, || {
            let ok = stats.ok.lock().unwrap();
            kinds.iter().all(|k| ok.get(k).copied().unwrap_or(0) >= 20)
        }) || stats.failed() > 0,
        "{}",
        fail_log(format!("warm-up: {:?}", stats.ok.lock().unwrap()))
    );
    std::thread::sleep(Duration::from_millis(500));
    let (fd0, rss0) = (fd_count(sup), rss_kib(sup));
    eprintln!(
        "warm-up done at {:.1}s: supervisor {fd0} fds, VmRSS {rss0} KiB, {} requests",
        t0.elapsed().as_secs_f64(),
        stats.total_ok()
    );

    let hups = Instant::now();
    for v in 1..=reloads {
        dir.write_conf(&conf(port, tls_port, dir.path(), &up, v));
        server.signal(Signal::SIGHUP);
        let gap = 200 + rng.next() % 301;
        std::thread::sleep(Duration::from_millis(gap));
    }
    let hup_time = hups.elapsed();
    let last = format!("v{reloads}");
    assert!(
        wait_until(SETTLE, || version(port).as_deref() == Some(last.as_str())),
        "{}",
        fail_log(format!("the last configuration ({last}) never served"))
    );
    // The old generations drain (keep-alive connections get `Connection:
    // close`, WebSockets 1001 at drain-timeout) and exit, under load.
    let one_worker = wait_until(SETTLE, || live_children(sup).len() == 1);
    let drained_at = t0.elapsed();
    // Some more load on the last generation.
    let before = stats.total_ok();
    wait_until(SETTLE, || stats.total_ok() >= before + 200);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let mut sessions = ws_thread.join().unwrap();
    monitor.join().unwrap();
    let events = events.lock().unwrap();

    // WebSockets: still open ones still echo.
    for s in &mut sessions {
        if s.ws.is_some() {
            let id = s.id;
            s.echo(&format!("session {id} at the end"));
        }
    }
    let mut ws_problems = Vec::new();
    let (mut still_open, mut closed_1001, mut capped) = (0, 0, 0);
    let mut tightest: Option<i128> = None;
    for s in &sessions {
        let generation = s.worker.and_then(|p| events.generation_of.get(&p).copied());
        match &s.end {
            WsEnd::Open => still_open += 1,
            WsEnd::Failed(why) => ws_problems.push(format!(
                "WebSocket {} (generation {generation:?}, opened at {:.3}s, {} echoes): {why}",
                s.id,
                (s.opened - t0).as_secs_f64(),
                s.echoes
            )),
            WsEnd::Closed { code, at } => {
                if *code != Some(1001) {
                    ws_problems.push(format!(
                        "WebSocket {} (generation {generation:?}): closed with {code:?}, not 1001",
                        s.id
                    ));
                    continue;
                }
                closed_1001 += 1;
                // The deadline: drain start of its generation + drain-timeout
                // (or, not knowing the generation, at least its opening +
                // drain-timeout, as a serving generation accepted it).
                let cap = generation.and_then(|g| events.capped.get(&g));
                if cap.is_some_and(|c| *at + LOG_LAG >= *c) {
                    capped += 1;
                    continue;
                }
                let start = generation.and_then(|g| events.draining.get(&g).copied());
                let deadline = start.unwrap_or(s.opened) + DRAIN;
                if *at + LOG_LAG < deadline {
                    ws_problems.push(format!(
                        "WebSocket {} (generation {generation:?}, worker {:?}): 1001 at {:.3}s, \
                         {:?} before its drain deadline {:.3}s ({})",
                        s.id,
                        s.worker,
                        (*at - t0).as_secs_f64(),
                        deadline - *at,
                        (deadline - t0).as_secs_f64(),
                        if start.is_some() {
                            "drain seen in the log"
                        } else {
                            "opening + drain-timeout"
                        }
                    ));
                } else {
                    // Signed: negative within LOG_LAG of the deadline as seen.
                    let margin = if *at >= deadline {
                        (*at - deadline).as_millis() as i128
                    } else {
                        -((deadline - *at).as_millis() as i128)
                    };
                    tightest = Some(tightest.map_or(margin, |t: i128| t.min(margin)));
                }
            }
        }
    }
    let unmapped = sessions.iter().filter(|s| s.worker.is_none()).count();

    // Processes and resources, once everything settled.
    let survivors = live_children(sup);
    let zombies = zombies_below(sup);
    std::thread::sleep(Duration::from_millis(500));
    let (fd1, rss1) = (fd_count(sup), rss_kib(sup));
    let generations = events.generation_of.len();
    let failures = stats.failures.lock().unwrap().clone();
    let ok = stats.ok.lock().unwrap().clone();
    eprintln!(
        "reload torture: {reloads} SIGHUPs in {:.1}s, {generations} generations started; \
         drained at {:.1}s; requests {ok:?} (total {}), {} retried on a reused connection, \
         {} keep-alive/h2 connections ended by the server; {} WebSockets: {still_open} open, \
         {closed_1001} closed 1001 ({capped} by the cap), tightest margin after the drain \
         deadline {tightest:?} ms, {unmapped} without a known worker; supervisor fds {fd0} -> {fd1}, \
         VmRSS {rss0} -> {rss1} KiB; {} failures, {} WebSocket problems; total {:.1}s",
        hup_time.as_secs_f64(),
        drained_at.as_secs_f64(),
        ok.values().sum::<u64>(),
        stats.retried.load(Ordering::Relaxed),
        stats.closed_by_server.load(Ordering::Relaxed),
        sessions.len(),
        failures.len(),
        ws_problems.len(),
        t0.elapsed().as_secs_f64(),
    );

    let mut problems = Vec::new();
    if !failures.is_empty() {
        problems.push(format!(
            "{} failed requests:\n  {}",
            failures.len(),
            failures
                .iter()
                .take(60)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        ));
    }
    if !ws_problems.is_empty() {
        problems.push(format!(
            "{} WebSocket problems:\n  {}",
            ws_problems.len(),
            ws_problems
                .iter()
                .take(60)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        ));
    }
    if !one_worker || survivors.len() != 1 {
        problems.push(format!(
            "workers left: {survivors:?} ({:?})",
            survivors.iter().map(|&p| proc_stat(p)).collect::<Vec<_>>()
        ));
    }
    if !zombies.is_empty() {
        problems.push(format!("zombies: {zombies:?}"));
    }
    if fd1 > fd0 + fd0 / 10 + FD_SLACK {
        problems.push(format!(
            "supervisor descriptors {fd0} -> {fd1} (limit {})",
            fd0 + fd0 / 10 + FD_SLACK
        ));
    }
    if rss1 > rss0 + rss0 / 10 + RSS_SLACK_KIB {
        problems.push(format!(
            "supervisor VmRSS {rss0} -> {rss1} KiB (limit {})",
            rss0 + rss0 / 10 + RSS_SLACK_KIB
        ));
    }
    if sessions.len() < 10 || ok.values().sum::<u64>() < 500 {
        problems.push("too little load to mean anything".into());
    }
    assert!(problems.is_empty(), "{}", fail_log(problems.join("\n")));
}

#[test]
fn reload_torture_keeps_every_request_and_websocket_and_leaks_nothing() {
    let n = env_u64("LWSWS_TORTURE_RELOADS").unwrap_or(20);
    torture(usize::try_from(n).unwrap());
}

/// The full version of the issue (100 reloads by default); run by
/// `tests/stress/reload-torture.sh`.
#[test]
#[ignore = "long: run by tests/stress/reload-torture.sh"]
fn reload_torture_long() {
    let n = env_u64("LWSWS_TORTURE_RELOADS").unwrap_or(100);
    torture(usize::try_from(n).unwrap());
}
