//! WebSocket keep-alive against the real binary (SPEC §2.2
//! `ws-pingpong-secs`): with `"ws-pingpong-secs": "1"` a connection idle for
//! a second is pinged, one that then sends nothing for as long again is
//! dropped, one that answers pongs (or keeps talking) stays; without the
//! key nobody is pinged.
//!
//! Time bounds are generous (seconds, not milliseconds): they tell "pinged
//! after about a second" from "never", and "dropped after a few seconds" from
//! "kept", on a loaded machine. The driver is `crates/lwsws-ws/src/conn.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bin;
use common::ws::{NoFrame, Ws};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use std::time::{Duration, Instant};

struct Server {
    server: Lwsws,
    port: u16,
    _dir: ConfigDir,
}

/// `echo` as the default protocol; `global` is the body of the global object.
fn start(global: &str) -> Server {
    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    dir.write_conf(&format!(
        r#"{{ "global": {{ {global} }},
           "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
             "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
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

fn start_pinging() -> Server {
    start(r#""ws-pingpong-secs": "1""#)
}

#[test]
fn an_idle_client_is_pinged_after_the_interval() {
    let s = start_pinging();
    let mut ws = Ws::connect(s.port, "/", None);
    let t0 = Instant::now();
    let f = ws
        .recv_within(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no ping within 5 s: {e:?}\n{}", s.server.log()));
    let after = t0.elapsed();
    assert!(f.is(OpCode::Ping) && f.fin && !f.masked, "{f:?}");
    assert!(
        after >= Duration::from_millis(800),
        "pinged after {after:?}, before the connection was idle for a second"
    );
    assert!(
        after < Duration::from_secs(3),
        "pinged only after {after:?}"
    );
    // Answered, the connection goes on.
    ws.send_frame(true, OpCode::Pong, &f.payload);
    ws.send_text("still here");
    assert_eq!(ws.recv_text(), "still here");
}

#[test]
fn a_client_that_never_answers_is_disconnected() {
    let s = start_pinging();
    let mut ws = Ws::connect(s.port, "/", None);
    let t0 = Instant::now();
    let mut frames = Vec::new();
    let end = loop {
        match ws.recv_within(Duration::from_secs(8).saturating_sub(t0.elapsed())) {
            Ok(f) => frames.push(f),
            Err(e) => break e,
        }
    };
    let after = t0.elapsed();
    assert_eq!(
        end,
        NoFrame::Closed,
        "still connected after {after:?}; frames: {frames:?}"
    );
    assert!(
        frames.first().is_some_and(|f| f.is(OpCode::Ping)),
        "no ping before the end: {frames:?}"
    );
    // Pinged after ~1 s, dropped after ~1 s more: not before, and well
    // within 5 s.
    assert!(
        after >= Duration::from_millis(1500),
        "dropped after {after:?}"
    );
    assert!(
        after < Duration::from_secs(5),
        "dropped only after {after:?}"
    );
}

#[test]
fn a_client_that_answers_pongs_stays_connected() {
    let s = start_pinging();
    let mut ws = Ws::connect(s.port, "/", None);
    let t0 = Instant::now();
    let stay = Duration::from_millis(4500);
    let mut pings = 0;
    while t0.elapsed() < stay {
        match ws.recv_within(stay.saturating_sub(t0.elapsed())) {
            Ok(f) if f.is(OpCode::Ping) => {
                pings += 1;
                ws.send_frame(true, OpCode::Pong, &f.payload);
            }
            Ok(f) => panic!("unexpected frame {f:?}"),
            Err(NoFrame::Timeout) => {}
            Err(NoFrame::Closed) => panic!(
                "disconnected after {:?} and {pings} pings\n{}",
                t0.elapsed(),
                s.server.log()
            ),
        }
    }
    assert!(pings >= 2, "only {pings} pings in {stay:?}");
    ws.send_text("alive");
    assert_eq!(ws.recv_text(), "alive");
}

#[test]
fn a_client_that_keeps_talking_is_not_pinged() {
    let s = start_pinging();
    let mut ws = Ws::connect(s.port, "/", None);
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(3) {
        let msg = format!("message {n}");
        ws.send_text(&msg);
        let f = ws.recv();
        assert!(
            f.is(OpCode::Text),
            "pinged while busy, after {:?}: {f:?}",
            t0.elapsed()
        );
        assert_eq!(f.text(), msg);
        n += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn without_ws_pingpong_secs_nobody_is_pinged() {
    let s = start("");
    let mut ws = Ws::connect(s.port, "/", None);
    assert_eq!(
        ws.recv_within(Duration::from_millis(2500)),
        Err(NoFrame::Timeout)
    );
    ws.send_text("x");
    assert_eq!(ws.recv_text(), "x");
}

/// A quiet WebSocket outlives its vhost's `keepalive-timeout`, which is about
/// idle HTTP connections between requests (the head guard once ended every
/// WebSocket that said nothing for that long, 60 s by default).
#[test]
fn a_quiet_websocket_outlives_the_http_keepalive_timeout() {
    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    dir.write_conf(&format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
             "keepalive-timeout": "1",
             "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
             "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}] }}"#,
        www.display()
    ));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let mut ws = Ws::connect(port, "/", None);
    // Four times the keep-alive timeout without a byte either way.
    match ws.recv_within(Duration::from_secs(4)) {
        Err(NoFrame::Timeout) => {}
        other => panic!("a quiet WebSocket got {other:?}; log:\n{}", server.log()),
    }
    ws.send_text("still here");
    assert_eq!(ws.recv_text(), "still here");
}
