//! WebSocket routes in axum (feature `axum`): the [`WebSocketUpgrade`]
//! extractor validates the request, negotiates permessage-deflate and the
//! subprotocol, answers `101 Switching Protocols`, and hands the upgraded
//! connection to a callback as a [`WebSocket`].
//!
//! ```no_run
//! use axum::{response::Response, routing::get, Router};
//! use wsmachine_tokio::axum::WebSocketUpgrade;
//!
//! async fn echo(ws: WebSocketUpgrade) -> Response {
//!     ws.on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//! let app: Router = Router::new().route("/ws", get(echo));
//! # let _ = app;
//! ```
//!
//! Every decision is the core's (its `http` feature): the request is held
//! to the rules [`ServerHandshake`](wsmachine::ServerHandshake) applies to
//! bytes, and a refused one gets the same answer (the rejection's
//! response):
//!
//! | request | status |
//! |---|---|
//! | a `GET` that asks for no WebSocket (no `Upgrade: websocket`, no `Connection: upgrade`), as the byte path answers it | 400 |
//! | a declared body, two `Host` fields, a bad key, … (the table on `ServerHandshake`) | 400 |
//! | `Sec-WebSocket-Version` other than 13 | 426, with `Sec-WebSocket-Version: 13` |
//! | a method other than `GET` | 405, with `Allow: GET` |
//! | HTTP/1.0, HTTP/2 | 400 |
//! | more fields, or a longer head, than [`Config::default`] allows | 431 |
//! | subprotocols offered, none of them in [`WebSocketUpgrade::protocols`] | 400 (from [`on_upgrade`](WebSocketUpgrade::on_upgrade)) |
//!
//! Every refusal carries `Connection: close` and the reason as a text body.
//! The route's own handlers still see other methods first: a route with
//! only `get(..)` answers a `POST` with axum's 405.

use std::future::Future;
use std::sync::Arc;

use ::axum::body::Body;
use ::axum::extract::FromRequestParts;
use ::axum::http::request::Parts;
use ::axum::http::StatusCode;
use ::axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use wsmachine::{accept_http_response, error_http_response, Request};

use crate::{Accept, Compression, Config, HandshakeError, Role, WebSocket};

/// The stream of an upgraded connection: hyper's `Upgraded` as a Tokio
/// stream.
pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// An extractor for a WebSocket opening request; answer it with
/// [`on_upgrade`](Self::on_upgrade).
///
/// By default it accepts permessage-deflate when the client offers it
/// (with [`DeflateConfig::default`](crate::DeflateConfig::default)'s
/// memory budget), chooses no subprotocol, and gives the connection the
/// limits of [`Config::default`].
///
/// Extraction fails with a [`WebSocketUpgradeRejection`], whose response
/// is the core's answer to the refusal (see the [module](self) docs).
#[derive(Debug)]
pub struct WebSocketUpgrade {
    request: Request,
    on_upgrade: OnUpgrade,
    config: Arc<Config>,
    compression: Compression,
    protocols: Vec<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request = Request::from_http_parts(parts, &Config::default())
            .map_err(WebSocketUpgradeRejection::Handshake)?;
        // hyper puts it there when the connection can switch protocols
        // (`axum::serve`, hyper's `with_upgrades`).
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(WebSocketUpgradeRejection::NotUpgradable)?;
        let config = Config::shared_with_deflate();
        Ok(WebSocketUpgrade {
            request,
            on_upgrade,
            compression: Compression(config.deflate.clone()),
            config,
            protocols: Vec::new(),
        })
    }
}

impl WebSocketUpgrade {
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

    /// Answers the request: `101 Switching Protocols` with the negotiated
    /// compression and subprotocol, after which `callback` runs on its own
    /// task with the [`WebSocket`] (its [`negotiated`](WebSocket::negotiated)
    /// tells what was agreed). Or, when the client offered only
    /// subprotocols this route does not speak, a 400 and no callback.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket<Upgraded>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut accept = Accept::new().compression(self.compression.0.is_some());
        match self.request.select_subprotocol(&self.protocols) {
            Ok(Some(p)) => accept = accept.subprotocol(p),
            Ok(None) => {}
            Err(e) => return WebSocketUpgradeRejection::Handshake(e).into_response(),
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
                    return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                }
            };
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            // Fails when the client went away before the 101 reached it.
            if let Ok(upgraded) = on_upgrade.await {
                let ws = WebSocket::from_upgraded(
                    TokioIo::new(upgraded),
                    Role::Server,
                    negotiated,
                    config,
                );
                callback(ws).await;
            }
        });
        response.map(|()| Body::empty())
    }
}

/// Why a request could not be extracted as a [`WebSocketUpgrade`]; as a
/// response, the answer to it.
#[derive(Debug)]
#[non_exhaustive]
pub enum WebSocketUpgradeRejection {
    /// The request is not a valid WebSocket opening request: the core's
    /// answer (400, 405, 426 or 431; see the [module](self) docs).
    Handshake(HandshakeError),
    /// The connection cannot switch protocols (the server was not set up
    /// for upgrades: hyper without `with_upgrades`): 500.
    NotUpgradable,
}

impl std::fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebSocketUpgradeRejection::Handshake(e) => e.fmt(f),
            WebSocketUpgradeRejection::NotUpgradable => {
                f.write_str("the connection cannot be upgraded")
            }
        }
    }
}

impl std::error::Error for WebSocketUpgradeRejection {}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        match self {
            WebSocketUpgradeRejection::Handshake(e) => error_http_response(&e).map(Body::from),
            WebSocketUpgradeRejection::NotUpgradable => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{self}\n")).into_response()
            }
        }
    }
}
