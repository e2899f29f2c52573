//! Frame parsing: the general parser, and the fast path that reads small
//! complete frames straight out of the input buffer.

use std::time::Instant;

use bytes::{Buf, Bytes};

use super::{ReceiveHalf, LARGE_FRAME, SMALL_COPY};
use crate::connection::Event;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, RSV1};
use crate::mask::{apply_mask, apply_mask_short};
use crate::message::{Fragment, MessageKind, Utf8Bytes};
use crate::Role;

impl ReceiveHalf {
    pub(super) fn parse(&mut self, now: Instant) -> Result<(), ProtocolError> {
        if self.backlog {
            // The frame being inflated comes first, a slice per call.
            self.resume_inflate()?;
            if self.backlog {
                return Ok(());
            }
        }
        while !self.failed && !self.close_received() {
            if self.header.is_none() && self.current.kind.is_none() {
                if self.parse_small()? && self.ready > 0 {
                    // Only a partial small frame follows the ready region:
                    // it completes with the next read, but invalid UTF-8
                    // in what arrived of it fails now, as it would had the
                    // read been cut elsewhere.
                    return self.check_partial_small();
                }
                // The full parser works at the front of the buffer.
                self.materialize();
            }
            let header = match self.header {
                Some(h) => h,
                None => match FrameHeader::decode(&self.buf)? {
                    None => return Ok(()),
                    Some((h, n)) => {
                        self.check_header(&h)?;
                        self.buf.advance(n);
                        self.header = Some(h);
                        self.processed = 0;
                        self.large_buffer |= h.payload_len >= LARGE_FRAME as u64;
                        h
                    }
                },
            };
            // Unmask and validate what has arrived, so invalid UTF-8 fails
            // before the frame is complete (fail fast, RFC 6455 §8.1).
            let len = header.payload_len as usize;
            let avail = self.buf.len().min(len);
            if avail > self.processed {
                let fresh = &mut self.buf[self.processed..avail];
                if let Some(m) = header.mask {
                    apply_mask(fresh, m, self.processed);
                }
                if !header.opcode.is_control()
                    && self.current.kind == Some(MessageKind::Text)
                    && !self.current.compressed
                {
                    self.utf8
                        .feed(fresh)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                self.processed = avail;
            }
            if self.buf.len() < len {
                if self.streams_into_message(&header) {
                    return self.stream_into_message();
                }
                // Room for the rest of the frame, in steps, so a header that
                // declares a huge frame does not reserve it all up front;
                // the memory budget covers each step before it is taken.
                let more = self.cover_ahead(len - self.buf.len())?;
                if self.buf.capacity() - self.buf.len() < more {
                    self.buf.reserve(more);
                }
                return Ok(());
            }
            let payload = if self.large_buffer && len < SMALL_COPY {
                let copy = Bytes::copy_from_slice(&self.buf[..len]);
                self.buf.advance(len);
                copy
            } else {
                self.buf.split_to(len).freeze()
            };
            self.header = None;
            self.handle_frame(header, payload, now)?;
            if self.backlog {
                // That frame inflated its slice; the rest waits for the
                // next call.
                return Ok(());
            }
        }
        Ok(())
    }

    /// What arrived of a fragment (the current frame) is processed: it
    /// joins the message now, so the input buffer never holds the frame
    /// (nor keeps its allocation once it is copied). Out of line, taking
    /// the header from `self`: the loop above runs per frame.
    #[inline(never)]
    fn stream_into_message(&mut self) -> Result<(), ProtocolError> {
        let header = self.header.expect("a frame in progress");
        let n = self.buf.len();
        self.current.data.extend_from_slice(&self.buf);
        self.buf.advance(n);
        self.processed = 0;
        self.streamed(header, n)
    }

    /// The fast path for what most traffic is: whole small messages. Takes
    /// every complete frame at the front of the buffer that is a final,
    /// uncompressed Text or Binary frame with a 7-bit length, masked as the
    /// role requires and within the limits, while no message is in
    /// progress; it stops at anything else (a control frame, a fragment, a
    /// partial frame, any RSV bit, any error) and leaves it to the full path
    /// in `parse`, which decides exactly as before. For the frames it takes,
    /// the outcome is the full path's: the same event, the same payload
    /// bytes (zero-copy, or copied under the `SMALL_COPY` rule), and invalid
    /// UTF-8 is the same error (the whole payload is here, so incremental
    /// validation and one pass agree). What it saves is the header struct,
    /// the per-frame state (`header`, `processed`, `current`), and a second
    /// buffer operation: one `split_to` covers header and payload.
    ///
    /// While the event queue is empty the frames it takes join the ready
    /// region (see `ready`) instead of the queue: checked now, handed out
    /// by `poll_event`. Returns whether it stopped for want of input (as
    /// opposed to at a frame the full path must take).
    #[inline]
    fn parse_small(&mut self) -> Result<bool, ProtocolError> {
        // The frames that joined the ready region are counted from its
        // growth, once per call: no counter work per frame.
        // (The full path calls this before each of its frames too: then
        // the region does not grow, and this is one comparison.)
        let (ready, count) = (self.ready, self.ready_count);
        let stop = self.parse_small_frames();
        if self.ready_count != count {
            let frames = self.ready_count - count;
            let hlen = if self.role == Role::Server { 6 } else { 2 };
            self.stats.messages += frames as u64;
            self.stats.bytes += (self.ready - ready - frames * hlen) as u64;
        }
        stop
    }

    /// `parse_small`'s loop.
    #[inline]
    fn parse_small_frames(&mut self) -> Result<bool, ProtocolError> {
        let server = self.role == Role::Server;
        let mask_bit = if server { 0x80 } else { 0 };
        let hlen = if server { 6 } else { 2 };
        // A region needs zero-copy payloads and nothing queued before it.
        let lazy = self.events.is_empty() && !self.large_buffer;
        loop {
            let buf = &mut self.buf[self.ready..];
            if buf.len() < 2 {
                return Ok(true);
            }
            let (b0, b1) = (buf[0], buf[1]);
            // FIN, no RSV bit, Text (0x1) or Binary (0x2).
            if (b0 != 0x81 && b0 != 0x82) || b1 & 0x80 != mask_bit {
                return Ok(false);
            }
            let len = (b1 & 0x7F) as usize;
            let total = hlen + len;
            // `small_bound` is at most 126: 16/64-bit lengths never get here.
            if len >= self.small_bound {
                return Ok(false);
            }
            if buf.len() < total {
                return Ok(true);
            }
            let (head, payload) = buf[..total].split_at_mut(hlen);
            if server {
                apply_mask_short(payload, [head[2], head[3], head[4], head[5]]);
            }
            if b0 == 0x81 && simdutf8::basic::from_utf8(payload).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            if lazy {
                // Counted by `parse_small` from the region's growth.
                self.ready += total;
                self.ready_count += 1;
                continue;
            }
            self.stats.messages += 1;
            self.stats.bytes += len as u64;
            let payload = if self.large_buffer {
                let copy = Bytes::copy_from_slice(payload);
                self.buf.advance(total);
                copy
            } else {
                let mut frame = self.buf.split_to(total).freeze();
                frame.advance(hlen);
                frame
            };
            let ev = self.small_event(b0, payload);
            self.events.push_back(ev);
        }
    }

    /// Fail-fast UTF-8 for the partial small frame behind the ready region,
    /// which `parse_small` left for the next read: its payload so far is
    /// checked on a copy (it is unmasked in place only once whole), so the
    /// error is the one the full path gives on the same bytes.
    #[cold]
    fn check_partial_small(&self) -> Result<(), ProtocolError> {
        let rest = &self.buf[self.ready..];
        let hlen = if self.role == Role::Server { 6 } else { 2 };
        if rest.len() <= hlen || rest[0] != 0x81 {
            return Ok(());
        }
        let mut copy = [0u8; 125];
        let got = &mut copy[..(rest.len() - hlen).min(125)];
        got.copy_from_slice(&rest[hlen..hlen + got.len()]);
        if hlen == 6 {
            apply_mask_short(got, [rest[2], rest[3], rest[4], rest[5]]);
        }
        match simdutf8::compat::from_utf8(got) {
            // `error_len` is `None` when the bytes only stop short of a
            // sequence that the rest of the frame may complete.
            Err(e) if e.error_len().is_some() => Err(ProtocolError::InvalidUtf8),
            _ => Ok(()),
        }
    }

    /// Turns the small-frame fast path off, so tests can compare it with
    /// the full path on the same bytes.
    #[cfg(test)]
    pub(crate) fn disable_fast_path(&mut self) {
        self.small_bound = 0;
    }

    /// The event for a frame `parse_small` took (`b0` is 0x81 or 0x82).
    #[inline]
    pub(super) fn small_event(&self, b0: u8, payload: Bytes) -> Event {
        let text = b0 == 0x81;
        if !self.reassemble {
            Event::Fragment(Fragment {
                kind: if text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                },
                data: payload,
                first: true,
                last: true,
            })
        } else if text {
            Event::Text(Utf8Bytes::from_validated(payload))
        } else {
            Event::Binary(payload)
        }
    }

    fn check_header(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let compressed = h.rsv & RSV1 != 0;
        if h.rsv & !RSV1 != 0 || (compressed && self.inflate.is_none()) {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        if compressed && !matches!(h.opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::InvalidCompressedFrame);
        }
        if h.opcode.is_control() {
            return Ok(());
        }
        let cfg = &*self.config;
        if h.payload_len > cfg.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooBig {
                size: h.payload_len,
                limit: cfg.max_frame_size,
            });
        }
        let cur = &mut self.current;
        match (h.opcode, cur.kind) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(_)) => {}
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (op, None) => {
                cur.kind = Some(if op == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                });
                cur.compressed = compressed;
                cur.frames = 0;
                cur.size = 0;
                self.utf8.reset();
            }
        }
        cur.frames += 1;
        if cur.frames > cfg.max_fragments {
            return Err(ProtocolError::TooManyFragments {
                limit: cfg.max_fragments,
            });
        }
        cur.size += h.payload_len;
        // Uncompressed sizes are known from headers: refuse before buffering.
        // Compressed ones are also bounded by their wire size here, and by
        // the decompressor on output.
        if cur.size > cfg.max_message_size as u64 {
            return Err(ProtocolError::MessageTooBig {
                size: cur.size,
                limit: cfg.max_message_size,
            });
        }
        Ok(())
    }
}
