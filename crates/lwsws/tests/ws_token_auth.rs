//! Signed-token authentication of WebSocket handshakes (SPEC §6.5) against
//! the real binary:
//! - a protocol entry with `auth-hmac-key-file` wants a token
//!   `HEX(HMAC-SHA256(key, "user;expiry")).user.expiry` in the query
//!   parameter `token`, the cookie `lwsws_token` or `Authorization: Bearer`
//!   (101), and answers 401 with a short reason when it is missing, expired,
//!   signed with another key or for another user;
//! - the user reaches the protocol: the mirror with `tag-user` prefixes
//!   relayed text with `<user>: `, and server-status counts authenticated
//!   connections and users;
//! - with `auth-first-message` the upgrade needs no token, and the first
//!   text message must be one, within `timeout-secs`, else close 1008;
//! - `lwsws token` prints a token that an independent HMAC (Python's)
//!   agrees with, and refuses bad input;
//! - the token never shows in the access log or the server's log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bin;
use common::ws::{Handshake, Ws};
use lwsws_testkit::{ConfigDir, Lwsws, free_port, run};
use lwsws_ws::OpCode;
use lwsws_ws::token::{TokenKey, unix_now};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const MIRROR: &str = "lws-mirror-protocol";
const STATUS: &str = "lws-server-status";
/// The key, as the file holds it (no trailing newline).
const KEY: &[u8] = b"0123456789abcdef-test-key";
/// `timeout-secs` of the server: the first-message deadline.
const TIMEOUT_SECS: u64 = 2;
/// A liveness bound for status updates and log lines.
const DEADLINE: Duration = Duration::from_secs(10);

/// One port, two vhosts chosen by `Host`:
/// - `localhost` (first): `echo` (default) and the mirror with `tag-user`,
///   both wanting a token before the upgrade; server-status without auth;
/// - `first.test`: `echo` (default) and the mirror with `tag-user`, both
///   wanting the token as the first message.
///
/// The global `timeout-secs` is 2; both vhosts log to `access.log`; the
/// server logs at debug level.
struct Server {
    server: Lwsws,
    port: u16,
    key_file: PathBuf,
    access_log: PathBuf,
    _dir: ConfigDir,
}

fn start() -> Server {
    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    let key_file = dir.write_file("ws.key", KEY);
    dir.mkdir("logs");
    let access_log = dir.path().join("logs/access.log");
    let (www, key, log) = (
        www.display(),
        key_file.display(),
        access_log.display().to_string(),
    );
    dir.write_conf(&format!(
        r#"{{ "global": {{ "timeout-secs": "{TIMEOUT_SECS}" }},
        "vhosts": [
        {{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
           "access-log": "{log}",
           "ws-protocols": [{{
             "echo": {{ "default": "1", "auth-hmac-key-file": "{key}" }},
             "{MIRROR}": {{ "auth-hmac-key-file": "{key}", "tag-user": "1" }},
             "{STATUS}": {{ "update-ms": "200" }}
           }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }},
        {{ "name": "first.test", "port": "{port}", "interface": "127.0.0.1",
           "access-log": "{log}",
           "ws-protocols": [{{
             "echo": {{ "default": "1", "auth-hmac-key-file": "{key}", "auth-first-message": "1" }},
             "{MIRROR}": {{ "auth-hmac-key-file": "{key}", "auth-first-message": "1", "tag-user": "1" }}
           }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }}
        ] }}"#
    ));
    let server = Lwsws::start(bin(), &dir, &["-d", "debug"], &[port]);
    Server {
        server,
        port,
        key_file,
        access_log,
        _dir: dir,
    }
}

fn token(user: &str) -> String {
    TokenKey::new(KEY).sign_for(user, 600).unwrap()
}

/// Echo round trip on an open connection.
fn assert_echoes(ws: &mut Ws, text: &str) {
    ws.send_text(text);
    assert_eq!(ws.recv_text(), text);
}

#[test]
fn a_valid_token_by_each_carrier_upgrades() {
    let s = start();
    let t = token("alice");
    let mut ws = Handshake::new(s.port, &format!("/?a=1&token={t}")).open();
    assert_echoes(&mut ws, "by query");
    let mut ws = Handshake::new(s.port, "/")
        .header("Cookie", &format!("theme=dark; lwsws_token={t}; x=y"))
        .open();
    assert_echoes(&mut ws, "by cookie");
    let mut ws = Handshake::new(s.port, "/")
        .header("Authorization", &format!("Bearer {t}"))
        .open();
    assert_echoes(&mut ws, "by bearer");
    // User names may contain dots: the token splits at its first and last dot.
    let t = token("alice.smith.example");
    let mut ws = Handshake::new(s.port, &format!("/?token={t}")).open();
    assert_echoes(&mut ws, "dotted");
}

/// The 401 and its reason.
fn refused(s: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut h = Handshake::new(s.port, path);
    for (k, v) in headers {
        h = h.header(k, v);
    }
    let (reply, ws) = h.send();
    assert!(ws.is_none(), "{path} was upgraded");
    assert!(
        reply.header("www-authenticate").is_none(),
        "a token refusal has no Basic challenge: {:?}",
        reply.headers
    );
    (reply.status, reply.text().trim().to_string())
}

#[test]
fn missing_expired_forged_and_tampered_tokens_get_401() {
    let s = start();
    assert_eq!(refused(&s, "/", &[]), (401, "missing token".into()));
    let expired = TokenKey::new(KEY).sign("alice", unix_now() - 1).unwrap();
    assert_eq!(
        refused(&s, &format!("/?token={expired}"), &[]),
        (401, "expired token".into())
    );
    let other_key = TokenKey::new(b"another key")
        .sign_for("alice", 600)
        .unwrap();
    assert_eq!(
        refused(
            &s,
            "/",
            &[("Authorization", &format!("Bearer {other_key}"))]
        ),
        (401, "invalid token".into())
    );
    let t = token("alice");
    let tampered = t.replacen(".alice.", ".admin.", 1);
    assert_ne!(t, tampered);
    assert_eq!(
        refused(&s, "/", &[("Cookie", &format!("lwsws_token={tampered}"))]),
        (401, "invalid token".into())
    );
    assert_eq!(
        refused(&s, "/?token=garbage", &[]).0,
        401,
        "malformed token"
    );
    // The mirror entry wants one too; Basic credentials are no token.
    assert_eq!(
        refused(
            &s,
            "/",
            &[
                ("Sec-WebSocket-Protocol", MIRROR),
                ("Authorization", "Basic YWxpY2U6c2VjcmV0")
            ]
        ),
        (401, "missing token".into())
    );
}

#[test]
fn the_mirror_tags_text_with_the_user() {
    let s = start();
    let open = |user: &str| {
        Handshake::new(s.port, &format!("/?mirror=room&token={}", token(user)))
            .protocol(MIRROR)
            .open()
    };
    let mut alice = open("alice");
    let mut bob = open("bob");
    alice.send_text("hello");
    assert_eq!(alice.recv_text(), "alice: hello");
    assert_eq!(bob.recv_text(), "alice: hello");
    bob.send_text("hi");
    assert_eq!(alice.recv_text(), "bob: hi");
    assert_eq!(bob.recv_text(), "bob: hi");
    // Binary messages are relayed as they are.
    bob.send_frame(true, OpCode::Binary, b"\x00\x01");
    let f = alice.recv();
    assert!(f.is(OpCode::Binary));
    assert_eq!(f.payload, b"\x00\x01");
}

/// Status updates until one satisfies `pred`.
fn status_until(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + DEADLINE;
    loop {
        let v: Value = serde_json::from_str(&ws.recv_text()).unwrap();
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < end, "no status update like that: {v}");
    }
}

#[test]
fn server_status_counts_authenticated_connections_and_users() {
    let s = start();
    let a1 = Handshake::new(s.port, &format!("/?token={}", token("alice"))).open();
    let a2 = Handshake::new(s.port, &format!("/?token={}", token("alice")))
        .protocol(MIRROR)
        .open();
    let b = Handshake::new(s.port, "/")
        .header("Authorization", &format!("Bearer {}", token("bob")))
        .open();
    let mut status = Ws::connect(s.port, "/", Some(STATUS));
    let v = status_until(&mut status, |_| true);
    let auth = &v["i"]["authenticated"];
    assert_eq!(auth["connections"], 3, "{v}");
    assert_eq!(auth["users"], 2, "{v}");
    // The existing fields are still there.
    assert!(v["i"]["connections"]["ws"].as_u64().unwrap() >= 4, "{v}");
    assert!(v["i"]["vhosts"].is_array(), "{v}");
    drop(a1);
    drop(a2);
    let v = status_until(&mut status, |v| v["i"]["authenticated"]["connections"] == 1);
    assert_eq!(v["i"]["authenticated"]["users"], 1, "{v}");
    drop(b);
    status_until(&mut status, |v| {
        v["i"]["authenticated"]["connections"] == 0 && v["i"]["authenticated"]["users"] == 0
    });
}

fn first(s: &Server) -> Handshake {
    Handshake::new(s.port, "/").host("first.test")
}

#[test]
fn first_message_mode_accepts_a_valid_token() {
    let s = start();
    // No token in the handshake: still upgraded.
    let mut ws = first(&s).open();
    ws.send_text(&token("carol"));
    assert_echoes(&mut ws, "after the token");
    assert_echoes(&mut ws, "and again");
    // The mirror learns the user from the token message.
    let mut m = first(&s).protocol(MIRROR).open();
    m.send_text(&token("dave.d"));
    m.send_text("yo");
    assert_eq!(m.recv_text(), "dave.d: yo");
    // A token in the handshake does not replace the first message.
    let mut ws = Handshake::new(s.port, &format!("/?token={}", token("erin")))
        .host("first.test")
        .open();
    ws.send_text("not a token");
    assert_eq!(ws.recv_close().map(|c| c.0), Some(1008));
}

#[test]
fn first_message_mode_closes_1008_on_a_bad_first_message() {
    let s = start();
    for bad in [
        TokenKey::new(b"wrong").sign_for("carol", 600).unwrap(),
        TokenKey::new(KEY).sign("carol", unix_now() - 5).unwrap(),
        token("carol").replacen(".carol.", ".mallory.", 1),
        "hello".to_string(),
    ] {
        let mut ws = first(&s).open();
        ws.send_text(&bad);
        // Nothing is echoed: the protocol never saw the message.
        let f = ws.recv();
        assert!(f.is(OpCode::Close), "expected a close, got {f:?}");
        assert_eq!(f.close().map(|c| c.0), Some(1008), "{bad}");
        assert!(ws.ends_within(DEADLINE));
    }
    // A binary first message, even holding a valid token.
    let mut ws = first(&s).open();
    ws.send_frame(true, OpCode::Binary, token("carol").as_bytes());
    assert_eq!(ws.recv_close().map(|c| c.0), Some(1008));
}

#[test]
fn first_message_mode_closes_1008_when_no_token_comes_in_time() {
    let s = start();
    let started = Instant::now();
    let mut ws = first(&s).open();
    let close = ws.recv_close();
    let waited = started.elapsed();
    assert_eq!(close.map(|c| c.0), Some(1008));
    assert!(
        waited >= Duration::from_millis(TIMEOUT_SECS * 1000 - 300),
        "closed after {waited:?}, before timeout-secs"
    );
    // A token just in time is fine.
    let mut ws = first(&s).open();
    std::thread::sleep(Duration::from_millis(TIMEOUT_SECS * 1000 / 2));
    ws.send_text(&token("frank"));
    std::thread::sleep(Duration::from_millis(TIMEOUT_SECS * 1000));
    assert_echoes(&mut ws, "still here");
}

/// HMAC-SHA256 in hex by Python's standard library.
fn python_hmac(key: &std::path::Path, message: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys;\
             print(hmac.new(open(sys.argv[1],'rb').read(),sys.argv[2].encode(),hashlib.sha256).hexdigest())",
            key.to_str().unwrap(),
            message,
        ])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn lwsws_token_prints_a_token_the_server_accepts() {
    let s = start();
    let key = s.key_file.to_str().unwrap();
    let before = unix_now();
    let out = run(
        bin(),
        &[
            "token",
            "--key-file",
            key,
            "--user",
            "op.erator",
            "--ttl",
            "120",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let t = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (mac, rest) = t.split_once('.').unwrap();
    let (user, expiry) = rest.rsplit_once('.').unwrap();
    assert_eq!(user, "op.erator");
    let expiry: u64 = expiry.parse().unwrap();
    assert!((before + 120..=unix_now() + 120).contains(&expiry), "{t}");
    assert_eq!(mac, python_hmac(&s.key_file, &format!("{user};{expiry}")));
    let mut ws = Handshake::new(s.port, &format!("/?token={t}")).open();
    assert_echoes(&mut ws, "signed by the command");

    // --ttl defaults to an hour.
    let out = run(bin(), &["token", "--key-file", key, "--user", "u"]);
    assert!(out.status.success(), "{out:?}");
    let t = String::from_utf8(out.stdout).unwrap();
    let expiry: u64 = t.trim().rsplit('.').next().unwrap().parse().unwrap();
    assert!(expiry >= before + 3600 && expiry <= unix_now() + 3600);
}

#[test]
fn lwsws_token_refuses_bad_input() {
    let dir = ConfigDir::new();
    let key = dir.write_file("k", "key");
    let key = key.to_str().unwrap();
    let missing = dir.path().join("nope");
    let cases: [(&[&str], i32); 5] = [
        (
            &[
                "token",
                "--key-file",
                missing.to_str().unwrap(),
                "--user",
                "u",
            ],
            1,
        ),
        (&["token", "--key-file", key, "--user", ""], 2),
        (&["token", "--key-file", key, "--user", "a;b"], 2),
        (&["token", "--key-file", key], 2),
        (
            &["token", "--key-file", key, "--user", "u", "--ttl", "soon"],
            2,
        ),
    ];
    for (args, code) in cases {
        let out = run(bin(), args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?}: no message");
    }
    let help = run(bin(), &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("token"), "{help}");
    assert!(!help.contains("worker"), "{help}");
}

#[test]
fn a_key_file_ending_in_a_newline_gets_a_warning() {
    let dir = ConfigDir::new();
    let key = dir.write_file("ws.key", "secret\n");
    dir.write_conf(&format!(
        r#"{{ "vhosts": [{{ "name": "localhost", "port": "{}",
            "ws-protocols": [{{ "echo": {{ "auth-hmac-key-file": "{}" }} }}],
            "mounts": [{{ "mountpoint": "/", "origin": "file:///tmp" }}] }}] }}"#,
        free_port(),
        key.display()
    ));
    let out = common::check(&dir);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("newline"), "{err}");
    // A key file that cannot be read is an error.
    std::fs::remove_file(&key).unwrap();
    let out = common::check(&dir);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("auth-hmac-key-file"));
}

#[test]
fn tokens_never_reach_the_logs() {
    let s = start();
    let good = token("alice");
    let expired = TokenKey::new(KEY).sign("bob", unix_now() - 1).unwrap();
    let mut ws = Handshake::new(s.port, &format!("/?x=1&token={good}")).open();
    assert_echoes(&mut ws, "logged");
    assert_eq!(refused(&s, &format!("/?token={expired}&y=2"), &[]).0, 401);
    let mut ws = first(&s).open();
    let refused_first = TokenKey::new(b"wrong").sign_for("carol", 600).unwrap();
    ws.send_text(&refused_first);
    assert_eq!(ws.recv_close().map(|c| c.0), Some(1008));

    let end = Instant::now() + DEADLINE;
    let log = loop {
        let log = std::fs::read_to_string(&s.access_log).unwrap_or_default();
        if log.lines().count() >= 3 || Instant::now() > end {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        log.contains("GET /?x=1&token=<redacted> HTTP/1.1\" 101"),
        "{log}"
    );
    assert!(
        log.contains("GET /?token=<redacted>&y=2 HTTP/1.1\" 401"),
        "{log}"
    );
    assert!(log.contains(" - alice ["), "the user is logged: {log}");
    assert!(
        s.server.wait_for_log("WebSocket token refused", DEADLINE),
        "{}",
        s.server.log()
    );
    let stderr = s.server.log();
    for t in [&good, &expired, &refused_first] {
        assert!(!log.contains(t.as_str()), "token in the access log: {log}");
        assert!(!stderr.contains(t.as_str()), "token in the log: {stderr}");
        let mac = &t[..64];
        assert!(!log.contains(mac) && !stderr.contains(mac));
    }
}
