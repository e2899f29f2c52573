//! # wsmachine-tokio: WebSockets on Tokio
//!
//! The binding of [`wsmachine`]'s one driver ([`wsmachine::driver`]) to
//! Tokio: [`Tokio`] gives it Tokio's clock and timers, the OS random
//! generator and Tokio streams; [`TokioTcp`] opens TCP through
//! `tokio::net` and TLS through rustls. Every protocol decision (framing,
//! masking, UTF-8, compression, close codes, keepalive, timeouts) is the
//! core's, and every driving decision (read-ahead, batching, the closing
//! linger, cancel safety) the driver's, so this crate behaves exactly like
//! the other `wsmachine` adapters.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsmachine_tokio::Error> {
//! use wsmachine_tokio::{CloseCode, Message};
//!
//! let (mut ws, _response) = wsmachine_tokio::connect("ws://127.0.0.1:9001/").await?;
//! ws.send("hello").await?;
//! while let Some(msg) = ws.recv().await {
//!     match msg? {
//!         Message::Text(t) => println!("{t}"),
//!         Message::Binary(b) => println!("{} bytes", b.len()),
//!     }
//!     ws.close(CloseCode::NORMAL, "bye").await?;
//! }
//! # Ok(()) }
//! ```
//!
//! A server calls [`accept`] (or [`accept_with`], to route and choose a
//! subprotocol) on each accepted stream: see `examples/echo_server.rs`.
//! Behind an HTTP server, the `axum` feature's `axum::WebSocketUpgrade`
//! extractor upgrades an axum route (`examples/axum_echo.rs`), and the
//! `http` feature validates a hyper request and builds its response
//! (`examples/upgrade_hyper.rs`). The `http2` feature adds WebSockets over
//! HTTP/2 (RFC 8441): `hyper::WebSocketUpgrade` answers an HTTP/1.1
//! upgrade or an HTTP/2 extended CONNECT in any hyper service,
//! `serve_connection` serves both on one port, and `H2Connection` opens
//! many WebSockets on one HTTP/2 connection (see the `h2` module).
//!
//! How the connection is driven (no background task; every future
//! cancel-safe) is the driver's: see [`driver::WebSocket`].
#![warn(missing_docs)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use wsmachine::driver::{self, Io, Runtime};

/// The TLS crates this adapter uses, for building server and client configs.
pub use tokio_rustls::{self, rustls};
pub use wsmachine::driver::{Ended, Error, SendStatus};
pub use wsmachine::{
    Accept, ClientRequest, CloseCode, CloseFrame, Compression, Config, ConnectionError,
    DeflateConfig, Event, HandshakeError, Message, Negotiated, PreparedMessage, Proxy, ProxyKind,
    Reject, Request, Response, Role, SendError, Stats, Timeout, Utf8Bytes,
};

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "http2")]
pub mod h2;
#[cfg(any(feature = "axum", feature = "http2"))]
pub mod hyper;
#[cfg(feature = "http2")]
pub use h2::{serve_connection, H2Connection};

/// The core's handshake from and to the `http` crate's types (feature
/// `http`), for streams an HTTP server upgraded (see
/// `examples/upgrade_hyper.rs`).
#[cfg(feature = "http")]
pub use wsmachine::{
    accept_http_response, error_h2_response, error_http_response, reject_http_response, H2Handshake,
};

/// The Tokio binding: Tokio's clock and timers (so `tokio::time::pause`
/// drives the core's timers too), `getrandom`, and any
/// `tokio::io::AsyncRead + AsyncWrite + Unpin` stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

/// A Tokio `Sleep`, created on first use (inside the runtime) and reset
/// in place after that.
#[derive(Debug, Default)]
pub struct TokioTimer(Option<Pin<Box<Sleep>>>);

impl driver::Timer for TokioTimer {
    fn reset(&mut self, at: Instant) {
        let at = tokio::time::Instant::from_std(at);
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.0 = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Runtime for Tokio {
    type Timer = TokioTimer;

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn timer() -> TokioTimer {
        TokioTimer(None)
    }

    fn fill_random(buf: &mut [u8]) {
        // Not peer input: with the OS generator failing there is no safe
        // way to mask (RFC 6455 §10.3).
        getrandom::fill(buf).expect("the OS random generator failed");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> for Tokio {
    type ByteStream = ByteStream<S>;

    fn byte_stream(inner: driver::ByteStream<S, Tokio>) -> ByteStream<S> {
        ByteStream(inner)
    }

    fn poll_read(io: &mut S, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        Pin::new(io)
            .poll_read(cx, &mut buf)
            .map_ok(|()| buf.filled().len())
    }

    fn poll_write(io: &mut S, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        io: &mut S,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(io).poll_flush(cx)
    }

    fn poll_shutdown(io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(io).poll_shutdown(cx)
    }
}

wsmachine::bind_runtime!(Tokio, TokioTcp);

/// TCP connections through `tokio::net`, TLS through `tokio-rustls`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTcp;

impl driver::Connector for TokioTcp {
    type Runtime = Tokio;
    type Tcp = TcpStream;
    type Stream = MaybeTlsStream;
    type TlsConfig = Arc<ClientConfig>;

    async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn plain(tcp: TcpStream) -> MaybeTlsStream {
        MaybeTlsStream::Plain(tcp)
    }

    async fn tls(
        tcp: TcpStream,
        host: &str,
        config: Option<Arc<ClientConfig>>,
        roots: TlsRoots,
    ) -> Result<MaybeTlsStream, Error> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| Error::Url(wsmachine::UrlError::Host(host.to_owned())))?;
        let config = match config {
            Some(config) => config,
            None => tls_config(roots)?,
        };
        let stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(Error::Tls)?;
        Ok(MaybeTlsStream::Rustls(Box::new(stream)))
    }
}

/// The default TLS client configuration: Mozilla's roots
/// (`webpki-roots`), the `ring` provider, TLS 1.2 and 1.3, ALPN `http/1.1`.
/// Built once per process.
pub fn default_tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            client_config(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
}

/// The TLS client configuration for `roots`: [`default_tls_config`], or
/// the same with the operating system's roots (`rustls-native-certs`),
/// loaded once per process; `Error::Tls` (kind `NotFound`) when the system
/// store holds no usable certificate.
pub fn tls_config(roots: TlsRoots) -> Result<Arc<ClientConfig>, Error> {
    static NATIVE: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if roots != TlsRoots::Native {
        return Ok(default_tls_config());
    }
    if let Some(config) = NATIVE.get() {
        return Ok(config.clone());
    }
    let loaded = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(Error::Tls(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no root certificate in the system store ({:?})",
                loaded.errors
            ),
        )));
    }
    Ok(NATIVE.get_or_init(|| client_config(store)).clone())
}

/// A client configuration trusting `roots`: the `ring` provider, TLS 1.2
/// and 1.3, ALPN `http/1.1`.
fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    // WebSocket over TLS is HTTP/1.1 (RFC 6455 §4.1; RFC 8441 is h2).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A TCP stream, with or without TLS: what [`connect`] returns for
/// `ws://` and `wss://` URLs.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://` (boxed: a TLS session is a few KiB).
    Rustls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl MaybeTlsStream {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Plain(s) => s,
            MaybeTlsStream::Rustls(s) => s.get_ref().0,
        }
    }
}

/// Either stream, for the forwarding below.
trait ReadWrite: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> ReadWrite for T {}

impl MaybeTlsStream {
    fn inner(&mut self) -> Pin<&mut dyn ReadWrite> {
        match self {
            MaybeTlsStream::Plain(s) => Pin::new(s),
            MaybeTlsStream::Rustls(s) => Pin::new(s.as_mut()),
        }
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::Rustls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner().poll_shutdown(cx)
    }
}

/// A byte stream tunnelled over a WebSocket, from
/// [`WebSocket::into_byte_stream`](driver::WebSocket::into_byte_stream):
/// Tokio's `AsyncRead` + `AsyncWrite` over [`driver::ByteStream`] (each
/// write sends one binary message of at most 64 KiB; `shutdown` closes
/// the WebSocket with code 1000). Cancel-safe.
///
/// ```no_run
/// # async fn demo(ws: wsmachine_tokio::WebSocket<tokio::net::TcpStream>) -> std::io::Result<()> {
/// let mut tunnel = ws.into_byte_stream();
/// let mut backend = tokio::net::TcpStream::connect("127.0.0.1:5432").await?;
/// tokio::io::copy_bidirectional(&mut tunnel, &mut backend).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ByteStream<S>(driver::ByteStream<S, Tokio>);

impl<S: AsyncRead + AsyncWrite + Unpin> ByteStream<S> {
    /// The WebSocket underneath (bytes of a message partly read are lost).
    pub fn into_inner(self) -> WebSocket<S> {
        self.0.into_inner()
    }

    /// The WebSocket underneath.
    pub fn get_ref(&self) -> &WebSocket<S> {
        self.0.get_ref()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ByteStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = std::task::ready!(self.get_mut().0.poll_read(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ByteStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_close(cx)
    }
}
