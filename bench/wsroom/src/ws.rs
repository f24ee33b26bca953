//! The client side of RFC 6455, as much as a room benchmark needs: the URL,
//! the opening handshake (checked strictly), masked frames out, unmasked frames
//! in. No extension is offered, so any reserved bit is an error. (Copied from
//! `bench/wsecho/src/ws.rs`, without its permessage-deflate parts.)

use base64::Engine as _;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A parsed `ws://host[:port]/path?query` URL.
#[derive(Debug)]
pub struct Target {
    /// Host name or address, without brackets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, for the Host header.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub resource: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = match url.strip_prefix("ws://") {
            Some(r) => r,
            None if url.starts_with("wss://") => {
                return Err("wss:// is not supported (plain ws:// only)".into());
            }
            None => return Err(format!("not a ws:// URL: {url}")),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, resource) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let resource = if resource.starts_with('?') {
            format!("/{resource}")
        } else {
            resource.to_string()
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("bad host in {url}"));
        }
        let bad_port = |p: &str| format!("bad port {p:?} in {url}");
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("bad IPv6 address in {url}"))?;
            let port = match &r[end + 1..] {
                "" => 80,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad_port(p))?,
            };
            (r[..end].to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad_port(p))?),
                None => (authority.to_string(), 80),
            }
        };
        Ok(Target {
            host,
            port,
            authority: authority.to_string(),
            resource,
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends the upgrade request and checks the server's answer: 101, `Upgrade:
/// websocket`, `Connection: upgrade`, the right `Sec-WebSocket-Accept`, the
/// requested subprotocol selected (none when none was requested), no
/// extension. Bytes the server sent after its response stay in `rbuf`.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    t: &Target,
    protocol: Option<&str>,
    key: [u8; 16],
    rbuf: &mut Vec<u8>,
) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.encode(key);
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        t.resource, t.authority
    );
    if let Some(p) = protocol {
        req.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("sending the upgrade request: {e}"))?;

    rbuf.clear();
    let head_len = loop {
        if let Some(i) = find(rbuf, b"\r\n\r\n") {
            break i + 4;
        }
        if rbuf.len() > 16 * 1024 {
            return Err("handshake response header over 16 KiB".into());
        }
        rbuf.reserve(4096);
        match s.read_buf(rbuf).await {
            Ok(0) => return Err("connection closed during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the handshake response: {e}")),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&rbuf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete handshake response".into()),
        Err(e) => return Err(format!("bad handshake response: {e}")),
    }
    let code = resp.code.unwrap_or(0);
    if code != 101 {
        return Err(format!(
            "HTTP {code} {} instead of 101",
            resp.reason.unwrap_or("")
        ));
    }
    let get = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if !get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("101 without `Upgrade: websocket`".into());
    }
    if !get("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return Err("101 without `Connection: upgrade`".into());
    }
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    let want = b64.encode(sha.finalize());
    match get("sec-websocket-accept") {
        Some(v) if v == want => {}
        v => return Err(format!("Sec-WebSocket-Accept {v:?}, expected {want:?}")),
    }
    match (protocol, get("sec-websocket-protocol")) {
        (Some(p), Some(v)) if v == p => {}
        (None, None) => {}
        (Some(p), None) => {
            return Err(format!(
                "the server selected no subprotocol (asked for {p:?})"
            ));
        }
        (_, Some(v)) => {
            return Err(format!(
                "the server selected subprotocol {v:?}, not {protocol:?}"
            ));
        }
    }
    if let Some(v) = get("sec-websocket-extensions") {
        return Err(format!(
            "the server selected an extension nobody offered: {v}"
        ));
    }
    rbuf.drain(..head_len);
    Ok(())
}

/// XORs `buf` with the masking key, eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ m).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key restarts at byte 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends one complete (FIN) client frame, masked with `mask`.
pub fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// A server frame's header.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub fin: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

/// Parses the frame header at the start of `buf`: `Ok(None)` when more bytes
/// are needed, `Err` when the server broke the protocol.
pub fn parse_head(buf: &[u8], max_payload: usize) -> Result<Option<Head>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(format!(
            "reserved bits set in a frame ({b0:#04x}) with no extension negotiated"
        ));
    }
    if b1 & 0x80 != 0 {
        return Err("masked frame from the server".into());
    }
    let (payload_len, header_len) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || payload_len > 125 {
                return Err(format!(
                    "fragmented or oversized control frame (opcode {opcode})"
                ));
            }
        }
        _ => return Err(format!("reserved opcode {opcode:#x}")),
    }
    if payload_len > max_payload as u64 {
        return Err(format!(
            "a {payload_len}-byte frame (more than the {max_payload} expected at most)"
        ));
    }
    Ok(Some(Head {
        fin,
        opcode,
        header_len,
        payload_len: payload_len as usize,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("ws://127.0.0.1:8080/echo?x=1#f").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.resource.as_str()
            ),
            ("127.0.0.1", 8080, "127.0.0.1:8080", "/echo?x=1")
        );
        let t = Target::parse("ws://[::1]:9/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        let t = Target::parse("ws://example.org?q").unwrap();
        assert_eq!((t.port, t.resource.as_str()), (80, "/?q"));
        assert!(Target::parse("wss://x/").is_err());
        assert!(Target::parse("ws://x:y/").is_err());
    }

    #[test]
    fn mask_roundtrip_all_lengths() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut b = data.clone();
            apply_mask(&mut b, [1, 2, 3, 4]);
            for (i, (x, y)) in data.iter().zip(&b).enumerate() {
                assert_eq!(*y, x ^ [1, 2, 3, 4][i % 4]);
            }
        }
    }

    #[test]
    fn frames() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            put_frame(&mut out, OP_BINARY, &vec![7; len], [9, 8, 7, 6]);
            // Unmask it and read it back as if it came from a server.
            out[1] &= 0x7f;
            let h = parse_head(&out, 1 << 20).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode, h.payload_len), (true, OP_BINARY, len));
            assert!(
                parse_head(&out[..h.header_len - 1], 1 << 20)
                    .unwrap()
                    .is_none()
            );
        }
        assert!(parse_head(&[0x81, 0x85], 100).is_err()); // masked
        assert!(parse_head(&[0xC1, 0x05], 100).is_err()); // RSV1
        assert!(parse_head(&[0xA1, 0x05], 100).is_err()); // RSV2
        assert!(parse_head(&[0x91, 0x05], 100).is_err()); // RSV3
        assert!(parse_head(&[0x09, 0x00], 100).is_err()); // fragmented ping
        assert!(parse_head(&[0x83, 0x00], 100).is_err()); // reserved opcode
        assert!(parse_head(&[0x82, 0x7e, 0x01, 0x00], 100).is_err()); // too large
    }
}
