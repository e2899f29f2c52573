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
        // The fast validator sees everything up to the last character that
        // is complete in this piece; only a cut character at the end (at
        // most 3 bytes) needs the careful look. So a message cut into
        // pieces anywhere costs one fast pass, not a fast and a slow one.
        let cut = incomplete_tail(data);
        let (body, tail) = data.split_at(cut);
        if simdutf8::basic::from_utf8(body).is_ok() {
            if tail.is_empty() {
                return Ok(());
            }
            return match std::str::from_utf8(tail) {
                Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() => {
                    // A possible start of a character: wait for the rest.
                    self.partial[..tail.len()].copy_from_slice(tail);
                    self.partial_len = tail.len() as u8;
                    Ok(())
                }
                // Bytes that cannot start a character fail now (fail fast).
                _ => Err(Utf8Error),
            };
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

/// Where a character cut by the end of `data` starts: the position of the
/// last lead byte when fewer bytes follow it than it announces, else
/// `data.len()`. Looks at the last three bytes only; anything odd there
/// (stray continuation bytes, invalid lead bytes) is left to the validators.
#[inline]
fn incomplete_tail(data: &[u8]) -> usize {
    let n = data.len();
    for back in 1..=n.min(3) {
        let b = data[n - back];
        if b & 0xC0 != 0x80 {
            // ASCII or a lead byte: cut if its sequence is longer than what is here.
            let width = match b {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            return if width > back { n - back } else { n };
        }
    }
    n
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

    /// The careful reference: std's validator on everything seen so far.
    fn reference(pieces: &[&[u8]]) -> Vec<Result<(), Utf8Error>> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for p in pieces {
            seen.extend_from_slice(p);
            out.push(match std::str::from_utf8(&seen) {
                Ok(_) => Ok(()),
                Err(e) if e.error_len().is_none() => Ok(()),
                Err(_) => Err(Utf8Error),
            });
            if out.last() == Some(&Err(Utf8Error)) {
                break;
            }
        }
        out
    }

    #[test]
    fn every_two_piece_split_of_valid_and_invalid_text_agrees_with_std() {
        let mut samples: Vec<Vec<u8>> =
            vec!["aé€𝄞 κόσμε ascii tail".into(), "€€€€".into(), "𝄞𝄞".into()];
        for bad in [
            &b"\xc0\xaf"[..],
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xff",
            b"\x80",
            b"\xe2\x82",
            b"\xe2\x82x",
            b"\xf0\x9d\x84",
            b"\xc2",
        ] {
            for at in [0, 3, 7] {
                let mut v = "ab€d𝄞xyz".as_bytes().to_vec();
                v.splice(at..at, bad.iter().copied());
                samples.push(v);
            }
        }
        for s in &samples {
            for cut in 0..=s.len() {
                let pieces: [&[u8]; 2] = [&s[..cut], &s[cut..]];
                let mut v = Utf8Validator::new();
                let mut got = Vec::new();
                for p in pieces {
                    got.push(v.feed(p));
                    if got.last() == Some(&Err(Utf8Error)) {
                        break;
                    }
                }
                assert_eq!(got, reference(&pieces), "{s:x?} cut {cut}");
                let whole_ok = std::str::from_utf8(s).is_ok();
                if got.iter().all(|r| r.is_ok()) {
                    assert_eq!(v.finish().is_ok(), whole_ok, "{s:x?} cut {cut}");
                }
            }
        }
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
