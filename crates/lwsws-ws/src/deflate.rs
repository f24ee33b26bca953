//! permessage-deflate (RFC 7692): negotiating it from the client's
//! `Sec-WebSocket-Extensions` offers, inflating what clients send (bounded by
//! the message size limit) and deflating what the server sends.
//!
//! Each connection has its own [`Inflater`] and [`Deflater`]: with context
//! takeover a compressed message refers to earlier messages of the same
//! connection, so a frame shared by a broadcast is compressed by each
//! recipient's writer (see `conn.rs`), never once for all. Both keep no zlib
//! state until the first message that needs it.
//!
//! zlib cannot produce raw deflate streams with a 256-byte window (it turns
//! `windowBits` 8 into 9). When a client asks for `server_max_window_bits=8`
//! the offer is accepted as asked and the server sends its messages
//! uncompressed: compressing a message is optional for the sender (RFC 7692
//! §6), and this keeps the promise of the window size.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// zlib level for outgoing messages: 1, the fastest. WebSocket messages are
/// small and sent once; level 6 costs several times the CPU for a few
/// percent smaller frames (measured with bench/ws-echo.sh PAYLOAD=json).
const LEVEL: Compression = Compression::new(1);

use crate::frame::{OpCode, encode_header, parse_header};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// What is appended to a message's payload before inflating it, and removed
/// from the end of a deflated message (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The parameters agreed in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its context after each message (so may the
    /// server's inflater).
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window the server may use, 8 to 15. With 8 the
    /// server sends uncompressed messages (see the module's documentation).
    pub server_max_window_bits: u8,
    /// The largest window the client may use, 8 to 15 (informative: the
    /// server inflates with a 32 KiB window, which decodes any of them).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// permessage-deflate settings of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    pub params: DeflateParams,
    /// `ws-deflate-threshold`: smaller messages are sent uncompressed.
    pub threshold: usize,
}

/// Chooses the first acceptable permessage-deflate offer among the values of
/// the client's `Sec-WebSocket-Extensions` headers, and returns its
/// parameters and the value of the answer's `Sec-WebSocket-Extensions`.
/// Offers that are malformed, have unknown or repeated parameters or invalid
/// values are declined (RFC 7692 §5, §7.1); a header that cannot be parsed
/// at all declines everything.
pub fn negotiate<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Option<(DeflateParams, String)> {
    for value in values {
        let Some(offers) = parse_extensions(value) else {
            continue;
        };
        for (name, params) in offers {
            if !name.eq_ignore_ascii_case(EXTENSION) {
                continue;
            }
            if let Some(accepted) = accept_offer(&params) {
                return Some(accepted);
            }
        }
    }
    None
}

/// One offer's parameters: name and value (unquoted), if any.
type Params = Vec<(String, Option<String>)>;

/// Applies RFC 7692 §7.1 to one offer.
fn accept_offer(params: &Params) -> Option<(DeflateParams, String)> {
    let mut p = DeflateParams::default();
    let (mut snct, mut cnct, mut smwb, mut cmwb) = (false, false, None, None::<Option<u8>>);
    for (name, value) in params {
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if !snct && value.is_none() => snct = true,
            "client_no_context_takeover" if !cnct && value.is_none() => cnct = true,
            "server_max_window_bits" if smwb.is_none() => {
                smwb = Some(window_bits(value.as_deref()?)?);
            }
            "client_max_window_bits" if cmwb.is_none() => {
                cmwb = Some(match value {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                });
            }
            // Unknown, repeated, or with a value it must not have.
            _ => return None,
        }
    }
    let mut answer = String::from(EXTENSION);
    if snct {
        p.server_no_context_takeover = true;
        answer.push_str("; server_no_context_takeover");
    }
    if cnct {
        p.client_no_context_takeover = true;
        answer.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = smwb {
        p.server_max_window_bits = bits;
        answer.push_str(&format!("; server_max_window_bits={bits}"));
    }
    if let Some(Some(bits)) = cmwb {
        p.client_max_window_bits = bits;
        answer.push_str(&format!("; client_max_window_bits={bits}"));
    }
    Some((p, answer))
}

/// A window size parameter: 8 to 15, digits without a leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses one `Sec-WebSocket-Extensions` value (RFC 6455 §9.1):
/// `ext *( ";" param [ "=" ( token / quoted-string ) ] )`, comma-separated.
/// `None` when it does not follow that grammar.
fn parse_extensions(value: &[u8]) -> Option<Vec<(String, Params)>> {
    let mut p = Parser { s: value, i: 0 };
    let mut out = Vec::new();
    loop {
        p.ows();
        if p.eat(b',') {
            // Empty list elements are allowed.
            continue;
        }
        if p.done() {
            return Some(out);
        }
        let name = p.token()?;
        let mut params = Vec::new();
        loop {
            p.ows();
            if p.done() || p.eat(b',') {
                break;
            }
            if !p.eat(b';') {
                return None;
            }
            p.ows();
            let pname = p.token()?;
            p.ows();
            let pvalue = if p.eat(b'=') {
                p.ows();
                let v = if p.peek() == Some(b'"') {
                    p.quoted()?
                } else {
                    p.token()?
                };
                // RFC 6455 §9.1: a quoted value must be a token once unquoted.
                if v.is_empty() || !v.bytes().all(is_tchar) {
                    return None;
                }
                Some(v)
            } else {
                None
            };
            params.push((pname, pvalue));
        }
        out.push((name, params));
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut v = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(String::from_utf8_lossy(&v).into_owned());
                }
                b'\\' => {
                    self.i += 1;
                    v.push(self.peek()?);
                    self.i += 1;
                }
                b => {
                    v.push(b);
                    self.i += 1;
                }
            }
        }
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("inflated message larger than the limit of {limit} bytes")]
    TooBig { limit: usize },
    #[error("invalid deflate data")]
    Invalid,
}

impl InflateError {
    /// 1009 for a message over the limit, 1007 for data that does not
    /// inflate (as the `ws` and `websockets` libraries do).
    pub fn close_code(&self) -> u16 {
        match self {
            InflateError::TooBig { .. } => crate::close::code::MESSAGE_TOO_BIG,
            InflateError::Invalid => crate::close::code::INVALID_PAYLOAD,
        }
    }
}

/// The inflating side of a connection (client to server).
pub struct Inflater {
    d: Option<Decompress>,
    no_context_takeover: bool,
}

impl Inflater {
    pub fn new(params: &DeflateParams) -> Self {
        Inflater {
            d: None,
            no_context_takeover: params.client_no_context_takeover,
        }
    }

    /// Inflates one message's payload. The output never grows beyond
    /// `limit + 1` bytes: as soon as it would be larger than `limit`,
    /// inflating stops with [`InflateError::TooBig`].
    pub fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<Bytes, InflateError> {
        // A raw inflater with a 32 KiB window decodes every window size.
        let d = self.d.get_or_insert_with(|| Decompress::new(false));
        let r = inflate_into(d, payload, limit);
        if self.no_context_takeover || r.is_err() {
            d.reset(false);
        }
        r.map(Bytes::from)
    }

    /// Whether zlib state is allocated.
    pub fn is_allocated(&self) -> bool {
        self.d.is_some()
    }
}

fn inflate_into(d: &mut Decompress, payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let cap = limit.saturating_add(1);
    let mut out: Vec<u8> = Vec::with_capacity(
        payload
            .len()
            .saturating_mul(2)
            .clamp(256, 64 * 1024)
            .min(cap),
    );
    for part in [payload, &TAIL[..]] {
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(InflateError::TooBig { limit });
                }
                let want = out.capacity().saturating_mul(2).min(cap);
                out.reserve_exact(want - out.len());
            }
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = d
                .decompress_vec(&part[pos..], &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            let used = (d.total_in() - in0) as usize;
            let made = (d.total_out() - out0) as usize;
            pos += used;
            if out.len() > limit {
                return Err(InflateError::TooBig { limit });
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL): the stream is over; what follows,
                // the appended tail included, is ignored.
                d.reset(false);
                return Ok(out);
            }
            let spare = out.len() < out.capacity();
            if pos == part.len() && spare {
                break;
            }
            if used == 0 && made == 0 && spare {
                return Err(InflateError::Invalid);
            }
        }
    }
    Ok(out)
}

/// The deflating side of a connection (server to client): rewrites the
/// frames queued for the connection just before they are written.
pub struct Deflater {
    c: Option<Compress>,
    params: DeflateParams,
    threshold: usize,
}

impl Deflater {
    pub fn new(cfg: &DeflateConfig) -> Self {
        Deflater {
            c: None,
            params: cfg.params,
            threshold: cfg.threshold,
        }
    }

    /// Whether zlib state is allocated.
    pub fn is_allocated(&self) -> bool {
        self.c.is_some()
    }

    /// The frame to write for `frame`, an encoded server frame: a whole
    /// (FIN) text or binary frame of at least the threshold's size is
    /// compressed; anything else (control frames, fragments, small
    /// messages) is returned as it is.
    pub fn process(&mut self, frame: Bytes) -> Bytes {
        if self.params.server_max_window_bits < 9 {
            return frame;
        }
        let Ok(Some((h, n))) = parse_header(&frame) else {
            return frame;
        };
        if !h.fin
            || h.rsv1
            || !matches!(h.opcode, OpCode::Text | OpCode::Binary)
            || h.mask.is_some()
            || h.payload_len != (frame.len() - n) as u64
            || frame.len() - n < self.threshold
        {
            return frame;
        }
        self.compress_frame(h.opcode, &frame[n..])
    }

    /// A whole compressed message (RSV1 set) with `payload`.
    pub fn compress_frame(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        let deflated = self.deflate(payload);
        let header = encode_header(true, opcode, true, deflated.len() as u64);
        let mut out = BytesMut::with_capacity(header.len() + deflated.len());
        out.put_slice(&header);
        out.put_slice(&deflated);
        out.freeze()
    }

    /// The compressed form of one message, without the trailing
    /// `00 00 ff ff`.
    pub fn deflate(&mut self, payload: &[u8]) -> Vec<u8> {
        let bits = self.params.server_max_window_bits.clamp(9, 15);
        let c = self
            .c
            .get_or_insert_with(|| Compress::new_with_window_bits(LEVEL, false, bits));
        let mut out: Vec<u8> = Vec::with_capacity(payload.len() / 2 + 64);
        let start = c.total_in();
        loop {
            if out.capacity() - out.len() < 16 {
                out.reserve(out.capacity().max(256));
            }
            let pos = (c.total_in() - start) as usize;
            // Compressing from memory to memory with a sync flush does not fail.
            let _ = c.compress_vec(&payload[pos..], &mut out, FlushCompress::Sync);
            let pos = (c.total_in() - start) as usize;
            if pos == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // zlib emits nothing for an empty message after a sync flush;
            // RFC 7692 §7.2.3.6: an empty stored block's header, which the
            // appended `00 00 ff ff` completes.
            out.push(0x00);
        }
        if self.params.server_no_context_takeover {
            c.reset();
        }
        out
    }
}

#[cfg(test)]
mod tests;
