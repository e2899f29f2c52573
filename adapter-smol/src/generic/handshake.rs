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
use wsmachine::{
    Accept, ClientRequest, Config, Connection, DeflateConfig, Event, Request, Response, WsUrl,
};

use super::tls::MaybeTlsStream;
use super::websocket::{os_mask, WebSocket};
use crate::Error;

/// How an [`accept_with`] callback refuses a request: the HTTP response to
/// send instead of `101 Switching Protocols`.
///
/// ```
/// use wsmachine_smol::Reject;
/// let r = Reject::new(401).header("WWW-Authenticate", "Bearer").body("no token");
/// assert_eq!(r.status, 401);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status code (e.g. 401, 403, 404).
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl Reject {
    /// A rejection with `status`, no extra headers and an empty body.
    pub fn new(status: u16) -> Self {
        Reject {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the response body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

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
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, Config::with_deflate(), |_| Ok(Accept::new())).await
}

/// Accepts a WebSocket connection with `config`, letting `callback` inspect
/// the [`Request`] (path, query, headers, Origin, offered subprotocols and
/// extensions) and accept it (choose a subprotocol, add headers, decline
/// compression) or reject it with an HTTP response ([`Reject`]), in which
/// case this returns [`Error::Rejected`] after sending the response.
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
pub async fn accept_with<S, F>(
    mut stream: S,
    config: Config,
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

/// Whether and how to offer permessage-deflate: `true` (the default
/// parameters), `false`, or a [`DeflateConfig`].
#[derive(Clone, Debug)]
pub struct Compression(Option<DeflateConfig>);

impl From<bool> for Compression {
    fn from(on: bool) -> Self {
        Compression(on.then(DeflateConfig::default))
    }
}

impl From<DeflateConfig> for Compression {
    fn from(c: DeflateConfig) -> Self {
        Compression(Some(c))
    }
}

impl From<Option<DeflateConfig>> for Compression {
    fn from(c: Option<DeflateConfig>) -> Self {
        Compression(c)
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
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    origin: Option<String>,
    compression: Option<Compression>,
    config: Config,
    handshake_timeout: Option<Duration>,
    tls: Option<Arc<ClientConfig>>,
    _connector: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for ConnectBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectBuilder")
            .field("url", &self.url)
            .field("subprotocols", &self.subprotocols)
            .field("compression", &self.compression)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> ConnectBuilder<C> {
    /// A connection to `url` (`ws://` or `wss://`), by default with
    /// [`Config::with_deflate`] (permessage-deflate offered).
    pub fn new(url: impl Into<String>) -> Self {
        ConnectBuilder {
            url: url.into(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            origin: None,
            compression: None,
            config: Config::with_deflate(),
            handshake_timeout: None,
            tls: None,
            _connector: PhantomData,
        }
    }

    /// Adds a request header (e.g. `Authorization`, `Cookie`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol; call again for more, in order of preference.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Whether to offer permessage-deflate: `true`, `false`, or a
    /// [`DeflateConfig`]. Overrides the `deflate` field of [`config`](Self::config).
    pub fn compression(mut self, compression: impl Into<Compression>) -> Self {
        self.compression = Some(compression.into());
        self
    }

    /// The connection's limits and timers.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Bounds the whole connection setup: TCP connect, TLS and the opening
    /// handshake (default: `Config::opening_handshake_timeout` for the
    /// handshake, and the same bound for TCP and TLS).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// The TLS client configuration for `wss://` (e.g. a custom root store
    /// in tests); default [`default_tls_config`].
    pub fn tls(mut self, config: impl Into<Arc<ClientConfig>>) -> Self {
        self.tls = Some(config.into());
        self
    }

    fn prepare(&self) -> Result<(WsUrl, ClientRequest, Config), Error> {
        let url = WsUrl::parse(&self.url).map_err(Error::Url)?;
        let mut request = ClientRequest::from_url(&url);
        if let Some(o) = &self.origin {
            request = request.origin(o.clone());
        }
        for p in &self.subprotocols {
            request = request.subprotocol(p.clone());
        }
        for (n, v) in &self.headers {
            request = request.header(n.clone(), v.clone());
        }
        let mut config = self.config.clone();
        if let Some(Compression(c)) = &self.compression {
            config.deflate = c.clone();
        }
        if let Some(t) = self.handshake_timeout {
            config.opening_handshake_timeout = t;
        }
        Ok((url, request, config))
    }

    /// Connects: TCP through the runtime, TLS for `wss://`, then the opening
    /// handshake. Returns the WebSocket and the server's response.
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream<C::Stream>>, Response), Error> {
        let (url, request, config) = self.prepare()?;
        let deadline = Instant::now() + config.opening_handshake_timeout;
        let setup = async {
            let tcp = C::connect(&url.host, url.port).await?;
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
        client_handshake(stream, request, config).await
    }

    /// Runs the opening handshake over an already connected stream (a
    /// proxy tunnel, a Unix socket, your own TLS stream…). The URL still
    /// gives the `Host` header and the resource name.
    pub async fn connect_on<S>(self, stream: S) -> Result<(WebSocket<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (_, request, config) = self.prepare()?;
        client_handshake(stream, request, config).await
    }
}
