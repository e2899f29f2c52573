//! [`WebSocket`]: the driver loop over one stream and one core connection.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use wsmachine::{
    CloseCode, CloseFrame, Config, Connection, Event, Message, Negotiated, Role, SendError, State,
};

use crate::driver::{poll_read_once, Dead, Timer, Wakers, Writer, RECV, SEND};
use crate::split::{self, WebSocketReader, WebSocketWriter};
use crate::{ByteStream, Error};

/// A WebSocket connection over a Tokio stream `S` (a `TcpStream`, a TLS
/// stream, a Unix socket, an in-memory duplex, …).
///
/// Obtained from [`crate::connect`], [`crate::ConnectBuilder`],
/// [`crate::accept`], [`crate::accept_with`] or
/// [`WebSocket::from_upgraded`]. It is a [`futures_core::Stream`] of
/// received [`Message`]s and a [`futures_sink::Sink`] of messages to send;
/// [`WebSocket::split`] gives halves for separate tasks.
///
/// There is no background task: every method drives the connection as far
/// as it can. Keepalive Pings and timeouts ([`Config::ping_interval`],
/// [`Config::pong_timeout`], [`Config::close_timeout`]) run while the
/// application is inside a method, which in practice means while it awaits
/// [`WebSocket::recv`].
pub struct WebSocket<S> {
    pub(crate) io: S,
    pub(crate) conn: Connection,
    pub(crate) out: Writer,
    pub(crate) events: EventQueue,
    /// The last event handed out left more waiting: the application is in
    /// a recv -> send loop, and the next `send` leaves its output for the
    /// batch that `recv` writes once no event is left.
    batching: bool,
    /// Output that an operation promised to deliver without waiting for it
    /// (a batched `send`, or one whose future was dropped mid-write): any
    /// later operation writes it. Messages queued with the `Sink`'s
    /// `start_send` are written only by `poll_flush` (or past the high-water
    /// mark), as the `Sink` contract has it, so that `forward` writes once
    /// per batch.
    deferred: bool,
    timer: Timer,
    wakers: Arc<Wakers>,
    waker: Waker,
    /// No more reads: end of stream or a read error.
    read_done: bool,
    /// The transport was shut down, failed, or was given up on.
    pub(crate) shut: bool,
    /// When to give up writing the last bytes to a peer that does not read.
    linger: Option<Instant>,
    /// A transport error not yet reported by `recv`.
    fatal: Option<io::Error>,
    /// The transport error that ended the connection, for `send` to report.
    dead: Dead,
    close_requested: bool,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.conn)
            .field("pending_output", &self.conn.pending_output())
            .field(
                "queued_events",
                &(self.events.len() + self.conn.pending_events()),
            )
            .field("shut", &self.shut)
            .finish_non_exhaustive()
    }
}

/// Received events are normally left in the core until the application
/// asks for one: taking the peer's Close (or a protocol error) from the core
/// is what releases our Close frame, so the application's answers to the
/// messages before it go out first. When the application only sends, the
/// driver still reads (so Pings are answered), but only while fewer than
/// this many events wait in the core: with one read of at most
/// [`crate::driver::READ_CHUNK`] bytes per step, that bounds what a peer can
/// make us hold for an application that does not read.
pub(crate) const READ_AHEAD_EVENTS: usize = 32;

/// Events taken from the core once our own Close frame is queued (from then
/// on nothing the application sends can go out, so nothing is gained by
/// leaving them in the core, and `close` needs to see the connection's
/// error), kept for `recv`, with their approximate size so read-ahead can be
/// bounded. Also remembers the peer's Close frame.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    /// Boxed: only a connection that is closing holds events here, so an
    /// open one keeps a pointer, not an empty queue.
    taken: Option<Box<Taken>>,
    close_frame: Option<Box<CloseFrame>>,
}

#[derive(Debug, Default)]
struct Taken {
    queue: VecDeque<Event>,
    /// Approximate bytes held (see `EventQueue::cost`).
    bytes: usize,
}

impl EventQueue {
    fn cost(ev: &Event) -> usize {
        // A fixed overhead too, so a flood of empty messages is bounded as well.
        64 + match ev {
            Event::Text(t) => t.len(),
            Event::Binary(b) | Event::Ping(b) | Event::Pong(b) => b.len(),
            Event::Fragment(f) => f.data.len(),
            _ => 0,
        }
    }

    /// The peer's Close frame, once taken in order.
    pub(crate) fn close_frame(&self) -> Option<&CloseFrame> {
        self.close_frame.as_deref()
    }

    /// Remembers the peer's Close frame when `ev` is one.
    pub(crate) fn note(&mut self, ev: &Event) {
        if let Event::Close(f) = ev {
            self.close_frame = Some(Box::new(f.clone()));
        }
    }

    fn taken(&mut self) -> &mut Taken {
        self.taken.get_or_insert_with(Box::default)
    }

    pub(crate) fn push(&mut self, ev: Event) {
        self.note(&ev);
        let t = self.taken();
        t.bytes += Self::cost(&ev);
        t.queue.push_back(ev);
    }

    /// The next event for the application: those taken from the core
    /// earlier first (they came first), then the core's (`poll`).
    pub(crate) fn next(&mut self, poll: impl FnOnce() -> Option<Event>) -> Option<Event> {
        if let Some(ev) = self.pop() {
            return Some(ev);
        }
        let ev = poll()?;
        self.note(&ev);
        Some(ev)
    }

    /// As [`EventQueue::next`], for the path that does no I/O: a Close or
    /// Error event is left queued (`None`), because taking it may have
    /// released our Close frame, which the caller writes out before
    /// handing it over.
    pub(crate) fn next_without_io(
        &mut self,
        poll: impl FnOnce() -> Option<Event>,
    ) -> Option<Event> {
        let ev = self.next(poll)?;
        if matches!(ev, Event::Close(_) | Event::Error(_)) {
            let t = self.taken();
            t.bytes += Self::cost(&ev);
            t.queue.push_front(ev);
            return None;
        }
        Some(ev)
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        let t = self.taken.as_mut()?;
        let ev = t.queue.pop_front()?;
        t.bytes -= Self::cost(&ev);
        Some(ev)
    }

    /// Approximate bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.taken.as_ref().map_or(0, |t| t.bytes)
    }

    pub(crate) fn len(&self) -> usize {
        self.taken.as_ref().map_or(0, |t| t.queue.len())
    }

    /// Removes the connection's error event, if it has arrived.
    pub(crate) fn take_error(&mut self) -> Option<wsmachine::ConnectionError> {
        let t = self.taken.as_mut()?;
        let i = t.queue.iter().position(|e| matches!(e, Event::Error(_)))?;
        match t.queue.remove(i) {
            Some(Event::Error(e)) => Some(e),
            _ => None,
        }
    }
}

/// Maps a core event to what `recv_event` returns.
pub(crate) fn event_result(ev: Event) -> Result<Event, Error> {
    match ev {
        Event::Error(e) => Err(Error::Ws(e)),
        ev => Ok(ev),
    }
}

/// Keeps data messages, skips control events.
pub(crate) fn as_message(ev: Result<Event, Error>) -> Option<Result<Message, Error>> {
    match ev {
        Ok(Event::Text(t)) => Some(Ok(Message::Text(t))),
        Ok(Event::Binary(b)) => Some(Ok(Message::Binary(b))),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub(crate) fn new(io: S, conn: Connection) -> Self {
        let (wakers, waker) = Wakers::new_waker();
        WebSocket {
            io,
            conn,
            out: Writer::default(),
            events: EventQueue::default(),
            batching: false,
            deferred: false,
            timer: Timer::default(),
            wakers,
            waker,
            read_done: false,
            shut: false,
            linger: None,
            fatal: None,
            dead: Dead::default(),
            close_requested: false,
        }
    }

    /// Wraps a stream whose opening handshake was done elsewhere (for
    /// example a connection upgraded by hyper or axum): the connection is
    /// open at once with what that handshake `negotiated`.
    ///
    /// For a server, validate the request and build the `101` response with
    /// [`wsmachine::ServerHandshake`] and [`wsmachine::accept_response`], so
    /// that `negotiated` matches what the response announced (see the
    /// `upgrade_hyper` example). Bytes the HTTP server already read past the
    /// request must still be readable from `stream` (hyper's `Upgraded` does
    /// this).
    pub fn from_upgraded(
        stream: S,
        role: Role,
        negotiated: Negotiated,
        config: impl Into<std::sync::Arc<Config>>,
    ) -> Self {
        let mask = match role {
            Role::Client => Some(Box::new(crate::mask_source()) as Box<dyn wsmachine::MaskSource>),
            Role::Server => None,
        };
        let conn = Connection::upgraded(role, config, negotiated, mask, Instant::now());
        WebSocket::new(stream, conn)
    }

    /// What the opening handshake agreed on: subprotocol and compression.
    pub fn negotiated(&self) -> &Negotiated {
        self.conn.negotiated()
    }

    /// The peer's Close frame, once it has been taken in order: by
    /// `recv`/`recv_event` after the messages before it (or earlier by
    /// `send`/`close` when nothing precedes it).
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.events.close_frame()
    }

    /// The connection state (open, closing, closed).
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.conn.config()
    }

    /// Bytes of encoded output not yet accepted by the transport.
    pub fn pending_output(&self) -> usize {
        self.conn.pending_output()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The underlying stream, mutably. Reading or writing it directly
    /// corrupts the connection.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Receives the next message. `None` once the connection has finished
    /// cleanly (closing handshake done, transport shut down); `Some(Err)`
    /// once when it failed, then `None`.
    ///
    /// Pings, Pongs and the peer's Close frame are handled here too (the
    /// core answers Pings and echoes the Close), but not returned: use
    /// [`WebSocket::recv_event`] to see them, and
    /// [`WebSocket::close_frame`] for the peer's close code. With
    /// `Config::reassemble` off, message fragments are only delivered by
    /// `recv_event`.
    ///
    /// Reading is the backpressure: bytes are read from the transport only
    /// while no received event is waiting for the application, so a slow
    /// reader slows the peer down through TCP flow control. Reading also
    /// pauses while more than `Config::write_buffer_high_water` bytes of
    /// output wait to be written.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe. Every byte read and every decoded event is kept in the
    /// `WebSocket`, never in the future, so dropping it (for example when
    /// another branch of `tokio::select!` wins) loses no message and no
    /// state; the next call continues where this one stopped.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next event, control frames included: `Text`, `Binary`,
    /// `Ping`, `Pong`, `Close` (the peer's Close frame) and, in streaming
    /// mode, `Fragment`. A connection failure is returned as `Err` (never as
    /// `Event::Error`). `None` once the connection has finished.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`WebSocket::recv`].
    pub async fn recv_event(&mut self) -> Option<Result<Event, Error>> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Sends a message and waits until the transport has accepted it, with
    /// one exception that makes echo loops fast: right after a `recv` that
    /// left more received messages waiting, the message is only queued, and
    /// the `recv` that finds nothing left writes every queued answer in one
    /// system call (16 pipelined echoes cost one write, not 16). Call
    /// [`WebSocket::flush`] or [`WebSocket::close`] before dropping the
    /// socket if the last `send` may have been such a one.
    ///
    /// First waits while more than `Config::write_buffer_high_water` bytes
    /// of output are pending (only possible when messages were queued with
    /// the `Sink` interface), then encodes the message and writes it. While
    /// waiting it also reads what has arrived, without blocking, so Pings
    /// are answered even when the application never calls `recv`; received
    /// events wait for `recv` (read-ahead stops while 32 of them wait).
    ///
    /// The peer's Close is answered once the application has received every
    /// message before it (here, when nothing else waits; otherwise when
    /// `recv` reaches it): answers to those messages (an echo server's
    /// `recv` → `send`) therefore still go out, before our Close.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe in the sense that matters for `select!`: if the
    /// future is dropped before the message was encoded, it is not sent; if
    /// after, it is sent (by the next operation on this `WebSocket`). The
    /// connection itself stays consistent either way: a message is never
    /// sent partly.
    // Not an `async fn`: its future would hold the argument and the message
    // twice. This one is the message and a reference, in every task that
    // awaits it for the connection's life.
    pub fn send(
        &mut self,
        msg: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        let mut msg = Some(msg.into());
        poll_fn(move |cx| {
            if msg.is_some() {
                ready!(self.poll_send_ready(cx))?;
                // Encoded in the poll that found room: never half-sent.
                self.start_send_msg(msg.take().expect("checked above"))?;
                self.deferred = true;
                if std::mem::take(&mut self.batching) && self.events_waiting() {
                    // More received events wait for `recv`: the application
                    // is in a recv -> send loop. The output stays queued and
                    // the `recv` that finds no event left writes it all in
                    // one system call, instead of one write per message.
                    return Poll::Ready(Ok(()));
                }
            }
            self.poll_flush_out(cx)
        })
    }

    /// `Config::write_buffer_high_water`.
    fn high_water(&self) -> usize {
        self.conn.config().write_buffer_high_water
    }

    /// Whether received events wait for the application.
    fn events_waiting(&self) -> bool {
        self.events.len() > 0 || self.conn.pending_events() > 0
    }

    /// Sends a Ping (payload at most 125 bytes); its Pong is reported by
    /// [`WebSocket::recv_event`].
    ///
    /// # Cancel safety
    ///
    /// As [`WebSocket::send`].
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        poll_fn(|cx| self.poll_send_ready(cx)).await?;
        self.check_open()?;
        self.conn.ping(payload)?;
        self.release_lone_close();
        self.deferred = true;
        poll_fn(|cx| self.poll_flush_out(cx)).await
    }

    /// Writes all pending output.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: output stays queued and the next operation continues
    /// writing it.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush_out(cx)).await
    }

    /// Closes the connection gracefully: sends a Close frame with `code`
    /// and `reason` (at most 123 bytes), waits for the peer's Close (at most
    /// `Config::close_timeout`), then shuts the transport down (a client
    /// first waits, within the same bound, for the server to close TCP, as
    /// RFC 6455 §7.1.1 asks).
    ///
    /// Messages that arrive before the peer's Close are kept: `recv` still
    /// returns them afterwards, then `None`. (While closing, at most
    /// `write_buffer_high_water` bytes of them are read ahead; past that the
    /// close times out rather than buffering without bound.)
    ///
    /// If the peer already closed, this completes the handshake. Returns the
    /// connection's error if it failed meanwhile (for example
    /// [`wsmachine::Timeout::ClosingHandshake`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the Close frame is queued at the first poll, and calling
    /// `close` again continues waiting for the handshake.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.start_close(code, reason)?;
        poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// Splits the connection into a receiving and a sending half that can be
    /// used from separate tasks. Compression keeps working on both.
    ///
    /// Control replies (Pongs, the Close echo, keepalive Pings) are produced
    /// by the reader and written by whichever half gets to the transport
    /// first, so they go out even while the writer is idle. Keepalive and
    /// the closing-handshake timeout run in the reader: keep reading.
    pub fn split(self) -> (WebSocketReader<S>, WebSocketWriter<S>) {
        split::split(self)
    }

    /// A byte stream over this connection: `AsyncRead` yields the payloads
    /// of received messages back to back, each `AsyncWrite::write` sends one
    /// binary message. For tunnelling a byte protocol over WebSocket.
    pub fn into_byte_stream(self) -> ByteStream<S> {
        ByteStream::new(self)
    }

    // ---- the driver ----

    pub(crate) fn parts(self) -> split::Parts<S> {
        split::Parts {
            io: self.io,
            conn: self.conn,
            out: self.out,
            events: self.events,
            read_done: self.read_done,
            shut: self.shut,
            dead: self.dead,
            fatal: self.fatal,
            close_requested: self.close_requested,
        }
    }

    /// After our Close was queued, moves the core's events into `events`
    /// (see [`EventQueue`]); before, they stay in the core.
    fn drain_after_close(&mut self) {
        if self.close_requested {
            while let Some(ev) = self.conn.poll_event() {
                self.events.push(ev);
            }
        }
    }

    /// The next event for the application: those drained after our Close
    /// first (they came first), then the core's.
    fn next_event(&mut self) -> Option<Event> {
        let conn = &mut self.conn;
        self.events.next(|| conn.poll_event())
    }

    /// The transport failed: nothing more is read or written.
    fn kill(&mut self, e: io::Error) {
        if self.shut {
            return;
        }
        self.shut = true;
        self.read_done = true;
        self.out.clear(self.conn.halves().1);
        // A transport error after a completed closing handshake is no news.
        if self.conn.state() != State::Closed {
            self.dead.set(&e);
            self.fatal = Some(e);
        }
    }

    fn closed_error(&self) -> Error {
        self.dead.error()
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.shut {
            Err(self.closed_error())
        } else {
            Ok(())
        }
    }

    /// Writes what the core has queued; shuts the transport down once the
    /// core says the connection is over. `Ready` when nothing is left to
    /// write (or the transport is gone), `Pending` with `cx` registered.
    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shut {
            return Poll::Ready(());
        }
        match ready!(self.out.poll_write(self.conn.halves().1, &mut self.io, cx)) {
            Ok(()) => self.deferred = false,
            Err(e) => {
                self.kill(e);
                return Poll::Ready(());
            }
        }
        if self.conn.should_close_transport() {
            // An error here means the peer is gone already: done either way.
            let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
            self.shut = true;
            self.linger = None;
        }
        Poll::Ready(())
    }

    /// Runs the core's timers (and the linger bound on the last writes).
    /// `Ready` when one fired.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shut {
            return Poll::Pending;
        }
        // The receiving half's verdict, which ignores pending output: the
        // connection's waits for that output to be written.
        if self.linger.is_none() && self.conn.halves().0.should_close_transport() {
            // The core is done but output is stuck behind a peer that does
            // not read: bound how long we keep trying.
            self.linger = Some(Instant::now() + self.conn.config().close_timeout);
        }
        let deadline = match (self.conn.poll_timeout(), self.linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let now = ready!(self.timer.poll(deadline, cx));
        if self.linger.is_some_and(|l| now >= l) {
            self.shut = true;
            self.read_done = true;
            self.out.clear(self.conn.halves().1);
            return Poll::Ready(());
        }
        self.conn.handle_timeout(now);
        self.drain_after_close();
        Poll::Ready(())
    }

    /// Reads once and feeds the core. `Ready` when something happened
    /// (bytes, end of stream, error).
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_done || self.shut {
            return Poll::Pending;
        }
        let conn = &mut self.conn;
        let r = ready!(poll_read_once(&mut self.io, cx, |data| {
            let now = Instant::now();
            if data.is_empty() {
                conn.receive_eof(now);
            } else {
                conn.receive(now, data);
            }
        }));
        match r {
            Ok(0) => self.read_done = true,
            Ok(_) => {}
            Err(e) => {
                self.read_done = true;
                if self.conn.state() == State::Closed {
                    // e.g. a reset after the closing handshake: a plain end.
                    self.conn.receive_eof(Instant::now());
                } else {
                    self.kill(e);
                }
            }
        }
        self.drain_after_close();
        Poll::Ready(())
    }

    /// Whether pending output has to go out before waiting for input (see
    /// `deferred`).
    fn must_write(&mut self) -> bool {
        self.deferred
            || self.pending_output() > self.high_water()
            || self.conn.state() != State::Open
            || self.conn.halves().0.has_pending_replies()
    }

    /// Whether the sending side may read ahead (to answer Pings) without
    /// buffering received messages without bound (see [`READ_AHEAD_EVENTS`]).
    fn may_read_ahead(&self) -> bool {
        self.conn.pending_events() < READ_AHEAD_EVENTS
            && self.events.bytes() < self.high_water()
            && self.pending_output() <= self.high_water()
    }

    fn combined_waker(&self, which: usize, cx: &Context<'_>) -> Waker {
        self.wakers.register(which, cx.waker());
        self.waker.clone()
    }

    /// Hands out the next event without touching the transport when one
    /// is ready and nothing forces a write: the common case of a read that
    /// brought several messages costs no waker or clock work per message.
    fn poll_ready_event(&mut self) -> Option<Event> {
        if self.pending_output() > self.high_water() {
            return None;
        }
        let conn = &mut self.conn;
        self.events.next_without_io(|| conn.poll_event())
    }

    pub(crate) fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Event, Error>>> {
        if let Some(ev) = self.poll_ready_event() {
            // A `send` right after this may leave its output for the batch
            // (an application that only sends never sets this).
            self.batching = self.events_waiting();
            return Poll::Ready(Some(event_result(ev)));
        }
        let waker = self.combined_waker(RECV, cx);
        let cx = &mut Context::from_waker(&waker);
        loop {
            if let Some(ev) = self.next_event() {
                // Output (answers to earlier messages, Pongs) is written once
                // no event is left, in one batch; sooner only when it passes
                // the high-water mark, or when taking a Close or Error event
                // released our Close frame (the app may stop here).
                if matches!(ev, Event::Close(_) | Event::Error(_))
                    || self.pending_output() > self.high_water()
                {
                    let _ = self.poll_output(cx);
                }
                self.batching = self.events_waiting();
                return Poll::Ready(Some(event_result(ev)));
            }
            // Nothing left to hand out: before waiting, write the answers
            // batched `send`s left queued, control replies, and anything
            // the closing handshake needs.
            if self.must_write() {
                let _ = self.poll_output(cx);
            }
            if let Some(e) = self.fatal.take() {
                return Poll::Ready(Some(Err(Error::Io(e))));
            }
            if self.shut {
                return Poll::Ready(None);
            }
            if self.poll_timers(cx).is_ready() {
                continue;
            }
            if self.pending_output() <= self.high_water() && self.poll_input(cx).is_ready() {
                continue;
            }
            return Poll::Pending;
        }
    }

    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        loop {
            match ready!(self.poll_event(cx)) {
                None => return Poll::Ready(None),
                Some(ev) => {
                    if let Some(m) = as_message(ev) {
                        return Poll::Ready(Some(m));
                    }
                }
            }
        }
    }

    /// Makes progress without blocking on input; `Ready` once pending
    /// output is at or below the high-water mark.
    pub(crate) fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.batching && !self.shut && self.pending_output() <= self.high_water() {
            // In a recv -> send loop: events wait, so `recv` comes back at
            // once and does the I/O and the timers for the whole batch.
            return Poll::Ready(Ok(()));
        }
        let waker = self.combined_waker(SEND, cx);
        let cx = &mut Context::from_waker(&waker);
        loop {
            if self.shut {
                return Poll::Ready(Err(self.closed_error()));
            }
            // Output is written by `send`/`flush` together with the message
            // about to be encoded (one write, not two), or by the `recv` that
            // ends a batch; here only once it passes the high-water mark.
            if self.pending_output() > self.high_water() {
                let _ = self.poll_output(cx);
            }
            if self.poll_timers(cx).is_ready() {
                continue;
            }
            if self.may_read_ahead() && self.poll_input(cx).is_ready() {
                continue;
            }
            if self.shut {
                continue;
            }
            if self.pending_output() <= self.high_water() {
                return Poll::Ready(Ok(()));
            }
            return Poll::Pending;
        }
    }

    pub(crate) fn start_send_msg(&mut self, msg: Message) -> Result<(), Error> {
        self.check_open()?;
        self.conn.send(msg)?;
        self.release_lone_close();
        Ok(())
    }

    /// Called once the application's message is encoded: when the only
    /// event left in the core is the peer's Close (or the connection's
    /// error), nothing the application has not seen comes before it, so it
    /// is taken now (and kept for `recv`): its Close frame goes out even
    /// when the application only sends. Behind unread messages it waits for
    /// `recv`, so that the answers to them go first.
    fn release_lone_close(&mut self) {
        if self.conn.pending_events() == 1 && self.conn.state() != State::Open {
            if let Some(ev) = self.conn.poll_event() {
                self.events.push(ev);
            }
        }
    }

    /// `Ready` once all pending output is written.
    pub(crate) fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let waker = self.combined_waker(SEND, cx);
        let cx = &mut Context::from_waker(&waker);
        loop {
            if self.poll_output(cx).is_ready() {
                if self.shut && self.dead.is_set() {
                    return Poll::Ready(Err(self.closed_error()));
                }
                return Poll::Ready(Ok(()));
            }
            if self.poll_timers(cx).is_ready() {
                continue;
            }
            if self.may_read_ahead() && self.poll_input(cx).is_ready() {
                continue;
            }
            // A flush that did not finish is finished by the next operation
            // even if this future is dropped.
            self.deferred = true;
            return Poll::Pending;
        }
    }

    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.close_requested || self.shut {
            return Ok(());
        }
        match self.conn.close(Instant::now(), code, reason) {
            // `Closed`: our Close (or the echo of the peer's) is already queued.
            Ok(()) | Err(SendError::Closed) => {
                self.close_requested = true;
                self.drain_after_close();
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drives the connection until the transport is shut down, keeping
    /// received messages (up to the read-ahead bound) for `recv`.
    pub(crate) fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let waker = self.combined_waker(SEND, cx);
        let cx = &mut Context::from_waker(&waker);
        loop {
            let _ = self.poll_output(cx);
            if self.shut {
                if let Some(e) = self.fatal.take() {
                    return Poll::Ready(Err(Error::Io(e)));
                }
                return Poll::Ready(match self.events.take_error() {
                    Some(e) => Err(Error::Ws(e)),
                    None => Ok(()),
                });
            }
            if self.poll_timers(cx).is_ready() {
                continue;
            }
            if self.may_read_ahead() && self.poll_input(cx).is_ready() {
                continue;
            }
            return Poll::Pending;
        }
    }

    /// The next handshake event (`Request` or `Connected`), or the failure.
    pub(crate) async fn handshake_event(&mut self) -> Result<Event, Error> {
        match self.recv_event().await {
            Some(r) => r,
            None => Err(Error::Closed),
        }
    }

    /// Flushes what is queued (an HTTP error answer, say) and shuts down.
    pub(crate) async fn finish(&mut self) {
        let _ = poll_fn(|cx| self.poll_closed(cx)).await;
    }

    pub(crate) fn accept_request(&mut self, accept: wsmachine::Accept) -> Result<(), SendError> {
        self.conn.accept(Instant::now(), accept)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// Sending with backpressure: `poll_ready` waits while more than
/// `Config::write_buffer_high_water` bytes are pending, `start_send` encodes
/// (so pending output never exceeds the mark by more than one message),
/// `poll_flush` writes everything, and `poll_close` closes gracefully with
/// code 1000, as [`WebSocket::close`].
impl<S: AsyncRead + AsyncWrite + Unpin> futures_sink::Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_send_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().start_send_msg(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_out(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.start_close(CloseCode::NORMAL, "")?;
        this.poll_closed(cx)
    }
}
