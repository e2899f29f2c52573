//! The opening handshake (RFC 6455 §4), usable apart from the connection:
//! [`ClientHandshake`] writes the request and validates the response,
//! [`ServerHandshake`] parses and validates the request and writes the
//! response. Both are incremental: the head may arrive in any number of
//! pieces, and bytes after it (the first frames) are handed back.
//!
//! Both are strict where a lenient reading would let a proxy in between
//! see a different message than we do: a handshake that declares a body,
//! repeats a field that must be single, or folds a header line is refused
//! (the server's refusals and their statuses are listed on
//! [`ServerHandshake`]).

mod client;
#[cfg(feature = "http")]
mod http_types;
mod server;

pub use client::{ClientHandshake, ClientOutcome, ClientRequest, WsUrl};
#[cfg(feature = "http")]
pub use http_types::{
    accept_http_response, error_h2_response, error_http_response, reject_http_response, H2Handshake,
};
pub use server::{
    accept_response, error_response, reject_response, Accept, Request, ServerHandshake,
};

use base64::Engine;
use bytes::BytesMut;
use sha1::{Digest, Sha1};

use crate::deflate::DeflateParams;
use crate::error::HandshakeError;
use crate::http::{Headers, Response};

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
///
/// ```
/// assert_eq!(wsmachine::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// What the opening handshake agreed on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol the server chose, if any.
    pub subprotocol: Option<String>,
    /// permessage-deflate parameters, if compression was negotiated.
    pub deflate: Option<DeflateParams>,
}

/// Accumulates an HTTP head that may arrive in pieces, with size limits.
#[derive(Debug)]
struct HeadBuffer {
    buf: BytesMut,
    /// Where to resume looking for the blank line.
    scanned: usize,
    max_size: usize,
}

impl HeadBuffer {
    fn new(max_size: usize) -> Self {
        HeadBuffer {
            buf: BytesMut::new(),
            scanned: 0,
            max_size,
        }
    }

    /// Appends `data`; returns the head length (including the blank line) once complete.
    fn push(&mut self, data: &[u8]) -> Result<Option<usize>, HandshakeError> {
        // Never buffer more than the limit plus what completes a head at it.
        let room = self.max_size.saturating_sub(self.buf.len());
        let take = data.len().min(room + 4);
        self.buf.extend_from_slice(&data[..take]);
        let start = self.scanned.saturating_sub(3);
        if let Some(i) = find_subslice(&self.buf[start..], b"\r\n\r\n") {
            let end = start + i + 4;
            if end > self.max_size {
                return Err(HandshakeError::HeadTooLarge {
                    limit: self.max_size,
                });
            }
            // Keep anything after the head: it is the peer's first frames.
            self.buf.extend_from_slice(&data[take..]);
            return Ok(Some(end));
        }
        self.scanned = self.buf.len();
        if self.buf.len() >= self.max_size {
            return Err(HandshakeError::HeadTooLarge {
                limit: self.max_size,
            });
        }
        Ok(None)
    }
}

/// Refuses a head with a line ended by a bare LF. httparse accepts one, but
/// the head buffer ends a head only at CRLF CRLF: with `\n\r\n` inside, the
/// two would disagree on where the head ends, and the bytes between (a body
/// to one reader, head to the other) are the stuff of request smuggling.
fn check_line_endings(head: &[u8]) -> Result<(), HandshakeError> {
    let bare = head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    if bare {
        Err(HandshakeError::BareLineFeed)
    } else {
        Ok(())
    }
}

/// httparse's verdict on a head the buffer found complete at `end`: it
/// must end exactly there.
fn parsed_to_end(
    status: httparse::Result<usize>,
    end: usize,
    max_headers: usize,
    head: &[u8],
) -> Result<(), HandshakeError> {
    match status {
        Ok(httparse::Status::Complete(n)) if n == end => Ok(()),
        Ok(httparse::Status::Complete(_)) | Ok(httparse::Status::Partial) => Err(
            HandshakeError::Http("the head does not end at its blank line".into()),
        ),
        Err(e) => Err(map_httparse(e, max_headers, head)),
    }
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The error for an httparse failure on `head`.
fn map_httparse(e: httparse::Error, max_headers: usize, head: &[u8]) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders { limit: max_headers },
        // httparse (default config) refuses obs-fold and whitespace before
        // the colon, but both as "invalid header name": name the rule.
        httparse::Error::HeaderName => {
            header_line_error(head).unwrap_or_else(|| HandshakeError::Http(e.to_string()))
        }
        other => HandshakeError::Http(other.to_string()),
    }
}

/// The first header line of `head` that folds (RFC 9112 §5.2) or has
/// whitespace before its colon (§5.1). Lines end in LF with an optional CR,
/// as httparse reads them.
fn header_line_error(head: &[u8]) -> Option<HandshakeError> {
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.first() {
            None => return None,
            Some(b' ' | b'\t') => return Some(HandshakeError::ObsoleteLineFolding),
            Some(_) => {}
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        let bare = name
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(&name[..0], |i| &name[..=i]);
        // Only the first line httparse would refuse counts: one with another
        // fault in its name is reported as such.
        if !std::str::from_utf8(bare).is_ok_and(is_token) {
            return None;
        }
        if bare.len() < name.len() {
            return Some(HandshakeError::WhitespaceBeforeColon);
        }
    }
    None
}

/// The header `name` at most once; `canonical` names it in the error.
fn at_most_once<'a>(
    headers: &'a Headers,
    name: &'a str,
    canonical: &'static str,
) -> Result<Option<&'a str>, HandshakeError> {
    let mut all = headers.get_all(name);
    match (all.next(), all.next()) {
        (_, Some(_)) => Err(HandshakeError::DuplicateHeader(canonical)),
        (first, None) => Ok(first),
    }
}

/// Refuses a handshake message that declares a body (RFC 9112 §6.3): any
/// `Transfer-Encoding`, a `Content-Length` other than 0, several
/// `Content-Length` fields or one that is not a number. A `Content-Length:
/// 0` is the same as none. Whatever a peer or proxy would read as a body
/// we would read as frames, so the two would disagree on where the
/// WebSocket starts.
fn check_no_body(headers: &Headers) -> Result<(), HandshakeError> {
    if headers.get("transfer-encoding").is_some() {
        return Err(HandshakeError::Body("Transfer-Encoding"));
    }
    let Some(len) = at_most_once(headers, "content-length", "Content-Length")? else {
        return Ok(());
    };
    // RFC 9110 §8.6: 1*DIGIT. A list ("0, 0") or a sign is not a length.
    let digits = len.trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HandshakeError::ContentLength(len.to_owned()));
    }
    if digits.bytes().any(|b| b != b'0') {
        return Err(HandshakeError::Body("Content-Length"));
    }
    Ok(())
}

/// A 16-byte nonce as a `Sec-WebSocket-Key` value.
fn encode_key(key: &[u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// A header value may not contain CR, LF or NUL (RFC 9110 §5.5): they
/// would end the header line and let the value inject others.
fn is_field_value(v: &str) -> bool {
    !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_key_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn head_buffer_finds_blank_line_across_pieces() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        for cut in 0..head.len() {
            let mut hb = HeadBuffer::new(1024);
            let first = hb.push(&head[..cut]).unwrap();
            let end = match first {
                Some(e) => {
                    hb.push(&head[cut..]).ok();
                    e
                }
                None => hb.push(&head[cut..]).unwrap().expect("complete"),
            };
            assert_eq!(end, head.len() - 4, "cut {cut}");
            assert_eq!(&hb.buf[end..], b"rest", "cut {cut}");
        }
    }

    #[test]
    fn head_buffer_limit() {
        let mut hb = HeadBuffer::new(20);
        assert!(hb.push(b"GET / HTTP/1.1\r\n").unwrap().is_none());
        assert_eq!(
            hb.push(b"Host: abcdefgh\r\n\r\n"),
            Err(HandshakeError::HeadTooLarge { limit: 20 })
        );
        // Buffered bytes stay bounded even when fed a huge chunk.
        let mut hb = HeadBuffer::new(16);
        let big = vec![b'a'; 1 << 20];
        assert!(hb.push(&big).is_err());
        assert!(hb.buf.len() <= 16 + 4);
    }
}
