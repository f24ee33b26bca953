//! permessage-deflate (RFC 7692; SPEC §6.3, issue 11) against the real
//! binary and the `echo` protocol: the Python `websockets` client round-trips
//! messages with and without compression; a raw client checks what goes over
//! the wire (RSV1 only on messages of at least `ws-deflate-threshold` bytes,
//! context takeover across messages); a 10 MiB zip bomb with
//! `ws-max-message-size` 1 MiB closes with 1009 without the worker's memory
//! growing by anything like 10 MiB; `ws-deflate: 0` answers without the
//! extension.
//!
//! The negotiation rules, the inflater's bound and round trips with every
//! parameter are unit-tested in `crates/lwsws-ws/src/deflate/tests.rs`;
//! Autobahn|Testsuite sections 12 and 13 cover the rest
//! (`tests/autobahn/lwsws.sh BIN '12.*,13.*'`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::BytesMut;
use common::bin;
use common::ws::Handshake;
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use lwsws_ws::deflate::{DeflateConfig, DeflateParams, Deflater, Inflater};
use lwsws_ws::frame::encode_masked_frame;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

const PYTHON: &str = "/usr/bin/python3";

/// The Python `websockets` (10.4) client: `URL MODE`, prints a JSON object.
/// `plain`/`deflate`: echoes a set of messages three times (compression
/// off/on) and reports how many came back equal and the negotiated
/// extension; `bomb`: sends 10 MiB of one letter, compressed, and reports
/// the close code it gets.
const CLIENT: &str = r#"
import asyncio, json, sys
import websockets

url, mode = sys.argv[1], sys.argv[2]

async def main():
    out = {}
    if mode in ("plain", "deflate"):
        comp = None if mode == "plain" else "deflate"
        async with websockets.connect(url, compression=comp, max_size=None) as ws:
            out["extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions")
            msgs = [
                "hi",
                "h\u00e9llo w\u00f6rld " * 20,
                json.dumps([{"id": i, "name": "item %d" % i, "ok": True} for i in range(40)]),
                bytes(range(256)) * 20,
                "x" * 200000,
                b"",
                "",
            ]
            n = 0
            bad = []
            for _ in range(3):
                for m in msgs:
                    await ws.send(m)
                    back = await asyncio.wait_for(ws.recv(), 20)
                    if back == m and type(back) is type(m):
                        n += 1
                    else:
                        bad.append(repr(m)[:40])
            out["echoed"] = n
            out["of"] = 3 * len(msgs)
            out["bad"] = bad
    elif mode == "bomb":
        async with websockets.connect(url, compression="deflate", max_size=None,
                                      ping_interval=None) as ws:
            out["extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions")
            await ws.send("a" * (10 << 20))
            try:
                await asyncio.wait_for(ws.recv(), 20)
                out["code"] = "message"
            except websockets.ConnectionClosed as e:
                out["code"] = e.rcvd.code if e.rcvd is not None else None
    print(json.dumps(out))

asyncio.run(main())
"#;

fn client(url: &str, mode: &str) -> serde_json::Value {
    let out = Command::new(PYTHON)
        .args(["-c", CLIENT, url, mode])
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "client {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON from the client ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `localhost`: echo, compression on (the default), 1 MiB message limit;
/// `off.test`: the same with `ws-deflate: 0`; `big.test`: a threshold of
/// 1000 bytes.
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
        r#"{{ "global": {{ "count-threads": "1" }}, "vhosts": [
        {{ "name": "localhost", "port": "{port}", "interface": "127.0.0.1",
           "ws-max-message-size": "1048576",
           "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }},
        {{ "name": "off.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-deflate": "0",
           "ws-protocols": [{{ "echo": {{ "default": "1" }} }}],
           "mounts": [{{ "mountpoint": "/", "origin": "file://{www}" }}] }},
        {{ "name": "big.test", "port": "{port}", "interface": "127.0.0.1",
           "ws-deflate-threshold": "1000",
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

#[test]
fn python_websockets_round_trips_with_and_without_compression() {
    let s = start();
    let url = format!("ws://127.0.0.1:{}/", s.port);
    let on = client(&url, "deflate");
    assert_eq!(on["extensions"], "permessage-deflate", "{on}");
    assert_eq!(on["echoed"], on["of"], "{on}\n{}", s.server.log());
    let off = client(&url, "plain");
    assert!(off["extensions"].is_null(), "{off}");
    assert_eq!(off["echoed"], off["of"], "{off}\n{}", s.server.log());
}

#[test]
fn ws_deflate_0_answers_without_the_extension() {
    let s = start();
    let (reply, _) = Handshake::new(s.port, "/")
        .host(&format!("off.test:{}", s.port))
        .header(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        )
        .send();
    assert_eq!(reply.status, 101);
    assert!(
        reply.header("sec-websocket-extensions").is_none(),
        "{:?}",
        reply.headers
    );
    // And on a vhost with compression, the same offer is accepted.
    let (reply, _) = Handshake::new(s.port, "/")
        .header(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        )
        .send();
    assert_eq!(reply.status, 101);
    assert_eq!(
        reply.header("sec-websocket-extensions"),
        Some("permessage-deflate")
    );
}

/// The summed `field` (KiB) of the worker processes: the children of the
/// supervisor.
fn workers_kib(s: &Server, field: &str) -> u64 {
    let workers = common::live_children(s.server.pid());
    assert!(!workers.is_empty(), "no worker process");
    workers
        .iter()
        .filter_map(|&pid| common::proc_status_kib(pid, field))
        .sum()
}

#[test]
fn zip_bomb_closes_with_1009_and_memory_stays_small() {
    let s = start();
    let url = format!("ws://127.0.0.1:{}/", s.port);
    // Warm up (thread buffers, zlib state) before measuring.
    let warm = client(&url, "deflate");
    assert_eq!(warm["echoed"], warm["of"], "{warm}");
    let rss_before = workers_kib(&s, "VmRSS");
    let hwm_before = workers_kib(&s, "VmHWM");
    for _ in 0..3 {
        let r = client(&url, "bomb");
        assert_eq!(r["extensions"], "permessage-deflate", "{r}");
        assert_eq!(r["code"], 1009, "{r}\n{}", s.server.log());
    }
    let rss_after = workers_kib(&s, "VmRSS");
    let hwm_after = workers_kib(&s, "VmHWM");
    eprintln!(
        "worker VmRSS {rss_before} -> {rss_after} KiB, VmHWM {hwm_before} -> {hwm_after} KiB"
    );
    // 10 MiB inflated three times would show; the 1 MiB limit (and the
    // compressed frame, a few KiB) is what may.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "VmRSS {rss_before} -> {rss_after} KiB"
    );
    assert!(
        hwm_after < hwm_before + 64 * 1024,
        "VmHWM {hwm_before} -> {hwm_after} KiB"
    );
    // The server still serves.
    let r = client(&url, "deflate");
    assert_eq!(r["echoed"], r["of"], "{r}");
}

/// A raw connection with permessage-deflate, to see RSV1 on the wire.
struct Raw {
    stream: TcpStream,
    inbox: Vec<u8>,
    deflater: Deflater,
    inflater: Inflater,
}

impl Raw {
    fn open(port: u16, host: &str, offer: &str) -> (Raw, String) {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {offer}\r\n\r\n"
        )
        .unwrap();
        let mut inbox = Vec::new();
        let end = loop {
            if let Some(i) = inbox.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed during the handshake");
            inbox.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&inbox[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let ext = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("sec-websocket-extensions")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        inbox.drain(..end);
        let params = DeflateParams {
            client_no_context_takeover: ext.contains("client_no_context_takeover"),
            server_no_context_takeover: ext.contains("server_no_context_takeover"),
            ..DeflateParams::default()
        };
        let raw = Raw {
            stream,
            inbox,
            deflater: Deflater::new(&DeflateConfig {
                params: DeflateParams {
                    server_no_context_takeover: params.client_no_context_takeover,
                    ..params
                },
                threshold: 0,
            }),
            inflater: Inflater::new(&DeflateParams {
                client_no_context_takeover: params.server_no_context_takeover,
                ..params
            }),
        };
        (raw, ext)
    }

    fn send(&mut self, payload: &[u8], compress: bool) {
        let mut out = BytesMut::new();
        let data = if compress {
            self.deflater.deflate(payload)
        } else {
            payload.to_vec()
        };
        encode_masked_frame(&mut out, true, OpCode::Text, compress, [1, 2, 3, 4], &data);
        self.stream.write_all(&out).unwrap();
    }

    /// The next frame: (first byte, payload as sent).
    fn recv_frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            let b = &self.inbox;
            if b.len() >= 2 {
                let (len, pos) = match b[1] & 0x7f {
                    126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
                    127 if b.len() >= 10 => (
                        usize::try_from(u64::from_be_bytes(b[2..10].try_into().unwrap())).unwrap(),
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (usize::from(n), 2),
                };
                if len != usize::MAX && b.len() >= pos + len {
                    let first = b[0];
                    let payload = b[pos..pos + len].to_vec();
                    self.inbox.drain(..pos + len);
                    return (first, payload);
                }
            }
            let mut buf = [0u8; 65536];
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed");
            self.inbox.extend_from_slice(&buf[..n]);
        }
    }

    /// The next message: whether it was compressed, its wire size and its
    /// inflated payload.
    fn recv(&mut self) -> (bool, usize, Vec<u8>) {
        let (first, payload) = self.recv_frame();
        assert_eq!(first & 0x0f, OpCode::Text as u8, "first byte {first:#x}");
        assert!(first & 0x80 != 0, "fragmented echo");
        let rsv1 = first & 0x40 != 0;
        let data = if rsv1 {
            self.inflater.inflate(&payload, 1 << 24).unwrap().to_vec()
        } else {
            payload.clone()
        };
        (rsv1, payload.len(), data)
    }
}

#[test]
fn only_messages_over_the_threshold_are_compressed() {
    let s = start();
    let json = br#"{"id": 1, "user": "someone", "text": "a message like many others", "ok": true}"#
        .repeat(20);
    for (host, threshold) in [("localhost", 64), ("big.test", 1000)] {
        let (mut ws, ext) = Raw::open(s.port, host, "permessage-deflate; client_max_window_bits");
        assert_eq!(ext, "permessage-deflate");
        for len in [0, 10, 63, 64, 65, 999, 1000, json.len()] {
            let m = &json[..len];
            for compress in [false, true] {
                ws.send(m, compress);
                let (rsv1, _, back) = ws.recv();
                assert_eq!(back, m, "{host} {len} {compress}");
                assert_eq!(rsv1, len >= threshold, "{host}: {len} bytes");
            }
        }
        // Context takeover: the same message again takes a few bytes.
        ws.send(&json, true);
        let (rsv1, wire, back) = ws.recv();
        assert!(rsv1 && back == json);
        assert!(wire < 40, "{wire} bytes for a repeated message");
    }
}

#[test]
fn no_context_takeover_both_ways() {
    let s = start();
    let json = br#"{"id": 1, "user": "someone", "text": "a message like many others", "ok": true}"#
        .repeat(20);
    let (mut ws, ext) = Raw::open(
        s.port,
        "localhost",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10",
    );
    assert_eq!(
        ext,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10"
    );
    let mut sizes = Vec::new();
    for _ in 0..3 {
        ws.send(&json, true);
        let (rsv1, wire, back) = ws.recv();
        assert!(rsv1 && back == json);
        sizes.push(wire);
    }
    assert!(sizes.iter().all(|&n| n == sizes[0]), "{sizes:?}");
}

#[test]
fn invalid_compressed_data_closes_with_1007() {
    let s = start();
    let (mut ws, _) = Raw::open(s.port, "localhost", "permessage-deflate");
    let mut out = BytesMut::new();
    encode_masked_frame(
        &mut out,
        true,
        OpCode::Text,
        true,
        [1, 2, 3, 4],
        &[0xff, 0xff, 0xff, 0xff],
    );
    ws.stream.write_all(&out).unwrap();
    let (first, payload) = ws.recv_frame();
    assert_eq!(first & 0x0f, OpCode::Close as u8);
    assert_eq!(&payload[..2], &1007u16.to_be_bytes());
    // Invalid UTF-8 after inflating: 1007 as well.
    let (mut ws, _) = Raw::open(s.port, "localhost", "permessage-deflate");
    ws.send(b"caf\xc3 not UTF-8 \xff", true);
    let (first, payload) = ws.recv_frame();
    assert_eq!(first & 0x0f, OpCode::Close as u8);
    assert_eq!(&payload[..2], &1007u16.to_be_bytes());
}
