//! WebSocket routes in axum (feature `axum`): the [`WebSocketUpgrade`]
//! extractor validates the request, negotiates permessage-deflate and the
//! subprotocol, answers `101 Switching Protocols`, and hands the upgraded
//! connection to a callback as a [`WebSocket`](crate::WebSocket).
//!
//! It is [`crate::hyper::WebSocketUpgrade`] taken from the request's head:
//! the same builder, the same answers. With the `http2` feature (and
//! axum's `http2`, which it turns on) a route that accepts CONNECT as well
//! as GET (`any(..)`, or `get(..).connect(..)`) also takes WebSockets over
//! HTTP/2 (RFC 8441 extended CONNECT), answered `200` on their stream.
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
//! | HTTP/1.0; HTTP/2 without the `http2` feature | 400 |
//! | HTTP/2: a method other than CONNECT / a `:protocol` other than `websocket` | 405 with `Allow: CONNECT` / 400 |
//! | more fields, or a longer head, than [`Config::default`](crate::Config::default) allows | 431 |
//! | subprotocols offered, none of them in [`WebSocketUpgrade::protocols`] | 400 (from [`on_upgrade`](WebSocketUpgrade::on_upgrade)) |
//!
//! Every refusal carries the reason as a text body, and over HTTP/1.1
//! `Connection: close`.
//! The route's own handlers still see other methods first: a route with
//! only `get(..)` answers a `POST` with axum's 405.

use ::axum::body::Body;
use ::axum::extract::FromRequestParts;
use ::axum::http::request::Parts;
use ::axum::response::{IntoResponse, Response};

pub use crate::hyper::Upgraded;

/// An extractor for a WebSocket opening request; answer it with
/// [`on_upgrade`](WebSocketUpgrade::on_upgrade), which an axum handler
/// returns as its `Response`.
///
/// Extraction fails with a [`WebSocketUpgradeRejection`], whose response
/// is the core's answer to the refusal (see the [module](self) docs).
pub type WebSocketUpgrade = crate::hyper::WebSocketUpgrade;

/// Why a request could not be extracted as a [`WebSocketUpgrade`]; as a
/// response, the answer to it.
pub type WebSocketUpgradeRejection = crate::hyper::Rejection;

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        WebSocketUpgrade::from_parts(parts)
    }
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        self.into_response::<Body>()
    }
}
