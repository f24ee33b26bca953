//! Frame headers (RFC 6455 §5.2): parsing what clients send, encoding what
//! the server sends, and masking.
//!
//! [`parse_header`] applies the rules that hold for every frame whatever was
//! negotiated (known opcode, control frames unfragmented and short, 64-bit
//! lengths below 2^63); the rules that depend on the connection (masking,
//! reserved bits, fragmentation order, size limits) are the assembler's, in
//! `message.rs`.
//!
//! The server's frames are never masked. [`frame`] builds a complete frame as
//! one [`Bytes`] so that a broadcast encodes once and every recipient's write
//! queue holds a reference to the same bytes; [`encode_header`] gives just the
//! header for a vectored write of a payload that already sits elsewhere.

use bytes::{BufMut, Bytes, BytesMut};

use crate::close::truncate_reason;
use crate::error::ProtocolError;

/// The longest header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest header the server sends: unmasked, with an 8-byte length.
pub const MAX_SERVER_HEADER_LEN: usize = 10;

/// The largest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// The opcode of the low four bits of `bits`, if RFC 6455 defines it.
    pub fn from_u8(bits: u8) -> Option<OpCode> {
        Some(match bits & 0x0F {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// Set by permessage-deflate on the first frame of a compressed message.
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: OpCode,
    /// Present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl FrameHeader {
    /// The header as it goes on the wire, with the shortest length form.
    pub fn encode(&self) -> HeaderBytes {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            n @ 0..=125 => {
                bytes[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                bytes[1] = mask_bit | 126;
                bytes[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                bytes[1] = mask_bit | 127;
                bytes[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(mask) = self.mask {
            bytes[len..len + 4].copy_from_slice(&mask);
            len += 4;
        }
        HeaderBytes {
            bytes,
            len: len as u8,
        }
    }
}

/// An encoded header; dereferences to its bytes.
#[derive(Clone, Copy)]
pub struct HeaderBytes {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl std::ops::Deref for HeaderBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for HeaderBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HeaderBytes").field(&&**self).finish()
    }
}

/// Parses the header at the start of `buf`.
///
/// `Ok(None)`: `buf` ends before the header does. `Ok(Some((header, len)))`:
/// the payload starts at `buf[len]`. Errors are found as early as the bytes
/// allow: an unknown opcode or a fragmented control frame from the first byte,
/// an oversized control frame from the second.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let opcode = OpCode::from_u8(b0).ok_or(ProtocolError::UnknownOpcode(b0 & 0x0F))?;
    let fin = b0 & 0x80 != 0;
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControl);
    }
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let len7 = b1 & 0x7F;
    if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::ControlTooLong);
    }
    let (payload_len, mut pos) = match len7 {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(&[a, b, c, d, e, f, g, h]) => {
                let n = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
                if n >> 63 != 0 {
                    return Err(ProtocolError::LengthOverflow);
                }
                (n, 10)
            }
            _ => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        match buf.get(pos..pos + 4) {
            Some(&[a, b, c, d]) => {
                pos += 4;
                Some([a, b, c, d])
            }
            _ => return Ok(None),
        }
    } else {
        None
    };
    let header = FrameHeader {
        fin,
        rsv1: b0 & 0x40 != 0,
        rsv2: b0 & 0x20 != 0,
        rsv3: b0 & 0x10 != 0,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, pos)))
}

/// XORs `data` with `mask`, where `data` starts `offset` bytes into the
/// frame's payload (so a payload that arrives in pieces is unmasked piece by
/// piece). Applying it twice restores the data.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let s = offset % 4;
    let m = [
        mask[s],
        mask[(s + 1) % 4],
        mask[(s + 2) % 4],
        mask[(s + 3) % 4],
    ];
    let word = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut words = data.chunks_exact_mut(8);
    for w in &mut words {
        let x = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        w.copy_from_slice(&(x ^ word).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the mask phase is unchanged.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// The header of an unmasked (server-to-client) frame.
pub fn encode_header(fin: bool, opcode: OpCode, rsv1: bool, payload_len: u64) -> HeaderBytes {
    FrameHeader {
        fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
        payload_len,
    }
    .encode()
}

/// Appends an unmasked (server-to-client) frame to `out`.
pub fn encode_frame(out: &mut impl BufMut, fin: bool, opcode: OpCode, rsv1: bool, payload: &[u8]) {
    out.put_slice(&encode_header(fin, opcode, rsv1, payload.len() as u64));
    out.put_slice(payload);
}

/// A complete unfragmented server frame in one allocation of exactly its
/// size, to be shared among the recipients of a broadcast with `Bytes::clone`.
pub fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = encode_header(true, opcode, false, payload.len() as u64);
    let mut out = BytesMut::with_capacity(header.len() + payload.len());
    out.put_slice(&header);
    out.put_slice(payload);
    out.freeze()
}

/// A server close frame: `code` and `reason` (cut to 123 bytes on a
/// character boundary), or an empty payload when `code` is `None`.
pub fn close_frame(code: Option<u16>, reason: &str) -> Bytes {
    let Some(code) = code else {
        return frame(OpCode::Close, &[]);
    };
    let reason = truncate_reason(reason);
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    frame(OpCode::Close, &payload[..2 + reason.len()])
}

/// Appends a masked (client-to-server) frame to `out`: for clients such as
/// tests and benchmarks.
pub fn encode_masked_frame(
    out: &mut BytesMut,
    fin: bool,
    opcode: OpCode,
    rsv1: bool,
    mask: [u8; 4],
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: Some(mask),
        payload_len: payload.len() as u64,
    };
    out.put_slice(&header.encode());
    let start = out.len();
    out.put_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> (FrameHeader, usize) {
        parse_header(bytes).unwrap().unwrap()
    }

    #[test]
    fn short_header() {
        let (h, n) = header(&[0x81, 0x85, 1, 2, 3, 4]);
        assert_eq!(n, 6);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv1: false,
                rsv2: false,
                rsv3: false,
                opcode: OpCode::Text,
                mask: Some([1, 2, 3, 4]),
                payload_len: 5,
            }
        );
        let (h, n) = header(&[0x72, 0x00]);
        assert_eq!(n, 2);
        assert!(!h.fin && h.rsv1 && h.rsv2 && h.rsv3);
        assert_eq!(h.opcode, OpCode::Binary);
        assert_eq!(h.mask, None);
    }

    #[test]
    fn length_forms() {
        let (h, n) = header(&[0x82, 0xFE, 0x01, 0x00, 9, 9, 9, 9]);
        assert_eq!((h.payload_len, n), (256, 8));
        let (h, n) = header(&[0x82, 0x7E, 0x00, 0x7D]); // non-minimal 125: allowed
        assert_eq!((h.payload_len, n), (125, 4));
        let (h, n) = header(&[0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9]);
        assert_eq!((h.payload_len, n), (1 << 32, 14));
        let (h, _) = header(&[0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(h.payload_len, (1 << 63) - 1);
        assert_eq!(
            parse_header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthOverflow)
        );
    }

    #[test]
    fn incomplete_headers_need_more() {
        let full = [0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9];
        for n in 0..full.len() {
            assert_eq!(parse_header(&full[..n]), Ok(None), "{n} bytes");
        }
        let full = [0x81, 0xFE, 0x01, 0x00, 9, 9, 9, 9];
        for n in 0..full.len() {
            assert_eq!(parse_header(&full[..n]), Ok(None), "{n} bytes");
        }
    }

    #[test]
    fn unconditional_rules_fail_early() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                parse_header(&[0x80 | op]),
                Err(ProtocolError::UnknownOpcode(op))
            );
        }
        assert_eq!(parse_header(&[0x09]), Err(ProtocolError::FragmentedControl));
        assert_eq!(
            parse_header(&[0x89, 0xFE]),
            Err(ProtocolError::ControlTooLong)
        );
        assert_eq!(
            parse_header(&[0x88, 0x7F]),
            Err(ProtocolError::ControlTooLong)
        );
        assert!(parse_header(&[0x89, 0xFD]).unwrap().is_none());
    }

    #[test]
    fn encode_round_trips() {
        for len in [0u64, 1, 125, 126, 127, 0xFFFF, 0x10000, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = FrameHeader {
                    fin: len % 2 == 0,
                    rsv1: true,
                    rsv2: false,
                    rsv3: len > 200,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len: len,
                };
                let bytes = h.encode();
                let expected = match len {
                    0..=125 => 2,
                    126..=0xFFFF => 4,
                    _ => 10,
                } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(bytes.len(), expected);
                assert_eq!(parse_header(&bytes), Ok(Some((h, expected))));
            }
        }
    }

    #[test]
    fn server_frames() {
        assert_eq!(&frame(OpCode::Text, b"hi")[..], b"\x81\x02hi");
        let big = vec![7u8; 300];
        let f = frame(OpCode::Binary, &big);
        assert_eq!(&f[..4], &[0x82, 0x7E, 0x01, 0x2C]);
        assert_eq!(f.len(), 304);
        let mut out = Vec::new();
        encode_frame(&mut out, false, OpCode::Text, true, b"abc");
        assert_eq!(out, b"\x41\x03abc");
        assert_eq!(&*encode_header(true, OpCode::Pong, false, 0), &[0x8A, 0x00]);
        assert_eq!(&close_frame(None, "ignored")[..], &[0x88, 0x00]);
        assert_eq!(
            &close_frame(Some(1001), "seeya")[..],
            b"\x88\x07\x03\xe9seeya"
        );
        let long = close_frame(Some(1000), &"x".repeat(500));
        assert_eq!(long.len(), 2 + 125);
    }

    #[test]
    fn masking_matches_bytewise_at_every_offset() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..100u8).collect();
        for start in 0..data.len() {
            for end in start..=data.len().min(start + 40) {
                let mut piece = data[start..end].to_vec();
                apply_mask(&mut piece, mask, start);
                for (i, b) in piece.iter().enumerate() {
                    assert_eq!(*b, data[start + i] ^ mask[(start + i) % 4]);
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let mask = [1, 2, 3, 250];
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for cut in [1, 3, 7, 8, 9, 13, 500, 999] {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(cut);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, cut);
            assert_eq!(pieces, whole, "cut at {cut}");
        }
        // The RFC 6455 §5.7 example: "Hello" masked with 37 fa 21 3d.
        let mut hello = *b"Hello";
        apply_mask(&mut hello, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(hello, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
