//! WebSocket frame rules against the real binary (SPEC §6.3): messages over
//! `ws-max-message-size` close with 1009 (whole or added up from fragments),
//! close codes that are never valid and, unless
//! `ws-allow-reserved-status-codes` is on, the reserved ones close with
//! 1002, invalid UTF-8 in a text message closes with 1007 (also when it is
//! split across fragments), an unmasked frame closes with 1002, a ping is
//! answered with a pong carrying its payload, and a close is answered with
//! the same code before the server ends the TCP connection.
//!
//! A raw client (`common/ws.rs`) writes the frames byte for byte and reads
//! every frame the server sends. The codec's own unit tests are in
//! `crates/lwsws-ws/src/{message,close,frame}.rs`; the Autobahn suite
//! (`tests/autobahn/`) covers the rest of RFC 6455.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bin;
use common::ws::{Handshake, NoFrame, Ws};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use std::time::Duration;

/// The limit of the `localhost` vhost.
const LIMIT: usize = 1024;

/// How long the server may take to end the TCP connection after its close
/// frame: a liveness bound.
const END: Duration = Duration::from_secs(10);

/// One port, `echo` as the default protocol on two vhosts:
/// - `localhost` (first): `ws-max-message-size` 1024;
/// - `reserved.test`: `ws-allow-reserved-status-codes` on.
struct Server {
    server: Lwsws,
    port: u16,
    _dir: ConfigDir,
}

fn start() -> Server {
    let dir = ConfigDir::new();
    let port = free_port();
    let www = dir.mkdir("www");
    let www = www.display();
    dir.write_conf(&format!(
        r#"{{ "vhosts": [
        {{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
           "ws-max-message-size": "{LIMIT}",
           "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }},
        {{ "name": "reserved.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-allow-reserved-status-codes": "on",
           "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }}
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
    /// An echo connection on the `localhost` vhost.
    fn ws(&self) -> Ws {
        Ws::connect(self.port, "/", None)
    }

    /// An echo connection on `reserved.test`.
    fn ws_reserved(&self) -> Ws {
        Handshake::new(self.port, "/")
            .host(&format!("reserved.test:{}", self.port))
            .open()
    }

    /// Reads until the server's close frame, checks its code, and that the
    /// TCP connection then ends.
    fn closes_with(&self, ws: &mut Ws, code: u16, what: &str) {
        let got = ws.recv_close();
        assert_eq!(
            got.as_ref().map(|(c, _)| *c),
            Some(code),
            "{what}: close {got:?}\n--- lwsws ---\n{}",
            self.server.log()
        );
        assert!(ws.ends_within(END), "{what}: TCP connection left open");
    }
}

#[test]
fn a_message_over_the_limit_closes_with_1009() {
    let s = start();
    // At the limit: fine.
    let mut ws = s.ws();
    let at_limit = "a".repeat(LIMIT);
    ws.send_text(&at_limit);
    assert_eq!(ws.recv_text(), at_limit);
    // Twice the limit, text or binary.
    ws.send_text(&"b".repeat(2 * LIMIT));
    s.closes_with(&mut ws, 1009, "2 KiB text");
    let mut ws = s.ws();
    ws.send_frame(true, OpCode::Binary, &[7u8; LIMIT + 1]);
    s.closes_with(&mut ws, 1009, "limit + 1 binary");
}

#[test]
fn a_declared_length_over_the_limit_closes_at_once() {
    let s = start();
    // A header announcing 1 GiB (masked, 64-bit length), and no payload:
    // the server must not wait for it.
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let mut ws = s.ws();
    ws.send_raw(&header);
    s.closes_with(&mut ws, 1009, "1 GiB announced");
    // The default limit is 32 MiB: 64 MiB announced is over it too.
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(64u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let mut ws = s.ws_reserved();
    ws.send_raw(&header);
    s.closes_with(&mut ws, 1009, "64 MiB announced, default limit");
}

#[test]
fn fragments_adding_up_past_the_limit_close_with_1009() {
    let s = start();
    // Two halves of the limit: fine.
    let mut ws = s.ws();
    let half = "c".repeat(LIMIT / 2);
    ws.send_frame(false, OpCode::Text, half.as_bytes());
    ws.send_frame(true, OpCode::Continuation, half.as_bytes());
    assert_eq!(ws.recv_text(), half.repeat(2));
    // Three halves: the third fragment goes over.
    ws.send_frame(false, OpCode::Binary, half.as_bytes());
    ws.send_frame(false, OpCode::Continuation, half.as_bytes());
    ws.send_frame(true, OpCode::Continuation, half.as_bytes());
    s.closes_with(&mut ws, 1009, "three fragments of 512");
}

#[test]
fn reserved_close_codes_close_with_1002() {
    let s = start();
    for code in [1004, 1016, 2000, 2999] {
        let mut ws = s.ws();
        ws.send_close(code, "reserved");
        s.closes_with(&mut ws, 1002, &format!("close {code}"));
    }
}

#[test]
fn reserved_close_codes_are_answered_when_allowed() {
    let s = start();
    for code in [1004, 1016, 2999] {
        let mut ws = s.ws_reserved();
        ws.send_close(code, "reserved");
        s.closes_with(&mut ws, code, &format!("close {code} (allowed)"));
    }
}

#[test]
fn close_codes_that_are_never_valid_close_with_1002() {
    let s = start();
    for code in [0, 999, 1005, 1006, 1015, 5000, 65535] {
        let mut ws = s.ws();
        ws.send_close(code, "");
        s.closes_with(&mut ws, 1002, &format!("close {code}"));
        // Not even with the reserved codes allowed.
        let mut ws = s.ws_reserved();
        ws.send_close(code, "");
        s.closes_with(&mut ws, 1002, &format!("close {code} (reserved allowed)"));
    }
}

#[test]
fn valid_close_codes_are_echoed_and_the_connection_ends() {
    let s = start();
    for code in [1000, 1001, 1003, 1011, 3000, 4999] {
        let mut ws = s.ws();
        ws.send_close(code, "bye");
        s.closes_with(&mut ws, code, &format!("close {code}"));
    }
    // A close with no code gets a close frame too, and the end.
    let mut ws = s.ws();
    ws.send_frame(true, OpCode::Close, b"");
    let f = ws.recv();
    assert!(f.is(OpCode::Close), "{f:?}");
    assert!(ws.ends_within(END));
}

#[test]
fn malformed_close_payloads_are_refused() {
    let s = start();
    // A one-byte payload cannot hold a code.
    let mut ws = s.ws();
    ws.send_frame(true, OpCode::Close, b"\x03");
    s.closes_with(&mut ws, 1002, "one-byte close payload");
    // The reason must be UTF-8.
    let mut ws = s.ws();
    ws.send_frame(true, OpCode::Close, b"\x03\xe8bad \xff reason");
    s.closes_with(&mut ws, 1007, "close reason not UTF-8");
}

#[test]
fn nothing_is_echoed_after_a_close() {
    let s = start();
    let mut ws = s.ws();
    ws.send_text("before");
    ws.send_close(1000, "");
    ws.send_text("after");
    assert_eq!(ws.recv_text(), "before");
    let f = ws.recv();
    assert!(f.is(OpCode::Close), "{f:?}");
    assert_eq!(f.close(), Some((1000, String::new())));
    assert_eq!(ws.recv_within(END), Err(NoFrame::Closed));
}

#[test]
fn invalid_utf8_in_text_closes_with_1007() {
    let s = start();
    let mut ws = s.ws();
    ws.send_frame(true, OpCode::Text, b"caf\xc3\xa9 ok");
    assert_eq!(ws.recv_text(), "caf\u{e9} ok");
    ws.send_frame(true, OpCode::Text, b"bad \xff byte");
    s.closes_with(&mut ws, 1007, "0xff");

    // A surrogate encoded as UTF-8 is not UTF-8 either.
    let mut ws = s.ws();
    ws.send_frame(true, OpCode::Text, b"\xed\xa0\x80");
    s.closes_with(&mut ws, 1007, "surrogate");

    // Binary messages carry any bytes.
    let mut ws = s.ws();
    ws.send_frame(true, OpCode::Binary, b"\xff\xfe");
    let f = ws.recv();
    assert!(f.is(OpCode::Binary), "{f:?}");
    assert_eq!(f.payload, b"\xff\xfe");
}

#[test]
fn invalid_utf8_across_fragments_closes_with_1007() {
    let s = start();
    // A character split between fragments is fine...
    let mut ws = s.ws();
    ws.send_frame(false, OpCode::Text, b"\xce");
    ws.send_frame(true, OpCode::Continuation, b"\xba\xe1\xbd\xb9");
    assert_eq!(ws.recv_text(), "\u{3ba}\u{1f79}");
    // ...a sequence broken by the next fragment is not.
    ws.send_frame(false, OpCode::Text, b"ok \xce");
    ws.send_frame(true, OpCode::Continuation, b"A");
    s.closes_with(&mut ws, 1007, "broken across fragments");

    // Nor is a message that ends inside a character.
    let mut ws = s.ws();
    ws.send_frame(false, OpCode::Text, b"ok");
    ws.send_frame(true, OpCode::Continuation, b" \xe1\xbd");
    s.closes_with(&mut ws, 1007, "truncated at the end");

    // A bad byte in a first fragment fails at once, without the rest.
    let mut ws = s.ws();
    ws.send_frame(false, OpCode::Text, b"\xc0\xaf");
    s.closes_with(&mut ws, 1007, "bad first fragment");
}

#[test]
fn an_unmasked_frame_closes_with_1002() {
    let s = start();
    let mut ws = s.ws();
    // FIN + text, length 5, no mask bit.
    ws.send_raw(b"\x81\x05hello");
    s.closes_with(&mut ws, 1002, "unmasked text");
    let mut ws = s.ws();
    ws.send_raw(b"\x89\x00");
    s.closes_with(&mut ws, 1002, "unmasked ping");
}

#[test]
fn other_framing_errors_close_with_1002() {
    let s = start();
    let mut ws = s.ws();
    ws.send_frame(true, OpCode::Continuation, b"orphan");
    s.closes_with(&mut ws, 1002, "continuation without a message");

    let mut ws = s.ws();
    ws.send_frame(false, OpCode::Text, b"one");
    ws.send_frame(true, OpCode::Text, b"two");
    s.closes_with(&mut ws, 1002, "new message inside a fragmented one");

    // RSV2 set (no extension is negotiated): 0xA1 = FIN | RSV2 | text.
    let mut ws = s.ws();
    ws.send_raw(&[0xa1, 0x80, 0, 0, 0, 0]);
    s.closes_with(&mut ws, 1002, "reserved bit");

    // Opcode 3 is reserved.
    let mut ws = s.ws();
    ws.send_raw(&[0x83, 0x80, 0, 0, 0, 0]);
    s.closes_with(&mut ws, 1002, "reserved opcode");
}

#[test]
fn a_ping_gets_a_pong_with_the_same_payload() {
    let s = start();
    let mut ws = s.ws();
    for payload in [&b"hello-ping"[..], b"", &[0xffu8; 125][..]] {
        ws.send_frame(true, OpCode::Ping, payload);
        let f = ws.recv();
        assert!(f.is(OpCode::Pong) && f.fin && !f.masked, "{f:?}");
        assert_eq!(f.payload, payload);
    }
    // Between the fragments of a message, too.
    ws.send_frame(false, OpCode::Text, b"frag");
    ws.send_frame(true, OpCode::Ping, b"in between");
    ws.send_frame(true, OpCode::Continuation, b"mented");
    let f = ws.recv();
    assert!(f.is(OpCode::Pong), "{f:?}");
    assert_eq!(f.payload, b"in between");
    assert_eq!(ws.recv_text(), "fragmented");
    // A control frame longer than 125 bytes breaks the rules.
    ws.send_frame(true, OpCode::Ping, &[1u8; 126]);
    s.closes_with(&mut ws, 1002, "126-byte ping");
}

#[test]
fn a_normal_close_is_echoed_and_the_tcp_connection_ends() {
    let s = start();
    let mut ws = s.ws();
    ws.send_text("last words");
    assert_eq!(ws.recv_text(), "last words");
    ws.send_close(1000, "done");
    let f = ws.recv();
    assert!(f.is(OpCode::Close) && f.fin && !f.masked, "{f:?}");
    assert_eq!(f.close().map(|(c, _)| c), Some(1000));
    assert_eq!(ws.recv_within(END), Err(NoFrame::Closed));
}

#[test]
fn a_message_larger_than_the_outgoing_queue_bound_is_echoed_whole() {
    // The default limit (32 MiB) allows 20 MiB; the echo of it is one frame
    // bigger than the connection's outgoing-queue bound, which must still go.
    let s = start();
    let mut ws = s.ws_reserved();
    let payload: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    ws.send_frame(true, OpCode::Binary, &payload);
    let f = ws.recv_within(Duration::from_secs(30)).expect("the echo");
    assert!(f.is(OpCode::Binary));
    assert_eq!(f.payload.len(), payload.len());
    assert!(f.payload == payload, "echoed bytes differ");
}
