//! The driver's two halves of state, independent of how the transport is
//! owned: [`ReadState`] feeds the core's [`ReceiveHalf`] and runs its timers,
//! [`WriteState`] writes what the core's [`SendHalf`] encodes. Every method is
//! a `poll_*` that takes the transport as an argument and keeps all progress in
//! `self`, never in a future's locals: that is what makes every public future
//! built on them cancel-safe.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use super::trace::{ConnSpan, ReadTrace, WriteTrace};
use super::{Ended, Io, Runtime, Timer};
use crate::{CloseFrame, ConnectionError, Event, ReceiveHalf, SendHalf, State};

/// Bytes read from the transport per read.
const READ_CHUNK: usize = 64 << 10;

/// Received events stay in the core until the application asks for one:
/// taking the peer's Close (or a protocol error) is what releases our Close
/// frame, so the application's answers to the messages before it go out
/// first. While the application only sends, the driver still reads (so
/// Pings are answered), but only while fewer than this many events that
/// need the application wait in the core (the core decides which count:
/// [`ReceiveHalf::pending_events_for_read_ahead`]); with one read of at
/// most `READ_CHUNK` bytes per step, that bounds what a peer can make us
/// hold for an application that does not read.
const READ_AHEAD_EVENTS: usize = 32;

/// Chunks handed to one vectored write.
const MAX_IOV: usize = 64;

thread_local! {
    /// One read buffer per thread instead of one per connection: a read
    /// completes synchronously inside `poll_read` and its bytes are copied
    /// into the core at once, so the buffer is free again before `poll_*`
    /// returns. Idle connections therefore hold no read buffer at all.
    static READ_BUF: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

/// Runs `f` with the thread's read buffer (or a fresh one when it is taken,
/// e.g. a WebSocket tunnelled through another one's byte stream).
fn with_read_buf<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut buf = READ_BUF
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0; READ_CHUNK].into_boxed_slice());
    let out = f(&mut buf);
    let _ = READ_BUF.try_with(|c| c.set(Some(buf)));
    out
}

/// The receiving side: the core's [`ReceiveHalf`] (which holds the events
/// the application has not taken yet), the timer, and what only a closing
/// or failed connection needs ([`EndState`], boxed so an open one carries a
/// pointer).
pub(crate) struct ReadState<R: Runtime> {
    pub(crate) rx: ReceiveHalf,
    timer: R::Timer,
    timer_at: Option<Instant>,
    /// The transport reached end of stream or failed: never read again.
    eof: bool,
    /// A read went through since [`ReadState::take_read`] last looked.
    read: bool,
    /// The last read returned less than it asked for: the transport had
    /// nothing more at that moment (see `WebSocket::poll_ready_send`).
    drained: bool,
    end: Option<Box<EndState>>,
    /// The `tracing` feature's view of the receiving side (zero-sized
    /// without it).
    pub(crate) trace: ReadTrace,
    _rt: PhantomData<fn() -> R>,
}

#[derive(Default)]
struct EndState {
    /// Events taken from the core before the application asked (see
    /// [`ReadState::take_lone_event`]); they come before the core's.
    taken: VecDeque<Event>,
    /// The peer's Close frame, once received.
    close_frame: Option<CloseFrame>,
    /// The error that ended the connection, once taken from the core.
    error: Option<ConnectionError>,
    /// The transport failed with this kind of error.
    io_error: Option<io::ErrorKind>,
}

impl<R: Runtime> ReadState<R> {
    pub(crate) fn new(rx: ReceiveHalf, span: ConnSpan) -> Self {
        // Events the handshake left behind (frames that arrived with the 101
        // response) stay in the core like any other.
        ReadState {
            rx,
            timer: R::timer(),
            timer_at: None,
            eof: false,
            read: false,
            drained: false,
            end: None,
            trace: ReadTrace::new(span),
            _rt: PhantomData,
        }
    }

    fn end(&mut self) -> &mut EndState {
        self.end.get_or_insert_with(Box::default)
    }

    fn taken_len(&self) -> usize {
        self.end.as_ref().map_or(0, |e| e.taken.len())
    }

    /// The peer's Close frame, once received.
    pub(crate) fn close_frame(&self) -> Option<&CloseFrame> {
        self.end.as_ref()?.close_frame.as_ref()
    }

    /// The connection is over but the peer did not take our last bytes
    /// within `close_timeout`: drop them and end (the core's verdict).
    pub(crate) fn gave_up(&self) -> bool {
        self.rx.should_abandon_output()
    }

    /// Whether events are waiting for the application.
    pub(crate) fn has_events(&self) -> bool {
        self.taken_len() > 0 || self.rx.pending_events() > 0
    }

    #[cold]
    fn note(&mut self, ev: &Event) {
        self.trace.event(ev);
        match ev {
            Event::Close(f) => self.end().close_frame = Some(f.clone()),
            Event::Error(e) => self.end().error = Some(e.clone()),
            _ => {}
        }
    }

    /// The next event the application has not seen. Taking the peer's Close
    /// or the connection's error from the core releases our Close frame:
    /// write pending output after calling this.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        if let Some(ev) = self.end.as_mut().and_then(|e| e.taken.pop_front()) {
            return Some(ev);
        }
        let ev = self.rx.poll_event()?;
        // Only the Close and the error are remembered (and traced).
        if matches!(ev, Event::Close(_) | Event::Error(_)) {
            self.note(&ev);
        }
        Some(ev)
    }

    /// Called once the application's message is encoded: when nothing that
    /// needs the application comes before the peer's Close (or the
    /// connection's error) — no event at all, or only Pings the core
    /// answered and Pongs — our Close frame goes out now, even when the
    /// application only sends (a lone event is taken and kept for `recv`;
    /// behind answered events [`ReceiveHalf::release_close`] sends it and
    /// leaves them in the core). Behind unread messages it waits for
    /// `recv`, so that the answers to them go first.
    pub(crate) fn take_lone_event(&mut self) {
        if self.rx.state() == State::Open {
            return;
        }
        if self.rx.pending_events() == 1 {
            if let Some(ev) = self.rx.poll_event() {
                self.note(&ev);
                self.end().taken.push_back(ev);
            }
        } else {
            // Behind answered Pings and Pongs only: the core sends our
            // Close and keeps every event for `recv`.
            self.rx.release_close();
        }
    }

    /// Takes every event left in the core (once `close` was called, what
    /// arrives is discarded; the connection's error is remembered).
    pub(crate) fn take_all(&mut self) {
        while let Some(ev) = self.rx.poll_event() {
            self.note(&ev);
            self.end().taken.push_back(ev);
        }
    }

    /// Why the connection can no longer send (see [`Ended`]), as far as
    /// this side knows.
    pub(crate) fn ended(&self, done: bool) -> Ended {
        if let Some(end) = &self.end {
            if let Some(kind) = end.io_error {
                return Ended::Io(kind);
            }
            if let Some(e) = &end.error {
                return Ended::Failed(e.clone());
            }
        }
        if self.rx.send_failed() {
            return Ended::Failed(ConnectionError::PendingOutputLimit);
        }
        if done || self.rx.state() == State::Closed {
            Ended::Closed(self.close_frame().cloned())
        } else {
            Ended::Closing
        }
    }

    /// Whether the last read found the transport emptied (it returned
    /// less than the buffer holds).
    pub(crate) fn drained(&self) -> bool {
        self.drained
    }

    /// Whether a read went through since the last call (see
    /// `WebSocket::after_io`).
    pub(crate) fn take_read(&mut self) -> bool {
        std::mem::take(&mut self.read)
    }

    /// The core's pending work before any read: received bytes wait to be
    /// processed (a compressed frame is inflated a slice at a time, see
    /// [`ReceiveHalf::has_pending_work`]). `None`: nothing waits, read.
    /// `Some(Ready)`: a slice was processed (events may be queued). Only
    /// one slice of input (this one, or a read) per poll: once `*sliced`,
    /// it yields instead — `Some(Pending)` with the task's waker woken, so
    /// the executor runs the other tasks (their accepts, handshakes and
    /// echoes) before the next slice, rather than after the whole message.
    pub(crate) fn poll_backlog(&mut self, cx: &Context<'_>, sliced: &mut bool) -> Option<Poll<()>> {
        if !self.rx.has_pending_work() {
            return None;
        }
        if std::mem::replace(sliced, true) {
            cx.waker().wake_by_ref();
            return Some(Poll::Pending);
        }
        self.rx.resume(R::now());
        self.trace.after_input(&self.rx);
        Some(Poll::Ready(()))
    }

    /// Whether reading more would be useful: the transport is still open and
    /// the core has not finished with it.
    pub(crate) fn can_read(&self) -> bool {
        !self.eof && !self.rx.is_done_with_transport()
    }

    /// Whether to read ahead while the application is not asking for a
    /// message (during `send`): only while fewer than [`READ_AHEAD_EVENTS`]
    /// events that need the application wait, so a peer cannot make us
    /// buffer without bound what the application does not consume
    /// (backpressure reaches the peer through TCP).
    pub(crate) fn wants_read_ahead(&self) -> bool {
        self.rx.pending_events_for_read_ahead() + self.taken_len() < READ_AHEAD_EVENTS
            && self.can_read()
    }

    /// Marks the transport as unusable for reading after an I/O error.
    pub(crate) fn set_failed(&mut self, kind: io::ErrorKind) {
        self.eof = true;
        self.end().io_error.get_or_insert(kind);
    }

    /// Runs the core's timers when due (the give-up timer included: see
    /// [`ReceiveHalf::should_abandon_output`]) and arms the timer for the
    /// next deadline. Returns `true` when a timeout was handled.
    pub(crate) fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let Some(deadline) = self.rx.poll_timeout() else {
                self.timer_at = None;
                return false;
            };
            // Armed for this deadline already: until the timer fires, the
            // deadline has not passed, and the clock need not be read
            // (every poll would otherwise read it, several times per
            // batch of messages).
            if self.timer_at == Some(deadline) && self.timer.poll_elapsed(cx).is_pending() {
                return false;
            }
            // Fired (or a new deadline): trust the clock, not the timer. It
            // may fire early relative to what the core considers due, and
            // the core treats an early call as a no-op anyway.
            let now = R::now();
            if now >= deadline {
                self.rx.handle_timeout(now);
                self.trace.after_input(&self.rx);
                return true;
            }
            if self.timer_at != Some(deadline) {
                self.timer.reset(deadline);
                self.timer_at = Some(deadline);
            }
            match self.timer.poll_elapsed(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return false,
            }
        }
    }

    /// One read from the transport into the core. `Ready(Ok(()))` means
    /// bytes or end of stream were fed in (events may be queued).
    pub(crate) fn poll_read_io<S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>
    where
        R: Io<S>,
    {
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        with_read_buf(|buf| {
            self.drained = false;
            let n = match R::poll_read(io, cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    return Poll::Ready(Ok(()))
                }
                // e.g. a reset right after the closing handshake: a plain end.
                Poll::Ready(Err(_)) if self.rx.state() == State::Closed => 0,
                Poll::Ready(Err(e)) => {
                    self.set_failed(e.kind());
                    return Poll::Ready(Err(e));
                }
            };
            self.read = true;
            self.drained = n < buf.len();
            if n == 0 {
                self.eof = true;
                self.rx.receive_eof(R::now());
            } else {
                self.rx.receive(R::now(), &buf[..n.min(buf.len())]);
            }
            self.trace.after_input(&self.rx);
            Poll::Ready(Ok(()))
        })
    }

    /// Everything but waiting: runs due timers and, if `read` allows it,
    /// reads until the transport has nothing more right now. Registers `cx`
    /// for the timer and (when reading) for readability.
    ///
    /// Received bytes waiting in the core (see [`ReadState::poll_backlog`])
    /// come before a read; one slice of them at most, after which the task
    /// is woken to come back for the next.
    pub(crate) fn poll_background<S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        read: fn(&ReadState<R>) -> bool,
    ) -> io::Result<()>
    where
        R: Io<S>,
    {
        let mut sliced = false;
        loop {
            let mut progressed = self.poll_timer(cx);
            if read(self) {
                match self.poll_backlog(cx, &mut sliced) {
                    Some(Poll::Ready(())) => progressed = true,
                    Some(Poll::Pending) => {}
                    None => match self.poll_read_io(io, cx) {
                        Poll::Ready(Ok(())) => {
                            sliced = true;
                            progressed = true;
                        }
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => {}
                    },
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }
}

/// The sending side: the core's [`SendHalf`], whose output is written
/// straight from its buffers (nothing handed out is queued here, so an idle
/// connection holds no queue of its own).
pub(crate) struct WriteState {
    pub(crate) tx: SendHalf,
    needs_flush: bool,
    /// A write went through since [`WriteState::take_wrote`] last looked.
    wrote: bool,
    high_water: usize,
    /// The transport's write side has been shut down.
    pub(crate) shut_down: bool,
    /// The `tracing` feature's view of the sending side (zero-sized
    /// without it).
    trace: WriteTrace,
}

impl WriteState {
    pub(crate) fn new(tx: SendHalf, high_water: usize, span: ConnSpan) -> Self {
        WriteState {
            tx,
            needs_flush: false,
            wrote: false,
            high_water,
            shut_down: false,
            trace: WriteTrace::new(span),
        }
    }

    /// Output above this makes senders wait (`Config::write_buffer_high_water`).
    pub(crate) fn high_water(&self) -> usize {
        self.high_water
    }

    /// Bytes encoded and not yet accepted by the transport.
    pub(crate) fn pending(&self) -> usize {
        self.tx.pending_output()
    }

    /// Whether a write went through since the last call. A transport may
    /// drop another task's wait for writability when a write succeeds
    /// (smol's `TcpStream` keeps one pending `writable()` per stream, not
    /// per task), so whoever wrote wakes the tasks that wait to write.
    pub(crate) fn take_wrote(&mut self) -> bool {
        std::mem::take(&mut self.wrote)
    }

    /// Writes until nothing is pending and the transport is flushed.
    pub(crate) fn poll_flush_out<R: Io<S>, S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            // Encodes any control reply the receiving half asked for.
            if self.tx.peek_transmit().is_none() {
                if self.needs_flush {
                    ready!(R::poll_flush(io, cx))?;
                    self.needs_flush = false;
                    // A TLS stream writes to its socket when flushed.
                    self.wrote = true;
                }
                // A reply may have been pushed by the receiving half (on
                // another task) while we were flushing.
                if self.tx.has_pending_replies() {
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_write_some::<R, S>(io, cx))?;
        }
    }

    /// Writes until the pending output is at or below the high-water mark.
    pub(crate) fn poll_room<R: Io<S>, S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.tx.pending_output() > self.high_water {
            ready!(self.poll_write_some::<R, S>(io, cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Shuts the transport's write side down once (TCP FIN, TLS close_notify).
    /// Errors are ignored: the WebSocket closing handshake is already over,
    /// and a peer that reset first is no failure of ours.
    pub(crate) fn poll_shutdown<R: Io<S>, S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if !self.shut_down {
            let _ = ready!(R::poll_shutdown(io, cx));
            self.shut_down = true;
        }
        Poll::Ready(())
    }

    /// One write, vectored when the core's output is in several slices.
    fn poll_write_some<R: Io<S>, S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let k = self.tx.peek_transmit_vectored(&mut slices);
        if k == 0 {
            return Poll::Ready(Ok(()));
        }
        let res = match k {
            1 => R::poll_write(io, cx, &slices[0]),
            k => R::poll_write_vectored(io, cx, &slices[..k]),
        };
        let n = match ready!(res) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Poll::Ready(Ok(())),
            Err(e) => return Poll::Ready(Err(e)),
        };
        self.needs_flush = true;
        self.wrote = true;
        // A stream claiming more than it was given is buggy: the core
        // clamps, never panics.
        self.tx.advance_transmit(n);
        self.trace.after_write(&self.tx);
        Poll::Ready(Ok(()))
    }
}

/// The totals of each side, as the connection goes (feature `tracing`).
#[cfg(feature = "tracing")]
impl<R: Runtime> Drop for ReadState<R> {
    fn drop(&mut self) {
        self.trace.finish(&self.rx);
    }
}

#[cfg(feature = "tracing")]
impl Drop for WriteState {
    fn drop(&mut self) {
        self.trace.finish(&self.tx);
    }
}
