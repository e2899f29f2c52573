//! WebSocket upgrades in any hyper service (feature `axum` or `http2`):
//! [`WebSocketUpgrade`] validates the request, negotiates
//! permessage-deflate and the subprotocol, answers it, and hands the
//! upgraded stream to a callback as a [`WebSocket`].
//!
//! With the `http2` feature the same call answers both ways a WebSocket
//! arrives: an HTTP/1.1 `GET` with `Upgrade: websocket` (answered `101
//! Switching Protocols`) and an HTTP/2 extended CONNECT with `:protocol =
//! websocket` (RFC 8441, answered `200`, the WebSocket then running on
//! that one stream of the HTTP/2 connection). The server must allow each:
//! hyper's `with_upgrades()` for HTTP/1.1, `enable_connect_protocol()` for
//! HTTP/2 (both set by `serve_connection`, feature `http2`).
//!
//! ```no_run
//! # #[cfg(feature = "http2")] {
//! use std::convert::Infallible;
//! use hyper::body::{Bytes, Incoming};
//! use wsmachine_tokio::hyper::WebSocketUpgrade;
//!
//! # type Body = http_body_util::Full<Bytes>;
//! async fn route(mut req: hyper::Request<Incoming>) -> Result<hyper::Response<Body>, Infallible> {
//!     let ws = match WebSocketUpgrade::from_request(&mut req) {
//!         Ok(ws) => ws,
//!         Err(rejection) => return Ok(rejection.into_response()),
//!     };
//!     println!("over HTTP/2: {}", ws.is_http2());
//!     Ok(ws.on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     }))
//! }
//! let service = hyper::service::service_fn(route);
//! # let _ = service; }
//! ```
//!
//! Every decision is the core's (its `http` feature): an HTTP/1.1 request
//! is held to the rules [`ServerHandshake`](wsmachine::ServerHandshake)
//! applies to bytes, an HTTP/2 one to those of
//! [`Request::from_h2_connect`], and a refused one gets the core's answer
//! ([`Rejection::into_response`]):
//!
//! | request | status |
//! |---|---|
//! | HTTP/1.1: a `GET` that asks for no WebSocket, a declared body, two `Host` fields, a bad key, … (the table on `ServerHandshake`) | 400 |
//! | HTTP/1.1: a method other than `GET` | 405, with `Allow: GET` |
//! | HTTP/2: a method other than `CONNECT` | 405, with `Allow: CONNECT` |
//! | HTTP/2: a CONNECT whose `:protocol` is missing or not `websocket`; a `Sec-WebSocket-Key` | 400 |
//! | `Sec-WebSocket-Version` other than 13 | 426, with `Sec-WebSocket-Version: 13` |
//! | HTTP/1.0; HTTP/2 without the `http2` feature | 400 |
//! | more fields, or a longer head, than [`Config::default`] allows | 431 |
//! | subprotocols offered, none of them in [`WebSocketUpgrade::protocols`] | 400 (from [`on_upgrade`](WebSocketUpgrade::on_upgrade)) |
//!
//! An HTTP/1.1 refusal carries `Connection: close`; an HTTP/2 one ends
//! only its stream.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsmachine::{accept_http_response, error_h2_response, error_http_response, Request};

use crate::{Accept, Compression, Config, HandshakeError, Role, WebSocket};

/// The stream of an upgraded connection (HTTP/1.1) or of an extended
/// CONNECT's HTTP/2 stream: hyper's `Upgraded` as a Tokio stream. Its
/// shutdown ends the HTTP/2 stream (`END_STREAM`) where HTTP/1.1 closes the
/// TCP connection's write side.
///
/// An HTTP/2 server that is done with a stream before the client ends its
/// side resets it with `NO_ERROR` (RFC 9113 §8.1: "stop sending, nothing is
/// wrong"), as h2 does for a server WebSocket that closed first. That is
/// the HTTP/2 form of a server closing its TCP connection after the
/// closing handshake, so writes after it are dropped as sent rather than
/// failed: whether the WebSocket ended cleanly is the read side's to say
/// (the peer's Close came, or the stream ended without one). Any other
/// reset is an error, as a TCP reset is.
#[derive(Debug)]
pub struct Upgraded {
    io: TokioIo<hyper::upgrade::Upgraded>,
    /// The peer reset the stream with `NO_ERROR`: what we write is dropped.
    finished: bool,
}

impl Upgraded {
    /// Wraps a stream hyper upgraded (`hyper::upgrade::on`), for
    /// [`WebSocket::from_upgraded`] on an upgrade made without
    /// [`WebSocketUpgrade`] or `H2Connection` (feature `http2`).
    pub fn new(upgraded: hyper::upgrade::Upgraded) -> Self {
        Upgraded {
            io: TokioIo::new(upgraded),
            finished: false,
        }
    }

    /// hyper's upgraded stream.
    pub fn get_ref(&self) -> &hyper::upgrade::Upgraded {
        self.io.inner()
    }

    /// Runs a write-side `op` on the stream, unless the peer reset it
    /// with `NO_ERROR`: then (and when `op` finds that it did) the bytes
    /// count as written, `done`.
    fn write_side<T>(
        &mut self,
        cx: &mut Context<'_>,
        done: T,
        op: impl FnOnce(
            Pin<&mut TokioIo<hyper::upgrade::Upgraded>>,
            &mut Context<'_>,
        ) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.finished {
            return Poll::Ready(Ok(done));
        }
        match op(Pin::new(&mut self.io), cx) {
            Poll::Ready(Err(e)) if reset_without_error(&e) => {
                self.finished = true;
                Poll::Ready(Ok(done))
            }
            other => other,
        }
    }
}

/// Whether `e` is hyper's report of an HTTP/2 stream reset with
/// `NO_ERROR` by the peer.
fn reset_without_error(e: &io::Error) -> bool {
    #[cfg(feature = "http2")]
    {
        use std::error::Error as _;
        let h2 = e
            .get_ref()
            .and_then(|e| e.downcast_ref::<hyper::Error>())
            .and_then(|e| e.source())
            .and_then(|e| e.downcast_ref::<h2::Error>());
        h2.and_then(h2::Error::reason) == Some(h2::Reason::NO_ERROR)
    }
    #[cfg(not(feature = "http2"))]
    {
        let _ = e;
        false
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len();
        self.get_mut()
            .write_side(cx, n, |io, cx| io.poll_write(cx, buf))
    }

    // The driver writes a frame's header and payload in one vectored
    // write; over HTTP/1.1 hyper hands it to the socket as one.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = bufs.iter().map(|b| b.len()).sum();
        self.get_mut()
            .write_side(cx, n, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .write_side(cx, (), |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .write_side(cx, (), |io, cx| io.poll_shutdown(cx))
    }
}

/// A WebSocket opening request taken from a hyper request; answer it with
/// [`on_upgrade`](Self::on_upgrade).
///
/// By default it accepts permessage-deflate when the client offers it
/// (with [`DeflateConfig::default`](crate::DeflateConfig::default)'s
/// memory budget), chooses no subprotocol, and gives the connection the
/// limits of [`Config::default`].
#[derive(Debug)]
pub struct WebSocketUpgrade {
    request: Request,
    on_upgrade: OnUpgrade,
    config: Arc<Config>,
    compression: Compression,
    protocols: Vec<String>,
}

impl WebSocketUpgrade {
    /// Takes the opening request out of `req` (its `OnUpgrade` extension
    /// moves here; the rest of `req` is left as it was): an HTTP/1.1
    /// upgrade, or with the `http2` feature an HTTP/2 extended CONNECT
    /// (its `:protocol` read from the `hyper::ext::Protocol` extension).
    /// A refusal is the core's answer (see the [module](self) docs).
    pub fn from_request<B>(req: &mut hyper::Request<B>) -> Result<Self, Rejection> {
        // The head is lent to `from_parts` (its fields and extensions moved
        // there and back, not copied); the body stays where it is.
        let (mut parts, ()) = hyper::Request::new(()).into_parts();
        parts.method = req.method().clone();
        parts.uri = req.uri().clone();
        parts.version = req.version();
        parts.headers = std::mem::take(req.headers_mut());
        parts.extensions = std::mem::take(req.extensions_mut());
        let result = Self::from_parts(&mut parts);
        *req.headers_mut() = parts.headers;
        *req.extensions_mut() = parts.extensions;
        result
    }

    /// [`from_request`](Self::from_request) for the head of a request, as
    /// an extractor sees it (axum's `FromRequestParts`).
    pub fn from_parts(parts: &mut hyper::http::request::Parts) -> Result<Self, Rejection> {
        let config = Config::default();
        #[cfg(feature = "http2")]
        let request = if parts.version == hyper::http::Version::HTTP_2 {
            let protocol = parts.extensions.get::<hyper::ext::Protocol>();
            Request::from_h2_connect_parts(parts, protocol.map(|p| p.as_str()), &config)
                .map_err(Rejection::Http2)?
        } else {
            Request::from_http_parts(parts, &config).map_err(Rejection::Handshake)?
        };
        #[cfg(not(feature = "http2"))]
        let request = Request::from_http_parts(parts, &config).map_err(Rejection::Handshake)?;
        // hyper puts it there when the connection can switch protocols
        // (`with_upgrades` on HTTP/1.1; every CONNECT on HTTP/2).
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Rejection::NotUpgradable)?;
        let config = Config::shared_with_deflate();
        Ok(WebSocketUpgrade {
            request,
            on_upgrade,
            compression: Compression(config.deflate.clone()),
            config,
            protocols: Vec::new(),
        })
    }

    /// Whether to accept permessage-deflate when offered: `true` (the
    /// default), `false`, or a [`DeflateConfig`](crate::DeflateConfig)
    /// (window bits, memory level, context takeover). Compression is chosen
    /// here only: the `deflate` field of a [`config`](Self::config) is
    /// ignored, as `ConnectBuilder` does.
    pub fn compression(mut self, compression: impl Into<Compression>) -> Self {
        self.compression = compression.into();
        self
    }

    /// The subprotocols this route speaks. The first one the client offered
    /// (in its order of preference) that is listed here is chosen; a client
    /// that offered none is accepted without one; a client that offered
    /// only others is refused with 400 (see
    /// [`Request::select_subprotocol`]). Without this call no subprotocol is
    /// chosen and none is refused.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The connection's limits and timers (its `deflate` field is ignored:
    /// see [`compression`](Self::compression)). A `Config` or an
    /// `Arc<Config>` shared by every connection.
    pub fn config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.config = config.into();
        self
    }

    /// The validated request: path, query, headers, Origin, offered
    /// subprotocols and extensions.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Whether the WebSocket comes over HTTP/2 (an extended CONNECT, RFC
    /// 8441) rather than as an HTTP/1.1 upgrade.
    pub fn is_http2(&self) -> bool {
        self.request.is_extended_connect()
    }

    /// Answers the request: `101 Switching Protocols` (HTTP/1.1) or `200`
    /// (HTTP/2) with the negotiated compression and subprotocol, after
    /// which `callback` runs on its own task with the [`WebSocket`] (its
    /// [`negotiated`](WebSocket::negotiated) tells what was agreed). Or,
    /// when the client offered only subprotocols this route does not
    /// speak, a 400 and no callback.
    ///
    /// The response's body type is the caller's: any `B: From<Bytes>`
    /// (`http_body_util::Full<Bytes>`, axum's `Body`, …); it is empty
    /// unless refused.
    pub fn on_upgrade<F, Fut, B>(self, callback: F) -> hyper::Response<B>
    where
        F: FnOnce(WebSocket<Upgraded>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        B: From<Bytes>,
    {
        let mut accept = Accept::new().compression(self.compression.0.is_some());
        match self.request.select_subprotocol(&self.protocols) {
            Ok(Some(p)) => accept = accept.subprotocol(p),
            Ok(None) => {}
            Err(e) => return self.refusal(e).into_response(),
        }
        let mut config = self.config;
        if config.deflate != self.compression.0 {
            Arc::make_mut(&mut config).deflate = self.compression.0;
        }
        let (response, negotiated) =
            match accept_http_response(&self.request, &accept, config.deflate.as_ref()) {
                Ok(r) => r,
                // The subprotocol was offered and no header was added:
                // nothing here can fail, but a client must get an answer.
                Err(e) => {
                    return hyper::Response::builder()
                        .status(500)
                        .body(B::from(Bytes::from(e.to_string())))
                        .expect("a status and a body are a valid response")
                }
            };
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            // Fails when the client went away before the answer reached it.
            if let Ok(upgraded) = on_upgrade.await {
                let ws = WebSocket::from_upgraded(
                    Upgraded::new(upgraded),
                    Role::Server,
                    negotiated,
                    config,
                );
                callback(ws).await;
            }
        });
        response.map(|()| B::from(Bytes::new()))
    }

    fn refusal(&self, error: HandshakeError) -> Rejection {
        if self.is_http2() {
            Rejection::Http2(error)
        } else {
            Rejection::Handshake(error)
        }
    }
}

/// Why a request could not be taken as a [`WebSocketUpgrade`];
/// [`into_response`](Self::into_response) is the answer to it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejection {
    /// The request is not a valid HTTP/1.1 WebSocket opening request: the
    /// core's answer (400, 405, 426 or 431, with `Connection: close`; see
    /// the [module](self) docs).
    Handshake(HandshakeError),
    /// The request is not a valid HTTP/2 extended CONNECT for a WebSocket
    /// (RFC 8441): the core's answer, for that stream only.
    Http2(HandshakeError),
    /// The connection cannot switch protocols (the server was not set up
    /// for upgrades: hyper without `with_upgrades`): 500.
    NotUpgradable,
}

impl Rejection {
    /// The HTTP answer to the refused request, with any body type `B:
    /// From<Bytes>` (the reason as text).
    pub fn into_response<B: From<Bytes>>(self) -> hyper::Response<B> {
        let response = match &self {
            Rejection::Handshake(e) => error_http_response(e),
            Rejection::Http2(e) => error_h2_response(e),
            Rejection::NotUpgradable => hyper::Response::builder()
                .status(500)
                .body(Bytes::from(format!("{self}\n")))
                .expect("a status and a body are a valid response"),
        };
        response.map(B::from)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Handshake(e) | Rejection::Http2(e) => e.fmt(f),
            Rejection::NotUpgradable => f.write_str("the connection cannot be upgraded"),
        }
    }
}

impl std::error::Error for Rejection {}
