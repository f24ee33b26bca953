//! The header arithmetic of the opening handshake (RFC 6455 §4.2; SPEC §6.1):
//! `Sec-WebSocket-Accept`, the version check, `Sec-WebSocket-Protocol`
//! selection and comma-separated token lists.
//!
//! Pure functions of header values. The server crate applies them to a
//! request, answers 426 with [`SUPPORTED_VERSIONS`] or 400, and performs the
//! upgrade; over HTTP/2 (RFC 8441) there is no key and so no accept value,
//! while the version and protocol rules are the same.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The GUID that RFC 6455 §1.3 appends to the key.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Version` value sent with a 426.
pub const SUPPORTED_VERSIONS: &str = "13, 8, 7";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)).
pub fn accept_key(sec_websocket_key: &[u8]) -> String {
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(sec_websocket_key);
    sha1.update(GUID.as_bytes());
    STANDARD.encode(sha1.finish())
}

/// Whether a `Sec-WebSocket-Key` is what RFC 6455 §4.1 requires: 16 bytes,
/// base64-encoded.
pub fn valid_key(sec_websocket_key: &[u8]) -> bool {
    sec_websocket_key.len() == 24
        && STANDARD
            .decode(sec_websocket_key)
            .is_ok_and(|key| key.len() == 16)
}

/// A `Sec-WebSocket-Version` this server does not speak (or none at all):
/// answer 426 with `Sec-WebSocket-Version: 13, 8, 7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unsupported WebSocket version (this server speaks {SUPPORTED_VERSIONS})")]
pub struct UnsupportedVersion;

/// The version of a `Sec-WebSocket-Version` value: 13, 8 or 7 (the framing of
/// drafts 7 and 8 is that of RFC 6455).
pub fn check_version(value: Option<&[u8]>) -> Result<u8, UnsupportedVersion> {
    match value.map(<[u8]>::trim_ascii) {
        Some(b"13") => Ok(13),
        Some(b"8") => Ok(8),
        Some(b"7") => Ok(7),
        _ => Err(UnsupportedVersion),
    }
}

/// The elements of a comma-separated header value, trimmed, empty ones
/// skipped, and only those that are HTTP tokens (RFC 9110 §5.6.2).
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &str> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && t.iter().all(|&b| is_tchar(b)))
        .filter_map(|t| std::str::from_utf8(t).ok())
}

/// Whether a comma-separated header value (`Connection`, `Upgrade`) contains
/// `token`, compared without regard to ASCII case.
pub fn has_token(value: &[u8], token: &str) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// The subprotocol to answer with: the first name, in the client's order over
/// all its `Sec-WebSocket-Protocol` values, that `enabled` accepts.
pub fn select_protocol<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    mut enabled: impl FnMut(&str) -> bool,
) -> Option<&'a str> {
    values
        .into_iter()
        .flat_map(tokens)
        .find(|name| enabled(name))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key(b"not base64 at all!!!!!!!"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZSE=")); // 17 bytes
    }

    #[test]
    fn versions() {
        assert_eq!(check_version(Some(b"13")), Ok(13));
        assert_eq!(check_version(Some(b" 13 ")), Ok(13));
        assert_eq!(check_version(Some(b"8")), Ok(8));
        assert_eq!(check_version(Some(b"7")), Ok(7));
        for bad in [&b"12"[..], b"14", b"", b"13, 8", b"0013", b"x"] {
            assert_eq!(check_version(Some(bad)), Err(UnsupportedVersion), "{bad:?}");
        }
        assert_eq!(check_version(None), Err(UnsupportedVersion));
    }

    #[test]
    fn protocol_lists() {
        let names: Vec<&str> = tokens(b" chat , ,superchat,\tlws-mirror-protocol ,").collect();
        assert_eq!(names, ["chat", "superchat", "lws-mirror-protocol"]);
        let names: Vec<&str> = tokens(b"a b, c, \"q\", d\xff, e").collect();
        assert_eq!(names, ["c", "e"]);
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(!has_token(b"keep-alive, Upgrades", "upgrade"));

        let enabled = |n: &str| n == "echo" || n == "dumb-increment-protocol";
        let values: [&[u8]; 2] = [b"foo, dumb-increment-protocol", b"echo"];
        assert_eq!(
            select_protocol(values, enabled),
            Some("dumb-increment-protocol")
        );
        let values: [&[u8]; 2] = [b"foo", b"bar, echo"];
        assert_eq!(select_protocol(values, enabled), Some("echo"));
        let values: [&[u8]; 1] = [b"foo, bar"];
        assert_eq!(select_protocol(values, enabled), None);
        assert_eq!(select_protocol(std::iter::empty(), enabled), None);
    }
}
