//! The shipped server-status page in real headless Chromium: it loads from
//! lwsws, opens its WebSocket, and the connection count it shows rises when
//! another client connects. The screenshot is left in the test output
//! directory (`target/tmp/`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, repo};
use lwsws_testkit::{ConfigDir, Launch, Ready, free_port};
use std::process::Command;

#[test]
fn server_status_page_shows_live_counts_in_chromium() {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{"vhosts": [{{"name": "localhost", "port": "{port}", "interface": "127.0.0.1",
                "ws-protocols": [{{"dumb-increment-protocol": {{}},
                                   "lws-server-status": {{"update-ms": "300"}}}}],
                "mounts": [{{"mountpoint": "/server-status", "origin": "file://_lws_ddir_/lwsws/server-status",
                             "default": "server-status.html"}}]}}]}}"#
        ),
    );
    let share = repo().join("share");
    let _server = Launch::new(bin(), dir.path())
        .env("LWSWS_DATA_DIR", share.to_str().unwrap())
        .wait_for(Ready::Tcp(port))
        .start();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-status.png");
    let _ = std::fs::remove_file(&shot);
    let script = repo().join("crates/lwsws/tests/fixtures/browser/status_page.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/server-status/"))
        .arg(format!("ws://127.0.0.1:{port}/"))
        .arg(&shot)
        .output()
        .expect("run the browser driver (needs Debian's chromium and python3-websockets)");
    assert!(
        out.status.success(),
        "browser driver failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let before = seen["before"].as_u64().unwrap();
    let after = seen["after"].as_u64().unwrap();
    assert!(before >= 1, "the page's own WebSocket is counted: {seen}");
    assert!(
        after > before,
        "the count rose when a client connected: {seen}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "screenshot at {}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());
}
