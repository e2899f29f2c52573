//! [`WebSocket`]: one task owns the transport and both halves of the core.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use futures_core::Stream;
use futures_io::{AsyncRead, AsyncWrite};
use futures_sink::Sink;
use wsmachine::{
    CloseCode, CloseFrame, Config, Connection, ConnectionError, EntropyMask, Event, Message,
    Negotiated, Role, SendError, State,
};

use super::byte_stream::ByteStream;
use super::split::{self, WebSocketReader, WebSocketWriter};
use super::state::{ReadState, WriteState};
use crate::Error;

/// A WebSocket connection over any futures-io byte stream `S` (TCP, TLS,
/// Unix socket, in-memory pipe), after the opening handshake.
///
/// Obtained from [`accept`](crate::accept), [`accept_with`](crate::accept_with),
/// [`connect`](crate::connect) / [`ConnectBuilder`](crate::ConnectBuilder), or
/// [`WebSocket::from_upgraded`] for a stream upgraded by an HTTP server.
///
/// It drives a [`wsmachine::Connection`]: everything the protocol decides
/// (framing, masking, UTF-8, automatic Pongs, the Close echo, keepalive and
/// every timeout) happens in the core; this type only moves bytes and sleeps
/// until the core's next deadline. That work happens while one of its futures
/// is being polled: `recv` reads, `send` writes and also reads what is
/// already available (so Pongs and the Close echo go out when the application
/// only sends), and both run due timers.
///
/// It is also a [`Stream`] of received messages and a [`Sink`] of messages
/// to send (`poll_close` runs the closing handshake with code 1000).
///
/// # Cancel safety
/// Every future returned here keeps its progress in the `WebSocket`, not in
/// itself: partially read frames, decoded messages and unsent bytes live in
/// `self`. Dropping [`recv`](WebSocket::recv) or
/// [`recv_event`](WebSocket::recv_event) before it completes (e.g. when
/// another branch of a `select!` wins) loses nothing: the next call returns
/// the message the dropped one would have. Dropping [`send`](WebSocket::send)
/// or [`ping`](WebSocket::ping) before it completes means the message was not
/// queued (it is queued in the same poll that completes the future, so it is
/// never half-sent). Dropping [`close`](WebSocket::close) leaves the Close
/// frame queued; calling `close` again resumes waiting.
///
/// # Memory
/// An idle connection holds no read buffer: reads go through one 64 KiB
/// buffer per thread and are copied into the core at once (the core keeps at
/// most 8 KiB of input capacity between messages). Outgoing bytes stay in
/// the core's buffers, as encoded, until the transport accepts them: they
/// are written from there (vectored, no copy), so nothing is queued here.
pub struct WebSocket<S> {
    io: S,
    r: ReadState,
    w: WriteState,
    negotiated: Negotiated,
    /// The transport is shut down or failed: the connection is over.
    done: bool,
    /// The first connection error seen by `close`, reported when it returns.
    close_error: Option<ConnectionError>,
    /// The last event handed out left more waiting: the next `send` only
    /// queues, and the `recv` that finds nothing left writes the batch.
    batching: bool,
    /// Output that an operation promised to deliver without waiting for it
    /// (`send`, `ping`, byte-stream writes, or a flush whose future was
    /// dropped): any later operation writes it. Messages queued with the
    /// `Sink`'s `start_send` are written only by `poll_flush` (or past the
    /// high-water mark), as the `Sink` contract has it, so that `forward`
    /// writes once per batch.
    deferred: bool,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("rx", &self.r.rx)
            .field("negotiated", &self.negotiated)
            .field("pending_output", &self.w.pending())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A masking-key source seeded from the OS random generator.
pub(crate) fn os_mask() -> EntropyMask<impl FnMut(&mut [u8]) + Send> {
    EntropyMask::new(|buf: &mut [u8]| {
        // The OS generator failing is unrecoverable; masking with predictable
        // keys would defeat RFC 6455 §10.3.
        getrandom::fill(buf).expect("OS random number generator failed")
    })
}

/// Maps a core event to what `recv` returns: data messages only.
fn event_to_message(ev: Event) -> Option<Message> {
    match ev {
        Event::Text(t) => Some(Message::Text(t)),
        Event::Binary(b) => Some(Message::Binary(b)),
        _ => None,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a connection whose opening handshake has completed.
    pub(crate) fn from_connection(io: S, conn: Connection) -> Self {
        let negotiated = conn.negotiated().clone();
        let high_water = conn.config().write_buffer_high_water;
        let close_timeout = conn.config().close_timeout;
        let (rx, tx) = match conn.split() {
            Ok(halves) => halves,
            Err(_) => unreachable!("from_connection is only called once the handshake is done"),
        };
        WebSocket {
            io,
            r: ReadState::new(rx, close_timeout),
            w: WriteState::new(tx, high_water, close_timeout),
            negotiated,
            done: false,
            close_error: None,
            batching: false,
            deferred: false,
        }
    }

    /// Wraps a stream on which the opening handshake was already done
    /// elsewhere (e.g. an HTTP server's upgrade), with what it negotiated.
    /// A client's masking keys come from the OS random generator.
    pub fn from_upgraded(
        stream: S,
        role: Role,
        negotiated: Negotiated,
        config: impl Into<std::sync::Arc<Config>>,
    ) -> Self {
        let mask: Option<Box<dyn wsmachine::MaskSource>> = match role {
            Role::Client => Some(Box::new(os_mask())),
            Role::Server => None,
        };
        let conn = Connection::upgraded(role, config, negotiated, mask, Instant::now());
        WebSocket::from_connection(stream, conn)
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
    /// Cancel-safe: if dropped before it completes, the message was not queued.
    // Not an `async fn`: its future would hold the argument and the message
    // twice. This one is the message and a reference, in every task that
    // awaits it for the connection's life.
    pub fn send(
        &mut self,
        msg: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        let mut msg = Some(msg.into());
        poll_fn(move |cx| {
            ready!(self.poll_ready_send(cx))?;
            let queued = msg.take().map_or(Ok(()), |m| self.w.tx.send(m));
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
            Poll::Ready(queued.map_err(Error::from))
        })
    }

    /// Receives the next message, answering Pings and running timers while
    /// it waits. `None` once the connection is closed (after a clean closing
    /// handshake, or after an error was returned); the peer's Close frame is
    /// then in [`close_frame`](WebSocket::close_frame).
    ///
    /// Ping, Pong and Close frames are handled and skipped; use
    /// [`recv_event`](WebSocket::recv_event) to see them. With
    /// `Config::reassemble` off, fragments are only seen by `recv_event`.
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
            Poll::Ready(queued.map_err(Error::from))
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
    /// [`Config::close_timeout`]), then shuts the transport down. Messages
    /// that arrive meanwhile are discarded; to read them, [`split`](WebSocket::split)
    /// and keep receiving on the reader until it returns `None`.
    ///
    /// Returns `Ok(())` when the closing handshake completed (or the
    /// connection was already over), `Err(Error::Ws(TimedOut(..)))` when the
    /// peer did not answer in time, or the error that ended the connection.
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

    /// The peer's Close frame, once it has been taken in order: by
    /// `recv`/`recv_event` after the messages before it (or earlier by
    /// `send`/`close` when nothing precedes it).
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.r.close_frame.as_ref()
    }

    /// Bytes queued for writing and not yet accepted by the transport
    /// (what [`send`](WebSocket::send) compares to the high-water mark).
    pub fn pending_output(&self) -> usize {
        self.w.pending()
    }

    /// The connection's state as the core sees it.
    pub fn state(&self) -> State {
        self.r.rx.state()
    }

    /// A shared reference to the transport.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Splits into a reader and a writer that can be used on separate tasks.
    /// Compression keeps working on both. Control replies produced while
    /// reading (Pongs, the Close echo, keepalive Pings) are written by the
    /// reader itself, so they go out even if the writer is idle.
    pub fn split(self) -> (WebSocketReader<S>, WebSocketWriter<S>) {
        split::split(self.io, self.r, self.w, self.negotiated, self.done)
    }

    /// A byte-stream view: `AsyncRead` yields the payloads of received
    /// binary (and text) messages, `AsyncWrite` sends each write as one
    /// binary message, `poll_close` runs the closing handshake. For
    /// tunnelling other protocols over WebSocket.
    pub fn into_byte_stream(self) -> ByteStream<S> {
        ByteStream::new(self)
    }

    // ----- poll-level machinery, shared with the Stream/Sink impls and ByteStream -----

    /// Writes and flushes everything queued; clears `deferred` once done.
    fn flush_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = ready!(self.w.poll_flush_out(&mut self.io, cx));
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
        self.r.set_failed();
        Error::Io(e)
    }

    /// Drives the connection until an event is queued or it is over: writes
    /// pending output, shuts the transport when the core says so, runs
    /// timers, reads.
    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.r.has_events() || self.done {
                return Poll::Ready(Ok(()));
            }
            if self.r.gave_up() {
                // Our last bytes never left: drop them, try to shut the
                // transport down once (a TLS close_notify may not fit
                // either), and end.
                self.w.tx.clear_transmit();
                let _ = self.w.poll_shutdown(&mut self.io, cx);
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
                    if self.r.rx.should_close_transport() {
                        ready!(self.w.poll_shutdown(&mut self.io, cx));
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
            if self.r.can_read() {
                match self.r.poll_read_io(&mut self.io, cx) {
                    Poll::Ready(Ok(())) => continue,
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
        if let Err(e) = ready!(self.poll_progress(cx)) {
            return Poll::Ready(Some(Err(e)));
        }
        let ev = self.r.pop();
        self.batching = self.r.has_events();
        if matches!(ev, Some(Event::Close(_) | Event::Error(_))) {
            // Taking this event released our Close frame (the echo, or the
            // answer to a protocol error): best effort to get it onto the
            // wire now, in case the application stops here.
            let _ = self.flush_out(cx);
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
            return Poll::Ready(Err(Error::Closed));
        }
        if self.batching && self.w.pending() <= self.w.high_water() {
            // In a recv -> send loop: events wait, so `recv` comes back at
            // once and reads and runs the timers for the whole batch.
            return Poll::Ready(Ok(()));
        }
        if let Err(e) = self
            .r
            .poll_background(&mut self.io, cx, ReadState::wants_read_ahead)
        {
            return Poll::Ready(Err(self.fail(e)));
        }
        match self.w.poll_room(&mut self.io, cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.fail(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Queues a message (after `poll_ready_send` said yes).
    pub(crate) fn start_send_msg(&mut self, msg: Message) -> Result<(), Error> {
        self.w.tx.send(msg)?;
        self.r.take_lone_event();
        Ok(())
    }

    /// Queues a binary message from a borrowed slice (byte-stream writes).
    pub(crate) fn start_send_bytes(&mut self, data: &[u8]) -> Result<(), Error> {
        self.w.tx.send_binary(data)?;
        self.r.take_lone_event();
        Ok(())
    }

    /// Writes what the transport accepts now, without waiting.
    pub(crate) fn poll_write_now(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        self.deferred = true;
        match self.flush_out(cx) {
            Poll::Ready(Err(e)) => Err(self.fail(e)),
            _ => Ok(()),
        }
    }

    pub(crate) fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        if let Err(e) = self
            .r
            .poll_background(&mut self.io, cx, ReadState::wants_read_ahead)
        {
            return Poll::Ready(Err(self.fail(e)));
        }
        // Dropped before it finished, the flush is finished by the next operation.
        self.deferred = true;
        match ready!(self.flush_out(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.fail(e))),
        }
    }

    /// Queues the Close frame unless one was sent or the connection is over.
    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.done || self.w.tx.is_close_sent() || self.r.rx.state() == State::Closed {
            return Ok(());
        }
        match self.w.tx.close(Instant::now(), code, reason) {
            Ok(()) | Err(SendError::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Drives the connection to its end, discarding messages; the first
    /// connection error becomes the result.
    pub(crate) fn poll_close_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            ready!(self.poll_progress(cx))?;
            while let Some(ev) = self.r.pop() {
                if let Event::Error(e) = ev {
                    self.close_error.get_or_insert(e);
                }
            }
            if self.done {
                return Poll::Ready(match self.close_error.take() {
                    Some(e) => Err(Error::Ws(e)),
                    None => Ok(()),
                });
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
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
