//! # wsmachine-tokio: WebSockets on Tokio
//!
//! A thin driver around the sans-IO [`wsmachine`] engine: it reads from a
//! Tokio stream into the core, writes what the core hands out (with
//! vectored writes when several chunks are queued), sleeps until the core's
//! next deadline, and shuts the transport when the core says so. Every
//! protocol decision (framing, masking, UTF-8, compression, close codes,
//! keepalive, timeouts) is made in the core, so this crate behaves exactly
//! like the other `wsmachine` adapters.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsmachine_tokio::Error> {
//! use wsmachine_tokio::{CloseCode, Message};
//!
//! let (mut ws, _response) = wsmachine_tokio::connect("ws://127.0.0.1:9001/").await?;
//! ws.send("hello").await?;
//! while let Some(msg) = ws.recv().await {
//!     match msg? {
//!         Message::Text(t) => println!("{t}"),
//!         Message::Binary(b) => println!("{} bytes", b.len()),
//!     }
//!     ws.close(CloseCode::NORMAL, "bye").await?;
//! }
//! # Ok(()) }
//! ```
//!
//! A server:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = wsmachine_tokio::accept(tcp).await else { return };
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! # How it is driven
//!
//! [`WebSocket`] owns the stream and the core [`wsmachine::Connection`]
//! behind `&mut self`; there is no background task. Whatever method the
//! application calls makes all the progress that can be made without
//! waiting: [`WebSocket::recv`] writes pending output (Pongs, the Close
//! echo, keepalive Pings) before and while it waits for input, and
//! [`WebSocket::send`] processes what is readable (so Pings are answered
//! even when the application only sends). The state lives in the struct,
//! never in a future, which is what makes the futures cancel-safe.
//!
//! # Memory
//!
//! An idle connection holds no read buffer: reads go through a 16 KiB
//! stack buffer, and the core releases its input buffer when it empties.
//! Output is bounded by [`Config::write_buffer_high_water`] plus one
//! message (see [`WebSocket::send`]); received messages are read only as
//! the application asks for them (see [`WebSocket::recv`]).
#![warn(missing_docs)]

mod byte_stream;
mod connect;
mod driver;
mod split;
mod tls;
mod websocket;

pub use byte_stream::ByteStream;
pub use connect::{accept, accept_with, connect, ConnectBuilder};
pub use split::{WebSocketReader, WebSocketWriter};
pub use tls::{default_tls_config, MaybeTlsStream};
pub use websocket::WebSocket;

pub use wsmachine::{
    Accept, ClientRequest, CloseCode, CloseFrame, Compression, Config, DeflateConfig, Event,
    Message, Negotiated, Proxy, ProxyKind, Reject, Request, Response, Role, Utf8Bytes,
};

/// The TLS crates this adapter uses, for building server and client configs.
pub use tokio_rustls::{self, rustls};

/// Everything that can go wrong with a WebSocket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection failed: protocol error, handshake failure (including a
    /// non-101 status, see [`wsmachine::HandshakeError::Status`]), timeout,
    /// or the peer vanished without a closing handshake.
    #[error(transparent)]
    Ws(#[from] wsmachine::ConnectionError),
    /// The application used the connection in a way its state does not
    /// allow (for example sending after `close`).
    #[error(transparent)]
    Send(#[from] wsmachine::SendError),
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid URL: {0}")]
    Url(String),
    /// The TLS handshake failed or the server name is invalid.
    #[error("TLS error: {0}")]
    Tls(String),
    /// A proxy refused or failed.
    #[error("proxy error: {0}")]
    Proxy(String),
    /// The `accept_with` callback rejected the request (the HTTP answer was sent).
    #[error("the handshake was rejected")]
    Rejected,
    /// The connection has finished: the closing handshake completed or the
    /// transport was shut down.
    #[error("the connection is closed")]
    Closed,
}

impl Error {
    /// The HTTP status of a rejected client handshake (the server answered
    /// something other than `101`), if that is what this error is.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Ws(wsmachine::ConnectionError::Handshake(
                wsmachine::HandshakeError::Status(r),
            )) => Some(r.status),
            _ => None,
        }
    }
}

/// Masking keys for client frames, from the OS random generator (RFC 6455 §5.3).
type OsMask = wsmachine::EntropyMask<fn(&mut [u8])>;

fn mask_source() -> OsMask {
    fn fill(b: &mut [u8]) {
        // Not peer input: with the OS generator failing there is no safe way to mask.
        getrandom::fill(b).expect("the OS random generator failed");
    }
    wsmachine::EntropyMask::new(fill as fn(&mut [u8]))
}
