//! [`ByteStream`]: a WebSocket as a byte stream, for tunnelling.

use std::io;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};

use super::websocket::WebSocket;
use super::{Io, Runtime};
use crate::{CloseCode, Event};

/// Largest message one write sends; longer writes are cut (the caller
/// writes the rest, as `AsyncWrite` allows), so a tunnel's big write does
/// not become one big message the peer must hold whole.
const MAX_WRITE: usize = 64 << 10;

/// A byte-stream view of a [`WebSocket`]: reads yield the payloads of
/// received binary and text messages — and of fragments, with
/// `Config::reassemble` off — back to back; end of stream is the end of
/// the connection. Each write sends one binary message of at most 64 KiB;
/// closing runs the closing handshake (code 1000). For tunnelling another
/// protocol over WebSocket.
///
/// Reads and writes are cancel-safe: a partly consumed message is kept
/// here, and a write either sent its bytes or did not.
///
/// The adapters expose it through their runtime's I/O traits (tokio's
/// `AsyncRead`/`AsyncWrite`, futures-io's with this crate's `futures-io`
/// feature); the `poll_*` methods here are what those call.
pub struct ByteStream<S, R: Runtime> {
    ws: WebSocket<S, R>,
    current: Bytes,
}

impl<S, R: Runtime> std::fmt::Debug for ByteStream<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteStream")
            .field("ws", &self.ws)
            .field("buffered", &self.current.len())
            .finish()
    }
}

impl<S, R: Io<S>> ByteStream<S, R> {
    /// The byte-stream view of `ws` (see [`WebSocket::into_byte_stream`]).
    pub fn new(ws: WebSocket<S, R>) -> Self {
        ByteStream {
            ws,
            current: Bytes::new(),
        }
    }

    /// The WebSocket underneath (bytes of a message partly read are lost).
    pub fn into_inner(self) -> WebSocket<S, R> {
        self.ws
    }

    /// The WebSocket underneath.
    pub fn get_ref(&self) -> &WebSocket<S, R> {
        &self.ws
    }

    /// Reads payload bytes into `buf`; `Ok(0)` once the connection is over.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        while self.current.is_empty() {
            match ready!(self.ws.poll_recv_event(cx)) {
                None => return Poll::Ready(Ok(0)),
                Some(Err(e)) => return Poll::Ready(Err(e.into())),
                Some(Ok(Event::Binary(b))) => self.current = b,
                Some(Ok(Event::Text(t))) => self.current = t.into_bytes(),
                Some(Ok(Event::Fragment(f))) => self.current = f.data,
                Some(Ok(_)) => {}
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Poll::Ready(Ok(n))
    }

    /// Sends `buf` (its first 64 KiB) as one binary message, after waiting
    /// for room under the high-water mark; returns how many bytes were sent.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let buf = &buf[..buf.len().min(MAX_WRITE)];
        ready!(self.ws.poll_ready_send(cx))?;
        self.ws.start_send_bytes(buf)?;
        self.ws.poll_write_now(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    /// Writes and flushes everything queued.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = ready!(self.ws.poll_flush_all(cx));
        Poll::Ready(res.map_err(Into::into))
    }

    /// Runs the closing handshake with code 1000.
    pub fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ws.start_close(CloseCode::NORMAL, "")?;
        let res = ready!(self.ws.poll_close_handshake(cx));
        Poll::Ready(res.map_err(Into::into))
    }
}

#[cfg(feature = "futures-io")]
mod futures_io_impls {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::ByteStream;
    use crate::driver::Io;

    impl<S: Unpin, R: Io<S>> futures_io::AsyncRead for ByteStream<S, R> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().poll_read(cx, buf)
        }
    }

    impl<S: Unpin, R: Io<S>> futures_io::AsyncWrite for ByteStream<S, R> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_flush(cx)
        }

        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_close(cx)
        }
    }
}
