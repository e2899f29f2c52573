//! Frame header codec (RFC 6455 §5.2).

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;

/// A frame opcode (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation,
    /// 0x1: text.
    Text,
    /// 0x2: binary.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode; reserved values are a protocol error.
    pub fn from_u8(v: u8) -> Result<OpCode, ProtocolError> {
        Ok(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong are control frames (RFC 6455 §5.5).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// RSV1: set on the first frame of a permessage-deflate compressed message.
pub const RSV1: u8 = 0b100;

/// A decoded or to-be-encoded frame header.
///
/// ```
/// use wsmachine::internals::FrameHeader;
/// use wsmachine::OpCode;
/// // RFC 6455 §5.7: a single-frame masked text message "Hello".
/// let wire = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
/// let (h, n) = FrameHeader::decode(wire).unwrap().unwrap();
/// assert_eq!((h.fin, h.opcode, h.mask, h.payload_len, n), (true, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), 5, 6));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of a message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Longest possible header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header, and
    /// otherwise the header with its length in bytes. Checks what the header
    /// alone can tell: reserved opcodes, control frame rules, the 64-bit
    /// length's top bit and minimal length encoding. Role-dependent rules
    /// (masking, RSV bits, size limits) are the connection's.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0b111;
        let opcode = OpCode::from_u8(b0 & 0x0F)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if len7 > 125 {
                // The extended length is not needed to know this is an error.
                return Err(ProtocolError::ControlExtendedLength);
            }
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let l = u16::from_be_bytes([buf[2], buf[3]]) as u64;
                if l < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (l, 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let l = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                if l >> 63 != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                if l <= u16::MAX as u64 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (l, 10)
            }
            l => (l as u64, 2),
        };
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(m)
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// The encoded header's length in bytes.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header in its minimal encoding to the start of `dst` and
    /// returns its length (at most [`MAX_HEADER_LEN`]).
    #[inline]
    pub fn encode_to(&self, dst: &mut [u8; MAX_HEADER_LEN]) -> usize {
        dst[0] = (self.fin as u8) << 7 | (self.rsv & 0b111) << 4 | self.opcode.as_u8();
        let mbit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = match self.payload_len {
            l @ 0..=125 => {
                dst[1] = mbit | l as u8;
                2
            }
            l @ 126..=0xFFFF => {
                dst[1] = mbit | 126;
                dst[2..4].copy_from_slice(&(l as u16).to_be_bytes());
                4
            }
            l => {
                dst[1] = mbit | 127;
                dst[2..10].copy_from_slice(&l.to_be_bytes());
                10
            }
        };
        if let Some(m) = self.mask {
            dst[n..n + 4].copy_from_slice(&m);
            n += 4;
        }
        n
    }

    /// Appends a whole frame: the header, then `payload` masked with the
    /// header's key if it has one (a client's frame as it goes on the
    /// wire). `payload_len` must be `payload`'s length. For the tests,
    /// benches and tools that write a peer's frames by hand; a connection
    /// encodes its own.
    pub fn encode_frame(&self, payload: &[u8], dst: &mut BytesMut) {
        debug_assert_eq!(self.payload_len, payload.len() as u64);
        self.encode(dst);
        let start = dst.len();
        dst.extend_from_slice(payload);
        if let Some(key) = self.mask {
            crate::mask::apply_mask(&mut dst[start..], key, 0);
        }
    }

    /// Appends the header in its minimal encoding.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        let b0 = (self.fin as u8) << 7 | (self.rsv & 0b111) << 4 | self.opcode.as_u8();
        let mbit = if self.mask.is_some() { 0x80 } else { 0 };
        dst.put_u8(b0);
        match self.payload_len {
            l @ 0..=125 => dst.put_u8(mbit | l as u8),
            l @ 126..=0xFFFF => {
                dst.put_u8(mbit | 126);
                dst.put_u16(l as u16);
            }
            l => {
                dst.put_u8(mbit | 127);
                dst.put_u64(l);
            }
        }
        if let Some(m) = self.mask {
            dst.put_slice(&m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(b: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        FrameHeader::decode(b)
    }

    #[test]
    fn rfc6455_5_7_examples() {
        // Unmasked "Hello".
        let (h, n) = dec(b"\x81\x05Hello").unwrap().unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        // Fragmented: "Hel" then "lo".
        let (h, _) = dec(b"\x01\x03Hel").unwrap().unwrap();
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = dec(b"\x80\x02lo").unwrap().unwrap();
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
        // Ping "Hello" and masked Pong.
        assert_eq!(
            dec(b"\x89\x05Hello").unwrap().unwrap().0.opcode,
            OpCode::Ping
        );
        let (h, n) = dec(b"\x8a\x85\x37\xfa\x21\x3d").unwrap().unwrap();
        assert_eq!((h.opcode, h.mask.is_some(), n), (OpCode::Pong, true, 6));
        // 256 bytes binary in one unmasked frame; 64 KiB in one unmasked frame.
        let (h, n) = dec(b"\x82\x7e\x01\x00").unwrap().unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        let (h, n) = dec(b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00")
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn incomplete_headers_are_partial_not_errors() {
        let full = b"\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04";
        for cut in 0..full.len() {
            assert_eq!(dec(&full[..cut]), Ok(None), "cut {cut}");
        }
        assert!(dec(full).unwrap().is_some());
    }

    #[test]
    fn rejections() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(dec(&[0x80 | op, 0]), Err(ProtocolError::ReservedOpcode(op)));
        }
        assert_eq!(dec(b"\x09\x00"), Err(ProtocolError::FragmentedControl));
        // Refused from the first two bytes, whatever the extended length.
        for head in [&b"\x89\x7e"[..], b"\x89\x7e\x00\x05", b"\x8a\x7f"] {
            assert_eq!(dec(head), Err(ProtocolError::ControlExtendedLength));
        }
        assert_eq!(
            dec(b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"),
            Err(ProtocolError::LengthMsbSet)
        );
        assert_eq!(
            dec(b"\x82\x7e\x00\x7d"),
            Err(ProtocolError::NonMinimalLength)
        );
        assert_eq!(
            dec(b"\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff"),
            Err(ProtocolError::NonMinimalLength)
        );
    }

    #[test]
    fn rsv_bits_are_reported() {
        let (h, _) = dec(b"\xc1\x00").unwrap().unwrap();
        assert_eq!(h.rsv, RSV1);
        let (h, _) = dec(b"\xf1\x00").unwrap().unwrap();
        assert_eq!(h.rsv, 0b111);
    }

    #[test]
    fn encode_round_trips_at_length_boundaries() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader {
                    fin: len % 2 == 0,
                    rsv: RSV1,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len: len,
                };
                let mut buf = Vec::new();
                h.encode(&mut buf);
                assert_eq!(buf.len(), h.encoded_len());
                let mut arr = [0u8; MAX_HEADER_LEN];
                let n = h.encode_to(&mut arr);
                assert_eq!(&arr[..n], &buf[..]);
                assert_eq!(dec(&buf).unwrap().unwrap(), (h, buf.len()));
            }
        }
    }

    #[test]
    fn encode_frame_masks_the_payload_with_the_headers_key() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        for mask in [None, Some([0x37, 0xfa, 0x21, 0x3d])] {
            let h = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Text,
                mask,
                payload_len: payload.len() as u64,
            };
            let mut out = BytesMut::from(&b"before"[..]);
            h.encode_frame(&payload, &mut out);
            assert_eq!(&out[..6], b"before");
            let (got, n) = dec(&out[6..]).unwrap().unwrap();
            assert_eq!(got, h);
            let body = &out[6 + n..];
            assert_eq!(body.len(), payload.len());
            for (i, (&b, &p)) in body.iter().zip(&payload).enumerate() {
                let key = mask.map_or(0, |m| m[i % 4]);
                assert_eq!(b ^ key, p, "byte {i}");
            }
        }
    }
}
