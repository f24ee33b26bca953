//! Message assembly: bytes from the socket in, whole messages out, with every
//! RFC 6455 rule about fragmentation, control frames, UTF-8 and close frames
//! applied on the way (SPEC §6.3).
//!
//! One [`Assembler`] per connection, small enough to keep idle connections
//! cheap (SPEC §9): it holds no buffer of its own while no frame or message is
//! incomplete. The driver reads into a buffer shared by all the connections of
//! its thread and calls [`Assembler::feed`] until it returns `Ok(None)`; by
//! then the shared buffer is empty. A frame that arrived whole, and is a
//! control frame or an unfragmented message, is split off the shared buffer
//! and unmasked in place, without a copy. Only what is incomplete (a partial
//! header, the payload of a partial frame, the fragments of a partial message)
//! is copied into the connection's own buffer.
//!
//! A message split off the shared buffer keeps that buffer's allocation alive
//! until it is dropped, and `BytesMut::reserve` on the shared buffer then has
//! to allocate anew: a protocol that keeps messages for long should copy them.
//!
//! permessage-deflate: with [`Config::compression`], RSV1 on the first frame
//! of a message marks it compressed; it is delivered whole and unvalidated as
//! [`Message::Compressed`], for an inflater that applies the size limit to its
//! output and validates text with [`crate::utf8::Utf8Validator`].

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseFrame, parse_close_payload};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, MAX_HEADER_LEN, OpCode, apply_mask, parse_header};
use crate::utf8::valid_prefix;

/// `ws-max-message-size` when the configuration does not say (SPEC §6.3).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

/// The first reservation for a frame that arrives in pieces: enough for most
/// messages at once, without letting a declared length alone allocate much.
const INITIAL_RESERVE: usize = 64 * 1024;

/// The connection's rules, from the vhost's configuration and the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `ws-max-message-size`: larger messages (as declared by frame lengths,
    /// before anything is buffered) and control payloads fail with 1009.
    pub max_message_size: usize,
    /// `ws-allow-reserved-status-codes`: accept close codes 1004 and 1016–2999.
    pub allow_reserved_close_codes: bool,
    /// permessage-deflate was negotiated: RSV1 is allowed on the first frame
    /// of a data message.
    pub compression: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            allow_reserved_close_codes: false,
            compression: false,
        }
    }
}

/// What a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    /// A message whose first frame had RSV1 (only with
    /// [`Config::compression`]): the compressed payload of all its frames,
    /// not yet validated.
    Compressed {
        text: bool,
        payload: Bytes,
    },
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame, with its code and reason if it had one. Nothing more is
    /// read after it.
    Close(Option<CloseFrame>),
}

/// The data message in progress, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partial {
    None,
    Text,
    Binary,
    CompressedText,
    CompressedBinary,
}

/// Where the assembler is in the byte stream.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Before or inside a header; `stash[..len]` is its beginning.
    Header {
        stash: [u8; MAX_HEADER_LEN],
        len: u8,
    },
    /// Inside a frame's payload, which is being appended to `buf` from
    /// `buf[start]` on.
    Payload {
        opcode: OpCode,
        fin: bool,
        mask: [u8; 4],
        start: usize,
        remaining: usize,
    },
    /// A close frame was received or the peer broke a rule: nothing more is
    /// read.
    Closed,
}

const EMPTY_HEADER: Stage = Stage::Header {
    stash: [0; MAX_HEADER_LEN],
    len: 0,
};

/// Per-connection reassembly of frames into messages.
#[derive(Debug)]
pub struct Assembler {
    /// The payload of the fragmented message in progress, then the part of a
    /// control frame received so far. Empty and unallocated between messages.
    buf: BytesMut,
    /// How much of `buf` is known to be complete, valid UTF-8 (text messages).
    utf8_valid: usize,
    config: Config,
    stage: Stage,
    partial: Partial,
}

impl Assembler {
    pub fn new(config: Config) -> Self {
        Assembler {
            buf: BytesMut::new(),
            utf8_valid: 0,
            config,
            stage: EMPTY_HEADER,
            partial: Partial::None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes bytes from `input` and returns the next complete message.
    ///
    /// Call it again until it returns `Ok(None)`: then `input` is empty, its
    /// incomplete tail kept by the assembler. After an error (send a close
    /// frame with [`ProtocolError::close_code`]) or a [`Message::Close`],
    /// `input` is emptied too and the assembler is closed: it discards
    /// whatever it is given and returns `Ok(None)`.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        let result = self.step(input);
        if matches!(result, Err(_) | Ok(Some(Message::Close(_)))) {
            // The shared buffer must not carry this connection's bytes on.
            input.clear();
            self.stage = Stage::Closed;
            self.buf = BytesMut::new();
            self.partial = Partial::None;
        }
        result
    }

    /// A close frame was received or a rule broken.
    pub fn is_closed(&self) -> bool {
        matches!(self.stage, Stage::Closed)
    }

    /// Whether no frame or message is incomplete (nothing is buffered).
    pub fn is_idle(&self) -> bool {
        matches!(self.stage, Stage::Header { len: 0, .. }) && self.partial == Partial::None
    }

    /// The memory the assembler holds beyond its own size.
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn step(&mut self, input: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            match self.stage {
                Stage::Closed => {
                    input.clear();
                    return Ok(None);
                }
                Stage::Header { .. } => {
                    let Some(header) = self.take_header(input)? else {
                        return Ok(None);
                    };
                    let len = self.check(&header)?;
                    let mask = header.mask.unwrap_or_default();
                    let whole = input.len() >= len;
                    let alone =
                        header.opcode.is_control() || (self.partial == Partial::None && header.fin);
                    if whole && alone {
                        // Complete and independent of any other frame: no copy.
                        let mut payload = input.split_to(len);
                        apply_mask(&mut payload, mask, 0);
                        return self.whole_frame(&header, payload.freeze()).map(Some);
                    }
                    self.begin(&header, len);
                }
                Stage::Payload {
                    opcode,
                    fin,
                    mask,
                    start,
                    remaining,
                } => {
                    let n = remaining.min(input.len());
                    if n > 0 {
                        let old = self.buf.len();
                        self.buf.extend_from_slice(&input[..n]);
                        input.advance(n);
                        apply_mask(&mut self.buf[old..], mask, old - start);
                        if !opcode.is_control() && self.partial == Partial::Text {
                            self.utf8_valid += valid_prefix(&self.buf[self.utf8_valid..])
                                .map_err(|_| ProtocolError::InvalidUtf8)?;
                        }
                    }
                    let remaining = remaining - n;
                    if remaining > 0 {
                        self.stage = Stage::Payload {
                            opcode,
                            fin,
                            mask,
                            start,
                            remaining,
                        };
                        return Ok(None);
                    }
                    self.stage = EMPTY_HEADER;
                    if let Some(message) = self.end_frame(opcode, fin, start)? {
                        return Ok(Some(message));
                    }
                }
            }
        }
    }

    /// The next header, from the stash and `input`, consuming exactly its
    /// bytes; or `None` with `input` used up and stashed.
    fn take_header(&mut self, input: &mut BytesMut) -> Result<Option<FrameHeader>, ProtocolError> {
        let Stage::Header { mut stash, len } = self.stage else {
            return Ok(None);
        };
        let len = usize::from(len);
        if len == 0 {
            if let Some((header, n)) = parse_header(&input[..])? {
                input.advance(n);
                return Ok(Some(header));
            }
            // Shorter than a header, so shorter than the stash.
            let n = input.len();
            stash[..n].copy_from_slice(&input[..]);
            input.clear();
            self.stage = Stage::Header {
                stash,
                len: n as u8,
            };
            return Ok(None);
        }
        let take = (MAX_HEADER_LEN - len).min(input.len());
        stash[len..len + take].copy_from_slice(&input[..take]);
        match parse_header(&stash[..len + take])? {
            Some((header, n)) => {
                input.advance(n - len);
                self.stage = EMPTY_HEADER;
                Ok(Some(header))
            }
            None => {
                input.advance(take);
                self.stage = Stage::Header {
                    stash,
                    len: (len + take) as u8,
                };
                Ok(None)
            }
        }
    }

    /// The rules that depend on the connection; returns the payload length.
    fn check(&self, h: &FrameHeader) -> Result<usize, ProtocolError> {
        if h.mask.is_none() {
            return Err(ProtocolError::Unmasked);
        }
        let rsv1_allowed =
            self.config.compression && matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if h.rsv2 || h.rsv3 || (h.rsv1 && !rsv1_allowed) {
            return Err(ProtocolError::ReservedBits);
        }
        let before = match (h.opcode, self.partial) {
            (OpCode::Continuation, Partial::None) => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            (OpCode::Text | OpCode::Binary, p) if p != Partial::None => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            (OpCode::Continuation, _) => self.buf.len() as u64,
            _ => 0,
        };
        let limit = self.config.max_message_size;
        let size = before.saturating_add(h.payload_len);
        // A compressed message is held to the limit once inflated (by the
        // inflater); on the wire it may be a little larger than that, as
        // incompressible data is: zlib adds 5 bytes per stored block, and a
        // block can be as small as 512 bytes (memLevel 2; Python's
        // `websockets` uses memLevel 5, 2 KiB blocks), hence about 3 %.
        let compressed = match h.opcode {
            OpCode::Continuation => {
                matches!(
                    self.partial,
                    Partial::CompressedText | Partial::CompressedBinary
                )
            }
            _ => h.rsv1,
        };
        let wire_limit = if compressed {
            (limit as u64).saturating_add((limit as u64 >> 5) + 64)
        } else {
            limit as u64
        };
        match usize::try_from(h.payload_len) {
            Ok(len) if size <= wire_limit => Ok(len),
            _ => Err(ProtocolError::MessageTooBig { size, limit }),
        }
    }

    /// Starts a frame whose payload is not all in the input yet, or that
    /// belongs to a fragmented message.
    fn begin(&mut self, h: &FrameHeader, len: usize) {
        match h.opcode {
            OpCode::Text | OpCode::Binary => {
                self.partial = match (h.opcode, h.rsv1) {
                    (OpCode::Text, false) => Partial::Text,
                    (OpCode::Text, true) => Partial::CompressedText,
                    (_, false) => Partial::Binary,
                    (_, true) => Partial::CompressedBinary,
                };
                self.utf8_valid = 0;
                self.buf.reserve(len.min(INITIAL_RESERVE));
            }
            OpCode::Continuation => {}
            OpCode::Close | OpCode::Ping | OpCode::Pong => self.buf.reserve(len),
        }
        self.stage = Stage::Payload {
            opcode: h.opcode,
            fin: h.fin,
            mask: h.mask.unwrap_or_default(),
            start: self.buf.len(),
            remaining: len,
        };
    }

    /// A frame that arrived whole and stands alone: a control frame or an
    /// unfragmented message.
    fn whole_frame(&self, h: &FrameHeader, payload: Bytes) -> Result<Message, ProtocolError> {
        Ok(match (h.opcode, h.rsv1) {
            (OpCode::Text, true) => Message::Compressed {
                text: true,
                payload,
            },
            (OpCode::Binary, true) => Message::Compressed {
                text: false,
                payload,
            },
            (OpCode::Text, false) => {
                std::str::from_utf8(&payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                Message::Text(payload)
            }
            // A lone continuation frame is refused by `check`.
            (OpCode::Binary, false) | (OpCode::Continuation, _) => Message::Binary(payload),
            (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => self.control(h.opcode, payload)?,
        })
    }

    /// The last byte of a frame's payload has arrived in `buf[start..]`.
    fn end_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        start: usize,
    ) -> Result<Option<Message>, ProtocolError> {
        if opcode.is_control() {
            let payload = Bytes::copy_from_slice(&self.buf[start..]);
            self.buf.truncate(start);
            if self.partial == Partial::None {
                self.buf = BytesMut::new();
            }
            return self.control(opcode, payload).map(Some);
        }
        if !fin {
            return Ok(None);
        }
        let partial = std::mem::replace(&mut self.partial, Partial::None);
        if partial == Partial::Text && self.utf8_valid != self.buf.len() {
            return Err(ProtocolError::InvalidUtf8);
        }
        self.utf8_valid = 0;
        let payload = std::mem::take(&mut self.buf).freeze();
        Ok(Some(match partial {
            Partial::Text => Message::Text(payload),
            Partial::Binary | Partial::None => Message::Binary(payload),
            Partial::CompressedText => Message::Compressed {
                text: true,
                payload,
            },
            Partial::CompressedBinary => Message::Compressed {
                text: false,
                payload,
            },
        }))
    }

    fn control(&self, opcode: OpCode, payload: Bytes) -> Result<Message, ProtocolError> {
        Ok(match opcode {
            OpCode::Ping => Message::Ping(payload),
            OpCode::Pong => Message::Pong(payload),
            _ => Message::Close(parse_close_payload(
                &payload,
                self.config.allow_reserved_close_codes,
            )?),
        })
    }
}

#[cfg(test)]
mod tests;
