//! wsecho: WebSocket echo load generator.
//!
//! Opens `--conns` connections to an echo endpoint (at most `--open-at-once`
//! handshakes in flight, so a server's listen backlog is not flooded), then on
//! every connection keeps `--inflight` messages of `--size` bytes in flight: a
//! message is sent, the server sends it back, its round-trip time goes into a
//! histogram, the next one is sent. After `--warmup` seconds the next
//! `--duration` seconds are measured: messages that come back inside that
//! window are counted and their round trips recorded.
//!
//! Every echo is checked: it must be one whole message (a server may fragment
//! it into several frames) with the opcode and the exact bytes that were sent,
//! in order. Payloads are printable ASCII (valid UTF-8, so text frames work
//! too). `--payload random` (the default): the first bytes are the message's
//! sequence number, the rest a filler that differs per connection, so a reply
//! that went to the wrong connection or came back out of order is caught.
//! `--payload json`: every message is JSON text of exactly `--size` bytes,
//! `{"seq":"00000042","items":[{"id":4711,"name":"user-4711","tags":["a","b"],
//! "active":true},...]}` padded with spaces before its closing `]}`, the
//! numbers drawn anew for every message (per connection), so it compresses as
//! JSON traffic does; a copy of each message in flight is kept to check its
//! echo against.
//!
//! `--deflate` offers permessage-deflate (`permessage-deflate;
//! client_max_window_bits`) and fails the connection unless the server
//! accepts it; then every message sent is deflated (RSV1 set, the trailing
//! `00 00 ff ff` removed; context takeover unless the server's answer has
//! `client_no_context_takeover`), and every echo with RSV1 is inflated (one
//! inflate context per connection unless `server_no_context_takeover`) before
//! it is checked. An echo without RSV1 is taken as it is (a server may send
//! small messages uncompressed). See `deflate.rs`.
//!
//! Errors, all counted in `errors=`: `connect` (TCP connect or opening
//! handshake failed or timed out), `closed` (the server closed or reset the
//! connection, or sent a close frame, before the end), `protocol` (a frame the
//! server must not send), `mismatch` (an echo that differs from what was sent,
//! or a message nobody sent), `stalled` (at the end, the oldest message of a
//! connection had waited more than `--timeout` seconds). A connection stops at
//! its first error; the others go on.
//!
//! Pings from the server are answered; at the end every connection sends a
//! close frame (1000) and waits up to 2 s for the server's.
//!
//! Output: a human-readable line, then a machine-readable one:
//! `wsecho conns=N size=B msgs_per_s=X p50_us=.. p99_us=.. p999_us=.. errors=E`
//! followed by `inflight= secs= open= client_cpu=` (client_cpu = CPU seconds
//! this process used in the window / its length; near 1.0 per thread means the
//! client set the pace, not the server), then, only when the options are on,
//! `payload=json` and `deflate=1 tx_ratio= rx_ratio=` (the deflated size of
//! what was sent / of what came back, over the uncompressed size).

mod deflate;
mod ws;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::{Instant, sleep_until, timeout};

use ws::{OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT};

const USAGE: &str = "\
usage: wsecho --url ws://HOST:PORT/PATH [options]
  --url URL            echo endpoint (plain ws:// only); may also be given bare
  --protocol NAME      Sec-WebSocket-Protocol to request (echo); '' requests none
  --conns N            connections (256)
  --size BYTES         message payload size, k/m suffixes allowed (64)
  --inflight K         messages in flight per connection (1)
  --duration SECS      measured seconds (10)
  --warmup SECS        unmeasured seconds before them (1)
  --binary             send binary messages (default: text)
  --payload KIND       random: printable ASCII noise (the default); json:
                       JSON text of objects with varying numbers
  --deflate            offer permessage-deflate, require it, compress every
                       message sent and inflate the echoes
  --threads T          client threads, each with its own event loop (1)
  --open-at-once N     handshakes in flight at once while connecting (200)
  --timeout SECS       limit for connect + handshake, and for an echo to be
                       late at the end before it counts as stalled (5)";

/// How many sequence-number digits (base 94) lead each payload.
const SEQ_DIGITS: usize = 8;

#[derive(Clone)]
struct Opts {
    url: String,
    protocol: Option<String>,
    conns: usize,
    size: usize,
    inflight: usize,
    duration: f64,
    warmup: f64,
    binary: bool,
    json: bool,
    deflate: bool,
    threads: usize,
    open_at_once: usize,
    timeout: f64,
}

fn die(msg: &str) -> ! {
    eprintln!("wsecho: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        url: String::new(),
        protocol: Some("echo".into()),
        conns: 256,
        size: 64,
        inflight: 1,
        duration: 10.0,
        warmup: 1.0,
        binary: false,
        json: false,
        deflate: false,
        threads: 1,
        open_at_once: 200,
        timeout: 5.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        let count = |v: String| match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => die(&format!("{flag}: not a positive number: {v}")),
        };
        let secs = |v: String| match v.trim_end_matches('s').parse::<f64>() {
            Ok(x) if x >= 0.0 && x.is_finite() => x,
            _ => die(&format!("{flag}: bad number of seconds: {v}")),
        };
        match flag.as_str() {
            "--url" => o.url = value(),
            "--protocol" => o.protocol = Some(value()).filter(|p| !p.is_empty()),
            "--conns" => o.conns = count(value()),
            "--size" => {
                let v = value().to_ascii_lowercase();
                let (num, mul) = if let Some(n) = v.strip_suffix('k') {
                    (n.to_string(), 1024)
                } else if let Some(n) = v.strip_suffix('m') {
                    (n.to_string(), 1024 * 1024)
                } else {
                    (v.clone(), 1)
                };
                o.size = count(num) * mul;
            }
            "--inflight" => o.inflight = count(value()),
            "--duration" => o.duration = secs(value()),
            "--warmup" => o.warmup = secs(value()),
            "--binary" => o.binary = true,
            "--payload" => {
                o.json = match value().as_str() {
                    "random" => false,
                    "json" => true,
                    v => die(&format!("--payload: random or json, not {v:?}")),
                }
            }
            "--deflate" => o.deflate = true,
            "--threads" => o.threads = count(value()),
            "--open-at-once" => o.open_at_once = count(value()),
            "--timeout" => o.timeout = secs(value()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            _ if flag.starts_with('-') => die(&format!("unknown option {flag}")),
            _ if o.url.is_empty() => o.url = arg,
            _ => die("more than one URL"),
        }
    }
    if o.url.is_empty() {
        die("no --url");
    }
    o.threads = o.threads.min(o.conns);
    o
}

/// xorshift64*: masking keys, handshake keys and fillers. Not cryptographic;
/// a benchmark on loopback needs no more.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, never 0
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn mask(&mut self) -> [u8; 4] {
        (self.next() as u32).to_ne_bytes()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Connect,
    Closed,
    Protocol,
    Mismatch,
    Stalled,
}
const KINDS: [(Kind, &str); 5] = [
    (Kind::Connect, "connect"),
    (Kind::Closed, "closed"),
    (Kind::Protocol, "protocol"),
    (Kind::Mismatch, "mismatch"),
    (Kind::Stalled, "stalled"),
];

struct Stats {
    hist: Histogram<u64>,
    completed: u64,
    open: u64,
    errors: [u64; 5],
    /// The first few error messages, for stderr.
    notes: Vec<String>,
    cpu_secs: Option<f64>,
    /// permessage-deflate: bytes sent before / after deflating, bytes
    /// received after / before inflating (all connections, whole run).
    tx: (u64, u64),
    rx: (u64, u64),
}

impl Stats {
    fn new() -> Stats {
        Stats {
            hist: Histogram::new_with_bounds(1, 120_000_000_000, 3)
                .unwrap_or_else(|e| die(&format!("histogram: {e}"))),
            completed: 0,
            open: 0,
            errors: [0; 5],
            notes: Vec::new(),
            cpu_secs: None,
            tx: (0, 0),
            rx: (0, 0),
        }
    }
    fn error(&mut self, kind: Kind, conn: usize, msg: String) {
        self.errors[kind as usize] += 1;
        if self.notes.len() < 8 {
            self.notes.push(format!("conn {conn}: {msg}"));
        }
    }
    fn merge(&mut self, o: Stats) {
        let _ = self.hist.add(&o.hist);
        self.completed += o.completed;
        self.open += o.open;
        for i in 0..self.errors.len() {
            self.errors[i] += o.errors[i];
        }
        self.notes.extend(o.notes);
        self.cpu_secs = self.cpu_secs.or(o.cpu_secs);
        self.tx = (self.tx.0 + o.tx.0, self.tx.1 + o.tx.1);
        self.rx = (self.rx.0 + o.rx.0, self.rx.1 + o.rx.1);
    }
}

struct Fail(Kind, String);

/// One open WebSocket connection and its bookkeeping.
struct Conn {
    id: usize,
    stream: TcpStream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// The message size.
    size: usize,
    /// `--payload random`: this connection's payload, SEQ_DIGITS sequence
    /// digits, then a filler. Empty with `--payload json`.
    payload: Vec<u8>,
    /// `--payload json`: the numbers of the messages; copies of the messages
    /// in flight, oldest first; spare buffers for the next ones.
    json: Option<Rng>,
    sent: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    /// permessage-deflate, when negotiated.
    codec: Option<deflate::Codec>,
    /// Messages sent and not back yet: sequence number, time sent.
    outstanding: VecDeque<(u64, Instant)>,
    next_seq: u64,
    /// A fragmented message being reassembled: its opcode, whether it is
    /// compressed (RSV1 on its first frame), its bytes so far.
    frag: Option<(u8, bool, Vec<u8>)>,
    rng: Rng,
}

fn seq_digits(seq: u64, out: &mut [u8]) {
    let mut s = seq;
    for b in out.iter_mut().take(SEQ_DIGITS) {
        *b = 0x21 + (s % 94) as u8;
        s /= 94;
    }
}

fn max_frame(size: usize) -> usize {
    size.max(64 * 1024) * 2
}

/// Writes message `seq` as JSON text of exactly `size` bytes into `out`:
/// `{"seq":"00000042","items":[` (the sequence number's last 8 decimal
/// digits), as many objects like `{"id":4711,"name":"user-4711","tags":
/// ["a","b"],"active":true}` as fit, with numbers, tags and flags drawn from
/// `rng`, then spaces and `]}`. Under 29 bytes, that skeleton cut short.
fn json_message(out: &mut Vec<u8>, size: usize, seq: u64, rng: &mut Rng) {
    const TAGS: [&[u8]; 4] = [b"[\"a\",\"b\"]", b"[\"a\"]", b"[]", b"[\"b\",\"c\",\"d\"]"];
    fn num(out: &mut Vec<u8>, mut n: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&d[i..]);
    }
    out.clear();
    out.extend_from_slice(b"{\"seq\":\"");
    let mut s = seq % 100_000_000;
    let at = out.len();
    out.extend_from_slice(b"00000000");
    for b in out[at..].iter_mut().rev() {
        *b = b'0' + (s % 10) as u8;
        s /= 10;
    }
    out.extend_from_slice(b"\",\"items\":[");
    let mut first = true;
    while out.len() + 2 < size {
        let mark = out.len();
        let r = rng.next();
        let id = (r >> 8) % 100_000;
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        num(out, id);
        out.extend_from_slice(b",\"name\":\"user-");
        num(out, id);
        out.extend_from_slice(b"\",\"tags\":");
        out.extend_from_slice(TAGS[(r & 3) as usize]);
        out.extend_from_slice(if r & 4 != 0 {
            b",\"active\":true}"
        } else {
            b",\"active\":false}"
        });
        if out.len() + 2 > size {
            out.truncate(mark);
            break;
        }
        first = false;
    }
    if out.len() + 2 <= size {
        out.resize(size - 2, b' ');
    }
    out.extend_from_slice(b"]}");
    out.truncate(size);
}

impl Conn {
    fn send_message(&mut self, opcode: u8, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let msg: &[u8] = match self.json.as_mut() {
            Some(rng) => {
                let mut b = self.spare.pop().unwrap_or_default();
                json_message(&mut b, self.size, seq, rng);
                self.sent.push_back(b);
                self.sent.back().map_or(&[], |b| b.as_slice())
            }
            None => {
                seq_digits(seq, &mut self.payload);
                &self.payload
            }
        };
        let mask = self.rng.mask();
        match self.codec.as_mut() {
            Some(c) => {
                c.deflate(msg);
                ws::put_frame_rsv1(&mut self.wbuf, opcode, true, &c.deflated, mask);
            }
            None => ws::put_frame(&mut self.wbuf, opcode, msg, mask),
        }
        self.outstanding.push_back((seq, now));
    }

    /// Handles the complete frames in the read buffer.
    fn on_read(
        &mut self,
        opcode_sent: u8,
        now: Instant,
        window: (Instant, Instant),
        stats: &RefCell<Stats>,
    ) -> Result<(), Fail> {
        let max = max_frame(self.size);
        loop {
            let avail = &self.rbuf[self.rpos..];
            let h = match ws::parse_head(avail, max, self.codec.is_some()) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(Fail(Kind::Protocol, e)),
            };
            if avail.len() < h.header_len + h.payload_len {
                break;
            }
            let start = self.rpos + h.header_len;
            let end = start + h.payload_len;
            self.rpos = end;
            let data = &self.rbuf[start..end];
            let message: Option<(u8, bool, &[u8])> = match (h.opcode, self.frag.as_mut()) {
                (OP_PING, _) => {
                    let mask = self.rng.mask();
                    ws::put_frame(&mut self.wbuf, OP_PONG, data, mask);
                    None
                }
                (OP_PONG, _) => None,
                (OP_CLOSE, _) => {
                    let code = if data.len() >= 2 {
                        u16::from_be_bytes([data[0], data[1]])
                    } else {
                        1005
                    };
                    let reason = String::from_utf8_lossy(data.get(2..).unwrap_or(&[]));
                    return Err(Fail(
                        Kind::Closed,
                        format!("the server sent close {code} {reason:?}"),
                    ));
                }
                (OP_TEXT | OP_BINARY, Some(_)) => {
                    return Err(Fail(
                        Kind::Protocol,
                        "a new message inside a fragmented one".into(),
                    ));
                }
                (OP_TEXT | OP_BINARY, None) if h.fin => Some((h.opcode, h.rsv1, data)),
                (OP_TEXT | OP_BINARY, None) => {
                    self.frag = Some((h.opcode, h.rsv1, data.to_vec()));
                    None
                }
                (OP_CONT, None) => {
                    return Err(Fail(
                        Kind::Protocol,
                        "a continuation frame outside a message".into(),
                    ));
                }
                (OP_CONT, Some((_, _, buf))) => {
                    buf.extend_from_slice(data);
                    if buf.len() > max {
                        return Err(Fail(
                            Kind::Mismatch,
                            format!("a fragmented message over {max} bytes"),
                        ));
                    }
                    None
                }
                (op, _) => return Err(Fail(Kind::Protocol, format!("reserved opcode {op:#x}"))), // parse_head refuses these
            };
            // The last frame of a fragmented message completes it.
            let frag_done = if message.is_none() && h.opcode == OP_CONT && h.fin {
                self.frag.take()
            } else {
                None
            };
            let message =
                message.or_else(|| frag_done.as_ref().map(|(op, z, b)| (*op, *z, b.as_slice())));
            if let Some((opcode, compressed, got)) = message {
                let got = match (compressed, self.codec.as_mut()) {
                    (true, Some(c)) => {
                        c.inflate(got, max)
                            .map_err(|e| Fail(Kind::Protocol, format!("an echo: {e}")))?;
                        c.inflated.as_slice()
                    }
                    (true, None) => {
                        return Err(Fail(Kind::Protocol, "RSV1 without deflate".into()));
                    }
                    (false, Some(c)) => {
                        // Uncompressed (allowed), counted as it is.
                        c.rx.0 += got.len() as u64;
                        c.rx.1 += got.len() as u64;
                        got
                    }
                    (false, None) => got,
                };
                let Some((seq, sent)) = self.outstanding.pop_front() else {
                    return Err(Fail(
                        Kind::Mismatch,
                        format!("an unsolicited {}-byte message", got.len()),
                    ));
                };
                let checked = if self.json.is_some() {
                    let want = self.sent.pop_front().unwrap_or_default();
                    let r = check_bytes(&want, opcode_sent, opcode, got);
                    self.spare.push(want);
                    r
                } else {
                    check_echo(&self.payload, seq, opcode_sent, opcode, got)
                };
                checked.map_err(|e| Fail(Kind::Mismatch, format!("message {seq}: {e}")))?;
                if now >= window.0 && now < window.1 {
                    let mut s = stats.borrow_mut();
                    s.completed += 1;
                    s.hist
                        .saturating_record((now - sent).as_nanos().max(1) as u64);
                }
            }
        }
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        } else if self.rpos > 0 && self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        Ok(())
    }
}

/// Is `got` (with `opcode`) the echo of message `seq` of the connection whose
/// payload template is `payload` (sent as `opcode_sent`)?
fn check_echo(
    payload: &[u8],
    seq: u64,
    opcode_sent: u8,
    opcode: u8,
    got: &[u8],
) -> Result<(), String> {
    if opcode != opcode_sent {
        return Err(format!(
            "came back with opcode {opcode}, sent with {opcode_sent}"
        ));
    }
    if got.len() != payload.len() {
        return Err(format!(
            "came back with {} bytes, sent {}",
            got.len(),
            payload.len()
        ));
    }
    let n = payload.len().min(SEQ_DIGITS);
    let mut head = [0u8; SEQ_DIGITS];
    seq_digits(seq, &mut head);
    if got[..n] != head[..n] || got[n..] != payload[n..] {
        let at = (0..n)
            .find(|&i| got[i] != head[i])
            .or_else(|| (n..got.len()).find(|&i| got[i] != payload[i]))
            .unwrap_or(0);
        return Err(format!("came back different from byte {at} on"));
    }
    Ok(())
}

/// Is `got` (with `opcode`) the echo of `want` (sent as `opcode_sent`)?
fn check_bytes(want: &[u8], opcode_sent: u8, opcode: u8, got: &[u8]) -> Result<(), String> {
    if opcode != opcode_sent {
        return Err(format!(
            "came back with opcode {opcode}, sent with {opcode_sent}"
        ));
    }
    if got.len() != want.len() {
        return Err(format!(
            "came back with {} bytes, sent {}",
            got.len(),
            want.len()
        ));
    }
    if got != want {
        let at = (0..got.len()).find(|&i| got[i] != want[i]).unwrap_or(0);
        return Err(format!("came back different from byte {at} on"));
    }
    Ok(())
}

async fn open(
    id: usize,
    addr: SocketAddr,
    target: &ws::Target,
    o: &Opts,
    rng: &mut Rng,
) -> Result<Conn, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&rng.next().to_ne_bytes());
    key[8..].copy_from_slice(&rng.next().to_ne_bytes());
    let mut rbuf = Vec::with_capacity(16 * 1024);
    let deflate = ws::handshake(
        &mut stream,
        target,
        o.protocol.as_deref(),
        o.deflate,
        key,
        &mut rbuf,
    )
    .await?;
    // A per-connection filler after the sequence digits, or the numbers of
    // the JSON messages.
    let mut fill = Rng::new(rng.next() ^ id as u64);
    let (payload, json) = if o.json {
        (Vec::new(), Some(fill))
    } else {
        let payload = (0..o.size)
            .map(|_| 0x21 + (fill.next() % 94) as u8)
            .collect();
        (payload, None)
    };
    Ok(Conn {
        id,
        stream,
        rbuf,
        rpos: 0,
        wbuf: Vec::with_capacity(o.inflight * (o.size + 14) + 256),
        wpos: 0,
        size: o.size,
        payload,
        json,
        sent: VecDeque::new(),
        spare: Vec::new(),
        codec: deflate.map(deflate::Codec::new),
        outstanding: VecDeque::with_capacity(o.inflight),
        next_seq: 0,
        frag: None,
        rng: Rng::new(rng.next()),
    })
}

enum Event {
    Wrote(std::io::Result<usize>),
    Read(std::io::Result<usize>),
    End,
}

/// The measured run of one connection, then its close.
async fn run(mut c: Conn, o: Rc<Opts>, stats: Rc<RefCell<Stats>>, window: (Instant, Instant)) {
    let opcode = if o.binary { OP_BINARY } else { OP_TEXT };
    let end = window.1;
    let deadline = sleep_until(end);
    tokio::pin!(deadline);
    let result: Result<(), Fail> = async {
        loop {
            if c.outstanding.len() < o.inflight {
                let now = Instant::now();
                if now >= end {
                    return Ok(()); // no new message after the end
                }
                while c.outstanding.len() < o.inflight {
                    c.send_message(opcode, now);
                }
            }
            if c.rbuf.capacity() - c.rbuf.len() < 4096 {
                c.rbuf.reserve(16 * 1024);
            }
            let ev = {
                let (mut rd, mut wr) = c.stream.split();
                let pending = &c.wbuf[c.wpos..];
                tokio::select! {
                    biased;
                    r = wr.write(pending), if !pending.is_empty() => Event::Wrote(r),
                    r = rd.read_buf(&mut c.rbuf) => Event::Read(r),
                    _ = &mut deadline => Event::End,
                }
            };
            match ev {
                Event::Wrote(Ok(0)) => return Err(Fail(Kind::Closed, "write returned 0".into())),
                Event::Wrote(Ok(n)) => {
                    c.wpos += n;
                    if c.wpos == c.wbuf.len() {
                        c.wbuf.clear();
                        c.wpos = 0;
                    }
                }
                Event::Wrote(Err(e)) => return Err(Fail(Kind::Closed, format!("write: {e}"))),
                Event::Read(Ok(0)) => {
                    return Err(Fail(
                        Kind::Closed,
                        "the server closed the TCP connection".into(),
                    ));
                }
                Event::Read(Ok(_)) => c.on_read(opcode, Instant::now(), window, &stats)?,
                Event::Read(Err(e)) => return Err(Fail(Kind::Closed, format!("read: {e}"))),
                Event::End => return Ok(()),
            }
        }
    }
    .await;
    if let Some(codec) = &c.codec {
        let mut s = stats.borrow_mut();
        s.tx = (s.tx.0 + codec.tx.0, s.tx.1 + codec.tx.1);
        s.rx = (s.rx.0 + codec.rx.0, s.rx.1 + codec.rx.1);
    }
    if let Err(Fail(kind, msg)) = result {
        stats.borrow_mut().error(kind, c.id, msg);
        return;
    }
    if let Some(&(seq, sent)) = c.outstanding.front() {
        let late = end.saturating_duration_since(sent);
        if late.as_secs_f64() > o.timeout {
            stats.borrow_mut().error(
                Kind::Stalled,
                c.id,
                format!("message {seq} not back after {:.1} s", late.as_secs_f64()),
            );
        }
    }
    // Let the echoes still in flight come back (up to 1 s, not counted), so
    // the server is not closed on in the middle of its reply; then the close
    // handshake: send close 1000, wait for the server's close (skipping
    // anything before it). Failures here are not counted.
    let drained = timeout(Duration::from_secs(1), async {
        while !c.outstanding.is_empty() {
            if c.wpos < c.wbuf.len() {
                c.stream
                    .write_all(&c.wbuf[c.wpos..])
                    .await
                    .map_err(|_| ())?;
                c.wbuf.clear();
                c.wpos = 0;
            }
            c.rbuf.reserve(16 * 1024);
            if c.stream.read_buf(&mut c.rbuf).await.map_err(|_| ())? == 0 {
                return Err(());
            }
            c.on_read(opcode, Instant::now(), window, &stats)
                .map_err(|_| ())?;
        }
        Ok(())
    })
    .await;
    if !matches!(drained, Ok(Ok(()))) {
        return;
    }
    let mask = c.rng.mask();
    ws::put_frame(&mut c.wbuf, OP_CLOSE, &1000u16.to_be_bytes(), mask);
    let _ = timeout(Duration::from_secs(2), async {
        c.stream.write_all(&c.wbuf[c.wpos..]).await?;
        loop {
            loop {
                match ws::parse_head(&c.rbuf[c.rpos..], max_frame(c.size), c.codec.is_some()) {
                    Ok(Some(h)) if c.rbuf.len() - c.rpos >= h.header_len + h.payload_len => {
                        if h.opcode == OP_CLOSE {
                            return Ok(());
                        }
                        c.rpos += h.header_len + h.payload_len;
                    }
                    Ok(_) => break,
                    Err(_) => return Ok(()),
                }
            }
            c.rbuf.drain(..c.rpos);
            c.rpos = 0;
            c.rbuf.reserve(16 * 1024);
            if c.stream.read_buf(&mut c.rbuf).await? == 0 {
                return Ok(());
            }
        }
    })
    .await
    .unwrap_or(Ok::<(), std::io::Error>(()));
}

fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we pass; a zeroed rusage is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the soft RLIMIT_NOFILE to `need` if it is lower (and the hard
/// limit too when allowed); returns the soft limit in force.
fn raise_nofile(need: u64) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 || rl.rlim_cur >= need {
            return rl.rlim_cur;
        }
        let want = libc::rlimit {
            rlim_cur: need,
            rlim_max: rl.rlim_max.max(need),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return need;
        }
        let best = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &best) == 0 {
            return rl.rlim_max;
        }
        rl.rlim_cur
    }
}

struct Shared {
    opts: Arc<Opts>,
    addr: SocketAddr,
    target: Arc<ws::Target>,
    barrier: Arc<Barrier>,
    t0: Arc<OnceLock<Instant>>,
    /// Connections open over all threads, known after the barrier.
    open: Arc<AtomicUsize>,
    seed: u64,
}

fn thread_main(t: usize, sh: Shared) -> Stats {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("tokio runtime: {e}")));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let o = Rc::new((*sh.opts).clone());
        let stats = Rc::new(RefCell::new(Stats::new()));
        // Pace the opening: at most open_at_once handshakes in flight overall.
        let sem = Rc::new(Semaphore::new((o.open_at_once / o.threads).max(1)));
        let mut opening = Vec::new();
        for id in (t..o.conns).step_by(o.threads) {
            let (o, sem, target, addr) = (o.clone(), sem.clone(), sh.target.clone(), sh.addr);
            let mut rng = Rng::new(sh.seed ^ (id as u64).wrapping_mul(0x1000_0001));
            opening.push((
                id,
                tokio::task::spawn_local(async move {
                    let _permit = sem.acquire().await;
                    match timeout(
                        Duration::from_secs_f64(o.timeout),
                        open(id, addr, &target, &o, &mut rng),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(format!("connect + handshake took over {} s", o.timeout)),
                    }
                }),
            ));
        }
        let mut conns = Vec::new();
        for (id, h) in opening {
            match h.await {
                Ok(Ok(c)) => conns.push(c),
                Ok(Err(e)) => stats.borrow_mut().error(Kind::Connect, id, e),
                Err(e) => stats
                    .borrow_mut()
                    .error(Kind::Connect, id, format!("task: {e}")),
            }
        }
        stats.borrow_mut().open = conns.len() as u64;
        sh.open.fetch_add(conns.len(), Ordering::SeqCst);
        sh.barrier.wait().await;
        if sh.open.load(Ordering::SeqCst) == 0 {
            return stats.replace(Stats::new()); // nothing to measure
        }
        let t0 = *sh.t0.get_or_init(Instant::now);
        let warm_end = t0 + Duration::from_secs_f64(o.warmup);
        let end = warm_end + Duration::from_secs_f64(o.duration);
        let cpu = (t == 0).then(|| {
            tokio::task::spawn_local(async move {
                sleep_until(warm_end).await;
                let c0 = cpu_secs();
                sleep_until(end).await;
                cpu_secs() - c0
            })
        });
        let runs: Vec<_> = conns
            .into_iter()
            .map(|c| tokio::task::spawn_local(run(c, o.clone(), stats.clone(), (warm_end, end))))
            .collect();
        for r in runs {
            let _ = r.await;
        }
        if let Some(cpu) = cpu {
            stats.borrow_mut().cpu_secs = cpu.await.ok();
        }
        stats.replace(Stats::new())
    })
}

fn main() {
    let o = Arc::new(parse_opts());
    let target = ws::Target::parse(&o.url).unwrap_or_else(|e| die(&e));
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| die(&format!("cannot resolve {}", target.host)));
    let need = o.conns as u64 + 64;
    let limit = raise_nofile(need);
    if limit < need {
        eprintln!(
            "wsecho: RLIMIT_NOFILE is {limit}, {need} wanted for {} connections: some will fail",
            o.conns
        );
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ ((std::process::id() as u64) << 40);
    let target = Arc::new(target);
    let barrier = Arc::new(Barrier::new(o.threads));
    let t0 = Arc::new(OnceLock::new());
    let open = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..o.threads)
        .map(|t| {
            let sh = Shared {
                opts: o.clone(),
                addr,
                target: target.clone(),
                barrier: barrier.clone(),
                t0: t0.clone(),
                open: open.clone(),
                seed,
            };
            std::thread::spawn(move || thread_main(t, sh))
        })
        .collect();
    let mut total = Stats::new();
    for h in handles {
        match h.join() {
            Ok(s) => total.merge(s),
            Err(_) => die("a client thread panicked"),
        }
    }
    for n in &total.notes {
        eprintln!("wsecho: {n}");
    }
    let errors: u64 = total.errors.iter().sum();
    let rate = if o.duration > 0.0 {
        total.completed as f64 / o.duration
    } else {
        0.0
    };
    let q = |p: f64| {
        if total.hist.is_empty() {
            0.0
        } else {
            total.hist.value_at_quantile(p) as f64 / 1000.0
        }
    };
    let (p50, p99, p999, max) = (
        q(0.5),
        q(0.99),
        q(0.999),
        if total.hist.is_empty() {
            0.0
        } else {
            total.hist.max() as f64 / 1000.0
        },
    );
    let cpu = total.cpu_secs.map(|c| {
        if o.duration > 0.0 {
            c / o.duration
        } else {
            0.0
        }
    });
    let breakdown: Vec<String> = KINDS
        .iter()
        .map(|(k, name)| format!("{name} {}", total.errors[*k as usize]))
        .collect();
    let ratio = |(plain, packed): (u64, u64)| {
        if plain == 0 {
            0.0
        } else {
            packed as f64 / plain as f64
        }
    };
    let (tx_ratio, rx_ratio) = (ratio(total.tx), ratio(total.rx));
    println!(
        "wsecho {}  {} conns ({} open)  {} B {}{}{}  inflight {}  {} s after {} s warm-up: {:.0} msg/s  rtt p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us  errors {} ({})  client cpu {}",
        o.url,
        o.conns,
        total.open,
        o.size,
        if o.binary { "binary" } else { "text" },
        if o.json { " json" } else { "" },
        if o.deflate {
            format!(" deflated (sent {tx_ratio:.3}, echoes {rx_ratio:.3} of their size)")
        } else {
            String::new()
        },
        o.inflight,
        o.duration,
        o.warmup,
        rate,
        p50,
        p99,
        p999,
        max,
        errors,
        breakdown.join(", "),
        cpu.map_or("-".into(), |c| format!("{c:.2}")),
    );
    println!(
        "wsecho conns={} size={} msgs_per_s={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} errors={} inflight={} secs={} open={} client_cpu={}{}{}",
        o.conns,
        o.size,
        rate,
        p50,
        p99,
        p999,
        errors,
        o.inflight,
        o.duration,
        total.open,
        cpu.map_or("-".into(), |c| format!("{c:.2}")),
        if o.json { " payload=json" } else { "" },
        if o.deflate {
            format!(" deflate=1 tx_ratio={tx_ratio:.3} rx_ratio={rx_ratio:.3}")
        } else {
            String::new()
        },
    );
    if total.open == 0 {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_messages() {
        let mut rng = Rng::new(1);
        let mut out = Vec::new();
        for size in (1..200).chain([1000, 1023, 1024, 1025, 4096, 65536]) {
            for seq in [0, 42, 99_999_999, 123_456_789] {
                json_message(&mut out, size, seq, &mut rng);
                assert_eq!(out.len(), size);
                assert!(out.iter().all(|b| (0x20..0x7f).contains(b)));
                if size >= 29 {
                    let seq8 = format!("{:08}", seq % 100_000_000);
                    assert!(
                        out.starts_with(format!("{{\"seq\":\"{seq8}\",\"items\":[").as_bytes())
                    );
                    assert!(out.ends_with(b"]}"));
                }
            }
        }
        // Enough objects, and not the same message twice.
        json_message(&mut out, 1024, 7, &mut rng);
        let a = out.clone();
        assert!(String::from_utf8_lossy(&a).matches("\"active\":").count() >= 14);
        json_message(&mut out, 1024, 7, &mut rng);
        assert_ne!(a, out);
    }

    #[test]
    fn checks() {
        assert!(check_bytes(b"abc", OP_TEXT, OP_TEXT, b"abc").is_ok());
        assert!(check_bytes(b"abc", OP_TEXT, OP_BINARY, b"abc").is_err());
        assert!(check_bytes(b"abc", OP_TEXT, OP_TEXT, b"abd").is_err());
        assert!(check_bytes(b"abc", OP_TEXT, OP_TEXT, b"ab").is_err());
    }
}
