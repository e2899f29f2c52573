//! [`ByteStream`]: `AsyncRead` + `AsyncWrite` over binary messages.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsmachine::{CloseCode, Message};

use crate::{Error, WebSocket};

/// Largest message one `write` call sends; longer writes are cut (the
/// caller writes the rest, as `AsyncWrite` allows).
const MAX_WRITE: usize = 64 << 10;

/// A byte stream tunnelled over a WebSocket, from
/// [`WebSocket::into_byte_stream`].
///
/// Reading yields the payloads of received messages back to back (text
/// payloads as their UTF-8 bytes); end of stream is the end of the
/// connection. Each `write` sends one binary message of at most 64 KiB;
/// `shutdown` closes the WebSocket gracefully (code 1000).
///
/// Reads and writes are cancel-safe: a partly consumed message is kept in
/// the `ByteStream`, and a write either sent its bytes or did not.
///
/// ```no_run
/// # async fn demo(ws: wsmachine_tokio::WebSocket<tokio::net::TcpStream>) -> std::io::Result<()> {
/// let mut tunnel = ws.into_byte_stream();
/// let mut backend = tokio::net::TcpStream::connect("127.0.0.1:5432").await?;
/// tokio::io::copy_bidirectional(&mut tunnel, &mut backend).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ByteStream<S> {
    ws: WebSocket<S>,
    /// The unread rest of the current message.
    read: Bytes,
}

fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        Error::Closed => io::ErrorKind::BrokenPipe.into(),
        e => io::Error::other(e),
    }
}

impl<S> ByteStream<S> {
    pub(crate) fn new(ws: WebSocket<S>) -> Self {
        ByteStream {
            ws,
            read: Bytes::new(),
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
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.read.is_empty() {
            match ready!(this.ws.poll_recv(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(b))) => this.read = b,
                Some(Ok(Message::Text(t))) => this.read = t.into_bytes(),
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ByteStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        ready!(this.ws.poll_send_ready(cx)).map_err(to_io)?;
        let n = buf.len().min(MAX_WRITE);
        this.ws
            .start_send_msg(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(to_io)?;
        // Start writing now; what the transport does not take yet goes out
        // with the next call (or `flush`).
        let _ = this.ws.poll_flush_out(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().ws.poll_flush_out(cx).map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.ws.start_close(CloseCode::NORMAL, "").map_err(to_io)?;
        this.ws.poll_closed(cx).map_err(to_io)
    }
}
