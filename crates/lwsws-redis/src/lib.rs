//! Broadcast rooms shared through Redis pub/sub (`ws-broadcast`, SPEC §6.6).
//!
//! Each worker keeps one link to Redis, run by one task: a pub/sub
//! connection subscribed to the channel of every room that has a local
//! member, and a second connection that publishes, in order, what local
//! members send. Connection tasks only ever push onto a bounded queue
//! ([`Backend::publish`]) or wake the link ([`Backend::rooms_changed`]);
//! they never wait on Redis. The sender's own worker has already delivered a
//! message to its local members, so every published message carries the
//! worker's random origin id and the worker skips its own when Redis echoes
//! them back: each member everywhere gets a message once.
//!
//! The link is lost when either connection fails or a keep-alive `PING` goes
//! unanswered; rooms then work locally while the task reconnects with capped
//! exponential back-off and jitter, resubscribing every room once back. One
//! line is logged when the link is lost and one when it is restored.
//!
//! On the wire a message is `1` (format version), the 16-byte origin id, the
//! opcode (`1` text, `2` binary) and the payload.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use lwsws_config::RedisUrl;
use lwsws_ws::OpCode;
use lwsws_ws::room::{Backend, BackendState, Hub};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, mpsc};

/// Messages waiting to be published, and their bytes; beyond either, sends
/// from local members still reach local members but are not passed on (and
/// are counted).
const QUEUE: usize = 16384;
const QUEUE_BYTES: usize = 128 << 20;
/// Messages are published in pieces of at most this size, so that a large
/// message (`ws-max-message-size` is 32 MiB by default) does not meet
/// Redis's limits on one pub/sub reply (`client-output-buffer-limit pubsub`).
const PIECE: usize = 256 << 10;
/// A message being reassembled from pieces may not grow beyond this.
const MAX_MESSAGE: usize = 1 << 30;
/// Messages sent to Redis in one pipeline.
const BATCH: usize = 512;
/// How long connecting, a pipeline or a `PING` may take before the link
/// counts as lost.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alive period on the pub/sub connection.
const PING_EVERY: Duration = Duration::from_secs(10);
/// First and longest waits between reconnection attempts (before jitter),
/// short enough that delivery resumes within seconds of Redis coming back.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A URL the Redis client refuses (the configuration checks most already).
pub type Error = redis::RedisError;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 16 + 1;
/// In the opcode byte: more pieces of this message follow.
const MORE: u8 = 0x80;

/// A hub whose rooms are shared through the Redis at `url`: channels are
/// named with `prefix` (SPEC §6.6). Starts the link task on the current
/// tokio runtime; the server starts and serves whether or not Redis is up.
pub fn hub(url: &RedisUrl, prefix: &str) -> Result<Arc<Hub>, Error> {
    let client = redis::Client::open(url.url.as_str())?;
    let shown = url.redacted();
    let rng = SystemRandom::new();
    let mut origin = [0u8; 16];
    // Without the system's randomness, the process id and clock keep
    // workers apart well enough.
    if rng.fill(&mut origin).is_err() {
        let seed = (u128::from(std::process::id()) << 64)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
        origin = seed.to_le_bytes();
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let shared = Arc::new(Shared {
        origin,
        queue: tx,
        changed: Notify::new(),
        state: AtomicU8::new(UNLINKED),
        dropped: AtomicU64::new(0),
        queued: AtomicUsize::new(0),
    });
    let hub = Hub::new(prefix, |weak| {
        let link = Link {
            client,
            shown,
            hub: weak,
            shared: shared.clone(),
            queue: Arc::new(Mutex::new(rx)),
            rng,
        };
        tokio::spawn(link.run());
        Arc::new(RedisBackend(shared)) as Arc<dyn Backend>
    });
    Ok(hub)
}

/// The backend's state as an atomic: linked to Redis or not.
const LINKED: u8 = 1;
const UNLINKED: u8 = 2;

/// A message to publish: its channel and its pieces as they go on the wire,
/// queued together so that no other message from this worker comes between
/// them on the channel.
type Outgoing = (Arc<str>, Vec<Bytes>);
/// The receiving end of the publish queue, held by one session at a time.
type Queue = Arc<Mutex<mpsc::Receiver<Outgoing>>>;

/// What connection tasks and the link task share.
struct Shared {
    origin: [u8; 16],
    queue: mpsc::Sender<Outgoing>,
    /// Wakes the link to bring its subscriptions in line with the hub.
    changed: Notify,
    state: AtomicU8,
    /// Messages not passed on because the queue was full.
    dropped: AtomicU64,
    /// Bytes in the queue.
    queued: AtomicUsize,
}

impl Shared {
    /// The pieces of a message as published: each is the format version,
    /// the origin, the opcode (with [`MORE`] on all but the last) and up to
    /// [`PIECE`] bytes of the payload.
    fn pieces(&self, kind: OpCode, payload: &[u8]) -> Vec<Bytes> {
        let op = match kind {
            OpCode::Binary => 2,
            _ => 1,
        };
        let n = payload.len().div_ceil(PIECE).max(1);
        (0..n)
            .map(|i| {
                let part =
                    &payload[(i * PIECE).min(payload.len())..((i + 1) * PIECE).min(payload.len())];
                let mut m = BytesMut::with_capacity(HEADER + part.len());
                m.put_u8(VERSION);
                m.put_slice(&self.origin);
                m.put_u8(if i + 1 < n { op | MORE } else { op });
                m.put_slice(part);
                m.freeze()
            })
            .collect()
    }
}

struct RedisBackend(Arc<Shared>);

impl Backend for RedisBackend {
    fn rooms_changed(&self) {
        self.0.changed.notify_one();
    }

    fn publish(&self, channel: &str, kind: OpCode, payload: &[u8]) {
        // While the link is down, rooms are local: nothing is queued to be
        // published late.
        if self.0.state.load(Ordering::Acquire) != LINKED {
            return;
        }
        let len = payload.len();
        let before = self.0.queued.fetch_add(len, Ordering::AcqRel);
        let fits = before == 0 || before + len <= QUEUE_BYTES;
        // Copied into pieces only when it will be queued.
        if !fits
            || self
                .0
                .queue
                .try_send((channel.into(), self.0.pieces(kind, payload)))
                .is_err()
        {
            self.0.queued.fetch_sub(len, Ordering::AcqRel);
            let n = self.0.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "ws-broadcast: Redis is not keeping up; messages reach local members only"
                );
            }
        }
    }

    fn state(&self) -> BackendState {
        match self.0.state.load(Ordering::Acquire) {
            LINKED => BackendState::Connected,
            _ => BackendState::Reconnecting,
        }
    }
}

/// The link task's state.
struct Link {
    client: redis::Client,
    /// The URL without its password, for logs.
    shown: String,
    hub: Weak<Hub>,
    shared: Arc<Shared>,
    queue: Queue,
    rng: SystemRandom,
}

/// Why a linked session ended.
type Lost = String;

impl Link {
    async fn run(self) {
        let mut attempt: u32 = 0;
        // Whether the loss has been logged (at start too: Redis down then
        // is an outage like any other).
        let mut down = false;
        loop {
            match self.connect().await {
                Ok((sink, stream, conn)) => {
                    attempt = 0;
                    self.discard_queued().await;
                    self.shared.state.store(LINKED, Ordering::Release);
                    if down {
                        tracing::warn!("ws-broadcast: Redis link restored ({})", self.shown);
                    } else {
                        tracing::info!("ws-broadcast: linked to Redis at {}", self.shown);
                    }
                    let why = self.session(sink, stream, conn).await;
                    self.shared.state.store(UNLINKED, Ordering::Release);
                    if self.hub.strong_count() == 0 {
                        return;
                    }
                    tracing::warn!(
                        "ws-broadcast: Redis link lost ({}: {why}); rooms are local to this worker until it is back",
                        self.shown
                    );
                    down = true;
                }
                Err(e) => {
                    if !down {
                        tracing::warn!(
                            "ws-broadcast: Redis link lost (cannot reach {}: {e}); rooms are local to this worker until it is back",
                            self.shown
                        );
                        down = true;
                    }
                }
            }
            if self.hub.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// 100 ms doubling up to 2 s, each wait cut by a random 0–50 % so that
    /// the workers of a fleet do not reconnect in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let full = BACKOFF_MIN
            .saturating_mul(1u32 << attempt.min(8))
            .min(BACKOFF_MAX);
        let mut b = [0u8; 1];
        let r = if self.rng.fill(&mut b).is_ok() {
            b[0]
        } else {
            128
        };
        full.mul_f64(1.0 - f64::from(r) / 510.0)
    }

    async fn connect(&self) -> Result<(PubSubSink, PubSubStream, MultiplexedConnection), Lost> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        let pubsub = tokio::time::timeout(IO_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (sink, stream) = pubsub.split();
        Ok((sink, stream, conn))
    }

    /// Messages queued before the link came (back) up were already
    /// delivered locally; they are not published late.
    async fn discard_queued(&self) {
        let mut q = self.queue.lock().await;
        while q.try_recv().is_ok() {}
        // Nothing is queued or in flight now (the last session's publisher
        // is gone, perhaps in the middle of a pipeline).
        self.shared.queued.store(0, Ordering::Release);
    }

    /// Runs one connected session until the link fails.
    async fn session(
        &self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        conn: MultiplexedConnection,
    ) -> Lost {
        let mut publisher = tokio::spawn(publish(conn, self.queue.clone(), self.shared.clone()));
        let mut partial = Partial::default();
        let mut subscribed: HashSet<Arc<str>> = HashSet::new();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        // The hub may have rooms already (members from before an outage).
        self.shared.changed.notify_one();
        let why = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => self.deliver(&mut partial, m.get_channel_name(), m.get_payload_bytes()),
                    None => break "connection closed".to_string(),
                },
                () = self.shared.changed.notified() => {
                    if let Err(e) = self.reconcile(&mut sink, &mut subscribed).await {
                        break e;
                    }
                }
                r = &mut publisher => break match r {
                    Ok(e) => e,
                    Err(e) => e.to_string(),
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(IO_TIMEOUT, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break "no answer to PING".to_string(),
                    }
                }
            }
        };
        publisher.abort();
        why
    }

    /// Subscribes to the channels of rooms that got local members and
    /// unsubscribes from those of rooms that lost them.
    async fn reconcile(
        &self,
        sink: &mut PubSubSink,
        subscribed: &mut HashSet<Arc<str>>,
    ) -> Result<(), Lost> {
        let Some(hub) = self.hub.upgrade() else {
            return Ok(());
        };
        let wanted: HashSet<Arc<str>> = hub.channels().into_iter().collect();
        drop(hub);
        let add: Vec<&str> = wanted.difference(subscribed).map(|c| &**c).collect();
        let remove: Vec<&str> = subscribed.difference(&wanted).map(|c| &**c).collect();
        if !add.is_empty() {
            timed(sink.subscribe(&add)).await?;
        }
        if !remove.is_empty() {
            timed(sink.unsubscribe(&remove)).await?;
        }
        *subscribed = wanted;
        Ok(())
    }

    /// A piece of a message from Redis: once the message is whole, to the
    /// local members of its room.
    fn deliver(&self, partial: &mut Partial, channel: &str, data: &[u8]) {
        assemble(
            &self.shared.origin,
            partial,
            channel,
            data,
            |kind, payload| {
                if let Some(hub) = self.hub.upgrade() {
                    hub.deliver(channel, kind, payload);
                }
            },
        );
    }
}

/// Adds a piece to the messages being reassembled and calls `whole` with a
/// message once its last piece is in — unless this worker (`own`) sent it
/// (its members have it already) or it is not one of ours.
fn assemble(
    own: &[u8; 16],
    partial: &mut Partial,
    channel: &str,
    data: &[u8],
    whole: impl FnOnce(OpCode, &[u8]),
) {
    if data.len() < HEADER || data[0] != VERSION || data[1..17] == own[..] {
        return;
    }
    let mut origin = [0u8; 16];
    origin.copy_from_slice(&data[1..17]);
    let op = data[17] & !MORE;
    let more = data[17] & MORE != 0;
    let piece = &data[HEADER..];
    let key = (origin, channel.to_string());
    let joined;
    let payload: &[u8] = match partial.remove(&key) {
        // A message's pieces follow one another on its channel.
        Some((first, mut buf)) if first == op => {
            if buf.len() + piece.len() > MAX_MESSAGE {
                return;
            }
            buf.extend_from_slice(piece);
            if more {
                partial.insert(key, (op, buf));
                return;
            }
            joined = buf;
            &joined
        }
        _ if more => {
            partial.insert(key, (op, BytesMut::from(piece)));
            return;
        }
        _ => piece,
    };
    match op {
        1 if std::str::from_utf8(payload).is_ok() => whole(OpCode::Text, payload),
        2 => whole(OpCode::Binary, payload),
        _ => {}
    }
}

async fn timed<T>(f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, Lost> {
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("Redis did not answer".to_string()),
    }
}

/// Publishes queued messages in order, in pipelines of up to [`BATCH`]
/// messages, until a pipeline fails.
async fn publish(mut conn: MultiplexedConnection, queue: Queue, shared: Arc<Shared>) -> Lost {
    let mut q = queue.lock().await;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if q.recv_many(&mut batch, BATCH).await == 0 {
            return "worker stopping".to_string();
        }
        let mut pipe = redis::pipe();
        let mut bytes = 0;
        for (channel, pieces) in batch.drain(..) {
            for p in pieces {
                bytes += p.len() - HEADER;
                pipe.cmd("PUBLISH").arg(&*channel).arg(&p[..]).ignore();
            }
        }
        let sent = timed(pipe.query_async::<()>(&mut conn)).await;
        shared.queued.fetch_sub(bytes, Ordering::AcqRel);
        if let Err(e) = sent {
            return e;
        }
    }
}

/// Messages whose first pieces have come, by origin and channel.
type Partial = HashMap<([u8; 16], String), (u8, BytesMut)>;

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(origin: u8) -> Shared {
        Shared {
            origin: [origin; 16],
            queue: mpsc::channel(1).0,
            changed: Notify::new(),
            state: AtomicU8::new(UNLINKED),
            dropped: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
        }
    }

    /// Runs `pieces` through `assemble` as the worker `own` would see them.
    fn receive(own: u8, pieces: &[(&str, Bytes)]) -> Vec<(String, OpCode, Vec<u8>)> {
        let mut partial = Partial::default();
        let mut out = Vec::new();
        for (channel, p) in pieces {
            assemble(&[own; 16], &mut partial, channel, p, |k, b| {
                out.push((channel.to_string(), k, b.to_vec()))
            });
        }
        out
    }

    #[test]
    fn large_messages_travel_in_pieces_and_come_out_whole() {
        let a = shared(1);
        let big: Vec<u8> = (0..PIECE * 2 + 7).map(|i| (i % 251) as u8).collect();
        let pieces = a.pieces(OpCode::Binary, &big);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.len() <= HEADER + PIECE));
        // Another worker's message on another channel may come between.
        let b = shared(2);
        let mut stream: Vec<(&str, Bytes)> = pieces.iter().map(|p| ("x", p.clone())).collect();
        stream.insert(1, ("y", b.pieces(OpCode::Text, "hé".as_bytes())[0].clone()));
        stream.push(("x", a.pieces(OpCode::Text, b"")[0].clone()));
        let got = receive(9, &stream);
        assert_eq!(
            got,
            vec![
                ("y".to_string(), OpCode::Text, "hé".as_bytes().to_vec()),
                ("x".to_string(), OpCode::Binary, big),
                ("x".to_string(), OpCode::Text, Vec::new()),
            ]
        );
        // The sender skips its own.
        assert!(receive(1, &stream[..1]).is_empty());
        assert_eq!(receive(1, &stream[1..2]).len(), 1);
    }

    #[test]
    fn foreign_or_broken_messages_are_ignored() {
        let mut bad_text = shared(3).pieces(OpCode::Text, b"ok")[0].to_vec();
        bad_text[HEADER] = 0xff;
        let mut other_version = shared(3).pieces(OpCode::Text, b"ok")[0].to_vec();
        other_version[0] = 2;
        let stream = [
            ("x", Bytes::from_static(b"hello from redis-cli")),
            ("x", Bytes::from(bad_text)),
            ("x", Bytes::from(other_version)),
        ];
        assert!(receive(9, &stream).is_empty());
    }
}
