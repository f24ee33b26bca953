//! The WebSocket token of SPEC §6.5 (`auth-hmac-key-file`, `lwsws token`):
//! `HEX(HMAC-SHA256(key, "user;expiry")) + "." + user + "." + expiry`,
//! split at its first and last `.`; where a handshake carries it (query
//! `token`, cookie `lwsws_token`, `Authorization: Bearer`), and its
//! redaction in logged request targets.
//!
//! Input, one field per line: a token to verify; a user and an expiry to
//! sign (what `lwsws token` does); a request target, a Cookie value and an
//! Authorization value for `from_request` and `redact_query`.
//!
//! Invariants: never panics; a token verifies only if it is exactly what
//! signing its user and expiry gives, and only before its expiry; whatever
//! `sign` makes verifies to the same user until its expiry and is expired
//! from then on; a redacted target keeps no token value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwsws_ws::token::{self, MAX_TOKEN_LEN, TokenError, TokenKey};
use std::sync::OnceLock;

fn key() -> &'static TokenKey {
    static K: OnceLock<TokenKey> = OnceLock::new();
    K.get_or_init(|| TokenKey::new(b"fuzzing key\n"))
}

/// A fixed "now" inside the u64 range, so expiries on both sides occur.
const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut f = text.split('\n');
    let (tok, user, expiry, target, cookie, authz) = (
        f.next().unwrap_or(""),
        f.next().unwrap_or(""),
        f.next().unwrap_or(""),
        f.next().unwrap_or(""),
        f.next().unwrap_or(""),
        f.next().unwrap_or(""),
    );
    let key = key();

    // Verifying: only exactly-signed tokens pass.
    if let Ok(u) = key.verify_at(tok, NOW) {
        let exp: u64 = tok.rsplit('.').next().unwrap().parse().unwrap();
        assert!(exp > NOW);
        assert_eq!(
            key.sign(&u, exp).as_deref(),
            Ok(tok),
            "accepted a token sign() would not make"
        );
    }

    // Signing, then verifying.
    let exp: u64 = expiry.trim().parse().unwrap_or(NOW + 3600);
    if let Ok(t) = key.sign(user, exp) {
        if t.len() > MAX_TOKEN_LEN {
            assert_eq!(key.verify_at(&t, 0), Err(TokenError::Malformed));
        } else {
            if exp > 0 {
                assert_eq!(key.verify_at(&t, exp - 1).as_deref(), Ok(user));
            }
            assert_eq!(key.verify_at(&t, exp), Err(TokenError::Expired));
            // Another key refuses it.
            assert!(TokenKey::new(b"another key").verify_at(&t, 0).is_err());
        }
    }

    // Where a handshake carries it.
    let mut b = http::Request::builder();
    if let Ok(uri) = http::Uri::try_from(target) {
        b = b.uri(uri);
    }
    let Ok(req) = b.body(()) else {
        return;
    };
    let mut parts = req.into_parts().0;
    for (name, value) in [
        (http::header::COOKIE, cookie),
        (http::header::AUTHORIZATION, authz),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            parts.headers.append(name, v);
        }
    }
    if let Some((t, _carrier)) = token::from_request(&parts) {
        let _ = key.verify_at(&t, NOW);
    }

    // Logs never show a token.
    let shown = token::redact_query(target);
    if let Some((_, q)) = shown.split_once('?') {
        for kv in q.split('&') {
            if kv == "token" || kv.starts_with("token=") {
                assert_eq!(kv, "token=<redacted>", "{target:?} logged as {shown:?}");
            }
        }
    }
});
