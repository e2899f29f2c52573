//! # wsmachine-smol: WebSocket over smol (and any futures-io stream)
//!
//! A thin driver for the sans-IO [`wsmachine`] engine: it reads bytes into
//! the core, writes what the core encodes, and sleeps until the core's next
//! deadline (`async-io` timers). All protocol decisions — framing, masking,
//! UTF-8, automatic Pongs, the Close echo, keepalive, every timeout,
//! permessage-deflate — are the core's.
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
//! The driver itself lives in [`generic`] and is runtime-agnostic:
//! `wsmachine-async-std` re-exports it and adds only its TCP connector.
//! What this crate adds for smol is [`SmolTcp`] (TCP via `smol::net`), and
//! with it [`connect`], [`ConnectBuilder`] and [`MaybeTlsStream`].
//!
//! Server side, [`accept`] / [`accept_with`] work on any stream: a
//! `smol::net::TcpStream`, or a TLS stream from [`futures_rustls`]
//! (re-exported, with [`rustls`]) for `wss://`.
#![warn(missing_docs)]

mod error;
pub mod generic;

use std::io;

pub use error::Error;
pub use futures_rustls;
pub use futures_rustls::rustls;
pub use generic::{
    accept, accept_with, default_tls_config, ByteStream, Compression, Connector, Proxy, ProxyKind,
    Reject, WebSocket, WebSocketReader, WebSocketWriter,
};
pub use wsmachine::{
    Accept, ClientRequest, CloseCode, CloseFrame, Config, DeflateConfig, Event, Message,
    Negotiated, Request, Response, Role, Utf8Bytes,
};

/// TCP connections through `smol::net`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolTcp;

impl Connector for SmolTcp {
    type Stream = smol::net::TcpStream;

    async fn connect(host: &str, port: u16) -> io::Result<Self::Stream> {
        let stream = smol::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// What [`connect`] returns: a `smol::net::TcpStream`, plain or under TLS.
pub type MaybeTlsStream = generic::MaybeTlsStream<smol::net::TcpStream>;

/// Builds a client connection over `smol::net` (headers, subprotocols,
/// compression, [`Config`], handshake timeout, TLS configuration); see
/// [`generic::ConnectBuilder`].
pub type ConnectBuilder = generic::ConnectBuilder<SmolTcp>;

/// Connects to a `ws://` or `wss://` URL (webpki roots for TLS) with
/// [`Config::with_deflate`] (permessage-deflate offered), through the proxy
/// named by `https_proxy` / `http_proxy` / `all_proxy` unless `no_proxy`
/// lists the host. Returns the WebSocket and the server's handshake response.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
    ConnectBuilder::new(url).connect().await
}
