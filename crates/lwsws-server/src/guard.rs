//! The HTTP/1 head guard: an I/O wrapper between an accepted connection and
//! hyper that hands a request's bytes on only once they are known to be good.
//! hyper 1.x drops `Content-Length` when `Transfer-Encoding` is present and
//! runs its header timer while a keep-alive connection idles, so by itself it
//! can neither refuse ambiguous framing (SPEC §3.7, §8) nor keep lwsws's
//! timeouts (§2.2 `timeout-secs`, §2.3 `keepalive-timeout`). [`GuardedIo`]
//! reads the socket itself, checks each request head on the raw bytes
//! (`httparse`, then the framing, `Host` and target rules that `httparse`
//! leaves to its caller) and follows each message's framing (`Content-Length`,
//! strictly parsed chunks) to know where the next head starts, so pipelining
//! keeps working. A refused head never reaches hyper: in its place hyper reads
//! a synthetic `GET /` carrying [`REJECT_HEADER`] with the status, which the
//! pipeline (`pipeline.rs`) answers, after any earlier pipelined requests, with
//! that error page and `Connection: close`; reads then stay pending until
//! hyper has closed (an end of stream while hyper owes an answer makes it drop
//! the answer). A head or idle timeout ends the stream as hyper sees it, so an
//! idle hyper closes the connection. Writes pass
//! straight through. In the common case (a whole head in one read) bytes are
//! read straight into hyper's buffer and checked there; only a head split
//! across reads is copied into the guard's own buffer. The guard and the
//! pipeline share a [`ConnHandle`]: the pipeline marks an upgrade there (after
//! which bytes pass unchecked) and reads why a head was refused. `conn.rs`
//! puts the guard under hyper.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Header of the synthetic request that stands in for a refused head; its
/// value is the status to answer with. A client sending it is refused.
pub(crate) const REJECT_HEADER: &str = "x-lwsws-reject";

/// What a request head may be, and how long the client may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Longest head: request line, header lines and the final empty line.
    pub max_head: usize,
    /// Most header lines in a head (and trailer lines after a chunked body).
    pub max_headers: usize,
    /// Longest request target.
    pub max_uri: usize,
    /// `timeout-secs`: time to receive a complete head, from accept for the
    /// first request, from its first byte for later ones.
    pub head_timeout: Duration,
    /// `keepalive-timeout`: longest idle time between requests.
    pub keepalive: Duration,
}

/// State shared by a connection's guard and the pipeline answering its
/// requests; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Set by the pipeline when it switches protocols: the bytes after the
    /// current request belong to another protocol and pass unchecked.
    upgraded: AtomicBool,
    /// Requests the pipeline is still preparing an answer to. A timeout that
    /// falls due meanwhile waits: an end of stream would make hyper drop the
    /// answer being prepared.
    in_flight: AtomicUsize,
    /// The first refusal or timeout, for the pipeline's log.
    ended: OnceLock<Refusal>,
}

impl ConnHandle {
    fn new() -> ConnHandle {
        ConnHandle {
            shared: Arc::new(Shared::default()),
        }
    }

    /// A handle no guard watches (HTTP/2, where hyper checks heads itself).
    pub(crate) fn detached() -> ConnHandle {
        ConnHandle::new()
    }

    /// Called by the pipeline when it answers `101 Switching Protocols` (or
    /// accepts a CONNECT), before the answer is written: bytes arriving after
    /// this request then pass unchecked. Without it, checking continues.
    pub(crate) fn mark_upgraded(&self) {
        self.shared.upgraded.store(true, Ordering::Release);
    }

    /// Why the guard refused a head or ended the connection, as
    /// `(status, reason)`; timeouts report 408.
    pub(crate) fn violation(&self) -> Option<(u16, &'static str)> {
        self.shared.ended.get().map(|r| (r.status(), r.reason()))
    }

    /// Marks a request as being answered until the returned value is dropped:
    /// while any is held, no head or idle timeout ends the connection (hyper
    /// would drop the answer). Hold it for the whole of the service call; once
    /// hyper writes the answer, writes keep the connection alive.
    pub(crate) fn in_flight(&self) -> InFlight {
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub(crate) fn is_upgraded(&self) -> bool {
        self.shared.upgraded.load(Ordering::Acquire)
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.shared.in_flight.load(Ordering::Acquire) > 0
    }

    fn record(&self, why: Refusal) {
        // The first reason is the one worth logging.
        let _ = self.shared.ended.set(why);
    }
}

/// A request being answered; see [`ConnHandle::in_flight`].
#[derive(Debug)]
pub(crate) struct InFlight(ConnHandle);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the guard refused a request or ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    HeadTooLarge,
    TooManyHeaders,
    UriTooLong,
    EmptyLines,
    BareLf,
    BareCr,
    ObsFold,
    HeaderName,
    HeaderValue,
    Method,
    RequestLine,
    Version,
    Malformed,
    Target,
    AuthorityForm,
    ConnectTarget,
    AsteriskForm,
    HostMissing,
    HostRepeated,
    HostInvalid,
    HostMismatch,
    Reserved,
    ClAndTe,
    ClConflict,
    ClInvalid,
    TeHttp10,
    TeNotChunked,
    TeUnknown,
    TeInvalid,
    ChunkSize,
    ChunkExt,
    ChunkCrlf,
    Trailer,
    TrailersTooLarge,
    HeadTimeout,
    IdleTimeout,
}

impl Refusal {
    fn status(self) -> u16 {
        match self {
            Refusal::HeadTooLarge | Refusal::TooManyHeaders => 431,
            Refusal::UriTooLong => 414,
            Refusal::HeadTimeout | Refusal::IdleTimeout => 408,
            _ => 400,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::HeadTooLarge => "request head too large",
            Refusal::TooManyHeaders => "too many header fields",
            Refusal::UriTooLong => "request target too long",
            Refusal::EmptyLines => "too many empty lines before the request line",
            Refusal::BareLf => "bare LF line ending",
            Refusal::BareCr => "bare CR",
            Refusal::ObsFold => "obsolete line folding",
            Refusal::HeaderName => "invalid header field name",
            Refusal::HeaderValue => "invalid header field value",
            Refusal::Method => "invalid method",
            Refusal::RequestLine => "malformed request line",
            Refusal::Version => "unsupported HTTP version",
            Refusal::Malformed => "malformed request head",
            Refusal::Target => "invalid request target",
            Refusal::AuthorityForm => "authority-form target without CONNECT",
            Refusal::ConnectTarget => "CONNECT without an authority-form target",
            Refusal::AsteriskForm => "asterisk-form target without OPTIONS",
            Refusal::HostMissing => "HTTP/1.1 request without Host",
            Refusal::HostRepeated => "more than one Host field",
            Refusal::HostInvalid => "invalid Host",
            Refusal::HostMismatch => "Host differs from the target's authority",
            Refusal::Reserved => "reserved header field x-lwsws-reject",
            Refusal::ClAndTe => "both Content-Length and Transfer-Encoding",
            Refusal::ClConflict => "differing Content-Length values",
            Refusal::ClInvalid => "invalid Content-Length",
            Refusal::TeHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            Refusal::TeNotChunked => "Transfer-Encoding does not end with chunked",
            Refusal::TeUnknown => "unknown transfer coding",
            Refusal::TeInvalid => "malformed Transfer-Encoding",
            Refusal::ChunkSize => "invalid chunk size",
            Refusal::ChunkExt => "invalid chunk extension",
            Refusal::ChunkCrlf => "missing CRLF in chunked body",
            Refusal::Trailer => "invalid trailer field",
            Refusal::TrailersTooLarge => "trailer section too large",
            Refusal::HeadTimeout => "head timeout",
            Refusal::IdleTimeout => "idle timeout",
        }
    }

    /// The request hyper reads in place of the refused one.
    fn synthetic(self) -> &'static [u8] {
        macro_rules! reject {
            ($status:literal) => {
                concat!(
                    "GET / HTTP/1.1\r\nhost: lwsws.invalid\r\nx-lwsws-reject: ",
                    $status,
                    "\r\nconnection: close\r\n\r\n"
                )
                .as_bytes()
            };
        }
        match self.status() {
            431 => reject!("431"),
            414 => reject!("414"),
            _ => reject!("400"),
        }
    }
}

/// Leading empty lines (CRLF) tolerated before a request line (RFC 9112 §2.2).
const MAX_EMPTY_LINES: u8 = 2;
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest hex chunk size, leading zeros included.
const MAX_CHUNK_DIGITS: u8 = 16;
/// Header slots kept on the stack for one parse; more come from the heap.
const STACK_HEADERS: usize = 128;
/// Smallest read into the guard's own buffer.
const MIN_READ: usize = 4096;
/// The guard's own buffer is dropped, once empty, if larger than this (a
/// keep-alive connection should not hold on to a large head's memory).
const KEEP_BUF: usize = 8 * 1024;
/// After answering a refused request, how long the socket is drained before
/// closing, so that unread request bytes do not turn the close into a reset
/// that destroys the answer.
const LINGER: Duration = Duration::from_secs(2);
/// An upgraded connection that has not spoken since its upgrade: ended by
/// the guard only after this long (the protocol above keeps its own time).
const UPGRADED_IDLE: Duration = Duration::from_secs(10 * 365 * 86400);

/// Shortest wait before looking again at a timeout put off by a request in
/// flight.
const MIN_RECHECK: Duration = Duration::from_secs(1);

/// An accepted connection as hyper should see it: request heads checked,
/// refused ones replaced, timeouts kept. See the module documentation.
pub(crate) struct GuardedIo<I> {
    io: I,
    limits: Limits,
    handle: ConnHandle,
    scanner: Scanner,
    mode: Mode,
    /// Bytes read from `io` that hyper has not taken: `buf[pos..ready]` passed
    /// the checks, `buf[ready..end]` is the start of a head still incomplete.
    /// Used only when a read does not fit hyper's buffer or ends inside a head;
    /// otherwise bytes are checked where they land, in hyper's buffer.
    buf: Vec<u8>,
    pos: usize,
    ready: usize,
    end: usize,
    /// The connection's one timer, re-armed as deadlines change.
    timer: Pin<Box<Sleep>>,
    /// The instant `timer` is set to; it may be earlier than the deadline,
    /// which is then looked at again when it fires (so a write, which moves
    /// the idle deadline, costs no timer update).
    armed: Instant,
    /// Accept time: the first head is due `head_timeout` after it.
    created: Instant,
    /// A complete head has been seen; later heads count from their first byte.
    seen_head: bool,
    /// When the first byte of the incomplete head in `buf` arrived.
    head_started: Option<Instant>,
    /// When the last message (head and body) was complete.
    idle_since: Instant,
    /// When a write last succeeded: a response still being written is not idle.
    last_write: Instant,
    /// A timeout that fell due while a request was in flight waits until then.
    not_before: Instant,
    /// Whether `poll_shutdown` has shut `io` down, and whether it lingers.
    shutdown: Shutdown,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Checking request heads and following their framing.
    Scan,
    /// After an upgrade: bytes pass unchecked.
    Passthrough,
    /// Handing hyper the synthetic request; `sent` bytes of it so far.
    Reject { bytes: &'static [u8], sent: usize },
    /// The synthetic request is handed on. hyper answers it and closes, and
    /// until then reads stay pending: hyper treats an end of stream while it
    /// owes an answer as an error and drops the answer. The socket is drained
    /// meanwhile; `peer_done` once the client has closed its side.
    Rejected { since: Instant, peer_done: bool },
    /// Reads report end of stream.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Open,
    Lingering,
    Done,
}

impl<I> GuardedIo<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a connection just accepted; the first head is due
    /// `limits.head_timeout` from now. Must be called inside a Tokio runtime
    /// with timers enabled.
    pub(crate) fn new(io: I, limits: Limits) -> (GuardedIo<I>, ConnHandle) {
        let now = Instant::now();
        let armed =
            later(now, limits.head_timeout).unwrap_or(now + Duration::from_secs(86400 * 365));
        let handle = ConnHandle::new();
        let guard = GuardedIo {
            io,
            limits,
            handle: handle.clone(),
            scanner: Scanner::default(),
            mode: Mode::Scan,
            buf: Vec::new(),
            pos: 0,
            ready: 0,
            end: 0,
            timer: Box::pin(tokio::time::sleep_until(armed)),
            armed,
            created: now,
            seen_head: false,
            head_started: None,
            idle_since: now,
            last_write: now,
            not_before: now,
            shutdown: Shutdown::Open,
        };
        (guard, handle)
    }

    /// Copies checked bytes from `buf` to `out`.
    fn hand_on(&mut self, out: &mut ReadBuf<'_>) {
        let n = out.remaining().min(self.ready - self.pos);
        out.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.end {
            self.pos = 0;
            self.ready = 0;
            self.end = 0;
            // A connection being upgraded reads no more heads: its buffer
            // would stay with every idle WebSocket.
            if self.buf.len() > KEEP_BUF || self.scanner.upgrade_asked {
                self.buf = Vec::new();
            }
        }
    }

    /// Keeps the start of an incomplete head, read into hyper's buffer, in
    /// `buf` (which is empty) until the rest arrives.
    fn stash(&mut self, head: &[u8]) {
        let want = head.len() + MIN_READ;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        self.buf[..head.len()].copy_from_slice(head);
        self.pos = 0;
        self.ready = 0;
        self.end = head.len();
    }

    /// Reads more of the incomplete head waiting in `buf`.
    fn fill_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.ready > 0 {
            self.buf.copy_within(self.ready..self.end, 0);
            self.end -= self.ready;
            self.pos = 0;
            self.ready = 0;
        }
        // The scanner refuses a head longer than `max_head`, so `end` stays
        // within that and the buffer within `max_head + MIN_READ`.
        if self.buf.len() - self.end < MIN_READ {
            let want = (self.buf.len() * 2).min(self.limits.max_head.saturating_add(MIN_READ));
            self.buf.resize(want.max(self.end + MIN_READ), 0);
        }
        let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    /// Checks the bytes just read into `buf` behind an incomplete head.
    fn scan_buffered(&mut self) {
        let scan = self
            .scanner
            .scan(&self.buf[self.ready..self.end], &self.limits, &self.handle);
        let good = self.ready + scan.good;
        self.after_scan(&scan);
        match scan.stop {
            Stop::End | Stop::Passthrough => self.ready = self.end,
            Stop::NeedMore => {
                self.ready = good;
                self.head_started.get_or_insert_with(Instant::now);
            }
            Stop::Refuse(why, at_boundary) => {
                self.ready = good;
                self.end = good;
                self.refuse(why, at_boundary);
            }
        }
        if matches!(scan.stop, Stop::Passthrough) {
            self.mode = Mode::Passthrough;
        }
    }

    /// Checks bytes just read into hyper's buffer; returns how many of them
    /// hyper may have. An incomplete head at the end moves to `buf`.
    fn scan_in_place(&mut self, data: &[u8]) -> usize {
        let scan = self.scanner.scan(data, &self.limits, &self.handle);
        self.after_scan(&scan);
        match scan.stop {
            Stop::End => data.len(),
            Stop::NeedMore => {
                self.stash(&data[scan.good..]);
                self.head_started.get_or_insert_with(Instant::now);
                scan.good
            }
            Stop::Refuse(why, at_boundary) => {
                self.refuse(why, at_boundary);
                scan.good
            }
            Stop::Passthrough => {
                self.mode = Mode::Passthrough;
                data.len()
            }
        }
    }

    fn after_scan(&mut self, scan: &Scan) {
        if scan.heads {
            self.seen_head = true;
            self.head_started = None;
            self.not_before = self.created;
        }
        if scan.ended {
            self.idle_since = Instant::now();
            self.not_before = self.created;
        }
    }

    fn refuse(&mut self, why: Refusal, at_boundary: bool) {
        self.handle.record(why);
        self.head_started = None;
        self.mode = if at_boundary {
            Mode::Reject {
                bytes: why.synthetic(),
                sent: 0,
            }
        } else {
            // hyper is inside a chunked body whose head it already has: it
            // cannot read another request now. The end of stream fails the
            // body; the handler's answer still goes out, then hyper closes.
            Mode::Eof
        };
    }

    /// The deadline now running, if any, and what its passing means.
    fn deadline(&self) -> Option<(Instant, Refusal)> {
        let l = &self.limits;
        let (due, why) = match self.mode {
            // Upgraded, and the peer has sent nothing since: the new
            // protocol keeps its own time (an idle WebSocket stays open).
            // The timer is still polled, with a deadline years away:
            // leaving it unpolled cost an idle WebSocket 6 KiB more resident
            // memory (ws.sh: 3.3 against 9.6 KiB a connection).
            Mode::Scan if self.scanner.upgrade_asked && self.handle.is_upgraded() => {
                (later(self.created, UPGRADED_IDLE)?, Refusal::IdleTimeout)
            }
            Mode::Scan => match self.scanner.framing {
                Framing::Head if !self.seen_head => {
                    (later(self.created, l.head_timeout)?, Refusal::HeadTimeout)
                }
                Framing::Head => match self.head_started {
                    Some(t) => (later(t, l.head_timeout)?, Refusal::HeadTimeout),
                    None => (
                        later(self.idle_since.max(self.last_write), l.keepalive)?,
                        Refusal::IdleTimeout,
                    ),
                },
                // A body may take its time.
                Framing::Length(_) | Framing::Chunked(_) => return None,
            },
            // A safety net: hyper closes once it has answered.
            Mode::Rejected { since, .. } => (
                later(since.max(self.last_write), l.head_timeout)?,
                Refusal::HeadTimeout,
            ),
            Mode::Passthrough | Mode::Reject { .. } | Mode::Eof => return None,
        };
        Some((due.max(self.not_before), why))
    }

    fn set_timer(&mut self, at: Instant) {
        self.timer.as_mut().reset(at);
        self.armed = at;
    }

    /// Called when reading would wait: ready once the running deadline has
    /// passed with no request in flight.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Refusal> {
        loop {
            let Some((due, why)) = self.deadline() else {
                return Poll::Pending;
            };
            if due < self.armed {
                self.set_timer(due);
            }
            ready!(self.timer.as_mut().poll(cx));
            if self.armed < due {
                self.set_timer(due);
                continue;
            }
            if self.handle.is_busy() {
                let period = match why {
                    Refusal::IdleTimeout => self.limits.keepalive,
                    _ => self.limits.head_timeout,
                };
                let now = Instant::now();
                self.not_before = later(now, period.max(MIN_RECHECK)).unwrap_or(now + MIN_RECHECK);
                self.set_timer(self.not_before);
                continue;
            }
            return Poll::Ready(why);
        }
    }

    /// A read would wait: wait too, or end the stream if a deadline passed.
    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let why = ready!(self.poll_deadline(cx));
        if !matches!(self.mode, Mode::Rejected { .. }) {
            self.handle.record(why);
        }
        self.mode = Mode::Eof;
        self.pos = 0;
        self.ready = 0;
        self.end = 0;
        Poll::Ready(Ok(()))
    }

    /// Ready once hyper has something to read: a checked first head, a
    /// refusal, the end of the stream or an error. Until then a connection
    /// holds only this guard and its small buffer, not a hyper connection
    /// with its read and write buffers, so a slow head costs little.
    pub(crate) fn poll_first_head(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.pos < self.ready || !matches!(self.mode, Mode::Scan) {
                return Poll::Ready(());
            }
            match self.fill_buf(cx) {
                Poll::Pending => return self.read_pending(cx).map(|_| ()),
                // hyper reads the end (or the error) again and closes.
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => self.scan_buffered(),
            }
        }
    }

    /// Reads and discards what the client still sends; ready once it has
    /// closed its side (or the socket failed).
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.buf.len() < MIN_READ {
            self.buf.resize(MIN_READ, 0);
        }
        for _ in 0..16 {
            let mut rb = ReadBuf::new(&mut self.buf[..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {}
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Give other connections a turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_rejected(
        &mut self,
        cx: &mut Context<'_>,
        since: Instant,
        peer_done: bool,
    ) -> Poll<io::Result<()>> {
        if !peer_done && self.drain(cx).is_ready() {
            self.mode = Mode::Rejected {
                since,
                peer_done: true,
            };
        }
        self.read_pending(cx)
    }
}

impl<I> AsyncRead for GuardedIo<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.pos < this.ready {
                this.hand_on(out);
                return Poll::Ready(Ok(()));
            }
            match this.mode {
                Mode::Scan => {}
                Mode::Passthrough => {
                    if !this.buf.is_empty() {
                        this.buf = Vec::new();
                    }
                    return Pin::new(&mut this.io).poll_read(cx, out);
                }
                Mode::Reject { bytes, sent } => {
                    let n = out.remaining().min(bytes.len() - sent);
                    out.put_slice(&bytes[sent..sent + n]);
                    this.mode = if sent + n == bytes.len() {
                        Mode::Rejected {
                            since: Instant::now(),
                            peer_done: false,
                        }
                    } else {
                        Mode::Reject {
                            bytes,
                            sent: sent + n,
                        }
                    };
                    return Poll::Ready(Ok(()));
                }
                Mode::Rejected { since, peer_done } => {
                    return this.poll_rejected(cx, since, peer_done);
                }
                Mode::Eof => return Poll::Ready(Ok(())),
            }
            if this.end > this.ready {
                // The start of a head waits in `buf`: read the rest behind it.
                match this.fill_buf(cx) {
                    Poll::Pending => return this.read_pending(cx),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(0)) => {
                        // The client gave up inside a head: nothing of it
                        // goes to hyper.
                        this.mode = Mode::Eof;
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Ok(_)) => this.scan_buffered(),
                }
            } else {
                // The common case: read into hyper's buffer and check there.
                let before = out.filled().len();
                match Pin::new(&mut this.io).poll_read(cx, out) {
                    Poll::Pending => return this.read_pending(cx),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                if out.filled().len() == before {
                    return Poll::Ready(Ok(()));
                }
                let keep = this.scan_in_place(&out.filled()[before..]);
                out.set_filled(before + keep);
                if keep > 0 {
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<I> AsyncWrite for GuardedIo<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.last_write = Instant::now();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.last_write = Instant::now();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// Shuts the connection down; after a refusal, first drains what the
    /// client still sends for up to [`LINGER`] (a close with unread bytes
    /// would reset the connection and could destroy the error page).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shutdown == Shutdown::Open {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            let refused = this
                .handle
                .shared
                .ended
                .get()
                .is_some_and(|r| r.status() != 408);
            let peer_done = matches!(
                this.mode,
                Mode::Rejected {
                    peer_done: true,
                    ..
                }
            );
            this.shutdown = if refused && !peer_done {
                let now = Instant::now();
                this.set_timer(now + LINGER);
                Shutdown::Lingering
            } else {
                Shutdown::Done
            };
        }
        if this.shutdown == Shutdown::Lingering {
            if this.drain(cx).is_pending() && this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.shutdown = Shutdown::Done;
        }
        Poll::Ready(Ok(()))
    }
}

/// `t + d`, or `None` if that is beyond what an instant can hold.
fn later(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d)
}

// ---------------------------------------------------------------------------
// The scanner: no I/O, only bytes in and verdicts out.

/// Where the byte stream stands: which framing the next bytes belong to.
#[derive(Debug, Default)]
struct Scanner {
    framing: Framing,
    /// How far the incomplete head at the front of the data has been looked
    /// at, so that a head arriving in many small reads is not parsed again
    /// for each.
    partial: Partial,
    /// The last head asked to switch protocols (`Upgrade`, or CONNECT).
    upgrade_asked: bool,
    /// Empty lines seen before the current head.
    empty_lines: u8,
}

#[derive(Debug, Clone, Copy, Default)]
enum Framing {
    /// A request head comes next.
    #[default]
    Head,
    /// This many body bytes come next.
    Length(u64),
    /// A chunked body is being read.
    Chunked(Chunked),
}

/// What scanning some bytes found.
#[derive(Debug)]
struct Scan {
    /// Bytes at the front that are good to hand on.
    good: usize,
    /// Why scanning stopped at `good`.
    stop: Stop,
    /// At least one head was completed.
    heads: bool,
    /// At least one message was completed (its body included).
    ended: bool,
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Every byte was good.
    End,
    /// The bytes from `good` on start a head that is not complete yet.
    NeedMore,
    /// The bytes from `good` on break a rule. `true` if hyper is between
    /// messages there (so it can read a synthetic request next).
    Refuse(Refusal, bool),
    /// The bytes from `good` on belong to an upgraded protocol.
    Passthrough,
}

/// What a head parse found.
enum Head {
    Complete {
        len: usize,
        framing: Framing,
        upgrade: bool,
    },
    Partial,
    Refused(Refusal),
}

impl Scanner {
    /// Follows `data`, which starts where the previous call stopped (or, after
    /// `NeedMore`, at the same incomplete head, with more bytes behind it).
    fn scan(&mut self, data: &[u8], limits: &Limits, handle: &ConnHandle) -> Scan {
        let mut scan = Scan {
            good: 0,
            stop: Stop::End,
            heads: false,
            ended: false,
        };
        let mut off = 0;
        // Where the head of the message being read starts, if in `data`: a
        // refusal inside its body can then still replace the whole message.
        let mut head_at = None;
        while off < data.len() {
            let rest = &data[off..];
            match &mut self.framing {
                Framing::Head => {
                    if std::mem::take(&mut self.upgrade_asked) && handle.is_upgraded() {
                        scan.good = off;
                        scan.stop = Stop::Passthrough;
                        return scan;
                    }
                    if self.partial.scanned == 0 {
                        match rest {
                            [b'\r'] => {
                                scan.good = off;
                                scan.stop = Stop::NeedMore;
                                return scan;
                            }
                            [b'\r', b'\n', ..] => {
                                self.empty_lines += 1;
                                if self.empty_lines > MAX_EMPTY_LINES {
                                    scan.good = off;
                                    scan.stop = Stop::Refuse(Refusal::EmptyLines, true);
                                    return scan;
                                }
                                off += 2;
                                continue;
                            }
                            [b'\n', ..] => {
                                scan.good = off;
                                scan.stop = Stop::Refuse(Refusal::BareLf, true);
                                return scan;
                            }
                            _ => {}
                        }
                    }
                    match self.head(rest, limits) {
                        Head::Partial => {
                            scan.good = off;
                            scan.stop = Stop::NeedMore;
                            return scan;
                        }
                        Head::Refused(why) => {
                            self.partial = Partial::default();
                            scan.good = off;
                            scan.stop = Stop::Refuse(why, true);
                            return scan;
                        }
                        Head::Complete {
                            len,
                            framing,
                            upgrade,
                        } => {
                            head_at = Some(off);
                            off += len;
                            scan.heads = true;
                            scan.ended |= matches!(framing, Framing::Head);
                            self.partial = Partial::default();
                            self.empty_lines = 0;
                            self.upgrade_asked = upgrade;
                            self.framing = framing;
                        }
                    }
                }
                Framing::Length(left) => {
                    let n = usize::try_from(*left).map_or(rest.len(), |l| l.min(rest.len()));
                    *left -= n as u64;
                    off += n;
                    if *left == 0 {
                        self.framing = Framing::Head;
                        scan.ended = true;
                        head_at = None;
                    }
                }
                Framing::Chunked(chunked) => match chunked.advance(rest, limits) {
                    Ok((n, done)) => {
                        off += n;
                        if done {
                            self.framing = Framing::Head;
                            scan.ended = true;
                            head_at = None;
                        }
                    }
                    Err((n, why)) => {
                        (scan.good, scan.stop) = match head_at {
                            Some(h) => (h, Stop::Refuse(why, true)),
                            None => (off + n, Stop::Refuse(why, false)),
                        };
                        return scan;
                    }
                },
            }
        }
        scan.good = off;
        scan
    }

    /// Looks at `data`, which starts with a head: complete, incomplete, or
    /// refused.
    fn head(&mut self, data: &[u8], limits: &Limits) -> Head {
        let from = self.partial.scanned;
        if from == 0 {
            // First look: most heads arrive whole, so parse right away.
            match parse_head(data, limits) {
                Head::Partial => {}
                done => return done,
            }
        } else if find_head_end(data, from) {
            return match parse_head(data, limits) {
                // Cannot happen: the head's end is there and the head does
                // not start with an empty line.
                Head::Partial => Head::Refused(Refusal::Malformed),
                done => done,
            };
        }
        if let Some(why) = self.partial.track_target(data, from, limits.max_uri) {
            return Head::Refused(why);
        }
        if data.len() > limits.max_head {
            return Head::Refused(Refusal::HeadTooLarge);
        }
        self.partial.scanned = data.len();
        Head::Partial
    }
}

/// Progress through an incomplete head.
#[derive(Debug, Default)]
struct Partial {
    /// Bytes already looked at.
    scanned: usize,
    /// Where the request target starts, once the method's space was seen.
    target_start: Option<usize>,
    /// The request target's end (or the request line's) was seen.
    target_done: bool,
}

impl Partial {
    /// Follows the request line through `data[from..]`, refusing a target
    /// longer than `max_uri` as soon as it is.
    fn track_target(&mut self, data: &[u8], from: usize, max_uri: usize) -> Option<Refusal> {
        if self.target_done {
            return None;
        }
        for (i, &b) in data.iter().enumerate().skip(from) {
            match self.target_start {
                None if b == b' ' => self.target_start = Some(i + 1),
                None if b == b'\n' => {
                    self.target_done = true;
                    return None;
                }
                None => {}
                Some(s) if matches!(b, b' ' | b'\r' | b'\n') => {
                    self.target_done = true;
                    return (i - s > max_uri).then_some(Refusal::UriTooLong);
                }
                Some(_) => {}
            }
        }
        match self.target_start {
            Some(s) if data.len() - s > max_uri => Some(Refusal::UriTooLong),
            _ => None,
        }
    }
}

/// Whether `data[from - 2..]` holds the end of a head: an LF followed by an
/// empty line (with or without CR, so that bare-LF heads are refused as soon
/// as they are complete rather than when they grow too large).
fn find_head_end(data: &[u8], from: usize) -> bool {
    let mut i = from.saturating_sub(2);
    while let Some(p) = data
        .get(i..)
        .and_then(|d| d.iter().position(|&b| b == b'\n'))
    {
        let at = i + p;
        match (data.get(at + 1), data.get(at + 2)) {
            (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => return true,
            (None, _) | (Some(b'\r'), None) => return false,
            _ => i = at + 1,
        }
    }
    false
}

/// Parses and checks a head at the start of `data`.
fn parse_head(data: &[u8], limits: &Limits) -> Head {
    let mut stack: [MaybeUninit<httparse::Header<'_>>; STACK_HEADERS] =
        [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut heap;
    let slots = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![MaybeUninit::uninit(); limits.max_headers];
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(data, slots) {
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(len)) => match check_head(&req, &data[..len], limits) {
            Ok((framing, upgrade)) => Head::Complete {
                len,
                framing,
                upgrade,
            },
            Err(why) => Head::Refused(why),
        },
        Err(e) => Head::Refused(diagnose(e, req.method.is_some(), data)),
    }
}

/// Names what `httparse` refused.
fn diagnose(e: httparse::Error, method_parsed: bool, data: &[u8]) -> Refusal {
    let bare_cr = || data.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n');
    match e {
        httparse::Error::TooManyHeaders => Refusal::TooManyHeaders,
        httparse::Error::Version => Refusal::Version,
        httparse::Error::Token if !method_parsed => Refusal::Method,
        httparse::Error::Token => Refusal::RequestLine,
        httparse::Error::HeaderName
            if data
                .windows(2)
                .any(|w| w[0] == b'\n' && matches!(w[1], b' ' | b'\t')) =>
        {
            Refusal::ObsFold
        }
        httparse::Error::HeaderName => Refusal::HeaderName,
        httparse::Error::HeaderValue | httparse::Error::NewLine if bare_cr() => Refusal::BareCr,
        httparse::Error::HeaderValue => Refusal::HeaderValue,
        httparse::Error::NewLine | httparse::Error::Status => Refusal::Malformed,
    }
}

/// The checks `httparse` leaves to its caller, on a complete head; returns
/// the body's framing and whether the request asks to switch protocols.
fn check_head(
    req: &httparse::Request<'_, '_>,
    head: &[u8],
    limits: &Limits,
) -> Result<(Framing, bool), Refusal> {
    if head.len() > limits.max_head {
        return Err(Refusal::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Refusal::Malformed);
    };
    if target.len() > limits.max_uri {
        return Err(Refusal::UriTooLong);
    }
    // httparse accepts bare LF line endings. It refuses a CR not followed by
    // LF, so every CR in an accepted head ends a line, and the head has no
    // bare LF exactly when it has as many CRs as LFs.
    if count(head, b'\n') != count(head, b'\r') {
        return Err(Refusal::BareLf);
    }
    let mut host = None;
    let mut length = None;
    let mut codings = None;
    let mut upgrade = method == "CONNECT";
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            if host.is_some() {
                return Err(Refusal::HostRepeated);
            }
            host = Some(trim_ows(h.value));
        } else if is("content-length") {
            length = Some(content_length(h.value, length)?);
        } else if is("transfer-encoding") {
            codings = Some(transfer_codings(h.value, codings.unwrap_or_default())?);
        } else if is("upgrade") {
            upgrade = true;
        } else if is(REJECT_HEADER) {
            return Err(Refusal::Reserved);
        }
    }
    if let Some(h) = host {
        if !is_authority(h) {
            return Err(Refusal::HostInvalid);
        }
    } else if version == 1 {
        return Err(Refusal::HostMissing);
    }
    check_target(method, target, host)?;
    let framing = match (length, codings) {
        (Some(_), Some(_)) => return Err(Refusal::ClAndTe),
        (None, Some(_)) if version == 0 => return Err(Refusal::TeHttp10),
        (None, Some(c)) if !c.last_chunked => return Err(Refusal::TeNotChunked),
        (None, Some(_)) => Framing::Chunked(Chunked::default()),
        (Some(0) | None, None) => Framing::Head,
        (Some(n), None) => Framing::Length(n),
    };
    Ok((framing, upgrade))
}

/// The request-target forms of RFC 9112 §3.2, each with the method it needs;
/// an absolute-form target must name the same authority as `Host`.
fn check_target(method: &str, target: &str, host: Option<&[u8]>) -> Result<(), Refusal> {
    if method == "CONNECT" {
        let port_ok = target.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
        });
        return if port_ok && is_authority(target.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::ConnectTarget)
        };
    }
    if target.starts_with('/') {
        return Ok(());
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(())
        } else {
            Err(Refusal::AsteriskForm)
        };
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(Refusal::AuthorityForm);
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Refusal::Target);
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || !is_authority(authority.as_bytes()) {
        return Err(Refusal::Target);
    }
    match host {
        Some(h) if h.eq_ignore_ascii_case(authority.as_bytes()) => Ok(()),
        _ => Err(Refusal::HostMismatch),
    }
}

/// Characters of `host [":" port]` (RFC 3986 reg-name, IP literals, port);
/// no userinfo, no path, no space.
fn is_authority(s: &[u8]) -> bool {
    s.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// Parses one `Content-Length` field (a list of identical values is allowed,
/// RFC 9110 §8.6) and checks it agrees with an earlier one.
/// One `Content-Length` field: a single number. A list (`5, 5`), which RFC
/// 9110 lets a recipient take as one value when all agree, is refused like
/// hyper does, so that the guard and hyper never frame a body differently;
/// separate fields of one value pass (hyper merges them).
fn content_length(value: &[u8], earlier: Option<u64>) -> Result<u64, Refusal> {
    // A list "5, 6" conflicts; "5, 5" is refused as hyper would.
    if value.contains(&b',') {
        return Err(Refusal::ClConflict);
    }
    let digits = trim_ows(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::ClInvalid);
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(Refusal::ClInvalid)?;
    }
    // hyper refuses the two largest values itself.
    if n > u64::MAX - 2 {
        return Err(Refusal::ClInvalid);
    }
    match earlier {
        Some(s) if s != n => Err(Refusal::ClConflict),
        _ => Ok(n),
    }
}

/// The transfer codings named so far, in order.
#[derive(Debug, Clone, Copy, Default)]
struct Codings {
    last_chunked: bool,
    chunked_seen: bool,
}

/// Adds one `Transfer-Encoding` field's codings to those of earlier fields.
fn transfer_codings(value: &[u8], mut c: Codings) -> Result<Codings, Refusal> {
    for part in value.split(|&b| b == b',') {
        let coding = trim_ows(part);
        if coding.is_empty() {
            return Err(Refusal::TeInvalid);
        }
        let is = |n: &str| coding.eq_ignore_ascii_case(n.as_bytes());
        if is("chunked") {
            // Chunked may be applied once only (RFC 9112 §6.1).
            if c.chunked_seen {
                return Err(Refusal::TeInvalid);
            }
            c.chunked_seen = true;
            c.last_chunked = true;
        } else {
            // Nothing here decodes gzip, deflate or compress, and a hop may
            // drop a coding only by decoding it (RFC 9112 §6.1): passing the
            // body on as if it were plain would change what it means.
            return Err(Refusal::TeUnknown);
        }
    }
    Ok(c)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn count(s: &[u8], byte: u8) -> usize {
    s.iter().filter(|&&b| b == byte).count()
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------
// Chunked bodies (RFC 9112 §7.1), parsed strictly, one byte at a time except
// for chunk data, which is skipped whole.

#[derive(Debug, Clone, Copy, Default)]
struct Chunked {
    state: ChunkState,
    /// The chunk's size while its size line is read, then the data bytes left.
    size: u64,
    /// Hex digits of the size so far.
    digits: u8,
    /// Bytes of the current size line.
    line: usize,
    /// Trailer field lines and bytes so far.
    trailers: usize,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of a chunk size.
    #[default]
    Size,
    /// Whitespace after the size: only `;` may follow.
    SizeWs,
    /// After `;`: whitespace, then an extension name.
    ExtPreName,
    ExtName,
    /// Whitespace after an extension name.
    ExtPostName,
    /// After `=`: whitespace, then a token or quoted string.
    ExtPreValue,
    ExtToken,
    ExtQuoted,
    ExtEscape,
    /// Whitespace after an extension value.
    ExtPostValue,
    /// The size line's CR was seen.
    SizeLf,
    /// `size` data bytes are left.
    Data,
    DataCr,
    DataLf,
    /// The start of a trailer line or of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// The final CR was seen.
    EndLf,
}

impl Chunked {
    /// Follows `data`; returns the bytes consumed and whether the body ended
    /// there, or where it broke the rules and why.
    fn advance(&mut self, data: &[u8], limits: &Limits) -> Result<(usize, bool), (usize, Refusal)> {
        use ChunkState as S;
        let mut i = 0;
        while i < data.len() {
            if self.state == S::Data {
                let n =
                    usize::try_from(self.size).map_or(data.len() - i, |s| s.min(data.len() - i));
                i += n;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            let ws = matches!(b, b' ' | b'\t');
            let next = match self.state {
                S::Size => match hex(b) {
                    Some(d) if self.digits < MAX_CHUNK_DIGITS => {
                        self.digits += 1;
                        self.size = self.size << 4 | d;
                        Some(S::Size)
                    }
                    Some(_) => None,
                    None if self.digits == 0 => None,
                    None => match b {
                        b'\r' => Some(S::SizeLf),
                        b';' => Some(S::ExtPreName),
                        b' ' | b'\t' => Some(S::SizeWs),
                        _ => None,
                    },
                },
                S::SizeWs => match b {
                    b';' => Some(S::ExtPreName),
                    _ if ws => Some(S::SizeWs),
                    _ => None,
                },
                S::ExtPreName => match b {
                    _ if ws => Some(S::ExtPreName),
                    _ if is_tchar(b) => Some(S::ExtName),
                    _ => None,
                },
                S::ExtName | S::ExtPostName => match b {
                    _ if is_tchar(b) && self.state == S::ExtName => Some(S::ExtName),
                    _ if ws => Some(S::ExtPostName),
                    b'=' => Some(S::ExtPreValue),
                    b';' => Some(S::ExtPreName),
                    b'\r' => Some(S::SizeLf),
                    _ => None,
                },
                S::ExtPreValue => match b {
                    b'"' => Some(S::ExtQuoted),
                    _ if ws => Some(S::ExtPreValue),
                    _ if is_tchar(b) => Some(S::ExtToken),
                    _ => None,
                },
                S::ExtToken | S::ExtPostValue => match b {
                    _ if is_tchar(b) && self.state == S::ExtToken => Some(S::ExtToken),
                    _ if ws => Some(S::ExtPostValue),
                    b';' => Some(S::ExtPreName),
                    b'\r' => Some(S::SizeLf),
                    _ => None,
                },
                S::ExtQuoted => match b {
                    b'"' => Some(S::ExtPostValue),
                    b'\\' => Some(S::ExtEscape),
                    b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => {
                        Some(S::ExtQuoted)
                    }
                    _ => None,
                },
                S::ExtEscape => match b {
                    b'\t' | b' '..=0x7e | 0x80..=0xff => Some(S::ExtQuoted),
                    _ => None,
                },
                S::SizeLf => match b {
                    b'\n' if self.size == 0 => Some(S::TrailerStart),
                    b'\n' => Some(S::Data),
                    _ => None,
                },
                S::Data => Some(S::Data),
                S::DataCr => (b == b'\r').then_some(S::DataLf),
                S::DataLf => (b == b'\n').then_some(S::Size),
                S::TrailerStart => match b {
                    b'\r' => Some(S::EndLf),
                    _ if is_tchar(b) => {
                        self.trailers += 1;
                        Some(S::TrailerName)
                    }
                    _ => None,
                },
                S::TrailerName => match b {
                    b':' => Some(S::TrailerValue),
                    _ if is_tchar(b) => Some(S::TrailerName),
                    _ => None,
                },
                S::TrailerValue => match b {
                    b'\r' => Some(S::TrailerLf),
                    b'\t' | b' '..=0x7e | 0x80..=0xff => Some(S::TrailerValue),
                    _ => None,
                },
                S::TrailerLf => (b == b'\n').then_some(S::TrailerStart),
                S::EndLf => {
                    if b == b'\n' {
                        *self = Chunked::default();
                        return Ok((i, true));
                    }
                    None
                }
            };
            let Some(next) = next else {
                return Err((i - 1, self.state.refusal()));
            };
            if next.in_size_line() {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err((i - 1, Refusal::ChunkExt));
                }
            }
            if next.in_trailers() {
                self.trailer_bytes += 1;
                if self.trailer_bytes > limits.max_head || self.trailers > limits.max_headers {
                    return Err((i - 1, Refusal::TrailersTooLarge));
                }
            }
            if self.state == S::DataLf {
                // A new chunk starts.
                self.size = 0;
                self.digits = 0;
                self.line = 0;
            }
            self.state = next;
        }
        Ok((i, false))
    }
}

impl ChunkState {
    fn in_size_line(self) -> bool {
        use ChunkState as S;
        matches!(
            self,
            S::Size
                | S::SizeWs
                | S::ExtPreName
                | S::ExtName
                | S::ExtPostName
                | S::ExtPreValue
                | S::ExtToken
                | S::ExtQuoted
                | S::ExtEscape
                | S::ExtPostValue
        )
    }

    fn in_trailers(self) -> bool {
        use ChunkState as S;
        matches!(self, S::TrailerName | S::TrailerValue | S::TrailerLf)
    }

    /// Why a byte unexpected in this state is refused.
    fn refusal(self) -> Refusal {
        use ChunkState as S;
        match self {
            S::Size | S::SizeWs => Refusal::ChunkSize,
            S::SizeLf | S::Data | S::DataCr | S::DataLf | S::EndLf => Refusal::ChunkCrlf,
            S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf => Refusal::Trailer,
            _ => Refusal::ChunkExt,
        }
    }
}

fn hex(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests;
