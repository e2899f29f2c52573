//! The opening handshake from and to the `http` crate's types (feature
//! `http`): for a request an HTTP server (hyper, axum) has parsed already,
//! and for a client request written as an `http::Request`.
//!
//! Nothing here is a second copy of a rule: a server request goes through
//! the byte path's own validation (`validate_head`), and responses are
//! built from the same answers as [`accept_response`](super::accept_response)
//! and [`error_response`](super::error_response) write as bytes.

use bytes::Bytes;

use super::client::negotiate_response;
use super::server::{
    accept_answer, error_answer, reject_answer, validate_extended_connect, validate_head, Answer,
};
use super::{check_no_body, Accept, ClientRequest, Headers, Negotiated, Request, WsUrl};
use crate::config::Config;
use crate::deflate::DeflateConfig;
use crate::error::{HandshakeError, SendError};
use crate::http::Response;

impl Request {
    /// Validates an opening request an HTTP server has parsed already, by
    /// the rules [`ServerHandshake`](crate::ServerHandshake) applies to
    /// bytes (its table of refusals, statuses included): method GET,
    /// HTTP/1.1, no body (`Transfer-Encoding`, a `Content-Length` other
    /// than 0), one valid `Host`, an origin-form target, the `Upgrade`,
    /// `Connection`, `Sec-WebSocket-Version` and `Sec-WebSocket-Key`
    /// fields. `config` gives the limits on the number of fields
    /// (`max_headers`) and on the size of the head as it would be written
    /// (`max_handshake_size`), and [`Config::answer_plain_http`].
    ///
    /// On error, [`error_http_response`] is the answer to send. The server
    /// parsed the head, so the rules about its bytes (line ends, folding,
    /// whitespace before a colon) were the server's to apply.
    ///
    /// ```
    /// use wsmachine::{accept_http_response, Accept, Config, Request};
    /// let req = http::Request::get("/chat")
    ///     .header("Host", "example.com")
    ///     .header("Upgrade", "websocket")
    ///     .header("Connection", "Upgrade")
    ///     .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    ///     .header("Sec-WebSocket-Version", "13")
    ///     .body(())
    ///     .unwrap();
    /// let ws = Request::from_http(&req, &Config::default()).unwrap();
    /// let (resp, _negotiated) = accept_http_response(&ws, &Accept::new(), None).unwrap();
    /// assert_eq!(resp.status(), 101);
    /// assert_eq!(resp.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /// ```
    pub fn from_http<B>(
        request: &::http::Request<B>,
        config: &Config,
    ) -> Result<Request, HandshakeError> {
        from_head(
            request.method(),
            request.version(),
            request.uri(),
            request.headers(),
            config,
        )
    }

    /// [`Request::from_http`] for the head of a request, as an extractor
    /// sees it (axum's `FromRequestParts`).
    pub fn from_http_parts(
        parts: &::http::request::Parts,
        config: &Config,
    ) -> Result<Request, HandshakeError> {
        from_head(
            &parts.method,
            parts.version,
            &parts.uri,
            &parts.headers,
            config,
        )
    }
}

/// WebSockets over HTTP/2 (RFC 8441): the server side.
impl Request {
    /// Validates an HTTP/2 extended CONNECT that opens a WebSocket (RFC
    /// 8441 §4–5). `protocol` is the request's `:protocol` pseudo-header,
    /// which the `http` crate has no place for (hyper gives it as the
    /// `hyper::ext::Protocol` extension); `None` for a plain CONNECT.
    ///
    /// | request | error | status ([`error_h2_response`]) |
    /// |---|---|---|
    /// | method other than CONNECT | [`HandshakeError::ConnectMethod`] | 405, with `Allow: CONNECT` |
    /// | not HTTP/2 | [`HandshakeError::HttpVersion`] | 400 |
    /// | `:protocol` missing or not `websocket` (compared as the `Upgrade` token is) | [`HandshakeError::ConnectProtocol`] | 400 |
    /// | any `Transfer-Encoding`, a `Content-Length` other than 0 | [`HandshakeError::Body`] | 400 |
    /// | a `Sec-WebSocket-Key`, `Upgrade` or `Connection` field | [`HandshakeError::Http2Field`] | 400 |
    /// | no authority; a `Host` other than the `:authority`; one that is not `host[:port]` | [`HandshakeError::MissingHost`] / [`HandshakeError::InvalidHost`] | 400 |
    /// | a `:path` that is not `/path?query` | [`HandshakeError::RequestTarget`] | 400 |
    /// | `Sec-WebSocket-Version` not 13 (or missing) | [`HandshakeError::UnsupportedVersion`] | 426, with `Sec-WebSocket-Version: 13` |
    /// | more fields, or a larger head, than `config` allows | [`HandshakeError::TooManyHeaders`] / [`HandshakeError::HeadTooLarge`] | 431 |
    ///
    /// The result is the same [`Request`] as over HTTP/1.1 (path, query,
    /// `Origin`, subprotocols, extension offers; the `:authority` as
    /// [`Request::host`]) with [`Request::is_extended_connect`] set and no
    /// key. [`accept_http_response`] answers it with a `200`.
    ///
    /// ```
    /// use wsmachine::{accept_http_response, Accept, Config, Request};
    /// let req = http::Request::connect("https://example.com/chat?room=1")
    ///     .version(http::Version::HTTP_2)
    ///     .header("sec-websocket-version", "13")
    ///     .header("sec-websocket-protocol", "chat")
    ///     .body(())
    ///     .unwrap();
    /// let ws = Request::from_h2_connect(&req, Some("websocket"), &Config::default()).unwrap();
    /// assert_eq!((ws.host(), ws.path(), ws.query()), ("example.com", "/chat", Some("room=1")));
    /// let (resp, negotiated) = accept_http_response(&ws, &Accept::new().subprotocol("chat"), None).unwrap();
    /// assert_eq!(resp.status(), 200);
    /// assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    /// assert!(resp.headers().get("sec-websocket-accept").is_none());
    /// assert_eq!(negotiated.subprotocol.as_deref(), Some("chat"));
    /// ```
    pub fn from_h2_connect<B>(
        request: &::http::Request<B>,
        protocol: Option<&str>,
        config: &Config,
    ) -> Result<Request, HandshakeError> {
        from_connect_head(
            request.method(),
            request.version(),
            protocol,
            request.uri(),
            request.headers(),
            config,
        )
    }

    /// [`Request::from_h2_connect`] for the head of a request, as an
    /// extractor sees it.
    pub fn from_h2_connect_parts(
        parts: &::http::request::Parts,
        protocol: Option<&str>,
        config: &Config,
    ) -> Result<Request, HandshakeError> {
        from_connect_head(
            &parts.method,
            parts.version,
            protocol,
            &parts.uri,
            &parts.headers,
            config,
        )
    }
}

fn from_connect_head(
    method: &::http::Method,
    version: ::http::Version,
    protocol: Option<&str>,
    uri: &::http::Uri,
    fields: &::http::HeaderMap,
    config: &Config,
) -> Result<Request, HandshakeError> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let headers = checked_fields(method, target, fields, config)?;
    validate_extended_connect(
        method.as_str(),
        version == ::http::Version::HTTP_2,
        protocol,
        uri.authority().map(|a| a.as_str()),
        target,
        headers,
    )
}

/// The fields of a parsed head, held to the limits of `config` as the
/// byte path holds a head: the number of fields (`max_headers`) and the
/// size of the head as it would be written (`max_handshake_size`).
fn checked_fields(
    method: &::http::Method,
    target: &str,
    fields: &::http::HeaderMap,
    config: &Config,
) -> Result<Headers, HandshakeError> {
    if fields.len() > config.max_headers {
        return Err(HandshakeError::TooManyHeaders {
            limit: config.max_headers,
        });
    }
    let mut headers = Headers::new();
    // The head as it would be on the wire: request line, fields, blank line.
    let mut size = method.as_str().len() + target.len() + " HTTP/1.1\r\n\r\n".len() + 1;
    for (name, value) in fields {
        size += name.as_str().len() + value.len() + 4;
        headers.push(name.as_str(), value.as_bytes());
    }
    if size > config.max_handshake_size {
        return Err(HandshakeError::HeadTooLarge {
            limit: config.max_handshake_size,
        });
    }
    Ok(headers)
}

fn from_head(
    method: &::http::Method,
    version: ::http::Version,
    uri: &::http::Uri,
    fields: &::http::HeaderMap,
    config: &Config,
) -> Result<Request, HandshakeError> {
    let target = uri.to_string();
    let headers = checked_fields(method, &target, fields, config)?;
    validate_head(
        method.as_str(),
        version == ::http::Version::HTTP_11,
        &target,
        headers,
        config.answer_plain_http,
    )
}

/// The `101 Switching Protocols` of [`accept_response`](crate::accept_response)
/// as an `http::Response`, and what it negotiated (for
/// [`Connection::upgraded`](crate::Connection::upgraded) or an adapter's
/// `WebSocket::from_upgraded` once the server has switched protocols).
/// Fails as `accept_response` does.
///
/// For an HTTP/2 extended CONNECT ([`Request::is_extended_connect`]) the
/// answer is RFC 8441 §5's `200` instead: the same negotiated
/// `sec-websocket-protocol` and `sec-websocket-extensions` and extra
/// headers, no `Upgrade`, `Connection` or `Sec-WebSocket-Accept`. The
/// WebSocket then runs on the request's stream, client masking unchanged.
pub fn accept_http_response(
    request: &Request,
    accept: &Accept,
    deflate: Option<&DeflateConfig>,
) -> Result<(::http::Response<()>, Negotiated), SendError> {
    let (answer, negotiated) = accept_answer(request, accept, deflate)?;
    let version = if request.is_extended_connect() {
        ::http::Version::HTTP_2
    } else {
        ::http::Version::HTTP_11
    };
    Ok((to_http(answer, version)?.map(|_| ()), negotiated))
}

/// The answer of [`error_response`](crate::error_response) to a refused
/// request as an `http::Response`: the same status (400; 426 with
/// `Sec-WebSocket-Version: 13` for another version; 405 with `Allow: GET`;
/// 431 over the limits), `Connection: close`, and the error as a text body
/// (the server sets its length).
///
/// ```
/// use wsmachine::{error_http_response, HandshakeError};
/// let resp = error_http_response(&HandshakeError::UnsupportedVersion("8".into()));
/// assert_eq!(resp.status(), 426);
/// assert_eq!(resp.headers()["sec-websocket-version"], "13");
/// ```
pub fn error_http_response(err: &HandshakeError) -> ::http::Response<Bytes> {
    to_http(error_answer(err), ::http::Version::HTTP_11).expect("error answers are valid HTTP")
}

/// The answer to a refused HTTP/2 extended CONNECT
/// ([`Request::from_h2_connect`]): the status and fields of
/// [`error_http_response`] (400; 426 with `Sec-WebSocket-Version: 13`; 405
/// with `Allow: CONNECT`; 431), and the error as a text body, without
/// `Connection: close`, which HTTP/2 forbids (RFC 9113 §8.2.2): a refusal
/// ends the stream, not the connection.
///
/// ```
/// use wsmachine::{error_h2_response, HandshakeError};
/// let resp = error_h2_response(&HandshakeError::UnsupportedVersion("8".into()));
/// assert_eq!(resp.status(), 426);
/// assert_eq!(resp.headers()["sec-websocket-version"], "13");
/// assert!(resp.headers().get("connection").is_none());
/// ```
pub fn error_h2_response(err: &HandshakeError) -> ::http::Response<Bytes> {
    to_http(error_answer(err), ::http::Version::HTTP_2).expect("error answers are valid HTTP")
}

/// The answer of [`reject_response`](crate::reject_response) as an
/// `http::Response`: status (200–599, not 101), extra headers, body, and
/// `Connection: close`.
pub fn reject_http_response(
    status: u16,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Result<::http::Response<Bytes>, SendError> {
    to_http(
        reject_answer(status, headers, body.into())?,
        ::http::Version::HTTP_11,
    )
}

/// `answer` as an `http::Response` of `version`. An HTTP/1.1 refusal
/// closes the connection (its bytes after the head would be read as
/// frames); over HTTP/2 only the stream ends, and `Connection` is not a
/// field it may carry.
fn to_http(answer: Answer, version: ::http::Version) -> Result<::http::Response<Bytes>, SendError> {
    let invalid = |e: ::http::Error| SendError::InvalidAccept(e.to_string());
    let mut builder = ::http::Response::builder()
        .status(answer.status)
        .version(version);
    for (n, v) in &answer.headers {
        builder = builder.header(n.as_str(), v.as_str());
    }
    if answer.status != 101 && version == ::http::Version::HTTP_11 {
        builder = builder.header(::http::header::CONNECTION, "close");
    }
    builder.body(answer.body).map_err(invalid)
}

/// The fields the client handshake writes itself.
const HANDSHAKE_FIELDS: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

impl ClientRequest {
    /// The client's opening request from an `http::Request`: a `GET` of an
    /// absolute `ws://`/`wss://` URI (or `http`/`https`), or of a path
    /// with a `Host` field. `Origin` becomes [`ClientRequest::origin`],
    /// each `Sec-WebSocket-Protocol` value an offered subprotocol, every
    /// other field a [`ClientRequest::header`].
    ///
    /// Refused with [`HandshakeError::InvalidRequest`]: a field the
    /// handshake writes itself (`Upgrade`, `Connection`,
    /// `Sec-WebSocket-Key`, `-Version`, `-Extensions`: compression is
    /// [`Config::deflate`]'s), a `Host` naming another authority than the
    /// URI, a value that is not UTF-8, and what
    /// [`ClientRequest::validate`] refuses; a method other than GET
    /// ([`HandshakeError::Method`]), a version other than HTTP/1.1
    /// ([`HandshakeError::HttpVersion`]), and a body declared in the fields
    /// ([`HandshakeError::Body`]).
    ///
    /// ```
    /// use wsmachine::ClientRequest;
    /// let req = http::Request::get("ws://example.com:9001/chat?room=1")
    ///     .header("Authorization", "Bearer t0ken")
    ///     .header("Sec-WebSocket-Protocol", "chat.v2, chat.v1")
    ///     .body(())
    ///     .unwrap();
    /// let req = ClientRequest::from_http(&req).unwrap();
    /// assert_eq!((req.host(), req.path()), ("example.com:9001", "/chat?room=1"));
    /// assert_eq!(req.subprotocols(), ["chat.v2", "chat.v1"]);
    /// ```
    pub fn from_http(request: &::http::Request<()>) -> Result<ClientRequest, HandshakeError> {
        if request.method() != ::http::Method::GET {
            return Err(HandshakeError::Method(request.method().to_string()));
        }
        if request.version() != ::http::Version::HTTP_11 {
            return Err(HandshakeError::HttpVersion);
        }
        let mut headers = Headers::new();
        for (name, value) in request.headers() {
            let Ok(value) = value.to_str() else {
                return Err(HandshakeError::InvalidRequest(format!(
                    "{name} is not UTF-8"
                )));
            };
            headers.push(name.as_str(), value.as_bytes());
        }
        check_no_body(&headers)?;
        let uri = request.uri();
        let host_field = headers.get("host");
        let mut out = if uri.scheme().is_some() {
            let url = WsUrl::parse(&uri.to_string())
                .map_err(|e| HandshakeError::InvalidRequest(e.to_string()))?;
            let out = ClientRequest::from_url(&url);
            if host_field.is_some_and(|h| !h.trim().eq_ignore_ascii_case(out.host())) {
                return Err(HandshakeError::InvalidRequest(format!(
                    "Host {host_field:?} is not the URI's authority"
                )));
            }
            out
        } else {
            let host = host_field.ok_or(HandshakeError::MissingHost)?.trim();
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            ClientRequest::new(host, path)
        };
        for (name, value) in headers.iter() {
            let lower = name.to_ascii_lowercase();
            if HANDSHAKE_FIELDS.contains(&lower.as_str()) {
                return Err(HandshakeError::InvalidRequest(format!(
                    "{name} is written by the handshake"
                )));
            }
            out = match lower.as_str() {
                "host" => out,
                "origin" => out.origin(value),
                "sec-websocket-protocol" => value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .fold(out, ClientRequest::subprotocol),
                _ => out.header(name, value),
            };
        }
        out.validate()?;
        Ok(out)
    }
}

/// Fields the extended CONNECT may not carry among a [`ClientRequest`]'s
/// headers: HTTP/2's connection-specific ones (RFC 9113 §8.2.2), the
/// HTTP/1.1 handshake's key (RFC 8441 §5), and `Host` (the authority is
/// the URI's).
const NOT_IN_H2_CONNECT: [&str; 7] = [
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "sec-websocket-key",
    "host",
];

/// WebSockets over HTTP/2 (RFC 8441): the client side.
impl ClientRequest {
    /// The extended CONNECT that opens this WebSocket on an HTTP/2
    /// connection whose server sent `SETTINGS_ENABLE_CONNECT_PROTOCOL`
    /// (RFC 8441 §4), and the [`H2Handshake`] that checks the answer.
    ///
    /// The request is `CONNECT` of the absolute URI `https://host/path`
    /// (`http://` when `secure` is false: the `:scheme` of a `ws://` URL),
    /// HTTP/2, with `sec-websocket-version: 13`, the Origin, the offered
    /// subprotocols, `config`'s permessage-deflate offer
    /// ([`Config::deflate`]) and the request's other headers, the same
    /// fields an HTTP/1.1 opening request carries after its own. The
    /// `:protocol` pseudo-header (`websocket`) has no place in the `http`
    /// crate: the HTTP/2 client sets it (hyper: the `hyper::ext::Protocol`
    /// extension).
    ///
    /// Refused as [`ClientRequest::validate`] refuses, and with
    /// [`HandshakeError::InvalidRequest`] for a header HTTP/2 or RFC 8441
    /// leaves out (`Connection`, `Upgrade`, `Keep-Alive`,
    /// `Proxy-Connection`, `Transfer-Encoding`, `Sec-WebSocket-Key`) or a
    /// `Host` (the authority is the URI's).
    ///
    /// ```
    /// use wsmachine::{ClientRequest, Config};
    /// let (req, handshake) = ClientRequest::new("example.com", "/chat")
    ///     .subprotocol("chat")
    ///     .to_h2_connect(true, &Config::default())
    ///     .unwrap();
    /// assert_eq!(req.method(), http::Method::CONNECT);
    /// assert_eq!(req.uri(), "https://example.com/chat");
    /// assert_eq!(req.headers()["sec-websocket-version"], "13");
    /// let resp = http::Response::builder()
    ///     .header("sec-websocket-protocol", "chat")
    ///     .body(())
    ///     .unwrap();
    /// assert_eq!(handshake.check(&resp).unwrap().subprotocol.as_deref(), Some("chat"));
    /// ```
    pub fn to_h2_connect(
        &self,
        secure: bool,
        config: &Config,
    ) -> Result<(::http::Request<()>, H2Handshake), HandshakeError> {
        self.validate()?;
        let invalid = |e: ::http::Error| HandshakeError::InvalidRequest(e.to_string());
        let scheme = if secure { "https" } else { "http" };
        let mut builder = ::http::Request::builder()
            .method(::http::Method::CONNECT)
            .version(::http::Version::HTTP_2)
            .uri(format!("{scheme}://{}{}", self.host(), self.path()));
        for (name, value) in self.offer_fields(config.deflate.as_ref()) {
            if NOT_IN_H2_CONNECT
                .iter()
                .any(|f| f.eq_ignore_ascii_case(name))
            {
                return Err(HandshakeError::InvalidRequest(format!(
                    "{name} has no place in an HTTP/2 WebSocket request"
                )));
            }
            builder = builder.header(name, value.as_ref());
        }
        let request = builder.body(()).map_err(invalid)?;
        let handshake = H2Handshake {
            subprotocols: self.subprotocols().to_vec(),
            deflate: config.deflate.clone(),
        };
        Ok((request, handshake))
    }
}

/// The client's check of the answer to its extended CONNECT, from
/// [`ClientRequest::to_h2_connect`].
#[derive(Clone, Debug)]
#[must_use]
pub struct H2Handshake {
    subprotocols: Vec<String>,
    deflate: Option<DeflateConfig>,
}

impl H2Handshake {
    /// What the server's answer agreed on, for
    /// [`Connection::upgraded`](crate::Connection::upgraded) (or an
    /// adapter's `WebSocket::from_upgraded`) with the client role on the
    /// request's stream.
    ///
    /// Any 2xx accepts (RFC 8441 §5, after RFC 9110 §9.3.6); another
    /// status is [`HandshakeError::Status`] with the status and fields
    /// (the body, which the stream carries, is left to the caller). The
    /// subprotocol and extensions are checked by the very rules the
    /// HTTP/1.1 client applies to a 101: at most one subprotocol, one that
    /// was offered; only permessage-deflate, once, with parameters the
    /// offer allows.
    pub fn check<B>(&self, response: &::http::Response<B>) -> Result<Negotiated, HandshakeError> {
        let mut headers = Headers::new();
        for (name, value) in response.headers() {
            headers.push(name.as_str(), value.as_bytes());
        }
        let status = response.status();
        if !status.is_success() {
            return Err(HandshakeError::Status(Box::new(Response {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_owned(),
                headers,
                body: Bytes::new(),
            })));
        }
        negotiate_response(&headers, &self.subprotocols, self.deflate.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{accept_response, error_response, ServerHandshake};

    /// RFC 6455 §1.3's request, as a server would have parsed it.
    fn rfc_request() -> ::http::request::Builder {
        ::http::Request::get("/chat?room=1")
            .header("Host", "server.example.com")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Origin", "http://example.com")
            .header("Sec-WebSocket-Protocol", "chat, superchat")
            .header("Sec-WebSocket-Version", "13")
    }

    /// The same request as bytes, for the byte path.
    fn as_bytes(req: &::http::Request<()>) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", req.method(), req.uri()).into_bytes();
        for (n, v) in req.headers() {
            out.extend_from_slice(format!("{n}: ").as_bytes());
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn both_paths(
        req: &::http::Request<()>,
    ) -> (
        Result<Request, HandshakeError>,
        Result<Request, HandshakeError>,
    ) {
        let cfg = Config::default();
        let bytes = ServerHandshake::new(&cfg)
            .receive(&as_bytes(req))
            .map(|r| r.expect("a complete head"));
        (Request::from_http(req, &cfg), bytes)
    }

    #[test]
    fn rfc6455_1_3_accept_from_http() {
        let req = rfc_request().body(()).unwrap();
        let ws = Request::from_http(&req, &Config::default()).unwrap();
        assert_eq!((ws.path(), ws.query()), ("/chat", Some("room=1")));
        assert_eq!(ws.subprotocols(), ["chat", "superchat"]);
        let accept = Accept::new().subprotocol("chat");
        let (resp, negotiated) = accept_http_response(&ws, &accept, None).unwrap();
        assert_eq!(resp.status(), 101);
        let h = resp.headers();
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h.len(), 4);
        assert_eq!(negotiated.subprotocol.as_deref(), Some("chat"));
        // The same answer, field for field, as the byte path writes.
        let (bytes, n2) = accept_response(&ws, &accept, None).unwrap();
        assert_eq!(negotiated, n2);
        let text = std::str::from_utf8(&bytes).unwrap();
        for (name, value) in h {
            assert!(
                text.to_ascii_lowercase()
                    .contains(&format!("{name}: {}", value.to_str().unwrap()).to_ascii_lowercase()),
                "{name} missing from {text}"
            );
        }
    }

    #[test]
    fn compression_is_negotiated_as_on_the_byte_path() {
        let req = rfc_request()
            .header(
                "Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits",
            )
            .body(())
            .unwrap();
        let ws = Request::from_http(&req, &Config::default()).unwrap();
        let deflate = DeflateConfig::default();
        let (resp, negotiated) = accept_http_response(&ws, &Accept::new(), Some(&deflate)).unwrap();
        let ext = resp.headers()["sec-websocket-extensions"].to_str().unwrap();
        assert!(ext.starts_with("permessage-deflate"), "{ext}");
        assert!(negotiated.deflate.is_some());
        let (_, bytes_negotiated) = accept_response(&ws, &Accept::new(), Some(&deflate)).unwrap();
        assert_eq!(negotiated, bytes_negotiated);
        // Declined when the application says so.
        let (resp, negotiated) =
            accept_http_response(&ws, &Accept::new().compression(false), Some(&deflate)).unwrap();
        assert!(resp.headers().get("sec-websocket-extensions").is_none());
        assert_eq!(negotiated.deflate, None);
    }

    #[test]
    fn every_refusal_is_the_byte_paths_with_its_status() {
        let drop = |name: &str| {
            let mut req = rfc_request().body(()).unwrap();
            req.headers_mut().remove(name);
            req
        };
        let with = |name: &'static str, value: &'static str| {
            let mut req = rfc_request().body(()).unwrap();
            req.headers_mut().append(name, value.parse().unwrap());
            req
        };
        let set = |name: &'static str, value: &'static str| {
            let mut req = rfc_request().body(()).unwrap();
            req.headers_mut().insert(name, value.parse().unwrap());
            req
        };
        let mut post = rfc_request().body(()).unwrap();
        *post.method_mut() = ::http::Method::POST;
        let plain = || {
            ::http::Request::get("/chat")
                .header("Host", "server.example.com")
                .body(())
                .unwrap()
        };
        let mut twice_zero = with("Content-Length", "0");
        twice_zero
            .headers_mut()
            .append("Content-Length", "0".parse().unwrap());
        let cases = [
            (
                with("Transfer-Encoding", "chunked"),
                HandshakeError::Body("Transfer-Encoding"),
                400,
            ),
            (
                with("Content-Length", "5"),
                HandshakeError::Body("Content-Length"),
                400,
            ),
            (
                twice_zero,
                HandshakeError::DuplicateHeader("Content-Length"),
                400,
            ),
            (
                with("Host", "internal.example"),
                HandshakeError::DuplicateHeader("Host"),
                400,
            ),
            (drop("host"), HandshakeError::MissingHost, 400),
            (
                set("Host", "a/b"),
                HandshakeError::InvalidHost("a/b".into()),
                400,
            ),
            (drop("upgrade"), HandshakeError::Upgrade, 400),
            (drop("connection"), HandshakeError::Connection, 400),
            (drop("sec-websocket-key"), HandshakeError::Key, 400),
            (set("Sec-WebSocket-Key", "short"), HandshakeError::Key, 400),
            (
                set("Sec-WebSocket-Version", "8"),
                HandshakeError::UnsupportedVersion("8".into()),
                426,
            ),
            (post, HandshakeError::Method("POST".into()), 405),
            (plain(), HandshakeError::Upgrade, 400),
        ];
        for (req, err, status) in cases {
            let (from_http, from_bytes) = both_paths(&req);
            assert_eq!(from_http, Err(err.clone()), "{req:?}");
            assert_eq!(from_bytes, Err(err.clone()), "{req:?}");
            let resp = error_http_response(&err);
            assert_eq!(resp.status(), status, "{err}");
            assert_eq!(resp.headers()["connection"], "close");
            assert_eq!(resp.body(), &Bytes::from(format!("{err}\n")));
            let bytes = error_response(&err);
            assert!(bytes.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
        }
        let resp = error_http_response(&HandshakeError::UnsupportedVersion("8".into()));
        assert_eq!(resp.headers()["sec-websocket-version"], "13");
        let resp = error_http_response(&HandshakeError::Method("POST".into()));
        assert_eq!(resp.headers()["allow"], "GET");
        // HTTP/1.0 and HTTP/2 (RFC 8441 is another handshake).
        for v in [::http::Version::HTTP_10, ::http::Version::HTTP_2] {
            let mut req = rfc_request().body(()).unwrap();
            *req.version_mut() = v;
            assert_eq!(
                Request::from_http(&req, &Config::default()),
                Err(HandshakeError::HttpVersion)
            );
        }
        // A plain GET reaches the application only when asked for.
        let cfg = Config {
            answer_plain_http: true,
            ..Config::default()
        };
        assert!(!Request::from_http(&plain(), &cfg)
            .unwrap()
            .is_websocket_upgrade());
    }

    #[test]
    fn targets_and_limits() {
        // Absolute-form naming the Host is origin-form; another host is refused.
        let mut req = rfc_request().body(()).unwrap();
        *req.uri_mut() = "http://server.example.com/chat?x".parse().unwrap();
        let (a, b) = both_paths(&req);
        assert_eq!(a.unwrap().uri(), "/chat?x");
        assert_eq!(b.unwrap().uri(), "/chat?x");
        *req.uri_mut() = "http://other.example/chat".parse().unwrap();
        let (a, b) = both_paths(&req);
        let err = HandshakeError::RequestTarget("http://other.example/chat".into());
        assert_eq!((a, b), (Err(err.clone()), Err(err)));
        let req = rfc_request().body(()).unwrap();
        let few = Config {
            max_headers: 3,
            ..Config::default()
        };
        assert_eq!(
            Request::from_http(&req, &few),
            Err(HandshakeError::TooManyHeaders { limit: 3 })
        );
        let small = Config {
            max_handshake_size: 100,
            ..Config::default()
        };
        assert_eq!(
            Request::from_http(&req, &small),
            Err(HandshakeError::HeadTooLarge { limit: 100 })
        );
        assert_eq!(
            error_http_response(&HandshakeError::HeadTooLarge { limit: 100 }).status(),
            431
        );
        let (parts, ()) = req.into_parts();
        assert!(Request::from_http_parts(&parts, &Config::default()).is_ok());
    }

    #[test]
    fn subprotocol_selection() {
        let req = rfc_request().body(()).unwrap();
        let ws = Request::from_http(&req, &Config::default()).unwrap();
        assert_eq!(
            ws.select_subprotocol(&["superchat", "chat"]),
            Ok(Some("chat"))
        );
        assert_eq!(ws.select_subprotocol(&["superchat"]), Ok(Some("superchat")));
        let err = ws.select_subprotocol(&["mqtt"]).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::NoCommonSubprotocol("chat, superchat".into())
        );
        assert_eq!(error_http_response(&err).status(), 400);
        let mut none = rfc_request().body(()).unwrap();
        none.headers_mut().remove("sec-websocket-protocol");
        let ws = Request::from_http(&none, &Config::default()).unwrap();
        assert_eq!(ws.select_subprotocol(&["mqtt"]), Ok(None));
    }

    #[test]
    fn reject_as_http() {
        let resp =
            reject_http_response(403, &[("X-Reason".into(), "banned".into())], "no").unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()["x-reason"], "banned");
        assert_eq!(resp.headers()["connection"], "close");
        assert_eq!(resp.body(), "no");
        assert!(reject_http_response(101, &[], "").is_err());
        assert!(reject_http_response(400, &[("X".into(), "a\r\nB: 1".into())], "").is_err());
    }

    #[test]
    fn client_request_from_http() {
        let req = ::http::Request::get("wss://example.com/chat")
            .header("Origin", "https://example.com")
            .header("Sec-WebSocket-Protocol", "a")
            .header("Sec-WebSocket-Protocol", "b, c")
            .header("Cookie", "s=1")
            .body(())
            .unwrap();
        let c = ClientRequest::from_http(&req).unwrap();
        let expected = ClientRequest::new("example.com", "/chat")
            .origin("https://example.com")
            .subprotocol("a")
            .subprotocol("b")
            .subprotocol("c")
            .header("cookie", "s=1");
        assert_eq!(c, expected);
        // A path with a Host field.
        let req = ::http::Request::get("/x?y")
            .header("Host", "h:8080")
            .body(())
            .unwrap();
        assert_eq!(
            ClientRequest::from_http(&req).unwrap(),
            ClientRequest::new("h:8080", "/x?y")
        );
        let refused = |req: ::http::Request<()>| ClientRequest::from_http(&req).unwrap_err();
        let get = || ::http::Request::get("ws://example.com/");
        assert_eq!(
            refused(::http::Request::get("/").body(()).unwrap()),
            HandshakeError::MissingHost
        );
        assert_eq!(
            refused(::http::Request::post("ws://h/").body(()).unwrap()),
            HandshakeError::Method("POST".into())
        );
        assert_eq!(
            refused(get().header("Content-Length", "3").body(()).unwrap()),
            HandshakeError::Body("Content-Length")
        );
        for field in [
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Extensions",
        ] {
            let err = refused(get().header(field, "x").body(()).unwrap());
            assert!(
                matches!(err, HandshakeError::InvalidRequest(_)),
                "{field}: {err}"
            );
        }
        let err = refused(get().header("Host", "other.example").body(()).unwrap());
        assert!(matches!(err, HandshakeError::InvalidRequest(_)), "{err}");
        let err = refused(::http::Request::get("ftp://h/").body(()).unwrap());
        assert!(matches!(err, HandshakeError::InvalidRequest(_)), "{err}");
        let err = refused(
            get()
                .header("Sec-WebSocket-Protocol", "a b")
                .body(())
                .unwrap(),
        );
        assert!(matches!(err, HandshakeError::InvalidRequest(_)), "{err}");
    }

    /// RFC 8441 §5's request, as hyper hands it over (the `:protocol`
    /// apart).
    fn h2_request() -> ::http::request::Builder {
        ::http::Request::connect("https://server.example.com/chat?room=1")
            .version(::http::Version::HTTP_2)
            .header("sec-websocket-version", "13")
            .header("origin", "http://example.com")
            .header("sec-websocket-protocol", "chat, superchat")
    }

    fn h2(req: &::http::Request<()>) -> Result<Request, HandshakeError> {
        Request::from_h2_connect(req, Some("websocket"), &Config::default())
    }

    #[test]
    fn rfc8441_5_extended_connect_accepted_with_200() {
        let req = h2_request()
            .header(
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            )
            .body(())
            .unwrap();
        let ws = h2(&req).unwrap();
        assert!(ws.is_extended_connect() && ws.is_websocket_upgrade());
        assert_eq!(ws.host(), "server.example.com");
        assert_eq!((ws.path(), ws.query()), ("/chat", Some("room=1")));
        assert_eq!(ws.origin(), Some("http://example.com"));
        assert_eq!(ws.subprotocols(), ["chat", "superchat"]);
        assert_eq!(ws.key(), "");
        let deflate = DeflateConfig::default();
        let accept = Accept::new().subprotocol("chat").header("x-a", "1");
        let (resp, negotiated) = accept_http_response(&ws, &accept, Some(&deflate)).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), ::http::Version::HTTP_2);
        let h = resp.headers();
        for absent in ["upgrade", "connection", "sec-websocket-accept"] {
            assert!(h.get(absent).is_none(), "{absent} in {h:?}");
        }
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h["x-a"], "1");
        assert!(h["sec-websocket-extensions"]
            .to_str()
            .unwrap()
            .starts_with("permessage-deflate"));
        // The same negotiation as the same offer over HTTP/1.1.
        let h1 = rfc_request()
            .header(
                "Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits",
            )
            .body(())
            .unwrap();
        let h1 = Request::from_http(&h1, &Config::default()).unwrap();
        let (_, n1) = accept_http_response(&h1, &accept, Some(&deflate)).unwrap();
        assert_eq!(negotiated, n1);
        // No HTTP/1.1 bytes answer an HTTP/2 request.
        assert!(matches!(
            accept_response(&ws, &accept, None),
            Err(SendError::InvalidAccept(_))
        ));
    }

    #[test]
    fn rfc8441_refusals_and_their_statuses() {
        let status = |r: Result<Request, HandshakeError>| {
            let err = r.unwrap_err();
            let resp = error_h2_response(&err);
            assert!(resp.headers().get("connection").is_none());
            (err, resp.status().as_u16())
        };
        let with = |name: &'static str, value: &'static str| {
            let mut req = h2_request().body(()).unwrap();
            req.headers_mut().insert(name, value.parse().unwrap());
            req
        };
        // The version: missing or another is 426, naming 13.
        let mut none = h2_request().body(()).unwrap();
        none.headers_mut().remove("sec-websocket-version");
        assert_eq!(
            status(h2(&none)),
            (HandshakeError::UnsupportedVersion(String::new()), 426)
        );
        let (err, code) = status(h2(&with("sec-websocket-version", "8")));
        assert_eq!(
            (err, code),
            (HandshakeError::UnsupportedVersion("8".into()), 426)
        );
        assert_eq!(
            error_h2_response(&HandshakeError::UnsupportedVersion("8".into())).headers()
                ["sec-websocket-version"],
            "13"
        );
        // The :protocol: missing (a tunnel) or another.
        let req = h2_request().body(()).unwrap();
        for (p, seen) in [(None, ""), (Some("webtransport"), "webtransport")] {
            let r = Request::from_h2_connect(&req, p, &Config::default());
            assert_eq!(
                status(r),
                (HandshakeError::ConnectProtocol(seen.into()), 400)
            );
        }
        assert!(Request::from_h2_connect(&req, Some("WebSocket"), &Config::default()).is_ok());
        // The method and the version.
        let mut get = h2_request().body(()).unwrap();
        *get.method_mut() = ::http::Method::GET;
        assert_eq!(
            status(h2(&get)),
            (HandshakeError::ConnectMethod("GET".into()), 405)
        );
        assert_eq!(
            error_h2_response(&HandshakeError::ConnectMethod("GET".into())).headers()["allow"],
            "CONNECT"
        );
        let mut h11 = h2_request().body(()).unwrap();
        *h11.version_mut() = ::http::Version::HTTP_11;
        assert_eq!(status(h2(&h11)), (HandshakeError::HttpVersion, 400));
        // The HTTP/1.1 handshake's own fields, and a body.
        for (name, canonical) in [
            ("sec-websocket-key", "Sec-WebSocket-Key"),
            ("upgrade", "Upgrade"),
            ("connection", "Connection"),
        ] {
            assert_eq!(
                status(h2(&with(name, "x"))),
                (HandshakeError::Http2Field(canonical), 400)
            );
        }
        assert_eq!(
            status(h2(&with("content-length", "5"))),
            (HandshakeError::Body("Content-Length"), 400)
        );
        assert!(h2(&with("content-length", "0")).is_ok());
        // The authority: a Host naming another, none at all, a bad one.
        assert_eq!(
            status(h2(&with("host", "other.example"))),
            (HandshakeError::InvalidHost("other.example".into()), 400)
        );
        assert!(h2(&with("host", "SERVER.example.com")).is_ok());
        let mut relative = h2_request().body(()).unwrap();
        *relative.uri_mut() = "/chat".parse().unwrap();
        assert_eq!(status(h2(&relative)), (HandshakeError::MissingHost, 400));
        let mut req = relative.clone();
        req.headers_mut().insert("host", "h:1".parse().unwrap());
        assert_eq!(h2(&req).unwrap().host(), "h:1");
        // A :path that is not origin-form (the http crate's URI cannot
        // carry one, another server's parser might).
        for bad in ["*", "chat", "/a#b"] {
            let mut fields = Headers::new();
            fields.push("sec-websocket-version", b"13");
            let r = validate_extended_connect(
                "CONNECT",
                true,
                Some("websocket"),
                Some("h"),
                bad,
                fields,
            );
            assert_eq!(status(r), (HandshakeError::RequestTarget(bad.into()), 400));
        }
        // The limits.
        let few = Config {
            max_headers: 2,
            ..Config::default()
        };
        let req = h2_request().body(()).unwrap();
        assert_eq!(
            status(Request::from_h2_connect(&req, Some("websocket"), &few)),
            (HandshakeError::TooManyHeaders { limit: 2 }, 431)
        );
    }

    #[test]
    fn rfc8441_client_request_and_answer() {
        let cfg = Config {
            deflate: Some(DeflateConfig::default()),
            ..Config::default()
        };
        let client = ClientRequest::new("server.example.com:8443", "/chat?room=1")
            .origin("https://example.com")
            .subprotocol("chat")
            .subprotocol("superchat")
            .header("Authorization", "Bearer t");
        let (req, handshake) = client.to_h2_connect(true, &cfg).unwrap();
        assert_eq!(req.method(), ::http::Method::CONNECT);
        assert_eq!(req.version(), ::http::Version::HTTP_2);
        assert_eq!(req.uri(), "https://server.example.com:8443/chat?room=1");
        let h = req.headers();
        assert_eq!(h["sec-websocket-version"], "13");
        assert_eq!(h["origin"], "https://example.com");
        assert_eq!(h["sec-websocket-protocol"], "chat, superchat");
        assert_eq!(h["authorization"], "Bearer t");
        let offer = cfg.deflate.as_ref().unwrap().offer_header();
        assert_eq!(h["sec-websocket-extensions"], offer.as_str());
        for absent in ["sec-websocket-key", "upgrade", "connection", "host"] {
            assert!(h.get(absent).is_none(), "{absent}");
        }
        let (plain, _) = ClientRequest::new("h", "/")
            .to_h2_connect(false, &Config::default())
            .unwrap();
        assert_eq!(plain.uri(), "http://h/");

        // Our server answers it; both ends agree.
        let ws = Request::from_h2_connect(&req, Some("websocket"), &cfg).unwrap();
        let accept = Accept::new().subprotocol("superchat");
        let (resp, server_side) = accept_http_response(&ws, &accept, cfg.deflate.as_ref()).unwrap();
        let client_side = handshake.check(&resp).unwrap();
        assert_eq!(client_side, server_side);
        assert!(client_side.deflate.is_some());

        // Refusals, by the HTTP/1.1 client's rules.
        let answer = |status: u16, fields: &[(&str, &str)]| {
            let mut b = ::http::Response::builder().status(status);
            for (n, v) in fields {
                b = b.header(*n, *v);
            }
            handshake.check(&b.body(()).unwrap())
        };
        assert!(answer(204, &[]).is_ok());
        match answer(426, &[("sec-websocket-version", "13")]) {
            Err(HandshakeError::Status(r)) => {
                assert_eq!(r.status, 426);
                assert_eq!(r.headers.get("sec-websocket-version"), Some("13"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answer(200, &[("sec-websocket-protocol", "mqtt")]),
            Err(HandshakeError::Subprotocol("mqtt".into()))
        );
        assert_eq!(
            answer(200, &[("sec-websocket-protocol", "chat, superchat")]),
            Err(HandshakeError::Subprotocol("chat, superchat".into()))
        );
        assert!(matches!(
            answer(200, &[("sec-websocket-extensions", "x-other")]),
            Err(HandshakeError::Extension(_))
        ));
        assert!(matches!(
            answer(
                200,
                &[(
                    "sec-websocket-extensions",
                    "permessage-deflate, permessage-deflate"
                )]
            ),
            Err(HandshakeError::Extension(_))
        ));
        // Without an offer, an answer with compression is refused.
        let (_, bare) = ClientRequest::new("h", "/")
            .to_h2_connect(true, &Config::default())
            .unwrap();
        let resp = ::http::Response::builder()
            .header("sec-websocket-extensions", "permessage-deflate")
            .body(())
            .unwrap();
        assert!(matches!(
            bare.check(&resp),
            Err(HandshakeError::Extension(_))
        ));
        // Fields an HTTP/2 request may not carry.
        for field in ["Connection", "Upgrade", "Host", "Sec-WebSocket-Key"] {
            let err = ClientRequest::new("h", "/")
                .header(field, "x")
                .to_h2_connect(true, &Config::default())
                .unwrap_err();
            assert!(
                matches!(err, HandshakeError::InvalidRequest(_)),
                "{field}: {err}"
            );
        }
    }
}
