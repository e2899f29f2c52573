//! [`WebSocket::split`]: a reader and a writer for separate tasks.
//!
//! The core splits a connection into a `ReceiveHalf` and a `SendHalf`;
//! control replies the receiving half decides on (Pongs, the Close echo,
//! keepalive Pings) are queued in a link and encoded by the sending half.
//! Here the reader owns the read half of the stream and the `ReceiveHalf`;
//! the writer and the reader share the write side (`SendHalf`, write half
//! of the stream, unwritten output) behind a `std::sync::Mutex`. The lock is
//! held only for non-blocking calls (encode, one round of `poll_write`),
//! never across an `.await`, so neither half ever waits for the other. The
//! reader writes replies itself whenever the link has some, so they go out
//! while the writer task is idle.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use wsmachine::{
    CloseCode, CloseFrame, Connection, Event, Message, Negotiated, ReceiveHalf, SendError,
    SendHalf, State,
};

use crate::driver::{poll_read_once, Dead, Timer, Wakers, Writer, RECV, SEND};
use crate::websocket::{as_message, event_result, EventQueue};
use crate::{Error, WebSocket};

/// What a `WebSocket` hands over when it is split.
pub(crate) struct Parts<S> {
    pub(crate) io: S,
    pub(crate) conn: Connection,
    pub(crate) out: Writer,
    pub(crate) events: EventQueue,
    pub(crate) read_done: bool,
    pub(crate) shut: bool,
    pub(crate) dead: Dead,
    pub(crate) fatal: Option<io::Error>,
    pub(crate) close_requested: bool,
}

struct WriteSide<S> {
    tx: SendHalf,
    wr: WriteHalf<S>,
    out: Writer,
    shut: bool,
    dead: Dead,
}

impl<S: AsyncWrite> WriteSide<S> {
    fn pending(&self) -> usize {
        self.tx.pending_output()
    }

    fn is_drained(&self) -> bool {
        self.out.is_flushed() && self.tx.pending_output() == 0 && !self.tx.has_pending_replies()
    }

    fn kill(&mut self, e: &io::Error) {
        if !self.shut {
            self.shut = true;
            self.out.clear(&mut self.tx);
            self.dead.set(e);
        }
    }

    fn closed_error(&self) -> Error {
        self.dead.error()
    }

    /// Encodes pending replies and writes what it can.
    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.shut {
            return Poll::Ready(());
        }
        if let Err(e) = ready!(self.out.poll_write(&mut self.tx, &mut self.wr, cx)) {
            self.kill(&e);
        }
        Poll::Ready(())
    }
}

struct Shared<S> {
    write: Mutex<WriteSide<S>>,
    wakers: Arc<Wakers>,
    waker: Waker,
    high_water: usize,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, WriteSide<S>> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waker(&self, which: usize, cx: &Context<'_>) -> Waker {
        self.wakers.register(which, cx.waker());
        self.waker.clone()
    }
}

/// The receiving half of a split [`WebSocket`]: `recv`, `recv_event`, and
/// a [`futures_core::Stream`] of messages.
///
/// It also runs the connection's timers (keepalive, pong and close
/// timeouts), writes control replies, and shuts the transport down when the
/// connection ends, so keep polling it until it returns `None`.
pub struct WebSocketReader<S> {
    rd: ReadHalf<S>,
    rx: ReceiveHalf,
    events: EventQueue,
    timer: Timer,
    shared: Arc<Shared<S>>,
    read_done: bool,
    finished: bool,
    fatal: Option<io::Error>,
    linger: Option<Instant>,
    close_timeout: Duration,
    negotiated: Negotiated,
}

/// The sending half of a split [`WebSocket`]: `send`, `ping`, `close`, and a
/// [`futures_sink::Sink`] of messages.
pub struct WebSocketWriter<S> {
    shared: Arc<Shared<S>>,
    negotiated: Negotiated,
}

impl<S> std::fmt::Debug for WebSocketReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketReader")
            .field("rx", &self.rx)
            .field(
                "queued_events",
                &(self.events.len() + self.rx.pending_events()),
            )
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for WebSocketWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketWriter").finish_non_exhaustive()
    }
}

pub(crate) fn split<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocket<S>,
) -> (WebSocketReader<S>, WebSocketWriter<S>) {
    let high_water = ws.config().write_buffer_high_water;
    let close_timeout = ws.config().close_timeout;
    let negotiated = ws.negotiated().clone();
    let p = ws.parts();
    let (rx, mut tx) = p
        .conn
        .split()
        // Only open connections are handed to the application as WebSockets.
        .expect("a WebSocket's opening handshake has completed");
    if p.close_requested && !tx.is_close_sent() {
        // Unreachable in practice (close() queues the frame at once); keep
        // the invariant that a requested close is on the wire.
        let _ = tx.close(Instant::now(), CloseCode::NORMAL, "");
    }
    let (rd, wr) = tokio::io::split(p.io);
    let (wakers, waker) = Wakers::new_waker();
    let shared = Arc::new(Shared {
        write: Mutex::new(WriteSide {
            tx,
            wr,
            out: p.out,
            shut: p.shut,
            dead: p.dead,
        }),
        wakers,
        waker,
        high_water,
    });
    let reader = WebSocketReader {
        rd,
        rx,
        events: p.events,
        timer: Timer::default(),
        shared: shared.clone(),
        read_done: p.read_done || p.shut,
        finished: p.shut,
        fatal: p.fatal,
        linger: None,
        close_timeout,
        negotiated: negotiated.clone(),
    };
    (reader, WebSocketWriter { shared, negotiated })
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// Receives the next message; see [`WebSocket::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: bytes read and events decoded are kept in the reader,
    /// never in the future.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next event, control frames included; see
    /// [`WebSocket::recv_event`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`WebSocketReader::recv`].
    pub async fn recv_event(&mut self) -> Option<Result<Event, Error>> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    /// What the opening handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The peer's Close frame, once it has been taken in order: by
    /// `recv`/`recv_event` after the messages before it (or earlier by
    /// `send`/`close` when nothing precedes it).
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.events.close_frame()
    }

    /// The connection state as the receiving side sees it.
    pub fn state(&self) -> State {
        self.rx.state()
    }

    /// The next event: any taken from the core before the split, then the
    /// core's. Events stay in the core until asked for, so that taking the
    /// peer's Close (which releases its echo) comes after the application
    /// has answered the messages before it.
    fn next_event(&mut self) -> Option<Event> {
        let rx = &mut self.rx;
        self.events.next(|| rx.poll_event())
    }

    /// Writes replies and whatever else is queued; shuts the transport down
    /// when the connection is over. Returns pending output and whether the
    /// write side is shut.
    fn drive_write(&mut self, cx: &mut Context<'_>) -> (usize, bool) {
        let mut w = self.shared.lock();
        let _ = w.poll_output(cx);
        if !w.shut
            && self.rx.should_close_transport()
            && w.is_drained()
            && Pin::new(&mut w.wr).poll_shutdown(cx).is_ready()
        {
            w.shut = true;
        }
        (w.pending(), w.shut)
    }

    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.linger.is_none() && self.rx.should_close_transport() {
            self.linger = Some(Instant::now() + self.close_timeout);
        }
        let deadline = match (self.rx.poll_timeout(), self.linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let now = ready!(self.timer.poll(deadline, cx));
        if self.linger.is_some_and(|l| now >= l) {
            // The peer does not take our last bytes: give up on them.
            {
                let mut guard = self.shared.lock();
                let w = &mut *guard;
                w.shut = true;
                w.out.clear(&mut w.tx);
            }
            self.finished = true;
            return Poll::Ready(());
        }
        self.rx.handle_timeout(now);
        Poll::Ready(())
    }

    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_done {
            return Poll::Pending;
        }
        let rx = &mut self.rx;
        let r = ready!(poll_read_once(&mut self.rd, cx, |data| {
            let now = Instant::now();
            if data.is_empty() {
                rx.receive_eof(now);
            } else {
                rx.receive(now, data);
            }
        }));
        match r {
            Ok(0) => self.read_done = true,
            Ok(_) => {}
            Err(e) => {
                self.read_done = true;
                if self.rx.state() == State::Closed {
                    self.rx.receive_eof(Instant::now());
                } else {
                    self.shared.lock().kill(&e);
                    self.fatal = Some(e);
                    self.finished = true;
                }
            }
        }
        Poll::Ready(())
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Error>>> {
        if !self.finished {
            // Events a read already decoded are handed out without touching
            // the write side; replies queued meanwhile are written, in one
            // batch, once no event is left (before waiting for input).
            let rx = &mut self.rx;
            if let Some(ev) = self.events.next_without_io(|| rx.poll_event()) {
                return Poll::Ready(Some(event_result(ev)));
            }
        }
        let waker = self.shared.waker(RECV, cx);
        let cx = &mut Context::from_waker(&waker);
        loop {
            let (pending, write_shut) = if self.finished {
                (0, true)
            } else {
                self.drive_write(cx)
            };
            if let Some(ev) = self.next_event() {
                if !self.finished {
                    // Taking a Close or Error event may have released our
                    // Close frame: start writing it now.
                    let _ = self.drive_write(cx);
                }
                return Poll::Ready(Some(event_result(ev)));
            }
            if let Some(e) = self.fatal.take() {
                return Poll::Ready(Some(Err(Error::Io(e))));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            if write_shut && (self.read_done || self.rx.should_close_transport()) {
                self.finished = true;
                continue;
            }
            if self.poll_timers(cx).is_ready() {
                continue;
            }
            if pending <= self.shared.high_water && self.poll_input(cx).is_ready() {
                continue;
            }
            return Poll::Pending;
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
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
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures_core::Stream for WebSocketReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    /// Sends a message and waits until the transport has accepted it; see
    /// [`WebSocket::send`].
    ///
    /// # Cancel safety
    ///
    /// As [`WebSocket::send`]: dropped before the message was encoded, it is
    /// not sent; after, it is sent by the next operation of either half.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        let msg = msg.into();
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        self.start_send_inner(msg)?;
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Sends a Ping (payload at most 125 bytes).
    ///
    /// # Cancel safety
    ///
    /// As [`WebSocketWriter::send`].
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        {
            let mut w = self.shared.lock();
            if w.shut {
                return Err(w.closed_error());
            }
            w.tx.ping(payload)?;
        }
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Writes all pending output.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Sends a Close frame and writes it out. The closing handshake then
    /// completes on the [`WebSocketReader`]: it receives the peer's Close,
    /// shuts the transport down and returns `None` (or fails with
    /// [`wsmachine::Timeout::ClosingHandshake`] after `Config::close_timeout`).
    /// Calling it again, or after the peer closed, only flushes.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the Close frame is queued at the first poll.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.queue_close(code, reason)?;
        match poll_fn(|cx| self.poll_flush_inner(cx)).await {
            Err(Error::Closed) => Ok(()),
            r => r,
        }
    }

    /// What the opening handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    fn queue_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let mut w = self.shared.lock();
        if w.shut {
            return Ok(());
        }
        match w.tx.close(Instant::now(), code, reason) {
            Ok(()) | Err(SendError::Closed) => {}
            Err(e) => return Err(e.into()),
        }
        drop(w);
        // The reader's timer now has a closing-handshake deadline to arm.
        self.shared.wakers.wake(RECV);
        Ok(())
    }

    fn poll_ready_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        {
            // Below the high-water mark the message is only encoded: it is
            // written by `flush` (which `send` and `forward` call) with
            // everything queued before it, in one system call.
            let w = self.shared.lock();
            if w.shut {
                return Poll::Ready(Err(w.closed_error()));
            }
            if w.pending() <= self.shared.high_water {
                return Poll::Ready(Ok(()));
            }
        }
        let waker = self.shared.waker(SEND, cx);
        let cx = &mut Context::from_waker(&waker);
        let mut w = self.shared.lock();
        let _ = w.poll_output(cx);
        if w.shut {
            return Poll::Ready(Err(w.closed_error()));
        }
        if w.pending() <= self.shared.high_water {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn start_send_inner(&mut self, msg: Message) -> Result<(), Error> {
        let mut w = self.shared.lock();
        if w.shut {
            return Err(w.closed_error());
        }
        w.tx.send(msg)?;
        Ok(())
    }

    fn poll_flush_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let waker = self.shared.waker(SEND, cx);
        let cx = &mut Context::from_waker(&waker);
        let mut w = self.shared.lock();
        ready!(w.poll_output(cx));
        if w.dead.is_set() {
            return Poll::Ready(Err(w.closed_error()));
        }
        Poll::Ready(Ok(()))
    }
}

/// As the [`WebSocket`] sink; `poll_close` sends Close 1000 and flushes (the
/// reader completes the handshake).
impl<S: AsyncRead + AsyncWrite + Unpin> futures_sink::Sink<Message> for WebSocketWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_ready_inner(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().start_send_inner(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.queue_close(CloseCode::NORMAL, "")?;
        this.poll_flush_inner(cx)
    }
}
