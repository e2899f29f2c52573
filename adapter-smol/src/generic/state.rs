//! The driver's two halves of state, independent of how the transport is
//! owned: [`ReadState`] feeds the core's [`ReceiveHalf`] and runs its timers,
//! [`WriteState`] writes what the core's [`SendHalf`] encodes. Every method is
//! a `poll_*` that takes the transport as an argument and keeps all progress in
//! `self`, never in a future's locals: that is what makes every public future
//! built on them cancel-safe.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use wsmachine::{CloseFrame, Event, ReceiveHalf, SendHalf};

/// Bytes read from the transport per `poll_read`.
const READ_CHUNK: usize = 64 << 10;

/// Received events stay in the core until the application asks for one:
/// taking the peer's Close (or a protocol error) is what releases our Close
/// frame, so the application's answers to the messages before it go out
/// first. While the application only sends, the driver still reads (so
/// Pings are answered), but only while fewer than this many events wait in
/// the core; with one read of at most `READ_CHUNK` bytes per step, that
/// bounds what a peer can make us hold for an application that does not
/// read.
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
/// the application has not taken yet), the few events already taken from it
/// (see [`ReadState::take_lone_event`]), and the timer.
pub(crate) struct ReadState {
    pub(crate) rx: ReceiveHalf,
    /// Events taken from the core before the application asked; they come
    /// before the core's.
    taken: VecDeque<Event>,
    timer: Timer,
    timer_at: Option<Instant>,
    /// The peer's Close frame, once received.
    pub(crate) close_frame: Option<CloseFrame>,
    /// The transport reached end of stream or failed: never read again.
    eof: bool,
    /// `Config::close_timeout`: how long, once the core is done with the
    /// connection, to keep trying to write our last bytes.
    close_timeout: Duration,
    /// When to give up on them (armed when the core says to close).
    linger: Option<Instant>,
    /// The peer did not take them in time: the driver drops them and ends.
    gave_up: bool,
}

impl ReadState {
    pub(crate) fn new(rx: ReceiveHalf, close_timeout: Duration) -> Self {
        // Events the handshake left behind (frames that arrived with the 101
        // response) stay in the core like any other.
        ReadState {
            rx,
            taken: VecDeque::new(),
            timer: Timer::never(),
            timer_at: None,
            close_frame: None,
            eof: false,
            close_timeout,
            linger: None,
            gave_up: false,
        }
    }

    /// The connection is over but the peer did not take our last bytes
    /// within `close_timeout`: drop them and end.
    pub(crate) fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// Whether events are waiting for the application.
    pub(crate) fn has_events(&self) -> bool {
        !self.taken.is_empty() || self.rx.pending_events() > 0
    }

    /// The next event the application has not seen. Taking the peer's Close
    /// or the connection's error from the core releases our Close frame:
    /// write pending output after calling this.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        let ev = match self.taken.pop_front() {
            Some(ev) => ev,
            None => self.rx.poll_event()?,
        };
        if let Event::Close(f) = &ev {
            self.close_frame = Some(f.clone());
        }
        Some(ev)
    }

    /// Called once the application's message is encoded: when the only
    /// event left in the core is the peer's Close (or the connection's
    /// error), nothing the application has not seen comes before it, so it
    /// is taken now (and kept for `recv`): its Close frame goes out even
    /// when the application only sends. Behind unread messages it waits for
    /// `recv`, so that the answers to them go first.
    pub(crate) fn take_lone_event(&mut self) {
        if self.rx.pending_events() == 1 && self.rx.state() != wsmachine::State::Open {
            if let Some(ev) = self.rx.poll_event() {
                if let Event::Close(f) = &ev {
                    self.close_frame = Some(f.clone());
                }
                self.taken.push_back(ev);
            }
        }
    }

    /// Whether reading more would be useful: the transport is still open and
    /// the core has not finished with it.
    pub(crate) fn can_read(&self) -> bool {
        !self.eof && !self.rx.should_close_transport()
    }

    /// Whether to read ahead while the application is not asking for a
    /// message (during `send`): only while fewer than [`READ_AHEAD_EVENTS`]
    /// events wait, so a peer cannot make us buffer without bound what the
    /// application does not consume (backpressure reaches the peer through
    /// TCP).
    pub(crate) fn wants_read_ahead(&self) -> bool {
        self.rx.pending_events() + self.taken.len() < READ_AHEAD_EVENTS && self.can_read()
    }

    /// Marks the transport as unusable for reading (after an I/O error).
    pub(crate) fn set_failed(&mut self) {
        self.eof = true;
    }

    /// Runs the core's timers when due and arms the timer for the next
    /// deadline. Returns `true` when a timeout was handled.
    pub(crate) fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.linger.is_none() && self.rx.should_close_transport() {
                // The core is done; only our last bytes are left to write. A
                // peer that does not read them must not hold us forever.
                self.linger = Instant::now().checked_add(self.close_timeout);
            }
            let linger = self.linger.filter(|_| !self.gave_up);
            let deadline = match (self.rx.poll_timeout(), linger) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(deadline) = deadline else {
                self.timer_at = None;
                return false;
            };
            // Trust the clock, not the timer future: the future may fire late
            // or early relative to what the core considers due, and the core
            // treats an early call as a no-op anyway.
            let now = Instant::now();
            if now >= deadline {
                if linger.is_some_and(|l| now >= l) {
                    self.gave_up = true;
                } else {
                    self.rx.handle_timeout(now);
                }
                return true;
            }
            if self.timer_at != Some(deadline) {
                self.timer.set_at(deadline);
                self.timer_at = Some(deadline);
            }
            match Pin::new(&mut self.timer).poll(cx) {
                Poll::Ready(_) => continue,
                Poll::Pending => return false,
            }
        }
    }

    /// One read from the transport into the core. `Ready(Ok(()))` means
    /// bytes or end of stream were fed in (events may be queued).
    pub(crate) fn poll_read_io<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        with_read_buf(|buf| match Pin::new(&mut *io).poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                self.rx.receive_eof(Instant::now());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(n)) => {
                self.rx.receive(Instant::now(), &buf[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.eof = true;
                Poll::Ready(Err(e))
            }
        })
    }

    /// Everything but waiting: runs due timers and, if `read` allows it,
    /// reads until the transport has nothing more right now. Registers `cx`
    /// for the timer and (when reading) for readability.
    pub(crate) fn poll_background<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        read: fn(&ReadState) -> bool,
    ) -> io::Result<()> {
        loop {
            let mut progressed = self.poll_timer(cx);
            if read(self) {
                match self.poll_read_io(io, cx) {
                    Poll::Ready(Ok(())) => progressed = true,
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => {}
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
    high_water: usize,
    pub(crate) close_timeout: Duration,
    /// The transport's write side has been shut down.
    pub(crate) shut_down: bool,
}

impl WriteState {
    pub(crate) fn new(tx: SendHalf, high_water: usize, close_timeout: Duration) -> Self {
        WriteState {
            tx,
            needs_flush: false,
            high_water,
            close_timeout,
            shut_down: false,
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

    /// Writes until nothing is pending and the transport is flushed.
    pub(crate) fn poll_flush_out<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            // Encodes any control reply the receiving half asked for.
            if self.tx.peek_transmit().is_none() {
                if self.needs_flush {
                    ready!(Pin::new(&mut *io).poll_flush(cx))?;
                    self.needs_flush = false;
                }
                // A reply may have been pushed by the receiving half (on
                // another task) while we were flushing.
                if self.tx.has_pending_replies() {
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_write_some(io, cx))?;
        }
    }

    /// Writes until the pending output is at or below the high-water mark.
    pub(crate) fn poll_room<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.tx.pending_output() > self.high_water {
            ready!(self.poll_write_some(io, cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Shuts the transport's write side down once (TCP FIN, TLS close_notify).
    /// Errors are ignored: the WebSocket closing handshake is already over,
    /// and a peer that reset first is no failure of ours.
    pub(crate) fn poll_shutdown<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if !self.shut_down {
            let _ = ready!(Pin::new(&mut *io).poll_close(cx));
            self.shut_down = true;
        }
        Poll::Ready(())
    }

    /// One write, vectored when the core's output is in several slices.
    fn poll_write_some<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let io = Pin::new(&mut *io);
        let res = match self.tx.peek_transmit_vectored(&mut slices) {
            0 => return Poll::Ready(Ok(())),
            1 => io.poll_write(cx, &slices[0]),
            k => io.poll_write_vectored(cx, &slices[..k]),
        };
        let n = match ready!(res) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Poll::Ready(Ok(())),
            Err(e) => return Poll::Ready(Err(e)),
        };
        self.needs_flush = true;
        // A stream claiming more than it was given is buggy: the core
        // clamps, never panics.
        self.tx.advance_transmit(n);
        Poll::Ready(Ok(()))
    }
}
