//! One WebSocket connection after the 101: reading frames, running the
//! protocol session, writing what it queued, keeping the connection alive
//! with pings, and closing it properly.
//!
//! Memory per idle connection is kept small: bytes are read into one buffer
//! per thread (`READ_BUF`) and only an incomplete frame stays with the
//! connection (in its `Assembler`); frames going out wait in a queue that is
//! empty when idle; everything is one task.

use crate::deflate::{DeflateConfig, Deflater, Inflater};
use crate::frame::{self, OpCode};
use crate::protocol::{Incoming, Session};
use crate::{Assembler, Config, Message};
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Read buffer of this thread; messages split off it keep their bytes.
const READ_CHUNK: usize = 64 * 1024;
/// Outgoing bytes a connection may have queued before it is dropped as too slow.
const MAX_QUEUED: usize = 16 * 1024 * 1024;
/// How long we wait for the peer's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

thread_local! {
    static READ_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The side of a connection that sessions, rooms and other tasks use to
/// send to it. Shared (`Arc`) with every room the connection is in.
pub struct ConnHandle {
    pub id: u64,
    /// The authenticated user, if any.
    pub user: Option<String>,
    out: Mutex<Outbox>,
    wake: Notify,
    closing: AtomicBool,
    /// The protocol's message counters (metrics), once the server sets them.
    messages: std::sync::OnceLock<Arc<crate::stats::MessageCount>>,
}

#[derive(Default)]
struct Outbox {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// A close frame to send after the queued frames, then stop.
    close: Option<(u16, String)>,
    /// Too much queued: the connection is dropped.
    overflow: bool,
}

impl ConnHandle {
    pub fn new(user: Option<String>) -> Arc<ConnHandle> {
        Arc::new(ConnHandle {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            user,
            out: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            messages: std::sync::OnceLock::new(),
        })
    }

    /// Counts this connection's data messages in `counters` (its protocol's).
    pub fn count_messages(&self, counters: Arc<crate::stats::MessageCount>) {
        let _ = self.messages.set(counters);
    }

    fn received(&self) {
        if let Some(m) = self.messages.get() {
            m.received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues an encoded frame (shared bytes, e.g. one broadcast frame).
    pub fn send_frame(&self, frame: Bytes) {
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut o) = self.out.lock() {
            // One frame always fits (its size is bounded by the message
            // size limit); what is bounded is frames piling up unread.
            if o.bytes > 0 && o.bytes + frame.len() > MAX_QUEUED {
                o.overflow = true;
            } else {
                if let Some(m) = self.messages.get()
                    && matches!(frame.first().map(|b| b & 0x0f), Some(1 | 2))
                {
                    m.sent.fetch_add(1, Ordering::Relaxed);
                }
                o.bytes += frame.len();
                o.frames.push_back(frame);
            }
        }
        self.wake.notify_one();
    }

    pub fn send_text(&self, text: &str) {
        self.send_frame(frame::frame(OpCode::Text, text.as_bytes()));
    }

    pub fn send_binary(&self, data: &[u8]) {
        self.send_frame(frame::frame(OpCode::Binary, data));
    }

    /// Starts the closing handshake with `code` after what is queued.
    pub fn close(&self, code: u16, reason: &str) {
        if self.closing.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(mut o) = self.out.lock() {
            o.close = Some((code, reason.to_string()));
        }
        self.wake.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// Settings of one connection, from its vhost.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub codec: Config,
    /// `ws-pingpong-secs`.
    pub ping_after: Option<Duration>,
    /// permessage-deflate, when negotiated (then `codec.compression` is on).
    pub deflate: Option<DeflateConfig>,
}

/// Longest a write may make no progress (the peer reads nothing) before the
/// connection is dropped as too slow, without `ws-pingpong-secs`: nginx's
/// `send_timeout`. With it, a peer that takes no byte for as long as it may
/// leave a ping unanswered is gone (capped at this).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How a connection ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Close handshake done (code we sent or received).
    Closed(u16),
    /// The peer went away without a close frame.
    Dropped,
    /// The peer stopped reading and too much was queued.
    TooSlow,
    /// No answer to our ping.
    Unresponsive,
}

/// Serves one upgraded connection until it ends. `shutdown` closes it with
/// 1001 (server going away).
pub async fn drive<IO>(
    mut io: IO,
    handle: Arc<ConnHandle>,
    mut session: Box<dyn Session>,
    cfg: DriverConfig,
    shutdown: CancellationToken,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut asm = Assembler::new(cfg.codec);
    // permessage-deflate: inflating here, deflating in `flush`, per
    // connection (context takeover makes compressed bytes connection-specific).
    let mut inflater = cfg.deflate.as_ref().map(|d| Inflater::new(&d.params));
    let mut deflater = cfg.deflate.as_ref().map(Deflater::new);
    let max_message_size = cfg.codec.max_message_size;
    let allow_reserved = cfg.codec.allow_reserved_close_codes;
    let mut tick = session.tick().map(|d| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let ping_after = cfg.ping_after;
    let stall = ping_after.map_or(SEND_TIMEOUT, |p| p.min(SEND_TIMEOUT));
    let idle = tokio::time::sleep(ping_after.unwrap_or(Duration::from_secs(3600)));
    tokio::pin!(idle);
    let mut ping_sent = false;
    let mut shutting_down = false;

    let ended = loop {
        tokio::select! {
            r = poll_fn(|cx| poll_read_messages(Pin::new(&mut io), cx, &mut asm)) => {
                match r {
                    Ok((0, _)) => break Ended::Dropped,
                    Ok((_, incoming)) => {
                        if let Some(d) = ping_after {
                            idle.as_mut().reset(tokio::time::Instant::now() + d);
                            ping_sent = false;
                        }
                        let mut close_seen = None;
                        let mut failed = None;
                        for m in incoming {
                            match m {
                                Message::Text(b) => {
                                    handle.received();
                                    session.on_message(&handle, Incoming::Text(b));
                                }
                                Message::Binary(b) => {
                                    handle.received();
                                    session.on_message(&handle, Incoming::Binary(b));
                                }
                                Message::Ping(p) => handle.send_frame(frame::frame(OpCode::Pong, &p)),
                                Message::Pong(_) => {}
                                Message::Compressed { text, payload } => {
                                    handle.received();
                                    match inflate(inflater.as_mut(), text, &payload, max_message_size) {
                                        Ok(m) => session.on_message(&handle, m),
                                        Err(code) => {
                                            failed = Some(code);
                                            break;
                                        }
                                    }
                                }
                                Message::Close(c) => {
                                    close_seen = Some(c.map_or(crate::close::code::NORMAL, |c| c.code));
                                    break;
                                }
                            }
                        }
                        if let Some(code) = failed {
                            handle.closing.store(true, Ordering::Relaxed);
                            let _ = flush(&mut io, &handle, &mut deflater, Some((code, String::new())), stall).await;
                            break Ended::Closed(code);
                        }
                        if let Some(code) = close_seen {
                            // Answer the peer's close with the same code, then end.
                            let already = handle.closing.swap(true, Ordering::Relaxed);
                            if !already {
                                let reply = if code == crate::close::code::NORMAL || crate::valid_close_code(code, allow_reserved) { code } else { crate::close::code::NORMAL };
                                let _ = flush(&mut io, &handle, &mut deflater, Some((reply, String::new())), stall).await;
                            } else {
                                let _ = flush(&mut io, &handle, &mut deflater, None, stall).await;
                            }
                            break Ended::Closed(code);
                        }
                    }
                    Err(ReadError::Io) => break Ended::Dropped,
                    Err(ReadError::Protocol(code)) => {
                        handle.closing.store(true, Ordering::Relaxed);
                        let _ = flush(&mut io, &handle, &mut deflater, Some((code, String::new())), stall).await;
                        break Ended::Closed(code);
                    }
                }
            }
            _ = handle.wake.notified() => {
                match flush_or_close(&mut io, &handle, &mut asm, &mut deflater, stall).await {
                    Step::Continue => {}
                    Step::Done(e) => break e,
                }
            }
            _ = async { match &mut tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                session.on_tick(&handle);
            }
            _ = &mut idle, if ping_after.is_some() => {
                if ping_sent {
                    break Ended::Unresponsive;
                }
                ping_sent = true;
                handle.send_frame(frame::frame(OpCode::Ping, b""));
                if let Some(d) = ping_after {
                    idle.as_mut().reset(tokio::time::Instant::now() + d);
                }
            }
            _ = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                handle.close(crate::close::code::GOING_AWAY, "server going away");
            }
        }
    };
    session.on_close(&handle);
    handle.closing.store(true, Ordering::Relaxed);
    // Over TLS, shutting down writes close_notify and what is still queued:
    // a peer that reads nothing must not hold the connection here either.
    let _ = tokio::time::timeout(stall, poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx))).await;
    ended
}

enum Step {
    Continue,
    Done(Ended),
}

/// Writes what is queued; if a close was asked for, sends it and waits for
/// the peer's close (bounded) before ending.
async fn flush_or_close<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    handle: &ConnHandle,
    asm: &mut Assembler,
    deflater: &mut Option<Deflater>,
    stall: Duration,
) -> Step {
    let close = match handle.out.lock() {
        Ok(mut o) => {
            if o.overflow {
                return Step::Done(Ended::TooSlow);
            }
            o.close.take()
        }
        Err(_) => return Step::Done(Ended::Dropped),
    };
    let Some((code, reason)) = close else {
        return match flush(io, handle, deflater, None, stall).await {
            Ok(()) => Step::Continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Step::Done(Ended::TooSlow),
            Err(_) => Step::Done(Ended::Dropped),
        };
    };
    if flush(io, handle, deflater, Some((code, reason)), stall)
        .await
        .is_err()
    {
        return Step::Done(Ended::Dropped);
    }
    // Wait for the peer's close frame, discarding anything else.
    let waited = tokio::time::timeout(CLOSE_WAIT, async {
        loop {
            match poll_fn(|cx| poll_read_messages(Pin::new(&mut *io), cx, asm)).await {
                Ok((0, _)) | Err(_) => return,
                Ok((_, msgs)) => {
                    if msgs.iter().any(|m| matches!(m, Message::Close(_))) {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let _ = waited;
    Step::Done(Ended::Closed(code))
}

/// Writes every queued frame (and a final close frame, if given), batching
/// them into vectored writes; with permessage-deflate, data frames are
/// compressed here, for this connection.
async fn flush<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    handle: &ConnHandle,
    deflater: &mut Option<Deflater>,
    close: Option<(u16, String)>,
    stall: Duration,
) -> std::io::Result<()> {
    let mut frames: VecDeque<Bytes> = match handle.out.lock() {
        Ok(mut o) => {
            o.bytes = 0;
            std::mem::take(&mut o.frames)
        }
        Err(_) => VecDeque::new(),
    };
    if let Some(d) = deflater {
        for f in frames.iter_mut() {
            *f = d.process(std::mem::take(f));
        }
    }
    if let Some((code, reason)) = close {
        frames.push_back(frame::close_frame(Some(code), &reason));
    }
    while !frames.is_empty() {
        let write = poll_fn(|cx| {
            let slices: Vec<IoSlice<'_>> =
                frames.iter().take(64).map(|b| IoSlice::new(b)).collect();
            Pin::new(&mut *io).poll_write_vectored(cx, &slices)
        });
        // A peer that reads nothing must not hold the connection (and what
        // is queued for it) forever.
        let n = tokio::time::timeout(stall, write)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut left = n;
        while left > 0 {
            let Some(front) = frames.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                frames.pop_front();
            } else {
                let _ = front.split_to(left);
                left = 0;
            }
        }
    }
    tokio::time::timeout(stall, poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// A compressed message, inflated (bounded by the message size limit) and,
/// for text, validated; or the close code to fail the connection with.
fn inflate(
    inflater: Option<&mut Inflater>,
    text: bool,
    payload: &[u8],
    limit: usize,
) -> Result<Incoming, u16> {
    // The codec yields compressed messages only when compression was negotiated.
    let inflater = inflater.ok_or(crate::close::code::PROTOCOL_ERROR)?;
    let data = inflater.inflate(payload, limit).map_err(|e| {
        tracing::debug!(error = %e, "WebSocket message does not inflate");
        e.close_code()
    })?;
    if !text {
        return Ok(Incoming::Binary(data));
    }
    if std::str::from_utf8(&data).is_err() {
        return Err(crate::close::code::INVALID_PAYLOAD);
    }
    Ok(Incoming::Text(data))
}

enum ReadError {
    Io,
    /// Close with this code.
    Protocol(u16),
}

/// What one read produced: bytes read (0 = end of stream) and the messages.
type ReadOutcome = Result<(usize, Vec<Message>), ReadError>;

/// Reads what is available into this thread's buffer and assembles messages.
fn poll_read_messages<IO: AsyncRead>(
    io: Pin<&mut IO>,
    cx: &mut Context<'_>,
    asm: &mut Assembler,
) -> Poll<ReadOutcome> {
    READ_BUF.with(|cell| {
        let Ok(mut buf) = cell.try_borrow_mut() else {
            return Poll::Ready(Err(ReadError::Io));
        };
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = match ready!(tokio_util::io::poll_read_buf(io, cx, &mut *buf)) {
            Ok(n) => n,
            Err(_) => {
                buf.clear();
                return Poll::Ready(Err(ReadError::Io));
            }
        };
        if n == 0 {
            buf.clear();
            return Poll::Ready(Ok((0, Vec::new())));
        }
        let mut out = Vec::new();
        loop {
            match asm.feed(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    buf.clear();
                    tracing::debug!(error = %e, "WebSocket protocol error");
                    return Poll::Ready(Err(ReadError::Protocol(e.close_code())));
                }
            }
        }
        Poll::Ready(Ok((n, out)))
    })
}
