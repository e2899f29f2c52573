//! Opening handshakes: [`connect`] / [`ConnectBuilder`] for clients,
//! [`accept`] / [`accept_with`] for servers. The core validates everything;
//! this only moves bytes, resolves names and sets up TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;
use wsmachine::{
    Accept, ClientRequest, Config, Connection, ConnectionError, DeflateConfig, Event, Request,
    Response, Timeout, WsUrl,
};

use crate::tls::{default_tls_config, MaybeTlsStream};
use crate::{Error, WebSocket};

/// How a server declines an opening request in [`accept_with`]: the HTTP
/// status, extra headers and body sent back.
///
/// ```
/// use wsmachine_tokio::Reject;
/// let r = Reject::new(403).header("X-Reason", "banned").body("go away");
/// assert_eq!(r.status, 403);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status (200–599, not 101).
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body (`Content-Length` is added).
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

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// Accepts a WebSocket on `stream` with [`Config::with_deflate`] (so
/// permessage-deflate is accepted when the client offers it) and no
/// subprotocol. Invalid requests are answered (400, 426, …) and fail with
/// [`Error::Ws`].
///
/// `stream` is any Tokio byte stream: a `TcpStream`, a
/// `tokio_rustls::server::TlsStream` for `wss://`, a Unix socket.
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, Config::with_deflate(), |_| Ok(Accept::new())).await
}

/// Accepts a WebSocket on `stream`, letting `callback` look at the request
/// (path, query, headers, origin, offered subprotocols and extensions) and
/// accept it ([`Accept`]: subprotocol, extra headers, compression) or
/// reject it ([`Reject`]: status, headers, body; the call then returns
/// [`Error::Rejected`]).
///
/// The whole exchange is bounded by `config.opening_handshake_timeout`.
///
/// ```no_run
/// # async fn demo(tcp: tokio::net::TcpStream) -> Result<(), wsmachine_tokio::Error> {
/// use wsmachine_tokio::{accept_with, Accept, Config, Reject};
/// let ws = accept_with(tcp, Config::with_deflate(), |req| {
///     if req.path() != "/chat" {
///         return Err(Reject::new(404).body("no such endpoint"));
///     }
///     match req.subprotocols().iter().any(|p| p == "chat.v1") {
///         true => Ok(Accept::new().subprotocol("chat.v1")),
///         false => Ok(Accept::new()),
///     }
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn accept_with<S, F>(
    stream: S,
    config: Config,
    callback: F,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Result<Accept, Reject>,
{
    let conn = Connection::server(config, Instant::now());
    let mut ws = WebSocket::new(stream, conn);
    let request = match ws.handshake_event().await {
        Ok(Event::Request(req)) => req,
        Ok(_) => return Err(Error::Closed),
        Err(e) => {
            // Send the core's HTTP error answer (400, 426, 431, …) first.
            ws.finish().await;
            return Err(e);
        }
    };
    match callback(&request) {
        Ok(accept) => match ws.accept_request(accept) {
            Ok(()) => {
                // Send the 101 now: the client waits for it, and the app may
                // first await something else.
                ws.flush().await?;
                Ok(ws)
            }
            Err(e) => {
                let _ = ws.conn.reject(500, &[], b"");
                ws.finish().await;
                Err(e.into())
            }
        },
        Err(reject) => {
            if ws
                .conn
                .reject(reject.status, &reject.headers, &reject.body)
                .is_err()
            {
                let _ = ws.conn.reject(500, &[], b"");
            }
            ws.finish().await;
            Err(Error::Rejected)
        }
    }
}

/// Connects to a `ws://` or `wss://` URL with the default settings of
/// [`ConnectBuilder`] (permessage-deflate offered, webpki roots for TLS).
/// Returns the connection and the server's `101` response.
///
/// A non-101 answer fails with [`Error::Ws`]; [`Error::http_status`] gives
/// the status.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
    ConnectBuilder::new(url).connect().await
}

/// Whether and how to offer permessage-deflate: `true`, `false`, or a
/// [`DeflateConfig`].
#[derive(Clone, Debug)]
pub struct Compression(Option<DeflateConfig>);

impl From<bool> for Compression {
    fn from(on: bool) -> Self {
        Compression(on.then(DeflateConfig::default))
    }
}

impl From<DeflateConfig> for Compression {
    fn from(cfg: DeflateConfig) -> Self {
        Compression(Some(cfg))
    }
}

impl From<Option<DeflateConfig>> for Compression {
    fn from(cfg: Option<DeflateConfig>) -> Self {
        Compression(cfg)
    }
}

/// A client connection to build: headers, subprotocols, compression,
/// limits, timeouts and TLS.
///
/// ```no_run
/// # async fn demo() -> Result<(), wsmachine_tokio::Error> {
/// use std::time::Duration;
/// use wsmachine_tokio::ConnectBuilder;
/// let (ws, response) = ConnectBuilder::new("wss://example.com/chat")
///     .header("Authorization", "Bearer t0ken")
///     .subprotocol("chat.v1")
///     .compression(true)
///     .handshake_timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("chat.v1"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ConnectBuilder {
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    origin: Option<String>,
    compression: Option<Compression>,
    config: Config,
    handshake_timeout: Option<Duration>,
    tls: Option<Arc<ClientConfig>>,
}

impl ConnectBuilder {
    /// A connection to `url` (`ws://` or `wss://`) with [`Config::with_deflate`].
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
        }
    }

    /// Adds a request header (`Authorization`, `Cookie`, …).
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

    /// Whether to offer permessage-deflate (`true`, `false`, or a
    /// [`DeflateConfig`]). Overrides `config.deflate` whatever the order of
    /// the calls.
    pub fn compression(mut self, compression: impl Into<Compression>) -> Self {
        self.compression = Some(compression.into());
        self
    }

    /// Limits, keepalive and timeouts for the connection.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Bound on the whole opening: TCP connect, TLS and the WebSocket
    /// handshake (default: `Config::opening_handshake_timeout`).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// The rustls configuration for `wss://` (a custom root store, client
    /// certificates, …). Default: [`default_tls_config`].
    pub fn tls(mut self, config: impl Into<Arc<ClientConfig>>) -> Self {
        self.tls = Some(config.into());
        self
    }

    fn prepare(&self) -> Result<(WsUrl, ClientRequest, Config, Duration), Error> {
        let url = WsUrl::parse(&self.url).map_err(Error::Url)?;
        let mut req = ClientRequest::from_url(&url);
        if let Some(o) = &self.origin {
            req = req.origin(o.clone());
        }
        for p in &self.subprotocols {
            req = req.subprotocol(p.clone());
        }
        for (n, v) in &self.headers {
            req = req.header(n.clone(), v.clone());
        }
        let mut config = self.config.clone();
        if let Some(c) = &self.compression {
            config.deflate = c.0.clone();
        }
        let timeout = self
            .handshake_timeout
            .unwrap_or(config.opening_handshake_timeout);
        config.opening_handshake_timeout = timeout;
        Ok((url, req, config, timeout))
    }

    /// Connects: TCP (`TCP_NODELAY` on), TLS for `wss://`, then the
    /// WebSocket handshake, all within the handshake timeout.
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
        let (url, req, config, timeout) = self.prepare()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake));
        let tcp =
            tokio::time::timeout_at(deadline, TcpStream::connect((url.host.as_str(), url.port)))
                .await
                .map_err(|_| timed_out())??;
        tcp.set_nodelay(true)?;
        let stream = if url.secure {
            let tls = self.tls.clone().unwrap_or_else(default_tls_config);
            let name =
                ServerName::try_from(url.host.clone()).map_err(|e| Error::Tls(e.to_string()))?;
            let s = tokio::time::timeout_at(deadline, TlsConnector::from(tls).connect(name, tcp))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| Error::Tls(e.to_string()))?;
            MaybeTlsStream::Rustls(Box::new(s))
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        // The core's opening-handshake timer bounds the rest; give it what is left.
        let mut config = config;
        config.opening_handshake_timeout =
            deadline.saturating_duration_since(tokio::time::Instant::now());
        client_handshake(stream, req, config).await
    }

    /// Runs the WebSocket handshake over an already connected `stream`
    /// (TLS, a Unix socket, a proxy tunnel, an in-memory duplex): the URL
    /// gives only the `Host` header and the resource name.
    pub async fn connect_on<S>(self, stream: S) -> Result<(WebSocket<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (_, req, config, _) = self.prepare()?;
        client_handshake(stream, req, config).await
    }
}

async fn client_handshake<S>(
    stream: S,
    req: ClientRequest,
    config: Config,
) -> Result<(WebSocket<S>, Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // RFC 6455 §4.1: a fresh random 16-byte nonce per connection.
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    let conn = Connection::client(config, req, key, crate::mask_source(), Instant::now());
    let mut ws = WebSocket::new(stream, conn);
    match ws.handshake_event().await? {
        Event::Connected(response) => Ok((ws, *response)),
        _ => Err(Error::Closed),
    }
}
