//! The pieces every driver loop here is made of: a write queue that uses
//! vectored writes, a one-shot read into a stack buffer, a timer that reads
//! the clock before trusting its `Sleep`, and a waker that wakes both the
//! receiving and the sending side.
//!
//! Nothing here knows the WebSocket protocol; that is the core's job.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

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

/// Output handed out by the core and not yet accepted by the transport.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
    /// Bytes were written since the last `poll_flush` of the transport (a
    /// TLS stream buffers records until flushed).
    unflushed: bool,
}

impl OutQueue {
    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && !self.unflushed
    }

    /// Takes every chunk `next` hands out (the core's `poll_transmit`).
    pub(crate) fn refill(&mut self, mut next: impl FnMut() -> Option<Bytes>) {
        while let Some(b) = next() {
            if !b.is_empty() {
                self.len += b.len();
                self.chunks.push_back(b);
            }
        }
    }

    /// Drops everything (the transport is gone).
    pub(crate) fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.len = 0;
        self.unflushed = false;
    }

    /// Writes until the queue is empty and the transport flushed (`Ready`),
    /// or the transport is not ready (`Pending`, with `cx` registered).
    pub(crate) fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while let Some(first) = self.chunks.front() {
            let n = if self.chunks.len() > 1 && io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut k = 0;
                for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                    *slot = IoSlice::new(chunk);
                    k += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k]))?
            } else {
                ready!(Pin::new(&mut *io).poll_write(cx, first))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
            self.unflushed = true;
        }
        if self.unflushed {
            ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                return;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_chunks() {
        let mut q = OutQueue::default();
        let mut src = vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"defg"),
        ]
        .into_iter();
        q.refill(|| src.next());
        assert_eq!(q.len(), 7);
        q.advance(4);
        assert_eq!(q.len(), 3);
        assert_eq!(&q.chunks[0][..], b"efg");
        q.advance(3);
        assert!(q.chunks.is_empty());
    }
}
