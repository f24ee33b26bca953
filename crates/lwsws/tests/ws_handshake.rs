//! The WebSocket opening handshake against the real binary (SPEC §6.1, §6.2,
//! §3.6, §2.4 `disable-no-protocol-ws-upgrades` and the mount `protocol`
//! key): versions 13, 8 and 7 and the 426 for the others, subprotocol
//! selection (first enabled name of the client's list, echoed; the vhost's
//! `default` protocol when none is named; 400 when nothing matches), the
//! origin check in `same`, `trusted` and `off` mode, the `basic-auth` pvo,
//! and upgrades on a path that no mount covers.
//!
//! The raw client of `common/ws.rs` sends exactly the headers each case
//! needs; `fixtures/ws/ws_probe.py` (Python `websockets`) checks that a
//! second, independent client agrees. The rules themselves are unit-tested
//! in `crates/lwsws-ws/src/upgrade.rs` and `handshake.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bin;
use common::ws::{Handshake, Ws, probe};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use serde_json::json;

/// One server, one port, a vhost per rule (chosen by `Host`):
/// - `localhost` (first, so also what `Host: 127.0.0.1:PORT` gets): `same`
///   origin check; `echo` (default), `dumb-increment-protocol`,
///   `lws-mirror-protocol`; mounts only `/docs` (files) and `/counter` (files,
///   with `"protocol": "dumb-increment-protocol"`), so `/` and `/ws` are
///   covered by no mount;
/// - `trusted.test`: `trusted`, two listed origins;
/// - `off.test`: no origin check;
/// - `strict.test`: `disable-no-protocol-ws-upgrades`;
/// - `nodefault.test`: `echo` enabled but not default;
/// - `auth.test`: `echo` (default) behind the `basic-auth` pvo (alice:secret).
struct Server {
    server: Lwsws,
    port: u16,
    _dir: ConfigDir,
}

fn start() -> Server {
    let dir = ConfigDir::new();
    let port = free_port();
    let docs = dir.mkdir("docs");
    dir.write_file("docs/index.html", "docs\n");
    dir.write_file("passwd", "alice:secret\n");
    let docs = docs.display();
    dir.write_conf(&format!(
        r#"{{ "vhosts": [
        {{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
           "ws-protocols": [{{ "echo": {{ "default": "1" }},
                               "dumb-increment-protocol": {{}},
                               "lws-mirror-protocol": {{}} }}],
           "mounts": [
             {{ "mountpoint": "/docs", "origin": "file://{docs}", "default": "index.html" }},
             {{ "mountpoint": "/counter", "origin": "file://{docs}",
                "protocol": "dumb-increment-protocol" }}
           ] }},
        {{ "name": "trusted.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-origin-check": "trusted",
           "ws-trusted-origins": ["https://app.example", "http://other.example:8080"],
           "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{docs}" }}] }},
        {{ "name": "off.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-origin-check": "off",
           "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{docs}" }}] }},
        {{ "name": "strict.test", "port": "{port}", "interface": "127.0.0.1",
           "disable-no-protocol-ws-upgrades": "1",
           "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{docs}" }}] }},
        {{ "name": "nodefault.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-protocols": [{{ "echo": {{}} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{docs}" }}] }},
        {{ "name": "auth.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-protocols": [{{ "echo": {{ "default": "1", "basic-auth": "passwd" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{docs}" }}] }}
        ] }}"#
    ));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    Server {
        server,
        port,
        _dir: dir,
    }
}

impl Server {
    fn hs(&self, path: &str) -> Handshake {
        Handshake::new(self.port, path)
    }

    /// A handshake on vhost `host` (with the listener's port in `Host`).
    fn on(&self, host: &str, path: &str) -> Handshake {
        self.hs(path).host(&format!("{host}:{}", self.port))
    }

    /// The status of `h`'s answer, with the server log on failure.
    fn expect(&self, h: Handshake, status: u16, what: &str) -> (common::Reply, Option<Ws>) {
        let (reply, ws) = h.send();
        assert_eq!(
            reply.status,
            status,
            "{what}: {:?} {}\n--- lwsws ---\n{}",
            reply.headers,
            reply.text(),
            self.server.log()
        );
        (reply, ws)
    }
}

/// A connection that answers like `echo`: a message comes back unchanged.
fn assert_echoes(ws: &mut Ws) {
    ws.send_text("h\u{e9}llo");
    assert_eq!(ws.recv_text(), "h\u{e9}llo");
}

/// A connection that answers like `dumb-increment-protocol`: numbers arrive
/// by themselves.
fn assert_counts(ws: &mut Ws) {
    let a: u64 = ws.recv_text().parse().unwrap();
    let b: u64 = ws.recv_text().parse().unwrap();
    assert_eq!(b, a + 1);
}

#[test]
fn unsupported_versions_get_426_naming_13_8_and_7() {
    let s = start();
    for version in [Some("12"), Some("14"), Some("0"), Some("13, 8"), None] {
        let (reply, _) = s.expect(s.hs("/").version(version), 426, &format!("{version:?}"));
        assert_eq!(
            reply.header("sec-websocket-version"),
            Some("13, 8, 7"),
            "{version:?}: {:?}",
            reply.headers
        );
        assert!(reply.header("sec-websocket-accept").is_none());
    }
}

#[test]
fn versions_13_8_and_7_are_accepted() {
    let s = start();
    for version in ["13", "8", "7"] {
        let (_, ws) = s.expect(s.hs("/").version(Some(version)), 101, version);
        assert_echoes(&mut ws.unwrap());
    }
}

#[test]
fn upgrade_and_connection_tokens_are_read_as_lists_without_case() {
    let s = start();
    // As Firefox sends them, and in odd case.
    for (upgrade, connection) in [
        ("websocket", "keep-alive, Upgrade"),
        ("WebSocket", "upgrade"),
        ("websocket", "UPGRADE , keep-alive"),
    ] {
        let (_, ws) = s.expect(
            s.hs("/").upgrade_connection(upgrade, connection),
            101,
            &format!("Upgrade: {upgrade}, Connection: {connection}"),
        );
        assert_echoes(&mut ws.unwrap());
    }
}

#[test]
fn a_missing_or_malformed_key_gets_400() {
    let s = start();
    // The handshake helper always sends a good key; replace the request.
    let bad = |key_line: &str| {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\n{key_line}Connection: close\r\n\r\n",
            s.port
        );
        common::proxy::raw(s.port, req.as_bytes()).status
    };
    assert_eq!(bad(""), 400, "no key");
    assert_eq!(bad("Sec-WebSocket-Key: c2hvcnQ=\r\n"), 400, "short key");
}

#[test]
fn the_first_enabled_protocol_the_client_offers_is_chosen_and_echoed() {
    let s = start();
    let (reply, ws) = s.expect(
        s.hs("/").protocol("chat, dumb-increment-protocol, echo"),
        101,
        "list",
    );
    assert_eq!(
        reply.header("sec-websocket-protocol"),
        Some("dumb-increment-protocol")
    );
    assert_counts(&mut ws.unwrap());

    // The client's order counts, not the vhost's.
    let (reply, ws) = s.expect(
        s.hs("/").protocol("lws-mirror-protocol,echo"),
        101,
        "mirror first",
    );
    assert_eq!(
        reply.header("sec-websocket-protocol"),
        Some("lws-mirror-protocol")
    );
    let mut ws = ws.unwrap();
    ws.send_text("mirrored");
    assert_eq!(ws.recv_text(), "mirrored");

    // Over several header lines, in order.
    let (reply, ws) = s.expect(
        s.hs("/")
            .protocol("superchat")
            .protocol("echo, dumb-increment-protocol"),
        101,
        "two lines",
    );
    assert_eq!(reply.header("sec-websocket-protocol"), Some("echo"));
    assert_echoes(&mut ws.unwrap());
}

#[test]
fn python_websockets_gets_the_protocol_it_asked_for() {
    let s = start();
    let out = probe(&json!({
        "url": format!("ws://127.0.0.1:{}/", s.port),
        "protocols": ["nope", "echo"],
        "ops": [["send", "ping \u{2603}"], ["recv", 1]],
    }));
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["subprotocol"], "echo", "{out}");
    assert_eq!(out["received"], json!(["ping \u{2603}"]), "{out}");

    let out = probe(&json!({
        "url": format!("ws://127.0.0.1:{}/", s.port),
        "protocols": ["chat", "superchat"],
    }));
    assert_eq!(out["status"], 400, "{out}");
}

#[test]
fn without_a_protocol_header_the_default_protocol_answers() {
    let s = start();
    let (reply, ws) = s.expect(s.hs("/"), 101, "no header");
    assert!(
        reply.header("sec-websocket-protocol").is_none(),
        "a protocol the client did not ask for must not be named: {:?}",
        reply.headers
    );
    assert_echoes(&mut ws.unwrap());
}

#[test]
fn a_mounts_protocol_key_picks_the_protocol_when_the_client_names_none() {
    let s = start();
    let (reply, ws) = s.expect(s.hs("/counter/live"), 101, "mount protocol");
    assert!(reply.header("sec-websocket-protocol").is_none());
    assert_counts(&mut ws.unwrap());
    // A protocol the client names still wins.
    let (_, ws) = s.expect(s.hs("/counter").protocol("echo"), 101, "named");
    assert_echoes(&mut ws.unwrap());
}

#[test]
fn an_offer_with_no_enabled_protocol_gets_400() {
    let s = start();
    s.expect(s.hs("/").protocol("chat, superchat"), 400, "unknown names");
    // Known to the server, but not enabled on this vhost.
    s.expect(
        s.on("trusted.test", "/")
            .protocol("dumb-increment-protocol"),
        400,
        "not enabled here",
    );
    // No header and no default protocol.
    s.expect(s.on("nodefault.test", "/"), 400, "no default");
    let (_, ws) = s.expect(s.on("nodefault.test", "/").protocol("echo"), 101, "named");
    assert_echoes(&mut ws.unwrap());
}

#[test]
fn disable_no_protocol_ws_upgrades_requires_the_header() {
    let s = start();
    s.expect(s.on("strict.test", "/"), 400, "no header");
    let (reply, ws) = s.expect(s.on("strict.test", "/").protocol("echo"), 101, "named");
    assert_eq!(reply.header("sec-websocket-protocol"), Some("echo"));
    assert_echoes(&mut ws.unwrap());
}

#[test]
fn same_origin_check() {
    let s = start();
    let p = s.port;
    for (origin, status) in [
        (format!("http://127.0.0.1:{p}"), 101),
        (format!("HTTP://127.0.0.1:{p}"), 101),
        ("http://evil.example".to_owned(), 403),
        (format!("http://evil.example:{p}"), 403),
        // ws:// is served as http; https would be a different origin.
        (format!("https://127.0.0.1:{p}"), 403),
        (format!("http://127.0.0.1:{}", p.wrapping_add(1)), 403),
        // The default port is not the port the request came in on.
        ("http://127.0.0.1".to_owned(), 403),
        ("null".to_owned(), 403),
        ("garbage".to_owned(), 403),
    ] {
        let (_, ws) = s.expect(s.hs("/").origin(&origin), status, &origin);
        if let Some(mut ws) = ws {
            assert_echoes(&mut ws);
        }
    }
    // The host compared is the Host header's, here a name.
    s.expect(
        s.on("localhost", "/")
            .origin(&format!("http://localhost:{p}")),
        101,
        "by name",
    );
    s.expect(
        s.on("localhost", "/")
            .origin(&format!("http://127.0.0.1:{p}")),
        403,
        "address for a name",
    );
    // No Origin at all (not a browser): allowed.
    let (_, ws) = s.expect(s.hs("/"), 101, "no Origin");
    assert_echoes(&mut ws.unwrap());
    // The refusal is logged with the origin.
    assert!(
        s.server
            .wait_for_log("evil.example", std::time::Duration::from_secs(10)),
        "{}",
        s.server.log()
    );
}

#[test]
fn python_websockets_from_a_foreign_origin_gets_403() {
    let s = start();
    let url = format!("ws://127.0.0.1:{}/", s.port);
    let out = probe(&json!({ "url": url, "origin": "http://evil.example" }));
    assert_eq!(out["status"], 403, "{out}");
    let own = format!("http://127.0.0.1:{}", s.port);
    let out = probe(&json!({ "url": url, "origin": own, "ops": [["send", "x"], ["recv", 1]] }));
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["received"], json!(["x"]), "{out}");
}

#[test]
fn trusted_origins_are_allowed_and_others_refused() {
    let s = start();
    let p = s.port;
    for (origin, status) in [
        ("https://app.example", 101),
        ("http://other.example:8080", 101),
        ("http://app.example", 403),
        ("https://app.example:8443", 403),
        ("https://evil.example", 403),
        ("http://other.example", 403),
        ("null", 403),
    ] {
        let (_, ws) = s.expect(s.on("trusted.test", "/").origin(origin), status, origin);
        if let Some(mut ws) = ws {
            assert_echoes(&mut ws);
        }
    }
    // In trusted mode the vhost's own origin is not special.
    s.expect(
        s.on("trusted.test", "/")
            .origin(&format!("http://trusted.test:{p}")),
        403,
        "own origin, not listed",
    );
    s.expect(s.on("trusted.test", "/"), 101, "no Origin");
}

#[test]
fn origin_check_off_allows_any_origin() {
    let s = start();
    for origin in ["http://evil.example", "null", "https://off.test:1"] {
        let (_, ws) = s.expect(s.on("off.test", "/").origin(origin), 101, origin);
        assert_echoes(&mut ws.unwrap());
    }
}

#[test]
fn the_basic_auth_pvo_protects_the_upgrade() {
    let s = start();
    let (reply, _) = s.expect(s.on("auth.test", "/"), 401, "no credentials");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Basic") && challenge.contains("realm=\"auth.test\""),
        "{challenge:?}"
    );
    // alice:wrong, bob:secret
    for bad in [
        "Basic YWxpY2U6d3Jvbmc=",
        "Basic Ym9iOnNlY3JldA==",
        "Bearer x",
    ] {
        s.expect(
            s.on("auth.test", "/").header("Authorization", bad),
            401,
            bad,
        );
    }
    // alice:secret
    let (_, ws) = s.expect(
        s.on("auth.test", "/")
            .header("Authorization", "Basic YWxpY2U6c2VjcmV0"),
        101,
        "good credentials",
    );
    assert_echoes(&mut ws.unwrap());
    // Other vhosts' upgrades need no credentials.
    s.expect(s.hs("/"), 101, "unprotected vhost");
}

#[test]
fn an_upgrade_on_a_path_no_mount_covers_still_works() {
    let s = start();
    // Plain requests there find nothing...
    let r = common::get(&format!("http://127.0.0.1:{}/ws/room", s.port), &[]);
    assert_eq!(r.status, 404);
    // ...but the upgrade is served, with the query kept for the protocol.
    let (_, ws) = s.expect(s.hs("/ws/room?x=1"), 101, "unmounted path");
    assert_echoes(&mut ws.unwrap());
    // A mounted path upgrades too.
    let (_, ws) = s.expect(s.hs("/docs/"), 101, "file mount");
    assert_echoes(&mut ws.unwrap());
}
