//! The WebSocket handshake header parsers (SPEC §6.1–6.2, RFC 6455 §4.2,
//! RFC 7692): comma-separated tokens, `Sec-WebSocket-Version`, `-Key`,
//! `-Protocol` selection, `Sec-WebSocket-Extensions` / permessage-deflate
//! parameters, and `upgrade::negotiate` over a whole request head.
//!
//! Input: the first byte's bits choose the arrival (TLS, HTTP/2, port) and
//! the vhost; every following line `name: value` is a request header.
//!
//! Invariants: never panics; a chosen subprotocol is an offered, enabled
//! token; an agreed permessage-deflate answer has window bits 8–15 and, read
//! back as an offer, agrees to the same parameters; an accepted HTTP/1.1
//! handshake answers with the accept value of a valid key.
#![no_main]

use http::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use lwsws_config::{IpFamily, Listen, OriginCheck, ProtocolEntry, Vhost};
use lwsws_ws::{deflate, handshake, upgrade};
use std::sync::OnceLock;

const ENABLED: &[&str] = &["lws-mirror-protocol", "dumb-increment-protocol", "echo"];

fn vhosts() -> &'static [Vhost; 2] {
    static V: OnceLock<[Vhost; 2]> = OnceLock::new();
    V.get_or_init(|| {
        let listen = Listen::Tcp {
            port: 7681,
            interface: None,
            family: IpFamily::Both,
        };
        let entry = |name: &str, default: bool| ProtocolEntry {
            name: name.into(),
            default,
            raw: false,
            pvos: Vec::new(),
        };
        let mut a = Vhost::new("localhost", listen.clone());
        a.ws_protocols = ENABLED.iter().map(|n| entry(n, *n == "echo")).collect();
        let mut b = Vhost::new("example.com", listen);
        b.ws_protocols = vec![entry("lws-mirror-protocol", false)];
        b.ws_origin_check = OriginCheck::Trusted;
        b.ws_trusted_origins = vec!["https://example.com".into(), "http://[::1]:8080".into()];
        b.ws_deflate = false;
        b.disable_no_protocol_ws_upgrades = true;
        [a, b]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = http::Request::builder()
        .uri("/ws")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    for line in rest.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value),
        ) {
            parts.headers.append(n, v);
        }
    }
    let h = &parts.headers;

    // The pieces, on every value.
    for v in h.values() {
        let v = v.as_bytes();
        for t in handshake::tokens(v) {
            assert!(
                !t.is_empty() && !t.contains([',', ' ', '\t']),
                "token {t:?}"
            );
        }
        let _ = handshake::has_token(v, "websocket");
        let _ = handshake::check_version(Some(v));
        if handshake::valid_key(v) {
            assert_eq!(handshake::accept_key(v).len(), 28);
        }
    }
    let offered = || {
        h.get_all("sec-websocket-protocol")
            .iter()
            .map(|v| v.as_bytes())
    };
    if let Some(p) = handshake::select_protocol(offered(), |n| ENABLED.contains(&n)) {
        assert!(ENABLED.contains(&p));
        assert!(offered().any(|v| handshake::tokens(v).any(|t| t == p)));
    }
    let extensions = || {
        h.get_all("sec-websocket-extensions")
            .iter()
            .map(|v| v.as_bytes())
    };
    if let Some((params, answer)) = deflate::negotiate(extensions()) {
        assert!((8..=15).contains(&params.server_max_window_bits));
        assert!((8..=15).contains(&params.client_max_window_bits));
        let again = deflate::negotiate([answer.as_bytes()]);
        assert_eq!(
            again.as_ref().map(|(p, a)| (p, a.as_str())),
            Some((&params, answer.as_str())),
            "the answer {answer:?} does not read back as itself"
        );
    }

    // A whole request head.
    let _ = upgrade::is_upgrade(&parts);
    let vhost = &vhosts()[usize::from(flags & 1)];
    let at = upgrade::Arrival {
        tls: flags & 2 != 0,
        port: (flags & 4 != 0).then_some(if flags & 2 != 0 { 443 } else { 7681 }),
        h2: flags & 8 != 0,
    };
    let mount_protocol = (flags & 16 != 0).then_some("dumb-increment-protocol");
    if let Ok(acc) = upgrade::negotiate(&parts, vhost, mount_protocol, at) {
        let entry = &vhost.ws_protocols[acc.entry];
        if let Some(p) = acc.headers.get("sec-websocket-protocol") {
            assert_eq!(p.as_bytes(), entry.name.as_bytes());
            assert!(offered().any(|v| handshake::tokens(v).any(|t| t == entry.name)));
        }
        if !at.h2 {
            let key = h.get("sec-websocket-key").unwrap().as_bytes();
            assert!(handshake::valid_key(key));
            assert_eq!(
                acc.headers["sec-websocket-accept"].as_bytes(),
                handshake::accept_key(key).as_bytes()
            );
        }
        if acc.deflate.is_some() {
            assert!(vhost.ws_deflate);
        }
    }
});
