//! The builtin WebSocket protocols against the real binary (SPEC §6.4), with
//! the original's wire behaviour:
//! - `dumb-increment-protocol`: a counter from 0, one up per message;
//!   `reset\n` starts it again; `closeme\n` closes with 1001 `seeya`;
//! - `lws-mirror-protocol`: a message reaches every connection of its vhost
//!   and `?mirror=` instance, the sender included, in the order each sender
//!   sent; other instances and other vhosts hear nothing;
//! - `lws-server-status` (and its alias `lws-status`): JSON every
//!   `update-ms`, vhosts unless `hide-vhosts`, `filespath` contents read
//!   afresh for each update, the WebSocket count moving with connections.
//!
//! The protocols live in `crates/lwsws-ws/src/builtin/`; the browser pages
//! that use them are tested in their own files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bin;
use common::ws::{Handshake, Ws, probe};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MIRROR: &str = "lws-mirror-protocol";
const COUNTER: &str = "dumb-increment-protocol";
const STATUS: &str = "lws-server-status";

/// How long a test waits for a status update showing what it expects: a
/// liveness bound (updates come every 300 ms).
const STATUS_DEADLINE: Duration = Duration::from_secs(10);

/// One port, three vhosts chosen by `Host`:
/// - `localhost` (first): `echo` (default), the counter, the mirror, and
///   the status protocol every 300 ms with `filespath` = `status.txt` in the
///   config directory (absolute) and `rel.txt` (relative to it);
/// - `other.test`: the mirror, and status with `hide-vhosts`;
/// - `legacy.test`: status under the original plugin's name, `lws-status`.
struct Server {
    server: Lwsws,
    port: u16,
    /// The absolute `filespath` file of `localhost`'s status protocol.
    status_file: PathBuf,
    dir: ConfigDir,
}

fn start() -> Server {
    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    let status_file = dir.write_file("status.txt", "first value");
    dir.write_file("rel.txt", "relative file");
    let www = www.display();
    dir.write_conf(&format!(
        r#"{{ "vhosts": [
        {{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
           "ws-protocols": [{{
             "echo": {{ "default": "1" }},
             "{COUNTER}": {{}},
             "{MIRROR}": {{}},
             "{STATUS}": {{ "update-ms": "300", "filespath": "{}", "filespath": "rel.txt" }}
           }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }},
        {{ "name": "other.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-protocols": [{{
             "{MIRROR}": {{ "default": "1" }},
             "{STATUS}": {{ "update-ms": "300", "hide-vhosts": "1" }}
           }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }},
        {{ "name": "legacy.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-protocols": [{{ "lws-status": {{ "update-ms": "300" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }}
        ] }}"#,
        status_file.display()
    ));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    Server {
        server,
        port,
        status_file,
        dir,
    }
}

impl Server {
    /// A connection to `path` on `localhost` asking for `protocol`.
    fn ws(&self, path: &str, protocol: &str) -> Ws {
        Ws::connect(self.port, path, Some(protocol))
    }

    /// A connection to `path` on vhost `host` asking for `protocol`.
    fn ws_on(&self, host: &str, path: &str, protocol: &str) -> Ws {
        Handshake::new(self.port, path)
            .host(&format!("{host}:{}", self.port))
            .protocol(protocol)
            .open()
    }
}

// ---- dumb-increment-protocol ----

/// The next counter value.
fn number(ws: &mut Ws) -> u64 {
    let t = ws.recv_text();
    t.parse()
        .unwrap_or_else(|_| panic!("counter sent {t:?}, not a number"))
}

#[test]
fn the_counter_starts_at_0_and_goes_up_by_one() {
    let s = start();
    let mut ws = s.ws("/", COUNTER);
    let got: Vec<u64> = (0..20).map(|_| number(&mut ws)).collect();
    let want: Vec<u64> = (0..20).collect();
    assert_eq!(got, want);
}

#[test]
fn reset_restarts_the_counter() {
    let s = start();
    let mut ws = s.ws("/", COUNTER);
    // Let it count for a while.
    let mut last = number(&mut ws);
    while last < 30 {
        let n = number(&mut ws);
        assert_eq!(n, last + 1);
        last = n;
    }
    ws.send_text("reset\n");
    // Values sent before the reset was read may still come; then it starts
    // near 0 and counts up again.
    let mut restarted = None;
    for _ in 0..200 {
        let n = number(&mut ws);
        if n < last {
            restarted = Some(n);
            break;
        }
        assert_eq!(n, last + 1, "before the reset took effect");
        last = n;
    }
    let first = restarted.expect("the counter never went back after reset");
    assert!(first <= 2, "after reset the counter went on from {first}");
    let next = number(&mut ws);
    assert_eq!(next, first + 1);
}

#[test]
fn closeme_closes_with_1001_seeya() {
    let s = start();
    let mut ws = s.ws("/", COUNTER);
    number(&mut ws);
    ws.send_text("closeme\n");
    assert_eq!(ws.recv_close(), Some((1001, "seeya".to_owned())));
    ws.send_close(1001, "");
    assert!(ws.ends_within(Duration::from_secs(10)));

    // As an independent client sees it.
    let out = probe(&json!({
        "url": format!("ws://127.0.0.1:{}/", s.port),
        "protocols": [COUNTER],
        "ops": [["recv", 3], ["send", "closeme\n"], ["until-close"]],
    }));
    assert_eq!(out["subprotocol"], COUNTER, "{out}");
    assert_eq!(out["received"][0], "0", "{out}");
    assert_eq!(out["close_code"], 1001, "{out}");
    assert_eq!(out["close_reason"], "seeya", "{out}");
}

// ---- lws-mirror-protocol ----

/// The next `n` texts `ws` receives.
fn texts(ws: &mut Ws, n: usize) -> Vec<String> {
    (0..n).map(|_| ws.recv_text()).collect()
}

#[test]
fn a_message_reaches_all_three_clients_in_order() {
    let s = start();
    let mut clients: Vec<Ws> = (0..3).map(|_| s.ws("/", MIRROR)).collect();
    let sent: Vec<String> = (0..200).map(|i| format!("message {i}")).collect();
    for m in &sent {
        clients[1].send_text(m);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(texts(ws, sent.len()), sent, "client {i}");
    }
    // Binary messages are mirrored as binary.
    clients[2].send_frame(true, OpCode::Binary, &[0, 1, 2, 255]);
    for ws in &mut clients {
        let f = ws.recv();
        assert!(f.is(OpCode::Binary), "{f:?}");
        assert_eq!(f.payload, [0, 1, 2, 255]);
    }
}

#[test]
fn two_senders_at_once_keep_their_own_order_everywhere() {
    let s = start();
    let mut clients: Vec<Ws> = (0..3).map(|_| s.ws("/", MIRROR)).collect();
    const EACH: usize = 100;
    std::thread::scope(|scope| {
        for (name, ws) in [("a", &clients[0]), ("b", &clients[1])] {
            let mut tx = ws.sender();
            scope.spawn(move || {
                for i in 0..EACH {
                    tx.send_text(&format!("{name} {i}"));
                }
            });
        }
    });
    for (c, ws) in clients.iter_mut().enumerate() {
        let got = texts(ws, 2 * EACH);
        for name in ["a", "b"] {
            let from: Vec<&str> = got
                .iter()
                .filter(|t| t.starts_with(&format!("{name} ")))
                .map(String::as_str)
                .collect();
            let want: Vec<String> = (0..EACH).map(|i| format!("{name} {i}")).collect();
            assert_eq!(from, want, "client {c}, sender {name}");
        }
    }
}

#[test]
fn mirror_instances_are_isolated() {
    let s = start();
    let mut one_a = s.ws("/?mirror=one", MIRROR);
    let mut one_b = s.ws("/other/path?x=1&mirror=one", MIRROR);
    let mut two = s.ws("/?mirror=two", MIRROR);
    let mut default = s.ws("/", MIRROR);

    one_a.send_text("for one");
    assert_eq!(one_b.recv_text(), "for one");
    // Each hears its own message first: nothing of instance one got there.
    two.send_text("for two");
    assert_eq!(two.recv_text(), "for two");
    default.send_text("for default");
    assert_eq!(default.recv_text(), "for default");
    // And instance one heard nothing of the others: after the messages
    // above were mirrored, its next messages are its own.
    one_a.send_text("one again");
    assert_eq!(texts(&mut one_a, 2), ["for one", "one again"]);
    assert_eq!(one_b.recv_text(), "one again");
    two.send_text("two again");
    assert_eq!(two.recv_text(), "two again");
    default.send_text("default again");
    assert_eq!(default.recv_text(), "default again");
}

#[test]
fn vhosts_have_separate_mirrors() {
    let s = start();
    let mut here = s.ws("/", MIRROR);
    let mut here2 = s.ws("/", MIRROR);
    let mut there = s.ws_on("other.test", "/", MIRROR);
    // The same instance name on both vhosts, too.
    let mut there2 = s.ws_on("other.test", "/", MIRROR);

    here.send_text("on localhost");
    assert_eq!(here2.recv_text(), "on localhost");
    there.send_text("on other.test");
    assert_eq!(there2.recv_text(), "on other.test");
    assert_eq!(there.recv_text(), "on other.test");
    here.send_text("localhost again");
    assert_eq!(texts(&mut here, 2), ["on localhost", "localhost again"]);
    assert_eq!(here2.recv_text(), "localhost again");
    there2.send_text("other again");
    assert_eq!(there.recv_text(), "other again");
}

// ---- lws-server-status ----

/// The next status update, parsed; panics unless it is JSON of the
/// original's outer shape.
fn status(ws: &mut Ws) -> Value {
    let t = ws.recv_text();
    let v: Value =
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("status is not JSON ({e}): {t}"));
    assert!(v["i"].is_object(), "no \"i\" object: {v}");
    assert!(v["files"].is_array(), "no \"files\" array: {v}");
    v
}

/// The server-wide WebSocket count of a status update.
fn ws_count(v: &Value) -> u64 {
    v["i"]["connections"]["ws"]
        .as_u64()
        .unwrap_or_else(|| panic!("no i.connections.ws: {v}"))
}

/// Reads updates until one satisfies `want`; panics after `STATUS_DEADLINE`.
fn status_until(ws: &mut Ws, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + STATUS_DEADLINE;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = status(ws);
        if want(&last) {
            return last;
        }
    }
    panic!("no status update with {what} within {STATUS_DEADLINE:?}; last: {last}");
}

#[test]
fn status_json_arrives_every_update_ms() {
    let s = start();
    let mut ws = s.ws("/", STATUS);
    let t0 = Instant::now();
    // One at once, then one every 300 ms.
    let updates: Vec<Value> = (0..4).map(|_| status(&mut ws)).collect();
    assert!(
        t0.elapsed() < STATUS_DEADLINE,
        "four updates took {:?}",
        t0.elapsed()
    );
    for v in &updates {
        let i = &v["i"];
        assert!(i["server"].is_string(), "{v}");
        assert!(i["uptime"].is_u64(), "{v}");
        assert!(ws_count(v) >= 1, "this very connection is open: {v}");
        assert!(i["connections"]["http"].is_u64(), "{v}");
        assert!(i["requests"].is_u64(), "{v}");
    }
}

#[test]
fn vhosts_are_listed_unless_hidden() {
    let s = start();
    let mut ws = s.ws("/", STATUS);
    let v = status(&mut ws);
    let names: Vec<&str> = v["i"]["vhosts"]
        .as_array()
        .unwrap_or_else(|| panic!("no i.vhosts: {v}"))
        .iter()
        .map(|vh| vh["name"].as_str().unwrap_or_else(|| panic!("{vh}")))
        .collect();
    for name in ["localhost", "other.test", "legacy.test"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    let mut hidden = s.ws_on("other.test", "/", STATUS);
    for _ in 0..2 {
        let v = status(&mut hidden);
        assert!(v["i"].get("vhosts").is_none(), "hide-vhosts: {v}");
        assert!(!v.to_string().contains("legacy.test"), "hide-vhosts: {v}");
    }
}

#[test]
fn filespath_contents_are_sent_and_follow_the_file() {
    let s = start();
    let mut ws = s.ws("/", STATUS);
    let path = s.status_file.display().to_string();
    let val_of = |v: &Value| -> Option<String> {
        v["files"]
            .as_array()?
            .iter()
            .find(|f| f["path"] == path.as_str())
            .and_then(|f| f["val"].as_str().map(str::to_owned))
    };
    let v = status(&mut ws);
    assert_eq!(val_of(&v).as_deref(), Some("first value"), "{v}");

    std::fs::write(&s.status_file, "second value\nwith two lines").unwrap();
    status_until(&mut ws, "the new file contents", |v| {
        val_of(v).as_deref() == Some("second value\nwith two lines")
    });
}

#[test]
fn a_relative_filespath_is_read_from_the_config_directory() {
    let s = start();
    let mut ws = s.ws("/", STATUS);
    let v = status(&mut ws);
    let found = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["val"] == "relative file");
    assert!(
        found,
        "rel.txt (in {}) missing from {v}",
        s.dir.path().display()
    );
}

#[test]
fn the_lws_status_alias_works() {
    let s = start();
    let (reply, ws) = Handshake::new(s.port, "/")
        .host(&format!("legacy.test:{}", s.port))
        .protocol("lws-status")
        .send();
    assert_eq!(reply.status, 101, "{}", s.server.log());
    assert_eq!(reply.header("sec-websocket-protocol"), Some("lws-status"));
    let mut ws = ws.unwrap();
    let v = status(&mut ws);
    assert!(ws_count(&v) >= 1, "{v}");
    status(&mut ws);
}

#[test]
fn the_websocket_count_follows_connections() {
    let s = start();
    let mut watcher = s.ws("/", STATUS);
    let before = ws_count(&status(&mut watcher));

    let mut other = Ws::connect(s.port, "/", None);
    other.send_text("hello");
    assert_eq!(other.recv_text(), "hello");
    status_until(&mut watcher, &format!("ws = {}", before + 1), |v| {
        ws_count(v) == before + 1
    });

    other.send_close(1000, "");
    assert!(other.ends_within(Duration::from_secs(10)));
    drop(other);
    status_until(&mut watcher, &format!("ws = {before} again"), |v| {
        ws_count(v) == before
    });
}

#[test]
fn status_updates_start_again_after_everyone_left() {
    let s = start();
    for round in 0..3 {
        let mut ws = s.ws("/", STATUS);
        // The first update comes at once; the next ones only if the
        // periodic updates run for this connection.
        for _ in 0..3 {
            status(&mut ws);
        }
        ws.send_close(1000, "");
        assert!(ws.ends_within(Duration::from_secs(10)), "round {round}");
        drop(ws);
        // Long enough for the update task to see an empty room and stop.
        std::thread::sleep(Duration::from_millis(700));
    }
}
