//! Error types, one per audience: the peer broke the protocol
//! ([`ProtocolError`]), the opening handshake failed ([`HandshakeError`]),
//! an extension negotiation was invalid ([`ExtensionError`]), the local
//! application misused the API ([`SendError`]), and why a connection ended
//! ([`ConnectionError`]).

use crate::close::CloseCode;

/// The peer violated RFC 6455 / RFC 7692 after the handshake.
///
/// Every variant knows the close code sent on the wire for it.
///
/// ```
/// use wsmachine::{CloseCode, ProtocolError};
/// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode reserved for future use (3–7, 11–15).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV bits set that no negotiated extension defines.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// A control frame with FIN clear (RFC 6455 §5.5).
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame whose length uses the 16- or 64-bit form (the
    /// 7-bit field holds 126 or 127): control payloads are at most 125
    /// bytes (RFC 6455 §5.5), so whatever the extended length says, the
    /// frame is refused without waiting for it.
    #[error(
        "control frame with an extended payload length (control payloads are at most 125 bytes)"
    )]
    ControlExtendedLength,
    /// A client frame without a mask (RFC 6455 §5.1).
    #[error("unmasked frame from client")]
    UnmaskedFrame,
    /// A server frame with a mask (RFC 6455 §5.1).
    #[error("masked frame from server")]
    MaskedFrame,
    /// A payload length not in its minimal encoding (RFC 6455 §5.2).
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
    /// A 64-bit payload length with its most significant bit set (RFC 6455 §5.2).
    #[error("64-bit payload length with most significant bit set")]
    LengthMsbSet,
    /// A continuation frame with no fragmented message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A text message or a close reason that is not valid UTF-8.
    #[error("invalid UTF-8 in text payload")]
    InvalidUtf8,
    /// A Close frame with a one-byte payload.
    #[error("close frame payload of one byte")]
    InvalidClosePayload,
    /// A Close frame with a code that may not be sent on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A frame's payload exceeds `max_frame_size`.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooBig {
        /// Declared payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message (after decompression) exceeds `max_message_size`.
    #[error("message of at least {size} bytes exceeds the limit of {limit}")]
    MessageTooBig {
        /// Size reached when the limit was passed.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message split into more than `max_fragments` frames.
    #[error("message has more than {limit} fragments")]
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
    /// RSV1 (compressed) on a control or continuation frame (RFC 7692 §6).
    #[error("compressed bit set on a control or continuation frame")]
    InvalidCompressedFrame,
    /// The compressed payload could not be inflated.
    #[error("invalid compressed data: {0}")]
    Inflate(String),
    /// The message in progress needed more memory than the shared
    /// [`crate::MemoryBudget`] had left: the process, not the message, is
    /// over its limit (close code 1013, Try Again Later).
    #[error("message needs {needed} bytes, over what the memory budget of {limit} has left")]
    MemoryBudget {
        /// Bytes the message needed at that point.
        needed: usize,
        /// The budget's limit.
        limit: usize,
    },
}

impl ProtocolError {
    /// The close code to send for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::Inflate(_) => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooBig { .. }
            | ProtocolError::MessageTooBig { .. }
            | ProtocolError::TooManyFragments { .. } => CloseCode::TOO_BIG,
            ProtocolError::MemoryBudget { .. } => CloseCode::TRY_AGAIN_LATER,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// An extension negotiation (`Sec-WebSocket-Extensions`) was malformed or
/// not acceptable (RFC 7692 §7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The header could not be parsed.
    #[error("malformed extension header: {0}")]
    Malformed(String),
    /// A parameter this extension does not define.
    #[error("unknown parameter {0:?}")]
    UnknownParameter(String),
    /// A parameter given twice in one offer or response.
    #[error("duplicate parameter {0:?}")]
    DuplicateParameter(String),
    /// A parameter with a value it may not have.
    #[error("invalid value {value:?} for parameter {name:?}")]
    InvalidValue {
        /// The parameter's name.
        name: String,
        /// The offending value.
        value: String,
    },
    /// The server's response contains something the client did not offer or allow.
    #[error("response parameter {0:?} was not allowed by the offer")]
    NotOffered(String),
    /// The server accepted an extension the client never offered.
    #[error("server accepted extension {0:?} that was not offered")]
    UnofferedExtension(String),
    /// The server accepted the same extension twice.
    #[error("extension {0:?} accepted twice")]
    DuplicateExtension(String),
}

/// The opening handshake failed (RFC 6455 §4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The HTTP head could not be parsed.
    #[error("malformed HTTP: {0}")]
    Http(String),
    /// The head exceeds `max_handshake_size` bytes.
    #[error("handshake head exceeds {limit} bytes")]
    HeadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The head has more than `max_headers` header lines.
    #[error("handshake has more than {limit} headers")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The request method is not GET.
    #[error("method {0} is not GET")]
    Method(String),
    /// HTTP version older than 1.1.
    #[error("HTTP version older than 1.1")]
    HttpVersion,
    /// No `Host` header in the request, or an empty one.
    #[error("missing Host header")]
    MissingHost,
    /// A `Host` that is not `host[:port]` (RFC 9112 §3.2, RFC 3986 §3.2.2):
    /// spaces, a path, user information. The server answers 400.
    #[error("invalid Host header {0:?}")]
    InvalidHost(String),
    /// A header that may appear once appears several times (`Host`,
    /// `Upgrade`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version` and
    /// `Content-Length` in a request; `Upgrade`, `Sec-WebSocket-Accept` and
    /// `Content-Length` in a 101). Intermediaries disagree on which copy
    /// counts, so neither is trusted (the server answers 400).
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// The request (server side) or the 101 response (client side) declares
    /// a body: a `Transfer-Encoding` of any value, or a `Content-Length`
    /// other than 0. The handshake has no body (RFC 9110 §9.3.1 for GET,
    /// §15.2 for 101), and a peer or proxy that reads one would disagree
    /// with us on where the WebSocket frames start (request smuggling). The
    /// value names the header; the server answers 400.
    #[error("handshake message with a body ({0})")]
    Body(&'static str),
    /// A `Content-Length` that is not a decimal number (RFC 9110 §8.6); the
    /// server answers 400.
    #[error("invalid Content-Length {0:?}")]
    ContentLength(String),
    /// The request target is not origin-form (`/path?query`, no fragment),
    /// nor absolute-form (`http://host/path`) naming the `Host` header's
    /// authority (RFC 9112 §3.2); asterisk-form and authority-form included.
    /// The server answers 400.
    #[error("invalid request target {0:?}")]
    RequestTarget(String),
    /// A header line starting with a space or tab: obsolete line folding
    /// (RFC 9112 §5.2), which the server answers with 400.
    #[error("obsolete line folding in a header")]
    ObsoleteLineFolding,
    /// A line of the HTTP head ends in a bare LF, without its CR (RFC 9112
    /// §2.2 allows a recipient to accept it; refused, so that every reader
    /// of these bytes agrees on where the head ends).
    #[error("line of the HTTP head ends in LF without CR")]
    BareLineFeed,
    /// Whitespace between a header name and its colon (RFC 9112 §5.1: a
    /// server must answer 400).
    #[error("whitespace between a header name and its colon")]
    WhitespaceBeforeColon,
    /// `Upgrade` header missing or without the `websocket` token.
    #[error("missing or invalid Upgrade header")]
    Upgrade,
    /// `Connection` header missing or without the `upgrade` token.
    #[error("missing or invalid Connection header")]
    Connection,
    /// `Sec-WebSocket-Key` missing or not 16 base64-encoded bytes.
    #[error("missing or invalid Sec-WebSocket-Key")]
    Key,
    /// `Sec-WebSocket-Version` is not 13 (the server answers 426).
    #[error("unsupported Sec-WebSocket-Version {0:?}")]
    UnsupportedVersion(String),
    /// The server answered with something other than 101.
    #[error("server answered with status {}", .0.status)]
    Status(Box<crate::http::Response>),
    /// `Sec-WebSocket-Accept` missing or wrong.
    #[error("missing or wrong Sec-WebSocket-Accept")]
    Accept,
    /// The server chose a subprotocol the client did not offer.
    #[error("server chose subprotocol {0:?} that was not offered")]
    Subprotocol(String),
    /// The client offered subprotocols and the server speaks none of them
    /// (the offer, as the client listed it); from
    /// [`Request::select_subprotocol`](crate::Request::select_subprotocol).
    /// The server answers 400.
    #[error("none of the offered subprotocols ({0}) is supported")]
    NoCommonSubprotocol(String),
    /// The extension negotiation failed.
    #[error("extension negotiation failed: {0}")]
    Extension(#[from] ExtensionError),
    /// The client's own request would not be valid HTTP (a control character
    /// or line break in the host, path, or a header; a header name or
    /// subprotocol that is not a token). Nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The application rejected the request, or a response was sent that was not 101.
    #[error("handshake rejected with status {0}")]
    Rejected(u16),
    /// A WebSocket request over HTTP/2 (RFC 8441 extended CONNECT) whose
    /// method is not CONNECT. The server answers 405 with `Allow: CONNECT`.
    #[error("method {0} is not CONNECT")]
    ConnectMethod(String),
    /// An HTTP/2 CONNECT whose `:protocol` is missing (a plain CONNECT, a
    /// tunnel) or is not `websocket` (RFC 8441 §4); the value as it came,
    /// empty when missing. The server answers 400.
    #[error("extended CONNECT :protocol {0:?} is not websocket")]
    ConnectProtocol(String),
    /// A field that has no place in a WebSocket handshake over HTTP/2: the
    /// `Sec-WebSocket-Key` RFC 8441 §5 leaves out, or the connection-specific
    /// `Upgrade` and `Connection` (RFC 9113 §8.2.2). The server answers 400.
    #[error("{0} has no place in an HTTP/2 WebSocket handshake")]
    Http2Field(&'static str),
    /// The HTTP/2 server did not send `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`
    /// (RFC 8441 §3): a client may not open a WebSocket on its connection.
    #[error("the HTTP/2 server does not allow extended CONNECT (RFC 8441)")]
    ExtendedConnectDisabled,
}

/// A URL that cannot be connected to: [`WsUrl::parse`](crate::WsUrl::parse)
/// and the adapters' `connect`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `ws://` or `wss://` (nor the `http://`/`https://` aliases).
    #[error("{0:?} is not a ws:// or wss:// URL")]
    Scheme(String),
    /// A fragment (`#…`), which RFC 6455 §3 forbids.
    #[error("a WebSocket URL may not have a fragment")]
    Fragment,
    /// A space or control character, which would end up in the request.
    #[error("a WebSocket URL may not contain spaces or control characters")]
    InvalidCharacter,
    /// User information (`user:pass@`), which is not supported.
    #[error("user information in the URL is not supported")]
    UserInfo,
    /// A missing or malformed host (empty, an unclosed IPv6 literal, a
    /// character a host name cannot hold), or one TLS cannot name.
    #[error("invalid host {0:?}")]
    Host(String),
    /// A port that is not a number from 0 to 65535.
    #[error("invalid port {0:?}")]
    Port(String),
    /// The request built from the URL and the builder's headers and
    /// subprotocols would not be valid HTTP.
    #[error(transparent)]
    Request(HandshakeError),
}

/// The local application used the API in a way the state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The opening handshake has not completed.
    #[error("the opening handshake has not completed")]
    NotOpen,
    /// A Close frame was already sent: no more data or control frames.
    #[error("the connection is closing or closed")]
    Closed,
    /// A control payload over 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(usize),
    /// A close code that may not be sent on the wire.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A streamed message is in progress: finish it first.
    #[error("a fragmented message is in progress")]
    MessageInProgress,
    /// No streamed message is in progress.
    #[error("no fragmented message is in progress")]
    NoMessageInProgress,
    /// `accept` or `reject` called when no request is waiting for an answer.
    #[error("no handshake request is waiting for an answer")]
    NoPendingRequest,
    /// The method needs the other role.
    #[error("not available in this role")]
    WrongRole,
    /// Accepting with parameters the request does not allow.
    #[error("invalid accept: {0}")]
    InvalidAccept(String),
    /// Accepting a plain HTTP request, one that asked for no WebSocket (see
    /// [`crate::Request::is_websocket_upgrade`]): answer it with an HTTP
    /// response (`reject`) instead.
    #[error("the request is plain HTTP, not a WebSocket upgrade: it can only be answered with an HTTP response")]
    NotAnUpgrade,
    /// The send found more than [`crate::Config::max_pending_output`]
    /// bytes waiting for the transport: the peer does not read. Nothing was
    /// queued, every queued byte was dropped, and the connection is over:
    /// [`crate::Connection::should_close_transport`] says to close the
    /// transport now (no Close frame: the output stops inside a frame), and
    /// the receiving half reports [`ConnectionError::PendingOutputLimit`]
    /// after the events already received.
    #[error("the peer did not read: more than the limit of output is waiting")]
    PendingOutputLimit,
}

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// The opening handshake did not complete in time.
    OpeningHandshake,
    /// The peer did not answer a keepalive Ping in time.
    Pong,
    /// The peer did not complete the closing handshake in time.
    ClosingHandshake,
}

/// Why a connection failed. Reported once, as the last event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer broke the protocol; a Close frame with [`ProtocolError::close_code`] was queued.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// A timer expired.
    #[error("timed out: {0:?}")]
    TimedOut(Timeout),
    /// The transport ended before the closing handshake (close code 1006).
    #[error("connection closed without a closing handshake")]
    Eof,
    /// The peer did not read what we sent: a send found more than
    /// [`crate::Config::max_pending_output`] bytes unsent, so the output
    /// was dropped and the connection ended without a Close frame (the
    /// peer sees 1006). See [`SendError::PendingOutputLimit`].
    #[error("the peer did not read: unsent output passed the limit")]
    PendingOutputLimit,
}

impl ConnectionError {
    /// The close code that describes this failure locally (1006 for a vanished
    /// peer, which is never sent on the wire).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ConnectionError::Protocol(p) => p.close_code(),
            ConnectionError::Handshake(_) => CloseCode::PROTOCOL_ERROR,
            ConnectionError::TimedOut(_) => CloseCode::ABNORMAL,
            ConnectionError::Eof | ConnectionError::PendingOutputLimit => CloseCode::ABNORMAL,
        }
    }
}
