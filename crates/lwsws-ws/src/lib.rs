//! The WebSocket codec of lwsws: RFC 6455 framing, message assembly, close
//! codes and handshake helpers, with no I/O of its own (SPEC §6.1, §6.3, §9).
//!
//! Nothing here owns a socket or a read buffer. The connection driver (in the
//! server crate) reads into one buffer per thread and hands the bytes to the
//! connection's [`Assembler`], which takes whole frames out of that buffer
//! without copying and keeps only an incomplete tail, so that an idle
//! connection costs the size of an `Assembler` and nothing more. Frames going
//! out are encoded once into [`bytes::Bytes`] ([`frame::frame`]) so that a
//! broadcast shares one allocation among all its recipients, or as a bare
//! header ([`frame::encode_header`]) for writers that send the payload from
//! where it lies.
//!
//! - [`frame`]: header parsing and encoding, masking.
//! - [`message`]: the per-connection [`Assembler`] and the [`Message`]s it yields.
//! - [`close`]: close codes and close frame payloads.
//! - [`utf8`]: UTF-8 validation that works across fragments and fails fast.
//! - [`handshake`]: `Sec-WebSocket-Accept`, `-Protocol` and `-Version`.
//! - [`upgrade`]: the handshake rules of SPEC §6.1–6.2 (versions, origin,
//!   protocol selection).
//! - [`protocol`]: the registry of protocols, their per-vhost state and
//!   per-connection sessions; [`builtin`]: echo, dumb-increment, mirror,
//!   server-status; [`room`]: broadcast rooms.
//! - [`conn`]: the connection driver that runs a session on an upgraded
//!   stream; [`stats`]: counters the status protocol reports.
//! - [`token`]: signed tokens (SPEC §6.5); [`auth`]: first-message
//!   authentication.
//!
//! permessage-deflate (RFC 7692) is layered on top: with
//! [`Config::compression`] on, a message whose first frame has RSV1 comes out
//! as [`Message::Compressed`], which the driver inflates and validates with
//! [`deflate::Inflater`]; [`deflate::negotiate`] reads the offers and
//! [`deflate::Deflater`] compresses in each connection's writer.

pub mod auth;
pub mod builtin;
pub mod close;
pub mod conn;
pub mod deflate;
mod error;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod protocol;
pub mod room;
pub mod stats;
pub mod token;
pub mod upgrade;
pub mod utf8;

pub use close::{CloseFrame, valid_close_code};
pub use error::ProtocolError;
pub use frame::{FrameHeader, OpCode};
pub use message::{Assembler, Config, DEFAULT_MAX_MESSAGE_SIZE, Message};
pub use protocol::Registry;
