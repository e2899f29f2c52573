//! Close codes and Close frame payloads (RFC 6455 §5.5.1, §7.4).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// A close status code (RFC 6455 §7.4).
///
/// ```
/// use wsmachine::CloseCode;
/// assert_eq!(u16::from(CloseCode::NORMAL), 1000);
/// assert!(CloseCode::from(4000).is_sendable());
/// assert!(!CloseCode::from(1005).is_sendable());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a Close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload data inconsistent with the message type (invalid UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: unexpected condition in the server.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1013: try again later (the endpoint is overloaded; RFC 6455's IANA
    /// registry). Sent when the shared [`crate::MemoryBudget`] is exhausted.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether this code may appear in a Close frame on the wire: 1000–1003,
    /// 1007–1014 and 3000–4999 (RFC 6455 §7.4.1, §7.4.2 and the IANA registry).
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The body of a Close frame: a code and a UTF-8 reason (at most 123 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code; [`CloseCode::NO_STATUS`] when the frame had no body.
    pub code: CloseCode,
    /// The reason, valid UTF-8.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with a code and reason.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    /// Whether this frame's code means a normal closure.
    pub fn is_normal(&self) -> bool {
        self.code == CloseCode::NORMAL
    }

    /// Parses a Close frame payload (RFC 6455 §5.5.1): empty, or a sendable
    /// code followed by a UTF-8 reason. A one-byte body is a protocol error.
    pub(crate) fn parse(payload: &[u8]) -> Result<CloseFrame, ProtocolError> {
        match payload.len() {
            0 => Ok(CloseFrame::new(CloseCode::NO_STATUS, "")),
            1 => Err(ProtocolError::InvalidClosePayload),
            _ => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = std::str::from_utf8(&payload[2..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?
                    .to_owned();
                Ok(CloseFrame { code, reason })
            }
        }
    }

    /// The payload bytes of this frame; a `NO_STATUS` frame has an empty body.
    pub(crate) fn encode(&self) -> Bytes {
        if self.code == CloseCode::NO_STATUS {
            return Bytes::new();
        }
        let mut b = BytesMut::with_capacity(2 + self.reason.len());
        b.put_u16(self.code.0);
        b.put_slice(self.reason.as_bytes());
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_follow_rfc6455_7_4() {
        for c in 0..=5000u16 {
            let expected = matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(c).is_sendable(), expected, "code {c}");
        }
    }

    #[test]
    fn parse_empty_code_only_and_reason() {
        assert_eq!(CloseFrame::parse(b"").unwrap().code, CloseCode::NO_STATUS);
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8").unwrap(),
            CloseFrame::new(CloseCode::NORMAL, "")
        );
        assert_eq!(
            CloseFrame::parse(b"\x0f\xa0bye \xc3\xa9").unwrap(),
            CloseFrame::new(CloseCode::from(4000), "bye é")
        );
    }

    #[test]
    fn parse_rejections() {
        assert_eq!(
            CloseFrame::parse(b"\x03"),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            CloseFrame::parse(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            CloseFrame::parse(b"\x03\xee"),
            Err(ProtocolError::InvalidCloseCode(1006))
        );
        assert_eq!(
            CloseFrame::parse(b"\x13\x88"),
            Err(ProtocolError::InvalidCloseCode(5000))
        );
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn encode_round_trips() {
        let f = CloseFrame::new(CloseCode::GOING_AWAY, "restart");
        assert_eq!(&f.encode()[..], b"\x03\xe9restart");
        assert_eq!(CloseFrame::parse(&f.encode()).unwrap(), f);
        assert!(CloseFrame::new(CloseCode::NO_STATUS, "")
            .encode()
            .is_empty());
    }
}
