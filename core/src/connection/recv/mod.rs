//! The receiving half: parses frames, reassembles messages, runs the timers.

mod message;
mod parse;
mod timers;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::link::{Link, Reply};
use super::stats::RecvCounters;
use super::{Event, Stats};
use crate::budget::Held;
use crate::close::CloseFrame;
use crate::config::Config;
use crate::deflate::Decompressor;
use crate::error::{ConnectionError, ProtocolError};
use crate::frame::FrameHeader;
use crate::mask::extend_masked;

use crate::message::MessageKind;
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

/// One call that processes input (`receive`, `resume`) inflates at most
/// this much output; the rest of the frame waits, and `has_pending_work`
/// says so. A compressed message is thus inflated a slice at a time, with
/// the driver yielding to its executor between slices, instead of up to
/// `max_message_size` (64 MiB, 40-50 ms of CPU) in one call while every
/// other task on that thread waits. 256 KiB is about 0.2 ms of inflate on
/// a bomb (0.5-1 ms on text): short enough that 200 connections' slices
/// queue behind one another for tens of milliseconds, not seconds; four
/// inflate steps (`INFLATE_CHUNK`), so a slice's fixed cost (returning to
/// the driver, a wake-up, a poll) stays under 1%; larger than nearly every
/// real message, which therefore never pauses. And each slice grows the
/// message's budget reservation before the next, so concurrent bombs meet
/// the process-wide budget while each holds a few MiB, not 64.
pub(crate) const INFLATE_QUANTUM: usize = 256 << 10;

/// Answered Pings and Pongs that wait unread at most (see `push_answered`
/// and [`Event::Ping`]).
pub const KEEP_ANSWERED: usize = 16;

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
    /// When the connection became done with its transport, as far as an
    /// instant is known (see `ReceiveHalf::give_up_deadline`).
    done_at: Option<Instant>,
    /// The peer did not take our last bytes within `close_timeout` of the
    /// end: `should_abandon_output`.
    gave_up: bool,
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
    /// When bytes last arrived (only the idle release needs it, so it
    /// lives here and not in every connection).
    last_rx: Instant,
    /// `Stats::compressed_bytes_in`, which only compressed connections
    /// count.
    compressed_bytes: u64,
    /// Inflate output produced by the current call (`receive`, `resume`):
    /// at most `INFLATE_QUANTUM`.
    spent: usize,
    /// The frame being inflated in slices (see `INFLATE_QUANTUM`); boxed,
    /// as only a large compressed frame needs it.
    backlog: Option<Box<Backlog>>,
}

/// What is left of a compressed frame paused at `INFLATE_QUANTUM`.
#[derive(Debug)]
struct Backlog {
    /// Its compressed payload not yet consumed.
    input: Bytes,
    /// The whole payload's length: `input` is a slice of it, and keeps
    /// all of it allocated until the frame is done.
    pinned: usize,
    fin: bool,
    /// Where its output starts in `Current::data`.
    start: usize,
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
    /// When the last keepalive Ping was sent (at first, when the
    /// connection opened): the next one is due `ping_interval` after it.
    last_ping: Instant,
    /// The last keepalive Ping waits for its Pong (due `pong_timeout`
    /// after `last_ping`).
    ping_outstanding: bool,
    /// The payload of the last keepalive Ping, a counter.
    ping_count: u32,
    /// The receiving side's counters (see [`Stats`]).
    stats: RecvCounters,
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
    /// A compressed frame is being inflated in slices (`Inflate::backlog`
    /// holds the rest): nothing after it is parsed until it is done.
    backlog: bool,
    /// The slice size, when a test varies it (`INFLATE_QUANTUM` otherwise).
    #[cfg(test)]
    quantum: usize,
    /// Events in `events` that need nothing from the application: Pings
    /// already answered and Pongs (see `push_answered`). At most
    /// `KEEP_ANSWERED`.
    answered: usize,
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
            last_ping: now,
            ping_outstanding: false,
            ping_count: 0,
            stats: RecvCounters::default(),
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
            backlog: false,
            #[cfg(test)]
            quantum: INFLATE_QUANTUM,
            answered: 0,
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
            .and_then(crate::DeflateConfig::idle_release);
        self.inflate = decompressor.map(|codec| {
            Box::new(Inflate {
                codec,
                idle,
                mark: now,
                released_at: None,
                last_rx: now,
                compressed_bytes: 0,
                spent: 0,
                backlog: None,
            })
        });
        self.open = true;
        self.last_ping = now;
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

    /// Queues a Ping the core has answered, or a Pong. They need nothing
    /// from the application, so they do not count against read-ahead
    /// (`pending_events_for_read_ahead`): an application that only sends
    /// keeps reading, answering Pings and echoing a Close behind them. So
    /// that they cannot pile up meanwhile, at most `KEEP_ANSWERED` wait
    /// unread; later ones are answered but not reported until the
    /// application takes events again.
    fn push_answered(&mut self, ev: Event) {
        if self.answered < KEEP_ANSWERED {
            self.answered += 1;
            self.events.push_back(ev);
        }
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
        self.stats.wire_bytes += data.len() as u64;
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
        if self.link.is_aborted() {
            // Nothing could be answered (see `SendHalf::abort`).
            return;
        }
        if let Some(inflate) = self.inflate.as_deref_mut() {
            inflate.last_rx = now;
            inflate.spent = 0;
        }
        self.stats.wire_bytes += data.len() as u64;
        self.buffer_peaked |= self.buf.len() + data.len() > KEEP_INPUT_PEAK;
        if data.len() > RECEIVE_STEP {
            self.buf.reserve(data.len());
        }
        // A large read is copied in and parsed a step at a time, so each
        // step's payload bytes are unmasked and validated while still in L1
        // rather than after the whole read went through it. Parsing is
        // incremental: the events and replies are the same as in one go.
        for step in data.chunks(RECEIVE_STEP) {
            if self.backlog {
                // This call has inflated its slice: the rest waits,
                // unparsed, for `resume` (or the next read).
                self.buf.extend_from_slice(step);
                continue;
            }
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
    /// was reassembled or inflated before it. While a frame is inflated in
    /// slices, its compressed payload (all of it stays allocated) and the
    /// whole output allocation (grown ahead of the output, with the
    /// budget's grant) count.
    fn message_bytes(&self) -> usize {
        let partial = if self.header.is_some() {
            self.buf.len()
        } else {
            0
        };
        if self.backlog {
            return partial + self.current.data.capacity() + self.backlog_input();
        }
        partial + self.current.data.len()
    }

    fn backlog_input(&self) -> usize {
        self.inflate
            .as_ref()
            .and_then(|i| i.backlog.as_ref())
            .map_or(0, |b| b.pinned)
    }

    /// Whether bytes already received wait to be processed without new
    /// input: a compressed frame is being inflated in slices (each call
    /// that processes input inflates at most 256 KiB, so a large message,
    /// or a decompression bomb, cannot keep the caller for the whole
    /// `max_message_size`), and what was received after it waits behind
    /// it. Call [`resume`](Self::resume) until this is false, draining
    /// events as usual in between; a driver yields to its other tasks
    /// between calls. Bytes fed with `receive` meanwhile are kept and also
    /// advance the work by one slice; [`receive_eof`](Self::receive_eof)
    /// finishes it first.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use wsmachine::{Config, Connection, Negotiated, Role};
    /// let mut conn = Connection::upgraded(Role::Server, Config::default(), Negotiated::default(), None, Instant::now());
    /// # let bytes_read: &[u8] = &[];
    /// conn.receive(Instant::now(), bytes_read);
    /// loop {
    ///     while let Some(_event) = conn.poll_event() { /* ... */ }
    ///     if !conn.has_pending_work() {
    ///         break;
    ///     }
    ///     // an async driver yields to its executor here
    ///     conn.resume(Instant::now());
    /// }
    /// ```
    #[inline]
    pub fn has_pending_work(&self) -> bool {
        self.backlog
    }

    /// Processes the next slice of what was received (see
    /// [`has_pending_work`](Self::has_pending_work)); does nothing when
    /// nothing waits.
    ///
    /// After calling this: drain [`ReceiveHalf::poll_event`], have the
    /// sending half transmit, re-arm the timer, as after `receive`.
    pub fn resume(&mut self, now: Instant) {
        if !self.backlog {
            return;
        }
        if self.link.is_aborted() {
            // Nothing could be answered (see `SendHalf::abort`), as in
            // `receive`: the message is dropped, not inflated further.
            self.materialize();
            self.drop_message_in_progress();
            return;
        }
        self.process(now);
    }

    /// Inflates the next slice of the frame in `Inflate::backlog`.
    #[cold]
    pub(super) fn resume_inflate(&mut self) -> Result<(), ProtocolError> {
        let backlog = self
            .inflate
            .as_mut()
            .and_then(|i| i.backlog.take())
            .expect("a backlog is kept in the decompressor's state");
        self.backlog = false;
        let Backlog {
            input,
            pinned,
            fin,
            start,
        } = *backlog;
        self.inflate_slice(input, pinned, fin, start)
    }

    /// Sets the slice size, so tests can check that the outcome does not
    /// depend on it.
    #[cfg(test)]
    pub(crate) fn set_quantum(&mut self, quantum: usize) {
        self.quantum = quantum;
    }

    /// Bytes reassembled or inflated so far for the message in progress.
    #[cfg(test)]
    pub(crate) fn message_len(&self) -> usize {
        self.current.data.len()
    }

    /// The input buffer's allocation.
    #[cfg(test)]
    pub(crate) fn input_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The slice size: `INFLATE_QUANTUM`, or what a test set.
    #[inline]
    pub(super) fn quantum(&self) -> usize {
        #[cfg(test)]
        return self.quantum;
        #[cfg(not(test))]
        INFLATE_QUANTUM
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
        let streams = self.buf.is_empty() && self.streams_into_message(&h);
        let dst = if streams {
            &mut self.current.data
        } else {
            &mut self.buf
        };
        let start = dst.len();
        match h.mask {
            Some(m) => extend_masked(dst, src, m, self.processed),
            None => dst.extend_from_slice(src),
        }
        if self.current.kind == Some(MessageKind::Text) && !self.current.compressed {
            self.utf8
                .feed(&dst[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if streams {
            // After the step's bytes arrived, as `parse` covers them: an
            // invalid byte among them is the error, not the budget.
            self.streamed(h, src.len())?;
        } else {
            self.processed += src.len();
        }
        Ok(())
    }

    /// Covers what the message holds and the next step of the `rest` of
    /// its frame still to come (at most 1 MiB, so a header that declares a
    /// huge frame does not reserve it all up front): a message reserves
    /// before it grows. Covered at every read, not only when a buffer
    /// grows: buffers grow by more than they are asked for, and the bytes
    /// that fill that room are held all the same. Gives the step.
    fn cover_ahead(&mut self, rest: usize) -> Result<usize, ProtocolError> {
        let more = rest.min(1 << 20);
        self.held.cover(&self.config, self.message_bytes() + more)?;
        Ok(more)
    }

    /// Whether the payload of the data frame `h` goes into the message as
    /// it arrives rather than waiting whole in the input buffer: a frame of
    /// a fragmented message being reassembled, uncompressed (a compressed
    /// frame is inflated whole). A message of one frame is handed out as
    /// the input buffer's bytes (no copy), so it waits there instead.
    ///
    /// A fragment copied in only once complete would leave the input
    /// buffer's allocation behind, as large as the frame and uncounted by
    /// the memory budget, for as long as the message lasts.
    #[inline]
    fn streams_into_message(&self, h: &FrameHeader) -> bool {
        // Most frames are whole messages: that test first.
        (!h.fin || self.current.frames != 1)
            && self.reassemble
            && !h.opcode.is_control()
            && !self.current.compressed
    }

    /// `n` bytes of the current frame (`h`, unmasked and validated) went
    /// into the message: what remains of the frame is a frame of its own,
    /// its mask key turned to start where they ended, and the budget covers
    /// the message and the next step of that rest.
    fn streamed(&mut self, mut h: FrameHeader, n: usize) -> Result<(), ProtocolError> {
        debug_assert_eq!(self.processed, 0);
        self.stats.bytes += n as u64;
        h.payload_len -= n as u64;
        if let Some(m) = h.mask.as_mut() {
            m.rotate_left(n % 4);
        }
        self.header = Some(h);
        self.cover_ahead(h.payload_len as usize)?;
        Ok(())
    }

    /// The transport reached end of stream.
    pub fn receive_eof(&mut self, now: Instant) {
        if self.eof {
            return;
        }
        // What was received comes before the end (a caller that resumes
        // until nothing is pending never has any left here).
        while self.backlog {
            self.process(now);
        }
        self.eof = true;
        self.set_transport_done_at(Some(now));
        if self.header.is_some() || self.current.kind.is_some() {
            // The message in progress can never complete: its memory and
            // its budget reservation go now, not when the application drops
            // the connection.
            self.materialize();
            self.drop_message_in_progress();
        }
        if !self.failed && !self.close_received() {
            self.failed = true;
            self.events.push_back(Event::Error(ConnectionError::Eof));
        }
    }

    /// The next event, if any.
    ///
    /// Its one effect beyond the queue: taking a [`Event::Close`] or
    /// [`Event::Error`] releases the Close frame that answers it (the echo
    /// of the peer's Close, or ours after a protocol error), held until now
    /// so that the application's answers to the events before it are sent
    /// first. After taking one, transmit: the Close is pending output.
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
        let Some(ev) = self.events.pop_front() else {
            return self.take_send_failure();
        };
        if matches!(ev, Event::Pong(_)) || (matches!(ev, Event::Ping(_)) && self.config.auto_pong) {
            // Queued by `push_answered` (Pings only with `auto_pong`).
            self.answered -= 1;
        }
        if self.events.is_empty()
            && (self.events.capacity() > KEEP_EVENT_SLOTS
                || matches!(
                    ev,
                    Event::Request(_) | Event::Connected(_) | Event::Ping(_) | Event::Pong(_)
                ))
        {
            // Messages mostly skip the queue (see `ready`): the slots the
            // handshake's event took are not kept for the connection's life,
            // nor those of a burst of control frames (up to 16 answered
            // ones wait, which the steady state of messages never needs).
            self.events = VecDeque::new();
        }
        if let Event::Close(_) | Event::Error(_) = ev {
            self.release_deferred_close();
        }
        Some(ev)
    }

    /// The sending half dropped its output at `Config::max_pending_output`
    /// (see [`crate::SendError::PendingOutputLimit`]): reported once the
    /// events received before it have been taken, and the connection is
    /// then done with its transport.
    #[cold]
    fn take_send_failure(&mut self) -> Option<Event> {
        if !self.link.is_aborted() || self.failed {
            return None;
        }
        self.failed = true;
        self.drop_message_in_progress();
        self.set_transport_done();
        Some(Event::Error(ConnectionError::PendingOutputLimit))
    }

    /// Whether the sending half dropped its output at
    /// `Config::max_pending_output`, whether or not the error event was
    /// taken yet.
    pub(crate) fn send_failed(&self) -> bool {
        self.link.is_aborted()
    }

    /// The Close frame held back until the application took the Close or
    /// Error event (out of line: `poll_event` runs once per message).
    /// Returns whether a Close frame was queued.
    #[cold]
    fn release_deferred_close(&mut self) -> bool {
        let Some((frame, at, done)) = self.closing.as_mut().and_then(|c| c.deferred.take()) else {
            return false;
        };
        let queued = self.link.close_sent_at().is_none();
        if queued {
            self.link.push(Reply::Close(frame, at));
        }
        if done {
            // From when the Close was decided (taking the event has no
            // clock): a peer has `close_timeout` from its Close, or from
            // its error, to read our answer.
            self.set_transport_done_at(Some(at));
        }
        queued
    }

    /// Marks the connection done with its transport at `at` (when known:
    /// the give-up timer runs from the earliest instant recorded).
    fn set_transport_done_at(&mut self, at: Option<Instant>) {
        self.transport_done = true;
        self.link.set_finished();
        if let Some(at) = at {
            self.closing_mut().done_at.get_or_insert(at);
        }
    }

    fn set_transport_done(&mut self) {
        self.set_transport_done_at(None);
    }

    /// Events waiting to be taken with `poll_event`.
    pub fn pending_events(&self) -> usize {
        self.events.len() + self.ready_count
    }

    /// Events waiting that should hold back reading ahead: messages,
    /// fragments, the Close, the error, and Pings the application answers
    /// itself (`auto_pong` off) — not the Pings the core has answered nor
    /// the Pongs, which need nothing from the application. At most
    /// `pending_events()` and at least `pending_events() - 16`.
    ///
    /// A driver that bounds read-ahead with this (rather than with
    /// `pending_events`) keeps reading, answering Pings and seeing the
    /// peer's Close for an application that only sends; at most 16
    /// answered events wait unread meanwhile, later ones are answered
    /// without being reported (see [`Event::Ping`]).
    pub fn pending_events_for_read_ahead(&self) -> usize {
        self.events.len() - self.answered + self.ready_count
    }

    /// Sends the Close frame held back behind unread events — the echo of
    /// the peer's Close, or ours after a protocol error — when nothing
    /// before it waits for the application: every event ahead of the
    /// `Close`/`Error` event is an answered Ping or a Pong
    /// (`pending_events_for_read_ahead() == 1`). Returns whether a Close
    /// frame was queued by this call; then `has_pending_replies()` is true
    /// and the sending half has it to transmit.
    ///
    /// No event is taken: the answered events and the `Close`/`Error` event
    /// stay queued, and `poll_event` still returns them in order. Behind a
    /// message, a fragment or a Ping the application answers itself it
    /// does nothing (the Close then leaves when `poll_event` hands out its
    /// event, after the application's answers to what came before).
    ///
    /// For a driver whose application only sends: call it after each of
    /// the application's commands (its answers to the events it took are
    /// queued by then), so a peer's Close is echoed without `recv`.
    /// Calling it at any other time, or again, is harmless.
    pub fn release_close(&mut self) -> bool {
        let held = self.closing.as_ref().is_some_and(|c| c.deferred.is_some());
        if !held || self.pending_events_for_read_ahead() != 1 {
            return false;
        }
        // The deferred Close always belongs to the last event queued
        // (nothing is processed after a Close or an error), so the one
        // event that counts is that Close or Error.
        debug_assert!(matches!(
            self.events.back(),
            Some(Event::Close(_) | Event::Error(_))
        ));
        self.release_deferred_close()
    }

    /// The receiving side's counters (messages, bytes, automatic Pongs,
    /// keepalive Pings and their round-trip time); the sending ones are
    /// zero here (see [`crate::SendHalf::stats`], and
    /// [`crate::Connection::stats`] for both).
    pub fn stats(&self) -> Stats {
        let c = &self.stats;
        Stats {
            messages_in: c.messages,
            bytes_in: c.bytes,
            compressed_bytes_in: self.inflate.as_ref().map_or(0, |i| i.compressed_bytes),
            wire_bytes_in: c.wire_bytes,
            keepalive_pings: self.ping_count.into(),
            auto_pongs: c.auto_pongs.into(),
            last_rtt: c.rtt(),
            ..Stats::default()
        }
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
        if self.failed
            || self.eof
            || self.transport_done
            || (sent && received)
            || self.send_failed()
        {
            State::Closed
        } else if sent || received {
            State::Closing
        } else {
            State::Open
        }
    }

    /// Whether the connection is done with its transport: shut it down
    /// once the sending half's pending output is written — at once for a
    /// server after the closing handshake, for a client when the server
    /// has not closed TCP within `close_timeout`, for either after a
    /// failure. (Not [`Connection::should_close_transport`](crate::Connection::should_close_transport), which also
    /// waits for that output: a half cannot see the other's buffer.)
    pub fn is_done_with_transport(&self) -> bool {
        self.transport_done || self.closed_both_ways() || self.link.is_aborted()
    }

    /// Whether to drop our unsent output and close the transport: the
    /// connection is done, but the peer has not taken our last bytes
    /// within `Config::close_timeout` of the end (a peer that stops reading
    /// must not hold a finished connection, and its memory, forever).
    /// Set by [`ReceiveHalf::handle_timeout`] at the deadline
    /// [`ReceiveHalf::poll_timeout`] gives once the connection is done; a
    /// driver that has written everything and closed the transport by then
    /// never meets it. After it: clear the sending half's output
    /// ([`crate::SendHalf::clear_transmit`]) and close the transport.
    pub fn should_abandon_output(&self) -> bool {
        self.closing.as_ref().is_some_and(|c| c.gave_up)
    }

    /// A server that has sent and received a Close is done at once.
    fn closed_both_ways(&self) -> bool {
        self.role == Role::Server && self.close_received() && self.link.close_sent_at().is_some()
    }

    /// When to give up writing our last bytes once the connection is done
    /// with its transport: `close_timeout` after the end (for a server's
    /// closing handshake, after the later of the two Closes).
    pub(crate) fn give_up_deadline(&self) -> Option<Instant> {
        let closing = self.closing.as_deref();
        if closing.is_some_and(|c| c.gave_up) || !self.is_done_with_transport() {
            return None;
        }
        let both = self
            .link
            .close_sent_at()
            .zip(self.close_received_at())
            .filter(|_| self.role == Role::Server)
            .map(|(s, r)| s.max(r));
        let at = match (closing.and_then(|c| c.done_at), both) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        at.checked_add(self.config.close_timeout)
    }

    pub(crate) fn process(&mut self, now: Instant) {
        if let Some(inflate) = self.inflate.as_deref_mut() {
            inflate.spent = 0;
        }
        if let Err(e) = self.parse(now) {
            self.fail(e, now);
        }
        self.release_idle_buffer();
        self.settle_budget();
    }

    fn release_idle_buffer(&mut self) {
        if self.buf.is_empty()
            && (self.buffer_peaked
                || self.buf.capacity() > KEEP_INPUT_CAPACITY
                || self.keeps_nothing_between_messages())
        {
            self.buf = BytesMut::new();
            self.large_buffer = false;
            self.buffer_peaked = false;
        }
    }

    /// With a pooled decompressor (the peer keeps no context, as with
    /// `DeflateConfig::shared()`), the point is no memory per connection
    /// between messages: the input and output buffers go too once drained,
    /// at the cost of an allocation per read and per message, small beside
    /// inflating.
    pub(super) fn keeps_nothing_between_messages(&self) -> bool {
        self.inflate.as_ref().is_some_and(|i| i.codec.is_pooled())
    }

    /// The compressed message in progress, if any, will never complete: a
    /// pooled zlib stream it holds goes back now, not when the connection
    /// is dropped.
    /// Frees the input and the message in progress, which can never
    /// complete now, with its budget reservation and pooled zlib stream.
    fn drop_message_in_progress(&mut self) {
        self.buf = BytesMut::new();
        self.header = None;
        self.current = Current::default();
        self.abandon_inflate();
        self.held.settle(&self.config, 0);
    }

    fn abandon_inflate(&mut self) {
        if let Some(inflate) = &mut self.inflate {
            inflate.codec.abandon();
            inflate.backlog = None;
        }
        self.backlog = false;
    }

    fn fail(&mut self, err: ProtocolError, now: Instant) {
        if self.failed {
            return;
        }
        // The frames before the bad one are delivered before the Error.
        self.materialize();
        self.failed = true;
        self.drop_message_in_progress();
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
