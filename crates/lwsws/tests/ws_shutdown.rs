//! Stopping lwsws with WebSocket connections open (SPEC §4 SIGTERM, §6):
//! every connection, whatever its protocol, gets a close frame with 1001
//! (going away), and the process exits 0 within 10 s, also when a client
//! never answers the close.
//!
//! The clients are raw (`common/ws.rs`) plus one Python `websockets` client
//! (`fixtures/ws/ws_probe.py`); a status connection tells when they are all
//! connected. The shutdown path is `crates/lwsws/src/main.rs` (signals, grace
//! period) and `crates/lwsws-ws/src/conn.rs` (the close on cancellation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bin;
use common::ws::{Ws, probe};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// SPEC §4: finish within 10 s.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

struct Server {
    server: Lwsws,
    port: u16,
    _dir: ConfigDir,
}

/// `echo` (default), the counter, the mirror and server-status (every
/// 100 ms) on one vhost.
fn start() -> Server {
    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    dir.write_conf(&format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
             "ws-protocols": [{{ "echo": {{ "default": "1" }},
                                 "dumb-increment-protocol": {{}},
                                 "lws-mirror-protocol": {{}},
                                 "lws-server-status": {{ "update-ms": "100" }} }}],
             "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}] }}"#,
        www.display()
    ));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    Server {
        server,
        port,
        _dir: dir,
    }
}

impl Server {
    /// Waits until the status connection `watcher` reports `n` WebSockets.
    fn wait_for_ws_count(&self, watcher: &mut Ws, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let text = watcher.recv_text();
            last = serde_json::from_str(&text).unwrap();
            if last["i"]["connections"]["ws"] == n {
                return;
            }
        }
        panic!(
            "never {n} WebSocket connections; last status {last}\n{}",
            self.server.log()
        );
    }

    /// SIGTERM to the main process; returns when it was sent.
    fn terminate(&self) -> Instant {
        self.server.signal(Signal::SIGTERM);
        Instant::now()
    }

    /// Waits for the exit and checks it is 0 and within [`EXIT_WITHIN`] of
    /// `since`.
    fn exits_0(&mut self, since: Instant) {
        let left = EXIT_WITHIN.saturating_sub(since.elapsed()) + Duration::from_millis(500);
        let status = self.server.wait_exit(left).unwrap_or_else(|| {
            panic!(
                "still running {:?} after SIGTERM\n{}",
                since.elapsed(),
                self.server.log()
            )
        });
        assert_eq!(status.code(), Some(0), "{status}\n{}", self.server.log());
    }
}

#[test]
fn sigterm_closes_every_websocket_with_1001_and_exits_0() {
    let mut s = start();
    let port = s.port;
    let mut watcher = Ws::connect(port, "/", Some("lws-server-status"));
    let mut clients = vec![
        ("echo", Ws::connect(port, "/", None)),
        (
            "dumb-increment",
            Ws::connect(port, "/", Some("dumb-increment-protocol")),
        ),
        (
            "mirror",
            Ws::connect(port, "/", Some("lws-mirror-protocol")),
        ),
        (
            "mirror 2",
            Ws::connect(port, "/?mirror=x", Some("lws-mirror-protocol")),
        ),
    ];
    clients[0].1.send_text("hello");
    assert_eq!(clients[0].1.recv_text(), "hello");

    // And an independent client, waiting for the server to close.
    let python = std::thread::spawn(move || {
        probe(&json!({
            "url": format!("ws://127.0.0.1:{port}/"),
            "protocols": ["echo"],
            "ops": [["send", "x"], ["recv", 1], ["until-close"]],
        }))
    });
    s.wait_for_ws_count(&mut watcher, 1 + clients.len() as u64 + 1);
    clients.push(("status", watcher));

    let t0 = s.terminate();
    for (name, ws) in &mut clients {
        let close = ws.recv_close();
        assert_eq!(
            close.as_ref().map(|(c, _)| *c),
            Some(1001),
            "{name}: {close:?}\n{}",
            s.server.log()
        );
        // Answer, as a client should; then the server ends the connection.
        ws.send_close(1001, "");
        assert!(ws.ends_within(EXIT_WITHIN), "{name}: connection left open");
    }
    let out = python.join().unwrap();
    assert_eq!(out["received"], json!(["x"]), "{out}");
    assert_eq!(out["close_code"], 1001, "{out}");
    s.exits_0(t0);
}

#[test]
fn a_client_that_never_answers_the_close_does_not_hold_up_the_exit() {
    let mut s = start();
    let mut silent = Ws::connect(s.port, "/", Some("dumb-increment-protocol"));
    silent.recv_text();
    let t0 = s.terminate();
    // It reads the close frame but never sends its own.
    assert_eq!(silent.recv_close().map(|(c, _)| c), Some(1001));
    s.exits_0(t0);
    assert!(silent.ends_within(Duration::from_secs(5)));
}
