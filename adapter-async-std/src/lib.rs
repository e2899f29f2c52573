//! # wsmachine-async-std: WebSocket over async-std
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); new code should
//! use `wsmachine-smol`, which has the same API. Both runtimes speak
//! futures-io, so this crate reuses smol's binding of the one driver
//! (`async-io` timers run on any executor) and adds only [`AsyncStd`],
//! which ends the TCP stream where async-std's own `poll_close` does not,
//! and [`AsyncStdTcp`], TCP through `async_std::net`.
//!
//! ```no_run
//! # fn main() -> Result<(), wsmachine_async_std::Error> {
//! async_std::task::block_on(async {
//!     let (mut ws, _response) = wsmachine_async_std::connect("ws://127.0.0.1:9001/").await?;
//!     ws.send("hello").await?;
//!     if let Some(msg) = ws.recv().await {
//!         println!("{:?}", msg?);
//!     }
//!     ws.close(wsmachine_async_std::CloseCode::NORMAL, "bye").await
//! })
//! # }
//! ```
#![warn(missing_docs)]

use std::any::Any;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_std::io::{Read as AsyncRead, Write as AsyncWrite};
use async_std::net::TcpStream;
use wsmachine::driver::{self, Io, Runtime};
pub use wsmachine_smol::*;

/// smol's binding of the driver ([`Smol`]), except for the end of the
/// stream: async-std's `TcpStream::poll_close` only flushes (async-io's
/// generic `Async<T>`), so after the closing handshake the peer would see
/// the end of the TCP stream only when the WebSocket is dropped. This
/// runtime shuts the write side down itself (`shutdown(Write)`: a FIN)
/// once `poll_close` is done, for `async_std::net::TcpStream` and TLS over
/// it; other streams end as their `poll_close` says.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Timer = <Smol as Runtime>::Timer;

    fn now() -> Instant {
        Smol::now()
    }

    fn timer() -> Self::Timer {
        Smol::timer()
    }

    fn fill_random(buf: &mut [u8]) {
        Smol::fill_random(buf)
    }
}

/// The async-std TCP stream under `io`, if `io` is one of the streams this
/// crate hands out or accepts in practice (plain, or TLS over one).
fn tcp_under<S: Any>(io: &S) -> Option<&TcpStream> {
    let io: &dyn Any = io;
    if let Some(tcp) = io.downcast_ref::<TcpStream>() {
        return Some(tcp);
    }
    if let Some(s) = io.downcast_ref::<MaybeTlsStream<TcpStream>>() {
        return Some(s.get_ref());
    }
    if let Some(s) = io.downcast_ref::<futures_rustls::server::TlsStream<TcpStream>>() {
        return Some(s.get_ref().0);
    }
    if let Some(s) = io.downcast_ref::<futures_rustls::client::TlsStream<TcpStream>>() {
        return Some(s.get_ref().0);
    }
    None
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Io<S> for AsyncStd {
    type ByteStream = driver::ByteStream<S, AsyncStd>;

    fn byte_stream(inner: driver::ByteStream<S, AsyncStd>) -> Self::ByteStream {
        inner
    }

    fn poll_read(io: &mut S, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        <Smol as Io<S>>::poll_read(io, cx, buf)
    }

    fn poll_write(io: &mut S, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        <Smol as Io<S>>::poll_write(io, cx, buf)
    }

    fn poll_write_vectored(
        io: &mut S,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        <Smol as Io<S>>::poll_write_vectored(io, cx, bufs)
    }

    fn poll_flush(io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        <Smol as Io<S>>::poll_flush(io, cx)
    }

    fn poll_shutdown(io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TLS sends its close_notify in `poll_close`; the FIN goes after it.
        std::task::ready!(<Smol as Io<S>>::poll_shutdown(io, cx))?;
        match tcp_under(io).map(|tcp| tcp.shutdown(Shutdown::Write)) {
            // The peer may have gone already: the stream is over either way.
            Some(Err(e)) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// A [`WebSocket`] as a futures-io byte stream.
pub type ByteStream<S> = driver::ByteStream<S, AsyncStd>;

/// TCP connections through `async_std::net`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdTcp;

impl driver::Connector for AsyncStdTcp {
    type Runtime = AsyncStd;
    type Tcp = TcpStream;
    type Stream = MaybeTlsStream<TcpStream>;
    type TlsConfig = Arc<rustls::ClientConfig>;

    async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn plain(tcp: TcpStream) -> Self::Stream {
        MaybeTlsStream::Plain(tcp)
    }

    async fn tls(
        tcp: TcpStream,
        host: &str,
        config: Option<Self::TlsConfig>,
        roots: TlsRoots,
    ) -> Result<Self::Stream, Error> {
        connect_tls(tcp, host, config, roots).await
    }
}

// `connect`, `ConnectBuilder`, `accept`… over `async_std::net` (these
// shadow smol's from the glob import above).
wsmachine::bind_runtime!(AsyncStd, AsyncStdTcp);
