//! Tests of the assembler with hand-built client frames: every rule of
//! `message.rs`, and the same results however the bytes are cut.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::frame::{FrameHeader, encode_masked_frame};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
fn client(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_masked_frame(&mut out, fin, opcode, false, MASK, payload);
    out.to_vec()
}

/// A masked client frame with the given header bits.
fn client_with(h: FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = h.encode().to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = h.mask {
        apply_mask(&mut out[start..], mask, 0);
    }
    out
}

fn header(opcode: OpCode, len: usize) -> FrameHeader {
    FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: Some(MASK),
        payload_len: len as u64,
    }
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

type Event = Result<Message, ProtocolError>;

/// Feeds `bytes` in pieces of the given sizes (the last repeated), draining
/// the assembler after each, and checks that each drain empties the input.
fn feed_pieces(asm: &mut Assembler, bytes: &[u8], sizes: &[usize]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes[i.min(sizes.len() - 1)].clamp(1, rest.len());
        i += 1;
        let mut input = BytesMut::from(&rest[..size]);
        rest = &rest[size..];
        loop {
            match asm.feed(&mut input) {
                Ok(Some(m)) => events.push(Ok(m)),
                Ok(None) => break,
                Err(e) => {
                    events.push(Err(e));
                    break;
                }
            }
        }
        assert!(input.is_empty(), "input left after a drain");
        if asm.is_closed() {
            break;
        }
    }
    events
}

fn feed_with(config: Config, bytes: &[u8]) -> Vec<Event> {
    feed_pieces(&mut Assembler::new(config), bytes, &[bytes.len().max(1)])
}

fn feed(bytes: &[u8]) -> Vec<Event> {
    feed_with(Config::default(), bytes)
}

/// Feeds `bytes` whole, byte by byte, and cut at pseudo-random places, and
/// checks the results agree.
fn feed_every_way(config: Config, bytes: &[u8]) -> Vec<Event> {
    let whole = feed_with(config, bytes);
    let bytewise = feed_pieces(&mut Assembler::new(config), bytes, &[1]);
    assert_eq!(whole, bytewise, "byte by byte");
    let mut seed = 0x2545_f491_u32;
    for _ in 0..20 {
        let sizes: Vec<usize> = (0..64)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                1 + (seed >> 16) as usize % 23
            })
            .collect();
        let cut = feed_pieces(&mut Assembler::new(config), bytes, &sizes);
        assert_eq!(whole, cut, "cut at {sizes:?}");
    }
    whole
}

fn text(s: &str) -> Event {
    Ok(Message::Text(Bytes::copy_from_slice(s.as_bytes())))
}

fn binary(b: &[u8]) -> Event {
    Ok(Message::Binary(Bytes::copy_from_slice(b)))
}

#[test]
fn assembler_is_small() {
    let size = std::mem::size_of::<Assembler>();
    println!("Assembler: {size} bytes");
    assert!(size <= 96, "Assembler is {size} bytes");
}

#[test]
fn single_frames() {
    let stream = concat(&[
        client(true, OpCode::Text, b"Hello"),
        client(true, OpCode::Binary, &[0, 1, 2, 255]),
        client(true, OpCode::Text, b""),
        client(true, OpCode::Binary, b""),
        client(true, OpCode::Ping, b"p"),
        client(true, OpCode::Pong, b""),
    ]);
    let events = feed_every_way(Config::default(), &stream);
    assert_eq!(
        events,
        vec![
            text("Hello"),
            binary(&[0, 1, 2, 255]),
            text(""),
            binary(b""),
            Ok(Message::Ping(Bytes::from_static(b"p"))),
            Ok(Message::Pong(Bytes::new())),
        ]
    );
}

#[test]
fn whole_frames_leave_nothing_buffered() {
    let mut asm = Assembler::new(Config::default());
    let mut input = BytesMut::from(&client(true, OpCode::Text, b"Hello")[..]);
    assert_eq!(asm.feed(&mut input), text("Hello").map(Some));
    assert_eq!(asm.feed(&mut input), Ok(None));
    assert!(asm.is_idle());
    assert_eq!(asm.buffered_capacity(), 0);
}

#[test]
fn split_frames_release_their_buffer() {
    let stream = concat(&[
        client(false, OpCode::Binary, &[1; 1000]),
        client(true, OpCode::Ping, b"ping"),
        client(true, OpCode::Continuation, &[2; 1000]),
        client(true, OpCode::Ping, b"alone"),
    ]);
    let mut asm = Assembler::new(Config::default());
    let events = feed_pieces(&mut asm, &stream, &[7]);
    assert_eq!(events.len(), 3);
    assert!(asm.is_idle());
    assert_eq!(asm.buffered_capacity(), 0);
    // A partial header is kept without allocating.
    let mut input = BytesMut::from(&stream[..1]);
    assert_eq!(asm.feed(&mut input), Ok(None));
    assert!(!asm.is_idle());
    assert_eq!(asm.buffered_capacity(), 0);
}

#[test]
fn length_forms() {
    let medium: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    let large: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    // A non-minimal 64-bit length for a short payload is allowed.
    let non_minimal = {
        let mut f = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 3];
        f.extend_from_slice(&MASK);
        let mut p = *b"abc";
        apply_mask(&mut p, MASK, 0);
        f.extend_from_slice(&p);
        f
    };
    let stream = concat(&[
        client(true, OpCode::Binary, &medium),
        client(true, OpCode::Binary, &large),
        non_minimal,
    ]);
    assert_eq!(stream[1], 0x80 | 126);
    assert_eq!(
        feed_every_way(Config::default(), &stream),
        vec![binary(&medium), binary(&large), binary(b"abc")]
    );
}

#[test]
fn fragmented_text_with_a_character_split_across_fragments() {
    let s = "κόσμε €";
    let bytes = s.as_bytes();
    // Cut inside the two-byte "κ" and inside the three-byte "€".
    let stream = concat(&[
        client(false, OpCode::Text, &bytes[..1]),
        client(false, OpCode::Continuation, &bytes[1..bytes.len() - 1]),
        client(false, OpCode::Continuation, b""),
        client(true, OpCode::Continuation, &bytes[bytes.len() - 1..]),
    ]);
    assert_eq!(feed_every_way(Config::default(), &stream), vec![text(s)]);
}

#[test]
fn text_ending_inside_a_character_is_invalid() {
    let euro = "€".as_bytes();
    let stream = concat(&[
        client(false, OpCode::Text, b"a"),
        client(true, OpCode::Continuation, &euro[..2]),
    ]);
    assert_eq!(
        feed_every_way(Config::default(), &stream),
        vec![Err(ProtocolError::InvalidUtf8)]
    );
    let single = client(true, OpCode::Text, &euro[..2]);
    assert_eq!(feed(&single), vec![Err(ProtocolError::InvalidUtf8)]);
    assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
}

#[test]
fn invalid_text_fails_before_the_message_ends() {
    // The first fragment alone: the message never completes.
    let first = client(false, OpCode::Text, b"ok \xce\xba\xed\xa0\x80 more");
    assert_eq!(
        feed_every_way(Config::default(), &first),
        vec![Err(ProtocolError::InvalidUtf8)]
    );
    // Inside a frame whose end has not arrived.
    let frame = client(
        true,
        OpCode::Text,
        b"abc\xf4\x90\x80\x80 and much more text",
    );
    let mut asm = Assembler::new(Config::default());
    let mut input = BytesMut::from(&frame[..6 + 5]);
    assert_eq!(asm.feed(&mut input), Err(ProtocolError::InvalidUtf8));
    assert!(asm.is_closed());
    assert!(input.is_empty());
}

#[test]
fn control_frames_between_fragments() {
    let stream = concat(&[
        client(false, OpCode::Text, b"Hel"),
        client(true, OpCode::Ping, b"ping 1"),
        client(false, OpCode::Continuation, b""),
        client(true, OpCode::Pong, b"pong"),
        client(true, OpCode::Ping, &[b'x'; 125]),
        client(true, OpCode::Continuation, b"lo"),
    ]);
    assert_eq!(
        feed_every_way(Config::default(), &stream),
        vec![
            Ok(Message::Ping(Bytes::from_static(b"ping 1"))),
            Ok(Message::Pong(Bytes::from_static(b"pong"))),
            Ok(Message::Ping(Bytes::copy_from_slice(&[b'x'; 125]))),
            text("Hello"),
        ]
    );
    // A close between fragments ends everything.
    let stream = concat(&[
        client(false, OpCode::Binary, b"12"),
        client(true, OpCode::Close, b"\x03\xe8"),
        client(true, OpCode::Continuation, b"34"),
    ]);
    assert_eq!(
        feed_every_way(Config::default(), &stream),
        vec![Ok(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: String::new()
        })))]
    );
}

#[test]
fn fragmentation_order() {
    assert_eq!(
        feed(&client(true, OpCode::Continuation, b"x")),
        vec![Err(ProtocolError::UnexpectedContinuation)]
    );
    assert_eq!(
        feed(&client(false, OpCode::Continuation, b"x")),
        vec![Err(ProtocolError::UnexpectedContinuation)]
    );
    let stream = concat(&[
        client(false, OpCode::Text, b"a"),
        client(true, OpCode::Text, b"b"),
    ]);
    assert_eq!(
        feed_every_way(Config::default(), &stream),
        vec![Err(ProtocolError::ExpectedContinuation)]
    );
    let stream = concat(&[
        client(false, OpCode::Binary, b"a"),
        client(false, OpCode::Binary, b"b"),
    ]);
    assert_eq!(
        feed_every_way(Config::default(), &stream),
        vec![Err(ProtocolError::ExpectedContinuation)]
    );
    // A continuation after a completed message.
    let stream = concat(&[
        client(true, OpCode::Text, b"a"),
        client(true, OpCode::Continuation, b"b"),
    ]);
    assert_eq!(
        feed_every_way(Config::default(), &stream),
        vec![text("a"), Err(ProtocolError::UnexpectedContinuation)]
    );
    for e in [
        ProtocolError::UnexpectedContinuation,
        ProtocolError::ExpectedContinuation,
    ] {
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn frames_must_be_masked() {
    let unmasked = crate::frame::frame(OpCode::Text, b"hi");
    assert_eq!(feed(&unmasked), vec![Err(ProtocolError::Unmasked)]);
    assert_eq!(ProtocolError::Unmasked.close_code(), 1002);
}

#[test]
fn reserved_bits() {
    for (rsv1, rsv2, rsv3) in [
        (true, false, false),
        (false, true, false),
        (false, false, true),
    ] {
        let h = FrameHeader {
            rsv1,
            rsv2,
            rsv3,
            ..header(OpCode::Text, 2)
        };
        let events = feed_every_way(Config::default(), &client_with(h, b"hi"));
        assert_eq!(events, vec![Err(ProtocolError::ReservedBits)]);
    }
    assert_eq!(ProtocolError::ReservedBits.close_code(), 1002);
}

#[test]
fn rsv1_marks_compressed_messages_when_negotiated() {
    let config = Config {
        compression: true,
        ..Config::default()
    };
    let first = FrameHeader {
        fin: false,
        rsv1: true,
        ..header(OpCode::Text, 3)
    };
    let stream = concat(&[
        client_with(first, b"\xf2\x48\xcd"),
        client(true, OpCode::Ping, b""),
        client(true, OpCode::Continuation, b"\xff"),
        client_with(
            FrameHeader {
                rsv1: true,
                ..header(OpCode::Binary, 2)
            },
            b"\x01\x02",
        ),
        client(true, OpCode::Text, b"plain"),
    ]);
    assert_eq!(
        feed_every_way(config, &stream),
        vec![
            Ok(Message::Ping(Bytes::new())),
            Ok(Message::Compressed {
                text: true,
                payload: Bytes::from_static(b"\xf2\x48\xcd\xff"),
            }),
            Ok(Message::Compressed {
                text: false,
                payload: Bytes::from_static(b"\x01\x02"),
            }),
            text("plain"),
        ]
    );
    // RSV1 is for the first frame of a data message only.
    let on_continuation = concat(&[
        client(false, OpCode::Text, b"a"),
        client_with(
            FrameHeader {
                rsv1: true,
                ..header(OpCode::Continuation, 1)
            },
            b"b",
        ),
    ]);
    assert_eq!(
        feed_every_way(config, &on_continuation),
        vec![Err(ProtocolError::ReservedBits)]
    );
    let on_control = client_with(
        FrameHeader {
            rsv1: true,
            ..header(OpCode::Ping, 0)
        },
        b"",
    );
    assert_eq!(
        feed_every_way(config, &on_control),
        vec![Err(ProtocolError::ReservedBits)]
    );
    // RSV2 stays reserved.
    let rsv2 = client_with(
        FrameHeader {
            rsv2: true,
            ..header(OpCode::Text, 0)
        },
        b"",
    );
    assert_eq!(
        feed_with(config, &rsv2),
        vec![Err(ProtocolError::ReservedBits)]
    );
}

#[test]
fn unknown_opcodes() {
    for op in [3u8, 7, 0xB, 0xF] {
        let mut frame = vec![0x80 | op, 0x80];
        frame.extend_from_slice(&MASK);
        assert_eq!(
            feed_every_way(Config::default(), &frame),
            vec![Err(ProtocolError::UnknownOpcode(op))]
        );
    }
    // Also between fragments.
    let mut stream = client(false, OpCode::Text, b"a");
    stream.extend_from_slice(&[0x8B, 0x80, 1, 2, 3, 4]);
    assert_eq!(
        feed_every_way(Config::default(), &stream),
        vec![Err(ProtocolError::UnknownOpcode(0xB))]
    );
    assert_eq!(ProtocolError::UnknownOpcode(3).close_code(), 1002);
}

#[test]
fn control_frame_rules() {
    let long_ping = client(true, OpCode::Ping, &[0; 126]);
    assert_eq!(
        feed_every_way(Config::default(), &long_ping),
        vec![Err(ProtocolError::ControlTooLong)]
    );
    let fragmented_ping = client(false, OpCode::Ping, b"x");
    assert_eq!(
        feed_every_way(Config::default(), &fragmented_ping),
        vec![Err(ProtocolError::FragmentedControl)]
    );
    for e in [
        ProtocolError::ControlTooLong,
        ProtocolError::FragmentedControl,
    ] {
        assert_eq!(e.close_code(), 1002);
    }
}

#[test]
fn declared_size_over_the_limit_fails_before_buffering() {
    let config = Config {
        max_message_size: 100,
        ..Config::default()
    };
    // Only the header of a 1000-byte frame arrives.
    let frame = client(true, OpCode::Binary, &[0; 1000]);
    let mut asm = Assembler::new(config);
    let mut input = BytesMut::from(&frame[..8]);
    assert_eq!(
        asm.feed(&mut input),
        Err(ProtocolError::MessageTooBig {
            size: 1000,
            limit: 100
        })
    );
    assert_eq!(asm.buffered_capacity(), 0);
    // Fragments that add up to more than the limit fail at the header of the
    // fragment that crosses it.
    let stream = concat(&[
        client(false, OpCode::Text, &[b'a'; 60]),
        client(true, OpCode::Continuation, &[b'a'; 41]),
    ]);
    let mut asm = Assembler::new(config);
    let events = feed_pieces(&mut asm, &stream[..6 + 60 + 6], &[1000]);
    assert_eq!(
        events,
        vec![Err(ProtocolError::MessageTooBig {
            size: 101,
            limit: 100
        })]
    );
    assert_eq!(
        ProtocolError::MessageTooBig { size: 0, limit: 0 }.close_code(),
        1009
    );
    // Exactly the limit is fine.
    let stream = concat(&[
        client(false, OpCode::Text, &[b'a'; 60]),
        client(true, OpCode::Ping, &[0; 100]),
        client(true, OpCode::Continuation, &[b'a'; 40]),
    ]);
    let events = feed_every_way(config, &stream);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], text(&"a".repeat(100)));
    // A 64-bit length beyond any limit.
    let mut huge = vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    huge.extend_from_slice(&MASK);
    assert!(matches!(
        feed(&huge)[..],
        [Err(ProtocolError::MessageTooBig { .. })]
    ));
    // Control payloads count too.
    let tiny = Config {
        max_message_size: 4,
        ..Config::default()
    };
    assert!(matches!(
        feed_with(tiny, &client(true, OpCode::Ping, b"12345"))[..],
        [Err(ProtocolError::MessageTooBig { size: 5, limit: 4 })]
    ));
}

#[test]
fn close_frames() {
    let close = |payload: &[u8]| client(true, OpCode::Close, payload);
    assert_eq!(feed(&close(b"")), vec![Ok(Message::Close(None))]);
    assert_eq!(
        feed_every_way(Config::default(), &close(b"\x0f\xa0bye \xc3\xa9")),
        vec![Ok(Message::Close(Some(CloseFrame {
            code: 4000,
            reason: "bye \u{e9}".into()
        })))]
    );
    assert_eq!(
        feed(&close(b"\x03")),
        vec![Err(ProtocolError::CloseTooShort)]
    );
    assert_eq!(ProtocolError::CloseTooShort.close_code(), 1002);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let events = feed(&close(&code.to_be_bytes()));
        assert_eq!(events, vec![Err(ProtocolError::InvalidCloseCode(code))]);
    }
    let reserved = Config {
        allow_reserved_close_codes: true,
        ..Config::default()
    };
    for code in [1004u16, 1016, 2999] {
        let events = feed_with(reserved, &close(&code.to_be_bytes()));
        assert!(
            matches!(events[..], [Ok(Message::Close(Some(_)))]),
            "{code}"
        );
    }
    for code in [1005u16, 1006, 1015, 5000] {
        let events = feed_with(reserved, &close(&code.to_be_bytes()));
        assert_eq!(events, vec![Err(ProtocolError::InvalidCloseCode(code))]);
    }
    assert_eq!(
        feed(&close(
            b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
        )),
        vec![Err(ProtocolError::InvalidCloseReason)]
    );
    assert_eq!(ProtocolError::InvalidCloseReason.close_code(), 1007);
}

#[test]
fn nothing_is_read_after_a_close() {
    let stream = concat(&[
        client(true, OpCode::Close, b""),
        client(true, OpCode::Text, b"after"),
    ]);
    let mut asm = Assembler::new(Config::default());
    let mut input = BytesMut::from(&stream[..]);
    assert_eq!(asm.feed(&mut input), Ok(Some(Message::Close(None))));
    assert!(input.is_empty());
    assert!(asm.is_closed());
    let mut more = BytesMut::from(&client(true, OpCode::Text, b"x")[..]);
    assert_eq!(asm.feed(&mut more), Ok(None));
    assert!(more.is_empty());
}

#[test]
fn errors_empty_the_shared_buffer() {
    let stream = concat(&[
        client(true, OpCode::Continuation, b"x"),
        client(true, OpCode::Text, b"next"),
    ]);
    let mut asm = Assembler::new(Config::default());
    let mut input = BytesMut::from(&stream[..]);
    assert!(asm.feed(&mut input).is_err());
    assert!(input.is_empty());
}

#[test]
fn masking_continues_across_pieces() {
    // A payload whose length and cut points are not multiples of 4 or 8.
    let payload: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
    let frame = client(true, OpCode::Binary, &payload);
    for first in [7usize, 8, 9, 10, 13, 100, 1007] {
        let mut asm = Assembler::new(Config::default());
        let events = feed_pieces(&mut asm, &frame, &[first, 3, 5, 11]);
        assert_eq!(events, vec![binary(&payload)], "first piece {first}");
    }
}

#[test]
fn a_long_mixed_stream_every_way() {
    let mut frames = Vec::new();
    for i in 0..20usize {
        let s = "α€𐍈z".repeat(i);
        let b = s.as_bytes();
        let cut = i % (b.len() + 1);
        frames.push(client(false, OpCode::Text, &b[..cut]));
        frames.push(client(true, OpCode::Ping, &[i as u8; 3]));
        frames.push(client(true, OpCode::Continuation, &b[cut..]));
        frames.push(client(true, OpCode::Binary, &vec![i as u8; i * 37]));
    }
    frames.push(client(true, OpCode::Close, b"\x03\xe8done"));
    let events = feed_every_way(Config::default(), &concat(&frames));
    assert_eq!(events.len(), 61);
    assert_eq!(events[1], text(""));
    assert_eq!(events[4], text("α€𐍈z"));
    assert!(matches!(events[60], Ok(Message::Close(Some(_)))));
}

#[test]
fn compressed_messages_may_exceed_the_limit_on_the_wire_by_deflate_overhead() {
    // Incompressible data deflates to a little more than it was: the limit
    // holds for the inflated message (the inflater's job), with zlib's
    // worst-case overhead allowed on the wire; plain messages get none.
    let config = Config {
        compression: true,
        max_message_size: 100,
        ..Config::default()
    };
    let compressed = |len: usize| {
        client_with(
            FrameHeader {
                rsv1: true,
                ..header(OpCode::Binary, len)
            },
            &vec![7; len],
        )
    };
    assert!(matches!(
        feed_with(config, &compressed(167))[..],
        [Ok(Message::Compressed { .. })]
    ));
    assert!(matches!(
        feed_with(config, &compressed(168))[..],
        [Err(ProtocolError::MessageTooBig { .. })]
    ));
    assert!(matches!(
        feed_with(config, &client(true, OpCode::Binary, &[7; 101]))[..],
        [Err(ProtocolError::MessageTooBig { .. })]
    ));
}
