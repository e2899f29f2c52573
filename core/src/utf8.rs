//! Incremental, fail-fast UTF-8 validation across fragments (RFC 6455 §8.1).

/// Validates text that arrives in pieces.
///
/// An error is reported as soon as the bytes seen cannot be the start of valid
/// UTF-8, even in the middle of a fragment (Autobahn section 6.4): a
/// truncated-but-still-possible sequence at the end of a piece is carried to the
/// next piece, an impossible one fails at once.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    /// The bytes of an incomplete code point at the end of the last piece.
    partial: [u8; 4],
    partial_len: u8,
}

/// The text is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utf8Error;

impl Utf8Validator {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Feeds the next piece of the message.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len > 0 {
            // Complete the code point carried over from the previous piece.
            let have = self.partial_len as usize;
            let need = char_width(self.partial[0]);
            let take = (need - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let now = have + take;
            match std::str::from_utf8(&self.partial[..now]) {
                Ok(_) => {
                    self.partial_len = 0;
                    data = &data[take..];
                }
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete but possible: `data` was too short.
                    self.partial_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(Utf8Error),
            }
        }
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let rest = &data[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(Utf8Error),
        }
    }

    /// Ends the message: an incomplete code point at the end is an error.
    pub(crate) fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.partial_len != 0;
        self.partial_len = 0;
        if incomplete {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }
}

fn char_width(first: u8) -> usize {
    match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_split_at_every_byte() {
        let text = "κόσμε ümlaut 𝄞 end".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(feed_all(&[&text[..cut], &text[cut..]]), Ok(()), "cut {cut}");
        }
        let singles: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(feed_all(&singles), Ok(()));
    }

    #[test]
    fn fails_fast_mid_fragment() {
        // Autobahn 6.4.1: "κόσμε" then 0xf4 0x90 (beyond U+10FFFF): the second
        // byte already makes it impossible, before the message ends.
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert_eq!(v.feed(&[0xf4]), Ok(()));
        assert_eq!(v.feed(&[0x90]), Err(Utf8Error));
    }

    #[test]
    fn rejects_overlong_surrogates_and_truncation() {
        assert_eq!(feed_all(&[&[0xc0, 0xaf]]), Err(Utf8Error));
        assert_eq!(feed_all(&[&[0xed, 0xa0, 0x80]]), Err(Utf8Error));
        assert_eq!(feed_all(&[&[0xed], &[0xa0]]), Err(Utf8Error));
        assert_eq!(feed_all(&[&[0xe2, 0x82]]), Err(Utf8Error));
        assert_eq!(feed_all(&[&[0xff]]), Err(Utf8Error));
    }

    #[test]
    fn truncated_sequence_waits_for_next_piece() {
        let euro = "€".as_bytes();
        let mut v = Utf8Validator::new();
        v.feed(&euro[..1]).unwrap();
        v.feed(&euro[1..2]).unwrap();
        v.feed(&euro[2..]).unwrap();
        assert_eq!(v.finish(), Ok(()));
    }
}
