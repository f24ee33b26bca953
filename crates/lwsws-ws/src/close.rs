//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4; SPEC §6.3).
//!
//! Which codes a peer may send is one table, [`valid_close_code`]; the
//! assembler in `message.rs` applies it to every close frame it receives,
//! with `allow_reserved` from the vhost's `ws-allow-reserved-status-codes`.

use crate::error::ProtocolError;

/// Close codes this server sends (RFC 6455 §7.4.1).
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// The longest close reason: a control payload is at most 125 bytes, two of
/// which are the code.
pub const MAX_REASON_LEN: usize = 123;

/// Whether a peer may send `code` in a close frame.
///
/// Always invalid: below 1000; 1005, 1006 and 1015 (they only describe a
/// close locally); 5000 and above. Reserved, valid only with
/// `allow_reserved`: 1004 and 1016–2999. Valid: 1000–1003, 1007–1014 and the
/// registered and private ranges 3000–4999.
pub fn valid_close_code(code: u16, allow_reserved: bool) -> bool {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => true,
        1004 | 1016..=2999 => allow_reserved,
        _ => false,
    }
}

/// A received close frame that carried a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    /// Valid UTF-8, at most [`MAX_REASON_LEN`] bytes.
    pub reason: String,
}

/// Reads a close frame's (unmasked) payload: empty is a close without a
/// code; otherwise a valid code and a UTF-8 reason are required.
pub fn parse_close_payload(
    payload: &[u8],
    allow_reserved: bool,
) -> Result<Option<CloseFrame>, ProtocolError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => (u16::from_be_bytes([*hi, *lo]), reason),
    };
    if !valid_close_code(code, allow_reserved) {
        return Err(ProtocolError::InvalidCloseCode(code));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
    Ok(Some(CloseFrame {
        code,
        reason: reason.to_owned(),
    }))
}

/// `reason` cut to at most [`MAX_REASON_LEN`] bytes on a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_table() {
        let always_valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011]
            .into_iter()
            .chain([1012, 1013, 1014, 3000, 3999, 4000, 4999]);
        for c in always_valid {
            assert!(valid_close_code(c, false), "{c}");
            assert!(valid_close_code(c, true), "{c}");
        }
        let never_valid = [0, 1, 999, 1005, 1006, 1015, 5000, 5001, 65535];
        for c in never_valid {
            assert!(!valid_close_code(c, false), "{c}");
            assert!(!valid_close_code(c, true), "{c}");
        }
        for c in [1004, 1016, 1100, 2000, 2999] {
            assert!(!valid_close_code(c, false), "{c}");
            assert!(valid_close_code(c, true), "{c}");
        }
        // Exhaustively: exactly the ranges above.
        let valid = (0..=u16::MAX)
            .filter(|&c| valid_close_code(c, false))
            .count();
        assert_eq!(valid, 4 + 8 + 2000);
        let with_reserved = (0..=u16::MAX)
            .filter(|&c| valid_close_code(c, true))
            .count();
        assert_eq!(with_reserved, valid + 1 + (2999 - 1016 + 1));
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close_payload(b"", false), Ok(None));
        assert_eq!(
            parse_close_payload(b"\x03", false),
            Err(ProtocolError::CloseTooShort)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8", false),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: String::new()
            }))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe9bye \xc3\xa9", false),
            Ok(Some(CloseFrame {
                code: 1001,
                reason: "bye \u{e9}".into()
            }))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xec", false),
            Err(ProtocolError::InvalidCloseCode(1004))
        );
        assert!(parse_close_payload(b"\x03\xec", true).is_ok());
        assert_eq!(
            parse_close_payload(b"\x03\xed", true),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xce\xba\xe1\xbd", false),
            Err(ProtocolError::InvalidCloseReason)
        );
        assert_eq!(
            ProtocolError::InvalidCloseReason.close_code(),
            code::INVALID_PAYLOAD
        );
        assert_eq!(
            ProtocolError::InvalidCloseCode(0).close_code(),
            code::PROTOCOL_ERROR
        );
    }

    #[test]
    fn reasons_are_cut_on_character_boundaries() {
        assert_eq!(truncate_reason("short"), "short");
        let long = "\u{e9}".repeat(100); // 200 bytes
        let cut = truncate_reason(&long);
        assert_eq!(cut.len(), 122);
        let exact = "a".repeat(200);
        assert_eq!(truncate_reason(&exact).len(), MAX_REASON_LEN);
    }
}
