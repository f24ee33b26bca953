use super::*;

fn neg(values: &[&str]) -> Option<(DeflateParams, String)> {
    negotiate(values.iter().map(|v| v.as_bytes()))
}

#[test]
fn plain_offer_is_accepted_with_defaults() {
    let (p, answer) = neg(&["permessage-deflate"]).unwrap();
    assert_eq!(p, DeflateParams::default());
    assert_eq!(answer, "permessage-deflate");
}

#[test]
fn browser_offer() {
    let (p, answer) = neg(&["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!(p, DeflateParams::default());
    assert_eq!(answer, "permessage-deflate");
}

#[test]
fn all_parameters() {
    let (p, answer) = neg(&[
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=\"12\"",
    ])
    .unwrap();
    assert_eq!(
        p,
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 12,
        }
    );
    assert_eq!(
        answer,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=12"
    );
}

#[test]
fn window_bits_8_is_accepted_as_asked() {
    let (p, answer) = neg(&["permessage-deflate; server_max_window_bits=8"]).unwrap();
    assert_eq!(p.server_max_window_bits, 8);
    assert_eq!(answer, "permessage-deflate; server_max_window_bits=8");
}

#[test]
fn invalid_offers_are_declined_and_the_next_one_taken() {
    for bad in [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=1x",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; unknown_parameter",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(neg(&[bad]), None, "{bad}");
        let (p, answer) = neg(&[&format!(
            "{bad}, permessage-deflate; client_no_context_takeover"
        )])
        .unwrap_or_else(|| panic!("{bad}"));
        assert!(p.client_no_context_takeover, "{bad}");
        assert_eq!(answer, "permessage-deflate; client_no_context_takeover");
    }
}

#[test]
fn offers_over_several_headers_and_odd_spacing() {
    let (p, _) = neg(&[
        "foo; a=\"b,c\"",
        " , permessage-deflate ;server_max_window_bits = 9 ;client_max_window_bits,",
    ])
    .unwrap();
    assert_eq!(p.server_max_window_bits, 9);
    assert_eq!(p.client_max_window_bits, 15);
    assert_eq!(neg(&["permessage-deflate; a=\"unterminated"]), None);
    assert_eq!(neg(&["permessage-deflate junk"]), None);
    // An empty quoted value is no token: the header does not parse.
    assert_eq!(
        neg(&["permessage-deflate; client_max_window_bits=\"\", permessage-deflate"]),
        None
    );
    assert_eq!(neg(&[]), None);
    // First acceptable offer wins.
    let (p, _) =
        neg(&["permessage-deflate; server_max_window_bits=12, permessage-deflate"]).unwrap();
    assert_eq!(p.server_max_window_bits, 12);
}

fn params(snct: bool, cnct: bool, sbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: 15,
    }
}

fn messages() -> Vec<Vec<u8>> {
    let json =
        br#"{"id": 12345, "name": "a JSON-like message", "tags": ["x", "y", "z"], "ok": true}"#;
    let mut v = vec![json.repeat(20), json.to_vec(), json.repeat(3)];
    // Incompressible bytes.
    let mut x = 0x1234_5678u32;
    v.push(
        (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect(),
    );
    v.push(vec![b'a'; 200_000]);
    v.push(Vec::new());
    v
}

#[test]
fn round_trips() {
    for snct in [false, true] {
        for bits in [9, 10, 12, 15] {
            let p = params(snct, snct, bits);
            let mut d = Deflater::new(&DeflateConfig {
                params: p,
                threshold: 0,
            });
            let mut i = Inflater::new(&p);
            for _round in 0..3 {
                for m in messages() {
                    let z = d.deflate(&m);
                    let back = i.inflate(&z, 1 << 20).unwrap();
                    assert_eq!(&back[..], &m[..], "snct {snct} bits {bits}");
                }
            }
        }
    }
}

#[test]
fn context_takeover_shrinks_repeated_messages_and_needs_the_context() {
    let m = messages()[0].clone();
    let mut d = Deflater::new(&DeflateConfig {
        params: params(false, false, 15),
        threshold: 0,
    });
    let first = d.deflate(&m);
    let second = d.deflate(&m);
    assert!(
        second.len() < first.len() / 4,
        "{} vs {}",
        second.len(),
        first.len()
    );
    // A fresh inflater lacks the context of the first message.
    let mut fresh = Inflater::new(&params(false, false, 15));
    assert!(
        fresh
            .inflate(&second, 1 << 20)
            .map(|b| b != m[..])
            .unwrap_or(true)
    );

    let mut d = Deflater::new(&DeflateConfig {
        params: params(true, false, 15),
        threshold: 0,
    });
    let first = d.deflate(&m);
    let second = d.deflate(&m);
    assert_eq!(first, second);
    let mut fresh = Inflater::new(&params(false, false, 15));
    assert_eq!(&fresh.inflate(&second, 1 << 20).unwrap()[..], &m[..]);
}

/// What a client produces: a raw deflate stream with sync flushes.
fn client_deflate(c: &mut Compress, m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + 1024);
    let start = c.total_in();
    loop {
        let pos = (c.total_in() - start) as usize;
        c.compress_vec(&m[pos..], &mut out, FlushCompress::Sync)
            .unwrap();
        if (c.total_in() - start) as usize == m.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - 4);
    }
    if out.is_empty() {
        out.push(0);
    }
    out
}

#[test]
fn inflates_a_client_stream_with_a_small_window() {
    let mut c = Compress::new_with_window_bits(Compression::best(), false, 9);
    let mut i = Inflater::new(&params(false, false, 15));
    for m in messages() {
        let z = client_deflate(&mut c, &m);
        assert_eq!(&i.inflate(&z, 1 << 20).unwrap()[..], &m[..]);
    }
}

#[test]
fn zip_bomb_stops_at_the_limit() {
    let bomb = vec![0u8; 10 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let z = client_deflate(&mut c, &bomb);
    assert!(z.len() < 20_000, "{}", z.len());
    let mut i = Inflater::new(&params(false, false, 15));
    let limit = 1 << 20;
    assert_eq!(i.inflate(&z, limit), Err(InflateError::TooBig { limit }));
    assert_eq!(InflateError::TooBig { limit }.close_code(), 1009);
    // Exactly at the limit is fine; one byte more is not.
    let m = vec![7u8; 1000];
    let mut c = Compress::new(Compression::default(), false);
    let z = client_deflate(&mut c, &m);
    let mut i = Inflater::new(&params(false, true, 15));
    assert_eq!(i.inflate(&z, 1000).unwrap().len(), 1000);
    assert_eq!(i.inflate(&z, 999), Err(InflateError::TooBig { limit: 999 }));
}

#[test]
fn inflated_output_capacity_is_bounded() {
    // Capacity is checked on the success path: growth is capped at limit + 1.
    let m = vec![1u8; 300_000];
    let mut c = Compress::new(Compression::default(), false);
    let z = client_deflate(&mut c, &m);
    let mut d = Decompress::new(false);
    let v = inflate_into(&mut d, &z, 300_000).unwrap();
    assert_eq!(v.len(), 300_000);
    assert!(v.capacity() <= 300_001, "{}", v.capacity());
}

#[test]
fn invalid_data_is_1007() {
    let mut i = Inflater::new(&params(false, false, 15));
    // BTYPE 11 is reserved.
    let e = i.inflate(&[0xff, 0xff, 0xff], 1 << 20).unwrap_err();
    assert_eq!(e, InflateError::Invalid);
    assert_eq!(e.close_code(), 1007);
    // The inflater is usable again afterwards.
    let mut c = Compress::new(Compression::default(), false);
    let z = client_deflate(&mut c, b"hello hello hello");
    assert_eq!(&i.inflate(&z, 100).unwrap()[..], b"hello hello hello");
}

#[test]
fn final_block_from_the_client() {
    let mut c = Compress::new(Compression::default(), false);
    let mut z = Vec::with_capacity(256);
    c.compress_vec(b"bye bye bye", &mut z, FlushCompress::Finish)
        .unwrap();
    let mut i = Inflater::new(&params(false, false, 15));
    assert_eq!(&i.inflate(&z, 100).unwrap()[..], b"bye bye bye");
    let mut c = Compress::new(Compression::default(), false);
    let z = client_deflate(&mut c, b"again");
    assert_eq!(&i.inflate(&z, 100).unwrap()[..], b"again");
}

#[test]
fn process_compresses_only_whole_data_frames_over_the_threshold() {
    let mut d = Deflater::new(&DeflateConfig {
        params: DeflateParams::default(),
        threshold: 64,
    });
    let small = crate::frame::frame(OpCode::Text, &[b'a'; 63]);
    assert_eq!(d.process(small.clone()), small);
    assert!(!d.is_allocated());
    let ping = crate::frame::frame(OpCode::Ping, &[b'a'; 100]);
    assert_eq!(d.process(ping.clone()), ping);
    let mut frag = BytesMut::new();
    crate::frame::encode_frame(&mut frag, false, OpCode::Binary, false, &[b'a'; 100]);
    let frag = frag.freeze();
    assert_eq!(d.process(frag.clone()), frag);
    let big = crate::frame::frame(OpCode::Binary, &[b'a'; 1000]);
    let z = d.process(big);
    let (h, n) = parse_header(&z).unwrap().unwrap();
    assert!(h.fin && h.rsv1 && h.opcode == OpCode::Binary);
    assert!(z.len() < 100);
    let mut i = Inflater::new(&DeflateParams::default());
    assert_eq!(&i.inflate(&z[n..], 1 << 20).unwrap()[..], &[b'a'; 1000][..]);

    // A window of 256 bytes cannot be produced: sent uncompressed.
    let mut d = Deflater::new(&DeflateConfig {
        params: params(false, false, 8),
        threshold: 0,
    });
    let big = crate::frame::frame(OpCode::Binary, &[b'a'; 1000]);
    assert_eq!(d.process(big.clone()), big);
}

#[test]
fn incompressible_messages_near_the_limit_inflate() {
    // Pseudo-random bytes barely compress: the payload is larger than the
    // message, which must still come out whole.
    let mut x: u32 = 1;
    let m: Vec<u8> = (0..(4 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut c = Compress::new(Compression::default(), false);
    let z = client_deflate(&mut c, &m);
    assert!(z.len() > m.len());
    let mut i = Inflater::new(&params(false, false, 15));
    assert_eq!(i.inflate(&z, 4 << 20).map(|b| b.len()), Ok(m.len()));
}
