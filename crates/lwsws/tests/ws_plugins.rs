//! WebSocket protocol plugins through the C ABI (SPEC §6.4, issue 10),
//! against the real binary:
//! - C plugins from `tests/fixtures/plugins/*.c`, compiled here with
//!   `cc -shared -fPIC` against `share/lwsws/include/lwsws_plugin.h` and
//!   loaded by `ws-protocols` pvos `plugin` / `init`: echo, dumb-increment
//!   (sending from its own thread), a plugin that declines, one that
//!   reports `header_get("Origin")` / `protocol_index` / `pvo_get`, one that
//!   closes, one that makes garbage calls, and a slow one (10 ms per
//!   message) that must not hold up a file request while 1000 connections
//!   keep it busy;
//! - the Rust example plugin `crates/lwsws-plugin-chat` loaded from a
//!   `plugin-dir` (built here with cargo into this test's target directory);
//! - configuration errors: missing library, missing symbol, broken tables,
//!   two libraries offering one protocol name.
//!
//! Without a C compiler the C tests print `SKIP` and pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ws::{Handshake, Ws};
use common::{bin, check, get, repo, stderr};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Compiles `fixtures/plugins/NAME.c` into `out/OUT.so` with extra `cc`
/// arguments; `None` (after saying so) when there is no `cc`.
fn compile_as(name: &str, out: &Path, file: &str, extra: &[&str]) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plugins")
        .join(format!("{name}.c"));
    let so = out.join(format!("{file}.so"));
    let include = repo().join("share/lwsws/include");
    let result = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-I")
        .arg(&include)
        .args(extra)
        .arg("-lpthread")
        .output();
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIP: no C compiler (cc) to build the plugin fixtures");
            None
        }
        Err(e) => panic!("cc: {e}"),
        Ok(o) => {
            assert!(
                o.status.success(),
                "cc {name}.c failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(so)
        }
    }
}

fn compile(name: &str, out: &Path) -> Option<PathBuf> {
    compile_as(name, out, name, &[])
}

/// Returns from the test (passing, after a `SKIP` line) without `cc`.
macro_rules! or_skip {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

/// A server on one port with a file mount and the given `ws-protocols`
/// entries (JSON object members).
fn start(dir: &ConfigDir, protocols: &str, global: &str) -> (Lwsws, u16) {
    let port = free_port();
    let www = dir.mkdir("www");
    std::fs::write(www.join("file.txt"), "static file\n").unwrap();
    dir.write_conf(&format!(
        r#"{{ "global": {{ {global} }},
        "vhosts": [
        {{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
           "ws-protocols": [{{ {protocols} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}
        ] }}"#,
        www.display()
    ));
    let server = Lwsws::start(bin(), dir, &[], &[port]);
    (server, port)
}

fn entry(name: &str, so: &Path, init: &str, more: &str) -> String {
    format!(
        r#""{name}": {{ "plugin": "{}", "init": "{init}" {more} }}"#,
        so.display()
    )
}

#[test]
fn c_echo_and_dumb_increment_serve_real_clients() {
    let dir = ConfigDir::new();
    let libs = dir.mkdir("libs");
    let echo = or_skip!(compile("echo", &libs));
    let inc = or_skip!(compile("dumb_increment", &libs));
    let protocols = format!(
        "{}, {}",
        entry("c-echo", &echo, "echo_init", r#", "default": "1""#),
        entry("c-increment", &inc, "dumb_increment_init", "")
    );
    let (_server, port) = start(&dir, &protocols, "");

    // Echo, with the message types kept; by default protocol and by name.
    let mut ws = Ws::connect(port, "/", None);
    ws.send_text("hello plugin");
    assert_eq!(ws.recv_text(), "hello plugin");
    ws.send_frame(true, OpCode::Binary, &[0, 1, 2, 255]);
    let f = ws.recv();
    assert!(f.is(OpCode::Binary), "{f:?}");
    assert_eq!(f.payload, vec![0, 1, 2, 255]);
    let mut named = Ws::connect(port, "/", Some("c-echo"));
    let big = "x".repeat(100_000);
    named.send_text(&big);
    assert_eq!(named.recv_text(), big);
    named.send_close(1000, "");
    assert_eq!(named.recv_close().map(|c| c.0), Some(1000));

    // Dumb increment: the plugin's own thread sends 0, 1, 2, … every 50 ms.
    let mut inc = Ws::connect(port, "/", Some("c-increment"));
    let first: Vec<u64> = (0..5).map(|_| inc.recv_text().parse().unwrap()).collect();
    assert_eq!(first, vec![0, 1, 2, 3, 4], "counter");
    inc.send_text("reset\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: u64 = inc.recv_text().parse().unwrap();
        if n < 5 {
            break;
        }
        assert!(Instant::now() < deadline, "reset\\n never took effect");
    }
    // The thread is joined in on_disconnect; the server stays healthy.
    inc.send_close(1000, "");
    assert_eq!(inc.recv_close().map(|c| c.0), Some(1000));
    let mut again = Ws::connect(port, "/", Some("c-increment"));
    assert_eq!(again.recv_text(), "0");
    drop(again);
    ws.send_text("still here");
    assert_eq!(ws.recv_text(), "still here");
}

#[test]
fn decline_header_get_protocol_index_and_close() {
    let dir = ConfigDir::new();
    let libs = dir.mkdir("libs");
    let decline = or_skip!(compile("decline", &libs));
    let probe = or_skip!(compile("probe", &libs));
    let closer = or_skip!(compile("closer", &libs));
    dir.write_file("passwd", "alice:secret\n");
    let protocols = format!(
        "{}, {}, {}, {}",
        entry("c-decline", &decline, "decline_init", ""),
        entry("c-probe", &probe, "probe_init", r#", "greeting": "hello""#),
        entry(
            "c-probe-auth",
            &probe,
            "probe_init",
            r#", "basic-auth": "passwd""#
        ),
        entry("c-closer", &closer, "closer_init", "")
    );
    let (server, port) = start(&dir, &protocols, "");

    // on_connect returning NULL refuses the handshake.
    let (reply, ws) = Handshake::new(port, "/").protocol("c-decline").send();
    assert!(ws.is_none());
    assert_eq!(reply.status, 403, "declined handshake");
    // With the header it wants, it accepts and adds its own header.
    let (reply, ws) = Handshake::new(port, "/")
        .protocol("c-decline")
        .header("X-Let-Me-In", "please")
        .send();
    let mut ws = ws.expect("accepted with the header");
    assert_eq!(reply.header("x-plugin"), Some("decline"));
    assert_eq!(reply.header("sec-websocket-protocol"), Some("c-decline"));
    ws.send_text("hi");
    assert_eq!(ws.recv_text(), "welcome");

    // header_get("Origin"), protocol_count/index (what the client offered),
    // pvo_get, user_get; header_get after on_connect is NULL.
    let origin = format!("http://127.0.0.1:{port}");
    let (reply, ws) = Handshake::new(port, "/")
        .protocol("unknown-one, c-probe, another")
        .origin(&origin)
        .send();
    let mut ws = ws.expect("probe accepted");
    assert_eq!(reply.header("sec-websocket-protocol"), Some("c-probe"));
    ws.send_text("?");
    assert_eq!(
        ws.recv_text(),
        format!(
            "origin={origin};protocols=unknown-one,c-probe,another;user=(null);pvo=hello;late=(null);sizes=equal"
        )
    );
    let mut ws = Handshake::new(port, "/").protocol("c-probe").open();
    ws.send_text("?");
    assert_eq!(
        ws.recv_text(),
        "origin=(null);protocols=c-probe;user=(null);pvo=hello;late=(null);sizes=equal"
    );

    // user_get: the user authenticated before the upgrade.
    let mut ws = Handshake::new(port, "/")
        .protocol("c-probe-auth")
        .header("Authorization", "Basic YWxpY2U6c2VjcmV0")
        .open();
    ws.send_text("?");
    assert_eq!(
        ws.recv_text(),
        "origin=(null);protocols=c-probe-auth;user=alice;pvo=(null);late=(null);sizes=equal"
    );

    // close from the plugin sends a close frame (1000); a close through
    // send carries the plugin's code and reason.
    let mut ws = Ws::connect(port, "/", Some("c-closer"));
    ws.send_text("echo me");
    assert_eq!(ws.recv_text(), "echo me");
    ws.send_text("bye");
    assert_eq!(ws.recv_close(), Some((1000, String::new())));
    let mut ws = Ws::connect(port, "/", Some("c-closer"));
    ws.send_text("bye4000");
    assert_eq!(ws.recv_close(), Some((4000, "later".to_string())));

    // Garbage calls are refused and the server lives on.
    let mut ws = Ws::connect(port, "/", Some("c-closer"));
    ws.send_text("garbage");
    assert_eq!(ws.recv_text(), "refused");
    ws.send_text("after");
    assert_eq!(ws.recv_text(), "after");
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/file.txt"), &[]).status,
        200
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Raises this process's open-file limit to its hard limit (1000 client
/// sockets).
fn more_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[test]
fn a_slow_plugin_does_not_block_a_file_request() {
    const CONNECTIONS: usize = 1000;
    const THREADS: usize = 20;
    let dir = ConfigDir::new();
    let libs = dir.mkdir("libs");
    let slow = or_skip!(compile("slow", &libs));
    more_files();
    // One network thread: were callbacks run on it, 1000 × 10 ms would
    // hold the file request up for 10 s.
    let (_server, port) = start(
        &dir,
        &entry("c-slow", &slow, "slow_init", r#", "default": "1""#),
        r#""count-threads": "1""#,
    );
    // Every connection open first, then all send at once (barrier), and
    // the file request goes out while the plugin works through them.
    let go = Arc::new(Barrier::new(THREADS + 1));
    let opened = Arc::new(Barrier::new(THREADS + 1));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let go = go.clone();
            let opened = opened.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<Ws> = (0..CONNECTIONS / THREADS)
                    .map(|_| Ws::connect(port, "/", None))
                    .collect();
                opened.wait();
                go.wait();
                for (i, ws) in conns.iter_mut().enumerate() {
                    ws.send_text(&format!("m{t}-{i}"));
                }
                for (i, ws) in conns.iter_mut().enumerate() {
                    assert_eq!(ws.recv_text(), format!("m{t}-{i}"));
                }
            })
        })
        .collect();
    opened.wait();
    go.wait();
    let started = Instant::now();
    let reply = get(&format!("http://127.0.0.1:{port}/file.txt"), &[]);
    let took = started.elapsed();
    eprintln!("file request took {took:?} with the plugin busy");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "static file\n");
    // A liveness bound, not a speed expectation: 1000 × 10 ms run serially
    // would take 10 s.
    assert!(
        took < Duration::from_secs(5),
        "file request took {took:?} while the plugin was busy"
    );
    for w in workers {
        w.join().expect("every connection got its echo");
    }
}

#[test]
fn rust_chat_plugin_from_plugin_dir() {
    let dir = ConfigDir::new();
    let plugins = dir.mkdir("plugins");
    std::fs::copy(common::chat_library(), plugins.join("chat.so")).unwrap();
    // A library without lwsws_plugin_protocols in the directory is skipped.
    std::fs::write(plugins.join("README"), "not a library").unwrap();
    let global = format!(r#""plugin-dir": "{}""#, plugins.display());
    let (_server, port) = start(&dir, r#""lwsws-chat": { "room": "r1" }"#, &global);

    let mut a = Ws::connect(port, "/", Some("lwsws-chat"));
    let mut b = Ws::connect(port, "/", Some("lwsws-chat"));
    // b has joined once its handshake is done: a's message reaches both.
    a.send_text("hello room");
    assert_eq!(a.recv_text(), "guest: hello room");
    assert_eq!(b.recv_text(), "guest: hello room");
    b.send_text("hi a");
    assert_eq!(a.recv_text(), "guest: hi a");
    assert_eq!(b.recv_text(), "guest: hi a");
    // A member that left hears nothing more, and is not written to.
    b.send_close(1000, "");
    assert_eq!(b.recv_close().map(|c| c.0), Some(1000));
    a.send_text("alone");
    assert_eq!(a.recv_text(), "guest: alone");
}

#[test]
fn plugin_configuration_errors() {
    let dir = ConfigDir::new();
    let libs = dir.mkdir("libs");
    let echo = or_skip!(compile("echo", &libs));
    let broken = or_skip!(compile("broken", &libs));
    let dup = dir.mkdir("dup");
    or_skip!(compile_as(
        "echo",
        &dup,
        "one",
        &["-DEXPORT_PROTOCOLS=\"dup-proto\""]
    ));
    or_skip!(compile_as(
        "echo",
        &dup,
        "two",
        &["-DEXPORT_PROTOCOLS=\"dup-proto\""]
    ));
    let www = dir.mkdir("www");
    let conf = |global: &str, protocols: &str| {
        format!(
            r#"{{ "global": {{ {global} }}, "vhosts": [{{ "name": "localhost", "port": "{}",
               "ws-protocols": [{{ {protocols} }}],
               "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}] }}"#,
            free_port(),
            www.display()
        )
    };
    let fails = |text: String, needles: &[&str]| {
        dir.write_conf(&text);
        let out = check(&dir);
        let err = stderr(&out);
        assert!(!out.status.success(), "--check passed:\n{text}");
        for n in needles {
            assert!(err.contains(n), "no {n:?} in:\n{err}");
        }
    };

    // A good one passes --check.
    dir.write_conf(&conf("", &entry("c-echo", &echo, "echo_init", "")));
    let out = check(&dir);
    assert!(out.status.success(), "{}", stderr(&out));

    let missing = libs.join("missing.so");
    fails(
        conf("", &entry("c-echo", &missing, "echo_init", "")),
        &["plugin", "missing.so"],
    );
    fails(
        conf("", &entry("c-echo", &echo, "no_such_init", "")),
        &["init", "no_such_init"],
    );
    fails(
        conf(
            "",
            &format!(r#""c-echo": {{ "plugin": "{}" }}"#, echo.display()),
        ),
        &["no \"init\""],
    );
    fails(
        conf("", &entry("c-x", &broken, "null_init", "")),
        &["returned NULL"],
    );
    fails(
        conf("", &entry("c-x", &broken, "small_init", "")),
        &["too small"],
    );
    fails(
        conf("", &entry("c-x", &broken, "no_message_init", "")),
        &["on_message"],
    );
    // Two libraries of one plugin-dir offering the same name.
    let one = dup.join("one.so");
    let two = dup.join("two.so");
    fails(
        conf(
            &format!(r#""plugin-dir": "{}""#, dup.display()),
            r#""dup-proto": {}"#,
        ),
        &["dup-proto", one.to_str().unwrap(), two.to_str().unwrap()],
    );
    // A plugin-dir protocol is known to ws-protocols; unknown names are not.
    std::fs::remove_file(&two).unwrap();
    dir.write_conf(&conf(
        &format!(r#""plugin-dir": "{}""#, dup.display()),
        r#""dup-proto": { "anything": "goes" }"#,
    ));
    let out = check(&dir);
    assert!(out.status.success(), "{}", stderr(&out));
    fails(
        conf(
            &format!(r#""plugin-dir": "{}""#, dup.display()),
            r#""nope-proto": {}"#,
        ),
        &["unknown protocol \"nope-proto\""],
    );
}

#[test]
fn a_reload_loads_an_updated_plugin() {
    let dir = ConfigDir::new();
    let libs = dir.mkdir("libs");
    let echo = or_skip!(compile_as("echo", &libs, "plugin", &[]));
    let (server, port) = start(
        &dir,
        &entry("c-plugin", &echo, "echo_init", r#", "default": "1""#),
        "",
    );
    let mut old = Ws::connect(port, "/", None);
    old.send_text("v1");
    assert_eq!(old.recv_text(), "v1");
    // The new version replaces the file by rename (the running worker keeps
    // the old one mapped): decline.c with its init under the same name.
    let staging = dir.mkdir("staging");
    let new = or_skip!(compile_as(
        "decline",
        &staging,
        "plugin",
        &["-Ddecline_init=echo_init"]
    ));
    std::fs::rename(&new, &echo).unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            Handshake::new(port, "/").status() == 403
        }),
        "the updated plugin never took effect\n{}",
        server.log()
    );
    let (_, ws) = Handshake::new(port, "/")
        .header("X-Let-Me-In", "please")
        .send();
    let mut ws = ws.expect("the new plugin accepts with its header");
    ws.send_text("?");
    assert_eq!(ws.recv_text(), "welcome");
}
