//! The sending half: encodes frames into the output queue.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::link::{Link, Reply};
use super::stats::SendCounters;
use super::Stats;
use crate::close::{CloseCode, CloseFrame};
use crate::deflate::Compressor;
use crate::error::SendError;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN, RSV1};
use crate::mask::{apply_mask, MaskSource};
use crate::message::{Message, MessageKind};
use crate::prepared::{Encoded, PreparedMessage};
use crate::Role;

/// Payloads at least this long are queued as their own chunk instead of being
/// copied into the output buffer (server side, uncompressed).
const ZERO_COPY_MIN: usize = 4096;

/// The sending half of a connection: data and control frames go in, bytes to
/// write come out of [`SendHalf::poll_transmit`].
///
/// Obtained from [`crate::Connection::split`]; the unsplit [`crate::Connection`]
/// forwards to it. Control replies produced by the receiving half (Pongs, the
/// Close echo, keepalive Pings) are picked up by every call here.
pub struct SendHalf {
    role: Role,
    out: BytesMut,
    chunks: VecDeque<Bytes>,
    queued: usize,
    mask: Option<Box<dyn MaskSource>>,
    /// Boxed: a connection without compression keeps one pointer, not
    /// the codec's ~200 bytes of state.
    compressor: Option<Box<Compressor>>,
    /// The code of the Close frame queued, once one is.
    close_sent: Option<CloseCode>,
    /// The sending side's counters (see [`Stats`]).
    stats: SendCounters,
    /// Bytes of the HTTP handshake queued (before any frame).
    raw: u32,
    /// A message being sent in fragments: its kind and whether it is compressed.
    streaming: Option<(MessageKind, bool)>,
    link: Arc<Link>,
    open: bool,
    /// `Config::max_pending_output` (`usize::MAX` for none).
    max_pending: usize,
    /// The output was dropped for the limit: nothing may be queued after
    /// it, not even a Pong (the peer would read a frame cut short).
    aborted: bool,
}

impl std::fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHalf")
            .field("role", &self.role)
            .field("queued", &self.queued)
            .field("close_sent", &self.close_sent)
            .finish_non_exhaustive()
    }
}

impl SendHalf {
    pub(crate) fn new(
        role: Role,
        mask: Option<Box<dyn MaskSource>>,
        link: Arc<Link>,
        max_pending: Option<usize>,
    ) -> Self {
        SendHalf {
            role,
            out: BytesMut::new(),
            chunks: VecDeque::new(),
            queued: 0,
            mask,
            compressor: None,
            close_sent: None,
            stats: SendCounters::default(),
            raw: 0,
            streaming: None,
            link,
            open: false,
            max_pending: max_pending.unwrap_or(usize::MAX),
            aborted: false,
        }
    }

    pub(crate) fn set_open(&mut self, compressor: Option<Compressor>) {
        self.compressor = compressor.map(Box::new);
        self.open = true;
    }

    /// Queues raw bytes (handshake request or response).
    pub(crate) fn queue_raw(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.raw = self.raw.saturating_add(bytes.len() as u32);
        self.push_chunk(bytes);
    }

    /// Sends a text message.
    ///
    /// After calling this, call [`SendHalf::poll_transmit`] and write what it returns.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_payload(MessageKind::Text, text.as_bytes(), None, true)
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_payload(MessageKind::Binary, data, None, true)
    }

    /// Sends a message; a server sends large uncompressed payloads without copying them.
    pub fn send(&mut self, msg: impl Into<Message>) -> Result<(), SendError> {
        let (kind, bytes) = msg.into().into_parts();
        self.send_payload(kind, &bytes, Some(&bytes), true)
    }

    /// Sends a message uncompressed even when compression was negotiated
    /// (e.g. data that is already compressed).
    pub fn send_uncompressed(&mut self, msg: impl Into<Message>) -> Result<(), SendError> {
        let (kind, bytes) = msg.into().into_parts();
        self.send_payload(kind, &bytes, Some(&bytes), false)
    }

    /// Sends a message encoded once for many connections (see
    /// [`PreparedMessage`]), with the same rules as [`SendHalf::send`]:
    /// refused before the connection is open, after a Close frame was
    /// queued, and while a fragmented message is in progress; compressed
    /// when compression was negotiated and the payload reaches
    /// `min_compress_size`.
    ///
    /// A server queues the prepared frame itself (no copy): the
    /// uncompressed one, or, when this side has no context takeover, the
    /// compressed one cached for its compressor's class (compressed on
    /// first use, then shared). With context takeover the payload is
    /// compressed by this connection's own compressor. A client masks the
    /// (possibly cached compressed) payload into its output.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use wsmachine::{Config, Connection, Negotiated, PreparedMessage, Role};
    /// let msg = PreparedMessage::new(bytes::Bytes::from(vec![7; 1024]));
    /// let mut conn = Connection::upgraded(Role::Server, Config::default(), Negotiated::default(), None, Instant::now());
    /// let (_, tx) = conn.halves();
    /// tx.send_prepared(&msg).unwrap();
    /// let out = tx.poll_transmit().unwrap();
    /// assert_eq!(out.as_ptr(), msg.frame().as_ptr()); // the same bytes, not a copy
    /// ```
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), SendError> {
        self.check_data()?;
        self.note_sent();
        if self.streaming.is_some() {
            return Err(SendError::MessageInProgress);
        }
        let opcode = data_opcode(msg.kind());
        let payload = msg.payload();
        self.count_message(payload.len());
        match &self.compressor {
            Some(d) if d.should_compress(payload.len()) => match d.shared_class() {
                Some(class) => {
                    let enc = msg.compressed(class);
                    self.stats.compressed_bytes += enc.payload().len() as u64;
                    self.queue_encoded(opcode, RSV1, &enc)
                }
                // Context takeover: only this connection's compressor knows
                // what the peer's decompressor holds.
                None => self.compress_and_write(opcode, RSV1, payload, true),
            },
            _ => self.queue_encoded(opcode, 0, msg.plain()),
        }
        Ok(())
    }

    /// Sends one fragment of a message streamed in pieces: the first call
    /// starts a message of `kind`, later calls continue it (with the same
    /// `kind`), and `last` ends it. Control frames may be sent in between.
    /// Text fragments may split a character; the whole must be UTF-8 (the
    /// peer fails the connection otherwise). When compression was
    /// negotiated, a streamed message is always compressed: its size is not
    /// known up front, so `min_compress_size` does not apply.
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        last: bool,
    ) -> Result<(), SendError> {
        self.check_data()?;
        self.note_sent();
        let (opcode, compressed, first) = match self.streaming {
            None => {
                let compressed = self.compressor.is_some();
                (data_opcode(kind), compressed, true)
            }
            Some((k, c)) if k == kind => (OpCode::Continuation, c, false),
            Some(_) => return Err(SendError::MessageInProgress),
        };
        self.streaming = if last { None } else { Some((kind, compressed)) };
        self.stats.bytes += data.len() as u64;
        self.stats.messages += u64::from(last);
        if compressed {
            let rsv = if first { RSV1 } else { 0 };
            self.compress_and_write(opcode, rsv, data, last);
        } else {
            self.write_frame(opcode, 0, last, data, None);
        }
        Ok(())
    }

    /// Sends a Ping (payload at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.check_control(payload)?;
        self.write_frame(OpCode::Ping, 0, true, payload, None);
        // A keepalive Ping waiting for its Pong may now get only this one's.
        self.link.note_app_ping();
        Ok(())
    }

    /// Sends an unsolicited Pong (payload at most 125 bytes).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.check_control(payload)?;
        self.write_frame(OpCode::Pong, 0, true, payload, None);
        Ok(())
    }

    /// Starts the closing handshake: queues a Close frame. No data may be
    /// sent after it. `code` must be sendable (1000–1003, 1007–1014,
    /// 3000–4999) and `reason` at most 123 bytes.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.take_replies();
        if !self.open {
            return Err(SendError::NotOpen);
        }
        if self.close_sent.is_some() || self.link.is_finished() {
            return Err(SendError::Closed);
        }
        if !code.is_sendable() {
            return Err(SendError::InvalidCloseCode(code.into()));
        }
        if reason.len() > 123 {
            return Err(SendError::ControlTooLong(reason.len() + 2));
        }
        self.write_close(now, &CloseFrame::new(code, reason));
        Ok(())
    }

    /// The next bytes to write to the transport, in order. Call until it
    /// returns `None` after every input or command.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.take_replies();
        let b = match self.chunks.pop_front() {
            Some(b) => {
                self.release_drained_chunks();
                b
            }
            None if !self.out.is_empty() => {
                let b = self.out.split().freeze();
                self.release_drained_output();
                b
            }
            None => return None,
        };
        self.queued -= b.len();
        self.stats.written += b.len() as u64;
        Some(b)
    }

    /// The next bytes to write, borrowed rather than handed out: write what
    /// the transport takes, then report it with [`SendHalf::advance_transmit`].
    /// Returns `None` when nothing is queued.
    ///
    /// An alternative to [`SendHalf::poll_transmit`] for a driver that
    /// writes from a borrowed slice (`write(2)`, a TLS session's plaintext
    /// writer): it costs no reference-count traffic per call, where each
    /// `Bytes` that `poll_transmit` returns shares the output buffer. The
    /// two may be mixed; the bytes come out in the same order.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use wsmachine::{Config, Connection, Negotiated, Role};
    /// let mut conn = Connection::upgraded(Role::Server, Config::default(), Negotiated::default(), None, Instant::now());
    /// conn.send_binary(b"hi").unwrap();
    /// let (_, tx) = conn.halves();
    /// let mut wire = Vec::new();
    /// while let Some(buf) = tx.peek_transmit() {
    ///     let n = buf.len().min(3); // a transport that takes 3 bytes at a time
    ///     wire.extend_from_slice(&buf[..n]);
    ///     tx.advance_transmit(n);
    /// }
    /// assert_eq!(wire, b"\x82\x02hi");
    /// ```
    #[must_use]
    pub fn peek_transmit(&mut self) -> Option<&[u8]> {
        self.take_replies();
        if let Some(c) = self.chunks.front() {
            return Some(c);
        }
        if self.out.is_empty() {
            None
        } else {
            Some(&self.out)
        }
    }

    /// The queued output as slices for one vectored write (`writev(2)`):
    /// fills `bufs` in order, at most `bufs.len()` slices, and returns how
    /// many it filled (0 when nothing is queued). Report what the transport
    /// took with [`SendHalf::advance_transmit`]; it may end inside any slice.
    ///
    /// A handshake response or a large message sent without copying is a
    /// slice of its own; everything else is encoded into one buffer, so a
    /// batch of small frames is one slice.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use std::io::{IoSlice, Write};
    /// use wsmachine::{Config, Connection, Negotiated, Role};
    /// let mut conn = Connection::upgraded(Role::Server, Config::default(), Negotiated::default(), None, Instant::now());
    /// conn.send_binary(&[7; 5000]).unwrap(); // copied: `send_binary` borrows
    /// conn.send(bytes::Bytes::from(vec![8; 5000])).unwrap(); // queued as is
    /// let mut wire = Vec::new();
    /// loop {
    ///     let mut bufs = [IoSlice::new(&[]); 8];
    ///     let k = conn.peek_transmit_vectored(&mut bufs);
    ///     if k == 0 { break; }
    ///     let n = wire.write_vectored(&bufs[..k]).unwrap();
    ///     conn.advance_transmit(n);
    /// }
    /// assert_eq!(wire.len(), 2 * (4 + 5000));
    /// assert_eq!(conn.pending_output(), 0);
    /// ```
    pub fn peek_transmit_vectored<'a>(&'a mut self, bufs: &mut [IoSlice<'a>]) -> usize {
        self.take_replies();
        let this: &'a Self = self;
        let tail = (!this.out.is_empty()).then_some(&this.out[..]);
        let slices = this.chunks.iter().map(|c| &c[..]).chain(tail);
        let mut k = 0;
        for (slot, slice) in bufs.iter_mut().zip(slices) {
            *slot = IoSlice::new(slice);
            k += 1;
        }
        k
    }

    /// Marks the first `n` bytes of the queued output as written (what
    /// [`SendHalf::peek_transmit`] or [`SendHalf::peek_transmit_vectored`]
    /// showed, in order). `n` larger than what is queued counts as all of it.
    pub fn advance_transmit(&mut self, mut n: usize) {
        while n > 0 {
            let Some(c) = self.chunks.front_mut() else {
                break;
            };
            let k = n.min(c.len());
            c.advance(k);
            self.queued -= k;
            self.stats.written += k as u64;
            n -= k;
            if c.is_empty() {
                self.chunks.pop_front();
                self.release_drained_chunks();
            }
        }
        if self.chunks.is_empty() {
            let k = n.min(self.out.len());
            // No reference counting: the written bytes' room is reused by a
            // later `reserve` once the buffer has drained.
            self.out.advance(k);
            self.queued -= k;
            self.stats.written += k as u64;
            self.release_drained_output();
        }
    }

    /// A connection whose compressor comes from the thread's pool (no
    /// context takeover our way, as with `DeflateConfig::shared()`) keeps
    /// no output buffer between messages, as its receiving half keeps no
    /// input buffer: no memory per idle connection beyond its state.
    #[inline]
    fn release_drained_output(&mut self) {
        if self.out.is_empty() && self.compressor.as_ref().is_some_and(|c| c.is_pooled()) {
            self.out = BytesMut::new();
        }
    }

    /// Drops every byte queued for the transport and frees its memory: for
    /// a driver whose transport failed, or that gave up on a peer that does
    /// not read. Nothing more should be written after it (the stream would
    /// be missing bytes).
    pub fn clear_transmit(&mut self) {
        self.take_replies();
        self.chunks = VecDeque::new();
        self.out = BytesMut::new();
        self.queued = 0;
    }

    /// Bytes queued and not yet handed out by `poll_transmit`.
    pub fn pending_output(&self) -> usize {
        self.queued
    }

    /// Whether a Close frame has been queued.
    pub fn is_close_sent(&self) -> bool {
        self.close_sent.is_some()
    }

    /// The code of the Close frame queued (ours, the echo of the peer's, or
    /// the one a failure sent), once one is.
    pub fn close_code_sent(&self) -> Option<CloseCode> {
        self.close_sent
    }

    /// The sending side's counters (messages, bytes, compressed bytes);
    /// the receiving ones are zero here (see [`crate::ReceiveHalf::stats`],
    /// and [`crate::Connection::stats`] for both).
    pub fn stats(&self) -> Stats {
        self.add_stats(Stats::default())
    }

    /// `stats` (the receiving half's) with this half's counters added.
    pub(crate) fn add_stats(&self, stats: Stats) -> Stats {
        self.stats.add_to(stats, self.raw)
    }

    /// Whether the receiving half has control replies waiting to be encoded
    /// (call `poll_transmit` to get them).
    pub fn has_pending_replies(&self) -> bool {
        self.link.has_replies()
    }

    /// Encodes the replies the receiving half queued. Called on every send
    /// and transmit, so the common case (none) is one inlined load.
    #[inline]
    pub(crate) fn take_replies(&mut self) {
        if self.link.has_replies() {
            self.encode_replies();
        }
    }

    #[cold]
    fn encode_replies(&mut self) {
        for reply in self.link.take_replies() {
            if let Reply::ReleaseCompressor = reply {
                if let Some(d) = &mut self.compressor {
                    d.release();
                }
                continue;
            }
            if self.close_sent.is_some() || self.aborted {
                // Nothing may follow our Close frame (RFC 6455 §5.5.1), nor
                // output that was dropped in the middle of a frame.
                break;
            }
            match reply {
                Reply::ReleaseCompressor => {}
                Reply::Pong(p) => self.write_frame(OpCode::Pong, 0, true, &p, None),
                Reply::Ping(p) => self.write_frame(OpCode::Ping, 0, true, &p, None),
                Reply::Close(f, at) => self.write_close(at, &f),
            }
        }
    }

    fn write_close(&mut self, now: Instant, frame: &CloseFrame) {
        let payload = frame.encode();
        self.write_frame(OpCode::Close, 0, true, &payload, None);
        self.close_sent = Some(frame.code);
        if let Some(d) = &mut self.compressor {
            // No data follows a Close: a message in progress stays unfinished.
            d.abandon();
        }
        let _ = self.link.close_sent_at.set(now);
    }

    /// Counts a whole message about to be queued.
    #[inline]
    fn count_message(&mut self, len: usize) {
        self.stats.messages += 1;
        self.stats.bytes += len as u64;
    }

    /// Tells the receiving half's idle timer that messages are flowing
    /// (see `DeflateConfig::release_after_idle`).
    fn note_sent(&self) {
        if self.compressor.is_some() {
            self.link.note_sent();
        }
    }

    fn check_data(&mut self) -> Result<(), SendError> {
        // A Close echo waiting in the link must go out before (and stop) any data.
        self.take_replies();
        if !self.open {
            return Err(SendError::NotOpen);
        }
        if self.close_sent.is_some() || self.link.is_finished() {
            return Err(SendError::Closed);
        }
        if self.queued > self.max_pending {
            self.abort();
            return Err(SendError::PendingOutputLimit);
        }
        Ok(())
    }

    /// The peer does not read what we send: drop the output at once (its
    /// memory is what the limit protects) and end the connection. No Close
    /// frame: the output stops somewhere inside a frame, and a peer that
    /// does not read would not read a Close queued behind it either.
    #[cold]
    fn abort(&mut self) {
        self.clear_transmit();
        self.aborted = true;
        self.link.set_aborted();
    }

    fn check_control(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.check_data()?;
        if payload.len() > 125 {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        Ok(())
    }

    fn send_payload(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        owned: Option<&Bytes>,
        allow_compress: bool,
    ) -> Result<(), SendError> {
        self.check_data()?;
        self.note_sent();
        if self.streaming.is_some() {
            return Err(SendError::MessageInProgress);
        }
        let opcode = data_opcode(kind);
        self.count_message(data.len());
        match &mut self.compressor {
            Some(d) if allow_compress && d.should_compress(data.len()) => {
                self.compress_and_write(opcode, RSV1, data, true)
            }
            _ => self.write_frame(opcode, 0, true, data, owned),
        }
        Ok(())
    }

    /// Compresses a message (or one frame of it) with this connection's
    /// compressor and encodes its frame.
    fn compress_and_write(&mut self, opcode: OpCode, rsv: u8, data: &[u8], fin: bool) {
        let d = self
            .compressor
            .as_mut()
            .expect("compress_and_write needs a compressor");
        // The compressed payload only lives between the two steps: its
        // buffer is the thread's, not every connection's (a connection
        // then holds no compression buffer between messages).
        let mut scratch = SCRATCH.take();
        scratch.clear();
        d.compress(data, fin, &mut scratch);
        self.stats.compressed_bytes += scratch.len() as u64;
        self.write_frame(opcode, rsv, fin, &scratch, None);
        if scratch.capacity() <= KEEP_SCRATCH {
            SCRATCH.set(scratch);
        }
    }

    /// Queues a prepared frame: as is on a server (shared, no copy); a
    /// client masks its payload into the output with a fresh key.
    fn queue_encoded(&mut self, opcode: OpCode, rsv: u8, enc: &Encoded) {
        match self.role {
            Role::Server => {
                self.queued += enc.frame.len();
                self.push_chunk(enc.frame.clone());
            }
            Role::Client => self.write_frame(opcode, rsv, true, enc.payload(), None),
        }
    }

    /// Encodes one frame. `owned` is the same payload as `data` when the
    /// caller has it as `Bytes`, so a large unmasked payload can be queued
    /// without a copy (a reference: the common small frame costs no
    /// reference-count traffic).
    #[inline]
    fn write_frame(
        &mut self,
        opcode: OpCode,
        rsv: u8,
        fin: bool,
        data: &[u8],
        owned: Option<&Bytes>,
    ) {
        let mask = match self.role {
            Role::Client => Some(self.mask.as_mut().map(|m| m.next_mask()).unwrap_or([0; 4])),
            Role::Server => None,
        };
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: data.len() as u64,
        };
        // The header is built on the stack and appended with one copy:
        // cheaper than a bounds-checked `put_*` per field.
        let mut head = [0u8; MAX_HEADER_LEN];
        let hlen = header.encode_to(&mut head);
        self.queued += hlen + data.len();
        match (mask, owned) {
            (None, Some(bytes)) if bytes.len() >= ZERO_COPY_MIN => {
                self.out.extend_from_slice(&head[..hlen]);
                self.push_chunk(bytes.clone());
            }
            _ => {
                self.out.reserve(hlen + data.len());
                // One arm per header length, so each copy has a constant
                // size and compiles to a store or two instead of a call.
                match hlen {
                    2 => self.out.extend_from_slice(&head[..2]),
                    6 => self.out.extend_from_slice(&head[..6]),
                    _ => self.out.extend_from_slice(&head[..hlen]),
                }
                let start = self.out.len();
                self.out.extend_from_slice(data);
                if let Some(m) = mask {
                    apply_mask(&mut self.out[start..], m, 0);
                }
            }
        }
    }

    /// Chunks carry the handshake response and large payloads only, so the
    /// queue is rare on the message path: it is given back once drained
    /// rather than kept by every idle connection.
    fn release_drained_chunks(&mut self) {
        if self.chunks.is_empty() {
            self.chunks = VecDeque::new();
        }
    }

    fn push_chunk(&mut self, bytes: Bytes) {
        if !self.out.is_empty() {
            self.chunks.push_back(self.out.split().freeze());
        }
        self.chunks.push_back(bytes);
    }
}

thread_local! {
    /// The buffer messages are compressed into before their frame is
    /// encoded (see `SendHalf::compress_and_write`).
    static SCRATCH: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}

/// A compression buffer that grew past this (a large message) is freed
/// rather than kept by the thread.
const KEEP_SCRATCH: usize = 64 << 10;

fn data_opcode(kind: MessageKind) -> OpCode {
    match kind {
        MessageKind::Text => OpCode::Text,
        MessageKind::Binary => OpCode::Binary,
    }
}
