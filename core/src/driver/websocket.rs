//! [`WebSocket`]: one task owns the transport and both halves of the core.

use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll, Wake, Waker};

use futures_core::Stream;
use futures_sink::Sink;

use super::byte_stream::ByteStream;
use super::split::{self, WebSocketReader, WebSocketWriter};
use super::state::{ReadState, WriteState};
use super::trace::ConnSpan;
use super::{Ended, Error, Io, Runtime, SendStatus};
use crate::{
    CloseCode, CloseFrame, Config, Connection, EntropyMask, Event, Message, Negotiated,
    PreparedMessage, Role, SendError, SendHalf, State, Stats,
};

/// A WebSocket connection over a byte stream `S` (TCP, TLS, a Unix socket,
/// an in-memory pipe) driven by the runtime `R`, after the opening
/// handshake. Adapters name it for their runtime:
/// `wsmachine_tokio::WebSocket<S>`, `wsmachine_smol::WebSocket<S>`.
///
/// It drives a [`Connection`]: everything the protocol decides (framing,
/// masking, UTF-8, automatic Pongs, the Close echo, keepalive and every
/// timeout) happens in the core; this type only moves bytes and sleeps
/// until the core's next deadline. There is no background task: that work
/// happens while one of its futures is polled. `recv` reads; `send` writes
/// and also reads what has arrived (so Pings are answered and the peer's
/// Close is echoed when the application only sends); both run due timers.
///
/// It is also a [`Stream`] of received messages and a [`Sink`] of messages
/// to send (`poll_close` runs the closing handshake with code 1000).
///
/// # Cancel safety
/// Every future returned here keeps its progress in the `WebSocket`, not in
/// itself: partially read frames, decoded messages and unsent bytes live in
/// `self`. Dropping [`recv`](WebSocket::recv) or
/// [`recv_event`](WebSocket::recv_event) before it completes (another
/// branch of a `select!` won) loses nothing: the next call returns the
/// message the dropped one would have. Dropping [`send`](WebSocket::send)
/// or [`ping`](WebSocket::ping) before it completes means the message was not
/// queued (it is queued in the same poll that completes the future, so it is
/// never half-sent). Dropping [`close`](WebSocket::close) leaves the Close
/// frame queued; calling `close` again resumes waiting.
///
/// # When the connection is over
/// `recv` returns `None` once the connection has ended (after a clean
/// closing handshake, or after it returned the error that ended it); every
/// sending operation then fails with [`Error::Closed`], whose [`Ended`]
/// says why — the same on every runtime, whichever operation meets the end
/// first.
///
/// # Memory
/// An idle connection holds no read buffer: reads go through one 64 KiB
/// buffer per thread and are copied into the core at once (the core keeps at
/// most 8 KiB of input capacity between messages). Outgoing bytes stay in
/// the core's buffers, as encoded, until the transport accepts them: they
/// are written from there (vectored, no copy), so nothing is queued here.
pub struct WebSocket<S, R: Runtime> {
    pub(crate) io: S,
    pub(crate) r: ReadState<R>,
    pub(crate) w: WriteState,
    negotiated: Negotiated,
    /// The transport is shut down or failed: the connection is over.
    pub(crate) done: bool,
    /// The application asked to close: received events are no longer kept.
    closing: bool,
    /// The transport error that ended the connection was returned by
    /// `recv` (else `recv` reports it once, whichever operation met it).
    io_reported: bool,
    /// The last event handed out left more waiting: the next `send` only
    /// queues, and the `recv` that finds nothing left writes the batch.
    batching: bool,
    /// `recv` just handed out the last event of a read that emptied the
    /// transport: the `send` answering it need not read ahead (see
    /// `poll_ready_send`).
    after_batch: bool,
    /// Output that an operation promised to deliver without waiting for it
    /// (`send`, `ping`, byte-stream writes, or a flush whose future was
    /// dropped): any later operation writes it. Messages queued with the
    /// `Sink`'s `start_send` are written only by `poll_flush` (or past the
    /// high-water mark), as the `Sink` contract has it, so that `forward`
    /// writes once per batch.
    deferred: bool,
    /// The receiving and the sending side's wakers (see [`Wakers`]), and
    /// the one waker that wakes both.
    wakers: Arc<Wakers>,
    waker: Waker,
    /// The wakers last registered for each side, to skip the lock while a
    /// side keeps polling from the same task (the steady state).
    seen: [Option<Waker>; 2],
    /// The two sides were last polled from different tasks (see
    /// [`WebSocket::after_io`]).
    two_tasks: bool,
    _rt: PhantomData<fn() -> R>,
}

/// The wakers of the two sides of an unsplit connection: receiving (`recv`,
/// `Stream`, byte-stream reads) and sending (`send`, `Sink`, byte-stream
/// writes), which may be polled from two tasks (a `select!` loop, a
/// byte stream split with `tokio::io::split`).
///
/// A transport keeps one waker per direction, and both sides write (the
/// receiving side writes Pongs and the Close echo) and both read (the
/// sending side reads so Pings are answered while the application only
/// sends). Had each passed its own waker, the last to poll would silently
/// replace the other's. So the transport is always polled with one waker
/// that wakes whichever sides wait; at worst a side is woken spuriously.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    slots: Mutex<[Option<Waker>; 2]>,
}

const RECV: usize = 0;
const SEND: usize = 1;

impl Wakers {
    fn register(&self, which: usize, waker: &Waker) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match &slots[which] {
            Some(w) if w.will_wake(waker) => {}
            _ => slots[which] = Some(waker.clone()),
        }
    }
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The registrations stay (a side re-registers only when its task
        // changes); at worst a side that stopped waiting is woken for
        // nothing.
        let wakers = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }
}

/// Polls with the waker [`WebSocket::combined`] chose: `$cx` is rebound.
macro_rules! with_waker {
    ($self:ident, $which:expr, $cx:ident) => {
        let combined = $self.combined($which, $cx);
        let mut context = Context::from_waker(combined.as_ref().unwrap_or($cx.waker()));
        let $cx = &mut context;
    };
}

impl<S, R: Runtime> std::fmt::Debug for WebSocket<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("rx", &self.r.rx)
            .field("negotiated", &self.negotiated)
            .field("pending_output", &self.w.pending())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A masking-key source seeded from the runtime's OS random generator.
pub(crate) fn os_mask<R: Runtime>() -> EntropyMask<fn(&mut [u8])> {
    EntropyMask::new(R::fill_random as fn(&mut [u8]))
}

/// Maps a core event to what `recv` returns: data messages only.
pub(crate) fn event_to_message(ev: Event) -> Option<Message> {
    match ev {
        Event::Text(t) => Some(Message::Text(t)),
        Event::Binary(b) => Some(Message::Binary(b)),
        _ => None,
    }
}

impl<S, R: Io<S>> WebSocket<S, R> {
    /// Wraps a connection whose opening handshake has completed; `path` is
    /// the request's, for the `tracing` span (empty when unknown).
    pub(crate) fn from_connection(io: S, conn: Connection, path: &str) -> Self {
        let negotiated = conn.negotiated().clone();
        let high_water = conn.config().write_buffer_high_water;
        let wakers = Arc::new(Wakers::default());
        let span = ConnSpan::opened(conn.role(), path, &negotiated);
        let (rx, tx) = match conn.split() {
            Ok(halves) => halves,
            Err(_) => unreachable!("from_connection is only called once the handshake is done"),
        };
        WebSocket {
            io,
            r: ReadState::new(rx, span.clone()),
            w: WriteState::new(tx, high_water, span),
            negotiated,
            done: false,
            closing: false,
            io_reported: false,
            batching: false,
            after_batch: false,
            deferred: false,
            waker: Waker::from(wakers.clone()),
            wakers,
            seen: [None, None],
            two_tasks: false,
            _rt: PhantomData,
        }
    }

    /// Wraps a stream on which the opening handshake was already done
    /// elsewhere (e.g. an HTTP server's upgrade), with what it negotiated.
    /// A client's masking keys come from the runtime's OS random generator.
    pub fn from_upgraded(
        stream: S,
        role: Role,
        negotiated: Negotiated,
        config: impl Into<Arc<Config>>,
    ) -> Self {
        let mask: Option<Box<dyn crate::MaskSource>> = match role {
            Role::Client => Some(Box::new(os_mask::<R>())),
            Role::Server => None,
        };
        let conn = Connection::upgraded(role, config, negotiated, mask, R::now());
        WebSocket::from_connection(stream, conn, "")
    }

    /// Sends a message. Waits while more than
    /// [`Config::write_buffer_high_water`] bytes are waiting to be written,
    /// then queues the message and writes as much as the transport accepts
    /// now; call [`flush`](WebSocket::flush) to wait until all is written.
    /// Right after a `recv` that left more received messages waiting (an
    /// echo loop), the message is only queued: the `recv` that finds nothing
    /// left writes every queued answer in one call.
    /// While waiting it also reads what has arrived (so Pings are answered),
    /// as long as few received events wait for the application.
    ///
    /// The peer's Close is answered once the application has received every
    /// message before it (here, when nothing else waits; otherwise when
    /// `recv` reaches it): answers to those messages (an echo server's
    /// `recv` → `send`) therefore go out before our Close.
    ///
    /// Fails with [`Error::Closed`] once a Close frame was sent or the
    /// connection is over, and ends the connection when it finds more
    /// than [`crate::Config::max_pending_output`] unsent (see
    /// [`SendStatus`]).
    ///
    /// Cancel-safe: if dropped before it completes, the message was not queued.
    // Not an `async fn`: its future would hold the argument and the message
    // twice. This one is the message and a reference, in every task that
    // awaits it for the connection's life.
    pub fn send(
        &mut self,
        msg: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        let msg = msg.into();
        self.send_with(move |tx| tx.send(msg))
    }

    /// Sends a message encoded once for many connections (see
    /// [`PreparedMessage`]): waits, queues and writes like
    /// [`send`](WebSocket::send), without copying the frame (or, with
    /// permessage-deflate and no context takeover on our side, compressing
    /// it again).
    ///
    /// Cancel-safe, like [`send`](WebSocket::send).
    ///
    /// ```no_run
    /// # async fn f<S, R: wsmachine::driver::Io<S>>(clients: &mut [wsmachine::driver::WebSocket<S, R>]) {
    /// let msg = wsmachine::PreparedMessage::new("tick");
    /// for ws in clients {
    ///     let _ = ws.send_prepared(&msg).await;
    /// }
    /// # }
    /// ```
    pub fn send_prepared<'a>(
        &'a mut self,
        msg: &'a PreparedMessage,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        self.send_with(move |tx| tx.send_prepared(msg))
    }

    /// Queues a message without ever waiting, and says whether the output
    /// is now over [`Config::write_buffer_high_water`]
    /// ([`SendStatus::Backpressure`]; the message is queued either way).
    /// Fails with [`Error::Closed`] once a Close frame was sent or the
    /// connection is over, and ends the connection when it finds more
    /// than [`crate::Config::max_pending_output`] unsent (see
    /// [`SendStatus`]).
    ///
    /// Nothing is written here (there is no task context to wait with):
    /// the next [`recv`](WebSocket::recv), [`send`](WebSocket::send) or
    /// [`flush`](WebSocket::flush) writes it, so a loop that queues several
    /// messages this way writes them together. For a fan-out across many
    /// connections, [`split`](WebSocket::split) each one: a writer's
    /// [`try_send`](WebSocketWriter::try_send) wakes the reader's task,
    /// which writes.
    ///
    /// ```no_run
    /// # async fn f<S, R: wsmachine::driver::Io<S>>(mut ws: wsmachine::driver::WebSocket<S, R>) -> Result<(), wsmachine::driver::Error> {
    /// use wsmachine::driver::SendStatus;
    /// for i in 0..10 {
    ///     if ws.try_send(format!("update {i}"))? == SendStatus::Backpressure {
    ///         break; // the peer does not keep up
    ///     }
    /// }
    /// ws.flush().await?; // or keep receiving: `recv` writes them too
    /// # Ok(()) }
    /// ```
    pub fn try_send(&mut self, msg: impl Into<Message>) -> Result<SendStatus, Error> {
        let msg = msg.into();
        self.try_queue(move |tx| tx.send(msg))
    }

    /// [`try_send`](WebSocket::try_send) for a [`PreparedMessage`]: queues
    /// the shared frame without waiting or copying.
    pub fn try_send_prepared(&mut self, msg: &PreparedMessage) -> Result<SendStatus, Error> {
        self.try_queue(|tx| tx.send_prepared(msg))
    }

    /// `send` and `send_prepared`: `queue` encodes the message once the
    /// output has room.
    fn send_with<'a>(
        &'a mut self,
        queue: impl FnOnce(&mut SendHalf) -> Result<(), SendError> + 'a,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        let mut queue = Some(queue);
        poll_fn(move |cx| {
            ready!(self.poll_ready_send(cx))?;
            let queued = queue.take().map_or(Ok(()), |q| q(&mut self.w.tx));
            self.r.take_lone_event();
            // Right after a recv that left more received events waiting (an
            // echo loop), leave the output queued: the recv that finds
            // nothing left writes all the answers in one call.
            let batch = std::mem::take(&mut self.batching) && self.r.has_events() && queued.is_ok();
            self.deferred = true;
            if !batch {
                // Even when the core refused (e.g. a Close echo went first),
                // write what it queued: the application may drop us on the error.
                self.poll_write_now(cx)?;
            }
            Poll::Ready(queued.map_err(|e| self.send_error(e)))
        })
    }

    /// `try_send` and `try_send_prepared`.
    fn try_queue(
        &mut self,
        queue: impl FnOnce(&mut SendHalf) -> Result<(), SendError>,
    ) -> Result<SendStatus, Error> {
        if self.done {
            return Err(self.closed());
        }
        let queued = queue(&mut self.w.tx);
        self.r.take_lone_event();
        // Promised output: whichever operation comes next writes it.
        self.deferred = true;
        queued.map_err(|e| self.send_error(e))?;
        Ok(if self.w.pending() > self.w.high_water() {
            SendStatus::Backpressure
        } else {
            SendStatus::Queued
        })
    }

    /// Receives the next message, answering Pings and running timers while
    /// it waits. `None` once the connection is over (after a clean closing
    /// handshake, or after the error that ended it was returned); the peer's
    /// Close frame is then in [`close_frame`](WebSocket::close_frame).
    ///
    /// Ping, Pong and Close frames are handled and skipped; use
    /// [`recv_event`](WebSocket::recv_event) to see them. With
    /// `Config::reassemble` off, fragments are only seen by `recv_event`
    /// (and by the [`ByteStream`]).
    ///
    /// Cancel-safe: dropping the future loses no message (see the type's
    /// "Cancel safety" section).
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next event of any kind: messages, fragments, Ping, Pong
    /// and Close (already answered by the core). A connection error is
    /// returned as `Err(Error::Ws(..))`. `None` once the connection is over.
    ///
    /// Cancel-safe, like [`recv`](WebSocket::recv).
    pub async fn recv_event(&mut self) -> Option<Result<Event, Error>> {
        poll_fn(|cx| self.poll_recv_event(cx)).await
    }

    /// Sends a Ping (payload at most 125 bytes). The Pong comes back as an
    /// [`Event::Pong`] from [`recv_event`](WebSocket::recv_event).
    ///
    /// Cancel-safe, like [`send`](WebSocket::send).
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        let mut pending = true;
        poll_fn(|cx| {
            ready!(self.poll_ready_send(cx))?;
            let queued = if std::mem::take(&mut pending) {
                let r = self.w.tx.ping(payload);
                self.r.take_lone_event();
                r
            } else {
                Ok(())
            };
            self.poll_write_now(cx)?;
            Poll::Ready(queued.map_err(|e| self.send_error(e)))
        })
        .await
    }

    /// Waits until every queued byte has been written and flushed.
    ///
    /// Cancel-safe: what was written stays written; the rest stays queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush_all(cx)).await
    }

    /// Closes gracefully: sends a Close frame with `code` and `reason`
    /// (at most 123 bytes), waits for the peer's Close (bounded by
    /// [`Config::close_timeout`]), then shuts the transport down.
    ///
    /// Calling `close` is the end of reading: messages that arrive
    /// meanwhile are discarded (so a peer cannot make a closing connection
    /// hold memory). To read until the peer's Close, [`split`](WebSocket::split)
    /// and keep receiving on the reader until it returns `None`.
    ///
    /// Returns `Ok(())` when the closing handshake completed (or the
    /// connection was already over without an error),
    /// `Err(Error::Ws(TimedOut(ClosingHandshake)))` when the peer did not
    /// answer in time, or the error that ended the connection.
    ///
    /// Cancel-safe: the Close frame stays queued; calling `close` again
    /// resumes waiting.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.start_close(code, reason)?;
        poll_fn(|cx| self.poll_close_handshake(cx)).await
    }

    /// What the opening handshake agreed on (subprotocol, compression).
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The connection's configuration.
    pub fn config(&self) -> &Config {
        self.r.rx.config()
    }

    /// The peer's Close frame, once it has been taken in order: by
    /// `recv`/`recv_event` after the messages before it (or earlier by
    /// `send`/`close` when nothing precedes it).
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.r.close_frame()
    }

    /// Bytes queued for writing and not yet accepted by the transport
    /// (what [`send`](WebSocket::send) compares to the high-water mark, and
    /// [`try_send`](WebSocket::try_send) reports past it): the WebSocket
    /// API's `bufferedAmount`.
    pub fn pending_output(&self) -> usize {
        self.w.pending()
    }

    /// The connection's state as the core sees it.
    pub fn state(&self) -> State {
        self.r.rx.state()
    }

    /// The connection's counters: messages and bytes each way, compressed
    /// bytes, keepalive Pings and automatic Pongs, and the round-trip time
    /// of the last keepalive Ping (see [`Stats`]). Always kept.
    pub fn stats(&self) -> Stats {
        self.w.tx.add_stats(self.r.rx.stats())
    }

    /// Records the peer's address as the `peer` field of the connection's
    /// span (feature `tracing`; without it, does nothing). The driver does
    /// not know it (the transport can be any byte stream): call this after
    /// `accept(stream)` with the address the listener returned.
    pub fn record_peer_addr(&self, addr: std::net::SocketAddr) {
        self.r.trace.span().record_peer(addr);
    }

    /// A shared reference to the transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// A mutable reference to the transport. Reading or writing it directly
    /// corrupts the WebSocket stream; meant for socket options.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Splits into a reader and a writer that can be used on separate tasks.
    /// Compression keeps working on both. Control replies produced while
    /// reading (Pongs, the Close echo, keepalive Pings) are written by the
    /// reader itself, so they go out even if the writer is idle.
    pub fn split(self) -> (WebSocketReader<S, R>, WebSocketWriter<S, R>) {
        split::split(self.io, self.r, self.w, self.negotiated, self.done)
    }

    /// A byte-stream view ([`ByteStream`], in the runtime's I/O traits):
    /// reads yield the payloads of received binary (and text) messages and
    /// fragments, each write sends one binary message, closing runs the
    /// closing handshake. For tunnelling other protocols over WebSocket.
    pub fn into_byte_stream(self) -> R::ByteStream {
        R::byte_stream(ByteStream::new(self))
    }

    // ----- poll-level machinery, shared with the Stream/Sink impls and ByteStream -----

    /// Maps the core's refusal: "a Close frame was already sent" means the
    /// connection is over or closing, which is [`Error::Closed`] with its
    /// cause; the rest is misuse.
    pub(crate) fn send_error(&self, e: SendError) -> Error {
        match e {
            SendError::Closed | SendError::PendingOutputLimit => self.closed(),
            e => Error::Send(e),
        }
    }

    /// Records that side `which` waits on `cx`, and returns the waker to
    /// poll the transport and the timer with when the other side waits in
    /// another task (it wakes both); `None` when `cx`'s own will do.
    fn combined(&mut self, which: usize, cx: &Context<'_>) -> Option<Waker> {
        let waker = cx.waker();
        if !self.seen[which]
            .as_ref()
            .is_some_and(|w| w.will_wake(waker))
        {
            self.wakers.register(which, waker);
            self.seen[which] = Some(waker.clone());
        }
        match &self.seen[1 - which] {
            Some(other) if !other.will_wake(waker) => {
                self.two_tasks = true;
                Some(self.waker.clone())
            }
            _ => {
                self.two_tasks = false;
                None
            }
        }
    }

    /// After side `which` polled the transport: when a read or a write went
    /// through and the other side waits in another task, wakes it. Its
    /// wait on the transport may be gone (smol's `TcpStream` keeps one
    /// pending readiness future per stream and drops it when an operation
    /// succeeds, whichever task made it), and what we read or wrote may be
    /// what it waits for. In one task (the common case) this tests a flag.
    fn after_io(&mut self, which: usize) {
        if !self.two_tasks || !(self.w.take_wrote() | self.r.take_read()) {
            return;
        }
        if let Some(other) = &self.seen[1 - which] {
            other.wake_by_ref();
        }
    }

    fn closed(&self) -> Error {
        Error::Closed(self.r.ended(self.done))
    }

    /// Writes and flushes everything queued; clears `deferred` once done,
    /// and sets it when the write pends: output whose write has begun (a
    /// Pong the core encoded is pending output, no longer a reply) is
    /// finished by whichever operation comes next.
    fn flush_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Poll::Ready(r) = self.w.poll_flush_out::<R, S>(&mut self.io, cx) else {
            self.deferred = true;
            return Poll::Pending;
        };
        if r.is_ok() {
            self.deferred = false;
        }
        Poll::Ready(r)
    }

    /// Whether pending output has to go out before waiting for input (see
    /// `deferred`): promised output, control replies, anything the closing
    /// handshake needs, or output past the high-water mark.
    fn must_write(&self) -> bool {
        self.deferred
            || self.w.pending() > self.w.high_water()
            || self.r.rx.state() != State::Open
            || self.w.tx.is_close_sent()
            || self.r.rx.has_pending_replies()
    }

    fn fail(&mut self, e: std::io::Error) -> Error {
        self.done = true;
        self.r.set_failed(e.kind());
        Error::Io(e)
    }

    /// Drives the connection until an event is queued or it is over: writes
    /// pending output, shuts the transport when the core says so, runs
    /// timers, reads.
    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // One slice of input per poll (see `ReadState::poll_backlog`).
        let mut sliced = false;
        loop {
            if self.closing {
                // `close` was called: what arrives now is discarded, but the
                // connection's error is kept for `close` to report.
                self.r.take_all();
            }
            if self.r.has_events() || self.done {
                return Poll::Ready(Ok(()));
            }
            if self.r.gave_up() {
                // Our last bytes never left: drop them, try to shut the
                // transport down once (a TLS close_notify may not fit
                // either), and end.
                self.w.tx.clear_transmit();
                let _ = self.w.poll_shutdown::<R, S>(&mut self.io, cx);
                self.done = true;
                continue;
            }
            let write = if self.must_write() {
                self.flush_out(cx)
            } else {
                Poll::Ready(Ok(()))
            };
            match write {
                Poll::Ready(Ok(())) => {
                    if self.r.rx.is_done_with_transport() {
                        ready!(self.w.poll_shutdown::<R, S>(&mut self.io, cx));
                        self.done = true;
                        continue;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail(e))),
                // Writing waits for the peer; reading must go on meanwhile,
                // or two peers that both only write would deadlock.
                Poll::Pending => {}
            }
            if self.r.poll_timer(cx) {
                continue;
            }
            match self.r.poll_backlog(cx, &mut sliced) {
                Some(Poll::Ready(())) => continue,
                // Yielded (the task is woken): the next slice comes after
                // the executor's other tasks.
                Some(Poll::Pending) => return Poll::Pending,
                None => {}
            }
            if self.r.can_read() {
                match self.r.poll_read_io(&mut self.io, cx) {
                    Poll::Ready(Ok(())) => {
                        sliced = true;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail(e))),
                    Poll::Pending => {}
                }
            }
            return Poll::Pending;
        }
    }

    pub(crate) fn poll_recv_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Event, Error>>> {
        if self.closing {
            // Reading ended with `close`; its result reports the error.
            return Poll::Ready(None);
        }
        with_waker!(self, RECV, cx);
        // An event already decoded is handed out without I/O (the batch's
        // output is written by the `recv` that finds none left).
        if !self.r.has_events() {
            let progress = self.poll_progress(cx);
            self.after_io(RECV);
            if let Err(e) = ready!(progress) {
                self.io_reported = true;
                return Poll::Ready(Some(Err(e)));
            }
        }
        let ev = self.r.pop();
        if ev.is_none() && !self.io_reported {
            if let Ended::Io(kind) = self.r.ended(self.done) {
                // A `send` met the transport's failure first: `recv`
                // still reports why the connection ended, once.
                self.io_reported = true;
                return Poll::Ready(Some(Err(Error::Io(kind.into()))));
            }
        }
        self.batching = self.r.has_events();
        self.after_batch = !self.batching && ev.is_some() && self.r.drained();
        if matches!(ev, Some(Event::Close(_) | Event::Error(_))) {
            // Taking this event released our Close frame (the echo, or the
            // answer to a protocol error): best effort to get it onto the
            // wire now, in case the application stops here.
            let _ = self.flush_out(cx);
            self.after_io(RECV);
        }
        match ev {
            Some(Event::Error(e)) => Poll::Ready(Some(Err(Error::Ws(e)))),
            Some(ev) => Poll::Ready(Some(Ok(ev))),
            None => Poll::Ready(None),
        }
    }

    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        loop {
            match ready!(self.poll_recv_event(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(ev)) => {
                    if let Some(m) = event_to_message(ev) {
                        return Poll::Ready(Some(Ok(m)));
                    }
                }
            }
        }
    }

    /// Ready when a message may be queued: the connection is usable and the
    /// pending output is at or below the high-water mark.
    pub(crate) fn poll_ready_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Not the core's state: after a protocol error it is `Closed` while
        // the application may still answer the messages before the error
        // (the core itself refuses sends once that is over).
        if self.done {
            return Poll::Ready(Err(self.closed()));
        }
        if self.batching && self.w.pending() <= self.w.high_water() {
            // In a recv -> send loop: events wait, so `recv` comes back at
            // once and reads and runs the timers for the whole batch.
            return Poll::Ready(Ok(()));
        }
        // Right after `recv` handed out the last message of a read that
        // emptied the transport (an echo loop answering its batch), a read
        // ahead would find nothing: on a futures-io runtime it is a `recv`
        // system call failing with EAGAIN, once per batch (tokio knows the
        // socket is empty and does not ask). The `recv` that follows reads;
        // with room for the message this send does not wait, so nothing
        // needs the read's wake-up registered here.
        let skip_read =
            std::mem::take(&mut self.after_batch) && self.w.pending() <= self.w.high_water();
        with_waker!(self, SEND, cx);
        let background = if skip_read {
            Ok(())
        } else {
            self.r
                .poll_background(&mut self.io, cx, ReadState::wants_read_ahead)
        };
        let room = match background {
            Ok(()) => self.w.poll_room::<R, S>(&mut self.io, cx),
            Err(e) => Poll::Ready(Err(e)),
        };
        self.after_io(SEND);
        match room {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.fail(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Queues a message (after `poll_ready_send` said yes).
    pub(crate) fn start_send_msg(&mut self, msg: Message) -> Result<(), Error> {
        let r = self.w.tx.send(msg);
        self.r.take_lone_event();
        r.map_err(|e| self.send_error(e))
    }

    /// Queues a binary message from a borrowed slice (byte-stream writes).
    pub(crate) fn start_send_bytes(&mut self, data: &[u8]) -> Result<(), Error> {
        let r = self.w.tx.send_binary(data);
        self.r.take_lone_event();
        r.map_err(|e| self.send_error(e))
    }

    /// Writes what the transport accepts now, without waiting.
    pub(crate) fn poll_write_now(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        with_waker!(self, SEND, cx);
        self.deferred = true;
        let written = self.flush_out(cx);
        self.after_io(SEND);
        match written {
            Poll::Ready(Err(e)) => Err(self.fail(e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        with_waker!(self, SEND, cx);
        let background = self
            .r
            .poll_background(&mut self.io, cx, ReadState::wants_read_ahead);
        // Dropped before it finished, the flush is finished by the next operation.
        self.deferred = true;
        let flushed = match background {
            Ok(()) => self.flush_out(cx),
            Err(e) => Poll::Ready(Err(e)),
        };
        self.after_io(SEND);
        match ready!(flushed) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.fail(e))),
        }
    }

    /// Queues the Close frame unless one was sent or the connection is over.
    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.done || self.closing {
            return Ok(());
        }
        if !self.w.tx.is_close_sent() && self.r.rx.state() != State::Closed {
            match self.w.tx.close(R::now(), code, reason) {
                Ok(()) | Err(SendError::Closed) => {}
                Err(e) => return Err(Error::Send(e)),
            }
        }
        self.closing = true;
        Ok(())
    }

    /// Drives the connection to its end, discarding messages; the first
    /// connection error becomes the result.
    pub(crate) fn poll_close_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        with_waker!(self, SEND, cx);
        loop {
            let progress = self.poll_progress(cx);
            self.after_io(SEND);
            ready!(progress)?;
            // Discarded; the connection's error is remembered by `pop`.
            while self.r.pop().is_some() {}
            if self.done {
                return Poll::Ready(self.r.ended(true).into_close_result());
            }
        }
    }
}

impl<S: Unpin, R: Io<S>> Stream for WebSocket<S, R> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: Unpin, R: Io<S>> Sink<Message> for WebSocket<S, R> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_ready_send(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().start_send_msg(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_all(cx)
    }

    /// Runs the closing handshake with code 1000.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.start_close(CloseCode::NORMAL, "")?;
        this.poll_close_handshake(cx)
    }
}
