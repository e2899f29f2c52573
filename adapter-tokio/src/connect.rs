//! Opening handshakes: [`connect`] / [`ConnectBuilder`] for clients,
//! [`accept`] / [`accept_with`] for servers. The core validates everything;
//! this only moves bytes, resolves names and sets up TLS.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;
use wsmachine::internals::ConnectOptions;
use wsmachine::{
    Accept, ClientRequest, Compression, Config, Connection, ConnectionError, Event, Proxy,
    ProxyHandshake, ProxyStep, Reject, Request, Response, Timeout,
};

use crate::tls::{default_tls_config, MaybeTlsStream};
use crate::{Error, WebSocket};

/// Accepts a WebSocket on `stream` with [`Config::with_deflate`] (so
/// permessage-deflate is accepted when the client offers it) and no
/// subprotocol. Invalid requests are answered (400, 426, …) and fail with
/// [`Error::Ws`].
///
/// `stream` is any Tokio byte stream: a `TcpStream`, a
/// `tokio_rustls::server::TlsStream` for `wss://`, a Unix socket.
pub fn accept<S>(stream: S) -> impl Future<Output = Result<WebSocket<S>, Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, Config::shared_with_deflate(), |_| Ok(Accept::new()))
}

/// Accepts a WebSocket on `stream`, letting `callback` look at the request
/// (path, query, headers, origin, offered subprotocols and extensions) and
/// accept it ([`Accept`]: subprotocol, extra headers, compression) or
/// reject it ([`Reject`]: status, headers, body; the call then returns
/// [`Error::Rejected`]).
///
/// The whole exchange is bounded by `config.opening_handshake_timeout`.
/// `config` is a `Config` or an `Arc<Config>`: a server that clones one
/// `Arc` into every connection keeps one copy of it.
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
    stream: S,
    config: Arc<Config>,
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
/// [`ConnectBuilder`] (permessage-deflate offered, webpki roots for TLS,
/// the proxy named by `https_proxy` / `http_proxy` / `all_proxy` unless
/// `no_proxy` lists the host). Returns the connection and the server's
/// `101` response.
///
/// A non-101 answer fails with [`Error::Ws`]; [`Error::http_status`] gives
/// the status.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
    ConnectBuilder::new(url).connect().await
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
    /// Everything that is not Tokio-specific (shared with the other adapters).
    opts: ConnectOptions,
    tls: Option<Arc<ClientConfig>>,
}

impl ConnectBuilder {
    /// A connection to `url` (`ws://` or `wss://`) with
    /// [`Config::with_deflate`], through the proxy the environment names
    /// (see [`ConnectBuilder::proxy`]).
    pub fn new(url: impl Into<String>) -> Self {
        ConnectBuilder {
            opts: ConnectOptions::new(url),
            tls: None,
        }
    }

    /// Adds a request header (`Authorization`, `Cookie`, …).
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

    /// Whether to offer permessage-deflate (`true`, `false`, or a
    /// [`DeflateConfig`](crate::DeflateConfig)). Overrides `config.deflate`
    /// whatever the order of the calls.
    pub fn compression(mut self, compression: impl Into<Compression>) -> Self {
        self.opts = self.opts.compression(compression);
        self
    }

    /// Limits, keepalive and timeouts for the connection.
    pub fn config(mut self, config: Config) -> Self {
        self.opts = self.opts.config(config);
        self
    }

    /// Bound on the whole opening: TCP connect, proxy, TLS and the
    /// WebSocket handshake (default: `Config::opening_handshake_timeout`).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.opts = self.opts.handshake_timeout(timeout);
        self
    }

    /// The rustls configuration for `wss://` (a custom root store, client
    /// certificates, …). Default: [`default_tls_config`].
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
    ///
    /// ```
    /// use wsmachine_tokio::{ConnectBuilder, Proxy};
    /// let b = ConnectBuilder::new("wss://example.com/")
    ///     .proxy(Proxy::parse("socks5://user:pw@127.0.0.1:1080").unwrap());
    /// ```
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.opts = self.opts.proxy(proxy);
        self
    }

    /// Connects directly, whatever the proxy environment variables say.
    pub fn no_proxy(mut self) -> Self {
        self.opts = self.opts.no_proxy();
        self
    }

    /// Connects: TCP (`TCP_NODELAY` on) to the server or to the proxy, the
    /// proxy handshake, TLS for `wss://`, then the WebSocket handshake, all
    /// within the handshake timeout. A proxy that refuses fails with
    /// [`Error::Proxy`] (for HTTP, the message has the status).
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
        let p = self.opts.prepare().map_err(Error::Url)?;
        let proxy = self
            .opts
            .proxy_for(&p.url, env_var)
            .map_err(|e| Error::Proxy(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + p.timeout;
        let timed_out = || Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake));
        let (host, port) = match &proxy {
            Some(proxy) => (proxy.host.as_str(), proxy.port),
            None => (p.url.host.as_str(), p.url.port),
        };
        let mut tcp = tokio::time::timeout_at(deadline, TcpStream::connect((host, port)))
            .await
            .map_err(|_| timed_out())??;
        tcp.set_nodelay(true)?;
        if let Some(proxy) = &proxy {
            tokio::time::timeout_at(
                deadline,
                proxy_handshake(&mut tcp, proxy, &p.url.host, p.url.port),
            )
            .await
            .map_err(|_| timed_out())??;
        }
        let stream = if p.url.secure {
            let tls = self.tls.clone().unwrap_or_else(default_tls_config);
            let name =
                ServerName::try_from(p.url.host.clone()).map_err(|e| Error::Tls(e.to_string()))?;
            let s = tokio::time::timeout_at(deadline, TlsConnector::from(tls).connect(name, tcp))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| Error::Tls(e.to_string()))?;
            MaybeTlsStream::Rustls(Box::new(s))
        } else {
            MaybeTlsStream::Plain(tcp)
        };
        // The core's opening-handshake timer bounds the rest; give it what is left.
        let mut config = p.config;
        config.opening_handshake_timeout =
            deadline.saturating_duration_since(tokio::time::Instant::now());
        client_handshake(stream, p.request, config).await
    }

    /// Runs the WebSocket handshake over an already connected `stream`
    /// (TLS, a Unix socket, a proxy tunnel, an in-memory duplex): the URL
    /// gives only the `Host` header and the resource name. No proxy is used.
    pub async fn connect_on<S>(self, stream: S) -> Result<(WebSocket<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let p = self.opts.prepare().map_err(Error::Url)?;
        client_handshake(stream, p.request, p.config).await
    }
}

/// The process environment, for the proxy variables (the core reads none).
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
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
    // Each round trip either completes the handshake or consumes a bounded
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
