//! WebSocket upgrades under a proxy mount reach the upstream (SPEC §3.5):
//! a real client (`fixtures/proxy/ws_client.py`, Python `websockets`)
//! talks through lwsws to a real echo upstream (`fixtures/proxy/ws_echo.py`);
//! text, non-ASCII and large binary messages come back intact, the upstream
//! is reached at the mapped path, close codes and reasons cross in both
//! directions, and an upstream that dies ends the client's connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::proxy::{Upstream, start_proxy, ws_client};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// lwsws with `/ws` → the echo upstream's root; `log` is where the upstream
/// notes each close it saw.
struct Proxy {
    server: Lwsws,
    up: Upstream,
    port: u16,
    log: PathBuf,
    _dir: ConfigDir,
}

fn start() -> Proxy {
    let dir = ConfigDir::new();
    let log = dir.path().join("closes.log");
    let up = Upstream::start("ws_echo.py", &[log.to_str().unwrap()]);
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(r#"{{ "mountpoint": "/ws", "origin": "{}" }}"#, up.url("/")),
    );
    Proxy {
        server,
        up,
        port,
        log,
        _dir: dir,
    }
}

impl Proxy {
    /// Runs the client against `ws://127.0.0.1:PORT{path}` and returns what
    /// it printed. The client gives up by itself after 30 s.
    fn client(&self, path: &str, action: &str) -> serde_json::Value {
        let url = format!("ws://127.0.0.1:{}{path}", self.port);
        ws_client(&url, action).unwrap_or_else(|e| {
            panic!(
                "ws_client.py {url} {action} failed:\n{e}\n--- lwsws ---\n{}\n--- upstream ---\n{}",
                self.server.log(),
                self.up.log()
            )
        })
    }

    /// Waits (10 s at most) until the upstream has noted `line`.
    fn upstream_noted(&self, line: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.lines().any(|l| l == line) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The answers every client run gets before it closes.
fn assert_echoes(out: &serde_json::Value, upstream_path: &str) {
    assert_eq!(
        out["texts"],
        serde_json::json!(["hello", "h\u{e9}llo w\u{f6}rld \u{2603}", upstream_path]),
        "{out}"
    );
    assert_eq!(out["binary_equal"], true, "{out}");
    assert!(out.get("unexpected").is_none(), "{out}");
}

#[test]
fn messages_round_trip_and_the_upstreams_close_code_reaches_the_client() {
    let p = start();
    let out = p.client("/ws/chat/room?x=1", "server-close");
    assert_echoes(&out, "/chat/room?x=1");
    assert_eq!(out["close_code"], 4001, "{out}");
    assert_eq!(out["close_reason"], "bye now", "{out}");
    assert!(
        p.upstream_noted("closed 4001 bye now"),
        "{:?}",
        std::fs::read_to_string(&p.log)
    );
}

#[test]
fn the_clients_close_code_reaches_the_upstream() {
    let p = start();
    let out = p.client("/ws", "client-close");
    assert_echoes(&out, "/");
    // The upstream answers a close with the same code.
    assert_eq!(out["close_code"], 4002, "{out}");
    assert!(
        p.upstream_noted("closed 4002 client bye"),
        "{:?}",
        std::fs::read_to_string(&p.log)
    );
}

#[test]
fn several_connections_at_once_stay_apart() {
    let p = start();
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let p = &p;
                s.spawn(move || (i, p.client(&format!("/ws/c{i}"), "server-close")))
            })
            .collect();
        for run in runs {
            let (i, out) = run.join().unwrap();
            assert_echoes(&out, &format!("/c{i}"));
            assert_eq!(out["close_code"], 4001, "{out}");
        }
    });
}

#[test]
fn an_upstream_that_dies_ends_the_clients_connection() {
    let mut p = start();
    let out = p.client("/ws/x", "upstream-dies");
    assert_echoes(&out, "/x");
    // No close frame came: 1006, "abnormal closure", as the client saw the
    // connection end.
    assert_eq!(out["close_code"], 1006, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.up.running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!p.up.running(), "the upstream should have exited");
}
