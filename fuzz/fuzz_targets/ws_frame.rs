//! The WebSocket frame parser and message assembler (SPEC §6.3, RFC 6455 §5)
//! on bytes from a client, plus what the driver does with what comes out:
//! permessage-deflate inflation (RFC 7692) and UTF-8 validation in pieces.
//!
//! Input: the first byte's bits choose the configuration (compression,
//! reserved close codes, a small message limit, inflater context takeover)
//! and seed how the rest is cut into reads; the rest is the byte stream.
//!
//! Invariants: never panics; the messages and the error an `Assembler`
//! yields do not depend on how the stream is cut into reads; a parsed header
//! encodes and parses back to itself; masking is an involution that can be
//! applied piece by piece; inflating never yields more than the limit;
//! `Utf8Validator` fed in pieces agrees with `str::from_utf8`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use lwsws_ws::deflate::{DeflateParams, Inflater};
use lwsws_ws::frame::{apply_mask, parse_header};
use lwsws_ws::utf8::Utf8Validator;
use lwsws_ws::{Assembler, Config, Message, ProtocolError};

type Outcome = Vec<Result<Message, ProtocolError>>;

/// Feeds `input` in pieces whose sizes `next` gives, draining the
/// assembler after each, as the connection driver does.
fn assemble(config: Config, input: &[u8], mut next: impl FnMut() -> usize) -> Outcome {
    let mut a = Assembler::new(config);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = next().clamp(1, rest.len());
        let mut buf = BytesMut::from(&rest[..n]);
        rest = &rest[n..];
        loop {
            match a.feed(&mut buf) {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        assert!(buf.is_empty(), "feed left bytes in the shared buffer");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let config = Config {
        max_message_size: if flags & 4 != 0 { 1000 } else { 1 << 20 },
        allow_reserved_close_codes: flags & 2 != 0,
        compression: flags & 1 != 0,
    };

    // Whole, then cut into pieces: the same messages.
    let whole = assemble(config, stream, || usize::MAX);
    let mut state = u32::from(flags).wrapping_mul(2_654_435_761) | 1;
    let cut = assemble(config, stream, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 23) as usize
    });
    assert_eq!(whole, cut, "the outcome depends on how the stream is cut");
    let one_by_one = assemble(config, stream, || 1);
    assert_eq!(whole, one_by_one, "the outcome differs byte by byte");

    // What the driver does with the messages.
    let params = DeflateParams {
        client_no_context_takeover: flags & 8 != 0,
        ..DeflateParams::default()
    };
    let mut inflater = Inflater::new(&params);
    for m in whole.iter().flatten() {
        match m {
            Message::Compressed { text, payload } => {
                if let Ok(plain) = inflater.inflate(payload, config.max_message_size) {
                    assert!(plain.len() <= config.max_message_size);
                    if *text {
                        let mut v = Utf8Validator::new();
                        let ok = v.feed(&plain).and_then(|()| v.finish()).is_ok();
                        assert_eq!(ok, std::str::from_utf8(&plain).is_ok());
                    }
                }
            }
            Message::Text(t) => assert!(std::str::from_utf8(t).is_ok()),
            Message::Close(Some(c)) => {
                assert!(lwsws_ws::valid_close_code(
                    c.code,
                    config.allow_reserved_close_codes
                ));
            }
            _ => {}
        }
    }

    // The header alone.
    if let Ok(Some((h, n))) = parse_header(stream) {
        assert!(n <= stream.len());
        let encoded = h.encode();
        assert_eq!(parse_header(&encoded), Ok(Some((h, encoded.len()))));
        if let Some(mask) = h.mask {
            let payload = &stream[n..];
            let mut whole = payload.to_vec();
            apply_mask(&mut whole, mask, 0);
            let mut pieces = payload.to_vec();
            let mid = usize::from(flags) % (pieces.len() + 1);
            let (a, b) = pieces.split_at_mut(mid);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, mid);
            assert_eq!(whole, pieces);
            apply_mask(&mut whole, mask, 0);
            assert_eq!(whole, payload);
        }
    }

    // UTF-8 in pieces.
    let mut v = Utf8Validator::new();
    let mut ok = true;
    for piece in stream.chunks(usize::from(flags % 7) + 1) {
        if v.feed(piece).is_err() {
            ok = false;
            break;
        }
    }
    let ok = ok && v.finish().is_ok();
    assert_eq!(
        ok,
        std::str::from_utf8(stream).is_ok(),
        "Utf8Validator disagrees"
    );
});
