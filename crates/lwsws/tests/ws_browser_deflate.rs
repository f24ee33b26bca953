//! Headless Chromium (which offers permessage-deflate) against the echo
//! protocol: the extension is negotiated and text and binary messages,
//! small and large, compressible and not, come back unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, repo};
use lwsws_testkit::{ConfigDir, Launch, Ready, free_port};
use std::process::Command;

/// The page: sends each message in turn, checks each echo, then reports.
const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>echo</title>
<body><script>
const big = JSON.stringify(Array.from({length: 4000}, (_, i) => ({id: i, name: "item " + i, tags: ["a", "b"]})));
const noise = new Uint8Array(70000); for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + (i >> 3) * 104729) & 255;
const msgs = ["hi", "x".repeat(63), "y".repeat(64), big, "ünïcödé ✓ ".repeat(500), noise, new Uint8Array(10)];
const ws = new WebSocket("ws://" + location.host + "/", "echo");
ws.binaryType = "arraybuffer";
let i = 0, ok = true;
const same = (a, b) => {
  if (typeof a === "string") return a === b;
  const x = new Uint8Array(b); if (x.length !== a.length) return false;
  for (let k = 0; k < a.length; k++) if (x[k] !== a[k]) return false; return true;
};
const report = (extra) => { document.body.dataset.result = JSON.stringify(Object.assign({extensions: ws.extensions, ok, sent: i}, extra || {})); };
ws.onopen = () => ws.send(msgs[0]);
ws.onmessage = (e) => {
  if (!same(msgs[i], e.data)) ok = false;
  i++;
  if (i < msgs.length) ws.send(msgs[i]); else { report(); ws.close(1000); }
};
ws.onerror = () => report({error: true});
ws.onclose = (e) => { if (i < msgs.length) report({closed: e.code}); };
</script>"#;

#[test]
fn chromium_negotiates_deflate_and_every_message_round_trips() {
    let port = free_port();
    let dir = ConfigDir::new();
    let www = dir.mkdir("www");
    std::fs::write(www.join("echo.html"), PAGE).unwrap();
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{"vhosts": [{{"name": "localhost", "port": "{port}", "interface": "127.0.0.1",
                "ws-protocols": [{{"echo": {{}}}}],
                "mounts": [{{"mountpoint": "/", "origin": "file://{}"}}]}}]}}"#,
            www.display()
        ),
    );
    let _server = Launch::new(bin(), dir.path())
        .wait_for(Ready::Tcp(port))
        .start();
    let script = repo().join("crates/lwsws/tests/fixtures/browser/echo_page.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/echo.html"))
        .output()
        .expect("run the browser driver (needs Debian's chromium and python3-websockets)");
    assert!(
        out.status.success(),
        "browser driver failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["sent"], 7, "{seen}");
    assert!(
        seen["extensions"]
            .as_str()
            .is_some_and(|e| e.starts_with("permessage-deflate")),
        "{seen}"
    );
}
