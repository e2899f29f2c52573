//! [`WebSocketReader`] and [`WebSocketWriter`]: the two halves of a
//! [`WebSocket`](super::WebSocket), for separate tasks.
//!
//! The reader owns the core's receiving half and the transport's read half;
//! the writer and the reader share the write side (the core's sending half,
//! the write queue and the transport's write half) behind a `std` mutex that
//! is only ever held inside one `poll_*` call, never across an `.await`: a
//! task waiting for the socket to become writable holds no lock. The reader
//! writes the control replies it produced (Pongs, the Close echo, keepalive
//! Pings) itself, so they go out even while the writer task is idle.
//!
//! Both tasks may wait for writability at once while the transport keeps a
//! single write waker; the write side therefore registers its own waker,
//! which wakes every task that waited (see `WakerList`).

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Instant;

use async_io::Timer;
use futures_core::Stream;
use futures_io::{AsyncRead, AsyncWrite};
use futures_sink::Sink;
use futures_util::io::{AsyncReadExt, ReadHalf, WriteHalf};
use std::future::Future;
use wsmachine::{
    CloseCode, CloseFrame, ConnectionError, Event, Message, Negotiated, SendError, Timeout,
};

use super::state::{ReadState, WriteState};
use crate::Error;

/// Wakers of every task waiting on the shared write side.
#[derive(Default)]
struct WakerList(Mutex<Vec<Waker>>);

impl WakerList {
    fn lock(&self) -> MutexGuard<'_, Vec<Waker>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, waker: &Waker) {
        let mut list = self.lock();
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    fn wake_all(&self) {
        let list = std::mem::take(&mut *self.lock());
        for w in list {
            w.wake();
        }
    }
}

impl Wake for WakerList {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

struct WriteSide<S> {
    io: WriteHalf<S>,
    w: WriteState,
}

struct Shared<S> {
    side: Mutex<WriteSide<S>>,
    /// Tasks waiting for the transport to accept bytes.
    write_wakers: Arc<WakerList>,
    /// A waker that wakes all of `write_wakers`: given to the transport.
    write_waker: Waker,
    /// Bytes are queued or unflushed on the write side (a hint for the
    /// reader, which then helps flushing).
    dirty: AtomicBool,
    /// The transport is shut down: the connection is over.
    finished: AtomicBool,
    /// Tasks waiting for `finished` (a writer's `close`).
    finish_wakers: WakerList,
    /// The reader while it waits for input: a writer that leaves bytes
    /// queued wakes it so that it keeps flushing them (it only looks at
    /// `dirty` when polled, and a read may be all it waits for).
    reader_waker: WakerList,
}

impl<S: AsyncWrite + AsyncRead + Unpin> Shared<S> {
    /// Runs `f` on the write side with a context whose waker wakes every
    /// task that waited on it. The lock is released before returning.
    fn with<T>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WriteSide<S>, &mut Context<'_>) -> T,
    ) -> T {
        self.write_wakers.register(cx.waker());
        let mut side = self.side.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cx = Context::from_waker(&self.write_waker);
        let out = f(&mut side, &mut cx);
        self.dirty.store(side.w.pending() > 0, Ordering::Release);
        out
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.finish_wakers.wake_all();
        // A writer blocked on backpressure must see `finished` too.
        self.write_wakers.wake_all();
    }
}

pub(crate) fn split<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    r: ReadState,
    w: WriteState,
    negotiated: Negotiated,
    done: bool,
) -> (WebSocketReader<S>, WebSocketWriter<S>) {
    let (rh, wh) = io.split();
    let write_wakers = Arc::new(WakerList::default());
    let shared = Arc::new(Shared {
        side: Mutex::new(WriteSide { io: wh, w }),
        write_waker: Waker::from(write_wakers.clone()),
        write_wakers,
        dirty: AtomicBool::new(true),
        finished: AtomicBool::new(done),
        finish_wakers: WakerList::default(),
        reader_waker: WakerList::default(),
    });
    (
        WebSocketReader {
            io: rh,
            r,
            shared: shared.clone(),
            done,
            flushing: true,
            negotiated: negotiated.clone(),
        },
        WebSocketWriter {
            shared,
            negotiated,
            close_timer: None,
        },
    )
}

/// The receiving half of a split [`WebSocket`](super::WebSocket): a
/// [`Stream`] of messages.
///
/// It must be polled (`recv`, `recv_event` or the `Stream`) for anything to
/// be read: Pings are answered, keepalive and close timeouts run, and the
/// transport is shut down at the end of the closing handshake only while a
/// task is waiting on it.
///
/// # Cancel safety
/// [`recv`](WebSocketReader::recv) and [`recv_event`](WebSocketReader::recv_event)
/// are cancel-safe: all progress lives in the reader, and dropping the future
/// loses no message.
pub struct WebSocketReader<S> {
    io: ReadHalf<S>,
    r: ReadState,
    shared: Arc<Shared<S>>,
    done: bool,
    /// A flush started by the reader has not completed.
    flushing: bool,
    negotiated: Negotiated,
}

impl<S> std::fmt::Debug for WebSocketReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketReader")
            .field("rx", &self.r.rx)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketReader<S> {
    /// Receives the next message; `None` once the connection is over. See
    /// [`WebSocket::recv`](super::WebSocket::recv). Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next event of any kind. See
    /// [`WebSocket::recv_event`](super::WebSocket::recv_event). Cancel-safe.
    pub async fn recv_event(&mut self) -> Option<Result<Event, Error>> {
        poll_fn(|cx| self.poll_recv_event(cx)).await
    }

    /// The peer's Close frame, once it has been taken in order: by
    /// `recv`/`recv_event` after the messages before it (or earlier by
    /// `send`/`close` when nothing precedes it).
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.r.close_frame.as_ref()
    }

    /// What the opening handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    fn fail(&mut self, e: std::io::Error) -> Error {
        self.done = true;
        self.r.set_failed();
        self.shared.finish();
        Error::Io(e)
    }

    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.r.has_events() || self.done {
                return Poll::Ready(Ok(()));
            }
            if self.r.gave_up() {
                // As in the unsplit driver: drop what the peer never took.
                self.shared.with(cx, |s, cx| {
                    s.w.tx.clear_transmit();
                    let _ = s.w.poll_shutdown(&mut s.io, cx);
                });
                self.done = true;
                self.shared.finish();
                continue;
            }
            let closing = self.r.rx.should_close_transport();
            if closing
                || self.flushing
                || self.r.rx.has_pending_replies()
                || self.shared.dirty.load(Ordering::Acquire)
            {
                match self
                    .shared
                    .with(cx, |s, cx| s.w.poll_flush_out(&mut s.io, cx))
                {
                    Poll::Ready(Ok(())) => {
                        self.flushing = false;
                        if closing {
                            ready!(self
                                .shared
                                .with(cx, |s, cx| s.w.poll_shutdown(&mut s.io, cx)));
                            self.done = true;
                            self.shared.finish();
                            continue;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail(e))),
                    // Keep reading while the peer is not accepting our bytes.
                    Poll::Pending => self.flushing = true,
                }
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
            self.shared.reader_waker.register(cx.waker());
            // A writer may have left bytes queued after the check above;
            // now that it would wake us, look again.
            if !self.flushing && self.shared.dirty.load(Ordering::Acquire) {
                continue;
            }
            return Poll::Pending;
        }
    }

    fn poll_recv_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Error>>> {
        if let Err(e) = ready!(self.poll_progress(cx)) {
            return Poll::Ready(Some(Err(e)));
        }
        let ev = self.r.pop();
        if matches!(ev, Some(Event::Close(_) | Event::Error(_))) {
            // Taking this event released our Close frame (the echo, or the
            // answer to a protocol error): best effort to write it now.
            let _ = self
                .shared
                .with(cx, |s, cx| s.w.poll_flush_out(&mut s.io, cx));
        }
        match ev {
            Some(Event::Error(e)) => Poll::Ready(Some(Err(Error::Ws(e)))),
            Some(ev) => Poll::Ready(Some(Ok(ev))),
            None => Poll::Ready(None),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            match ready!(self.poll_recv_event(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(Event::Text(t))) => return Poll::Ready(Some(Ok(Message::Text(t)))),
                Some(Ok(Event::Binary(b))) => return Poll::Ready(Some(Ok(Message::Binary(b)))),
                Some(Ok(_)) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// The sending half of a split [`WebSocket`](super::WebSocket): a [`Sink`]
/// of messages.
///
/// # Cancel safety
/// As for [`WebSocket`](super::WebSocket): a dropped `send`/`ping` queued
/// nothing, a dropped `close` leaves the Close frame queued.
pub struct WebSocketWriter<S> {
    shared: Arc<Shared<S>>,
    negotiated: Negotiated,
    /// Bounds `close` when the reader is not being polled.
    close_timer: Option<Timer>,
}

impl<S> std::fmt::Debug for WebSocketWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketWriter")
            .field("finished", &self.shared.finished.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<S> {
    /// Sends a message, waiting while the pending output is above the
    /// high-water mark. See [`WebSocket::send`](super::WebSocket::send).
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        let mut msg = Some(msg.into());
        poll_fn(|cx| {
            ready!(self.poll_ready_send(cx))?;
            let queued = msg.take().map_or(Ok(()), |m| self.start_send_msg(m));
            // Write what the core queued even if it refused the message.
            self.poll_write_now(cx)?;
            Poll::Ready(queued)
        })
        .await
    }

    /// Sends a Ping (payload at most 125 bytes).
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        let mut pending = true;
        poll_fn(|cx| {
            ready!(self.poll_ready_send(cx))?;
            let queued = if std::mem::take(&mut pending) {
                self.shared
                    .with(cx, |s, _| s.w.tx.ping(payload))
                    .map_err(Error::Send)
            } else {
                Ok(())
            };
            self.poll_write_now(cx)?;
            Poll::Ready(queued)
        })
        .await
    }

    /// Waits until every queued byte has been written and flushed.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush_all(cx)).await
    }

    /// Sends a Close frame and waits until the reader has seen the closing
    /// handshake through and shut the transport down, or until
    /// `Config::close_timeout` passes (then it shuts the transport down
    /// itself and returns `Err(Error::Ws(TimedOut(ClosingHandshake)))`).
    /// Keep polling the reader meanwhile: it receives the peer's Close (and
    /// any message sent before it), then returns `None`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.start_close(code, reason)?;
        poll_fn(|cx| self.poll_close_handshake(cx)).await
    }

    /// What the opening handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Bytes queued for writing and not yet accepted by the transport.
    pub fn pending_output(&self) -> usize {
        self.shared
            .side
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .w
            .pending()
    }

    fn poll_ready_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.is_finished() {
            return Poll::Ready(Err(Error::Closed));
        }
        {
            // Below the high-water mark there is nothing to wait for: skip
            // registering a waker (the message is written by the flush).
            let side = self
                .shared
                .side
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if side.w.pending() <= side.w.high_water() {
                return Poll::Ready(Ok(()));
            }
        }
        let res = ready!(self.shared.with(cx, |s, cx| s.w.poll_room(&mut s.io, cx)));
        Poll::Ready(res.map_err(Error::Io))
    }

    fn start_send_msg(&mut self, msg: Message) -> Result<(), Error> {
        let mut side = self
            .shared
            .side
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        side.w.tx.send(msg)?;
        self.shared.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn poll_write_now(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        match self
            .shared
            .with(cx, |s, cx| s.w.poll_flush_out(&mut s.io, cx))
        {
            Poll::Ready(Err(e)) => Err(Error::Io(e)),
            Poll::Ready(Ok(())) => Ok(()),
            Poll::Pending => {
                // Bytes stay queued and this task may not come back (a
                // `send` returns here): the reader takes over the flushing.
                self.shared.reader_waker.wake_all();
                Ok(())
            }
        }
    }

    fn poll_flush_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.is_finished() {
            return Poll::Ready(Ok(()));
        }
        let res = ready!(self
            .shared
            .with(cx, |s, cx| s.w.poll_flush_out(&mut s.io, cx)));
        Poll::Ready(res.map_err(Error::Io))
    }

    fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.shared.is_finished() {
            return Ok(());
        }
        let mut side = self
            .shared
            .side
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !side.w.tx.is_close_sent() {
            match side.w.tx.close(Instant::now(), code, reason) {
                // `Closed`: the core already queued a Close (e.g. the echo
                // of the peer's); wait for the end all the same.
                Ok(()) | Err(SendError::Closed) => {}
                Err(e) => return Err(e.into()),
            }
            self.shared.dirty.store(true, Ordering::Release);
        }
        if self.close_timer.is_none() {
            self.close_timer = Some(Timer::at(Instant::now() + side.w.close_timeout));
        }
        Ok(())
    }

    fn poll_close_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.is_finished() {
            return Poll::Ready(Ok(()));
        }
        match self
            .shared
            .with(cx, |s, cx| s.w.poll_flush_out(&mut s.io, cx))
        {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
            Poll::Ready(Ok(())) | Poll::Pending => {}
        }
        self.shared.finish_wakers.register(cx.waker());
        if self.shared.is_finished() {
            return Poll::Ready(Ok(()));
        }
        if let Some(timer) = &mut self.close_timer {
            ready!(Pin::new(timer).poll(cx));
        }
        // The reader did not finish the handshake in time (or is not being
        // polled): end the transport ourselves.
        ready!(self
            .shared
            .with(cx, |s, cx| s.w.poll_shutdown(&mut s.io, cx)));
        self.shared.finish();
        Poll::Ready(Err(Error::Ws(ConnectionError::TimedOut(
            Timeout::ClosingHandshake,
        ))))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketWriter<S> {
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

    /// Sends Close 1000 and waits as [`WebSocketWriter::close`] does.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.start_close(CloseCode::NORMAL, "")?;
        this.poll_close_handshake(cx)
    }
}
