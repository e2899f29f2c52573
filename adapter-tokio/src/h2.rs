//! WebSockets over HTTP/2 (RFC 8441; feature `http2`).
//!
//! A client opens an [`H2Connection`] (TLS with ALPN `h2`, or cleartext
//! with prior knowledge over any stream), and any number of WebSockets on
//! it, each its own HTTP/2 stream:
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsmachine_tokio::Error> {
//! use wsmachine_tokio::h2::H2Connection;
//! use wsmachine_tokio::ConnectBuilder;
//!
//! let h2 = H2Connection::connect("https://127.0.0.1:9001").await?;
//! let (mut chat, _) = h2.websocket("wss://127.0.0.1:9001/chat").await?;
//! let (mut feed, _) = h2
//!     .open(ConnectBuilder::new("wss://127.0.0.1:9001/feed").subprotocol("feed.v1"))
//!     .await?;
//! chat.send("hello").await?;
//! # let _ = feed.recv().await; Ok(()) }
//! ```
//!
//! A server answers WebSockets over HTTP/2 with the same
//! [`WebSocketUpgrade`](crate::hyper::WebSocketUpgrade) that answers
//! HTTP/1.1 upgrades, in a hyper service served by [`serve_connection`]
//! (HTTP/1.1 and HTTP/2 on one port, extended CONNECT allowed).
//!
//! What differs from HTTP/1.1, all below the [`WebSocket`]
//! (whose surface is the same):
//! - the opening handshake is an extended CONNECT (`:protocol =
//!   websocket`) answered `200`, without `Sec-WebSocket-Key`/`Accept`
//!   (RFC 8441 §5); subprotocol and permessage-deflate negotiation are the
//!   same fields, checked by the same code;
//! - the transport is one HTTP/2 stream: its flow control is HTTP/2's, and
//!   shutting the WebSocket's transport down ends the stream
//!   (`END_STREAM`) where HTTP/1.1 closes the TCP write side; a reset
//!   stream reads as the end of the transport;
//! - frames are masked by the client, as over HTTP/1.1.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use hyper::body::{Bytes, Frame, Incoming};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio_rustls::rustls::ClientConfig;
use wsmachine::driver::Connector;

use crate::hyper::Upgraded;
use crate::{
    ConnectBuilder, ConnectionError, Error, HandshakeError, Role, Timeout, TlsRoots, TokioTcp,
    WebSocket,
};

/// hyper's server connection builder for HTTP/1.1 and HTTP/2 on one
/// transport, with extended CONNECT allowed (`SETTINGS_ENABLE_CONNECT_PROTOCOL`,
/// RFC 8441 §3): what [`serve_connection`] uses, to tune before serving
/// (flow-control windows, keep-alive, limits) with
/// `serve_connection_with_upgrades`.
///
/// ```
/// let mut builder = wsmachine_tokio::h2::server_builder();
/// builder.http2().initial_stream_window_size(256 * 1024);
/// ```
pub fn server_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    builder
}

/// Serves one accepted transport, HTTP/1.1 or HTTP/2, with upgrades (and
/// extended CONNECT) allowed, until the client is done: a WebSocket route
/// in `service` ([`WebSocketUpgrade`](crate::hyper::WebSocketUpgrade))
/// takes both an HTTP/1.1 upgrade and any number of WebSockets over one
/// HTTP/2 connection.
///
/// The version is told from the first bytes: HTTP/2's connection preface
/// (prior knowledge over cleartext, or after TLS negotiated ALPN `h2`:
/// give the rustls `ServerConfig` `alpn_protocols = [b"h2", b"http/1.1"]`)
/// or else HTTP/1.1.
///
/// ```no_run
/// # #[cfg(feature = "http2")]
/// # async fn demo() -> std::io::Result<()> {
/// use hyper::service::service_fn;
/// use wsmachine_tokio::hyper::WebSocketUpgrade;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// loop {
///     let (tcp, _) = listener.accept().await?;
///     tokio::spawn(wsmachine_tokio::serve_connection(tcp, service_fn(|mut req| async move {
///         let ws = match WebSocketUpgrade::from_request(&mut req) {
///             Ok(ws) => ws,
///             Err(rejection) => return Ok::<_, std::convert::Infallible>(rejection.into_response()),
///         };
///         Ok(ws.on_upgrade::<_, _, http_body_util::Full<bytes::Bytes>>(|mut ws| async move {
///             while let Some(Ok(msg)) = ws.recv().await {
///                 if ws.send(msg).await.is_err() {
///                     break;
///                 }
///             }
///         }))
///     })));
/// }
/// # }
/// ```
pub async fn serve_connection<S, Svc, B>(
    io: S,
    service: Svc,
) -> Result<(), Box<dyn StdError + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    Svc::Future: Send + 'static,
    Svc::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    server_builder()
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
}

/// An HTTP/2 connection to a server that allows extended CONNECT (RFC 8441
/// §3), on which WebSockets are opened, each on its own stream: as many
/// as the server's `SETTINGS_MAX_CONCURRENT_STREAMS` lets at once.
///
/// Cheap to clone (every clone opens streams on the same connection); the
/// connection is driven by a task of its own and ends once every clone is
/// dropped and its streams are over.
#[derive(Clone, Debug)]
pub struct H2Connection {
    sender: http2::SendRequest<NoBody>,
    secure: bool,
}

impl H2Connection {
    /// Connects to `url`'s authority: `https://` or `wss://` over TLS with
    /// ALPN `h2` and the adapter's [`default_tls_config`](crate::default_tls_config)
    /// roots; `http://` or `ws://` over cleartext TCP with prior knowledge
    /// (RFC 9113 §3.3). The path of `url` is not used.
    pub async fn connect(url: &str) -> Result<H2Connection, Error> {
        Self::connect_tls(url, crate::tls_config(TlsRoots::default())?).await
    }

    /// [`connect`](Self::connect) with the TLS client configuration for
    /// `https://` (your roots, a client certificate): its ALPN list is
    /// replaced by `h2`, and a server that does not choose `h2` is
    /// refused ([`Error::Tls`]).
    pub async fn connect_tls(url: &str, tls: Arc<ClientConfig>) -> Result<H2Connection, Error> {
        let url = wsmachine::WsUrl::parse(url)?;
        let tcp = TokioTcp::connect_tcp(&url.host, url.port).await?;
        if !url.secure {
            return Self::handshake(tcp, false).await;
        }
        let mut h2_tls = (*tls).clone();
        h2_tls.alpn_protocols = vec![b"h2".to_vec()];
        let stream =
            TokioTcp::tls(tcp, &url.host, Some(Arc::new(h2_tls)), TlsRoots::default()).await?;
        let crate::MaybeTlsStream::Rustls(tls_stream) = &stream else {
            unreachable!("TokioTcp::tls makes a TLS stream");
        };
        if tls_stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            let refused = io::Error::new(
                io::ErrorKind::InvalidData,
                "the server did not choose HTTP/2 (ALPN h2)",
            );
            return Err(Error::Tls(refused));
        }
        Self::handshake(stream, true).await
    }

    /// Speaks HTTP/2 on an open transport (prior knowledge: the client
    /// preface goes first), with [`client_builder`]'s settings. `secure`:
    /// whether the transport is TLS (the `:scheme` of each WebSocket's
    /// CONNECT, `https` or `http`).
    ///
    /// Completes once the server's first SETTINGS frame has arrived:
    /// [`HandshakeError::ExtendedConnectDisabled`] when it does not allow
    /// extended CONNECT (RFC 8441 §3: a client may not send one before
    /// knowing).
    pub async fn handshake<S>(io: S, secure: bool) -> Result<H2Connection, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::handshake_with(&client_builder(), io, secure).await
    }

    /// [`handshake`](Self::handshake) with hyper's HTTP/2 client settings
    /// (flow-control windows, frame size, keep-alive).
    pub async fn handshake_with<S>(
        builder: &http2::Builder<TokioExecutor>,
        io: S,
        secure: bool,
    ) -> Result<H2Connection, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (first_frame_tx, first_frame) = oneshot::channel();
        let io = FirstFrameWatch {
            io,
            first_frame: Some(first_frame_tx),
            header: [0; 9],
            read: 0,
        };
        let (sender, conn) = builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(hyper_error)?;
        let (settings_tx, settings_rx) = oneshot::channel();
        tokio::spawn(Driven {
            conn,
            first_frame: Some(first_frame),
            settings_tx: Some(settings_tx),
        });
        match settings_rx.await {
            Ok(true) => Ok(H2Connection { sender, secure }),
            Ok(false) => Err(handshake_error(HandshakeError::ExtendedConnectDisabled)),
            Err(_) => Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the HTTP/2 connection ended before the server's SETTINGS",
            ))),
        }
    }

    /// Opens a WebSocket on this connection for `url` (its host names the
    /// `:authority`, its path and query the resource), offering
    /// permessage-deflate: [`open`](Self::open) with
    /// `ConnectBuilder::new(url)`.
    pub async fn websocket(
        &self,
        url: &str,
    ) -> Result<(WebSocket<Upgraded>, hyper::Response<()>), Error> {
        self.open(ConnectBuilder::new(url)).await
    }

    /// Opens a WebSocket on this connection as `request` describes it:
    /// its URL (host as `:authority`, path and query; the scheme is the
    /// connection's), headers, subprotocols, Origin, compression, config
    /// and handshake timeout, exactly as for an HTTP/1.1 connection. Its
    /// proxy and TLS settings do not apply (the connection is made).
    ///
    /// Sends the extended CONNECT and checks the answer as the HTTP/1.1
    /// client checks a 101 ([`H2Handshake::check`](wsmachine::H2Handshake::check));
    /// a refusal is `Error::Ws(ConnectionError::Handshake(HandshakeError::Status(..)))`
    /// ([`Error::http_status`]). Returns the WebSocket, on the request's
    /// stream, and the server's answer.
    pub async fn open(
        &self,
        request: ConnectBuilder,
    ) -> Result<(WebSocket<Upgraded>, hyper::Response<()>), Error> {
        let p = request.options().prepare()?;
        let (req, handshake) = p
            .request
            .to_h2_connect(self.secure, &p.config)
            .map_err(handshake_error)?;
        let mut req = req.map(|()| NoBody);
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let mut sender = self.sender.clone();
        let exchange = async move {
            sender.ready().await?;
            sender.send_request(req).await
        };
        let mut response = tokio::time::timeout(p.timeout, exchange)
            .await
            .map_err(|_| Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake)))?
            .map_err(hyper_error)?;
        let negotiated = handshake.check(&response).map_err(handshake_error)?;
        // hyper hands the stream over for a 200 only (another 2xx is not
        // a tunnel to it).
        let upgraded = hyper::upgrade::on(&mut response)
            .await
            .map_err(hyper_error)?;
        let ws =
            WebSocket::from_upgraded(Upgraded::new(upgraded), Role::Client, negotiated, p.config);
        Ok((ws, response.map(|_| ())))
    }

    /// Whether the connection is over (no WebSocket can be opened on it).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// hyper's HTTP/2 client connection builder with its defaults, for
/// [`H2Connection::handshake_with`] (flow-control windows, frame size,
/// keep-alive).
///
/// ```
/// let mut builder = wsmachine_tokio::h2::client_builder();
/// builder.initial_stream_window_size(64 * 1024);
/// ```
pub fn client_builder() -> http2::Builder<TokioExecutor> {
    http2::Builder::new(TokioExecutor::new())
}

fn hyper_error(e: hyper::Error) -> Error {
    Error::Io(io::Error::other(e))
}

fn handshake_error(e: HandshakeError) -> Error {
    Error::Ws(ConnectionError::Handshake(e))
}

/// The body of an extended CONNECT: none; the stream is the WebSocket's.
#[derive(Clone, Copy, Debug, Default)]
struct NoBody;

impl hyper::body::Body for NoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }
}

/// The client's transport, telling when h2 has applied the server's first
/// frame, which RFC 9113 §3.4 makes its SETTINGS. hyper tells whether
/// extended CONNECT is enabled, but not whether the SETTINGS that would
/// say so has come yet: this does.
///
/// h2 acknowledges and applies a peer's SETTINGS before it decodes the
/// next frame, and reads from the transport only once every frame it
/// holds is decoded: so when it reads again after the whole first frame
/// came in, that SETTINGS is applied. (Were its acknowledgement stuck
/// behind a full write buffer, h2 would not read on, and the signal would
/// wait with it.)
struct FirstFrameWatch<S> {
    io: S,
    /// Fired at the first read after the first frame; `None` after.
    first_frame: Option<oneshot::Sender<()>>,
    /// The first frame's 9-byte header, as far as it came.
    header: [u8; 9],
    /// Bytes read so far (counted until the first frame is in).
    read: usize,
}

impl<S> FirstFrameWatch<S> {
    fn first_frame_in(&self) -> bool {
        let [a, b, c, ..] = self.header;
        self.read >= 9 && self.read >= 9 + u32::from_be_bytes([0, a, b, c]) as usize
    }

    fn count(&mut self, new: &[u8]) {
        if self.read < 9 {
            let n = new.len().min(9 - self.read);
            self.header[self.read..self.read + n].copy_from_slice(&new[..n]);
        }
        self.read += new.len();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstFrameWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.first_frame.is_none() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if this.first_frame_in() {
            if let Some(tx) = this.first_frame.take() {
                let _ = tx.send(());
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.count(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstFrameWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The client connection's task: drives hyper's connection (whose h2 part
/// hyper runs on a task of its own) and says, once the server's SETTINGS
/// is applied, whether it allows extended CONNECT.
struct Driven<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    conn: http2::Connection<TokioIo<FirstFrameWatch<S>>, NoBody, TokioExecutor>,
    first_frame: Option<oneshot::Receiver<()>>,
    settings_tx: Option<oneshot::Sender<bool>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Future for Driven<S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let done = Pin::new(&mut self.conn).poll(cx);
        if let Some(first_frame) = &mut self.first_frame {
            if let Poll::Ready(applied) = Pin::new(first_frame).poll(cx) {
                self.first_frame = None;
                // Dropped unfired: the connection ended first, and so
                // does the handshake's wait.
                if let (Ok(()), Some(tx)) = (applied, self.settings_tx.take()) {
                    let _ = tx.send(self.conn.is_extended_connect_protocol_enabled());
                }
            }
        }
        // A failed connection shows as failed requests on its streams.
        done.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn the_first_frame_is_told_at_the_read_after_it() {
        let (client, mut server) = tokio::io::duplex(64);
        let (tx, mut told) = oneshot::channel();
        let mut watch = FirstFrameWatch {
            io: client,
            first_frame: Some(tx),
            header: [0; 9],
            read: 0,
        };
        // SETTINGS (type 4) with one setting (6 bytes): ENABLE_CONNECT_PROTOCOL = 1.
        let frame = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1];
        let mut buf = [0; 64];
        // In pieces that split the header and the payload.
        for piece in [&frame[..2], &frame[2..10], &frame[10..]] {
            server.write_all(piece).await.unwrap();
            assert_eq!(watch.read(&mut buf).await.unwrap(), piece.len());
            assert!(told.try_recv().is_err(), "told before h2 read on");
        }
        // h2 reads again only once it has applied the frame.
        server.write_all(&[0; 9]).await.unwrap();
        assert_eq!(watch.read(&mut buf).await.unwrap(), 9);
        assert!(told.try_recv().is_ok());
    }
}
