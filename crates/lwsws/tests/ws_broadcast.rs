//! Broadcast rooms shared through Redis (`ws-broadcast`, SPEC §6.6), against
//! the real binary and a real `redis-server` per test:
//! - two instances on one Redis: every member of a `lws-mirror-protocol`
//!   room, on either instance, gets each message exactly once, each
//!   sender's messages in order, text as text and binary as binary;
//! - a room is (vhost name, protocol, instance): another `?mirror=` name or
//!   another vhost on the other instance hears nothing;
//! - Redis killed: members of one instance still reach each other, the
//!   status page says `reconnecting`; Redis back on the same port:
//!   cross-instance delivery resumes within 5 s, the status says
//!   `connected`, and the outage and recovery are logged once each;
//! - Redis unreachable at start: lwsws starts and serves anyway, locally,
//!   and joins in once Redis comes;
//! - the old and the new generation of a SIGHUP reload share rooms;
//! - over `redis+unix://`, messages of exactly `ws-max-message-size`
//!   cross whole; Redis itself (`PUBSUB NUMSUB`) shows one subscription
//!   per instance while members are there and none once they have left;
//! - a plugin's rooms (the chat plugin's `room_send`) span instances too;
//! - bad `ws-broadcast` values are `--check` errors with file:line and key;
//! - without `ws-broadcast` the status page says `local`.
//!
//! An instance subscribes to a room only while it has a member there, so
//! right after a client joins, messages from other instances may not reach
//! it yet: each test first SYNCs (a client sends `sync-…` probes until the
//! others have seen one), and every receiver ignores `sync-…` messages.
//!
//! The rooms live in `crates/lwsws-ws/src/room.rs`, the mirror protocol in
//! `crates/lwsws-ws/src/builtin/mirror.rs`, the status in
//! `crates/lwsws-ws/src/builtin/server_status.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::ws::{Handshake, NoFrame, Ws};
use common::{alive, bin, check, get, live_children, stderr, stdout, wait_until};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use lwsws_ws::frame::encode_masked_frame;
use nix::sys::signal::Signal;
use redis_server::RedisServer;
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant};

const MIRROR: &str = "lws-mirror-protocol";
/// The second vhost of every instance, on the same port, chosen by `Host`.
const OTHER_VHOST: &str = "other.test";

/// How long a test waits for something that must happen (a sync, a batch
/// of messages, a worker): liveness bounds, not timing expectations.
const SETTLE: Duration = Duration::from_secs(20);
/// SPEC §6.6 / the issue: cross-instance delivery resumes within 5 s of
/// Redis coming back (reconnection back-off capped at about 2 s).
const RECOVERY: Duration = Duration::from_secs(5);
/// How long the status page may take to notice that Redis is gone.
const NOTICE: Duration = Duration::from_secs(5);
/// How long receivers keep listening after what they expect, for anything
/// extra (duplicates, leaks between rooms).
const QUIET: Duration = Duration::from_millis(500);
/// Interval of the `sync-…` probes.
const PROBE_EVERY: Duration = Duration::from_millis(50);

const LOST: &str = "ws-broadcast: Redis link lost";
const RESTORED: &str = "ws-broadcast: Redis link restored";

// ---------------------------------------------------------------------------
// Instances.

/// One lwsws instance: vhosts `localhost` (the mirror and server-status, a
/// `callback://lws-server-status` mount at `/status.json`, files at `/`)
/// and `other.test` (the mirror), both on `port`.
struct Instance {
    name: &'static str,
    port: u16,
    server: Lwsws,
    _dir: ConfigDir,
}

/// The configuration of an instance: `conf` holds `global` (with
/// `ws-broadcast` if given), `conf.d/site` the vhosts.
fn write_config(dir: &ConfigDir, port: u16, broadcast: Option<&str>, drain_secs: u32) {
    let www = dir.mkdir("www");
    std::fs::write(www.join("index.html"), "<p>lwsws broadcast test</p>\n").unwrap();
    let broadcast = broadcast
        .map(|url| format!(r#""ws-broadcast": "{url}","#))
        .unwrap_or_default();
    dir.write_conf(&format!(
        r#"# global settings of the instance
{{ "global": {{ {broadcast} "drain-timeout-secs": "{drain_secs}" }} }}
"#
    ));
    let www = www.display();
    dir.write_conf_d(
        "site",
        &format!(
            r#"// the broadcast test's vhosts
{{ "vhosts": [
  {{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
     "ws-protocols": [{{ "{MIRROR}": {{}}, "lws-server-status": {{}} }}],
     "mounts": [{{ "mountpoint": "/", "origin": "file://{www}", "default": "index.html" }},
                {{ "mountpoint": "/status.json", "origin": "callback://lws-server-status",
                   "pmo": [{{ "format": "json" }}] }}] }},
  {{ "name": "{OTHER_VHOST}", "port": "{port}", "interface": "127.0.0.1",
     "ws-protocols": [{{ "{MIRROR}": {{}} }}],
     "mounts": [{{ "mountpoint": "/", "origin": "file://{www}", "default": "index.html" }}] }}
] }}
"#
        ),
    );
}

impl Instance {
    /// Starts an instance sharing rooms through `broadcast` (a Redis URL),
    /// or with rooms of its own if `None`.
    fn start(name: &'static str, broadcast: Option<&str>) -> Instance {
        Instance::start_draining(name, broadcast, 10)
    }

    /// Like [`Instance::start`], with `drain-timeout-secs`.
    fn start_draining(name: &'static str, broadcast: Option<&str>, drain_secs: u32) -> Instance {
        let dir = ConfigDir::new();
        let port = free_port();
        write_config(&dir, port, broadcast, drain_secs);
        Instance::launch(name, dir, port)
    }

    /// Starts lwsws on the configuration already written in `dir` and waits
    /// until `port` accepts connections.
    fn launch(name: &'static str, dir: ConfigDir, port: u16) -> Instance {
        let server = Lwsws::start(bin(), &dir, &[], &[port]);
        Instance {
            name,
            port,
            server,
            _dir: dir,
        }
    }

    /// A mirror client of room `room` on vhost `localhost`.
    fn mirror(&self, room: &str) -> Ws {
        self.mirror_on("localhost", room)
    }

    /// A mirror client of room `room` on vhost `host`.
    fn mirror_on(&self, host: &str, room: &str) -> Ws {
        Handshake::new(self.port, &format!("/?mirror={room}"))
            .host(&format!("{host}:{}", self.port))
            .protocol(MIRROR)
            .open()
    }

    /// The status JSON (`GET /status.json`).
    fn status(&self) -> Value {
        let r = get(&format!("http://127.0.0.1:{}/status.json", self.port), &[]);
        assert_eq!(
            r.status,
            200,
            "instance {}: GET /status.json: {}\n--- log ---\n{}",
            self.name,
            r.text(),
            self.log()
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
            panic!(
                "instance {}: status is not JSON ({e}): {}",
                self.name,
                r.text()
            )
        });
        assert!(v["i"].is_object() && v["files"].is_array(), "{v}");
        v
    }

    /// Polls the status until `i.broadcast.backend` is `want` (and, if
    /// given, `i.broadcast.rooms` is `rooms`); panics after `within`.
    fn wait_broadcast(&self, want: &str, rooms: Option<u64>, within: Duration) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(within, || {
            last = self.status();
            let b = &last["i"]["broadcast"];
            b["backend"] == want && rooms.is_none_or(|n| b["rooms"].as_u64() == Some(n))
        });
        assert!(
            ok,
            "instance {}: status never showed broadcast backend {want:?}{} within {within:?}; \
             last i.broadcast: {}\n--- log ---\n{}",
            self.name,
            rooms
                .map(|n| format!(" with {n} rooms"))
                .unwrap_or_default(),
            last["i"]["broadcast"],
            self.log()
        );
        last
    }

    fn log(&self) -> String {
        self.server.log()
    }
}

// ---------------------------------------------------------------------------
// Messages.

/// A data message as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
}

impl Msg {
    fn text(&self) -> Option<&str> {
        match self {
            Msg::Text(t) => Some(t),
            Msg::Binary(_) => None,
        }
    }

    /// Sync probes, which every receiver ignores.
    fn is_sync(&self) -> bool {
        self.text().is_some_and(|t| t.starts_with("sync-"))
    }
}

/// The next data message, answering pings on the way; `None` if nothing
/// came before `deadline` (at least one short read is always tried).
/// Panics if the server closes the connection or sends a fragment.
fn next_msg(ws: &mut Ws, who: &str, deadline: Instant) -> Option<Msg> {
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(5));
        match ws.recv_within(left) {
            Ok(f) if f.is(OpCode::Ping) => ws.send_frame(true, OpCode::Pong, &f.payload),
            Ok(f) if f.is(OpCode::Pong) => {}
            Ok(f) if f.is(OpCode::Text) && f.fin => {
                return Some(Msg::Text(
                    String::from_utf8(f.payload).expect("text frame is UTF-8"),
                ));
            }
            Ok(f) if f.is(OpCode::Binary) && f.fin => return Some(Msg::Binary(f.payload)),
            Ok(f) if f.is(OpCode::Close) => {
                panic!("{who}: the server closed the connection: {:?}", f.close())
            }
            Ok(f) => panic!("{who}: unexpected frame {f:?}"),
            Err(NoFrame::Timeout) => return None,
            Err(NoFrame::Closed) => panic!("{who}: connection ended"),
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// The next message that is not a sync probe, within [`SETTLE`].
fn next_real(ws: &mut Ws, who: &str) -> Msg {
    let deadline = Instant::now() + SETTLE;
    loop {
        match next_msg(ws, who, deadline) {
            Some(m) if m.is_sync() => {}
            Some(m) => return m,
            None => panic!("{who}: no message within {SETTLE:?}"),
        }
    }
}

/// Receives until `n` messages that are not sync probes have come; `Err`
/// with what came if they do not within [`SETTLE`].
fn collect(ws: &mut Ws, who: &str, n: usize) -> Result<Vec<Msg>, String> {
    let deadline = Instant::now() + SETTLE;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match next_msg(ws, who, deadline) {
            Some(m) if m.is_sync() => {}
            Some(m) => got.push(m),
            None => {
                return Err(format!(
                    "{who}: {} of {n} messages within {SETTLE:?}; last ones: {:?}",
                    got.len(),
                    &got[got.len().saturating_sub(5)..]
                ));
            }
        }
    }
    Ok(got)
}

/// Whatever non-sync messages arrive within `d`.
fn extra(ws: &mut Ws, who: &str, d: Duration) -> Vec<Msg> {
    let deadline = Instant::now() + d;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        match next_msg(ws, who, deadline) {
            Some(m) if m.is_sync() => {}
            Some(m) => got.push(m),
            None => break,
        }
    }
    got
}

/// SYNC: `from` sends `sync-TAG-N` every [`PROBE_EVERY`] until each client
/// of `to` has received one of them; panics after `within`. Every other
/// message a receiver sees meanwhile must be a sync probe too.
fn sync(tag: &str, from: &mut Ws, to: &mut [(&str, &mut Ws)], within: Duration) -> Duration {
    let t0 = Instant::now();
    let mine = format!("sync-{tag}-");
    let mut pending: Vec<bool> = vec![true; to.len()];
    let mut n = 0u64;
    while pending.iter().any(|p| *p) {
        let waiting: Vec<&str> = to
            .iter()
            .zip(&pending)
            .filter(|(_, p)| **p)
            .map(|((w, _), _)| *w)
            .collect();
        assert!(
            t0.elapsed() < within,
            "sync {tag}: {waiting:?} saw none of {n} probes within {within:?}"
        );
        from.send_text(&format!("{mine}{n}"));
        n += 1;
        let until = Instant::now() + PROBE_EVERY;
        for ((who, ws), p) in to.iter_mut().zip(pending.iter_mut()) {
            while *p {
                match next_msg(ws, who, until) {
                    Some(Msg::Text(t)) if t.starts_with(&mine) => *p = false,
                    Some(m) if m.is_sync() => {}
                    Some(m) => panic!("{who}: {m:?} while syncing {tag}"),
                    None => break,
                }
            }
        }
    }
    t0.elapsed()
}

/// `N messages: [the first five]`, for assertion messages.
fn show(msgs: &[Msg]) -> String {
    format!("{} messages: {:?}", msgs.len(), &msgs[..msgs.len().min(5)])
}

/// The texts of `got` that start with `prefix`.
fn from_sender<'a>(got: &'a [Msg], prefix: &str) -> Vec<&'a str> {
    got.iter()
        .filter_map(Msg::text)
        .filter(|t| t.starts_with(prefix))
        .collect()
}

/// `PREFIX0`..`PREFIX{n-1}`.
fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Asserts that `got` is exactly `want_a` and `want_b` interleaved: each
/// message once, each sequence in its order, nothing else.
fn assert_two_sequences(who: &str, got: &[Msg], a: (&str, &[String]), b: (&str, &[String])) {
    for (prefix, want) in [a, b] {
        let seen = from_sender(got, prefix);
        if seen != want {
            let first_bad = seen
                .iter()
                .zip(want)
                .position(|(s, w)| *s != w.as_str())
                .unwrap_or(seen.len().min(want.len()));
            panic!(
                "{who}: the messages of sender {prefix:?} are not each once and in order: \
                 {} received, {} sent; first difference at index {first_bad}: \
                 received {:?}, sent {:?}",
                seen.len(),
                want.len(),
                seen.get(first_bad),
                want.get(first_bad)
            );
        }
    }
    let others: Vec<&Msg> = got
        .iter()
        .filter(|m| {
            !m.text()
                .is_some_and(|t| t.starts_with(a.0) || t.starts_with(b.0))
        })
        .collect();
    assert!(
        others.is_empty(),
        "{who}: {} unexpected messages, the first ones {:?}",
        others.len(),
        &others[..others.len().min(5)]
    );
}

// ---------------------------------------------------------------------------

/// Two instances, one Redis: 500 + 500 messages from a member on each side
/// reach all three members exactly once, in each sender's order; binary
/// stays binary.
#[test]
fn mirror_rooms_span_instances() {
    let redis = RedisServer::start(free_port());
    let a = Instance::start("A", Some(&redis.url()));
    let b = Instance::start("B", Some(&redis.url()));
    let mut a1 = a.mirror("room1");
    let mut a2 = a.mirror("room1");
    let mut b1 = b.mirror("room1");

    // Both ways, so that both instances are subscribed.
    sync(
        "a",
        &mut a1,
        &mut [("b1", &mut b1), ("a2", &mut a2)],
        SETTLE,
    );
    sync(
        "b",
        &mut b1,
        &mut [("a1", &mut a1), ("a2", &mut a2)],
        SETTLE,
    );
    a.wait_broadcast("connected", Some(1), SETTLE);
    b.wait_broadcast("connected", Some(1), SETTLE);

    const EACH: usize = 500;
    let want_a = numbered("a-", EACH);
    let want_b = numbered("b-", EACH);
    let mut tx_a1 = a1.sender();
    let mut tx_b1 = b1.sender();
    let results: Vec<(&str, Result<Vec<Msg>, String>)> = std::thread::scope(|scope| {
        // Everyone reads while the two senders send at once.
        let readers: Vec<_> = [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)]
            .into_iter()
            .map(|(who, ws)| scope.spawn(move || (who, collect(ws, who, 2 * EACH))))
            .collect();
        let (wa, wb) = (&want_a, &want_b);
        let sa = scope.spawn(move || wa.iter().for_each(|m| tx_a1.send_text(m)));
        let sb = scope.spawn(move || wb.iter().for_each(|m| tx_b1.send_text(m)));
        sa.join().unwrap();
        sb.join().unwrap();
        readers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (who, got) in &results {
        let got = got.as_ref().unwrap_or_else(|e| {
            panic!(
                "{e}\n--- log A ---\n{}\n--- log B ---\n{}",
                a.log(),
                b.log()
            )
        });
        assert_two_sequences(who, got, ("a-", &want_a), ("b-", &want_b));
    }

    // Binary from A arrives as binary, byte for byte (not UTF-8 either).
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    a1.send_frame(true, OpCode::Binary, &bytes);
    for (who, ws) in [("b1", &mut b1), ("a2", &mut a2), ("a1", &mut a1)] {
        match next_real(ws, who) {
            Msg::Binary(got) => assert!(
                got == bytes,
                "{who}: binary payload differs ({} bytes received, 1000 sent)",
                got.len()
            ),
            m => panic!("{who}: {m:?} instead of the binary message"),
        }
    }
    // A text message right after it is still text.
    b1.send_text("text after binary");
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        assert_eq!(
            next_real(ws, who),
            Msg::Text("text after binary".into()),
            "{who}"
        );
    }
    // Nothing more: no duplicate came late.
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        let more = extra(ws, who, QUIET);
        assert!(more.is_empty(), "{who}: extra messages {}", show(&more));
    }
}

/// What a sender of [`large_messages_cross_instances_whole`] sends: small
/// and large (2 MiB binary, 600 KiB text) messages, each starting with
/// `tag` so that receivers can tell the senders apart.
fn large_batch(tag: u8, seed: u32) -> Vec<Msg> {
    // Not compressible, not UTF-8.
    let mut x = seed;
    let mut binary = vec![tag];
    binary.extend((0..(2 << 20)).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    let t = char::from(tag);
    let text: String = std::iter::once(t)
        .chain((0..600 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)))
        .chain("é – end".chars())
        .collect();
    vec![
        Msg::Text(format!("{t}before")),
        Msg::Binary(binary),
        Msg::Text(format!("{t}between")),
        Msg::Text(text),
        Msg::Text(format!("{t}after")),
    ]
}

/// Whether `m` starts with `tag`.
fn tagged(m: &Msg, tag: u8) -> bool {
    match m {
        Msg::Text(t) => t.as_bytes().first() == Some(&tag),
        Msg::Binary(b) => b.first() == Some(&tag),
    }
}

fn describe(m: &Msg) -> String {
    match m {
        Msg::Text(t) => format!("text of {} bytes", t.len()),
        Msg::Binary(b) => format!("binary of {} bytes", b.len()),
    }
}

/// Large messages (megabytes, larger than one Redis publish of the
/// implementation's), from a member on each instance at once, reach every
/// member whole, as the type they were, in each sender's order with the
/// small messages around them.
#[test]
fn large_messages_cross_instances_whole() {
    let redis = RedisServer::start(free_port());
    let a = Instance::start("A", Some(&redis.url()));
    let b = Instance::start("B", Some(&redis.url()));
    let mut a1 = a.mirror("room1");
    let mut b1 = b.mirror("room1");
    sync("a", &mut a1, &mut [("b1", &mut b1)], SETTLE);
    sync("b", &mut b1, &mut [("a1", &mut a1)], SETTLE);

    let from_a = large_batch(b'A', 0x9e37_79b9);
    let from_b = large_batch(b'B', 0x7f4a_7c15);
    let n = from_a.len() + from_b.len();
    let mut tx_a = a1.stream().try_clone().unwrap();
    let mut tx_b = b1.stream().try_clone().unwrap();
    let results: Vec<(&str, Result<Vec<Msg>, String>)> = std::thread::scope(|scope| {
        let readers: Vec<_> = [("a1", &mut a1), ("b1", &mut b1)]
            .into_iter()
            .map(|(who, ws)| scope.spawn(move || (who, collect(ws, who, n))))
            .collect();
        for (tx, batch) in [(&mut tx_a, &from_a), (&mut tx_b, &from_b)] {
            scope.spawn(move || {
                for m in batch {
                    let (op, payload) = match m {
                        Msg::Text(t) => (OpCode::Text, t.as_bytes()),
                        Msg::Binary(bytes) => (OpCode::Binary, bytes.as_slice()),
                    };
                    let mut frame = bytes::BytesMut::new();
                    encode_masked_frame(&mut frame, true, op, false, [7, 1, 3, 9], payload);
                    tx.write_all(&frame).unwrap();
                }
            });
        }
        readers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (who, got) in results {
        let got = got.unwrap_or_else(|e| {
            panic!(
                "{e}\n--- log A ---\n{}\n--- log B ---\n{}",
                a.log(),
                b.log()
            )
        });
        for (tag, sent) in [(b'A', &from_a), (b'B', &from_b)] {
            let seen: Vec<&Msg> = got.iter().filter(|m| tagged(m, tag)).collect();
            assert_eq!(
                seen.len(),
                sent.len(),
                "{who}: from sender {}: {:?}",
                char::from(tag),
                seen.iter().map(|m| describe(m)).collect::<Vec<_>>()
            );
            for (i, (g, w)) in seen.iter().zip(sent).enumerate() {
                assert!(
                    *g == w,
                    "{who}: message {i} of sender {} is {} instead of {}",
                    char::from(tag),
                    describe(g),
                    describe(w)
                );
            }
        }
        let others: Vec<String> = got
            .iter()
            .filter(|m| !tagged(m, b'A') && !tagged(m, b'B'))
            .map(describe)
            .collect();
        assert!(others.is_empty(), "{who}: unexpected {others:?}");
    }
}

/// A room is (vhost name, protocol, instance): members of room1 on A reach
/// room1 on B, but not room2 on B nor room1 of the other vhost on B.
#[test]
fn other_rooms_and_vhosts_stay_isolated_across_instances() {
    let redis = RedisServer::start(free_port());
    let a = Instance::start("A", Some(&redis.url()));
    let b = Instance::start("B", Some(&redis.url()));
    let mut a1 = a.mirror("room1");
    let mut b1 = b.mirror("room1");
    // The other rooms have members on both instances, and are synced, so
    // that B is subscribed to them: a message of room1 published on the
    // wrong channel would reach them.
    let mut a_room2 = a.mirror("room2");
    let mut b_room2 = b.mirror("room2");
    let mut a_other = a.mirror_on(OTHER_VHOST, "room1");
    let mut b_other = b.mirror_on(OTHER_VHOST, "room1");

    sync("a", &mut a1, &mut [("b1", &mut b1)], SETTLE);
    sync("b", &mut b1, &mut [("a1", &mut a1)], SETTLE);
    sync(
        "room2",
        &mut a_room2,
        &mut [("b_room2", &mut b_room2)],
        SETTLE,
    );
    sync(
        "other",
        &mut a_other,
        &mut [("b_other", &mut b_other)],
        SETTLE,
    );
    a.wait_broadcast("connected", Some(3), SETTLE);
    b.wait_broadcast("connected", Some(3), SETTLE);

    // room1's exchange, both ways.
    const EACH: usize = 100;
    let want_a = numbered("a-", EACH);
    let want_b = numbered("b-", EACH);
    for i in 0..EACH {
        a1.send_text(&want_a[i]);
        b1.send_text(&want_b[i]);
    }
    for (who, ws) in [("a1", &mut a1), ("b1", &mut b1)] {
        let got = collect(ws, who, 2 * EACH).unwrap_or_else(|e| panic!("{e}"));
        assert_two_sequences(who, &got, ("a-", &want_a), ("b-", &want_b));
    }

    // The others heard nothing of it, on either instance.
    for (who, ws) in [
        ("b_room2 (room2 on B)", &mut b_room2),
        ("b_other (room1 of other.test on B)", &mut b_other),
        ("a_room2 (room2 on A)", &mut a_room2),
        ("a_other (room1 of other.test on A)", &mut a_other),
    ] {
        let heard = extra(ws, who, QUIET);
        assert!(
            heard.is_empty(),
            "{who} received messages of localhost's room1: {}",
            show(&heard)
        );
    }
    // And their own rooms still work across instances.
    b_other.send_text("other vhost from B");
    assert_eq!(
        next_real(&mut a_other, "a_other"),
        Msg::Text("other vhost from B".into())
    );
    assert!(extra(&mut a1, "a1", QUIET).is_empty());
}

/// Redis killed: local delivery goes on, the status says `reconnecting`;
/// Redis back on the same port: cross-instance delivery resumes within 5 s,
/// the status says `connected`, one `link lost` and one `link restored`.
#[test]
fn redis_outage_and_recovery() {
    let mut redis = RedisServer::start(free_port());
    let a = Instance::start("A", Some(&redis.url()));
    let b = Instance::start("B", Some(&redis.url()));
    let mut a1 = a.mirror("room1");
    let mut a2 = a.mirror("room1");
    let mut b1 = b.mirror("room1");
    sync(
        "a",
        &mut a1,
        &mut [("b1", &mut b1), ("a2", &mut a2)],
        SETTLE,
    );
    sync(
        "b",
        &mut b1,
        &mut [("a1", &mut a1), ("a2", &mut a2)],
        SETTLE,
    );
    a.wait_broadcast("connected", Some(1), SETTLE);
    for inst in [&a, &b] {
        assert_eq!(
            inst.log().matches(LOST).count(),
            0,
            "instance {}: link lost while Redis runs\n{}",
            inst.name,
            inst.log()
        );
    }

    // The outage.
    redis.stop();
    let outage = Instant::now();
    a.wait_broadcast("reconnecting", None, NOTICE);
    b.wait_broadcast("reconnecting", None, NOTICE);
    // Members of one instance still reach each other, once each, in order.
    let local = numbered("local-", 10);
    for m in &local {
        a1.send_text(m);
    }
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2)] {
        let got = collect(ws, who, local.len()).unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
        assert_eq!(
            from_sender(&got, "local-"),
            local,
            "{who}: local delivery during the outage"
        );
    }
    b1.send_text("sync-b-local");
    let echoed = {
        let deadline = Instant::now() + SETTLE;
        let mut seen = false;
        while !seen {
            match next_msg(&mut b1, "b1", deadline) {
                Some(Msg::Text(t)) if t == "sync-b-local" => seen = true,
                Some(_) => {}
                None => break,
            }
        }
        seen
    };
    assert!(echoed, "b1: no echo of its own message during the outage");
    // Let the outage last through several reconnection attempts.
    let min_outage = Duration::from_secs(3);
    std::thread::sleep(min_outage.saturating_sub(outage.elapsed()));
    a.wait_broadcast("reconnecting", Some(1), NOTICE);

    // Redis back, on the same port.
    redis.restart();
    let back = Instant::now();
    // Whatever B received during the outage (A's local messages, late or
    // not at all) is not looked at: only the probes count from here.
    let mine = "sync-r-";
    let mut n = 0;
    let mut resumed = None;
    while resumed.is_none() {
        assert!(
            back.elapsed() < RECOVERY,
            "cross-instance delivery (A to B) not resumed within {RECOVERY:?} of Redis \
             coming back ({n} probes sent)\n--- log A ---\n{}\n--- log B ---\n{}",
            a.log(),
            b.log()
        );
        a1.send_text(&format!("{mine}{n}"));
        n += 1;
        let until = Instant::now() + PROBE_EVERY;
        while let Some(m) = next_msg(&mut b1, "b1", until) {
            if m.text().is_some_and(|t| t.starts_with(mine)) {
                resumed = Some(back.elapsed());
                break;
            }
        }
    }
    eprintln!(
        "A to B resumed {:?} after Redis came back",
        resumed.unwrap()
    );
    // And B to A.
    let left = RECOVERY.saturating_sub(back.elapsed()) + Duration::from_millis(500);
    drain_outage(&mut a1, "a1");
    drain_outage(&mut a2, "a2");
    sync("b2", &mut b1, &mut [("a1", &mut a1), ("a2", &mut a2)], left);
    a.wait_broadcast("connected", Some(1), RECOVERY);
    b.wait_broadcast("connected", Some(1), RECOVERY);

    drain_outage(&mut b1, "b1");

    // Exactly once and in order again.
    const EACH: usize = 50;
    let want_x = numbered("x-", EACH);
    let want_y = numbered("y-", EACH);
    for i in 0..EACH {
        a1.send_text(&want_x[i]);
        b1.send_text(&want_y[i]);
    }
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        let got = collect(ws, who, 2 * EACH)
            .unwrap_or_else(|e| panic!("{e}\n--- log A ---\n{}", a.log()));
        assert_two_sequences(who, &got, ("x-", &want_x), ("y-", &want_y));
        let more = extra(ws, who, QUIET);
        assert!(more.is_empty(), "{who}: extra messages {}", show(&more));
    }

    // One line for the outage, one for the recovery, on each instance.
    for inst in [&a, &b] {
        let log = inst.log();
        assert_eq!(
            (log.matches(LOST).count(), log.matches(RESTORED).count()),
            (1, 1),
            "instance {}: expected exactly one {LOST:?} and one {RESTORED:?}\n--- log ---\n{log}",
            inst.name
        );
        assert!(
            log.find(LOST) < log.find(RESTORED),
            "instance {}: restored before lost\n{log}",
            inst.name
        );
    }
}

/// Reads what `ws` has received or receives within 100 ms, where only sync
/// probes and the outage's `local-…` messages (which a member on the other
/// instance may or may not get) can be pending, and discards it.
fn drain_outage(ws: &mut Ws, who: &str) {
    let deadline = Instant::now() + Duration::from_millis(100);
    while let Some(m) = next_msg(ws, who, deadline) {
        assert!(
            m.is_sync() || m.text().is_some_and(|t| t.starts_with("local-")),
            "{who}: unexpected {m:?}"
        );
    }
}

/// Redis not there at start: lwsws starts, serves HTTP, members of one
/// instance reach each other, the status says `reconnecting`; once Redis
/// comes, `connected`, and the room (joined before) is shared with a
/// second instance.
#[test]
fn redis_unreachable_at_start() {
    let redis_port = free_port();
    let url = format!("redis://127.0.0.1:{redis_port}");
    let a = Instance::start("A", Some(&url));

    let page = get(&format!("http://127.0.0.1:{}/", a.port), &[]);
    assert_eq!(page.status, 200, "{}", a.log());
    assert!(
        page.text().contains("lwsws broadcast test"),
        "{}",
        page.text()
    );

    let mut a1 = a.mirror("room1");
    let mut a2 = a.mirror("room1");
    a1.send_text("hello without redis");
    for (who, ws) in [("a2", &mut a2), ("a1", &mut a1)] {
        assert_eq!(
            next_real(ws, who),
            Msg::Text("hello without redis".into()),
            "{who}\n{}",
            a.log()
        );
    }
    a.wait_broadcast("reconnecting", Some(1), NOTICE);
    // Attempts go on in the background; the log says so once.
    std::thread::sleep(Duration::from_secs(3));
    let log = a.log();
    assert_eq!(
        log.matches(LOST).count(),
        1,
        "expected exactly one {LOST:?} while Redis was never there\n{log}"
    );
    assert_eq!(log.matches(RESTORED).count(), 0, "{log}");
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2)] {
        let more = extra(ws, who, Duration::from_millis(100));
        assert!(more.is_empty(), "{who}: extra messages {}", show(&more));
    }

    // Redis comes.
    let redis = RedisServer::start(redis_port);
    let came = Instant::now();
    a.wait_broadcast("connected", Some(1), RECOVERY);
    eprintln!("connected {:?} after Redis came", came.elapsed());
    assert!(
        a.server.wait_for_log(RESTORED, RECOVERY),
        "no {RESTORED:?}\n{}",
        a.log()
    );
    // The room a1 and a2 joined before is subscribed now: a member on a
    // second instance shares it, both ways.
    let b = Instance::start("B", Some(&redis.url()));
    let mut b1 = b.mirror("room1");
    sync("a", &mut a1, &mut [("b1", &mut b1)], SETTLE);
    sync(
        "b",
        &mut b1,
        &mut [("a1", &mut a1), ("a2", &mut a2)],
        SETTLE,
    );
    b1.send_text("from B");
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        assert_eq!(next_real(ws, who), Msg::Text("from B".into()), "{who}");
        let more = extra(ws, who, QUIET);
        assert!(more.is_empty(), "{who}: extra messages {}", show(&more));
    }
    let log = a.log();
    assert_eq!(
        (log.matches(LOST).count(), log.matches(RESTORED).count()),
        (1, 1),
        "{log}"
    );
}

// ---------------------------------------------------------------------------
// Reload.

/// The value of ` NAME=value` (or ` NAME="value"`) in a log line.
fn field(line: &str, name: &str) -> Option<String> {
    let rest = &line[line.find(&format!(" {name}="))? + name.len() + 2..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted[..quoted.find('"')?].to_string(),
        None => rest.split_whitespace().next()?.to_string(),
    })
}

/// Waits for the supervisor's `worker ready generation=N pid=P` line.
fn ready_pid(server: &Lwsws, generation: u64) -> u32 {
    let find = || {
        server
            .log()
            .lines()
            .filter(|l| l.contains("worker ready"))
            .find(|l| field(l, "generation").and_then(|g| g.parse().ok()) == Some(generation))
            .and_then(|l| field(l, "pid")?.parse().ok())
    };
    assert!(
        wait_until(SETTLE, || find().is_some()),
        "generation {generation} never ready\n--- log ---\n{}",
        server.log()
    );
    find().unwrap()
}

/// A client of the old generation and one of the new generation, during a
/// SIGHUP reload, are in the same room: messages reach both ways, once.
#[test]
fn reload_generations_share_rooms() {
    let redis = RedisServer::start(free_port());
    // Long drain: the old generation keeps c1 until c1 leaves.
    let inst = Instance::start_draining("A", Some(&redis.url()), 120);
    let old_pid = ready_pid(&inst.server, 1);
    let s = inst.wait_broadcast("connected", Some(0), SETTLE);
    assert_eq!(s["i"]["generation"], 1, "{s}");

    let mut c1 = inst.mirror("room1");
    let s = inst.wait_broadcast("connected", Some(1), SETTLE);
    assert_eq!(s["i"]["pid"], old_pid, "c1's worker: {s}");

    inst.server.signal(Signal::SIGHUP);
    let new_pid = ready_pid(&inst.server, 2);
    assert!(
        inst.server
            .wait_for_log("a newer generation serves generation=1 ", SETTLE),
        "generation 1 never told to drain\n{}",
        inst.log()
    );
    // New connections go to generation 2, which has no room yet.
    let s = inst.wait_broadcast("connected", Some(0), SETTLE);
    assert_eq!(s["i"]["generation"], 2, "{s}");
    assert_eq!(s["i"]["pid"], new_pid, "{s}");
    let mut c2 = inst.mirror("room1");
    // c2 is generation 2's member of the room (and its only WebSocket).
    let s = inst.wait_broadcast("connected", Some(1), SETTLE);
    assert_eq!(s["i"]["generation"], 2, "{s}");
    assert_eq!(s["i"]["connections"]["ws"], 1, "{s}");
    // c1 still holds generation 1 open.
    assert!(alive(old_pid), "generation 1 (pid {old_pid}) is gone");
    let workers = live_children(inst.server.pid());
    assert!(
        workers.contains(&old_pid) && workers.contains(&new_pid),
        "workers {workers:?}, expected {old_pid} (generation 1) and {new_pid} (2)\n{}",
        inst.log()
    );

    sync("old", &mut c1, &mut [("c2", &mut c2)], SETTLE);
    sync("new", &mut c2, &mut [("c1", &mut c1)], SETTLE);

    const EACH: usize = 100;
    let want_1 = numbered("one-", EACH);
    let want_2 = numbered("two-", EACH);
    for i in 0..EACH {
        c1.send_text(&want_1[i]);
        c2.send_text(&want_2[i]);
    }
    for (who, ws) in [
        ("c1 (generation 1)", &mut c1),
        ("c2 (generation 2)", &mut c2),
    ] {
        let got = collect(ws, who, 2 * EACH)
            .unwrap_or_else(|e| panic!("{e}\n--- log ---\n{}", inst.log()));
        assert_two_sequences(who, &got, ("one-", &want_1), ("two-", &want_2));
        let more = extra(ws, who, QUIET);
        assert!(more.is_empty(), "{who}: extra messages {}", show(&more));
    }

    // c1 was generation 1's last connection: when it leaves, generation 1
    // finishes (long before its drain timeout).
    assert!(alive(old_pid), "generation 1 ended while c1 was open");
    c1.send_close(1000, "");
    assert!(
        inst.server
            .wait_for_log("old generation finished generation=1 ", SETTLE),
        "generation 1 did not finish after c1 left\n{}",
        inst.log()
    );
    assert!(wait_until(SETTLE, || !alive(old_pid)));
    // c2's room lives on.
    c2.send_text("after generation 1");
    assert_eq!(
        next_real(&mut c2, "c2"),
        Msg::Text("after generation 1".into())
    );
}

// ---------------------------------------------------------------------------
// Configuration and status.

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {text:?}"));
    text[..at].matches('\n').count() + 1
}

#[test]
fn bad_ws_broadcast_values_are_check_errors() {
    // The issue's three, then forms the Redis client would refuse at run
    // time (a host in a socket URL, a query).
    for bad in [
        "redis://",
        "http://x",
        "redis://127.0.0.1:70000",
        "redis+unix://host/run/redis.sock",
        "redis://127.0.0.1:6379/?protocol=resp9",
    ] {
        let dir = ConfigDir::new();
        write_config(&dir, free_port(), Some(bad), 10);
        let conf_text = std::fs::read_to_string(dir.path().join("conf")).unwrap();
        let line = line_of(&conf_text, "\"ws-broadcast\"");
        let out = check(&dir);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "--check accepted \"ws-broadcast\": {bad:?}\nstdout: {}\nstderr: {err}",
            stdout(&out)
        );
        let place = format!("{}/conf:{line}:", dir.path().display());
        let all = format!("{err}{}", stdout(&out));
        assert!(
            all.lines()
                .any(|l| l.contains(&place) && l.contains("ws-broadcast")),
            "{bad:?}: no diagnostic naming {place} and \"ws-broadcast\":\n{all}"
        );
    }
    // The control: good values of each form pass.
    for good in [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/2",
        "rediss://redis.example:6380",
        "redis+unix:///run/redis/redis.sock",
    ] {
        let dir = ConfigDir::new();
        write_config(&dir, free_port(), Some(good), 10);
        let out = check(&dir);
        assert!(
            out.status.success(),
            "--check refused \"ws-broadcast\": {good:?}\n{}",
            stderr(&out)
        );
    }
}

#[test]
fn status_without_ws_broadcast_shows_the_local_backend() {
    let inst = Instance::start("A", None);
    let s = inst.wait_broadcast("local", Some(0), SETTLE);
    assert!(s["i"]["broadcast"]["rooms"].is_u64(), "{s}");
    let mut c1 = inst.mirror("room1");
    let mut c2 = inst.mirror("room2");
    inst.wait_broadcast("local", Some(2), SETTLE);
    c1.send_text("local only");
    assert_eq!(next_real(&mut c1, "c1"), Msg::Text("local only".into()));
    assert!(extra(&mut c2, "c2", QUIET).is_empty());
    let log = inst.log();
    assert!(!log.contains(LOST) && !log.contains(RESTORED), "{log}");
}

/// An instance with `extra` vhost keys on `localhost` (e.g. a size limit).
fn start_with(name: &'static str, broadcast: &str, extra: &str) -> Instance {
    let dir = ConfigDir::new();
    let port = free_port();
    write_config(&dir, port, Some(broadcast), 10);
    let site = dir.path().join("conf.d/site");
    let text = std::fs::read_to_string(&site).unwrap().replacen(
        r#""interface": "127.0.0.1","#,
        &format!(r#""interface": "127.0.0.1", {extra}"#),
        1,
    );
    std::fs::write(&site, text).unwrap();
    Instance::launch(name, dir, port)
}

/// Over `redis+unix://`: messages of exactly `ws-max-message-size` (4 MiB
/// here), text and binary, cross instances whole and keep their type; each
/// instance subscribes to the room's channel while it has a member there
/// and unsubscribes when the last one leaves (as Redis itself reports).
#[test]
fn unix_socket_link_carries_messages_of_the_size_limit() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let redis = RedisServer::start(free_port());
    let url = redis.unix_url();
    let limit = format!(r#""ws-max-message-size": "{LIMIT}","#);
    let a = start_with("A", &url, &limit);
    let b = start_with("B", &url, &limit);
    let channel = format!("lwsws:localhost/{MIRROR}/big");
    assert_eq!(redis.subscribers(&channel), 0);
    let mut a1 = a.mirror("big");
    let mut b1 = b.mirror("big");
    a.wait_broadcast("connected", Some(1), SETTLE);
    b.wait_broadcast("connected", Some(1), SETTLE);
    sync("a", &mut a1, &mut [("b1", &mut b1)], SETTLE);
    sync("b", &mut b1, &mut [("a1", &mut a1)], SETTLE);
    assert_eq!(
        redis.subscribers(&channel),
        2,
        "one subscription per instance"
    );

    let text: String = (0..LIMIT)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let binary: Vec<u8> = (0..LIMIT).map(|i| (i * 7 % 251) as u8).collect();
    let mut frame = bytes::BytesMut::new();
    encode_masked_frame(
        &mut frame,
        true,
        OpCode::Text,
        false,
        [1, 2, 3, 4],
        text.as_bytes(),
    );
    a1.stream().try_clone().unwrap().write_all(&frame).unwrap();
    let mut frame = bytes::BytesMut::new();
    encode_masked_frame(
        &mut frame,
        true,
        OpCode::Binary,
        false,
        [5, 6, 7, 8],
        &binary,
    );
    b1.stream().try_clone().unwrap().write_all(&frame).unwrap();
    for (who, ws) in [("a1", &mut a1), ("b1", &mut b1)] {
        let got = collect(ws, who, 2).unwrap_or_else(|e| {
            panic!(
                "{e}\n--- log A ---\n{}\n--- log B ---\n{}",
                a.log(),
                b.log()
            )
        });
        let texts: Vec<&Msg> = got.iter().filter(|m| matches!(m, Msg::Text(_))).collect();
        let binaries: Vec<&Msg> = got.iter().filter(|m| matches!(m, Msg::Binary(_))).collect();
        assert_eq!(
            (texts.len(), binaries.len()),
            (1, 1),
            "{who}: {}",
            show(&got)
        );
        assert!(
            *texts[0] == Msg::Text(text.clone()),
            "{who}: the text changed"
        );
        assert!(
            *binaries[0] == Msg::Binary(binary.clone()),
            "{who}: the binary changed"
        );
        assert!(extra(ws, who, QUIET).is_empty(), "{who}: a message twice");
    }

    // The last member of each instance leaves: both unsubscribe.
    for mut ws in [a1, b1] {
        ws.send_close(1000, "");
        let _ = ws.ends_within(NOTICE);
    }
    assert!(
        wait_until(RECOVERY, || redis.subscribers(&channel) == 0),
        "{channel} still has {} subscribers after every member left",
        redis.subscribers(&channel)
    );
    a.wait_broadcast("connected", Some(0), SETTLE);
}

/// A plugin's rooms (the Rust chat plugin's `room_send`) span instances
/// like the mirror's: each member everywhere gets each message once, in
/// each sender's order.
#[test]
fn plugin_rooms_span_instances() {
    let redis = RedisServer::start(free_port());
    let chat = common::chat_library();
    let start = |name: &'static str| {
        let dir = ConfigDir::new();
        let plugins = dir.mkdir("plugins");
        std::fs::copy(&chat, plugins.join("chat.so")).unwrap();
        let www = dir.mkdir("www");
        let port = free_port();
        dir.write_conf(&format!(
            r#"{{ "global": {{ "ws-broadcast": "{}", "plugin-dir": "{}" }},
               "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
                  "ws-protocols": [{{ "lwsws-chat": {{ "room": "r1" }} }}],
                  "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}] }}"#,
            redis.url(),
            plugins.display(),
            www.display()
        ));
        Instance::launch(name, dir, port)
    };
    let a = start("A");
    let b = start("B");
    let connect = |i: &Instance| Ws::connect(i.port, "/", Some("lwsws-chat"));
    let (mut a1, mut a2, mut b1) = (connect(&a), connect(&a), connect(&b));
    // Until B hears A (and A hears B), the subscriptions are not in place.
    let probe = |tag: &str, from: &mut Ws, to: &mut Ws| {
        let deadline = Instant::now() + SETTLE;
        for n in 0.. {
            assert!(Instant::now() < deadline, "{tag}: no probe crossed");
            from.send_text(&format!("probe-{tag}-{n}"));
            while let Some(m) = next_msg(to, "receiver", Instant::now() + PROBE_EVERY) {
                if m.text()
                    .is_some_and(|t| t.starts_with(&format!("guest: probe-{tag}-")))
                {
                    return;
                }
            }
        }
    };
    probe("a", &mut a1, &mut b1);
    probe("b", &mut b1, &mut a2);
    // Let stray probes arrive, then drop them.
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        let _ = extra(ws, who, QUIET);
    }
    const N: usize = 50;
    for i in 0..N {
        a1.send_text(&format!("a-{i}"));
        b1.send_text(&format!("b-{i}"));
    }
    for (who, ws) in [("a1", &mut a1), ("a2", &mut a2), ("b1", &mut b1)] {
        let got = collect(ws, who, 2 * N).unwrap_or_else(|e| {
            panic!(
                "{e}\n--- log A ---\n{}\n--- log B ---\n{}",
                a.log(),
                b.log()
            )
        });
        for sender in ["a", "b"] {
            let seen: Vec<&str> = got
                .iter()
                .filter_map(Msg::text)
                .filter_map(|t| t.strip_prefix("guest: "))
                .filter(|t| t.starts_with(&format!("{sender}-")))
                .collect();
            let want: Vec<String> = (0..N).map(|i| format!("{sender}-{i}")).collect();
            assert_eq!(seen, want, "{who}: messages of sender {sender}");
        }
        assert!(extra(ws, who, QUIET).is_empty(), "{who}: a message twice");
    }
}
