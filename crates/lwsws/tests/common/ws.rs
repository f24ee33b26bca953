//! What the WebSocket tests (`ws_*.rs`) share: a raw, blocking RFC 6455
//! client ([`Ws`]) that does the opening handshake itself and writes masked
//! frames by hand (with `lwsws_ws::frame::encode_masked_frame`), so a test can
//! send exactly the bytes it means (bad UTF-8, reserved close codes, unmasked
//! frames, a client that never answers pings) and see every frame the server
//! sends, pings included; and [`probe`], which runs the Python `websockets`
//! client `fixtures/ws/ws_probe.py` as an independent implementation.
//!
//! The server side lives in `crates/lwsws-ws` (codec, protocols) and
//! `crates/lwsws-server/src/websocket.rs` (the upgrade).

use super::{Reply, read_response};
use bytes::BytesMut;
use lwsws_ws::OpCode;
use lwsws_ws::frame::encode_masked_frame;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `Sec-WebSocket-Key` of every handshake (RFC 6455 §1.3's example).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Its `Sec-WebSocket-Accept`.
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The mask of every frame the client sends: not zero, so that a server
/// that forgot to unmask would see garbage.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// How long a read waits for a frame the test expects: a liveness bound,
/// not a timing expectation.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// `tests/fixtures/ws/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ws")
        .join(name)
}

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// The raw opcode bits, so that a bad one shows in the assertion.
    pub opcode: u8,
    /// Whether the server masked it (it must not).
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn is(&self, op: OpCode) -> bool {
        self.opcode == op as u8
    }

    /// The payload as text (lossy, for messages and assertions).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The code and reason of a close frame (`None` for an empty one).
    pub fn close(&self) -> Option<(u16, String)> {
        assert!(self.is(OpCode::Close), "not a close frame: {self:?}");
        match self.payload.as_slice() {
            [] => None,
            [hi, lo, reason @ ..] => Some((
                u16::from_be_bytes([*hi, *lo]),
                String::from_utf8_lossy(reason).into_owned(),
            )),
            [_] => panic!("close frame with a one-byte payload: {self:?}"),
        }
    }
}

/// What a read found instead of a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum NoFrame {
    /// The server closed the TCP connection (EOF or reset).
    Closed,
    /// Nothing arrived in time.
    Timeout,
}

/// A handshake request: `GET PATH` on `127.0.0.1:PORT` with `Host`, and the
/// WebSocket headers unless a test replaces or removes them.
#[derive(Debug, Clone)]
pub struct Handshake {
    port: u16,
    path: String,
    host: String,
    version: Option<String>,
    /// The `Upgrade` and `Connection` values.
    upgrade: String,
    connection: String,
    headers: Vec<(String, String)>,
}

impl Handshake {
    /// An upgrade of `PATH` with `Host: 127.0.0.1:PORT`, version 13, the
    /// standard key, no protocol and no Origin.
    pub fn new(port: u16, path: &str) -> Handshake {
        Handshake {
            port,
            path: path.to_owned(),
            host: format!("127.0.0.1:{port}"),
            version: Some("13".into()),
            upgrade: "websocket".into(),
            connection: "Upgrade".into(),
            headers: Vec::new(),
        }
    }

    /// The `Host` header (which also picks the vhost).
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    /// `Sec-WebSocket-Version`, or none at all.
    pub fn version(mut self, version: Option<&str>) -> Self {
        self.version = version.map(str::to_owned);
        self
    }

    /// The `Upgrade` and `Connection` header values.
    pub fn upgrade_connection(mut self, upgrade: &str, connection: &str) -> Self {
        self.upgrade = upgrade.to_owned();
        self.connection = connection.to_owned();
        self
    }

    /// `Sec-WebSocket-Protocol: LIST` (one header line per call).
    pub fn protocol(self, list: &str) -> Self {
        self.header("Sec-WebSocket-Protocol", list)
    }

    pub fn origin(self, origin: &str) -> Self {
        self.header("Origin", origin)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The request's bytes.
    fn request(&self) -> String {
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: {}\r\nConnection: {}\r\n\
             Sec-WebSocket-Key: {KEY}\r\n",
            self.path, self.host, self.upgrade, self.connection
        );
        if let Some(v) = &self.version {
            req.push_str(&format!("Sec-WebSocket-Version: {v}\r\n"));
        }
        for (k, v) in &self.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req
    }

    /// Sends the request and returns the answer, with the connection when it
    /// is a 101. The head of a 101 is checked against RFC 6455 §4.2.2.
    pub fn send(&self) -> (Reply, Option<Ws>) {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{}: {e}", self.port));
        stream.set_read_timeout(Some(FRAME_DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut writer = stream.try_clone().unwrap();
        writer.write_all(self.request().as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let reply = read_response(&mut reader, false);
        if reply.status != 101 {
            return (reply, None);
        }
        assert_eq!(
            reply.header("sec-websocket-accept"),
            Some(ACCEPT),
            "101 head"
        );
        assert!(
            reply
                .header("upgrade")
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
            "101 without Upgrade: websocket"
        );
        assert!(
            reply
                .header("connection")
                .is_some_and(|c| c.to_ascii_lowercase().contains("upgrade")),
            "101 without Connection: upgrade"
        );
        // Whatever the server sent after its head is in the BufReader.
        let pending = reader.buffer().to_vec();
        let ws = Ws {
            stream: reader.into_inner(),
            inbox: pending,
        };
        (reply, Some(ws))
    }

    /// The status of the answer (for refusals).
    pub fn status(&self) -> u16 {
        self.send().0.status
    }

    /// Sends the request and panics unless the answer is a 101.
    pub fn open(&self) -> Ws {
        match self.send() {
            (_, Some(ws)) => ws,
            (reply, None) => panic!(
                "upgrade of {} on port {} refused: {} {:?} {}",
                self.path,
                self.port,
                reply.status,
                reply.headers,
                reply.text()
            ),
        }
    }
}

/// An open WebSocket connection, seen from the client, frame by frame.
pub struct Ws {
    stream: TcpStream,
    /// Bytes received and not yet parsed into frames.
    inbox: Vec<u8>,
}

impl Ws {
    /// Opens `PATH` on `port` with `Sec-WebSocket-Protocol: PROTOCOL` (none
    /// if `None`); panics unless the server accepts.
    pub fn connect(port: u16, path: &str, protocol: Option<&str>) -> Ws {
        let mut h = Handshake::new(port, path);
        if let Some(p) = protocol {
            h = h.protocol(p);
        }
        h.open()
    }

    /// Writes one masked frame.
    pub fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        self.send_raw(&masked(fin, opcode, payload));
    }

    /// A second handle on the connection that only sends, for a thread that
    /// writes while another reads.
    pub fn sender(&self) -> WsSender {
        WsSender {
            stream: self.stream.try_clone().unwrap(),
        }
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, OpCode::Text, text.as_bytes());
    }

    /// A close frame with `code` and `reason`.
    pub fn send_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_frame(true, OpCode::Close, &payload);
    }

    /// The next frame, waiting at most `timeout`.
    pub fn recv_within(&mut self, timeout: Duration) -> Result<Frame, NoFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.parse_one() {
                return Ok(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 16384];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(NoFrame::Closed),
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(NoFrame::Timeout);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(NoFrame::Closed),
            }
        }
    }

    /// The next frame; panics if none comes within [`FRAME_DEADLINE`].
    pub fn recv(&mut self) -> Frame {
        self.recv_within(FRAME_DEADLINE)
            .unwrap_or_else(|e| panic!("no frame from the server: {e:?}"))
    }

    /// The next data frame's text, answering pings on the way; panics on
    /// anything but an unfragmented text frame.
    pub fn recv_text(&mut self) -> String {
        loop {
            let f = self.recv();
            if f.is(OpCode::Ping) {
                self.send_frame(true, OpCode::Pong, &f.payload);
                continue;
            }
            assert!(f.is(OpCode::Text) && f.fin, "expected a text frame: {f:?}");
            return String::from_utf8(f.payload).expect("text frame is UTF-8");
        }
    }

    /// Reads until a close frame and returns its code and reason, skipping
    /// data frames and pings on the way; panics if the connection ends
    /// first or nothing comes within [`FRAME_DEADLINE`].
    pub fn recv_close(&mut self) -> Option<(u16, String)> {
        let deadline = Instant::now() + FRAME_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left) {
                Ok(f) if f.is(OpCode::Close) => {
                    assert!(!f.masked, "the server masked its close frame");
                    return f.close();
                }
                Ok(_) => {}
                Err(e) => panic!("no close frame from the server: {e:?}"),
            }
        }
    }

    /// Whether the server ends the TCP connection within `timeout`, after
    /// (or without) whatever frames it still sends, which are ignored.
    pub fn ends_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left) {
                Ok(_) => {}
                Err(NoFrame::Closed) => return true,
                Err(NoFrame::Timeout) => return false,
            }
        }
    }

    /// The underlying socket (for a test that needs to shut it down).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Takes one complete frame off the inbox, if there is one.
    fn parse_one(&mut self) -> Option<Frame> {
        let b = &self.inbox;
        if b.len() < 2 {
            return None;
        }
        let masked = b[1] & 0x80 != 0;
        let (len, mut pos) = match b[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
            127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
            n => (u64::from(n), 2),
        };
        let mask: Option<[u8; 4]> = if masked {
            let m = b.get(pos..pos + 4)?.try_into().ok()?;
            pos += 4;
            Some(m)
        } else {
            None
        };
        let len = usize::try_from(len).expect("frame length fits in usize");
        if b.len() < pos + len {
            return None;
        }
        let mut payload = b[pos..pos + len].to_vec();
        if let Some(m) = mask {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= m[i % 4];
            }
        }
        let frame = Frame {
            fin: b[0] & 0x80 != 0,
            opcode: b[0] & 0x0f,
            masked,
            payload,
        };
        assert_eq!(
            b[0] & 0x70,
            0,
            "server frame with reserved bits set: {frame:?}"
        );
        self.inbox.drain(..pos + len);
        Some(frame)
    }
}

/// The sending side of a [`Ws`], from [`Ws::sender`].
pub struct WsSender {
    stream: TcpStream,
}

impl WsSender {
    pub fn send_text(&mut self, text: &str) {
        self.stream
            .write_all(&masked(true, OpCode::Text, text.as_bytes()))
            .unwrap();
    }
}

/// One masked client frame.
fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    encode_masked_frame(&mut out, fin, opcode, false, MASK, payload);
    out
}

/// Runs `fixtures/ws/ws_probe.py` with `spec` (see the script) and returns
/// the JSON it printed; panics, with its stderr, if it fails. The script
/// gives up by itself after 30 s.
pub fn probe(spec: &serde_json::Value) -> serde_json::Value {
    let out = Command::new(super::proxy::PYTHON)
        .arg(fixture("ws_probe.py"))
        .arg(spec.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run ws_probe.py");
    assert!(
        out.status.success(),
        "ws_probe.py {spec} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ws_probe.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
