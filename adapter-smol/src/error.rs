//! The adapter's error type.

use wsmachine::{ConnectionError, HandshakeError, SendError};

/// Everything that can go wrong driving a WebSocket over a futures-io stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (connection reset, refused, …).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection failed: a protocol error by the peer, a failed opening
    /// handshake (including a non-101 status), a timeout, or EOF without a
    /// closing handshake.
    #[error(transparent)]
    Ws(#[from] ConnectionError),
    /// Local misuse, e.g. sending after `close`.
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// The URL is not a valid `ws://` or `wss://` URL.
    #[error("invalid URL: {0}")]
    Url(String),
    /// The TLS handshake failed, or the server name is invalid.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The proxy refused or failed the tunnel.
    #[error("proxy error: {0}")]
    Proxy(String),
    /// The `accept_with` callback rejected the request (the rejection was sent).
    #[error("the opening request was rejected")]
    Rejected,
    /// The connection has finished; it can no longer be used.
    #[error("the connection is closed")]
    Closed,
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Ws(ConnectionError::Handshake(e))
    }
}

impl From<Error> for std::io::Error {
    /// For the byte-stream view: I/O errors pass through, the rest are wrapped.
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            Error::Closed => std::io::Error::new(std::io::ErrorKind::BrokenPipe, e),
            other => std::io::Error::other(other),
        }
    }
}
