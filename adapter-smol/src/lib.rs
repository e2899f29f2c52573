//! # wsmachine-smol: WebSocket over smol (and any futures-io stream)
//!
//! The binding of [`wsmachine`]'s one driver ([`wsmachine::driver`]) to
//! smol: [`Smol`] gives it the clock, `async-io` timers, the OS random
//! generator and futures-io streams; [`SmolTcp`] opens TCP through
//! `smol::net` and TLS through rustls. Everything else — framing, masking,
//! UTF-8, automatic Pongs, the Close echo, keepalive, every timeout,
//! permessage-deflate, read-ahead, batching, the closing linger — is the
//! core's and the driver's, the same as on every runtime.
//!
//! ```no_run
//! # fn main() -> Result<(), wsmachine_smol::Error> {
//! smol::block_on(async {
//!     let (mut ws, _response) = wsmachine_smol::connect("ws://127.0.0.1:9001/").await?;
//!     ws.send("hello").await?;
//!     if let Some(msg) = ws.recv().await {
//!         println!("{:?}", msg?);
//!     }
//!     ws.close(wsmachine_smol::CloseCode::NORMAL, "bye").await
//! })
//! # }
//! ```
//!
//! Server side, [`accept`] / [`accept_with`] work on any futures-io
//! stream: a `smol::net::TcpStream`, or a TLS stream from
//! [`futures_rustls`] (re-exported, with [`rustls`]) for `wss://`.
//! `wsmachine-async-std` reuses [`Smol`] (async-io runs on any executor)
//! with its own TCP connector.
#![warn(missing_docs)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use futures_rustls::pki_types::ServerName;
use futures_rustls::rustls::{ClientConfig, RootCertStore};
use futures_rustls::TlsConnector;
use wsmachine::driver::{self, Io, Runtime};

pub use futures_rustls;
pub use futures_rustls::rustls;
pub use wsmachine::driver::{Ended, Error, SendStatus};
pub use wsmachine::{
    Accept, ClientRequest, CloseCode, CloseFrame, Compression, Config, ConnectionError,
    DeflateConfig, Event, HandshakeError, Message, Negotiated, PreparedMessage, Proxy, ProxyKind,
    Reject, Request, Response, Role, SendError, Stats, Timeout, Utf8Bytes,
};

/// The futures-io runtime binding: `Instant::now`, `async-io` timers,
/// `getrandom`, and any `futures_io::AsyncRead + AsyncWrite + Unpin` stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

/// An `async-io` timer (the reactor runs on its own thread, so it works on
/// any executor).
#[derive(Debug)]
pub struct SmolTimer(async_io::Timer);

impl driver::Timer for SmolTimer {
    fn reset(&mut self, at: Instant) {
        self.0.set_at(at);
    }

    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Runtime for Smol {
    type Timer = SmolTimer;

    fn now() -> Instant {
        Instant::now()
    }

    fn timer() -> SmolTimer {
        SmolTimer(async_io::Timer::never())
    }

    fn fill_random(buf: &mut [u8]) {
        // Not peer input: with the OS generator failing there is no safe
        // way to mask (RFC 6455 §10.3).
        getrandom::fill(buf).expect("the OS random generator failed");
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> for Smol {
    type ByteStream = driver::ByteStream<S, Smol>;

    fn byte_stream(inner: driver::ByteStream<S, Smol>) -> Self::ByteStream {
        inner
    }

    fn poll_read(io: &mut S, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(io).poll_read(cx, buf)
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
        Pin::new(io).poll_close(cx)
    }
}

wsmachine::bind_runtime!(Smol, SmolTcp);

/// A [`WebSocket`] as a futures-io byte stream.
pub type ByteStream<S> = driver::ByteStream<S, Smol>;

/// TCP connections through `smol::net`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolTcp;

impl driver::Connector for SmolTcp {
    type Runtime = Smol;
    type Tcp = smol::net::TcpStream;
    type Stream = MaybeTlsStream<smol::net::TcpStream>;
    type TlsConfig = Arc<ClientConfig>;

    async fn connect_tcp(host: &str, port: u16) -> io::Result<Self::Tcp> {
        let stream = smol::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn plain(tcp: Self::Tcp) -> Self::Stream {
        MaybeTlsStream::Plain(tcp)
    }

    fn tls(
        tcp: Self::Tcp,
        host: &str,
        config: Option<Arc<ClientConfig>>,
        roots: TlsRoots,
    ) -> impl Future<Output = Result<Self::Stream, Error>> + Send {
        connect_tls(tcp, host, config, roots)
    }
}

/// Runs TLS over `tcp` for `host` with `config`, or else
/// [`tls_config`]`(roots)`: what the futures-io connectors share.
pub fn connect_tls<T: AsyncRead + AsyncWrite + Unpin + Send>(
    tcp: T,
    host: &str,
    config: Option<Arc<ClientConfig>>,
    roots: TlsRoots,
) -> impl Future<Output = Result<MaybeTlsStream<T>, Error>> + Send {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| Error::Url(wsmachine::UrlError::Host(host.to_owned())));
    async move {
        let name = name?;
        let config = match config {
            Some(config) => config,
            None => tls_config(roots)?,
        };
        let stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(Error::Tls)?;
        Ok(MaybeTlsStream::Tls(Box::new(stream)))
    }
}

/// The default TLS client configuration: Mozilla's roots (webpki-roots),
/// the `ring` provider, TLS 1.2 and 1.3, ALPN `http/1.1`. Built once.
pub fn default_tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            client_config(roots)
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TCP stream `T`, plain (`ws://`) or under TLS (`wss://`, rustls).
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream<T> {
    /// `ws://`
    Plain(T),
    /// `wss://` (boxed: the TLS state is large and plain streams should
    /// not pay for it).
    Tls(Box<futures_rustls::client::TlsStream<T>>),
}

impl<T> MaybeTlsStream<T> {
    /// The TCP stream underneath.
    pub fn get_ref(&self) -> &T {
        match self {
            MaybeTlsStream::Plain(t) => t,
            MaybeTlsStream::Tls(s) => s.get_ref().0,
        }
    }

    fn pin(&mut self) -> Pin<&mut (dyn AsyncReadWrite + Unpin + '_)>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        match self {
            MaybeTlsStream::Plain(t) => Pin::new(t),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()),
        }
    }
}

trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncReadWrite for T {}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTlsStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().pin().poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTlsStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().pin().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().pin().poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().pin().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().pin().poll_close(cx)
    }
}
