//! [`ByteStream`]: a WebSocket seen as a plain byte stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_io::{AsyncRead, AsyncWrite};
use wsmachine::{CloseCode, Event};

use super::websocket::WebSocket;

/// `AsyncRead` + `AsyncWrite` over the messages of a [`WebSocket`], for
/// tunnelling another protocol (e.g. a TCP stream) through WebSocket.
///
/// - Reading yields the payloads of received binary messages, concatenated
///   (text messages are passed through as their UTF-8 bytes; Ping, Pong and
///   Close are handled underneath). End of stream (`Ok(0)`) after the peer's
///   Close; a protocol or I/O failure is an `io::Error`.
/// - Each `poll_write` sends its buffer as one binary message (after waiting
///   for room below the high-water mark); `poll_flush` writes everything out;
///   `poll_close` runs the closing handshake with code 1000.
///
/// Created by [`WebSocket::into_byte_stream`].
pub struct ByteStream<S> {
    ws: WebSocket<S>,
    /// The rest of the message being read.
    current: Bytes,
}

impl<S> std::fmt::Debug for ByteStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteStream")
            .field("ws", &self.ws)
            .field("buffered", &self.current.len())
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ByteStream<S> {
    pub(crate) fn new(ws: WebSocket<S>) -> Self {
        ByteStream {
            ws,
            current: Bytes::new(),
        }
    }

    /// The WebSocket underneath (bytes of a partly read message are lost).
    pub fn into_inner(self) -> WebSocket<S> {
        self.ws
    }

    /// The WebSocket underneath.
    pub fn get_ref(&self) -> &WebSocket<S> {
        &self.ws
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ByteStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        while this.current.is_empty() {
            match ready!(this.ws.poll_recv_event(cx)) {
                None => return Poll::Ready(Ok(0)),
                Some(Err(e)) => return Poll::Ready(Err(e.into())),
                Some(Ok(Event::Binary(b))) => this.current = b,
                Some(Ok(Event::Text(t))) => this.current = t.into_bytes(),
                Some(Ok(Event::Fragment(f))) => this.current = f.data,
                Some(Ok(_)) => {}
            }
        }
        let n = buf.len().min(this.current.len());
        buf[..n].copy_from_slice(&this.current[..n]);
        this.current.advance(n);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ByteStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.ws.poll_ready_send(cx))?;
        this.ws.start_send_bytes(buf)?;
        this.ws.poll_write_now(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = ready!(self.get_mut().ws.poll_flush_all(cx));
        Poll::Ready(res.map_err(Into::into))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.ws.start_close(CloseCode::NORMAL, "")?;
        let res = ready!(this.ws.poll_close_handshake(cx));
        Poll::Ready(res.map_err(Into::into))
    }
}
