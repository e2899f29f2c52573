//! Stream wrappers that tee every byte read and written into a trace log.
//!
//! [`TokioRecorder`] wraps a tokio `AsyncRead + AsyncWrite`, [`FuturesRecorder`]
//! a futures-io one. Each successful read becomes a `<` chunk (its exact
//! size: chunk boundaries are the reads), each successful write a `>` chunk,
//! end of stream `< eof`, a completed shutdown `> eof`. Events and actions
//! are the driver's to add ([`Recorder::push`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use crate::trace::Item;

/// A shared, appendable list of trace items. Clones share the same log; a
/// disabled recorder drops everything (for long Autobahn runs).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    log: Option<Arc<Mutex<Vec<Item>>>>,
}

impl Recorder {
    /// A recorder that keeps what it is given.
    pub fn new() -> Self {
        Recorder {
            log: Some(Arc::default()),
        }
    }

    /// A recorder that drops everything.
    pub fn disabled() -> Self {
        Recorder { log: None }
    }

    /// Whether this recorder keeps items.
    pub fn is_enabled(&self) -> bool {
        self.log.is_some()
    }

    /// Appends an item.
    pub fn push(&self, item: Item) {
        if let Some(log) = &self.log {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(item);
        }
    }

    /// Takes the items recorded so far.
    pub fn take(&self) -> Vec<Item> {
        match &self.log {
            Some(log) => std::mem::take(&mut *log.lock().unwrap_or_else(PoisonError::into_inner)),
            None => Vec::new(),
        }
    }
}

/// Tees a tokio stream into a [`Recorder`].
#[derive(Debug)]
pub struct TokioRecorder<S> {
    inner: S,
    rec: Recorder,
}

impl<S> TokioRecorder<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, rec: Recorder) -> Self {
        TokioRecorder { inner, rec }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TokioRecorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let got = buf.filled().get(before..).unwrap_or_default();
            if !got.is_empty() {
                self.rec.push(Item::Recv(got.to_vec()));
            } else if wanted {
                self.rec.push(Item::RecvEof);
            }
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for TokioRecorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            if let Some(d) = buf.get(..*n).filter(|d| !d.is_empty()) {
                self.rec.push(Item::Sent(d.to_vec()));
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = &r {
            self.rec.push(Item::SentEof);
        }
        r
    }
}

/// Tees a futures-io stream (smol, async-std) into a [`Recorder`].
#[derive(Debug)]
pub struct FuturesRecorder<S> {
    inner: S,
    rec: Recorder,
}

impl<S> FuturesRecorder<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, rec: Recorder) -> Self {
        FuturesRecorder { inner, rec }
    }

    /// Unwraps.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: futures_io::AsyncRead + Unpin> futures_io::AsyncRead for FuturesRecorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            match buf.get(..*n) {
                Some(d) if !d.is_empty() => self.rec.push(Item::Recv(d.to_vec())),
                _ if !buf.is_empty() => self.rec.push(Item::RecvEof),
                _ => {}
            }
        }
        r
    }
}

impl<S: futures_io::AsyncWrite + Unpin> futures_io::AsyncWrite for FuturesRecorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            if let Some(d) = buf.get(..*n).filter(|d| !d.is_empty()) {
                self.rec.push(Item::Sent(d.to_vec()));
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_close(cx);
        if let Poll::Ready(Ok(())) = &r {
            self.rec.push(Item::SentEof);
        }
        r
    }
}
