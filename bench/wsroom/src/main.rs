//! wsroom: WebSocket broadcast-room load generator for `lws-mirror-protocol`.
//!
//! Opens `--conns` connections, spread round-robin over the `--url`s (one
//! per lwsws instance), all in the same mirror room (`?mirror=NAME`, from
//! `--room`, default `bench`), asking for the subprotocol
//! `lws-mirror-protocol`. Every message a member sends reaches every member
//! of the room, the sender included, on every instance (through Redis when
//! the instances share `ws-broadcast`).
//!
//! Each connection keeps exactly one message in flight: it sends a binary
//! message of `--size` bytes whose first 20 bytes are its connection id (u32),
//! a sequence number (u64) and the send time in nanoseconds since wsroom
//! started (u64), all little-endian, the rest a per-connection filler; when
//! that message comes back to it through the room it sends the next one. So
//! every member receives the messages of all members: deliveries/s is about
//! conns × sends/s.
//!
//! Phases:
//! - connect: at most `--open-at-once` handshakes at once, each within 5 s;
//! - SYNC: the connections run until every one has received a message from
//!   a connection on every other URL (the instances' rooms really are
//!   linked), or the run fails after `--sync-timeout` (10 s);
//! - `--warmup` seconds not measured, then `--duration` seconds measured:
//!   every delivery received inside that window is counted, and its latency
//!   (receive time − the send time in the message) recorded; deliveries that
//!   crossed instances (sender's URL ≠ receiver's URL) go into a second
//!   histogram too;
//! - drain: no new message after the window; each connection's last message
//!   has `--drain` (5 s) to come back to its sender, else it counts as `lost`,
//!   and every message sent since SYNC ended has that long to reach every
//!   member, else it counts as `missing`; then every connection sends close
//!   1000 and waits up to 1 s for the server's.
//!
//! Checked on every delivery, over the whole run: the size, the sender id;
//! per sender and receiver, the sequence numbers must increase (else
//! `order_errors`), and no (sender, seq) may arrive twice (`dup_errors`;
//! told apart from reordering within the last 64 sequence numbers of each
//! sender). `gaps` counts messages missing between two a receiver did get
//! from one sender (counting starts with the first message a receiver gets
//! from that sender, so messages before another instance subscribed are not
//! gaps); `missing` the messages sent after SYNC that never reached a member
//! after the last one it got from that sender (a room cut off halfway, say
//! when Redis drops messages or the link is lost). Connections that failed
//! are left out of both. `closed` counts connections the server closed or
//! reset, `bad` deliveries that are not ours (wrong size, unknown sender,
//! text) and protocol errors, `connect_errors` connections that did not
//! open.
//!
//! `--srv-session NAME=SID` (repeatable): the CPU time (user + system) of
//! every process of session SID is sampled at the window's start and end
//! (from /proc), reported as `srv_cpu` (sum, in cores) and `srv_cpu_each`.
//!
//! Output: a human-readable line, then a machine-readable one:
//! `wsroom conns=N urls=U size=B deliveries_per_s=X p50_us= p99_us=
//! p999_us= cross_p99_us= order_errors= dup_errors= lost=` followed by
//! `gaps= missing= closed= bad= connect_errors= open= secs= sync_s=
//! sends_per_s= client_cpu=
//! [srv_cpu= srv_cpu_each=]`. `cross_p99_us` is `-` with one URL. Exit
//! status 1 when no connection opened or SYNC failed, 2 for bad usage.

mod ws;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, sleep_until, timeout};

use ws::{OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT};

const USAGE: &str = "\
usage: wsroom --url ws://HOST:PORT/ [--url ws://HOST2:PORT2/ ...] [options]
  --url URL            an lwsws serving lws-mirror-protocol (plain ws://);
                       repeat it for several instances sharing rooms
  --conns N            connections, spread round-robin over the URLs (64)
  --size BYTES         message size, at least 20; k/m suffixes allowed (64)
  --duration SECS      measured seconds (5)
  --warmup SECS        unmeasured seconds after SYNC (1)
  --room NAME          the mirror instance (?mirror=NAME) (bench)
  --sync-timeout SECS  longest wait for every connection to hear from every
                       other URL (10)
  --drain SECS         how long the last messages may take to come back (5)
  --open-at-once N     handshakes in flight at once while connecting (100)
  --srv-session NAME=SID  report the CPU share of the processes of session
                       SID over the window (repeatable)";

const PROTOCOL: &str = "lws-mirror-protocol";
/// Connection id (u32), sequence number (u64), send time (u64, ns).
const HEADER: usize = 20;
/// Connect + handshake limit per connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Opts {
    urls: Vec<String>,
    conns: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    room: String,
    sync_timeout: f64,
    drain: f64,
    open_at_once: usize,
    sessions: Vec<(String, i32)>,
}

fn die(msg: &str) -> ! {
    eprintln!("wsroom: {msg}\n{USAGE}");
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        urls: Vec::new(),
        conns: 64,
        size: 64,
        duration: 5.0,
        warmup: 1.0,
        room: "bench".into(),
        sync_timeout: 10.0,
        drain: 5.0,
        open_at_once: 100,
        sessions: Vec::new(),
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
            "--url" => o.urls.push(value()),
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
            "--duration" => o.duration = secs(value()),
            "--warmup" => o.warmup = secs(value()),
            "--room" => o.room = value(),
            "--sync-timeout" => o.sync_timeout = secs(value()),
            "--drain" => o.drain = secs(value()),
            "--open-at-once" => o.open_at_once = count(value()),
            "--srv-session" => {
                let v = value();
                let parsed = v
                    .split_once('=')
                    .and_then(|(n, s)| Some((n.to_string(), s.parse::<i32>().ok()?)));
                match parsed {
                    Some((n, s)) if !n.is_empty() && s > 0 => o.sessions.push((n, s)),
                    _ => die(&format!("--srv-session: NAME=SID, not {v:?}")),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            _ if flag.starts_with('-') => die(&format!("unknown option {flag}")),
            _ => o.urls.push(arg),
        }
    }
    if o.urls.is_empty() {
        die("no --url");
    }
    if o.urls.len() > 64 {
        die("at most 64 URLs");
    }
    if o.size < HEADER {
        die(&format!("--size: at least {HEADER} bytes"));
    }
    if o.conns > u32::MAX as usize {
        die("--conns: too many");
    }
    o
}

/// `url` with `mirror=ROOM` added to its query.
fn room_url(url: &str, room: &str) -> String {
    let mut enc = String::new();
    for b in room.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    let base = url.split('#').next().unwrap_or("");
    let sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else if base.split_once("://").is_some_and(|(_, r)| r.contains('/')) {
        "?"
    } else {
        "/?"
    };
    format!("{base}{sep}mirror={enc}")
}

/// xorshift64*: masking keys, handshake keys and fillers.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Sending; SYNC, warm-up and the measured window.
    Run,
    /// After the window: no new messages, the last ones come back.
    Drain,
    /// Close the connections.
    Close,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3)
        .unwrap_or_else(|e| die(&format!("histogram: {e}")))
}

struct Stats {
    /// Delivery latency (ns) of every delivery in the window; of those that
    /// crossed instances.
    hist: Histogram<u64>,
    cross: Histogram<u64>,
    deliveries: u64,
    /// Messages sent in the window.
    sends: u64,
    order_errors: u64,
    dup_errors: u64,
    gaps: u64,
    closed: u64,
    bad: u64,
    connect_errors: u64,
    /// The first few error messages, for stderr.
    notes: Vec<String>,
}

impl Stats {
    fn note(&mut self, msg: String) {
        if self.notes.len() < 8 {
            self.notes.push(msg);
        }
    }
}

/// What every connection task and the coordinator share (one thread).
struct Shared {
    start: std::time::Instant,
    conns: usize,
    urls: usize,
    size: usize,
    /// The measured window, once SYNC is over.
    window: Cell<Option<(Instant, Instant)>>,
    /// Connections still running, synced, with a message in flight.
    alive: Cell<usize>,
    synced: Cell<usize>,
    inflight: Cell<usize>,
    /// Wakes the coordinator waiting for SYNC: a connection synced or died.
    wake: Notify,
    stats: RefCell<Stats>,
    /// What receiver r knows of sender s, at `r * conns + s`.
    seen: RefCell<Vec<Seen>>,
    /// Per connection: the sequence number of its next message; whether it
    /// still runs; its next sequence number when SYNC ended (empty before).
    next_seq: Vec<Cell<u64>>,
    live: Vec<Cell<bool>>,
    base: RefCell<Vec<u64>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    fn check_sync(&self) {
        if self.synced.get() >= self.alive.get() {
            self.wake.notify_one();
        }
    }
    fn in_window(&self, t: Instant) -> bool {
        self.window.get().is_some_and(|(a, b)| t >= a && t < b)
    }
    /// Deliveries still due: for every pair of live connections, the
    /// messages the sender sent since SYNC after the last one the receiver
    /// got from it.
    fn missing(&self) -> u64 {
        let base = self.base.borrow();
        if base.is_empty() {
            return 0;
        }
        let seen = self.seen.borrow();
        let mut n = 0;
        for r in (0..self.conns).filter(|&r| self.live[r].get()) {
            for s in (0..self.conns).filter(|&s| self.live[s].get()) {
                let x = seen[r * self.conns + s];
                let from = if x.any {
                    (x.max + 1).max(base[s])
                } else {
                    base[s]
                };
                n += self.next_seq[s].get().saturating_sub(from);
            }
        }
        n
    }
}

/// What a receiver knows of one sender: whether it has heard from it, the
/// highest sequence number so far, and which of the 64 up to it arrived.
#[derive(Clone, Copy, Default)]
struct Seen {
    any: bool,
    max: u64,
    mask: u64,
}

/// Records (sender's) `seq` in `s`; counts into `st`.
fn see(s: &mut Seen, seq: u64, st: &mut Stats) {
    if !s.any {
        *s = Seen {
            any: true,
            max: seq,
            mask: 1,
        };
    } else if seq > s.max {
        let d = seq - s.max;
        st.gaps += d - 1;
        s.mask = if d >= 64 { 0 } else { s.mask << d };
        s.mask |= 1;
        s.max = seq;
    } else {
        let d = s.max - seq;
        if d < 64 && s.mask & (1 << d) != 0 {
            st.dup_errors += 1;
        } else {
            st.order_errors += 1;
            if d < 64 {
                s.mask |= 1 << d;
                // It was counted missing when a later one came first.
                st.gaps = st.gaps.saturating_sub(1);
            }
        }
    }
}

struct Fail(bool, String);

/// One open connection.
struct Conn {
    id: u32,
    url_idx: usize,
    stream: TcpStream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// The message template: header space, then this connection's filler.
    payload: Vec<u8>,
    next_seq: u64,
    /// The sequence number of the message in flight.
    outstanding: Option<u64>,
    /// URL indexes heard from, and whether SYNC is done for this connection.
    heard: u64,
    synced: bool,
    frag: Option<(u8, Vec<u8>)>,
    rng: Rng,
}

impl Conn {
    fn send(&mut self, sh: &Shared, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        sh.next_seq[self.id as usize].set(self.next_seq);
        self.payload[0..4].copy_from_slice(&self.id.to_le_bytes());
        self.payload[4..12].copy_from_slice(&seq.to_le_bytes());
        self.payload[12..20].copy_from_slice(&sh.now_ns().to_le_bytes());
        let mask = self.rng.mask();
        ws::put_frame(&mut self.wbuf, OP_BINARY, &self.payload, mask);
        self.outstanding = Some(seq);
        sh.inflight.set(sh.inflight.get() + 1);
        if sh.in_window(now) {
            sh.stats.borrow_mut().sends += 1;
        }
    }

    /// One delivered message.
    fn deliver(&mut self, sh: &Shared, now: Instant, now_ns: u64, opcode: u8, m: &[u8]) {
        let mut st = sh.stats.borrow_mut();
        if opcode != OP_BINARY || m.len() != sh.size {
            st.bad += 1;
            let msg = format!(
                "conn {}: a {}-byte {} message (sent {}-byte binary ones)",
                self.id,
                m.len(),
                if opcode == OP_TEXT { "text" } else { "binary" },
                sh.size
            );
            st.note(msg);
            return;
        }
        let id = u32::from_le_bytes(m[0..4].try_into().unwrap_or_default()) as usize;
        let seq = u64::from_le_bytes(m[4..12].try_into().unwrap_or_default());
        let sent = u64::from_le_bytes(m[12..20].try_into().unwrap_or_default());
        if id >= sh.conns {
            st.bad += 1;
            let msg = format!("conn {}: a message from unknown sender {id}", self.id);
            st.note(msg);
            return;
        }
        see(
            &mut sh.seen.borrow_mut()[self.id as usize * sh.conns + id],
            seq,
            &mut st,
        );
        let from = id % sh.urls;
        if sh.in_window(now) {
            st.deliveries += 1;
            let lat = now_ns.saturating_sub(sent).max(1);
            st.hist.saturating_record(lat);
            if from != self.url_idx {
                st.cross.saturating_record(lat);
            }
        }
        drop(st);
        if !self.synced {
            if from != self.url_idx {
                self.heard |= 1 << from;
            }
            let want = ((1u128 << sh.urls) - 1) as u64 & !(1 << self.url_idx);
            if self.heard & want == want {
                self.synced = true;
                sh.synced.set(sh.synced.get() + 1);
                sh.check_sync();
            }
        }
        if id == self.id as usize && self.outstanding == Some(seq) {
            self.outstanding = None;
            sh.inflight.set(sh.inflight.get() - 1);
        }
    }

    /// Handles the complete frames in the read buffer.
    fn on_read(&mut self, sh: &Shared, now: Instant) -> Result<(), Fail> {
        let now_ns = sh.now_ns();
        let max = sh.size.max(1024);
        loop {
            let avail = &self.rbuf[self.rpos..];
            let h = match ws::parse_head(avail, max) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(Fail(false, e)),
            };
            if avail.len() < h.header_len + h.payload_len {
                break;
            }
            let start = self.rpos + h.header_len;
            let end = start + h.payload_len;
            self.rpos = end;
            match (h.opcode, self.frag.is_some()) {
                (OP_PING, _) => {
                    let data = self.rbuf[start..end].to_vec();
                    let mask = self.rng.mask();
                    ws::put_frame(&mut self.wbuf, OP_PONG, &data, mask);
                }
                (OP_PONG, _) => {}
                (OP_CLOSE, _) => {
                    let data = &self.rbuf[start..end];
                    let code = if data.len() >= 2 {
                        u16::from_be_bytes([data[0], data[1]])
                    } else {
                        1005
                    };
                    let reason = String::from_utf8_lossy(data.get(2..).unwrap_or(&[]));
                    return Err(Fail(
                        true,
                        format!("the server sent close {code} {reason:?}"),
                    ));
                }
                (OP_TEXT | OP_BINARY, true) => {
                    return Err(Fail(false, "a new message inside a fragmented one".into()));
                }
                (OP_TEXT | OP_BINARY, false) if h.fin => {
                    // Split borrows: the message lives in rbuf.
                    let rbuf = std::mem::take(&mut self.rbuf);
                    self.deliver(sh, now, now_ns, h.opcode, &rbuf[start..end]);
                    self.rbuf = rbuf;
                }
                (OP_TEXT | OP_BINARY, false) => {
                    self.frag = Some((h.opcode, self.rbuf[start..end].to_vec()));
                }
                (OP_CONT, false) => {
                    return Err(Fail(false, "a continuation frame outside a message".into()));
                }
                (OP_CONT, true) => {
                    if let Some((_, buf)) = self.frag.as_mut() {
                        buf.extend_from_slice(&self.rbuf[start..end]);
                        if buf.len() > max {
                            return Err(Fail(false, format!("a message over {max} bytes")));
                        }
                    }
                    if h.fin
                        && let Some((op, buf)) = self.frag.take()
                    {
                        self.deliver(sh, now, now_ns, op, &buf);
                    }
                }
                (op, _) => return Err(Fail(false, format!("reserved opcode {op:#x}"))),
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

enum Event {
    Wrote(std::io::Result<usize>),
    Read(std::io::Result<usize>),
    Phase,
}

/// A connection from SYNC to its close.
async fn run(mut c: Conn, sh: Rc<Shared>, mut phase: watch::Receiver<Phase>) {
    let result: Result<(), Fail> = async {
        loop {
            let ph = *phase.borrow_and_update();
            if ph == Phase::Close {
                return Ok(());
            }
            if c.outstanding.is_none() && ph == Phase::Run {
                let now = Instant::now();
                // No new message once the window is over.
                if sh.window.get().is_none_or(|(_, end)| now < end) {
                    c.send(&sh, now);
                }
            }
            if c.rbuf.capacity() - c.rbuf.len() < 4096 {
                c.rbuf.reserve(64 * 1024);
            }
            let ev = {
                let (mut rd, mut wr) = c.stream.split();
                let pending = &c.wbuf[c.wpos..];
                tokio::select! {
                    biased;
                    r = wr.write(pending), if !pending.is_empty() => Event::Wrote(r),
                    r = rd.read_buf(&mut c.rbuf) => Event::Read(r),
                    _ = phase.changed() => Event::Phase,
                }
            };
            match ev {
                Event::Wrote(Ok(0)) => return Err(Fail(true, "write returned 0".into())),
                Event::Wrote(Ok(n)) => {
                    c.wpos += n;
                    if c.wpos == c.wbuf.len() {
                        c.wbuf.clear();
                        c.wpos = 0;
                    }
                }
                Event::Wrote(Err(e)) => return Err(Fail(true, format!("write: {e}"))),
                Event::Read(Ok(0)) => {
                    return Err(Fail(true, "the server closed the TCP connection".into()));
                }
                Event::Read(Ok(_)) => c.on_read(&sh, Instant::now())?,
                Event::Read(Err(e)) => return Err(Fail(true, format!("read: {e}"))),
                Event::Phase => {}
            }
        }
    }
    .await;
    if let Err(Fail(closed, msg)) = result {
        // This connection is out: it no longer holds up SYNC or the drain.
        let mut st = sh.stats.borrow_mut();
        if closed {
            st.closed += 1;
        } else {
            st.bad += 1;
        }
        st.note(format!("conn {}: {msg}", c.id));
        drop(st);
        sh.alive.set(sh.alive.get() - 1);
        sh.live[c.id as usize].set(false);
        if c.synced {
            sh.synced.set(sh.synced.get() - 1);
        }
        sh.check_sync();
        if c.outstanding.take().is_some() {
            sh.inflight.set(sh.inflight.get() - 1);
        }
        return;
    }
    // The close handshake; whatever arrives before the server's close is
    // skipped. Failures here are not counted.
    let mask = c.rng.mask();
    ws::put_frame(&mut c.wbuf, OP_CLOSE, &1000u16.to_be_bytes(), mask);
    let max = sh.size.max(1024);
    let _ = timeout(Duration::from_secs(1), async {
        c.stream.write_all(&c.wbuf[c.wpos..]).await?;
        loop {
            loop {
                match ws::parse_head(&c.rbuf[c.rpos..], max) {
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
            c.rbuf.reserve(64 * 1024);
            if c.stream.read_buf(&mut c.rbuf).await? == 0 {
                return Ok(());
            }
        }
    })
    .await
    .unwrap_or(Ok::<(), std::io::Error>(()));
}

async fn open(
    id: u32,
    url_idx: usize,
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
    let mut rbuf = Vec::with_capacity(64 * 1024);
    ws::handshake(&mut stream, target, Some(PROTOCOL), key, &mut rbuf).await?;
    let mut fill = Rng::new(rng.next() ^ id as u64);
    let payload = (0..o.size).map(|_| fill.next() as u8).collect();
    Ok(Conn {
        id,
        url_idx,
        stream,
        rbuf,
        rpos: 0,
        wbuf: Vec::with_capacity(o.size + 256),
        wpos: 0,
        payload,
        next_seq: 0,
        outstanding: None,
        heard: 0,
        synced: false,
        frag: None,
        rng: Rng::new(rng.next()),
    })
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

/// CPU seconds (user + system) used so far by the processes of each session.
fn session_cpu(sids: &[(String, i32)]) -> Vec<f64> {
    let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    };
    let mut ticks = vec![0u64; sids.len()];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![0.0; sids.len()];
    };
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // After "PID (comm) ": state ppid pgrp session ... utime (12th) stime (13th).
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        let Ok(sid) = f[3].parse::<i32>() else {
            continue;
        };
        if let Some(i) = sids.iter().position(|(_, s)| *s == sid) {
            let t = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
            ticks[i] += t;
        }
    }
    ticks.into_iter().map(|t| t as f64 / hz).collect()
}

/// Raises the soft RLIMIT_NOFILE to `need` if it is lower; returns the soft
/// limit in force.
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
            rlim_cur: need.min(rl.rlim_max),
            rlim_max: rl.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return want.rlim_cur;
        }
        rl.rlim_cur
    }
}

struct Report {
    open: usize,
    sync_secs: Option<f64>,
    lost: usize,
    missing: u64,
    client_cpu: f64,
    srv_cpu: Vec<f64>,
}

async fn main_async(o: Rc<Opts>, sh: Rc<Shared>) -> Report {
    let mut targets = Vec::new();
    for u in &o.urls {
        let t = ws::Target::parse(&room_url(u, &o.room)).unwrap_or_else(|e| die(&e));
        let addr = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| die(&format!("cannot resolve {}", t.host)));
        targets.push((Rc::new(t), addr));
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ ((std::process::id() as u64) << 40);
    let sem = Rc::new(Semaphore::new(o.open_at_once));
    let mut opening = Vec::new();
    for id in 0..o.conns {
        let url_idx = id % o.urls.len();
        let (target, addr) = targets[url_idx].clone();
        let (o, sem) = (o.clone(), sem.clone());
        let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x1000_0001));
        opening.push((
            id,
            tokio::task::spawn_local(async move {
                let _permit = sem.acquire().await;
                match timeout(
                    CONNECT_TIMEOUT,
                    open(id as u32, url_idx, addr, &target, &o, &mut rng),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "connect + handshake took over {} s",
                        CONNECT_TIMEOUT.as_secs()
                    )),
                }
            }),
        ));
    }
    let mut conns = Vec::new();
    for (id, h) in opening {
        let r = h.await.unwrap_or_else(|e| Err(format!("task: {e}")));
        match r {
            Ok(c) => {
                sh.live[c.id as usize].set(true);
                conns.push(c)
            }
            Err(e) => {
                let mut st = sh.stats.borrow_mut();
                st.connect_errors += 1;
                st.note(format!("conn {id} ({}): {e}", o.urls[id % o.urls.len()]));
            }
        }
    }
    let open = conns.len();
    let mut report = Report {
        open,
        sync_secs: None,
        lost: 0,
        missing: 0,
        client_cpu: 0.0,
        srv_cpu: Vec::new(),
    };
    if open == 0 {
        return report;
    }
    sh.alive.set(open);
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let sync_start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::task::spawn_local(run(c, sh.clone(), phase_rx.clone())))
        .collect();
    // SYNC: every live connection heard from every other URL.
    let sync_end = sync_start + Duration::from_secs_f64(o.sync_timeout);
    let synced = loop {
        if sh.alive.get() > 0 && sh.synced.get() >= sh.alive.get() {
            break true;
        }
        if sh.alive.get() == 0 {
            break false;
        }
        tokio::select! {
            _ = sh.wake.notified() => {}
            _ = sleep_until(sync_end) => break false,
        }
    };
    if synced {
        let now = Instant::now();
        report.sync_secs = Some((now - sync_start).as_secs_f64());
        *sh.base.borrow_mut() = sh.next_seq.iter().map(Cell::get).collect();
        let warm_end = now + Duration::from_secs_f64(o.warmup);
        let end = warm_end + Duration::from_secs_f64(o.duration);
        sh.window.set(Some((warm_end, end)));
        sleep_until(warm_end).await;
        let (c0, s0) = (cpu_secs(), session_cpu(&o.sessions));
        sleep_until(end).await;
        let (c1, s1) = (cpu_secs(), session_cpu(&o.sessions));
        if o.duration > 0.0 {
            report.client_cpu = (c1 - c0) / o.duration;
            report.srv_cpu = s0
                .iter()
                .zip(&s1)
                .map(|(a, b)| (b - a) / o.duration)
                .collect();
        }
    } else {
        let mut st = sh.stats.borrow_mut();
        let msg = format!(
            "SYNC failed: after {} s, {} of {} live connections had heard from every other URL \
             (are the instances linked to the same Redis?)",
            o.sync_timeout,
            sh.synced.get(),
            sh.alive.get()
        );
        st.note(msg);
    }
    // Drain: no new messages; the last ones have `--drain` to come back to
    // their senders and to reach everyone else.
    let _ = phase_tx.send(Phase::Drain);
    let drain_end = Instant::now() + Duration::from_secs_f64(o.drain);
    while (sh.inflight.get() > 0 || sh.missing() > 0) && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report.lost = sh.inflight.get();
    report.missing = sh.missing();
    let _ = phase_tx.send(Phase::Close);
    for t in tasks {
        let _ = t.await;
    }
    report
}

fn main() {
    let o = Rc::new(parse_opts());
    let need = o.conns as u64 + 64;
    let limit = raise_nofile(need);
    if limit < need {
        eprintln!(
            "wsroom: RLIMIT_NOFILE is {limit}, {need} wanted for {} connections: some will fail",
            o.conns
        );
    }
    let sh = Rc::new(Shared {
        start: std::time::Instant::now(),
        conns: o.conns,
        urls: o.urls.len(),
        size: o.size,
        window: Cell::new(None),
        alive: Cell::new(0),
        synced: Cell::new(0),
        inflight: Cell::new(0),
        wake: Notify::new(),
        stats: RefCell::new(Stats {
            hist: new_hist(),
            cross: new_hist(),
            deliveries: 0,
            sends: 0,
            order_errors: 0,
            dup_errors: 0,
            gaps: 0,
            closed: 0,
            bad: 0,
            connect_errors: 0,
            notes: Vec::new(),
        }),
        seen: RefCell::new(vec![Seen::default(); o.conns * o.conns]),
        next_seq: (0..o.conns).map(|_| Cell::new(0)).collect(),
        live: (0..o.conns).map(|_| Cell::new(false)).collect(),
        base: RefCell::new(Vec::new()),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("tokio runtime: {e}")));
    let local = tokio::task::LocalSet::new();
    let r = local.block_on(&rt, main_async(o.clone(), sh.clone()));
    let st = sh.stats.borrow();
    for n in &st.notes {
        eprintln!("wsroom: {n}");
    }
    if r.open == 0 {
        eprintln!("wsroom: no connection opened");
        std::process::exit(1);
    }
    let per_s = |n: u64| {
        if o.duration > 0.0 {
            n as f64 / o.duration
        } else {
            0.0
        }
    };
    let (rate, sends) = (per_s(st.deliveries), per_s(st.sends));
    let q = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            None
        } else {
            Some(h.value_at_quantile(p) as f64 / 1000.0)
        }
    };
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let (p50, p99, p999) = (q(&st.hist, 0.5), q(&st.hist, 0.99), q(&st.hist, 0.999));
    let max = (!st.hist.is_empty()).then(|| st.hist.max() as f64 / 1000.0);
    let cross = |p| {
        if o.urls.len() > 1 {
            q(&st.cross, p)
        } else {
            None
        }
    };
    let srv_total: f64 = r.srv_cpu.iter().sum();
    let srv_each: Vec<String> = o
        .sessions
        .iter()
        .zip(&r.srv_cpu)
        .map(|((n, _), c)| format!("{n}:{c:.2}"))
        .collect();
    let sync = r.sync_secs.map_or("-".into(), |s| format!("{s:.2}"));
    println!(
        "wsroom {} url{} room {:?}  {} conns ({} open)  {} B  {} s after SYNC {} s + {} s warm-up: \
         {:.0} deliveries/s ({:.0} sends/s)  latency p50 {} us  p99 {} us  p99.9 {} us  max {} us  \
         cross-instance p50 {} us  p99 {} us ({} deliveries)  order_errors {}  dup_errors {}  \
         gaps {}  missing {}  lost {}  closed {}  bad {}  connect errors {}  client cpu {:.2}{}",
        o.urls.len(),
        if o.urls.len() == 1 { "" } else { "s" },
        o.room,
        o.conns,
        r.open,
        o.size,
        o.duration,
        sync,
        o.warmup,
        rate,
        sends,
        us(p50),
        us(p99),
        us(p999),
        us(max),
        us(cross(0.5)),
        us(cross(0.99)),
        st.cross.len(),
        st.order_errors,
        st.dup_errors,
        st.gaps,
        r.missing,
        r.lost,
        st.closed,
        st.bad,
        st.connect_errors,
        r.client_cpu,
        if srv_each.is_empty() {
            String::new()
        } else {
            format!("  server cpu {srv_total:.2} ({})", srv_each.join(" "))
        },
    );
    println!(
        "wsroom conns={} urls={} size={} deliveries_per_s={:.0} p50_us={} p99_us={} p999_us={} \
         cross_p99_us={} order_errors={} dup_errors={} lost={} gaps={} missing={} closed={} bad={} \
         connect_errors={} open={} secs={} sync_s={} sends_per_s={:.0} client_cpu={:.2}{}",
        o.conns,
        o.urls.len(),
        o.size,
        rate,
        us(p50),
        us(p99),
        us(p999),
        us(cross(0.99)),
        st.order_errors,
        st.dup_errors,
        r.lost,
        st.gaps,
        r.missing,
        st.closed,
        st.bad,
        st.connect_errors,
        r.open,
        o.duration,
        sync,
        sends,
        r.client_cpu,
        if srv_each.is_empty() {
            String::new()
        } else {
            format!(
                " srv_cpu={srv_total:.2} srv_cpu_each={}",
                srv_each.join(",")
            )
        },
    );
    if r.sync_secs.is_none() {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        Stats {
            hist: new_hist(),
            cross: new_hist(),
            deliveries: 0,
            sends: 0,
            order_errors: 0,
            dup_errors: 0,
            gaps: 0,
            closed: 0,
            bad: 0,
            connect_errors: 0,
            notes: Vec::new(),
        }
    }

    #[test]
    fn order_dups_gaps() {
        let mut st = stats();
        let mut s = Seen::default();
        for q in [5, 6, 7] {
            see(&mut s, q, &mut st);
        }
        assert_eq!((st.order_errors, st.dup_errors, st.gaps), (0, 0, 0));
        see(&mut s, 7, &mut st);
        assert_eq!(st.dup_errors, 1);
        see(&mut s, 10, &mut st);
        assert_eq!(st.gaps, 2);
        see(&mut s, 9, &mut st);
        assert_eq!((st.order_errors, st.gaps), (1, 1));
        see(&mut s, 9, &mut st);
        assert_eq!(st.dup_errors, 2);
        see(&mut s, 200, &mut st);
        see(&mut s, 100, &mut st);
        assert_eq!(st.order_errors, 2);
    }

    #[test]
    fn urls() {
        assert_eq!(
            room_url("ws://127.0.0.1:80/", "bench"),
            "ws://127.0.0.1:80/?mirror=bench"
        );
        assert_eq!(room_url("ws://h:1", "a b"), "ws://h:1/?mirror=a%20b");
        assert_eq!(room_url("ws://h:1/x?y=1", "r"), "ws://h:1/x?y=1&mirror=r");
        assert_eq!(room_url("ws://h:1/x?", "r"), "ws://h:1/x?mirror=r");
    }
}
