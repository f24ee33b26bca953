//! Why a peer's frames end the connection, and with which close code
//! (RFC 6455 §7.4.1; SPEC §6.3). The assembler in `message.rs` and the header
//! parser in `frame.rs` produce these; the connection driver sends a close
//! frame with [`ProtocolError::close_code`] and stops reading.

use crate::close::code;

/// A violation of RFC 6455 (or of a configured limit) by the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame from the client is not masked")]
    Unmasked,
    #[error("reserved bit set without an extension that defines it")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame is fragmented")]
    FragmentedControl,
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    #[error("64-bit payload length with its most significant bit set")]
    LengthOverflow,
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    #[error("new message while a fragmented message is in progress")]
    ExpectedContinuation,
    #[error("message of at least {size} bytes is larger than the limit of {limit}")]
    MessageTooBig { size: u64, limit: usize },
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    #[error("close frame payload of one byte")]
    CloseTooShort,
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    #[error("invalid UTF-8 in a close reason")]
    InvalidCloseReason,
}

impl ProtocolError {
    /// The close code to send: 1007 for invalid UTF-8, 1009 for a message
    /// over the limit, 1002 for everything else.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => code::INVALID_PAYLOAD,
            ProtocolError::MessageTooBig { .. } => code::MESSAGE_TOO_BIG,
            _ => code::PROTOCOL_ERROR,
        }
    }
}
