//! The receiving half: parses frames, reassembles messages, runs the timers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::link::{Link, Reply};
use super::Event;
use crate::budget::Held;
use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::deflate::Decompressor;
use crate::error::{ConnectionError, ProtocolError, Timeout};
use crate::frame::{FrameHeader, OpCode, RSV1};
use crate::mask::{apply_mask, apply_mask_short, extend_masked};

use crate::message::{Fragment, MessageKind, Utf8Bytes};
use crate::utf8::Utf8Validator;
use crate::Role;

/// Input buffers larger than this are released once empty, so an idle
/// connection does not keep the memory of its largest message.
const KEEP_INPUT_CAPACITY: usize = 8 << 10;

/// A buffer that held more than this at once is released once empty too,
/// whatever spare capacity it shows: payloads split off it keep it alive,
/// and a read full of small messages leaves none. Below it (a read of 16
/// pipelined 1 KiB messages, say) the buffer is kept, so the steady state
/// does not allocate per read.
const KEEP_INPUT_PEAK: usize = 32 << 10;

/// A frame at least this large makes the input buffer "large"...
const LARGE_FRAME: usize = 256 << 10;
/// ...and while it is, payloads under this size are copied out rather than
/// sliced, so a small message the application keeps does not pin the
/// large allocation it arrived in.
const SMALL_COPY: usize = 4 << 10;

/// `receive` copies and parses a large read in steps of this size (a third
/// of a typical 48 KiB L1 data cache).
const RECEIVE_STEP: usize = 16 << 10;

/// An event queue drained while holding more than this many slots gives
/// them back: a burst of control frames must not leave an idle connection
/// holding its queue (48 bytes a slot).
const KEEP_EVENT_SLOTS: usize = 32;

/// The message being received (one frame or several). A plain field, not an
/// `Option`, so the per-frame path moves nothing and the reassembly buffer
/// is reused from message to message.
#[derive(Debug, Default)]
struct Current {
    /// `Some` while a message is in progress.
    kind: Option<MessageKind>,
    compressed: bool,
    frames: usize,
    /// Payload bytes received so far (compressed size for compressed messages).
    size: u64,
    /// Reassembled payload so far (reassemble mode only).
    data: BytesMut,
}

/// The closing handshake's and a failure's state: none of it exists while
/// the connection is open, so it lives behind one lazily allocated box.
#[derive(Debug, Default)]
struct Closing {
    /// When the peer's Close arrived.
    received_at: Option<Instant>,
    /// A Close frame to send (the echo of the peer's, or ours after a
    /// protocol error), released when the application takes the Close or
    /// Error event, so its answers to the messages before still go out
    /// first. The flag says whether the transport is done after it.
    deferred: Option<(CloseFrame, Instant, bool)>,
    /// When a protocol error failed the connection.
    failed_at: Option<Instant>,
}

/// The decompressor and its idle-release timer, together behind one box.
#[derive(Debug)]
struct Inflate {
    codec: Decompressor,
    /// `DeflateConfig::release_after_idle`.
    idle: Option<Duration>,
    /// When the sending half was last seen active (see `Link::take_sent`).
    mark: Instant,
    /// When the zlib streams were last released (the timer then waits for
    /// new traffic before it is armed again).
    released_at: Option<Instant>,
}

/// Which timer `next_deadline` found.
#[derive(Clone, Copy, Debug)]
enum Due {
    /// Our Close was not answered in time.
    ClosingHandshake,
    /// Both Closes were exchanged; a client gives the server time to close TCP.
    Linger,
    /// A failure's Close still waits for the application to take the Error.
    FailedLinger,
    /// Time for a keepalive Ping.
    Ping,
    /// The keepalive Ping was not answered.
    Pong,
    /// No message either way for `DeflateConfig::release_after_idle`: free
    /// the zlib streams.
    ReleaseDeflate,
}

/// `t + d`, or `None` when that is past what `Instant` can hold (a
/// `Duration::MAX` timeout means "never").
fn after(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d)
}

/// The connection state as seen by the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// The opening handshake is in progress.
    Connecting,
    /// Messages flow both ways.
    Open,
    /// A Close frame was sent or received; the handshake is not complete.
    Closing,
    /// The closing handshake completed, or the connection failed.
    Closed,
}

/// The receiving half of a connection: bytes from the transport go in,
/// [`Event`]s come out, and it runs the keepalive and closing timers.
///
/// Obtained from [`crate::Connection::split`]. Control replies it produces
/// (Pongs, the Close echo, keepalive Pings) are queued for the [`crate::SendHalf`],
/// which encodes them on its next call; check [`ReceiveHalf::has_pending_replies`]
/// after `receive`/`handle_timeout` to know that the sending side has work.
pub struct ReceiveHalf {
    role: Role,
    /// Shared with the `Connection` (and with every connection a server
    /// built from the same `Arc<Config>`): limits and timers are read from
    /// it rather than copied into each connection.
    config: Arc<Config>,
    /// Copied from `config`: read once per message on the fast path.
    reassemble: bool,

    buf: BytesMut,
    header: Option<FrameHeader>,
    /// Payload bytes of the current frame already unmasked (and UTF-8 checked).
    processed: usize,
    current: Current,
    utf8: Utf8Validator,
    /// Boxed: a connection without compression keeps one pointer, not
    /// the codec's ~200 bytes of state.
    inflate: Option<Box<Inflate>>,
    events: VecDeque<Event>,
    link: Arc<Link>,

    open: bool,
    /// Set once the peer's Close arrives or the connection fails (boxed: an
    /// open connection keeps one pointer).
    closing: Option<Box<Closing>>,
    failed: bool,
    eof: bool,
    /// The transport should be closed once pending output is written.
    transport_done: bool,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    ping_count: u32,
    /// The input buffer holds (or held) a large frame: see `SMALL_COPY`.
    large_buffer: bool,
    /// The input buffer held more than `KEEP_INPUT_PEAK` bytes since it was
    /// last released.
    buffer_peaked: bool,
    /// Frames with a payload shorter than this may take the small-frame
    /// fast path (`parse_small`): at most 125 bytes, and never one that a
    /// configured limit would refuse (those take the full path and its error).
    small_bound: usize,
    /// The first `ready` bytes of `buf` are `ready_count` whole small
    /// frames that `parse_small` has checked, unmasked and validated but
    /// not yet turned into events: `poll_event` hands them out straight
    /// from the buffer, so a read full of small messages costs no event
    /// queue traffic (nor queue memory). The region only starts while
    /// `events` is empty and `poll_event` takes it first, so it always
    /// comes before anything queued after it.
    ready: usize,
    ready_count: usize,
    /// What the message in progress reserved from `config.memory_budget`.
    held: Held,
}

impl std::fmt::Debug for ReceiveHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveHalf")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Drop for ReceiveHalf {
    fn drop(&mut self) {
        // An abrupt end (the transport reset, the application dropped the
        // connection mid-message) returns the reservation too.
        self.held.settle(&self.config, 0);
    }
}

impl ReceiveHalf {
    pub(crate) fn new(role: Role, cfg: Arc<Config>, link: Arc<Link>, now: Instant) -> Self {
        ReceiveHalf {
            role,
            reassemble: cfg.reassemble,
            buf: BytesMut::new(),
            header: None,
            processed: 0,
            current: Current::default(),
            utf8: Utf8Validator::new(),
            inflate: None,
            events: VecDeque::new(),
            link,
            open: false,
            closing: None,
            failed: false,
            eof: false,
            transport_done: false,
            last_rx: now,
            ping_sent: None,
            ping_count: 0,
            large_buffer: false,
            buffer_peaked: false,
            small_bound: if cfg.max_fragments == 0 {
                0
            } else {
                126.min(cfg.max_frame_size.saturating_add(1))
                    .min(cfg.max_message_size.saturating_add(1))
            },
            ready: 0,
            ready_count: 0,
            held: Held::default(),
            config: cfg,
        }
    }

    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub(crate) fn set_open(&mut self, decompressor: Option<Decompressor>, now: Instant) {
        let idle = self
            .config
            .deflate
            .as_ref()
            .and_then(|d| d.release_after_idle);
        self.inflate = decompressor.map(|codec| {
            Box::new(Inflate {
                codec,
                idle,
                mark: now,
                released_at: None,
            })
        });
        self.open = true;
        self.last_rx = now;
    }

    /// When the peer's Close arrived.
    fn close_received_at(&self) -> Option<Instant> {
        self.closing.as_ref().and_then(|c| c.received_at)
    }

    fn close_received(&self) -> bool {
        self.close_received_at().is_some()
    }

    fn closing_mut(&mut self) -> &mut Closing {
        self.closing.get_or_insert_with(Box::default)
    }

    pub(crate) fn push_event(&mut self, ev: Event) {
        self.events.push_back(ev);
    }

    /// Moves the frames of the ready region into the event queue, before
    /// the full parser runs (it works at the front of the buffer) and
    /// before the buffer is dropped.
    fn materialize(&mut self) {
        while self.ready > 0 {
            let ev = self.take_ready();
            self.events.push_back(ev);
        }
    }

    /// The event for the first frame of the ready region.
    #[inline]
    fn take_ready(&mut self) -> Event {
        let b0 = self.buf[0];
        let hlen = if self.role == Role::Server { 6 } else { 2 };
        let total = hlen + usize::from(self.buf[1] & 0x7F);
        let mut frame = self.buf.split_to(total).freeze();
        frame.advance(hlen);
        self.ready -= total;
        self.ready_count -= 1;
        self.small_event(b0, frame)
    }

    /// Buffers bytes that arrived before the connection opened.
    pub(crate) fn stash(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    pub(crate) fn stashed(&self) -> usize {
        self.buf.len()
    }

    /// Marks the connection finished (a failed or rejected handshake).
    pub(crate) fn finish(&mut self) {
        self.materialize();
        self.failed = true;
        self.set_transport_done();
        self.buf = BytesMut::new();
    }

    /// Feeds bytes read from the transport.
    ///
    /// After calling this: drain [`ReceiveHalf::poll_event`], and have the
    /// sending half transmit (there may be replies), then re-arm the timer
    /// from [`ReceiveHalf::poll_timeout`].
    pub fn receive(&mut self, now: Instant, data: &[u8]) {
        if !self.open || self.failed || self.close_received() || data.is_empty() {
            // RFC 6455 §5.5.1: nothing is processed after a Close frame.
            return;
        }
        self.last_rx = now;
        self.buffer_peaked |= self.buf.len() + data.len() > KEEP_INPUT_PEAK;
        if data.len() > RECEIVE_STEP {
            self.buf.reserve(data.len());
        }
        // A large read is copied in and parsed a step at a time, so each
        // step's payload bytes are unmasked and validated while still in L1
        // rather than after the whole read went through it. Parsing is
        // incremental: the events and replies are the same as in one go.
        for step in data.chunks(RECEIVE_STEP) {
            if let Err(e) = self.receive_step(step, now) {
                self.fail(e, now);
            }
            if self.failed || self.close_received() {
                // Nothing after a Close frame or an error is looked at.
                break;
            }
        }
        self.release_idle_buffer();
        self.settle_budget();
    }

    /// Bytes held for the message in progress: its frame's payload so far
    /// (the input buffer starts there while a header is pending) and what
    /// was reassembled or inflated before it.
    fn message_bytes(&self) -> usize {
        let partial = if self.header.is_some() {
            self.buf.len()
        } else {
            0
        };
        partial + self.current.data.len()
    }

    /// Gives back what the budget reservation no longer covers: called
    /// after every read, so a delivered message's reservation returns at
    /// once.
    #[inline]
    fn settle_budget(&mut self) {
        if self.held.bytes() != 0 {
            let now = self.message_bytes();
            self.held.settle(&self.config, now);
        }
    }

    fn receive_step(&mut self, mut step: &[u8], now: Instant) -> Result<(), ProtocolError> {
        // The payload of a data frame in progress whose buffered bytes are
        // all processed goes in through `append_payload`: copied and
        // unmasked in one pass, and validated while hot. The rest of the
        // step (the next frames) is appended and parsed as usual.
        if let Some(h) = self.header {
            if self.buf.len() == self.processed && !h.opcode.is_control() {
                let n = ((h.payload_len - self.processed as u64) as usize).min(step.len());
                self.append_payload(&step[..n], h)?;
                step = &step[n..];
            }
        }
        self.buf.extend_from_slice(step);
        self.parse(now)
    }

    /// Appends bytes of the current frame's payload, unmasking and
    /// validating them on the way: the same work as `parse` does on bytes
    /// already buffered, without a second pass over them.
    fn append_payload(&mut self, src: &[u8], h: FrameHeader) -> Result<(), ProtocolError> {
        let start = self.buf.len();
        match h.mask {
            Some(m) => extend_masked(&mut self.buf, src, m, self.processed),
            None => self.buf.extend_from_slice(src),
        }
        self.processed += src.len();
        if self.current.kind == Some(MessageKind::Text) && !self.current.compressed {
            self.utf8
                .feed(&self.buf[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// The transport reached end of stream.
    pub fn receive_eof(&mut self, _now: Instant) {
        if self.eof {
            return;
        }
        self.eof = true;
        self.set_transport_done();
        if self.header.is_some() || self.current.kind.is_some() {
            // The message in progress can never complete: its memory and
            // its budget reservation go now, not when the application drops
            // the connection.
            self.materialize();
            self.buf = BytesMut::new();
            self.header = None;
            self.current = Current::default();
            self.held.settle(&self.config, 0);
        }
        if !self.failed && !self.close_received() {
            self.failed = true;
            self.events.push_back(Event::Error(ConnectionError::Eof));
        }
    }

    /// The next event, if any.
    #[must_use]
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.ready > 0 {
            let ev = self.take_ready();
            if self.ready == 0 {
                self.release_idle_buffer();
            }
            return Some(ev);
        }
        let ev = self.events.pop_front()?;
        if self.events.is_empty()
            && (self.events.capacity() > KEEP_EVENT_SLOTS
                || matches!(ev, Event::Request(_) | Event::Connected(_)))
        {
            // Messages mostly skip the queue (see `ready`): the slots the
            // handshake's event took are not kept for the connection's life.
            self.events = VecDeque::new();
        }
        if let Event::Close(_) | Event::Error(_) = ev {
            self.release_deferred_close();
        }
        Some(ev)
    }

    /// The Close frame held back until the application took the Close or
    /// Error event (out of line: `poll_event` runs once per message).
    #[cold]
    fn release_deferred_close(&mut self) {
        if let Some((frame, at, done)) = self.closing.as_mut().and_then(|c| c.deferred.take()) {
            if self.link.close_sent_at().is_none() {
                self.link.push(Reply::Close(frame, at));
            }
            if done {
                self.set_transport_done();
            }
        }
    }

    fn set_transport_done(&mut self) {
        self.transport_done = true;
        self.link.set_finished();
    }

    /// Events waiting to be taken with `poll_event`.
    pub fn pending_events(&self) -> usize {
        self.events.len() + self.ready_count
    }

    /// Whether the sending half has control replies to encode and transmit.
    pub fn has_pending_replies(&self) -> bool {
        self.link.has_replies()
    }

    /// The connection state.
    pub fn state(&self) -> State {
        if !self.open && !self.failed {
            return State::Connecting;
        }
        let sent = self.link.close_sent_at().is_some();
        let received = self.close_received();
        if self.failed || self.eof || self.transport_done || (sent && received) {
            State::Closed
        } else if sent || received {
            State::Closing
        } else {
            State::Open
        }
    }

    /// Whether the transport should be shut down once pending output is
    /// written: at once for a server after the closing handshake, for a
    /// client when the server has not closed TCP within `close_timeout`,
    /// and for either after a failure.
    pub fn should_close_transport(&self) -> bool {
        if self.transport_done {
            return true;
        }
        self.role == Role::Server && self.close_received() && self.link.close_sent_at().is_some()
    }

    /// When [`ReceiveHalf::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|(t, _)| t)
    }

    /// The one timer that matters in the current state: `poll_timeout` and
    /// `handle_timeout` both read it, so they cannot disagree (a deadline
    /// that `handle_timeout` ignores would make a driver spin).
    fn next_deadline(&self) -> Option<(Instant, Due)> {
        if !self.open || self.transport_done {
            return None;
        }
        if self.failed {
            // A protocol error whose Close waits for the application to take
            // the Error event: bound the wait.
            let t = self.closing.as_ref()?.failed_at?;
            return after(t, self.config.close_timeout).map(|d| (d, Due::FailedLinger));
        }
        let close_timeout = self.config.close_timeout;
        match (self.link.close_sent_at(), self.close_received_at()) {
            (Some(s), None) => after(s, close_timeout).map(|d| (d, Due::ClosingHandshake)),
            (Some(s), Some(r)) => after(s.max(r), close_timeout).map(|d| (d, Due::Linger)),
            (None, Some(_)) => None,
            (None, None) => {
                let keepalive = self
                    .config
                    .ping_interval
                    .and_then(|iv| match self.ping_sent {
                        None => after(self.last_rx, iv).map(|d| (d, Due::Ping)),
                        Some(p) => after(p.max(self.last_rx), self.config.pong_timeout)
                            .map(|d| (d, Due::Pong)),
                    });
                match (keepalive, self.deflate_deadline()) {
                    (Some(k), Some(r)) => Some(if r.0 < k.0 { r } else { k }),
                    (k, r) => k.or(r),
                }
            }
        }
    }

    /// When to free idle zlib streams: `release_after_idle` after the last
    /// traffic. Once released, armed again only by new traffic (bytes
    /// received, or a message sent, which the sending half notes in the
    /// link), so an idle connection does not wake up for nothing.
    fn deflate_deadline(&self) -> Option<(Instant, Due)> {
        let inflate = self.inflate.as_ref()?;
        let idle = inflate.idle?;
        let armed = match inflate.released_at {
            None => true,
            Some(at) => self.last_rx > at || self.link.sent_since_check(),
        };
        if !armed {
            return None;
        }
        after(self.last_rx.max(inflate.mark), idle).map(|d| (d, Due::ReleaseDeflate))
    }

    /// Runs the timers that are due at `now`. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((deadline, due)) = self.next_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        match due {
            Due::ClosingHandshake => {
                self.events
                    .push_back(Event::Error(ConnectionError::TimedOut(
                        Timeout::ClosingHandshake,
                    )));
                self.failed = true;
                self.set_transport_done();
            }
            // The client waited for the server to close TCP (RFC 6455 §7.1.1).
            Due::Linger => self.set_transport_done(),
            Due::FailedLinger => {
                // The application never took the Error event: send the Close
                // anyway, as taking it would have.
                self.release_deferred_close();
                self.set_transport_done();
            }
            Due::Ping => {
                self.ping_count = self.ping_count.wrapping_add(1);
                let payload = Bytes::copy_from_slice(&self.ping_count.to_be_bytes());
                self.link.push(Reply::Ping(payload));
                self.ping_sent = Some(now);
            }
            Due::ReleaseDeflate => {
                let busy = self.link.take_sent();
                let Some(inflate) = &mut self.inflate else {
                    return;
                };
                if busy {
                    // The sending half was busy meanwhile: wait a full
                    // period from now.
                    inflate.mark = now;
                    inflate.released_at = None;
                } else {
                    inflate.codec.release();
                    self.link.push(Reply::ReleaseCompressor);
                    inflate.released_at = Some(now);
                }
            }
            Due::Pong => {
                self.events
                    .push_back(Event::Error(ConnectionError::TimedOut(Timeout::Pong)));
                self.link.push(Reply::Close(
                    CloseFrame::new(CloseCode::INTERNAL_ERROR, "keepalive ping timeout"),
                    now,
                ));
                self.failed = true;
                self.set_transport_done();
            }
        }
    }

    pub(crate) fn process(&mut self, now: Instant) {
        if let Err(e) = self.parse(now) {
            self.fail(e, now);
        }
        self.release_idle_buffer();
        self.settle_budget();
    }

    fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() && (self.buffer_peaked || self.buf.capacity() > KEEP_INPUT_CAPACITY)
        {
            self.buf = BytesMut::new();
            self.large_buffer = false;
            self.buffer_peaked = false;
        }
    }

    fn fail(&mut self, err: ProtocolError, now: Instant) {
        if self.failed {
            return;
        }
        // The frames before the bad one are delivered before the Error.
        self.materialize();
        self.failed = true;
        self.buf = BytesMut::new();
        self.header = None;
        self.current = Current::default();
        self.held.settle(&self.config, 0);
        let mut reason = err.to_string();
        truncate_at_char(&mut reason, 123);
        // Messages that came before the bad frame are delivered, and the
        // application's answers to them go out before our Close (Autobahn
        // counts anything else as NON-STRICT); see `poll_event`.
        let closing = self.closing_mut();
        closing.failed_at = Some(now);
        closing.deferred = Some((CloseFrame::new(err.close_code(), reason), now, true));
        self.events
            .push_back(Event::Error(ConnectionError::Protocol(err)));
    }

    fn parse(&mut self, now: Instant) -> Result<(), ProtocolError> {
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
                // Room for the rest of the frame, in steps, so a header that
                // declares a huge frame does not reserve it all up front;
                // the memory budget covers each step before it is taken.
                let more = (len - self.buf.len()).min(1 << 20);
                // Covered at every read, not only when the buffer grows: it
                // grows by more than it is asked for, and the bytes that
                // fill that room are held all the same.
                let total = self.buf.len() + more + self.current.data.len();
                self.held.cover(&self.config, total)?;
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
        }
        Ok(())
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
                self.ready += total;
                self.ready_count += 1;
                continue;
            }
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
    fn small_event(&self, b0: u8, payload: Bytes) -> Event {
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

    fn handle_frame(
        &mut self,
        h: FrameHeader,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        match h.opcode {
            OpCode::Ping => {
                if self.config.auto_pong && self.link.close_sent_at().is_none() {
                    self.link.push(Reply::Pong(payload.clone()));
                }
                self.events.push_back(Event::Ping(payload));
            }
            OpCode::Pong => {
                if self.ping_sent.is_some() && payload[..] == self.ping_count.to_be_bytes() {
                    self.ping_sent = None;
                }
                self.events.push_back(Event::Pong(payload));
            }
            OpCode::Close => {
                let frame = CloseFrame::parse(&payload)?;
                // Nothing after a Close is processed: the input and a
                // message it interrupted go now, with their reservation.
                self.buf = BytesMut::new();
                self.current = Current::default();
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
        if self.reassemble && !self.current.compressed && !(h.fin && self.current.frames == 1) {
            let total = self.current.data.len() + payload.len();
            self.held.cover(&self.config, total)?;
        }
        let cur = &mut self.current;
        let kind = cur.kind.expect("set by check_header");
        let text = kind == MessageKind::Text;
        let data = if cur.compressed {
            let d = &mut self
                .inflate
                .as_mut()
                .expect("compressed implies a decompressor")
                .codec;
            let mut fresh = BytesMut::new();
            let out = if self.reassemble {
                &mut cur.data
            } else {
                &mut fresh
            };
            let before = out.len();
            let (held, config) = (&mut self.held, &*self.config);
            d.decompress_within(&payload, h.fin, out, config.max_message_size, &mut |n| {
                held.cover(config, n)
            })?;
            if text {
                self.utf8
                    .feed(&out[before..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            if self.reassemble {
                None
            } else {
                Some(fresh.freeze())
            }
        } else if self.reassemble {
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
        if h.fin && text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !self.reassemble {
            self.events.push_back(Event::Fragment(Fragment {
                kind,
                data: data.unwrap_or_default(),
                first: cur.frames == 1,
                last: h.fin,
            }));
        } else if h.fin {
            let bytes = data.unwrap_or_else(|| cur.data.split().freeze());
            self.events.push_back(match kind {
                MessageKind::Text => Event::Text(Utf8Bytes::from_validated(bytes)),
                MessageKind::Binary => Event::Binary(bytes),
            });
        }
        if h.fin {
            cur.kind = None;
        }
        Ok(())
    }
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
