//! The driver's error type, shared by every adapter.

use std::fmt;
use std::io;

use crate::{CloseFrame, ConnectionError, HandshakeError, ProxyError, SendError, UrlError};

/// Everything that can go wrong driving a WebSocket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (connection refused or reset, …).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The connection failed: a protocol error by the peer, a failed opening
    /// handshake (including a non-101 status, see [`Error::http_status`]),
    /// a timeout, or the peer vanished without a closing handshake.
    #[error(transparent)]
    Ws(#[from] ConnectionError),
    /// The application used the connection in a way the protocol does not
    /// allow (a control payload over 125 bytes, an invalid close code, …).
    /// Never means "the connection is over": that is [`Error::Closed`].
    #[error("cannot send: {0}")]
    Send(SendError),
    /// The URL cannot be connected to.
    #[error("invalid URL: {0}")]
    Url(#[from] UrlError),
    /// The TLS handshake failed.
    #[error("TLS error: {0}")]
    Tls(io::Error),
    /// The proxy refused or failed the tunnel.
    #[error("proxy error: {0}")]
    Proxy(#[from] ProxyError),
    /// The `accept_with` callback answered the request with an HTTP
    /// response instead of accepting it; the response was sent.
    #[error("the opening request was answered without upgrading")]
    Rejected,
    /// The connection is over, or closing: nothing more can be sent. The
    /// cause says why, whichever operation meets it first (`send` after a
    /// completed closing handshake, after the peer vanished, …).
    #[error("the connection is over: {0}")]
    Closed(Ended),
}

/// Why a connection can no longer send: carried by [`Error::Closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// A Close frame was sent (by `close`, or as the echo of the peer's)
    /// and the closing handshake is under way.
    Closing,
    /// The closing handshake completed; the peer's Close frame.
    Closed(Option<CloseFrame>),
    /// The connection failed with this error (what `recv` reports).
    Failed(ConnectionError),
    /// The transport failed with an I/O error of this kind.
    Io(io::ErrorKind),
}

impl Ended {
    /// What `close` returns once the connection has ended this way: the
    /// failure that ended it, if any.
    pub(crate) fn into_close_result(self) -> Result<(), Error> {
        match self {
            Ended::Failed(e) => Err(Error::Ws(e)),
            Ended::Io(kind) => Err(Error::Io(kind.into())),
            Ended::Closing | Ended::Closed(_) => Ok(()),
        }
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Closing => f.write_str("closing handshake under way"),
            Ended::Closed(Some(frame)) => write!(
                f,
                "closing handshake completed (code {}, {:?})",
                frame.code, frame.reason
            ),
            Ended::Closed(None) => f.write_str("closing handshake completed"),
            Ended::Failed(e) => write!(f, "{e}"),
            Ended::Io(kind) => write!(f, "transport error: {kind}"),
        }
    }
}

impl Error {
    /// The HTTP status of a refused client handshake (the server answered
    /// something other than `101`), if that is what this error is.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Ws(ConnectionError::Handshake(HandshakeError::Status(r))) => Some(r.status),
            _ => None,
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Ws(ConnectionError::Handshake(e))
    }
}

impl From<Error> for io::Error {
    /// For the byte-stream view: I/O errors pass through, a connection
    /// that is over is `BrokenPipe`, the rest are wrapped.
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            Error::Closed(_) => io::Error::new(io::ErrorKind::BrokenPipe, e),
            other => io::Error::other(other),
        }
    }
}
