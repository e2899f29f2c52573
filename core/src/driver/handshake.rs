//! The opening handshake over any stream: [`accept`], [`accept_with`], and
//! the client side behind [`ConnectBuilder`].

use std::future::{poll_fn, Future};
use std::io;
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use super::websocket::{os_mask, WebSocket};
use super::{Connector, Error, Io, Runtime, Timer};
use crate::internals::ConnectOptions;
use crate::{
    Accept, Compression, Config, Connection, ConnectionError, Event, Proxy, ProxyError,
    ProxyHandshake, ProxyStep, Reject, Request, Response, SendError, Timeout,
};

/// Writes all of `buf`.
async fn write_all<R: Io<S>, S>(io: &mut S, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| R::poll_write(io, cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n.min(buf.len())..];
    }
    Ok(())
}

/// Writes every chunk the core queued, then flushes.
async fn write_transmit<R: Io<S>, S>(io: &mut S, conn: &mut Connection) -> io::Result<()> {
    let mut wrote = false;
    while let Some(bytes) = conn.poll_transmit() {
        write_all::<R, S>(io, &bytes).await?;
        wrote = true;
    }
    if wrote {
        poll_fn(|cx| R::poll_flush(io, cx)).await?;
    }
    Ok(())
}

/// One read, retried on `Interrupted`.
async fn read<R: Io<S>, S>(io: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match poll_fn(|cx| R::poll_read(io, cx, buf)).await {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Runs `fut` until `deadline`; `None` when the deadline passed first.
/// No deadline (a timeout too long for the clock, `Duration::MAX` for
/// "never") waits for `fut` alone.
async fn until<R: Runtime, T>(
    deadline: Option<Instant>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let Some(deadline) = deadline else {
        return Some(fut.await);
    };
    let mut fut = pin!(fut);
    let mut timer = R::timer();
    timer.reset(deadline);
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        ready!(timer.poll_elapsed(cx));
        Poll::Ready(None)
    })
    .await
}

/// Drives a connection through its opening handshake: writes what the core
/// queues, reads, sleeps until the core's handshake deadline (which bounds
/// every byte of the request or response head). Returns the first event
/// (`Request` on a server, `Connected` on a client).
///
/// The handshake is short-lived, so it reads through a small local buffer
/// and is not meant to be cancelled and resumed.
async fn drive_handshake<R: Io<S>, S>(io: &mut S, conn: &mut Connection) -> Result<Event, Error> {
    let mut buf = vec![0u8; 4096];
    loop {
        write_transmit::<R, S>(io, conn).await?;
        match conn.poll_event() {
            Some(Event::Error(e)) => {
                super::trace::handshake_failed(conn.role(), &e);
                return Err(Error::Ws(e));
            }
            Some(ev) => return Ok(ev),
            None => {}
        }
        let read = read::<R, S>(io, &mut buf);
        let outcome = match conn.poll_timeout() {
            Some(deadline) => until::<R, _>(Some(deadline), read).await,
            None => Some(read.await),
        };
        match outcome {
            Some(Ok(0)) => conn.receive_eof(R::now()),
            Some(Ok(n)) => conn.receive(R::now(), &buf[..n.min(buf.len())]),
            Some(Err(e)) => return Err(e.into()),
            None => conn.handle_timeout(R::now()),
        }
    }
}

/// Writes what the core queued (an HTTP error or rejection response) and
/// shuts the stream down; errors are moot, the handshake already failed.
async fn flush_and_close<R: Io<S>, S>(io: &mut S, conn: &mut Connection) {
    if write_transmit::<R, S>(io, conn).await.is_ok() {
        let _ = poll_fn(|cx| R::poll_shutdown(io, cx)).await;
    }
}

/// Accepts a WebSocket connection on `stream` (any byte stream: TCP, TLS,
/// Unix socket, in-memory pipe) with [`Config::with_deflate`]: any path,
/// no subprotocol, permessage-deflate when the client offers it.
///
/// Fails with `Error::Ws(Handshake(..))` when the request is not a valid
/// WebSocket upgrade (the core has then sent the matching 400/426 response),
/// or `Error::Ws(TimedOut(OpeningHandshake))` after
/// `Config::opening_handshake_timeout`, which bounds every byte of the
/// request head.
///
/// Set `TCP_NODELAY` on accepted TCP sockets: frames are whole messages
/// already, and with Nagle's algorithm a lone Ping or Close waits for the
/// peer's delayed ACK (tens of milliseconds).
pub fn accept<S, R: Io<S>>(stream: S) -> impl Future<Output = Result<WebSocket<S, R>, Error>> {
    accept_with(stream, Config::shared_with_deflate(), |_| Ok(Accept::new()))
}

/// Accepts a WebSocket connection with `config`, letting `callback` inspect
/// the [`Request`] (path, query, headers, Origin, offered subprotocols and
/// extensions) and accept it (choose a subprotocol, add headers, decline
/// compression) or answer it with an HTTP response ([`Reject`]), in which
/// case this returns [`Error::Rejected`] after sending the response.
/// `config` is a `Config` or an `Arc<Config>`: a server that clones one
/// `Arc` into every connection keeps one copy of it.
///
/// When the callback's [`Accept`] cannot be honoured (a subprotocol the
/// client did not offer, …), the client gets a `500` (a `400` for a plain
/// HTTP request, see [`Config::answer_plain_http`]) and this fails with
/// [`Error::Send`].
pub fn accept_with<S, R, F>(
    stream: S,
    config: impl Into<Arc<Config>>,
    callback: F,
) -> impl Future<Output = Result<WebSocket<S, R>, Error>>
where
    R: Io<S>,
    F: FnOnce(&Request) -> Result<Accept, Reject>,
{
    // Boxed, and not an `async fn` around the box: the handshake's state
    // (the request, the stream and the connection in flight) is freed when
    // it completes, and the future the accepting task holds for the
    // connection's whole life is one pointer, not a second copy of them.
    Box::pin(accept_inner(stream, config.into(), move |req: Request| {
        std::future::ready(callback(&req))
    }))
}

/// [`accept_with`] with an async callback: it gets the [`Request`] by value
/// and may await (a token checked against a key service, a database
/// lookup) before it accepts or rejects.
///
/// The callback runs within the opening-handshake deadline
/// ([`Config::opening_handshake_timeout`], counted from the call, so it
/// bounds the request head and the callback together). A callback still
/// running at the deadline is dropped, the client gets `503 Service
/// Unavailable` (the server could not decide in time; a reconnecting
/// client retries a 5xx), and this fails with
/// `Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake))`.
///
/// ```text
/// let ws = accept_with_async(stream, config, |req| async move {
///     match req.header("authorization").map(str::to_owned) {
///         Some(token) if keys.check(&token).await => Ok(Accept::new()),
///         _ => Err(Reject::new(401)),
///     }
/// })
/// .await?;
/// ```
pub fn accept_with_async<S, R, F, Fut>(
    stream: S,
    config: impl Into<Arc<Config>>,
    callback: F,
) -> impl Future<Output = Result<WebSocket<S, R>, Error>>
where
    R: Io<S>,
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Accept, Reject>>,
{
    Box::pin(accept_inner(stream, config.into(), callback))
}

async fn accept_inner<S, R, F, Fut>(
    mut stream: S,
    config: Arc<Config>,
    callback: F,
) -> Result<WebSocket<S, R>, Error>
where
    R: Io<S>,
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Accept, Reject>>,
{
    let deadline = R::now().checked_add(config.opening_handshake_timeout);
    let mut conn = Connection::server(config, R::now());
    let request = match drive_handshake::<R, S>(&mut stream, &mut conn).await {
        Ok(Event::Request(req)) => req,
        Ok(_) => unreachable!("a server connection reports the request first"),
        Err(e) => {
            flush_and_close::<R, S>(&mut stream, &mut conn).await;
            return Err(e);
        }
    };
    // The span of a traced connection names its path; without the
    // feature nothing is copied (an empty `String` does not allocate).
    let path = if cfg!(feature = "tracing") {
        request.path().to_owned()
    } else {
        String::new()
    };
    let Some(decision) = until::<R, _>(deadline, callback(*request)).await else {
        // The callback could not decide in time: the server is unavailable.
        let _ = conn.reject(503, &[], b"");
        flush_and_close::<R, S>(&mut stream, &mut conn).await;
        return Err(Error::Ws(ConnectionError::TimedOut(
            Timeout::OpeningHandshake,
        )));
    };
    match decision {
        Ok(accept) => {
            if let Err(e) = conn.accept(R::now(), accept) {
                // The client must not wait for an answer that never comes:
                // a plain HTTP request (`Config::answer_plain_http`) that
                // was "accepted" is a bad request; anything else is ours.
                let status = if e == SendError::NotAnUpgrade {
                    400
                } else {
                    500
                };
                let _ = conn.reject(status, &[], b"");
                flush_and_close::<R, S>(&mut stream, &mut conn).await;
                return Err(Error::Send(e));
            }
        }
        Err(reject) => {
            conn.reject(reject.status, &reject.headers, &reject.body)
                .map_err(Error::Send)?;
            flush_and_close::<R, S>(&mut stream, &mut conn).await;
            return Err(Error::Rejected);
        }
    }
    // The 101 goes out now, before the application does anything else.
    write_transmit::<R, S>(&mut stream, &mut conn).await?;
    Ok(WebSocket::from_connection(stream, conn, &path))
}

/// Runs the client handshake on an established stream.
async fn client_handshake<R: Io<S>, S>(
    mut stream: S,
    request: crate::ClientRequest,
    config: Config,
) -> Result<(WebSocket<S, R>, Response), Error> {
    let mut key = [0u8; 16];
    R::fill_random(&mut key);
    let path = super::trace::Path::new(request.path());
    let mut conn = Connection::client(config, request, key, os_mask::<R>(), R::now());
    match drive_handshake::<R, S>(&mut stream, &mut conn).await? {
        Event::Connected(resp) => Ok((
            WebSocket::from_connection(stream, conn, path.as_str()),
            *resp,
        )),
        _ => unreachable!("a client connection reports Connected first"),
    }
}

/// Builds and opens a client connection; adapters name it for their
/// runtime (`wsmachine_tokio::ConnectBuilder`):
///
/// ```text
/// let (mut ws, response) = ConnectBuilder::new("wss://example.com/chat")
///     .header("Authorization", "Bearer t0ken")
///     .subprotocol("chat.v1")
///     .handshake_timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// ```
pub struct ConnectBuilder<C: Connector> {
    /// Everything that is not runtime-specific.
    opts: ConnectOptions,
    tls: Option<C::TlsConfig>,
    roots: TlsRoots,
    _connector: PhantomData<fn() -> C>,
}

impl<C: Connector> std::fmt::Debug for ConnectBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectBuilder")
            .field("opts", &self.opts)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> ConnectBuilder<C> {
    /// A connection to `url` (`ws://` or `wss://`), offering
    /// permessage-deflate, through the proxy the environment names (see
    /// [`proxy`](Self::proxy)).
    pub fn new(url: impl Into<String>) -> Self {
        ConnectBuilder {
            opts: ConnectOptions::new(url),
            tls: None,
            roots: TlsRoots::default(),
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

    /// Whether to offer permessage-deflate: `true` (the default), `false`,
    /// or a [`DeflateConfig`](crate::DeflateConfig). Compression is chosen
    /// here only: the `deflate` field of a [`config`](Self::config) is
    /// ignored, so passing one for its limits never turns it off.
    pub fn compression(mut self, compression: impl Into<Compression>) -> Self {
        self.opts = self.opts.compression(compression);
        self
    }

    /// The connection's limits and timers (its `deflate` field is ignored:
    /// see [`compression`](Self::compression)).
    pub fn config(mut self, config: Config) -> Self {
        self.opts = self.opts.config(config);
        self
    }

    /// Bounds the whole connection setup: TCP connect, proxy, TLS and the
    /// opening handshake (default: `Config::opening_handshake_timeout`).
    /// Past it, `connect` fails with
    /// `Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake))`.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.opts = self.opts.handshake_timeout(timeout);
        self
    }

    /// The TLS client configuration for `wss://` (e.g. a custom root store
    /// in tests); default: the adapter's `default_tls_config`, or its
    /// native-roots configuration after [`roots`](Self::roots). A
    /// configuration given here wins over `roots`.
    pub fn tls(mut self, config: impl Into<C::TlsConfig>) -> Self {
        self.tls = Some(config.into());
        self
    }

    /// Which root certificates verify a `wss://` server when no
    /// [`tls`](Self::tls) configuration is given: [`TlsRoots::WebPki`]
    /// (the default) or [`TlsRoots::Native`], the operating system's store.
    pub fn roots(mut self, roots: TlsRoots) -> Self {
        self.roots = roots;
        self
    }

    /// The options without the runtime's parts (TLS, roots): URL, headers,
    /// subprotocols, Origin, compression, configuration, timeout and proxy.
    /// What opens a WebSocket on a connection made elsewhere (the tokio
    /// adapter's HTTP/2 connection) reads.
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// Connects through `proxy`: an HTTP proxy (tunnel with `CONNECT`,
    /// `Proxy-Authorization: Basic` when it has credentials) or a SOCKS5
    /// proxy (no authentication or user/password; the proxy resolves the
    /// host name). TLS for `wss://` runs end to end through the tunnel.
    ///
    /// Without this call the proxy comes from the environment:
    /// `https_proxy` for `wss://`, `http_proxy` for `ws://`, then
    /// `all_proxy`, each in lower or upper case, unless `no_proxy` lists
    /// the host (see [`crate::proxy_from_env`]).
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
    /// proxy handshake, TLS for `wss://`, then the opening handshake, all
    /// within the handshake timeout. Returns the WebSocket and the server's
    /// response.
    pub async fn connect(self) -> Result<(WebSocket<C::Stream, C::Runtime>, Response), Error> {
        self.connect_ref().await
    }

    /// [`connect`](Self::connect) without consuming the builder: what
    /// [`Reconnect`](super::Reconnect) runs at each attempt.
    pub(crate) async fn connect_ref(
        &self,
    ) -> Result<(WebSocket<C::Stream, C::Runtime>, Response), Error> {
        let p = self.opts.prepare()?;
        let proxy = self
            .opts
            .proxy_for(&p.url, |name| std::env::var(name).ok())?;
        let deadline = <C::Runtime as Runtime>::now().checked_add(p.timeout);
        let url = &p.url;
        let (tls, roots) = (self.tls.clone(), self.roots);
        let setup = async {
            let tcp = match &proxy {
                Some(proxy) => {
                    let mut tcp = C::connect_tcp(&proxy.host, proxy.port).await?;
                    proxy_handshake::<C::Runtime, C::Tcp>(&mut tcp, proxy, &url.host, url.port)
                        .await?;
                    tcp
                }
                None => C::connect_tcp(&url.host, url.port).await?,
            };
            if url.secure {
                C::tls(tcp, &url.host, tls, roots).await
            } else {
                Ok(C::plain(tcp))
            }
        };
        let timed_out = || Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake));
        let stream = until::<C::Runtime, _>(deadline, setup)
            .await
            .ok_or_else(timed_out)??;
        // The core's own handshake timer starts now: what is left of the
        // budget bounds the opening handshake.
        let mut config = p.config;
        if let Some(deadline) = deadline {
            config.opening_handshake_timeout =
                deadline.saturating_duration_since(<C::Runtime as Runtime>::now());
        }
        client_handshake::<C::Runtime, C::Stream>(stream, p.request, config).await
    }

    /// Runs the opening handshake over an already connected stream (a
    /// proxy tunnel, a Unix socket, your own TLS stream…). The URL still
    /// gives the `Host` header and the resource name. No proxy is used.
    pub async fn connect_on<S>(
        self,
        stream: S,
    ) -> Result<(WebSocket<S, C::Runtime>, Response), Error>
    where
        C::Runtime: Io<S>,
    {
        let p = self.opts.prepare()?;
        client_handshake::<C::Runtime, S>(stream, p.request, p.config).await
    }
}

/// The root certificates that verify a `wss://` server (see
/// [`ConnectBuilder::roots`]); each adapter loads them in its `Connector`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsRoots {
    /// Mozilla's roots, compiled in (`webpki-roots`): the same on every
    /// machine, no file read. The default.
    #[default]
    WebPki,
    /// The operating system's store (`rustls-native-certs`: the
    /// `ca-certificates` bundle on Linux, or `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR`; the keychain on macOS; the Windows store), for
    /// corporate roots and TLS-inspecting proxies. Loaded once per
    /// process; when it holds no usable certificate, `connect` fails with
    /// [`Error::Tls`] (kind `NotFound`) rather than trusting nothing.
    Native,
}

/// Opens a tunnel through `proxy` to `host:port` on `io` (connected to the
/// proxy), driving the core's [`ProxyHandshake`].
async fn proxy_handshake<R: Io<S>, S>(
    io: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), Error> {
    let (mut hs, first) = ProxyHandshake::new(proxy, host, port);
    write_all::<R, S>(io, &first).await?;
    poll_fn(|cx| R::poll_flush(io, cx)).await?;
    let mut buf = [0u8; 1024];
    // Each round either completes the handshake or consumes a bounded
    // amount of input (the core caps the response size), so this ends.
    loop {
        let n = read::<R, S>(io, &mut buf).await?;
        if n == 0 {
            return Err(ProxyError::Malformed("the proxy closed the connection".into()).into());
        }
        match hs.receive(&buf[..n])? {
            ProxyStep::NeedMore => {}
            ProxyStep::Send(bytes) => {
                write_all::<R, S>(io, &bytes).await?;
                poll_fn(|cx| R::poll_flush(io, cx)).await?;
            }
            // Neither a TLS nor a WebSocket server speaks first: bytes from
            // the target now are a broken proxy, not data to keep.
            ProxyStep::Done(rest) if rest.is_empty() => return Ok(()),
            ProxyStep::Done(_) => {
                return Err(ProxyError::Malformed(
                    "data from the target before the handshake".into(),
                )
                .into())
            }
        }
    }
}
