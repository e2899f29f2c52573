//! The one poll-level driver every adapter binds to its runtime (feature
//! `driver`).
//!
//! [`WebSocket`] moves bytes between a transport and a [`Connection`],
//! wakes at the core's deadlines and hands out events; [`split`](WebSocket::split)
//! gives a [`WebSocketReader`] and a [`WebSocketWriter`] for separate tasks;
//! [`ByteStream`] is the byte-stream view; [`accept_with`] (and
//! [`accept_with_async`]) and [`ConnectBuilder`] run the opening handshake;
//! [`Reconnect`] connects again by [`ReconnectPolicy`]. Every protocol decision
//! (framing, masking, UTF-8, automatic Pongs, the Close echo, keepalive,
//! every timeout, which received events hold back reading) is the core's;
//! the driver only reads, writes, sleeps and wakes.
//!
//! It is generic over two small traits that a runtime adapter implements,
//! in the manner of quinn's runtime layer and hyper's `rt`:
//! - [`Runtime`]: the clock, a resettable [`Timer`] and the OS random
//!   generator — the driver reads neither clock nor randomness itself, so
//!   this module keeps core's rule of no runtime, socket or timer crate;
//! - [`Io<S>`](Io), implemented by the runtime for its streams `S`: one
//!   read, a vectored write, flush and shutdown, each a `poll_*`.
//!
//! and, for clients, a [`Connector`]: TCP connect and TLS.
//!
//! Everything is static generics (no `dyn` on the per-message path), and
//! every future keeps its progress in the driver's struct, never in its own
//! locals: dropping one (a `select!` branch that lost) loses nothing.
//!
//! Applications use an adapter's names (`wsmachine_tokio::WebSocket<S>` is
//! `WebSocket<S, Tokio>`), not this module.

use std::future::Future;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use std::time::Instant;

mod byte_stream;
mod error;
mod handshake;
mod reconnect;
mod split;
mod state;
mod sync;
mod trace;
mod websocket;

pub use byte_stream::ByteStream;
pub use error::{Ended, Error};
pub use handshake::{accept, accept_with, accept_with_async, ConnectBuilder, TlsRoots};
pub use reconnect::{Disconnect, Reconnect, ReconnectPolicy};
pub use split::{WebSocketReader, WebSocketWriter};
pub use websocket::WebSocket;

#[cfg(doc)]
use crate::Connection;

/// What a send that never waits ([`WebSocket::try_send`],
/// [`WebSocketWriter::try_send`] and their `_prepared` forms) did with the
/// message. A refusal is an `Err` instead: [`Error::Closed`] once the
/// connection is closing or over, including when this very send found more
/// than [`Config::max_pending_output`](crate::Config::max_pending_output)
/// waiting: the peer does not read, so the connection ends
/// (`Ended::Failed(ConnectionError::PendingOutputLimit)`) and its output is
/// dropped at once. Between the two, [`SendStatus::Backpressure`] is the
/// warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[must_use]
pub enum SendStatus {
    /// Queued; the output waiting for the transport is at or below
    /// [`Config::write_buffer_high_water`](crate::Config::write_buffer_high_water).
    Queued,
    /// Queued, and the output waiting for the transport is now over
    /// [`Config::write_buffer_high_water`](crate::Config::write_buffer_high_water):
    /// the peer does not keep up. Nothing was dropped; it is up to the
    /// caller to stop sending to this connection (or to close it) until
    /// its `pending_output()` falls.
    Backpressure,
}

/// What the driver needs from an async runtime: time, a timer, randomness.
///
/// Implemented once per runtime by its adapter (`wsmachine_tokio::Tokio`,
/// `wsmachine_smol::Smol`). The driver never reads the clock or the OS
/// random generator on its own: they come in here.
pub trait Runtime: Send + Sync + Sized + 'static {
    /// A timer the driver re-arms for the core's next deadline.
    type Timer: Timer;

    /// The current time (the runtime's clock, so that a runtime with a
    /// paused or mocked clock drives the core's timers too).
    fn now() -> Instant;

    /// A timer that has not been armed yet (it never fires until
    /// [`Timer::reset`]).
    fn timer() -> Self::Timer;

    /// Fills `buf` from the OS random generator (client masking keys,
    /// `Sec-WebSocket-Key`; RFC 6455 §10.3 needs them unpredictable).
    fn fill_random(buf: &mut [u8]);
}

/// A resettable timer (quinn's `AsyncTimer`, hyper's `rt::Sleep`).
pub trait Timer: Send + Unpin {
    /// Fires at `at` instead of any earlier setting.
    fn reset(&mut self, at: Instant);

    /// `Ready` once the instant set by [`reset`](Timer::reset) has passed;
    /// registers `cx` for the wake-up otherwise.
    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// How a runtime drives a byte stream `S`: implemented by the runtime type
/// for every stream its I/O traits cover (tokio's `AsyncRead + AsyncWrite`,
/// futures-io's), so the driver holds the application's `S` itself.
pub trait Io<S>: Runtime {
    /// What [`WebSocket::into_byte_stream`] returns: [`ByteStream`] itself
    /// where this crate implements the runtime's I/O traits for it
    /// (futures-io), or the adapter's wrapper implementing them (tokio).
    type ByteStream;

    /// Wraps the driver's byte stream in [`Io::ByteStream`].
    fn byte_stream(inner: ByteStream<S, Self>) -> Self::ByteStream;

    /// One read into `buf`; `Ok(0)` is end of stream.
    fn poll_read(io: &mut S, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// One write of `buf` (possibly fewer bytes than given).
    fn poll_write(io: &mut S, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;

    /// One write of the slices in order (possibly fewer bytes than given);
    /// called only with two slices or more.
    fn poll_write_vectored(
        io: &mut S,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;

    /// Flushes what the stream buffers (TLS records).
    fn poll_flush(io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Shuts the write side down (TCP FIN, TLS close_notify).
    fn poll_shutdown(io: &mut S, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// How a client opens its transport: TCP through the runtime, then TLS
/// for `wss://`. Used by [`ConnectBuilder`].
pub trait Connector: Send + Sync + 'static {
    /// The runtime that drives the streams.
    type Runtime: Io<Self::Tcp> + Io<Self::Stream>;
    /// The runtime's TCP stream.
    type Tcp: Send + Unpin + 'static;
    /// What `connect` returns: TCP, plain or under TLS.
    type Stream: Send + Unpin + 'static;
    /// The TLS client configuration (`Arc<rustls::ClientConfig>`).
    type TlsConfig: Clone + Send + Sync + 'static;

    /// Resolves `host` and connects to `port`, with `TCP_NODELAY` set
    /// (frames are whole messages already: Nagle only adds latency).
    fn connect_tcp(host: &str, port: u16) -> impl Future<Output = io::Result<Self::Tcp>> + Send;

    /// The stream for `ws://`.
    fn plain(tcp: Self::Tcp) -> Self::Stream;

    /// Runs TLS for `wss://` over `tcp` with the server name `host`
    /// (ALPN `http/1.1`), with `config`, or else the adapter's
    /// configuration for `roots`.
    fn tls(
        tcp: Self::Tcp,
        host: &str,
        config: Option<Self::TlsConfig>,
        roots: TlsRoots,
    ) -> impl Future<Output = Result<Self::Stream, Error>> + Send;
}

/// An adapter's public surface for its runtime, the same in every adapter:
/// the `WebSocket`, `WebSocketReader`, `WebSocketWriter`, `ConnectBuilder`
/// and `Reconnect` names (with `ReconnectPolicy`, `Disconnect` and
/// `TlsRoots`), and `accept`, `accept_with`, `accept_with_async` and
/// `connect`, each
/// the driver's with the runtime `$rt` and the connector `$connector`
/// filled in (so that type inference needs no annotation).
#[doc(hidden)]
#[macro_export]
macro_rules! bind_runtime {
    ($rt:ty, $connector:ty) => {
        /// A WebSocket over the stream `S` (see [`wsmachine::driver::WebSocket`]).
        pub type WebSocket<S> = $crate::driver::WebSocket<S, $rt>;
        /// The receiving half of a split [`WebSocket`].
        pub type WebSocketReader<S> = $crate::driver::WebSocketReader<S, $rt>;
        /// The sending half of a split [`WebSocket`].
        pub type WebSocketWriter<S> = $crate::driver::WebSocketWriter<S, $rt>;
        /// Builds a client connection: headers, subprotocols, compression,
        /// [`Config`](wsmachine::Config), handshake timeout, TLS, proxy
        /// (see [`wsmachine::driver::ConnectBuilder`]).
        pub type ConnectBuilder = $crate::driver::ConnectBuilder<$connector>;
        /// A client that reconnects by policy, from
        /// [`ConnectBuilder::reconnect`] (see [`wsmachine::driver::Reconnect`]).
        pub type Reconnect = $crate::driver::Reconnect<$connector>;
        pub use $crate::driver::{Disconnect, ReconnectPolicy, TlsRoots};

        /// Accepts a WebSocket connection on `stream` with
        /// permessage-deflate when offered (see [`wsmachine::driver::accept`]).
        pub fn accept<S>(
            stream: S,
        ) -> impl ::std::future::Future<Output = Result<WebSocket<S>, $crate::driver::Error>>
        where
            $rt: $crate::driver::Io<S>,
        {
            $crate::driver::accept(stream)
        }

        /// Accepts a WebSocket connection with `config`, letting `callback`
        /// accept the request (subprotocol, headers, compression) or answer
        /// it with an HTTP response (see [`wsmachine::driver::accept_with`]).
        pub fn accept_with<S, F>(
            stream: S,
            config: impl Into<::std::sync::Arc<$crate::Config>>,
            callback: F,
        ) -> impl ::std::future::Future<Output = Result<WebSocket<S>, $crate::driver::Error>>
        where
            $rt: $crate::driver::Io<S>,
            F: FnOnce(&$crate::Request) -> Result<$crate::Accept, $crate::Reject>,
        {
            $crate::driver::accept_with(stream, config, callback)
        }

        /// [`accept_with`] with an async callback, which gets the request by
        /// value and runs within the opening-handshake deadline (see
        /// [`wsmachine::driver::accept_with_async`]).
        pub fn accept_with_async<S, F, Fut>(
            stream: S,
            config: impl Into<::std::sync::Arc<$crate::Config>>,
            callback: F,
        ) -> impl ::std::future::Future<Output = Result<WebSocket<S>, $crate::driver::Error>>
        where
            $rt: $crate::driver::Io<S>,
            F: FnOnce($crate::Request) -> Fut,
            Fut: ::std::future::Future<Output = Result<$crate::Accept, $crate::Reject>>,
        {
            $crate::driver::accept_with_async(stream, config, callback)
        }

        /// Connects to a `ws://` or `wss://` URL (webpki roots for TLS),
        /// offering permessage-deflate, through the proxy named by
        /// `https_proxy` / `http_proxy` / `all_proxy` unless `no_proxy`
        /// lists the host. Returns the WebSocket and the server's response.
        pub async fn connect(
            url: &str,
        ) -> Result<
            (
                WebSocket<<$connector as $crate::driver::Connector>::Stream>,
                $crate::Response,
            ),
            $crate::driver::Error,
        > {
            ConnectBuilder::new(url).connect().await
        }
    };
}
