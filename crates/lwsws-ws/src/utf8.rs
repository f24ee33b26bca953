//! UTF-8 validation for text that arrives in pieces (RFC 6455 §8.1).
//!
//! A text message is checked as its bytes arrive, not when it is complete, so
//! that an invalid sequence closes the connection (1007) as soon as it is
//! certain, even in the first fragment of a long message: the Autobahn
//! testsuite's section 6 checks this. A piece may end inside a character;
//! that is accepted while the bytes so far can still begin a valid character,
//! and refused at the end of the message.
//!
//! The assembler (`message.rs`) keeps a message contiguous and uses
//! [`valid_prefix`]; [`Utf8Validator`] is for text that is not contiguous,
//! such as the output of the permessage-deflate inflater.

/// Text that is not valid UTF-8, and can no longer become valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

/// How many leading bytes of `bytes` are complete, valid UTF-8. The bytes
/// after them (at most three) are the valid beginning of a character that the
/// next piece may complete. An error means no continuation can make `bytes`
/// valid.
pub fn valid_prefix(bytes: &[u8]) -> Result<usize, InvalidUtf8> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(bytes.len()),
        // `error_len() == None`: the input ended inside a character whose
        // bytes so far are valid (std checks each byte's range as it goes,
        // including the second byte's narrower ranges after E0, ED, F0, F4).
        Err(e) if e.error_len().is_none() => Ok(e.valid_up_to()),
        Err(_) => Err(InvalidUtf8),
    }
}

/// Validates text given in pieces of any size, remembering an unfinished
/// character between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// The start of an unfinished character, the valid beginning of one.
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece. Fails as soon as the text so far cannot be the
    /// beginning of valid UTF-8.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let want = char_width(self.pending[0]).saturating_sub(have);
            let take = want.min(piece.len());
            let mut bytes = self.pending;
            bytes[have..have + take].copy_from_slice(&piece[..take]);
            let n = have + take;
            if valid_prefix(&bytes[..n])? < n {
                // Still unfinished, and `piece` is used up.
                self.pending = bytes;
                self.pending_len = n as u8;
                return Ok(());
            }
            self.pending_len = 0;
            piece = &piece[take..];
        }
        let valid = valid_prefix(piece)?;
        let rest = &piece[valid..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len() as u8;
        Ok(())
    }

    /// Checks that the text does not end inside a character.
    pub fn finish(&self) -> Result<(), InvalidUtf8> {
        if self.pending_len == 0 {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// The length of the character that `lead` begins, for a lead byte that
/// [`valid_prefix`] left pending (C2–F4).
fn char_width(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(valid_prefix(b""), Ok(0));
        assert_eq!(valid_prefix(b"abc"), Ok(3));
        // "κ" is CE BA; "€" is E2 82 AC; U+10348 is F0 90 8D 88.
        assert_eq!(valid_prefix(b"a\xce"), Ok(1));
        assert_eq!(valid_prefix(b"a\xe2\x82"), Ok(1));
        assert_eq!(valid_prefix(b"a\xf0\x90\x8d"), Ok(1));
        assert_eq!(valid_prefix(b"a\xf0\x90\x8d\x88"), Ok(5));
        // Certain failures, even though more bytes could follow.
        assert_eq!(valid_prefix(b"\xff"), Err(InvalidUtf8));
        assert_eq!(valid_prefix(b"\xc0"), Err(InvalidUtf8));
        assert_eq!(valid_prefix(b"\xf5"), Err(InvalidUtf8));
        assert_eq!(valid_prefix(b"\xed\xa0"), Err(InvalidUtf8)); // surrogate
        assert_eq!(valid_prefix(b"\xf4\x90"), Err(InvalidUtf8)); // above U+10FFFF
        assert_eq!(valid_prefix(b"\xe0\x80"), Err(InvalidUtf8)); // overlong
        assert_eq!(valid_prefix(b"\xce\xce"), Err(InvalidUtf8));
    }

    #[test]
    fn validator_accepts_every_split() {
        let text = "κόσμε € 𐍈 ascii";
        let bytes = text.as_bytes();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut v = Utf8Validator::new();
                v.feed(&bytes[..a]).unwrap();
                v.feed(&bytes[a..b]).unwrap();
                v.feed(&bytes[b..]).unwrap();
                v.finish().unwrap();
            }
        }
        let mut v = Utf8Validator::new();
        for byte in bytes {
            v.feed(std::slice::from_ref(byte)).unwrap();
        }
        v.finish().unwrap();
    }

    #[test]
    fn validator_fails_fast_and_at_the_end() {
        let mut v = Utf8Validator::new();
        v.feed(b"ok \xf4").unwrap();
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));

        let mut v = Utf8Validator::new();
        v.feed(b"\xe2").unwrap();
        v.feed(b"\x82").unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
        v.feed(b"\xacmore").unwrap();
        v.finish().unwrap();

        let mut v = Utf8Validator::new();
        v.feed(b"\xe2\x82").unwrap();
        assert_eq!(v.feed(b"a"), Err(InvalidUtf8));
    }
}
