//! # wsmachine-async-std: WebSocket over async-std
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); new code should
//! use `wsmachine-smol`, which has the same API. Both runtimes speak
//! futures-io, so this crate reuses smol's binding of the one driver
//! ([`Smol`]: `async-io` timers run on any executor) and adds only
//! [`AsyncStdTcp`], TCP through `async_std::net`.
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
//! One difference remains, async-std's own: its `TcpStream::poll_close`
//! only flushes, so after the closing handshake the peer sees the end of
//! the TCP stream when the WebSocket is dropped, not when `close` returns.
#![warn(missing_docs)]

use std::sync::Arc;

use async_std::net::TcpStream;
use wsmachine::driver;
pub use wsmachine_smol::*;

/// TCP connections through `async_std::net`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStdTcp;

impl driver::Connector for AsyncStdTcp {
    type Runtime = Smol;
    type Tcp = TcpStream;
    type Stream = MaybeTlsStream<TcpStream>;
    type TlsConfig = Arc<rustls::ClientConfig>;

    async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn plain(tcp: TcpStream) -> Self::Stream {
        MaybeTlsStream::Plain(tcp)
    }

    async fn tls(
        tcp: TcpStream,
        host: &str,
        config: Option<Self::TlsConfig>,
        roots: TlsRoots,
    ) -> Result<Self::Stream, Error> {
        connect_tls(tcp, host, config, roots).await
    }
}

// `connect`, `ConnectBuilder`, `accept`… over `async_std::net` (these
// shadow smol's from the glob import above).
wsmachine::bind_runtime!(Smol, AsyncStdTcp);
