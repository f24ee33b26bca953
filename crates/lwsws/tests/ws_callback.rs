//! `callback://NAME` mounts: HTTP served by the protocol NAME enabled on the
//! vhost (here `lws-server-status`, which answers with its JSON); a protocol
//! that serves no HTTP gives 404; naming a protocol the vhost does not
//! enable is a configuration error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, check, get, stderr};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};

fn site(port: u16, callback: &str) -> String {
    format!(
        r#"{{"vhosts": [{{"name": "cb.test", "port": "{port}", "interface": "127.0.0.1",
            "ws-protocols": [{{"lws-server-status": {{}}, "echo": {{}}}}],
            "mounts": [{{"mountpoint": "/status.json", "origin": "callback://lws-server-status",
                         "pmo": [{{"format": "json"}}]}},
                       {{"mountpoint": "/other", "origin": "callback://{callback}"}}]}}]}}"#
    )
}

#[test]
fn a_protocol_answers_http_on_its_callback_mount() {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write_conf_d("site", &site(port, "echo"));
    let _server = Lwsws::start(bin(), &dir, &[], &[port]);
    let r = get(&format!("http://127.0.0.1:{port}/status.json"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["i"]["server"], "lwsws");
    assert_eq!(v["i"]["vhosts"][0]["name"], "cb.test");
    // echo serves no HTTP.
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/other"), &[]).status,
        404
    );
}

#[test]
fn a_callback_to_a_protocol_the_vhost_does_not_enable_is_a_config_error() {
    let dir = ConfigDir::new();
    let text = site(8000, "dumb-increment-protocol");
    dir.write_conf_d("site", &text);
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("\"origin\": callback://dumb-increment-protocol names a protocol this vhost does not enable"),
        "{err}"
    );
    assert!(err.contains("ws-protocols"), "{err}");
}
