//! From frames to messages: control frames, reassembly, inflating and
//! UTF-8 checking, against the message limits and the memory budget.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{Backlog, Current, ReceiveHalf, KEEP_INPUT_PEAK};
use crate::close::CloseFrame;
use crate::connection::link::Reply;
use crate::connection::Event;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode};
use crate::message::{Fragment, MessageKind, Utf8Bytes};

impl ReceiveHalf {
    pub(super) fn handle_frame(
        &mut self,
        h: FrameHeader,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        match h.opcode {
            OpCode::Ping => {
                if self.config.auto_pong {
                    // After our Close no Pong may follow; the Ping is
                    // answered all the same by the closing handshake.
                    if self.link.close_sent_at().is_none() {
                        self.link.push(Reply::Pong(payload.clone()));
                        self.stats.auto_pongs = self.stats.auto_pongs.wrapping_add(1);
                    }
                    self.push_answered(Event::Ping(payload));
                } else {
                    // The application answers: the event must reach it, and
                    // it counts against read-ahead like a message.
                    self.events.push_back(Event::Ping(payload));
                }
            }
            OpCode::Pong => {
                // Only the answer to our outstanding keepalive Ping (its
                // counter payload) counts: an unsolicited Pong changes
                // nothing. But a peer may answer only the most recent Ping
                // (RFC 6455 §5.5.3): once the application has sent one
                // after ours, any Pong proves the peer reads — it meets
                // the deadline, without an RTT (it is not our Ping's).
                if self.ping_outstanding {
                    if payload[..] == self.ping_count.to_be_bytes() {
                        self.ping_outstanding = false;
                        self.stats
                            .set_rtt(now.saturating_duration_since(self.last_ping));
                    } else if self.link.app_ping_sent() {
                        self.ping_outstanding = false;
                    }
                }
                self.push_answered(Event::Pong(payload));
            }
            OpCode::Close => {
                let frame = CloseFrame::parse(&payload)?;
                // Nothing after a Close is processed: the input and a
                // message it interrupted go now, with their reservation.
                self.buf = BytesMut::new();
                self.current = Current::default();
                self.abandon_inflate();
                // Echo the code, as RFC 6455 §5.5.1 suggests; no reason. It
                // leaves when the application takes this event (poll_event),
                // after whatever it sends in answer to the messages before.
                let closing = self.closing_mut();
                closing.received_at = Some(now);
                closing.deferred = Some((CloseFrame::new(frame.code, ""), now, false));
                self.events.push_back(Event::Close(frame));
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => self.handle_data(h, payload)?,
        }
        Ok(())
    }

    fn handle_data(&mut self, h: FrameHeader, payload: Bytes) -> Result<(), ProtocolError> {
        if self.current.compressed {
            let inflate = self
                .inflate
                .as_mut()
                .expect("compressed implies a decompressor");
            inflate.compressed_bytes += payload.len() as u64;
            let start = self.current.data.len();
            let pinned = payload.len();
            return self.inflate_slice(payload, pinned, h.fin, start);
        }
        if self.reassemble && !(h.fin && self.current.frames == 1) {
            let total = self.current.data.len() + payload.len();
            self.held.cover(&self.config, total)?;
        }
        let cur = &mut self.current;
        self.stats.bytes += payload.len() as u64;
        let data = if self.reassemble {
            if h.fin && cur.frames == 1 {
                // One frame: hand out the input buffer's bytes, no copy.
                Some(payload)
            } else {
                cur.data.extend_from_slice(&payload);
                None
            }
        } else {
            Some(payload)
        };
        self.end_frame(h.fin, data)
    }

    /// Inflates the next slice of a compressed frame's payload `input`
    /// (until this call's output, `spent`, would pass `quantum`: the bound
    /// is per call, not per frame, so a read full of small compressed
    /// frames is sliced too) into `Current::data`, where the
    /// frame's output starts at `start`. When the slice leaves work, the
    /// rest is kept as the backlog (see `has_pending_work`); once the
    /// frame is done, it is ended like any other. `pinned`: the frame's
    /// whole payload length, which `input` keeps allocated; the budget
    /// covers it along with the output.
    pub(super) fn inflate_slice(
        &mut self,
        input: Bytes,
        pinned: usize,
        fin: bool,
        start: usize,
    ) -> Result<(), ProtocolError> {
        let quantum = self.quantum();
        let cur = &mut self.current;
        let inflate = &mut **self
            .inflate
            .as_mut()
            .expect("compressed implies a decompressor");
        let (held, config) = (&mut self.held, &*self.config);
        let paused = inflate.codec.decompress_slice(
            &input,
            fin,
            &mut cur.data,
            config.max_message_size,
            &mut |n| held.cover(config, n.saturating_add(pinned)),
            &mut inflate.spent,
            quantum,
        )?;
        if let Some(consumed) = paused {
            inflate.backlog = Some(Box::new(Backlog {
                input: input.slice(consumed..),
                pinned,
                fin,
                start,
            }));
            self.backlog = true;
            return Ok(());
        }
        self.stats.bytes += (cur.data.len() - start) as u64;
        if cur.kind == Some(MessageKind::Text) {
            // The frame's whole output at once, as before slicing: the
            // error a frame ends with does not depend on the slices.
            self.utf8
                .feed(&cur.data[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        // Streamed fragments each take their own output (a fresh buffer per
        // frame); reassembled ones stay until the message ends.
        let data = (!self.reassemble).then(|| std::mem::take(&mut cur.data).freeze());
        self.end_frame(fin, data)
    }

    /// The end of a data frame: its fragment event, or the message's when
    /// `fin` (`data` is the frame's own payload when it is the whole of
    /// what to hand out; `None` takes the reassembled message). Inlined: with the
    /// full parser, the per-frame path of every message the fast path does
    /// not take.
    #[inline(always)]
    fn end_frame(&mut self, fin: bool, data: Option<Bytes>) -> Result<(), ProtocolError> {
        let kind = self.current.kind.expect("set by check_header");
        let text = kind == MessageKind::Text;
        if fin && text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !self.reassemble {
            self.events.push_back(Event::Fragment(Fragment {
                kind,
                data: data.unwrap_or_default(),
                first: self.current.frames == 1,
                last: fin,
            }));
        } else if fin {
            // Not the inflate output buffer either.
            let lean = self.current.compressed && self.keeps_nothing_between_messages();
            let cur = &mut self.current;
            let bytes = data.unwrap_or_else(|| {
                if lean || cur.data.capacity() > KEEP_INPUT_PEAK {
                    // Handed out whole: a split would leave the spare room
                    // here, pinning the message's allocation after the
                    // application drops it. Small buffers stay for reuse.
                    std::mem::take(&mut cur.data).freeze()
                } else {
                    cur.data.split().freeze()
                }
            });
            self.events.push_back(match kind {
                MessageKind::Text => Event::Text(Utf8Bytes::from_validated(bytes)),
                MessageKind::Binary => Event::Binary(bytes),
            });
        }
        if fin {
            self.current.kind = None;
            self.stats.messages += 1;
        }
        Ok(())
    }
}
