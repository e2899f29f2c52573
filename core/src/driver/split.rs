//! [`WebSocketReader`] and [`WebSocketWriter`]: the two halves of a
//! [`WebSocket`](super::WebSocket) for separate tasks.
//!
//! The transport and the sending state live behind one mutex, held only
//! inside a `poll_*` call (never across a wait). The reader reads through
//! it, and writes the control replies it produced (Pongs, the Close echo,
//! keepalive Pings) itself, so they go out even while the writer is idle.
//! Each half registers its own waker: a task's waker is stored where that
//! task waits (readability for the reader; writability, with every writer
//! task in a list, for the writer), so no wake-up is lost when both wait at
//! once — quinn keeps one sender per task for the same reason.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll, Wake, Waker};

use futures_core::Stream;
use futures_sink::Sink;

use super::state::{ReadState, WriteState};
use super::sync::{Arc, AtomicBool, Mutex, MutexGuard, PoisonError};
use super::{Ended, Error, Io, Runtime, SendStatus};
use crate::{
    CloseCode, CloseFrame, ConnectionError, Event, Message, Negotiated, PreparedMessage, SendError,
    SendHalf, State, Stats,
};

/// Wakers of the tasks waiting on one thing; woken all at once.
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
        let mut list = self.lock();
        if list.len() <= 1 {
            // The common case, one waiting task: `pop` keeps the list's
            // allocation for its next `register` (a fan-out wakes every
            // connection's reader once per burst; taking the list freed it
            // and the reader's next wait allocated it again).
            let one = list.pop();
            drop(list);
            if let Some(w) = one {
                w.wake();
            }
            return;
        }
        // Woken outside the lock: a waker may run code that registers.
        let all = std::mem::take(&mut *list);
        drop(list);
        for w in all {
            w.wake();
        }
    }

    /// Wakes every task in the list but `me`'s.
    fn wake_others(&self, me: &Waker) {
        let others: Vec<Waker> = {
            let mut list = self.lock();
            if list.iter().all(|w| w.will_wake(me)) {
                return;
            }
            let (mine, others) = list.drain(..).partition(|w| w.will_wake(me));
            *list = mine;
            others
        };
        for w in others {
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

/// The transport and the sending state.
struct Side<S> {
    io: S,
    w: WriteState,
}

struct Shared<S> {
    side: Mutex<Side<S>>,
    /// Every task waiting to write: the transport's write readiness wakes
    /// them all through `write_waker`.
    write_wakers: Arc<WakerList>,
    write_waker: Waker,
    /// Output is pending (set by the writer, so an idle reader writes it).
    dirty: AtomicBool,
    /// The connection is over (set by whichever half ends it).
    finished: AtomicBool,
    /// Why, for the writer's errors.
    ended: Mutex<Option<Ended>>,
    reader_waker: WakerList,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Side<S>> {
        self.side.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the sending side with a waker that wakes every task
    /// waiting to write (the transport keeps only one). When a write went
    /// through, the other tasks waiting to write are woken: their wait on
    /// the transport may be gone with it (see `WriteState::take_wrote`),
    /// and the room they wait for may be there.
    fn with<T>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Side<S>, &mut Context<'_>) -> T,
    ) -> T {
        self.write_wakers.register(cx.waker());
        let mut side = self.lock();
        let out = f(&mut side, &mut Context::from_waker(&self.write_waker));
        self.dirty.store(side.w.pending() > 0, Ordering::Release);
        let wrote = side.w.take_wrote();
        drop(side);
        if wrote {
            self.write_wakers.wake_others(cx.waker());
        }
        out
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    fn finish(&self, ended: Ended) {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(ended);
        self.finished.store(true, Ordering::Release);
        self.write_wakers.wake_all();
    }

    fn closed(&self) -> Error {
        let ended = self
            .ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Error::Closed(ended.unwrap_or(Ended::Closing))
    }
}

pub(crate) fn split<S, R: Io<S>>(
    io: S,
    r: ReadState<R>,
    w: WriteState,
    negotiated: Negotiated,
    done: bool,
) -> (WebSocketReader<S, R>, WebSocketWriter<S, R>) {
    let write_wakers = Arc::new(WakerList::default());
    let ended = done.then(|| r.ended(true));
    let shared = Arc::new(Shared {
        side: Mutex::new(Side { io, w }),
        write_waker: Waker::from(write_wakers.clone()),
        write_wakers,
        dirty: AtomicBool::new(true),
        finished: AtomicBool::new(done),
        ended: Mutex::new(ended),
        reader_waker: WakerList::default(),
    });
    (
        WebSocketReader {
            r,
            shared: shared.clone(),
            done,
            flushing: true,
            negotiated: negotiated.clone(),
        },
        WebSocketWriter {
            shared,
            negotiated,
            _rt: std::marker::PhantomData,
        },
    )
}

/// The receiving half of a split [`WebSocket`](super::WebSocket).
///
/// It reads, runs the connection's timers (keepalive, close timeout), and
/// writes the control replies the core produces, so it must be polled for
/// the connection to make progress — including for the closing handshake
/// the writer's [`close`](WebSocketWriter::close) starts.
///
/// Cancel-safe like [`WebSocket::recv`](super::WebSocket::recv).
pub struct WebSocketReader<S, R: Runtime> {
    r: ReadState<R>,
    shared: Arc<Shared<S>>,
    done: bool,
    /// A flush of output is in progress (or may be needed).
    flushing: bool,
    negotiated: Negotiated,
}

impl<S, R: Runtime> std::fmt::Debug for WebSocketReader<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketReader")
            .field("rx", &self.r.rx)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<S, R: Io<S>> WebSocketReader<S, R> {
    /// Receives the next message (see [`WebSocket::recv`](super::WebSocket::recv)).
    /// `None` once the connection is over.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next event of any kind (see
    /// [`WebSocket::recv_event`](super::WebSocket::recv_event)).
    pub async fn recv_event(&mut self) -> Option<Result<Event, Error>> {
        poll_fn(|cx| self.poll_recv_event(cx)).await
    }

    /// The peer's Close frame, once received.
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.r.close_frame()
    }

    /// What the opening handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The connection's state as the core sees it.
    pub fn state(&self) -> State {
        self.r.rx.state()
    }

    /// The connection's counters, both ways (see
    /// [`WebSocket::stats`](super::WebSocket::stats)): the received ones
    /// are the reader's own, the sent ones are read under the lock the
    /// writer holds for a write.
    pub fn stats(&self) -> Stats {
        self.shared.lock().w.tx.add_stats(self.r.rx.stats())
    }

    /// Records the peer's address on the connection's span (see
    /// [`WebSocket::record_peer_addr`](super::WebSocket::record_peer_addr)).
    pub fn record_peer_addr(&self, addr: std::net::SocketAddr) {
        self.r.trace.span().record_peer(addr);
    }

    fn end(&mut self) {
        self.done = true;
        self.shared.finish(self.r.ended(true));
    }

    fn fail(&mut self, e: std::io::Error) -> Error {
        self.r.set_failed(e.kind());
        self.end();
        Error::Io(e)
    }

    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // One slice of input per poll (see `ReadState::poll_backlog`).
        let mut sliced = false;
        loop {
            if self.r.has_events() || self.done {
                return Poll::Ready(Ok(()));
            }
            if self.r.gave_up() {
                // Our last bytes never left: drop them and end.
                self.shared.with(cx, |s, cx| {
                    s.w.tx.clear_transmit();
                    let _ = s.w.poll_shutdown::<R, S>(&mut s.io, cx);
                });
                self.end();
                continue;
            }
            let closing = self.r.rx.is_done_with_transport();
            if closing
                || self.flushing
                || self.r.rx.has_pending_replies()
                || self.shared.dirty.load(Ordering::Acquire)
            {
                match self
                    .shared
                    .with(cx, |s, cx| s.w.poll_flush_out::<R, S>(&mut s.io, cx))
                {
                    Poll::Ready(Ok(())) => {
                        self.flushing = false;
                        if closing {
                            ready!(self
                                .shared
                                .with(cx, |s, cx| s.w.poll_shutdown::<R, S>(&mut s.io, cx)));
                            self.end();
                            continue;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail(e))),
                    Poll::Pending => self.flushing = true,
                }
            }
            if self.r.poll_timer(cx) {
                continue;
            }
            // Outside the lock: inflating needs no transport.
            match self.r.poll_backlog(cx, &mut sliced) {
                Some(Poll::Ready(())) => continue,
                Some(Poll::Pending) => return Poll::Pending,
                None => {}
            }
            if self.r.can_read() {
                let read = {
                    let mut side = self.shared.lock();
                    self.r.poll_read_io(&mut side.io, cx)
                };
                match read {
                    Poll::Ready(Ok(())) => {
                        sliced = true;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail(e))),
                    Poll::Pending => {}
                }
            }
            // The writer wakes us when it leaves output it could not write
            // (a control reply of ours may be behind it).
            self.shared.reader_waker.register(cx.waker());
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
            // Taking this event released our Close frame: get it out now.
            let _ = self
                .shared
                .with(cx, |s, cx| s.w.poll_flush_out::<R, S>(&mut s.io, cx));
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
                    if let Some(m) = super::websocket::event_to_message(ev) {
                        return Poll::Ready(Some(Ok(m)));
                    }
                }
            }
        }
    }
}

impl<S: Unpin, R: Io<S>> Stream for WebSocketReader<S, R> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// The sending half of a split [`WebSocket`](super::WebSocket).
///
/// Cancel-safe like [`WebSocket::send`](super::WebSocket::send).
pub struct WebSocketWriter<S, R: Runtime> {
    shared: Arc<Shared<S>>,
    negotiated: Negotiated,
    _rt: std::marker::PhantomData<fn() -> R>,
}

impl<S, R: Runtime> std::fmt::Debug for WebSocketWriter<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketWriter")
            .field("finished", &self.shared.finished.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S, R: Io<S>> WebSocketWriter<S, R> {
    /// The counters of what was sent (messages, bytes, compressed bytes);
    /// the received ones, the keepalive Pings and the round-trip time are
    /// the reader's and are zero here: [`WebSocketReader::stats`] has them
    /// all.
    pub fn stats(&self) -> Stats {
        self.shared.lock().w.tx.stats()
    }

    /// Sends a message: waits while the output is over the high-water
    /// mark, queues the message and writes what the transport accepts now.
    /// Fails with [`Error::Closed`] once a Close frame was sent or the
    /// connection is over, and ends the connection when it finds more
    /// than [`crate::Config::max_pending_output`] unsent (see
    /// [`SendStatus`]).
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<(), Error> {
        let msg = msg.into();
        self.send_with(move |tx| tx.send(msg)).await
    }

    /// Sends a message encoded once for many connections (see
    /// [`PreparedMessage`]), like [`send`](WebSocketWriter::send).
    pub async fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        self.send_with(|tx| tx.send_prepared(msg)).await
    }

    /// Queues a message without ever waiting, and says whether the output
    /// is now over [`crate::Config::write_buffer_high_water`]
    /// ([`SendStatus::Backpressure`]; the message is queued either way).
    /// Fails with [`Error::Closed`] once a Close frame was sent or the
    /// connection is over, and ends the connection when it finds more
    /// than [`crate::Config::max_pending_output`] unsent (see
    /// [`SendStatus`]).
    ///
    /// Nothing is written here: the reader's task is woken and writes it
    /// (the reader must be polled, as always), or the writer's next `send`
    /// or `flush` does. So a fan-out loop over many writers never waits
    /// for any one peer, and what it queues for one connection in a burst
    /// goes out in one write.
    ///
    /// ```no_run
    /// # fn f<S, R: wsmachine::driver::Io<S>>(writers: &mut Vec<wsmachine::driver::WebSocketWriter<S, R>>) {
    /// use wsmachine::driver::SendStatus;
    /// let msg = wsmachine::PreparedMessage::new("tick");
    /// // Never waits: drops the subscribers that are gone or do not keep up.
    /// writers.retain_mut(|w| matches!(w.try_send_prepared(&msg), Ok(SendStatus::Queued)));
    /// # }
    /// ```
    pub fn try_send(&mut self, msg: impl Into<Message>) -> Result<SendStatus, Error> {
        let msg = msg.into();
        self.try_queue(move |tx| tx.send(msg))
    }

    /// [`try_send`](WebSocketWriter::try_send) for a [`PreparedMessage`]:
    /// queues the shared frame without waiting or copying.
    pub fn try_send_prepared(&mut self, msg: &PreparedMessage) -> Result<SendStatus, Error> {
        self.try_queue(|tx| tx.send_prepared(msg))
    }

    /// `send` and `send_prepared`: `queue` encodes the message once the
    /// output has room.
    async fn send_with(
        &mut self,
        queue: impl FnOnce(&mut SendHalf) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        let mut queue = Some(queue);
        poll_fn(|cx| {
            ready!(self.poll_ready_send(cx))?;
            let queued = queue.take().map_or(Ok(()), |q| self.start_send_with(q));
            self.poll_write_now(cx)?;
            Poll::Ready(queued)
        })
        .await
    }

    /// `try_send` and `try_send_prepared`.
    fn try_queue(
        &mut self,
        queue: impl FnOnce(&mut SendHalf) -> Result<(), SendError>,
    ) -> Result<SendStatus, Error> {
        if self.shared.is_finished() {
            return Err(self.shared.closed());
        }
        let (queued, over) = {
            let mut side = self.shared.lock();
            let queued = queue(&mut side.w.tx);
            (queued, side.w.pending() > side.w.high_water())
        };
        queued.map_err(|e| self.send_error(e))?;
        self.shared.dirty.store(true, Ordering::Release);
        // The reader writes it (it looks at `dirty` before it sleeps).
        self.shared.reader_waker.wake_all();
        Ok(if over {
            SendStatus::Backpressure
        } else {
            SendStatus::Queued
        })
    }

    /// Sends a Ping (payload at most 125 bytes); the Pong arrives on the reader.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        let mut pending = true;
        poll_fn(|cx| {
            ready!(self.poll_ready_send(cx))?;
            let queued = if std::mem::take(&mut pending) {
                let r = self.shared.with(cx, |s, _| s.w.tx.ping(payload));
                r.map_err(|e| self.send_error(e))
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

    /// Sends a Close frame with `code` and `reason` and waits until it is
    /// written. The reader completes the closing handshake: it keeps
    /// delivering what the peer sent before its Close, then returns `None`
    /// (or the `TimedOut(ClosingHandshake)` error after
    /// [`crate::Config::close_timeout`]) and shuts the transport down.
    /// Returns at once when the connection is already over (with the error
    /// that ended it, if any).
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.start_close(code, reason)?;
        poll_fn(|cx| self.poll_close_handshake(cx)).await
    }

    /// What the opening handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Bytes queued for writing and not yet accepted by the transport
    /// (what [`try_send`](WebSocketWriter::try_send) compares to the
    /// high-water mark): the WebSocket API's `bufferedAmount`.
    pub fn pending_output(&self) -> usize {
        self.shared.lock().w.pending()
    }

    fn send_error(&self, e: SendError) -> Error {
        match e {
            SendError::Closed => self.shared.closed(),
            SendError::PendingOutputLimit => {
                let ended = Ended::Failed(ConnectionError::PendingOutputLimit);
                self.shared.finish(ended.clone());
                // The reader shuts the transport down and reports the error.
                self.shared.reader_waker.wake_all();
                Error::Closed(ended)
            }
            e => Error::Send(e),
        }
    }

    fn poll_ready_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.is_finished() {
            return Poll::Ready(Err(self.shared.closed()));
        }
        {
            let side = self.shared.lock();
            if side.w.pending() <= side.w.high_water() {
                return Poll::Ready(Ok(()));
            }
        }
        let res = ready!(self
            .shared
            .with(cx, |s, cx| s.w.poll_room::<R, S>(&mut s.io, cx)));
        Poll::Ready(res.map_err(Error::Io))
    }

    fn start_send_msg(&mut self, msg: Message) -> Result<(), Error> {
        self.start_send_with(|tx| tx.send(msg))
    }

    fn start_send_with(
        &mut self,
        queue: impl FnOnce(&mut SendHalf) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        let r = queue(&mut self.shared.lock().w.tx);
        r.map_err(|e| self.send_error(e))?;
        self.shared.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn poll_write_now(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        match self
            .shared
            .with(cx, |s, cx| s.w.poll_flush_out::<R, S>(&mut s.io, cx))
        {
            Poll::Ready(Err(e)) => Err(Error::Io(e)),
            Poll::Ready(Ok(())) => Ok(()),
            Poll::Pending => {
                // The reader finishes the write if this future is gone.
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
            .with(cx, |s, cx| s.w.poll_flush_out::<R, S>(&mut s.io, cx)));
        Poll::Ready(res.map_err(Error::Io))
    }

    fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.shared.is_finished() {
            return Ok(());
        }
        let mut side = self.shared.lock();
        if !side.w.tx.is_close_sent() {
            match side.w.tx.close(R::now(), code, reason) {
                Ok(()) | Err(SendError::Closed) => {}
                Err(e) => return Err(Error::Send(e)),
            }
            self.shared.dirty.store(true, Ordering::Release);
        }
        drop(side);
        // The reader re-arms its timer for the closing handshake, and
        // writes the Close if this future is dropped.
        self.shared.reader_waker.wake_all();
        Ok(())
    }

    fn poll_close_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shared.is_finished() {
            return Poll::Ready(self.finished_result());
        }
        let res = ready!(self
            .shared
            .with(cx, |s, cx| s.w.poll_flush_out::<R, S>(&mut s.io, cx)));
        res.map_err(Error::Io)?;
        if self.shared.is_finished() {
            return Poll::Ready(self.finished_result());
        }
        Poll::Ready(Ok(()))
    }

    /// `close`'s result once the reader ended the connection: the failure
    /// that ended it, if any.
    fn finished_result(&self) -> Result<(), Error> {
        let ended = self
            .shared
            .ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ended.map_or(Ok(()), Ended::into_close_result)
    }
}

impl<S: Unpin, R: Io<S>> Sink<Message> for WebSocketWriter<S, R> {
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

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.start_close(CloseCode::NORMAL, "")?;
        this.poll_close_handshake(cx)
    }
}
