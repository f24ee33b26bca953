//! Signed tokens for WebSocket authentication (SPEC §6.5).
//!
//! A token is `HEX(HMAC-SHA256(key, "user;expiry")) + "." + user + "." +
//! expiry`: the MAC in lowercase hex, the user name (which may contain dots
//! but not `;`), and the expiry in decimal Unix seconds. It is split at its
//! first and its last `.`, the MAC is compared in constant time, and the
//! token is valid while now < expiry. The key is a file's bytes as they are.
//!
//! Tokens are credentials: nothing here logs one, and [`redact_query`]
//! hides them in request targets that are logged.

use ring::hmac;
use std::time::{SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// Length of the hex MAC (SHA-256: 32 bytes).
const MAC_HEX_LEN: usize = 64;
/// Longest token accepted (MAC, user, expiry): anything longer is refused
/// before any work is done.
pub const MAX_TOKEN_LEN: usize = 1024;

/// Why a token is refused; the `Display` text is the short reason a 401 or
/// a 1008 close carries (it never contains the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("invalid token")]
    BadSignature,
    #[error("expired token")]
    Expired,
}

/// Why a token cannot be made (`lwsws token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the user name is empty")]
    EmptyUser,
    #[error("the user name contains ';' or a control character")]
    BadUser,
    #[error("the expiry is out of range")]
    Expiry,
}

/// An HMAC-SHA256 key for signing and verifying tokens.
pub struct TokenKey {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// The key made of these bytes, exactly (no trimming).
    pub fn new(bytes: &[u8]) -> TokenKey {
        TokenKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// The key made of a file's bytes as they are.
    pub fn load(path: &std::path::Path) -> std::io::Result<TokenKey> {
        Ok(TokenKey::new(&std::fs::read(path)?))
    }

    /// Lowercase hex HMAC of `user;expiry`.
    fn mac_hex(&self, user: &str, expiry: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(user.as_bytes());
        ctx.update(b";");
        ctx.update(expiry.as_bytes());
        hex(ctx.sign().as_ref())
    }

    /// A token for `user` that is valid until `expiry` (Unix seconds).
    pub fn sign(&self, user: &str, expiry: u64) -> Result<String, SignError> {
        check_user(user)?;
        let expiry = expiry.to_string();
        Ok(format!("{}.{user}.{expiry}", self.mac_hex(user, &expiry)))
    }

    /// A token for `user` valid for `ttl` seconds from now.
    pub fn sign_for(&self, user: &str, ttl: u64) -> Result<String, SignError> {
        let expiry = unix_now().checked_add(ttl).ok_or(SignError::Expiry)?;
        self.sign(user, expiry)
    }

    /// The user of a token that is valid now.
    pub fn verify(&self, token: &str) -> Result<String, TokenError> {
        self.verify_at(token, unix_now())
    }

    /// The user of a token that is valid at `now` (Unix seconds).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<String, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (Some(first), Some(last)) = (token.find('.'), token.rfind('.')) else {
            return Err(TokenError::Malformed);
        };
        if first == last {
            return Err(TokenError::Malformed);
        }
        let (mac, user, expiry) = (&token[..first], &token[first + 1..last], &token[last + 1..]);
        if mac.len() != MAC_HEX_LEN
            || user.is_empty()
            || expiry.is_empty()
            || expiry.len() > 20
            || !expiry.bytes().all(|b| b.is_ascii_digit())
            || check_user(user).is_err()
        {
            return Err(TokenError::Malformed);
        }
        // The expiry is checked after the MAC, so that a forged token learns
        // nothing about the key or whether its expiry would do.
        let expected = self.mac_hex(user, expiry);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(TokenError::BadSignature);
        }
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        if now >= expiry {
            return Err(TokenError::Expired);
        }
        Ok(user.to_string())
    }
}

/// A user name that can be put in a token: not empty, no `;` (which ends
/// the user in the signed text) and no control characters (it goes in logs
/// and in mirrored messages).
fn check_user(user: &str) -> Result<(), SignError> {
    if user.is_empty() {
        return Err(SignError::EmptyUser);
    }
    if user.chars().any(|c| c == ';' || c.is_control()) {
        return Err(SignError::BadUser);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the token of a handshake came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Query,
    Cookie,
    Bearer,
}

/// The token of a handshake request: the query parameter `token`, else
/// the cookie `lwsws_token`, else `Authorization: Bearer`.
pub fn from_request(parts: &http::request::Parts) -> Option<(String, Carrier)> {
    if let Some(t) = parts.uri.query().and_then(|q| query_param(q, "token")) {
        return Some((t, Carrier::Query));
    }
    for v in parts.headers.get_all(http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        if let Some(t) = v.split(';').find_map(|c| {
            let (name, value) = c.trim().split_once('=')?;
            (name.trim() == "lwsws_token").then(|| value.trim().trim_matches('"').to_string())
        }) {
            return Some((t, Carrier::Cookie));
        }
    }
    for v in parts.headers.get_all(http::header::AUTHORIZATION) {
        let Ok(v) = v.to_str() else { continue };
        let v = v.trim();
        if let Some((scheme, rest)) = v.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some((rest.trim().to_string(), Carrier::Bearer));
        }
    }
    None
}

/// The percent-decoded value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| {
            let plus = v.replace('+', " ");
            let d: Vec<u8> = percent_encoding::percent_decode_str(&plus).collect();
            String::from_utf8_lossy(&d).into_owned()
        })
    })
}

/// A request target or query with every `token=` value replaced by
/// `<redacted>`, for logs.
pub fn redact_query(target: &str) -> std::borrow::Cow<'_, str> {
    let Some(q) = target.find('?') else {
        return target.into();
    };
    let (path, query) = target.split_at(q + 1);
    // The fragment never reaches a server, but be safe about a stray '#'.
    if !query
        .split('&')
        .any(|kv| kv == "token" || kv.starts_with("token="))
    {
        return target.into();
    }
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    for (i, kv) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        if kv == "token" || kv.starts_with("token=") {
            out.push_str("token=<redacted>");
        } else {
            out.push_str(kv);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"correct horse battery staple";

    fn key() -> TokenKey {
        TokenKey::new(KEY)
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let t = key().sign("alice", 1_000).unwrap();
        assert_eq!(key().verify_at(&t, 999), Ok("alice".into()));
        assert_eq!(key().verify_at(&t, 0), Ok("alice".into()));
        assert_eq!(key().verify_at(&t, 1_000), Err(TokenError::Expired));
        assert_eq!(key().verify_at(&t, 5_000), Err(TokenError::Expired));
    }

    #[test]
    fn known_answer() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key",b"bob;1700000000",hashlib.sha256).hexdigest())'
        let t = TokenKey::new(b"key").sign("bob", 1_700_000_000).unwrap();
        assert_eq!(
            t,
            "f976d59d7daa3b81384204f5cea51e81aab62afa80da4a5b9d6eb9dab5c1f384.bob.1700000000"
        );
        assert!(
            t[..64]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn sign_for_uses_the_clock() {
        let t = key().sign_for("carol", 3600).unwrap();
        assert_eq!(key().verify(&t), Ok("carol".into()));
        let expiry: u64 = t.rsplit('.').next().unwrap().parse().unwrap();
        let now = unix_now();
        assert!(expiry > now && expiry <= now + 3600);
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let t = TokenKey::new(b"other key").sign("alice", u64::MAX).unwrap();
        assert_eq!(key().verify_at(&t, 1), Err(TokenError::BadSignature));
        // The key is the bytes as they are: a trailing newline is another key.
        let nl = TokenKey::new(b"correct horse battery staple\n")
            .sign("alice", 10)
            .unwrap();
        assert_eq!(key().verify_at(&nl, 1), Err(TokenError::BadSignature));
    }

    #[test]
    fn tampering_is_refused() {
        let t = key().sign("alice", 1_000).unwrap();
        let mac = &t[..64];
        assert_eq!(
            key().verify_at(&format!("{mac}.mallory.1000"), 1),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            key().verify_at(&format!("{mac}.alice.2000"), 1),
            Err(TokenError::BadSignature)
        );
        // The MAC is lowercase hex: the same MAC in uppercase is not accepted.
        assert_eq!(
            key().verify_at(&format!("{}.alice.1000", mac.to_ascii_uppercase()), 1),
            Err(TokenError::BadSignature)
        );
        let mut flipped = mac.to_string().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            key().verify_at(&format!("{flipped}.alice.1000"), 1),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn user_names_may_contain_dots() {
        let t = key().sign("alice.smith.example", 1_000).unwrap();
        assert_eq!(key().verify_at(&t, 1), Ok("alice.smith.example".into()));
        let t = key().sign(".", 1_000).unwrap();
        assert_eq!(key().verify_at(&t, 1), Ok(".".into()));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let k = key();
        let mac = "a".repeat(64);
        for bad in [
            "nodots".to_string(),
            "one.dot".to_string(),
            format!("{mac}..1000"),
            format!("{mac}.alice."),
            format!("{mac}.alice.10x0"),
            format!("{mac}.alice.-5"),
            format!("{mac}.alice.+5"),
            format!("{mac}.alice.99999999999999999999999"),
            format!("{mac}.al;ice.1000"),
            "abc.alice.1000".to_string(),
            format!("{mac}0.alice.1000"),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(k.verify_at(&bad, 1), Err(TokenError::Malformed), "{bad}");
        }
        assert_eq!(k.verify_at("", 1), Err(TokenError::Missing));
    }

    #[test]
    fn users_that_cannot_be_signed() {
        assert_eq!(key().sign("", 1), Err(SignError::EmptyUser));
        assert_eq!(key().sign("a;b", 1), Err(SignError::BadUser));
        assert_eq!(key().sign("a\nb", 1), Err(SignError::BadUser));
        assert_eq!(key().sign_for("a", u64::MAX), Err(SignError::Expiry));
    }

    #[test]
    fn the_mac_is_compared_in_constant_time() {
        // The comparison goes through `subtle`; this checks the source so
        // that a refactoring back to `==` fails a test.
        let src = include_str!("token.rs");
        let verify = &src[src.find("pub fn verify_at").unwrap()..];
        let verify = &verify[..verify.find("\n    }\n").unwrap()];
        assert!(
            verify.contains(".ct_eq("),
            "the MAC must be compared with ct_eq"
        );
        assert!(!verify.contains("expected == mac") && !verify.contains("mac == expected"));
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn carriers() {
        assert_eq!(
            from_request(&parts("/x?a=1&token=abc%2Edef", &[])),
            Some(("abc.def".into(), Carrier::Query))
        );
        assert_eq!(
            from_request(&parts("/x", &[("cookie", "a=b; lwsws_token=t.u.1; c=d")])),
            Some(("t.u.1".into(), Carrier::Cookie))
        );
        assert_eq!(
            from_request(&parts("/x", &[("authorization", "Bearer  t.u.1 ")])),
            Some(("t.u.1".into(), Carrier::Bearer))
        );
        assert_eq!(
            from_request(&parts("/x", &[("authorization", "Basic Zm9vOmJhcg==")])),
            None
        );
        assert_eq!(from_request(&parts("/x?tokens=1", &[])), None);
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_query("/a?b=1"), "/a?b=1");
        assert_eq!(redact_query("/a"), "/a");
        assert_eq!(
            redact_query("/a?b=1&token=abc.alice.99&c=2"),
            "/a?b=1&token=<redacted>&c=2"
        );
        assert_eq!(redact_query("/?token=x"), "/?token=<redacted>");
        assert_eq!(redact_query("/?xtoken=x"), "/?xtoken=x");
    }
}
