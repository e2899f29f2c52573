//! # wsmachine-async-std: WebSocket over async-std
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); new code should
//! use `wsmachine-smol`, which has the same API. Both runtimes speak
//! `futures-io`, so this crate is glue: the driver ([`WebSocket`], its
//! split halves, the byte stream, [`accept`] / [`accept_with`], TLS) is
//! `wsmachine_smol::generic`, re-exported here, and what this crate adds is
//! [`AsyncStdTcp`]: TCP connections through `async_std::net`, and with it
//! [`connect`], [`ConnectBuilder`] and [`MaybeTlsStream`]. Its timers are
//! `async-io`'s, which run on any executor.
//!
//! ```no_run
//! # fn main() -> Result<(), wsmachine_async_std::Error> {
//! async_std::task::block_on(async {
//!     let (mut ws, _response) = wsmachine_async_std::connect("ws://127.0.0.1:9001/").await?;
//!     ws.send("hello").await?;
//!     if let Some(msg) = ws.recv().await {
//!         println!("{:?}", msg?);
//!     }
//!     ws.close(wsmachine_async_std::CloseCode::NORMAL, "bye").await
//! })
//! # }
//! ```
//!
//! Server side, [`accept`] takes any stream, e.g. an
//! `async_std::net::TcpStream` or a [`futures_rustls`] TLS stream.
#![warn(missing_docs)]

use std::io;

pub use wsmachine_smol::generic::{
    accept, accept_with, default_tls_config, ByteStream, Compression, Connector, Proxy, ProxyKind,
    Reject, WebSocket, WebSocketReader, WebSocketWriter,
};
pub use wsmachine_smol::{futures_rustls, rustls, Error};
pub use wsmachine_smol::{
    Accept, ClientRequest, CloseCode, CloseFrame, Config, DeflateConfig, Event, Message,
    Negotiated, Request, Response, Role, Utf8Bytes,
};

/// TCP connections through `async_std::net`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdTcp;

impl Connector for AsyncStdTcp {
    type Stream = async_std::net::TcpStream;

    async fn connect(host: &str, port: u16) -> io::Result<Self::Stream> {
        let stream = async_std::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// What [`connect`] returns: an `async_std::net::TcpStream`, plain or under TLS.
pub type MaybeTlsStream = wsmachine_smol::generic::MaybeTlsStream<async_std::net::TcpStream>;

/// Builds a client connection over `async_std::net` (headers, subprotocols,
/// compression, [`Config`], handshake timeout, TLS configuration); see
/// [`wsmachine_smol::generic::ConnectBuilder`].
pub type ConnectBuilder = wsmachine_smol::generic::ConnectBuilder<AsyncStdTcp>;

/// Connects to a `ws://` or `wss://` URL (webpki roots for TLS) with
/// [`Config::with_deflate`] (permessage-deflate offered), through the proxy
/// named by `https_proxy` / `http_proxy` / `all_proxy` unless `no_proxy`
/// lists the host. Returns the WebSocket and the server's handshake response.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream>, Response), Error> {
    ConnectBuilder::new(url).connect().await
}
