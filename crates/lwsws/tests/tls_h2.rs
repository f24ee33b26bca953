//! HTTP/2 and WebSockets on TLS vhosts (issue 7's acceptance, SPEC §5, §6.1):
//! - `curl --http2` gets HTTP/2 and the same status, `Location` and body as
//!   `curl --http1.1` for a file, `/`, a directory redirect, a redirect
//!   mount, a 404 with `error-document-404`, CGI output (GET and a POST
//!   body), a HEAD and a 3 MiB file; a CGI program sees the same
//!   variables (HTTP_HOST, and SERVER_NAME on a wildcard vhost, come from
//!   `:authority` over h2);
//! - a vhost with `"alpn": "http/1.1"` (and the global `default-alpn`)
//!   never negotiates h2;
//! - wss over HTTP/1.1 (Python `websockets`) on `lws-mirror-protocol` gets
//!   its message back;
//! - RFC 8441: two extended CONNECT WebSockets and plain GETs share one h2
//!   connection (hyper client over tokio-rustls); a wss client and an h2
//!   stream are members of the same mirror room;
//! - a reload drains an h2 connection: a response in flight completes,
//!   the connection gets GOAWAY (new requests on it fail) and ends, and new
//!   connections are served by the next generation; h2 WebSockets get
//!   1001 at `drain-timeout-secs` and on stop, like HTTP/1.1 ones.
//!
//! Each test makes its own CA and certificates (`common/tls.rs`, rcgen).
//! The server side is `crates/lwsws-server/src/conn.rs` (TLS, ALPN, h2,
//! drain) and `crates/lwsws-server/src/websocket.rs` (200 for CONNECT).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use bytes::{Bytes, BytesMut};
use common::{Reply, bin, parse_head};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use lwsws_ws::OpCode;
use lwsws_ws::frame::encode_masked_frame;
use nix::sys::signal::Signal;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tls::{Ca, rustls_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIRROR: &str = "lws-mirror-protocol";
/// The TLS vhost that speaks h2 and HTTP/1.1.
const H2_HOST: &str = "h2.test";
/// The TLS vhost of the same port with `"alpn": "http/1.1"`.
const H1_ONLY: &str = "h1only.test";
/// A wildcard TLS vhost of the same port (CGI only), and a name it serves.
const WILD: &str = "*.wild.test";
const WILD_HOST: &str = "a.wild.test";
/// How long a step may take (a frame, a response, a worker starting):
/// a liveness bound, not a timing expectation.
const DEADLINE: Duration = Duration::from_secs(30);
/// The mask of every client frame (not zero, so an unmasking bug shows).
const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x88];
const PYTHON: &str = "/usr/bin/python3";

/// CGI: fixed text and the variables a program sees, the same whatever
/// the HTTP version (SERVER_PROTOCOL is printed by `/proto`).
const CGI_INFO: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\nX-Cgi: info\r\n\r\n'
echo "hello from cgi"
for v in HTTPS SSL_CLIENT_VERIFY REQUEST_METHOD SCRIPT_NAME PATH_INFO QUERY_STRING \
	REQUEST_URI SERVER_NAME SERVER_PORT HTTP_HOST CONTENT_LENGTH; do
	eval "printf '%s=%s\n' $v \"\${$v-<unset>}\""
done
"#;

/// CGI: the request body back, with its length.
const CGI_ECHO: &str = r#"#!/bin/sh
printf 'Content-Type: application/octet-stream\r\nX-Length: %s\r\n\r\n' "${CONTENT_LENGTH-<unset>}"
exec cat
"#;

/// CGI: SERVER_PROTOCOL alone.
const CGI_PROTO: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$SERVER_PROTOCOL"
"#;

/// CGI for the drain test: a first line at once, the rest (GATE_LINES
/// numbered lines and a last line) once the file GATE exists (60 s at most).
const CGI_GATE: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "before the gate"
i=0
while [ ! -e "@GATE@" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
seq 1 @LINES@
echo "after the gate"
"#;
const GATE_LINES: usize = 20000;

/// The full body `CGI_GATE` sends once the gate opens.
fn gate_body() -> String {
    let mut s = String::from("before the gate\n");
    for i in 1..=GATE_LINES {
        s.push_str(&format!("{i}\n"));
    }
    s.push_str("after the gate\n");
    s
}

/// 3 MiB + 17 bytes of deterministic noise (a simple LCG), so that a
/// misplaced or repeated chunk shows.
fn big_file() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..3 * 1024 * 1024 + 17)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// A running server with two TLS vhosts on one port, both signed by `ca`:
/// `h2.test` (default ALPN: h2 and http/1.1) and `h1only.test` (`"alpn":
/// "http/1.1"`).
struct Site {
    dir: ConfigDir,
    ca: Ca,
    ca_file: PathBuf,
    port: u16,
    server: Lwsws,
}

impl Site {
    fn start() -> Site {
        Site::start_draining(120)
    }

    /// With `drain-timeout-secs` = `drain`.
    fn start_draining(drain: u64) -> Site {
        let dir = ConfigDir::new();
        let ca = Ca::new("lwsws tls_h2 test CA");
        let ca_file = dir.write_file("tls/ca.pem", ca.pem());
        for (stem, name) in [(H2_HOST, H2_HOST), (H1_ONLY, H1_ONLY), ("wild", WILD)] {
            let (cert, key) = ca.server_cert(&[name]);
            dir.write_file(&format!("tls/{stem}.pem"), cert);
            dir.write_file(&format!("tls/{stem}.key"), key);
        }
        dir.write_file("www/index.html", "<h1>home</h1>\n");
        dir.write_file("www/a.txt", "file a\n");
        dir.write_file("www/sub/index.html", "sub index\n");
        dir.write_file("www/404.html", "<p>custom not found page</p>\n");
        dir.write_file("www/big.bin", big_file());
        for (name, text) in [
            ("info.sh", CGI_INFO.to_owned()),
            ("echo.sh", CGI_ECHO.to_owned()),
            ("proto.sh", CGI_PROTO.to_owned()),
            (
                "gate.sh",
                CGI_GATE
                    .replace("@GATE@", dir.path().join("gate-open").to_str().unwrap())
                    .replace("@LINES@", &GATE_LINES.to_string()),
            ),
        ] {
            let p = dir.write_file(&format!("cgi/{name}"), text);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let port = free_port();
        let site_conf = conf(&dir, port, 1, drain);
        dir.write_conf(&site_conf);
        let server = Lwsws::start(bin(), &dir, &[], &[port]);
        Site {
            dir,
            ca,
            ca_file,
            port,
            server,
        }
    }

    /// `curl FLAG https://HOST:PORT/PATH` resolved to 127.0.0.1 and trusting
    /// the test CA.
    fn curl(&self, host: &str, flag: &str, path: &str, extra: &[&str]) -> Fetched {
        curl_tls(&self.ca_file, self.port, host, flag, path, extra)
    }

    fn log(&self) -> String {
        self.server.log()
    }
}

/// The whole configuration; `generation` goes into an `X-Generation`
/// response header of `h2.test`, so a reload shows.
fn conf(dir: &ConfigDir, port: u16, generation: u32, drain: u64) -> String {
    let p = |rel: &str| dir.path().join(rel).display().to_string();
    format!(
        r#"{{ "global": {{ "drain-timeout-secs": "{drain}" }},
  "vhosts": [
    {{ "name": "{H2_HOST}", "port": "{port}", "interface": "127.0.0.1",
       "host-ssl-cert": "{h2_cert}", "host-ssl-key": "{h2_key}",
       "error-document-404": "/404.html",
       "headers": [{{ "X-Generation": "{generation}" }}],
       "ws-protocols": [{{ "{MIRROR}": {{}} }}],
       "mounts": [
         {{ "mountpoint": "/", "origin": "file://{www}", "default": "index.html" }},
         {{ "mountpoint": "/old", "origin": ">https://example.org/new" }},
         {{ "mountpoint": "/cgi", "origin": "cgi://{info}" }},
         {{ "mountpoint": "/echo", "origin": "cgi://{echo}" }},
         {{ "mountpoint": "/proto", "origin": "cgi://{proto}" }},
         {{ "mountpoint": "/gate", "origin": "cgi://{gate}" }}
       ] }},
    {{ "name": "{H1_ONLY}", "port": "{port}", "interface": "127.0.0.1",
       "host-ssl-cert": "{h1_cert}", "host-ssl-key": "{h1_key}",
       "alpn": "http/1.1",
       "mounts": [
         {{ "mountpoint": "/", "origin": "file://{www}", "default": "index.html" }}
       ] }},
    {{ "name": "{WILD}", "port": "{port}", "interface": "127.0.0.1",
       "host-ssl-cert": "{wild_cert}", "host-ssl-key": "{wild_key}",
       "mounts": [ {{ "mountpoint": "/cgi", "origin": "cgi://{info}" }} ] }}
  ] }}"#,
        h2_cert = p(&format!("tls/{H2_HOST}.pem")),
        h2_key = p(&format!("tls/{H2_HOST}.key")),
        h1_cert = p(&format!("tls/{H1_ONLY}.pem")),
        h1_key = p(&format!("tls/{H1_ONLY}.key")),
        wild_cert = p("tls/wild.pem"),
        wild_key = p("tls/wild.key"),
        www = p("www"),
        info = p("cgi/info.sh"),
        echo = p("cgi/echo.sh"),
        proto = p("cgi/proto.sh"),
        gate = p("cgi/gate.sh"),
    )
}

// ---------------------------------------------------------------------------
// curl

/// A curl answer and the HTTP version curl says it used (`2`, `1.1`).
struct Fetched {
    version: String,
    reply: Reply,
}

fn curl_tls(
    ca_file: &Path,
    port: u16,
    host: &str,
    flag: &str,
    path: &str,
    extra: &[&str],
) -> Fetched {
    let tmp = tempfile::tempdir().unwrap();
    let head = tmp.path().join("head");
    let body = tmp.path().join("body");
    let url = format!("https://{host}:{port}{path}");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", flag, "--cacert"])
        .arg(ca_file)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_version}"])
        .args(extra)
        .arg(&url)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {flag} {url} {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = String::from_utf8_lossy(&std::fs::read(&head).unwrap()).into_owned();
    let last = head
        .split("\r\n\r\n")
        .filter(|block| block.starts_with("HTTP/"))
        .last()
        .unwrap_or_else(|| panic!("curl {url}: no response head in {head:?}"))
        .to_owned();
    let (status, headers) = parse_head(&last);
    Fetched {
        version: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        reply: Reply {
            status,
            headers,
            body: std::fs::read(&body).unwrap_or_default(),
        },
    }
}

/// Fetches `path` with `--http2` and `--http1.1`, checks the versions
/// curl reports, and that status, Location, Content-Type, Content-Length
/// and body are the same. Returns the h2 answer. With `-I` (HEAD) curl
/// writes the head where the body goes: the body is left empty.
fn same_over_h2_and_h1(site: &Site, path: &str, extra: &[&str]) -> Reply {
    same_for_host(site, H2_HOST, path, extra)
}

/// [`same_over_h2_and_h1`] for the vhost `host`.
fn same_for_host(site: &Site, host: &str, path: &str, extra: &[&str]) -> Reply {
    let mut h2 = site.curl(host, "--http2", path, extra);
    let mut h1 = site.curl(host, "--http1.1", path, extra);
    if extra.contains(&"-I") {
        h2.reply.body.clear();
        h1.reply.body.clear();
    }
    assert_eq!(h2.version, "2", "{path}: --http2 did not get HTTP/2");
    assert_eq!(h1.version, "1.1", "{path}: --http1.1 did not get HTTP/1.1");
    let (a, b) = (&h2.reply, &h1.reply);
    assert_eq!(a.status, b.status, "{path}: status h2 vs HTTP/1.1");
    for name in ["location", "content-type", "content-length", "x-cgi"] {
        assert_eq!(
            a.header(name),
            b.header(name),
            "{path}: {name} h2 vs HTTP/1.1"
        );
    }
    assert!(
        a.body == b.body,
        "{path}: bodies differ: h2 {} bytes {:?}…, HTTP/1.1 {} bytes {:?}…",
        a.body.len(),
        String::from_utf8_lossy(&a.body[..a.body.len().min(400)]),
        b.body.len(),
        String::from_utf8_lossy(&b.body[..b.body.len().min(400)]),
    );
    Reply {
        status: a.status,
        headers: a.headers.clone(),
        body: a.body.clone(),
    }
}

// ---------------------------------------------------------------------------
// An h2 client (hyper over tokio-rustls) and WebSocket frames on an
// extended CONNECT stream.

type H2Body = Full<Bytes>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` on a fresh runtime, giving up after `limit`.
fn block_on<F: Future>(limit: Duration, f: F) -> F::Output {
    runtime().block_on(async move {
        tokio::time::timeout(limit, f)
            .await
            .expect("the test's async part did not finish in time")
    })
}

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

/// An HTTP/2 connection: the request handle and the task driving it.
struct H2 {
    send: SendRequest<H2Body>,
    conn: tokio::task::JoinHandle<hyper::Result<()>>,
    authority: String,
}

/// A TLS connection to `127.0.0.1:port` with SNI `sni`, ALPN h2 only, and
/// the HTTP/2 handshake on it.
async fn h2_connect(ca_pem: &str, port: u16, sni: &str) -> H2 {
    let cfg = rustls_client(ca_pem, None, &[b"h2"]);
    let tcp = within(
        "TCP connect",
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
    )
    .await
    .unwrap();
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let tls = within(
        "TLS handshake",
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .unwrap_or_else(|e| panic!("TLS handshake with {sni}: {e}"));
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN h2 not chosen by {sni}"
    );
    let (send, conn) = within(
        "HTTP/2 handshake",
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)),
    )
    .await
    .unwrap();
    H2 {
        send,
        conn: tokio::spawn(conn),
        authority: format!("{sni}:{port}"),
    }
}

/// A complete h2 answer.
struct H2Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl H2 {
    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
    }

    /// GET `path`; `Err` if the connection no longer takes requests.
    async fn get(&mut self, path: &str) -> Result<H2Reply, hyper::Error> {
        within("h2 ready", self.send.ready()).await?;
        let req = self
            .request(Method::GET, path)
            .body(H2Body::new(Bytes::new()))
            .unwrap();
        let resp = within("h2 response head", self.send.send_request(req)).await?;
        let (parts, body) = resp.into_parts();
        let body = within("h2 response body", body.collect()).await?;
        Ok(H2Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes().to_vec(),
        })
    }

    /// An RFC 8441 WebSocket on `path` offering `protocol`: the response,
    /// and the stream if it is a 200.
    async fn websocket(
        &mut self,
        path: &str,
        protocol: &str,
    ) -> (http::response::Parts, Option<WsStream>) {
        within("h2 ready", self.send.ready()).await.unwrap();
        let mut req = self
            .request(Method::CONNECT, path)
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", protocol)
            .body(H2Body::new(Bytes::new()))
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let mut resp = within("extended CONNECT response", self.send.send_request(req))
            .await
            .unwrap_or_else(|e| panic!("extended CONNECT {path}: {e}"));
        if resp.status() != StatusCode::OK {
            return (resp.into_parts().0, None);
        }
        let upgraded = within("h2 upgrade", hyper::upgrade::on(&mut resp))
            .await
            .unwrap();
        let ws = WsStream {
            io: TokioIo::new(upgraded),
            inbox: Vec::new(),
        };
        (resp.into_parts().0, Some(ws))
    }
}

/// A WebSocket on an h2 stream, frame by frame.
struct WsStream {
    io: TokioIo<hyper::upgrade::Upgraded>,
    inbox: Vec<u8>,
}

impl WsStream {
    async fn send(&mut self, op: OpCode, payload: &[u8]) {
        let mut out = BytesMut::new();
        encode_masked_frame(&mut out, true, op, false, MASK, payload);
        self.io.write_all(&out).await.unwrap();
        self.io.flush().await.unwrap();
    }

    async fn send_text(&mut self, text: &str) {
        self.send(OpCode::Text, text.as_bytes()).await;
    }

    /// The next frame `(fin, opcode, payload)`; `None` once the stream ends.
    async fn recv(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        loop {
            if let Some(f) = self.parse_one() {
                return Some(f);
            }
            let mut buf = [0u8; 16384];
            match within("a WebSocket frame", self.io.read(&mut buf)).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The next text message, answering pings on the way.
    async fn recv_text(&mut self) -> String {
        loop {
            let (fin, op, payload) = self.recv().await.expect("stream ended before a message");
            if op == OpCode::Ping as u8 {
                self.send(OpCode::Pong, &payload).await;
                continue;
            }
            assert!(
                fin && op == OpCode::Text as u8,
                "expected a whole text frame, got fin={fin} opcode={op:#x} {:?}",
                String::from_utf8_lossy(&payload)
            );
            return String::from_utf8(payload).expect("text frame is UTF-8");
        }
    }

    fn parse_one(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        let b = &self.inbox;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "the server masked a frame");
        assert_eq!(b[0] & 0x70, 0, "server frame with reserved bits set");
        let (len, pos) = match b[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
            127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
            n => (u64::from(n), 2),
        };
        let len = usize::try_from(len).unwrap();
        if b.len() < pos + len {
            return None;
        }
        let frame = (b[0] & 0x80 != 0, b[0] & 0x0f, b[pos..pos + len].to_vec());
        self.inbox.drain(..pos + len);
        Some(frame)
    }
}

// ---------------------------------------------------------------------------
// wss over HTTP/1.1: Python `websockets` (legacy asyncio client of 10.x).

/// Connects to `url` (a `wss://NAME:PORT/` URL) through 127.0.0.1 with SNI
/// NAME, trusting `ca`, offering `protocols`; prints `{"event": "open", …}`,
/// sends `send`, receives `expect` messages, prints `{"event": "done",
/// "received": […]}` and closes. Gives up after 30 s.
const WSS_CLIENT: &str = r#"
import asyncio, json, ssl, sys
import websockets

async def main(spec):
    ctx = ssl.create_default_context(cafile=spec["ca"])
    async with websockets.connect(
        spec["url"], ssl=ctx, host="127.0.0.1", port=spec["port"],
        server_hostname=spec["sni"], subprotocols=spec["protocols"], max_size=None,
    ) as ws:
        print(json.dumps({"event": "open", "subprotocol": ws.subprotocol,
                          "version": ws.transport.get_extra_info("ssl_object").version()}),
              flush=True)
        for m in spec["send"]:
            await ws.send(m)
        received = []
        while len(received) < spec["expect"]:
            received.append(await ws.recv())
        print(json.dumps({"event": "done", "received": received}), flush=True)

asyncio.run(asyncio.wait_for(main(json.loads(sys.argv[1])), 30))
"#;

/// Starts the wss client (see [`WSS_CLIENT`]) for `site`'s `h2.test`.
fn wss_client(site: &Site, send: &[&str], expect: usize) -> std::process::Child {
    let spec = serde_json::json!({
        "url": format!("wss://{H2_HOST}:{}/", site.port),
        "port": site.port,
        "sni": H2_HOST,
        "ca": site.ca_file,
        "protocols": [MIRROR],
        "send": send,
        "expect": expect,
    });
    Command::new(PYTHON)
        .arg("-c")
        .arg(WSS_CLIENT)
        .arg(spec.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3")
}

/// Waits for the wss client and returns the JSON lines it printed.
fn wss_result(child: std::process::Child, site: &Site) -> Vec<serde_json::Value> {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "wss client failed:\n{}\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        site.log()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn curl_http2_gets_the_same_answers_as_http11() {
    let site = Site::start();

    let r = same_over_h2_and_h1(&site, "/a.txt", &[]);
    assert_eq!(r.status, 200, "{}", site.log());
    assert_eq!(r.text(), "file a\n");
    assert_eq!(r.header("x-generation"), Some("1"));

    let r = same_over_h2_and_h1(&site, "/", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>home</h1>\n"));

    // A directory named without its slash.
    let r = same_over_h2_and_h1(&site, "/sub?x=1", &[]);
    assert_eq!(r.status, 301);
    let location = r.header("location").unwrap_or_default();
    assert!(location.ends_with("/sub/?x=1"), "Location {location:?}");
    let r = same_over_h2_and_h1(&site, "/sub/", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "sub index\n"));

    // A redirect mount.
    let r = same_over_h2_and_h1(&site, "/old/a/b?y=2", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://example.org/new/a/b?y=2")
    );

    // A 404 with the vhost's error document.
    let r = same_over_h2_and_h1(&site, "/missing.txt", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "<p>custom not found page</p>\n");

    // A large file, byte for byte (flow control over h2).
    let r = same_over_h2_and_h1(&site, "/big.bin", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == big_file(), "big.bin: {} bytes", r.body.len());
    let r = same_over_h2_and_h1(&site, "/big.bin", &["-I"]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(big_file().len().to_string().as_str())
    );

    // A request body to CGI (flow control upstream).
    let upload: Vec<u8> = big_file()[..300_000].to_vec();
    let upload_file = site.dir.write_file("upload.bin", &upload);
    let data = format!("@{}", upload_file.display());
    let r = same_over_h2_and_h1(
        &site,
        "/echo",
        &[
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    assert_eq!(r.status, 200, "{}", site.log());
    assert!(r.body == upload, "CGI echo: {} bytes back", r.body.len());

    // SERVER_PROTOCOL says which HTTP it was.
    let h2 = site.curl(H2_HOST, "--http2", "/proto", &[]);
    let h1 = site.curl(H2_HOST, "--http1.1", "/proto", &[]);
    assert_eq!(h2.reply.status, 200);
    assert!(h2.reply.text().starts_with("HTTP/2"), "{}", h2.reply.text());
    assert_eq!(h1.reply.text(), "HTTP/1.1\n");

    // CGI: the same output whatever the HTTP version, Host included (RFC
    // 9113 §8.3.1: a gateway to HTTP/1.1 semantics makes Host from
    // :authority).
    let port = site.port;
    let r = site.curl(H2_HOST, "--http2", "/cgi/path/info?q=1", &[]);
    assert_eq!(r.version, "2");
    assert_eq!(r.reply.status, 200, "{}", site.log());
    let text = r.reply.text();
    for line in [
        "hello from cgi",
        "HTTPS=on",
        "SSL_CLIENT_VERIFY=NONE",
        "REQUEST_METHOD=GET",
        "SCRIPT_NAME=/cgi",
        "PATH_INFO=/path/info",
        "QUERY_STRING=q=1",
        "REQUEST_URI=/cgi/path/info?q=1",
        &format!("SERVER_NAME={H2_HOST}"),
        &format!("SERVER_PORT={port}"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "h2 CGI output lacks {line:?}:\n{text}"
        );
    }
    let host_line = format!("HTTP_HOST={H2_HOST}:{port}");
    assert!(
        text.lines().any(|l| l == host_line),
        "over h2 a CGI program gets no HTTP_HOST (expected {host_line:?} from :authority):\n{text}"
    );
    same_over_h2_and_h1(&site, "/cgi/path/info?q=1", &[]);
}

/// SERVER_NAME is the request's host, so on a wildcard vhost it is the
/// name the client asked for, over h2 (`:authority`) as over HTTP/1.1.
#[test]
fn cgi_on_a_wildcard_vhost_sees_the_requested_name_over_h2() {
    let site = Site::start();
    let h1 = site.curl(WILD_HOST, "--http1.1", "/cgi", &[]);
    assert_eq!(h1.reply.status, 200, "{}", site.log());
    let want = format!("SERVER_NAME={WILD_HOST}");
    assert!(
        h1.reply.text().lines().any(|l| l == want),
        "{}",
        h1.reply.text()
    );
    let h2 = site.curl(WILD_HOST, "--http2", "/cgi", &[]);
    assert_eq!(h2.version, "2");
    assert!(
        h2.reply.text().lines().any(|l| l == want),
        "over h2 SERVER_NAME is not the requested name (expected {want:?}):\n{}",
        h2.reply.text()
    );
    same_for_host(&site, WILD_HOST, "/cgi", &[]);
}

#[test]
fn alpn_http11_vhost_never_negotiates_h2() {
    let site = Site::start();
    let r = site.curl(H1_ONLY, "--http2", "/a.txt", &[]);
    assert_eq!(r.version, "1.1", "{H1_ONLY} has \"alpn\": \"http/1.1\"");
    assert_eq!((r.reply.status, r.reply.text().as_str()), (200, "file a\n"));
    // The other vhost of the same port speaks h2.
    let r = site.curl(H2_HOST, "--http2", "/a.txt", &[]);
    assert_eq!(r.version, "2");

    // A client offering h2 and http/1.1 gets http/1.1; one offering h2
    // alone does not get h2 (rustls refuses the handshake, or no ALPN).
    let ca = site.ca.pem();
    let port = site.port;
    block_on(DEADLINE * 2, async move {
        for (offer, want) in [
            (&[&b"h2"[..], &b"http/1.1"[..]][..], Some(&b"http/1.1"[..])),
            (&[&b"h2"[..]][..], None),
        ] {
            let cfg = rustls_client(&ca, None, offer);
            let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .unwrap();
            let name = rustls_pki_types::ServerName::try_from(H1_ONLY).unwrap();
            let res = within(
                "TLS handshake",
                tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
            )
            .await;
            match (res, want) {
                (Ok(tls), Some(w)) => assert_eq!(tls.get_ref().1.alpn_protocol(), Some(w)),
                (Ok(tls), None) => assert_ne!(
                    tls.get_ref().1.alpn_protocol(),
                    Some(&b"h2"[..]),
                    "{H1_ONLY} negotiated h2"
                ),
                (Err(_), None) => {}
                (Err(e), Some(_)) => panic!("handshake offering {offer:?}: {e}"),
            }
        }
    });

    // The global `default-alpn` applies to vhosts without `alpn`; a vhost's
    // own `alpn` wins.
    let dir = ConfigDir::new();
    let ca = Ca::new("default-alpn CA");
    let ca_file = dir.write_file("ca.pem", ca.pem());
    dir.write_file("www/a.txt", "a\n");
    let port = free_port();
    let mut vhosts = Vec::new();
    for (name, alpn) in [
        ("plain.test", ""),
        ("both.test", r#""alpn": "h2, http/1.1","#),
    ] {
        let (cert, key) = ca.server_cert(&[name]);
        let cert = dir.write_file(&format!("{name}.pem"), cert);
        let key = dir.write_file(&format!("{name}.key"), key);
        vhosts.push(format!(
            r#"{{ "name": "{name}", "port": "{port}", "interface": "127.0.0.1", {alpn}
                 "host-ssl-cert": "{}", "host-ssl-key": "{}",
                 "mounts": [{{ "mountpoint": "/", "origin": "file://{}" }}] }}"#,
            cert.display(),
            key.display(),
            dir.path().join("www").display()
        ));
    }
    dir.write_conf(&format!(
        r#"{{ "global": {{ "default-alpn": "http/1.1" }}, "vhosts": [{}] }}"#,
        vhosts.join(",")
    ));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let r = curl_tls(&ca_file, port, "plain.test", "--http2", "/a.txt", &[]);
    assert_eq!(r.reply.status, 200, "{}", server.log());
    assert_eq!(r.version, "1.1", "default-alpn \"http/1.1\" not applied");
    let r = curl_tls(&ca_file, port, "both.test", "--http2", "/a.txt", &[]);
    assert_eq!(r.reply.status, 200);
    assert_eq!(r.version, "2", "the vhost's own alpn does not win");
}

#[test]
fn wss_over_http11_echoes_on_the_mirror_protocol() {
    let site = Site::start();
    let client = wss_client(&site, &["hello over wss", "second message"], 2);
    let lines = wss_result(client, &site);
    assert_eq!(lines[0]["event"], "open");
    assert_eq!(lines[0]["subprotocol"], MIRROR);
    assert_eq!(
        lines[1]["received"],
        serde_json::json!(["hello over wss", "second message"])
    );
}

#[test]
fn websockets_over_h2_extended_connect_share_a_connection_with_requests() {
    let site = Site::start();
    let ca = site.ca.pem();
    let port = site.port;
    let log = || site.log();
    block_on(DEADLINE * 4, async {
        let mut c = h2_connect(&ca, port, H2_HOST).await;
        // The first answer also means the server's SETTINGS (with
        // SETTINGS_ENABLE_CONNECT_PROTOCOL) are in.
        let r = c.get("/a.txt").await.unwrap();
        assert_eq!(r.status, 200, "{}", log());
        assert_eq!(r.body, b"file a\n");

        let (head_a, ws_a) = c.websocket("/", MIRROR).await;
        let mut a = ws_a.unwrap_or_else(|| {
            panic!(
                "extended CONNECT refused: {} {:?}\n{}",
                head_a.status,
                head_a.headers,
                log()
            )
        });
        assert_eq!(
            head_a
                .headers
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some(MIRROR)
        );
        for name in ["sec-websocket-accept", "upgrade", "connection"] {
            assert!(
                head_a.headers.get(name).is_none(),
                "{name} in the 200 to an extended CONNECT: {:?}",
                head_a.headers
            );
        }
        a.send_text("hello over h2").await;
        assert_eq!(a.recv_text().await, "hello over h2");

        // A second WebSocket on the same connection, in the same room.
        let (head_b, ws_b) = c.websocket("/", MIRROR).await;
        let mut b = ws_b.unwrap_or_else(|| panic!("second CONNECT: {}", head_b.status));
        b.send_text("from b").await;
        assert_eq!(a.recv_text().await, "from b");
        assert_eq!(b.recv_text().await, "from b");
        a.send_text("from a").await;
        assert_eq!(b.recv_text().await, "from a");
        assert_eq!(a.recv_text().await, "from a");

        // A plain request while both are open.
        let r = c.get("/sub/").await.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (StatusCode::OK, &b"sub index\n"[..])
        );
        let r = c.get("/missing").await.unwrap();
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.body, b"<p>custom not found page</p>\n");

        // A large binary message both ways.
        let big: Vec<u8> = big_file()[..200_000].to_vec();
        a.send(OpCode::Binary, &big).await;
        for ws in [&mut a, &mut b] {
            let (fin, op, payload) = ws.recv().await.expect("the binary message");
            assert!(fin && op == OpCode::Binary as u8, "opcode {op:#x}");
            assert!(payload == big, "binary message: {} bytes", payload.len());
        }

        // Closing one WebSocket ends its stream only.
        a.send(OpCode::Close, &1000u16.to_be_bytes()).await;
        loop {
            match a.recv().await {
                Some((_, op, payload)) if op == OpCode::Close as u8 => {
                    assert_eq!(payload.get(..2), Some(&1000u16.to_be_bytes()[..]));
                    break;
                }
                Some(_) => {}
                None => panic!("stream ended without a close frame"),
            }
        }
        assert!(a.recv().await.is_none(), "stream A not ended after close");
        b.send_text("still here").await;
        assert_eq!(b.recv_text().await, "still here");
        let r = c.get("/a.txt").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);

        // A protocol the vhost does not have: refused, connection fine.
        let (head, ws) = c.websocket("/", "no-such-protocol").await;
        assert!(ws.is_none());
        assert_eq!(head.status, StatusCode::BAD_REQUEST);
        let r = c.get("/a.txt").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(!c.conn.is_finished(), "the h2 connection ended");
    });
}

#[test]
fn a_mirror_room_spans_wss_and_h2_websockets() {
    let site = Site::start();
    let ca = site.ca.pem();
    let port = site.port;
    block_on(DEADLINE * 3, async {
        let mut c = h2_connect(&ca, port, H2_HOST).await;
        assert_eq!(c.get("/a.txt").await.unwrap().status, StatusCode::OK);
        let (head, ws) = c.websocket("/", MIRROR).await;
        let mut h2ws = ws.unwrap_or_else(|| panic!("CONNECT: {}", head.status));
        // The wss client joins, sends one message, expects two.
        let client = wss_client(&site, &["from wss"], 2);
        assert_eq!(h2ws.recv_text().await, "from wss");
        h2ws.send_text("from h2").await;
        assert_eq!(h2ws.recv_text().await, "from h2");
        let lines = tokio::task::spawn_blocking({
            let site_log = site.log();
            move || {
                let out = client.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "wss client failed:\n{}\n{}\n{site_log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        })
        .await
        .unwrap();
        let done: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
        assert_eq!(done["received"], serde_json::json!(["from wss", "from h2"]));
    });
}

/// Waits until the log has a `worker ready` line of `generation`.
async fn generation_ready(server: &Lwsws, generation: u32) {
    let needle = format!(" generation={generation} ");
    for _ in 0..(DEADLINE.as_millis() / 50) {
        if server
            .log()
            .lines()
            .any(|l| l.contains("worker ready") && format!("{l} ").contains(&needle))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "generation {generation} never ready\n--- log ---\n{}",
        server.log()
    );
}

#[test]
fn reload_drains_h2_with_goaway_after_the_response_in_flight() {
    let site = Site::start();
    let ca = site.ca.pem();
    let port = site.port;
    block_on(DEADLINE * 5, async {
        generation_ready(&site.server, 1).await;
        let mut c = h2_connect(&ca, port, H2_HOST).await;
        let r = c.get("/a.txt").await.unwrap();
        assert_eq!(r.headers.get("x-generation").unwrap(), "1");

        // A response in flight: its head and first line are here, the rest
        // waits for the gate.
        within("h2 ready", c.send.ready()).await.unwrap();
        let req = c
            .request(Method::GET, "/gate")
            .body(H2Body::new(Bytes::new()))
            .unwrap();
        let resp = within("gate response head", c.send.send_request(req))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{}", site.log());
        assert_eq!(resp.headers().get("x-generation").unwrap(), "1");
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while !got.starts_with(b"before the gate\n") {
            let frame = within("first body bytes", body.frame())
                .await
                .expect("body ended before the gate")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }

        // An idle h2 connection of generation 1 too.
        let mut idle = h2_connect(&ca, port, H2_HOST).await;
        assert_eq!(idle.get("/a.txt").await.unwrap().status, StatusCode::OK);

        // Reload with generation 2's configuration.
        site.dir.write_conf(&conf(&site.dir, port, 2, 120));
        site.server.signal(Signal::SIGHUP);
        generation_ready(&site.server, 2).await;

        // New connections get generation 2, over h2 and HTTP/1.1.
        let ca_file = site.ca_file.clone();
        let (h2, h1) = tokio::task::spawn_blocking(move || {
            (
                curl_tls(&ca_file, port, H2_HOST, "--http2", "/a.txt", &[]),
                curl_tls(&ca_file, port, H2_HOST, "--http1.1", "/a.txt", &[]),
            )
        })
        .await
        .unwrap();
        assert_eq!(h2.version, "2");
        assert_eq!(h2.reply.header("x-generation"), Some("2"), "{}", site.log());
        assert_eq!(h1.reply.header("x-generation"), Some("2"));
        let mut c2 = h2_connect(&ca, port, H2_HOST).await;
        let r = c2.get("/a.txt").await.unwrap();
        assert_eq!(r.headers.get("x-generation").unwrap(), "2");

        // The old connection got GOAWAY while its response is still in
        // flight: new requests on it fail (any that slipped in before the
        // GOAWAY arrived were still served, by generation 1).
        let mut refused = None;
        for _ in 0..(DEADLINE.as_millis() / 50) {
            match c.get("/a.txt").await {
                Err(e) => {
                    refused = Some(e);
                    break;
                }
                Ok(r) => {
                    assert_eq!(r.status, StatusCode::OK);
                    assert_eq!(r.headers.get("x-generation").unwrap(), "1");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        assert!(
            refused.is_some(),
            "the draining h2 connection still takes new requests (no GOAWAY)\n{}",
            site.log()
        );

        // The response in flight completes, whole.
        std::fs::write(site.dir.path().join("gate-open"), "").unwrap();
        loop {
            match within("the rest of the body", body.frame()).await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        got.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => panic!(
                    "in-flight response cut after {} bytes: {e}\n{}",
                    got.len(),
                    site.log()
                ),
            }
        }
        assert!(
            got == gate_body().as_bytes(),
            "in-flight body: {} bytes, expected {}",
            got.len(),
            gate_body().len()
        );

        // Then the server ends the connection (the idle one too) and the
        // old generation goes.
        let ended = within("the draining connection's end", &mut c.conn).await;
        assert!(
            matches!(ended, Ok(Ok(()))),
            "connection ended with {ended:?}"
        );
        let ended = within("the idle connection's end", &mut idle.conn).await;
        assert!(
            matches!(ended, Ok(Ok(()))),
            "idle connection ended with {ended:?}"
        );
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !site.log().contains("old generation finished generation=1 ") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "generation 1 did not finish after its last connection\n{}",
                site.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The new connection is unaffected.
        let r = c2.get("/a.txt").await.unwrap();
        assert_eq!(r.headers.get("x-generation").unwrap(), "2");
    });
}

/// A WebSocket on an h2 stream of a draining generation keeps working
/// after the reload, and gets a close frame with 1001 at
/// `drain-timeout-secs`, like one over HTTP/1.1 (SPEC §4).
#[test]
fn h2_websocket_of_an_old_generation_gets_1001_at_drain_timeout() {
    let site = Site::start_draining(2);
    let ca = site.ca.pem();
    let port = site.port;
    block_on(DEADLINE * 3, async {
        generation_ready(&site.server, 1).await;
        let mut c = h2_connect(&ca, port, H2_HOST).await;
        assert_eq!(c.get("/a.txt").await.unwrap().status, StatusCode::OK);
        let (head, ws) = c.websocket("/", MIRROR).await;
        let mut ws = ws.unwrap_or_else(|| panic!("CONNECT: {}", head.status));
        ws.send_text("before").await;
        assert_eq!(ws.recv_text().await, "before");

        site.dir.write_conf(&conf(&site.dir, port, 2, 2));
        site.server.signal(Signal::SIGHUP);
        generation_ready(&site.server, 2).await;
        ws.send_text("draining").await;
        assert_eq!(ws.recv_text().await, "draining");

        let close = loop {
            match ws.recv().await {
                Some((_, op, payload)) if op == OpCode::Close as u8 => break payload,
                Some(_) => {}
                None => panic!(
                    "the h2 WebSocket ended without a close frame at drain-timeout-secs\n{}",
                    site.log()
                ),
            }
        };
        assert_eq!(
            close.get(..2),
            Some(&1001u16.to_be_bytes()[..]),
            "close payload {close:?}"
        );
        // Our close answers it; then the stream and the connection end.
        ws.send(OpCode::Close, &1001u16.to_be_bytes()).await;
        assert!(ws.recv().await.is_none());
    });
}

/// The same on a stop (SIGTERM): an h2 WebSocket gets 1001 before the
/// worker exits, like one over HTTP/1.1 (`ws_shutdown.rs`).
#[test]
fn h2_websocket_gets_1001_when_the_server_stops() {
    let site = Site::start();
    let ca = site.ca.pem();
    let port = site.port;
    block_on(DEADLINE * 2, async {
        let mut c = h2_connect(&ca, port, H2_HOST).await;
        assert_eq!(c.get("/a.txt").await.unwrap().status, StatusCode::OK);
        let (head, ws) = c.websocket("/", MIRROR).await;
        let mut ws = ws.unwrap_or_else(|| panic!("CONNECT: {}", head.status));
        ws.send_text("before").await;
        assert_eq!(ws.recv_text().await, "before");

        site.server.signal(Signal::SIGTERM);
        let close = loop {
            match ws.recv().await {
                Some((_, op, payload)) if op == OpCode::Close as u8 => break payload,
                Some(_) => {}
                None => panic!(
                    "the h2 WebSocket ended without a close frame on stop\n{}",
                    site.log()
                ),
            }
        };
        assert_eq!(
            close.get(..2),
            Some(&1001u16.to_be_bytes()[..]),
            "close payload {close:?}"
        );
    });
}
