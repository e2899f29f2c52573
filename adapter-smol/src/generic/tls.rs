//! [`MaybeTlsStream`]: what `connect` returns for `ws://` and `wss://`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;

/// A TCP stream `T`, plain (`ws://`) or under TLS (`wss://`, rustls).
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream<T> {
    /// `ws://`
    Plain(T),
    /// `wss://` (boxed: the TLS state is large and plain streams should
    /// not pay for it).
    Tls(Box<TlsStream<T>>),
}

impl<T> MaybeTlsStream<T> {
    /// The TCP stream underneath.
    pub fn get_ref(&self) -> &T {
        match self {
            MaybeTlsStream::Plain(t) => t,
            MaybeTlsStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(t) => Pin::new(t).poll_read(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(t) => Pin::new(t).poll_write(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(t) => Pin::new(t).poll_write_vectored(cx, bufs),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(t) => Pin::new(t).poll_flush(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(t) => Pin::new(t).poll_close(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
