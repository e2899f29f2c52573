//! The pieces every driver loop here is made of: a writer that hands the
//! core's output to the transport with vectored writes, a one-shot read
//! into a stack buffer, a timer that reads the clock before trusting its
//! `Sleep`, and a waker that wakes both the receiving and the sending side.
//!
//! Nothing here knows the WebSocket protocol; that is the core's job.

use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use wsmachine::SendHalf;

/// Bytes read from the transport at most per read call: a 64 KiB message
/// takes one read system call, not four.
pub(crate) const READ_CHUNK: usize = 64 << 10;

thread_local! {
    /// One read buffer per thread instead of one per connection: a read
    /// completes synchronously inside `poll_read` and its bytes are copied
    /// into the core at once, so the buffer is free again before `poll_*`
    /// returns. Idle connections therefore hold no read buffer at all, and
    /// no 64 KiB array sits on the stack of whatever thread polls.
    static READ_BUF: std::cell::Cell<Option<Box<[MaybeUninit<u8>]>>> =
        const { std::cell::Cell::new(None) };
}

/// Slices handed to one `write_vectored` call at most (Linux's `UIO_MAXIOV`
/// is 1024; a few dozen already saturate a socket).
const MAX_IOV: usize = 64;

/// Writes the core's output straight from its buffers (no queue of
/// handed-out chunks here, so an idle connection holds none) and flushes
/// the transport after writing.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// Bytes were written since the last `poll_flush` of the transport (a
    /// TLS stream buffers records until flushed).
    unflushed: bool,
}

impl Writer {
    /// No write is waiting for a flush (the core's own queue is separate).
    pub(crate) fn is_flushed(&self) -> bool {
        !self.unflushed
    }

    /// Drops everything (the transport is gone).
    pub(crate) fn clear(&mut self, tx: &mut SendHalf) {
        tx.clear_transmit();
        self.unflushed = false;
    }

    /// Writes until the core has nothing queued and the transport flushed
    /// (`Ready`), or the transport is not ready (`Pending`, with `cx`
    /// registered).
    pub(crate) fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        tx: &mut SendHalf,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let vectored = io.is_write_vectored();
        loop {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let k = if vectored {
                tx.peek_transmit_vectored(&mut slices)
            } else {
                tx.peek_transmit().map_or(0, |b| {
                    slices[0] = IoSlice::new(b);
                    1
                })
            };
            let n = match k {
                0 => break,
                1 => ready!(Pin::new(&mut *io).poll_write(cx, &slices[0]))?,
                _ => ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k]))?,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            tx.advance_transmit(n);
            self.unflushed = true;
        }
        if self.unflushed {
            ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// The transport error that ended the connection, kept so that every later
/// `send` reports it (boxed: a live connection keeps a null pointer).
#[derive(Debug, Default)]
pub(crate) struct Dead(Option<Box<(io::ErrorKind, String)>>);

impl Dead {
    pub(crate) fn set(&mut self, e: &io::Error) {
        self.0 = Some(Box::new((e.kind(), e.to_string())));
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// What an operation on the ended connection fails with.
    pub(crate) fn error(&self) -> crate::Error {
        match self.0.as_deref() {
            Some((kind, msg)) => crate::Error::Io(io::Error::new(*kind, msg.clone())),
            None => crate::Error::Closed,
        }
    }
}

/// Reads once into a stack buffer and hands what arrived to `f` (an empty
/// slice at end of stream). Returns the number of bytes read.
pub(crate) fn poll_read_once<S: AsyncRead + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    f: impl FnOnce(&[u8]),
) -> Poll<io::Result<usize>> {
    // Taken, not borrowed: a WebSocket tunnelled through another one's byte
    // stream reads from inside this call and gets a fresh buffer.
    let mut storage = READ_BUF
        .try_with(std::cell::Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![MaybeUninit::uninit(); READ_CHUNK].into_boxed_slice());
    let mut buf = ReadBuf::uninit(&mut storage);
    let r = Pin::new(io).poll_read(cx, &mut buf);
    let out = match r {
        Poll::Ready(Ok(())) => {
            let data = buf.filled();
            let n = data.len();
            f(data);
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    };
    let _ = READ_BUF.try_with(|c| c.set(Some(storage)));
    out
}

/// Sleeps until the core's next deadline.
#[derive(Debug, Default)]
pub(crate) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// The deadline last reported due, to avoid spinning if the core hands
    /// it out again.
    fired: Option<Instant>,
}

impl Timer {
    /// `Ready(now)` once `deadline` has passed; `Pending` (with `cx`
    /// registered) before it, or forever when there is no deadline.
    pub(crate) fn poll(
        &mut self,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<Instant> {
        let Some(mut deadline) = deadline else {
            return Poll::Pending;
        };
        if self.fired == Some(deadline) {
            // The core still wants the deadline it was just told about;
            // retry a little later rather than spin.
            deadline += Duration::from_millis(1);
        }
        // Read the clock first: under Tokio's cooperative budget an elapsed
        // `Sleep` can report `Pending`, and a timer that is already due must
        // not wait for the next wake-up.
        let now = Instant::now();
        if now >= deadline {
            self.fired = Some(deadline);
            return Poll::Ready(now);
        }
        let at = tokio::time::Instant::from_std(deadline);
        match &mut self.sleep {
            Some(_) if self.armed == Some(deadline) => {}
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed = Some(deadline);
        let sleep = self.sleep.as_mut().expect("armed above");
        ready!(sleep.as_mut().poll(cx));
        self.fired = Some(deadline);
        // Tokio rounds deadlines up to its millisecond tick, so the clock is
        // normally past `deadline` here; never report an earlier instant.
        Poll::Ready(Instant::now().max(deadline))
    }
}

/// The wakers of the two sides of a connection: the receiving side (`recv`,
/// `Stream`) and the sending side (`send`, `Sink`).
///
/// A transport keeps one waker per direction, and both sides write (the
/// receiving side writes Pongs and the Close echo) and both may read (the
/// sending side processes Pings while the app only sends). If each passed
/// its own waker, the last one to poll would silently replace the other's.
/// So the transport is always polled with one combined waker that wakes
/// whichever sides are waiting; at worst a side is woken spuriously.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    slots: Mutex<[Option<Waker>; 2]>,
}

pub(crate) const RECV: usize = 0;
pub(crate) const SEND: usize = 1;

impl Wakers {
    /// The combined waker.
    pub(crate) fn new_waker() -> (Arc<Wakers>, Waker) {
        let w = Arc::new(Wakers::default());
        let waker = Waker::from(w.clone());
        (w, waker)
    }

    /// Records that side `which` waits, woken by `waker`.
    pub(crate) fn register(&self, which: usize, waker: &Waker) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match &slots[which] {
            Some(w) if w.will_wake(waker) => {}
            _ => slots[which] = Some(waker.clone()),
        }
    }

    /// Wakes side `which` if it waits (e.g. the reader, to re-arm its timer
    /// after the writer queued a Close).
    pub(crate) fn wake(&self, which: usize) {
        let w = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots[which].take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let taken = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            [slots[0].take(), slots[1].take()]
        };
        for w in taken.into_iter().flatten() {
            w.wake();
        }
    }
}
