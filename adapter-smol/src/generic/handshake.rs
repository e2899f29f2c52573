//! The opening handshake over any stream: [`accept`], [`accept_with`], and
//! the client side behind [`ConnectBuilder`].

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use futures_rustls::pki_types::ServerName;
use futures_rustls::rustls::{ClientConfig, RootCertStore};
use futures_rustls::TlsConnector;
use wsmachine::internals::ConnectOptions;
use wsmachine::{
    Accept, ClientRequest, Compression, Config, Connection, Event, Proxy, ProxyHandshake,
    ProxyStep, Reject, Request, Response,
};

use super::tls::MaybeTlsStream;
use super::websocket::{os_mask, WebSocket};
use crate::Error;

/// Drives a connection through its opening handshake: writes what the core
/// queues, reads, sleeps until the core's handshake deadline. Returns the
/// first event (`Request` on a server, `Connected` on a client).
///
/// The handshake is short-lived, so it reads through a small local buffer
/// and is not meant to be cancelled and resumed.
async fn drive_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    conn: &mut Connection,
) -> Result<Event, Error> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut wrote = false;
        while let Some(bytes) = conn.poll_transmit() {
            io.write_all(&bytes).await?;
            wrote = true;
        }
        if wrote {
            io.flush().await?;
        }
        match conn.poll_event() {
            Some(Event::Error(e)) => return Err(Error::Ws(e)),
            Some(ev) => return Ok(ev),
            None => {}
        }
        let deadline = conn.poll_timeout();
        let read = async { Some(io.read(&mut buf).await) };
        let timer = async {
            match deadline {
                Some(d) => {
                    Timer::at(d).await;
                }
                None => future::pending::<()>().await,
            }
            None
        };
        match future::or(read, timer).await {
            Some(Ok(0)) => conn.receive_eof(Instant::now()),
            Some(Ok(n)) => conn.receive(Instant::now(), &buf[..n]),
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(e)) => return Err(e.into()),
            None => conn.handle_timeout(Instant::now()),
        }
    }
}

/// Writes what the core queued (an HTTP error or rejection response) and
/// shuts the stream down; errors are moot, the handshake already failed.
async fn flush_and_close<S: AsyncWrite + Unpin>(io: &mut S, conn: &mut Connection) {
    while let Some(bytes) = conn.poll_transmit() {
        if io.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = io.close().await;
}

/// Accepts a WebSocket connection on `stream` (any byte stream: TCP, TLS,
/// Unix socket, in-memory pipe) with [`Config::with_deflate`]: any path,
/// no subprotocol, permessage-deflate when the client offers it.
///
/// Fails with `Error::Ws(Handshake(..))` when the request is not a valid
/// WebSocket upgrade (the core has then sent the matching 400/426 response),
/// or `Error::Ws(TimedOut(OpeningHandshake))` after
/// `Config::opening_handshake_timeout`.
pub fn accept<S>(stream: S) -> impl Future<Output = Result<WebSocket<S>, Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, Config::shared_with_deflate(), |_| Ok(Accept::new()))
}

/// Accepts a WebSocket connection with `config`, letting `callback` inspect
/// the [`Request`] (path, query, headers, Origin, offered subprotocols and
/// extensions) and accept it (choose a subprotocol, add headers, decline
/// compression) or reject it with an HTTP response ([`Reject`]), in which
/// case this returns [`Error::Rejected`] after sending the response.
/// `config` is a `Config` or an `Arc<Config>`: a server that clones one
/// `Arc` into every connection keeps one copy of it.
///
/// ```no_run
/// # async fn f(stream: smol::net::TcpStream) -> Result<(), wsmachine_smol::Error> {
/// use wsmachine_smol::{accept_with, Accept, Config, Reject};
/// let ws = accept_with(stream, Config::default(), |req| {
///     if req.path() != "/chat" {
///         return Err(Reject::new(404));
///     }
///     Ok(Accept::new().subprotocol("chat.v1"))
/// })
/// .await?;
/// # drop(ws); Ok(()) }
/// ```
pub fn accept_with<S, F>(
    stream: S,
    config: impl Into<Arc<Config>>,
    callback: F,
) -> impl Future<Output = Result<WebSocket<S>, Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Result<Accept, Reject>,
{
    // Boxed, and not an `async fn` around the box: the handshake's state
    // (the request, the stream and the connection in flight) is freed when
    // it completes, and the future the accepting task holds for the
    // connection's whole life is one pointer, not a second copy of them.
    Box::pin(accept_inner(stream, config.into(), callback))
}

async fn accept_inner<S, F>(
    mut stream: S,
    config: Arc<Config>,
    callback: F,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Result<Accept, Reject>,
{
    let mut conn = Connection::server(config, Instant::now());
    let request = match drive_handshake(&mut stream, &mut conn).await {
        Ok(Event::Request(req)) => req,
        Ok(_) => unreachable!("a server connection reports the request first"),
        Err(e) => {
            flush_and_close(&mut stream, &mut conn).await;
            return Err(e);
        }
    };
    match callback(&request) {
        Ok(accept) => conn.accept(Instant::now(), accept)?,
        Err(reject) => {
            conn.reject(reject.status, &reject.headers, &reject.body)?;
            flush_and_close(&mut stream, &mut conn).await;
            return Err(Error::Rejected);
        }
    }
    // The 101 goes out now, before the application does anything else.
    while let Some(bytes) = conn.poll_transmit() {
        stream.write_all(&bytes).await?;
    }
    stream.flush().await?;
    Ok(WebSocket::from_connection(stream, conn))
}

/// Runs the client handshake on an established stream.
async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket<S>, Response), Error> {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| Error::Io(io::Error::other(e)))?;
    let mut conn = Connection::client(config, request, key, os_mask(), Instant::now());
    match drive_handshake(&mut stream, &mut conn).await? {
        Event::Connected(resp) => Ok((WebSocket::from_connection(stream, conn), *resp)),
        _ => unreachable!("a client connection reports Connected first"),
    }
}

/// How a runtime opens TCP connections; implemented by the runtime crates
/// (`SmolTcp` here, `AsyncStdTcp` in wsmachine-async-std) so that one
/// [`ConnectBuilder`] serves both.
pub trait Connector {
    /// The runtime's TCP stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Resolves `host` and connects to `port` (with `TCP_NODELAY` set:
    /// WebSocket frames are already whole messages, so Nagle only adds latency).
    fn connect(host: &str, port: u16) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// The default TLS client configuration: Mozilla's roots (webpki-roots),
/// the `ring` provider, TLS 1.2 and 1.3. Built once.
pub fn default_tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Builds and opens a client connection.
///
/// Used through the runtime crate's alias (`wsmachine_smol::ConnectBuilder`,
/// `wsmachine_async_std::ConnectBuilder`):
///
/// ```no_run
/// # async fn f() -> Result<(), wsmachine_smol::Error> {
/// use std::time::Duration;
/// use wsmachine_smol::ConnectBuilder;
/// let (mut ws, response) = ConnectBuilder::new("wss://example.com/chat")
///     .header("Authorization", "Bearer t0ken")
///     .subprotocol("chat.v1")
///     .compression(true)
///     .handshake_timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// ws.send("hello").await?;
/// # drop(response); Ok(()) }
/// ```
pub struct ConnectBuilder<C> {
    /// Everything that is not runtime-specific (shared with the other adapters).
    opts: ConnectOptions,
    tls: Option<Arc<ClientConfig>>,
    _connector: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for ConnectBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectBuilder")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> ConnectBuilder<C> {
    /// A connection to `url` (`ws://` or `wss://`), by default with
    /// [`Config::with_deflate`] (permessage-deflate offered) and the proxy
    /// the environment names (see [`proxy`](Self::proxy)).
    pub fn new(url: impl Into<String>) -> Self {
        ConnectBuilder {
            opts: ConnectOptions::new(url),
            tls: None,
            _connector: PhantomData,
        }
    }

    /// Adds a request header (e.g. `Authorization`, `Cookie`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.opts = self.opts.header(name, value);
        self
    }

    /// Offers a subprotocol; call again for more, in order of preference.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.opts = self.opts.subprotocol(protocol);
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.opts = self.opts.origin(origin);
        self
    }

    /// Whether to offer permessage-deflate: `true`, `false`, or a
    /// [`DeflateConfig`](wsmachine::DeflateConfig). Overrides the `deflate`
    /// field of [`config`](Self::config).
    pub fn compression(mut self, compression: impl Into<Compression>) -> Self {
        self.opts = self.opts.compression(compression);
        self
    }

    /// The connection's limits and timers.
    pub fn config(mut self, config: Config) -> Self {
        self.opts = self.opts.config(config);
        self
    }

    /// Bounds the whole connection setup: TCP connect, proxy, TLS and the
    /// opening handshake (default: `Config::opening_handshake_timeout`).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.opts = self.opts.handshake_timeout(timeout);
        self
    }

    /// The TLS client configuration for `wss://` (e.g. a custom root store
    /// in tests); default [`default_tls_config`].
    pub fn tls(mut self, config: impl Into<Arc<ClientConfig>>) -> Self {
        self.tls = Some(config.into());
        self
    }

    /// Connects through `proxy`: an HTTP proxy (tunnel with `CONNECT`,
    /// `Proxy-Authorization: Basic` when it has credentials) or a SOCKS5
    /// proxy (no authentication or user/password; the proxy resolves the
    /// host name). TLS for `wss://` runs end to end through the tunnel.
    ///
    /// Without this call the proxy comes from the environment:
    /// `https_proxy` for `wss://`, `http_proxy` for `ws://`, then
    /// `all_proxy`, each in lower or upper case, unless `no_proxy` lists
    /// the host (see [`wsmachine::proxy_from_env`]).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.opts = self.opts.proxy(proxy);
        self
    }

    /// Connects directly, whatever the proxy environment variables say.
    pub fn no_proxy(mut self) -> Self {
        self.opts = self.opts.no_proxy();
        self
    }

    /// Connects: TCP through the runtime (to the server or the proxy), the
    /// proxy handshake, TLS for `wss://`, then the opening handshake.
    /// Returns the WebSocket and the server's response. A proxy that
    /// refuses fails with [`Error::Proxy`] (for HTTP, the message has the
    /// status).
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream<C::Stream>>, Response), Error> {
        let p = self.opts.prepare().map_err(Error::Url)?;
        let proxy = self
            .opts
            .proxy_for(&p.url, |name| std::env::var(name).ok())
            .map_err(|e| Error::Proxy(e.to_string()))?;
        let deadline = Instant::now() + p.timeout;
        let url = &p.url;
        let setup = async {
            let tcp = match &proxy {
                Some(proxy) => {
                    let mut tcp = C::connect(&proxy.host, proxy.port).await?;
                    proxy_handshake(&mut tcp, proxy, &url.host, url.port).await?;
                    tcp
                }
                None => C::connect(&url.host, url.port).await?,
            };
            if !url.secure {
                return Ok(MaybeTlsStream::Plain(tcp));
            }
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| Error::Tls(format!("invalid server name {:?}: {e}", url.host)))?;
            let tls = self.tls.clone().unwrap_or_else(default_tls_config);
            let stream = TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Tls(e.to_string()))?;
            Ok(MaybeTlsStream::Tls(Box::new(stream)))
        };
        let timeout = async {
            Timer::at(deadline).await;
            Err(Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting timed out",
            )))
        };
        let stream = future::or(setup, timeout).await?;
        client_handshake(stream, p.request, p.config).await
    }

    /// Runs the opening handshake over an already connected stream (a
    /// proxy tunnel, a Unix socket, your own TLS stream…). The URL still
    /// gives the `Host` header and the resource name. No proxy is used.
    pub async fn connect_on<S>(self, stream: S) -> Result<(WebSocket<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let p = self.opts.prepare().map_err(Error::Url)?;
        client_handshake(stream, p.request, p.config).await
    }
}

/// Opens a tunnel through `proxy` to `host:port` on `io` (connected to the
/// proxy), driving the core's [`ProxyHandshake`].
async fn proxy_handshake<S>(io: &mut S, proxy: &Proxy, host: &str, port: u16) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut hs, first) = ProxyHandshake::new(proxy, host, port);
    io.write_all(&first).await?;
    io.flush().await?;
    let mut buf = [0u8; 1024];
    // Each round either completes the handshake or consumes a bounded
    // amount of input (the core caps the response size), so this ends.
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Err(Error::Proxy("the proxy closed the connection".into()));
        }
        match hs
            .receive(&buf[..n])
            .map_err(|e| Error::Proxy(e.to_string()))?
        {
            ProxyStep::NeedMore => {}
            ProxyStep::Send(bytes) => {
                io.write_all(&bytes).await?;
                io.flush().await?;
            }
            // Neither a TLS nor a WebSocket server speaks first: bytes from
            // the target now are a broken proxy, not data to keep.
            ProxyStep::Done(rest) if rest.is_empty() => return Ok(()),
            ProxyStep::Done(_) => {
                return Err(Error::Proxy(
                    "data from the target before the handshake".into(),
                ))
            }
        }
    }
}
