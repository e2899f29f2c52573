//! # wsmachine: a sans-IO WebSocket engine
//!
//! RFC 6455 and RFC 7692 (permessage-deflate) as a pure state machine. The
//! core does no I/O: it never touches a socket, never reads the clock
//! (time comes in as an [`std::time::Instant`] argument), never reads the OS
//! random generator (masking keys come from an injected [`MaskSource`]), and
//! spawns no thread. Bytes and instants go in; events, bytes to send and
//! deadlines come out. Runtime adapters (`wsmachine-tokio`,
//! `wsmachine-smol`, `wsmachine-async-std`) drive it over sockets; you can
//! drive it from any event loop.
//!
//! The driver loop, whatever the runtime:
//! 1. read bytes from the transport → [`Connection::receive`] (end of stream → [`Connection::receive_eof`]);
//! 2. write every chunk of [`Connection::poll_transmit`];
//! 3. handle every [`Event`] of [`Connection::poll_event`];
//! 4. wake at [`Connection::poll_timeout`] → [`Connection::handle_timeout`];
//! 5. close the transport when [`Connection::should_close_transport`].
//!
//! Every limit is a [`Config`] field with a safe default; every protocol
//! violation is a [`ProtocolError`] that knows its close code, queues the
//! Close frame and is reported once as [`Event::Error`]. Beyond the limits
//! of each message, the connections of a process share one
//! [`MemoryBudget`] for their unfinished messages (256 MiB by default).
#![warn(missing_docs)]

mod budget;
mod client_options;
mod close;
mod config;
mod connection;
mod deflate;
#[cfg(feature = "driver")]
pub mod driver;
mod error;
mod extensions;
mod frame;
mod handshake;
mod http;
mod mask;
mod message;
mod prepared;
mod proxy;
mod utf8;

pub use budget::MemoryBudget;
pub use client_options::{proxy_from_env, Compression, Reject};
pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::{Connection, Event, ReceiveHalf, SendHalf, State, Stats};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{
    ConnectionError, ExtensionError, HandshakeError, ProtocolError, SendError, Timeout, UrlError,
};
pub use extensions::{parse_extensions, ExtensionOffer};
pub use frame::OpCode;
#[cfg(feature = "http")]
pub use handshake::{
    accept_http_response, error_h2_response, error_http_response, reject_http_response, H2Handshake,
};
pub use handshake::{
    accept_key, accept_response, error_response, reject_response, Accept, ClientRequest,
    Negotiated, Request, ServerHandshake, WsUrl,
};
pub use http::{Headers, Response};
pub use mask::{apply_mask, EntropyMask, MaskSource, SeededMask};
pub use message::{Fragment, Message, MessageKind, Utf8Bytes};
pub use prepared::PreparedMessage;
pub use proxy::{Proxy, ProxyError, ProxyHandshake, ProxyKind, ProxyStep};

/// The pieces the workspace's own adapters, fuzz targets, benches and load
/// tools build on, below the documented API: the per-message codec, the
/// frame header, the client's opening handshake and its connect options.
/// Applications use `Connection` and the adapters instead.
///
/// Hidden from the docs and outside semver: anything here may change or go
/// in any release. It exists so that those crates need no second copy of
/// the engine, not as an API to depend on.
#[doc(hidden)]
pub mod internals {
    pub use crate::client_options::{ConnectOptions, PreparedConnect, ProxySetting};
    pub use crate::connection::KEEP_ANSWERED;
    pub use crate::deflate::{clear_thread_pool, thread_pool_len, Compressor, Decompressor};
    pub use crate::frame::{FrameHeader, MAX_HEADER_LEN, RSV1};
    pub use crate::handshake::{ClientHandshake, ClientOutcome};
}

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opens the connection; masks its frames.
    Client,
    /// Accepts the connection; never masks.
    Server,
}
