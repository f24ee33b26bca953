//! permessage-deflate (RFC 7692) for the client side of the echo benchmark:
//! reading the server's answer to our offer, deflating what we send and
//! inflating what comes back.
//!
//! We offer `permessage-deflate; client_max_window_bits` and nothing else, so
//! the server may answer with any of the four parameters: its
//! `server_no_context_takeover` makes us reset the inflater after each
//! message, its `client_no_context_takeover` the deflater; a
//! `client_max_window_bits=N` (9 to 15) limits our deflate window; its
//! `server_max_window_bits` needs nothing (a 32 KiB inflate window decodes
//! every window size). zlib cannot produce raw deflate with a 256-byte window,
//! so `client_max_window_bits=8` is refused as unsupported.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// Our offer, the value of `Sec-WebSocket-Extensions`.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Appended to a message before inflating it, removed from the end of a
/// deflated message (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What the server's answer agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// The window we may deflate with, 9 to 15.
    pub client_max_window_bits: u8,
    /// Informative only: the server's window.
    pub server_max_window_bits: u8,
}

/// Parses the value(s) of the server's `Sec-WebSocket-Extensions` answer to
/// [`OFFER`]: exactly one extension, permessage-deflate, with parameters
/// that RFC 7692 §7.1 allows in an answer, none repeated.
pub fn parse_answer(value: &str) -> Result<Params, String> {
    let bad = |why: &str| Err(format!("Sec-WebSocket-Extensions {value:?}: {why}"));
    let exts: Vec<&str> = value.split(',').map(str::trim).collect();
    if exts.len() != 1 {
        return bad("more than one extension (only permessage-deflate was offered)");
    }
    let mut parts = exts[0].split(';').map(str::trim);
    let name = parts.next().unwrap_or("");
    if !name.eq_ignore_ascii_case(EXTENSION) {
        return bad("not permessage-deflate");
    }
    let mut p = Params {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        client_max_window_bits: 15,
        server_max_window_bits: 15,
    };
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let (key, val) = match param.split_once('=') {
            Some((k, v)) => {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                (k.trim().to_ascii_lowercase(), Some(v))
            }
            None => (param.to_ascii_lowercase(), None),
        };
        if seen.contains(&key) {
            return bad(&format!("{key} repeated"));
        }
        let bits = |v: Option<&str>| -> Result<u8, String> {
            match v
                .filter(|v| !v.starts_with('0'))
                .and_then(|v| v.parse::<u8>().ok())
            {
                Some(b) if (8..=15).contains(&b) => Ok(b),
                _ => Err(format!(
                    "Sec-WebSocket-Extensions {value:?}: {key} needs a value from 8 to 15"
                )),
            }
        };
        match (key.as_str(), val) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", v) => p.server_max_window_bits = bits(v)?,
            ("client_max_window_bits", v) => {
                let b = bits(v)?;
                if b < 9 {
                    return bad(
                        "client_max_window_bits=8 is not supported (zlib deflates with 512 bytes at least)",
                    );
                }
                p.client_max_window_bits = b;
            }
            _ => return bad(&format!("unexpected parameter {param:?}")),
        }
        seen.push(key);
    }
    Ok(p)
}

/// One connection's compression state, both directions.
pub struct Codec {
    params: Params,
    c: Compress,
    d: Decompress,
    /// A deflated message (without the tail), then the frame payload.
    pub deflated: Vec<u8>,
    /// An inflated message.
    pub inflated: Vec<u8>,
    /// A received compressed message with the tail appended.
    input: Vec<u8>,
    /// Payload bytes deflated / bytes they became; bytes inflated / bytes
    /// they came from.
    pub tx: (u64, u64),
    pub rx: (u64, u64),
}

impl Codec {
    pub fn new(params: Params) -> Codec {
        Codec {
            params,
            c: Compress::new_with_window_bits(
                Compression::default(),
                false,
                params.client_max_window_bits,
            ),
            // A raw inflater with a 32 KiB window decodes every window size.
            d: Decompress::new(false),
            deflated: Vec::new(),
            inflated: Vec::new(),
            input: Vec::new(),
            tx: (0, 0),
            rx: (0, 0),
        }
    }

    /// Deflates one message into `self.deflated`, without the trailing
    /// `00 00 ff ff`.
    pub fn deflate(&mut self, payload: &[u8]) {
        let out = &mut self.deflated;
        out.clear();
        out.reserve(payload.len() / 2 + 64);
        let start = self.c.total_in();
        loop {
            if out.capacity() - out.len() < 16 {
                out.reserve(out.capacity().max(256));
            }
            let pos = (self.c.total_in() - start) as usize;
            // Memory to memory with a sync flush does not fail.
            let _ = self
                .c
                .compress_vec(&payload[pos..], out, FlushCompress::Sync);
            let pos = (self.c.total_in() - start) as usize;
            // Done when all the input is in and the flush left room unused.
            if pos == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // An empty message: an empty stored block's first byte, which the
            // receiver's appended tail completes (RFC 7692 §7.2.3.6).
            out.push(0x00);
        }
        if self.params.client_no_context_takeover {
            self.c.reset();
        }
        self.tx.0 += payload.len() as u64;
        self.tx.1 += out.len() as u64;
    }

    /// Inflates one compressed message (its frames' payloads, concatenated)
    /// into `self.inflated`; more than `limit` bytes is an error.
    pub fn inflate(&mut self, message: &[u8], limit: usize) -> Result<(), String> {
        self.input.clear();
        self.input.extend_from_slice(message);
        self.input.extend_from_slice(&TAIL);
        let out = &mut self.inflated;
        out.clear();
        out.reserve(message.len() * 4 + 256);
        let start = self.d.total_in();
        let mut ended = false;
        let r = loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let pos = (self.d.total_in() - start) as usize;
            let before = (pos, out.len());
            let status = match self
                .d
                .decompress_vec(&self.input[pos..], out, FlushDecompress::Sync)
            {
                Ok(s) => s,
                Err(e) => break Err(format!("inflating: {e}")),
            };
            let pos = (self.d.total_in() - start) as usize;
            if out.len() > limit {
                break Err(format!("inflates to more than {limit} bytes"));
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL): the stream is over, whatever follows
                // is not deflate data; the next message needs a new stream.
                ended = true;
                break if pos >= message.len() {
                    Ok(())
                } else {
                    Err("data after the final deflate block".into())
                };
            }
            let stuck = (pos, out.len()) == before;
            // Done when all the input is in and nothing more comes out.
            if pos == self.input.len() && (out.len() < out.capacity() || stuck) {
                break Ok(());
            }
            if stuck {
                break Err("the inflater makes no progress".into());
            }
        };
        if ended || r.is_err() || self.params.server_no_context_takeover {
            self.d.reset(false);
        }
        self.rx.0 += out.len() as u64;
        self.rx.1 += message.len() as u64;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(cnct: bool, snct: bool) -> Params {
        Params {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            client_max_window_bits: 15,
            server_max_window_bits: 15,
        }
    }

    #[test]
    fn answers() {
        assert_eq!(
            parse_answer("permessage-deflate").unwrap(),
            params(false, false)
        );
        let p = parse_answer(
            "Permessage-Deflate; server_no_context_takeover ; client_no_context_takeover; \
             client_max_window_bits=\"10\"; server_max_window_bits=12",
        )
        .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(
            (p.client_max_window_bits, p.server_max_window_bits),
            (10, 12)
        );
        for bad in [
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; foo",
        ] {
            assert!(parse_answer(bad).is_err(), "{bad}");
        }
    }

    /// Our deflater's output, as the server would see it, inflates back
    /// through our inflater (the same format both ways), with and without
    /// context takeover, for empty, small, compressible and noisy messages.
    #[test]
    fn roundtrip() {
        for cnct in [false, true] {
            // tx deflates as we do; rx inflates as the server would (with
            // client_no_context_takeover it may reset after each message).
            let mut tx = Codec::new(params(cnct, false));
            let mut rx = Codec::new(params(false, cnct));
            let mut x = 7u64;
            for i in 0..60usize {
                let len = [0, 1, 64, 1024, 70_000][i % 5];
                let msg: Vec<u8> = (0..len)
                    .map(|j| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        if i % 2 == 0 {
                            b"{\"id\":12,}"[j % 10]
                        } else {
                            (x >> 56) as u8
                        }
                    })
                    .collect();
                tx.deflate(&msg);
                assert!(!tx.deflated.ends_with(&TAIL) || tx.deflated.len() < 4);
                rx.inflate(&tx.deflated, 1 << 20).unwrap();
                assert_eq!(rx.inflated, msg, "message {i} ({cnct})");
            }
        }
        let mut rx = Codec::new(params(false, false));
        assert!(rx.inflate(&[0xff, 0xff, 0xff], 100).is_err());
        let mut tx = Codec::new(params(false, false));
        tx.deflate(&[b'a'; 5000]);
        assert!(rx.inflate(&tx.deflated, 4999).is_err());
    }
}
