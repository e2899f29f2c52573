//! The runtime-agnostic driver: everything here works over any
//! `futures_io::AsyncRead + AsyncWrite + Unpin` stream on any executor
//! (timers come from `async-io`, whose reactor runs on its own thread).
//! wsmachine-smol and wsmachine-async-std both re-export it and add only
//! their TCP [`Connector`].

mod byte_stream;
mod handshake;
mod split;
mod state;
mod tls;
mod websocket;

pub use byte_stream::ByteStream;
pub use handshake::{accept, accept_with, default_tls_config, ConnectBuilder, Connector};
pub use split::{WebSocketReader, WebSocketWriter};
pub use tls::MaybeTlsStream;
pub use websocket::WebSocket;
pub use wsmachine::{Compression, Proxy, ProxyKind, Reject};
