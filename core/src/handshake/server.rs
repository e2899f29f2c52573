//! Server side of the opening handshake (RFC 6455 §4.2).

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use super::{
    accept_key, at_most_once, check_line_endings, check_no_body, is_field_value, is_token,
    parsed_to_end, HeadBuffer, Headers, Negotiated,
};
use crate::config::Config;
use crate::deflate::DeflateConfig;
use crate::error::{HandshakeError, SendError};
use crate::extensions::{parse_extensions, ExtensionOffer};

/// A validated opening request, for the application to inspect before it
/// accepts or rejects.
///
/// With [`Config::answer_plain_http`] set it may also be a plain HTTP/1.1
/// `GET` that asks for no WebSocket at all (a browser loading a page, a
/// health check): [`Request::is_websocket_upgrade`] tells which. Such a
/// request can only be answered with an HTTP response
/// ([`reject_response`], an `accept_with` callback's `Reject`);
/// [`accept_response`] refuses it with [`SendError::NotAnUpgrade`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    target: String,
    headers: Headers,
    key: String,
    subprotocols: Vec<String>,
    extensions: Vec<ExtensionOffer>,
    upgrade: bool,
    /// An HTTP/2 extended CONNECT (RFC 8441), answered with a 200.
    extended_connect: bool,
}

impl Request {
    /// The request target in origin-form: path and query. An absolute-form
    /// target (`http://host/chat?x`, accepted only when its authority is the
    /// `Host` header) is given without its scheme and authority (`/chat?x`).
    pub fn uri(&self) -> &str {
        &self.target
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// All header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The `Host` header.
    pub fn host(&self) -> &str {
        self.headers.get("host").unwrap_or("")
    }

    /// The `Origin` header, if any (browsers always send it).
    pub fn origin(&self) -> Option<&str> {
        self.headers.get("origin")
    }

    /// The subprotocols offered, in the client's order of preference.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// The extensions offered, in order. Malformed offers are left out: the
    /// server declines what it cannot parse (RFC 6455 §9.1).
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// The `Sec-WebSocket-Key` (empty for a plain HTTP request and for an
    /// HTTP/2 extended CONNECT, which has none).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the request came over HTTP/2 as an extended CONNECT (RFC
    /// 8441, the `http` feature's `Request::from_h2_connect`): its answer
    /// is a `200` with no `Sec-WebSocket-Accept`, built by
    /// `accept_http_response` only (there are no HTTP/1.1 bytes to write),
    /// and the stream it opened is the WebSocket's transport.
    pub fn is_extended_connect(&self) -> bool {
        self.extended_connect
    }

    /// Whether this is a WebSocket opening request (RFC 6455 §4.2.1), which
    /// [`accept_response`] can answer with `101 Switching Protocols`.
    ///
    /// Always `true` unless the handshake was made with
    /// [`Config::answer_plain_http`]: then `false` for a well-formed HTTP/1.1
    /// `GET` that carries neither an `Upgrade` field listing `websocket` nor
    /// any `Sec-WebSocket-*` field. Such a request passed every other check
    /// of [`ServerHandshake`] (no body, one valid `Host`, origin-form
    /// target, CRLF line ends, no folding); it has no key, subprotocols or
    /// extensions, and is to be answered with an HTTP response, never a 101.
    ///
    /// ```
    /// use wsmachine::{accept_response, reject_response, Accept, Config, SendError, ServerHandshake};
    /// let cfg = Config { answer_plain_http: true, ..Config::default() };
    /// let req = ServerHandshake::new(&cfg)
    ///     .receive(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    ///     .unwrap()
    ///     .unwrap();
    /// assert!(!req.is_websocket_upgrade());
    /// assert_eq!(accept_response(&req, &Accept::new(), None), Err(SendError::NotAnUpgrade));
    /// let page = reject_response(200, &[("Content-Type".into(), "text/plain".into())], b"hi").unwrap();
    /// assert!(page.starts_with(b"HTTP/1.1 200 OK\r\n"));
    /// ```
    pub fn is_websocket_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The subprotocol to accept: the first one the client offered (its
    /// order of preference, RFC 6455 §4.1) that `supported` lists.
    ///
    /// `Ok(None)` when the client offered none, or when `supported` is
    /// empty (a server that speaks no subprotocol takes no part in the
    /// choice): RFC 6455 §4.2.2 lets the server answer without one. A
    /// client that offered subprotocols, none of them in a non-empty
    /// `supported`, is refused with
    /// [`HandshakeError::NoCommonSubprotocol`] (400 from [`error_response`]):
    /// the RFC would also let the server accept without a subprotocol, but
    /// then both ends would talk on, each assuming a protocol the other does
    /// not speak; a refusal says why at once.
    ///
    /// ```
    /// use wsmachine::{Config, HandshakeError, ServerHandshake};
    /// let req = ServerHandshake::new(&Config::default()).receive(b"GET / HTTP/1.1\r\nHost: h\r\n\
    ///     Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    ///     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v2.chat, v1.chat\r\n\r\n").unwrap().unwrap();
    /// assert_eq!(req.select_subprotocol(&["v1.chat", "v2.chat"]), Ok(Some("v2.chat")));
    /// assert_eq!(
    ///     req.select_subprotocol(&["mqtt"]),
    ///     Err(HandshakeError::NoCommonSubprotocol("v2.chat, v1.chat".into()))
    /// );
    /// assert_eq!(req.select_subprotocol::<&str>(&[]), Ok(None));
    /// ```
    pub fn select_subprotocol<S: AsRef<str>>(
        &self,
        supported: &[S],
    ) -> Result<Option<&str>, HandshakeError> {
        if self.subprotocols.is_empty() || supported.is_empty() {
            return Ok(None);
        }
        self.subprotocols
            .iter()
            .find(|offered| supported.iter().any(|s| s.as_ref() == offered.as_str()))
            .map(|p| Some(p.as_str()))
            .ok_or_else(|| HandshakeError::NoCommonSubprotocol(self.subprotocols.join(", ")))
    }
}

/// How the application accepts a request.
///
/// ```
/// use wsmachine::Accept;
/// let a = Accept::new().subprotocol("chat").header("Set-Cookie", "s=1").compression(false);
/// # let _ = a;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    subprotocol: Option<String>,
    headers: Vec<(String, String)>,
    compression: bool,
}

impl Default for Accept {
    fn default() -> Self {
        Accept {
            subprotocol: None,
            headers: Vec::new(),
            compression: true,
        }
    }
}

impl Accept {
    /// Accepts with no subprotocol, no extra headers, and compression if the
    /// client offered it and the server's [`Config::deflate`] allows it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses one of the offered subprotocols.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocol = Some(protocol.into());
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Whether to accept permessage-deflate when offered (default `true`).
    pub fn compression(mut self, enabled: bool) -> Self {
        self.compression = enabled;
        self
    }
}

/// Server handshake: parses and validates the client's request.
///
/// ```
/// use wsmachine::{accept_response, Accept, Config, ServerHandshake};
/// let mut hs = ServerHandshake::new(&Config::default());
/// let req = hs.receive(b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap().unwrap();
/// assert_eq!(req.path(), "/chat");
/// let (response, negotiated) = accept_response(&req, &Accept::new(), None).unwrap();
/// assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// assert_eq!(negotiated.deflate, None);
/// ```
///
/// # What is refused, and the answer [`error_response`] gives
///
/// A handshake is one HTTP/1.1 head and nothing else: whatever follows it is
/// WebSocket frames. So anything that would let a proxy in front of us read
/// the request differently (a body, two copies of a header, a folded line,
/// a target naming another host) is refused rather than interpreted.
///
/// | request | error | status |
/// |---|---|---|
/// | not parseable as HTTP/1.x | [`HandshakeError::Http`] | 400 |
/// | a header line starting with a space or tab (obs-fold, RFC 9112 §5.2) | [`HandshakeError::ObsoleteLineFolding`] | 400 |
/// | whitespace between a header name and its colon (RFC 9112 §5.1) | [`HandshakeError::WhitespaceBeforeColon`] | 400 |
/// | a line ended by a bare LF (RFC 9112 §2.2 lets a reader accept it; readers that do not would see another head) | [`HandshakeError::BareLineFeed`] | 400 |
/// | head over `max_handshake_size` bytes / over `max_headers` fields | [`HandshakeError::HeadTooLarge`] / [`HandshakeError::TooManyHeaders`] | 431 |
/// | method other than GET | [`HandshakeError::Method`] | 405, with `Allow: GET` |
/// | HTTP/1.0 | [`HandshakeError::HttpVersion`] | 400 |
/// | any `Transfer-Encoding`; a `Content-Length` other than 0 | [`HandshakeError::Body`] | 400 |
/// | several `Content-Length` fields / one that is not a number | [`HandshakeError::DuplicateHeader`] / [`HandshakeError::ContentLength`] | 400 |
/// | no `Host`, or an empty one / one that is not `host[:port]` | [`HandshakeError::MissingHost`] / [`HandshakeError::InvalidHost`] | 400 |
/// | several `Host`, `Upgrade`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version` fields | [`HandshakeError::DuplicateHeader`] | 400 |
/// | a target that is not origin-form (`/path?query`, no `#fragment`), unless absolute-form (`http`, `https`, `ws` or `wss`) with the `Host` header's authority, compared case-insensitively; `*` and `host:port` | [`HandshakeError::RequestTarget`] | 400 |
/// | no `websocket` token in `Upgrade` / no `upgrade` token in `Connection` | [`HandshakeError::Upgrade`] / [`HandshakeError::Connection`] | 400 |
/// | `Sec-WebSocket-Version` not 13 | [`HandshakeError::UnsupportedVersion`] | 426, with `Sec-WebSocket-Version: 13` |
/// | `Sec-WebSocket-Key` missing or not 16 bytes in base64 | [`HandshakeError::Key`] | 400 |
///
/// Every error response carries `Connection: close`: after a refused
/// handshake the connection is over, and the bytes after the head are
/// dropped, never handed on as frames.
///
/// # Plain HTTP requests
///
/// By default a `GET` that does not ask for a WebSocket is refused like any
/// other bad handshake (400, [`HandshakeError::Upgrade`]). With
/// [`Config::answer_plain_http`], a `GET` with neither an `Upgrade` field
/// listing `websocket` nor any `Sec-WebSocket-*` field is returned as a
/// [`Request`] whose [`Request::is_websocket_upgrade`] is `false`, for the
/// application to answer with an HTTP response of its own (a page, a
/// redirect, a 404). Every rule of the table above up to the `Upgrade` row
/// still applies to it: it is one head, with no body, and the connection
/// is closed after the answer. A request that asks for a WebSocket but gets
/// it wrong (`Upgrade: websocket` without `Connection: upgrade`, a bad key,
/// version 8) is still refused as the table says.
#[derive(Debug)]
pub struct ServerHandshake {
    head: HeadBuffer,
    max_headers: usize,
    /// [`Config::answer_plain_http`].
    plain_http: bool,
    /// The first error; every later call returns it again.
    failed: Option<HandshakeError>,
}

impl ServerHandshake {
    /// A handshake with the limits of `config`.
    pub fn new(config: &Config) -> Self {
        ServerHandshake {
            head: HeadBuffer::new(config.max_handshake_size),
            max_headers: config.max_headers,
            plain_http: config.answer_plain_http,
            failed: None,
        }
    }

    /// Feeds request bytes. `Ok(None)` means more are needed.
    ///
    /// After a [`Request`] is returned, [`ServerHandshake::take_rest`] gives
    /// the bytes that followed it. On error, [`error_response`] gives the HTTP
    /// answer to send (see the type's documentation for which), after which
    /// the transport is to be closed. The error is final: later calls return
    /// it again, and [`ServerHandshake::take_rest`] is empty, so bytes that
    /// followed a refused head cannot reach a frame parser.
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.parse(data);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.head.buf = BytesMut::new();
        }
        result
    }

    fn parse(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        let Some(end) = self.head.push(data)? else {
            return Ok(None);
        };
        let mut headers = vec![httparse::EMPTY_HEADER; self.max_headers];
        let mut parsed = httparse::Request::new(&mut headers);
        let head = &self.head.buf[..end];
        check_line_endings(head)?;
        parsed_to_end(parsed.parse(head), end, self.max_headers, head)?;
        let request = validate_head(
            parsed.method.unwrap_or(""),
            parsed.version == Some(1),
            parsed.path.unwrap_or(""),
            Headers::from_httparse(parsed.headers),
            self.plain_http,
        )?;
        let _ = self.head.buf.split_to(end);
        Ok(Some(request))
    }

    /// The bytes that followed the request head: the client's first frames.
    /// Empty once [`ServerHandshake::receive`] has failed.
    pub fn take_rest(&mut self) -> Bytes {
        self.head.buf.split().freeze()
    }
}

/// Every rule of the table on [`ServerHandshake`] past the parsing of the
/// head: the one validation behind both the byte path and a request an
/// HTTP server parsed (the `http` feature's [`Request::from_http_parts`]).
/// `http11`: the request is HTTP/1.1 (not 1.0, not HTTP/2).
pub(super) fn validate_head(
    method: &str,
    http11: bool,
    target: &str,
    headers: Headers,
    plain_http: bool,
) -> Result<Request, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::Method(method.to_owned()));
    }
    if !http11 {
        return Err(HandshakeError::HttpVersion);
    }
    validate_request(target, headers, plain_http)
}

fn validate_request(
    target: &str,
    headers: Headers,
    plain_http: bool,
) -> Result<Request, HandshakeError> {
    // First: a body is the smuggling case, whatever else is wrong.
    check_no_body(&headers)?;
    let host = match at_most_once(&headers, "host", "Host")? {
        Some(h) if !h.trim().is_empty() => h.trim(),
        _ => return Err(HandshakeError::MissingHost),
    };
    if !is_host(host) {
        return Err(HandshakeError::InvalidHost(host.to_owned()));
    }
    let target = origin_form(target, host)?;
    at_most_once(&headers, "upgrade", "Upgrade")?;
    if plain_http && !asks_for_websocket(&headers) {
        return Ok(Request {
            target,
            headers,
            key: String::new(),
            subprotocols: Vec::new(),
            extensions: Vec::new(),
            upgrade: false,
            extended_connect: false,
        });
    }
    if !headers.has_token("upgrade", "websocket") {
        return Err(HandshakeError::Upgrade);
    }
    if !headers.has_token("connection", "upgrade") {
        return Err(HandshakeError::Connection);
    }
    check_version(&headers)?;
    let key = at_most_once(&headers, "sec-websocket-key", "Sec-WebSocket-Key")?
        .ok_or(HandshakeError::Key)?
        .trim()
        .to_owned();
    match base64::engine::general_purpose::STANDARD.decode(&key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::Key),
    }
    Ok(websocket_request(target, headers, key, false))
}

/// `Sec-WebSocket-Version: 13`, the one version (RFC 6455 §4.2.1 item 6;
/// RFC 8441 §5 keeps it): else 426.
fn check_version(headers: &Headers) -> Result<(), HandshakeError> {
    // Two version fields are a malformed request (400), not a version we
    // could name in a 426.
    let version =
        at_most_once(headers, "sec-websocket-version", "Sec-WebSocket-Version")?.unwrap_or("");
    if version.trim() != "13" {
        return Err(HandshakeError::UnsupportedVersion(version.to_owned()));
    }
    Ok(())
}

/// A validated WebSocket request with its offers, over either HTTP version.
fn websocket_request(
    target: String,
    headers: Headers,
    key: String,
    extended_connect: bool,
) -> Request {
    let subprotocols = headers.list("sec-websocket-protocol");
    // RFC 6455 §9.1: an offer the server cannot parse is declined, not fatal.
    let extensions = headers
        .get_all("sec-websocket-extensions")
        .filter_map(|v| parse_extensions(v).ok())
        .flatten()
        .collect();
    Request {
        target,
        headers,
        key,
        subprotocols,
        extensions,
        upgrade: true,
        extended_connect,
    }
}

/// The rules for an HTTP/2 extended CONNECT (RFC 8441 §4 and §5), the
/// HTTP/2 counterpart of [`validate_head`]: method CONNECT, HTTP/2,
/// `:protocol` `websocket`, an authority (`:authority`, or a `Host` naming
/// the same), an origin-form `:path`, no body, `Sec-WebSocket-Version: 13`
/// (else 426), and none of the HTTP/1.1 handshake's own fields
/// (`Sec-WebSocket-Key`, `Upgrade`, `Connection`). Subprotocol and
/// extension offers are read as over HTTP/1.1.
///
/// The `:authority` is given to the application as a `host` field when
/// the request has none, so that [`Request::host`] means the same over
/// both versions.
#[cfg(feature = "http")]
pub(super) fn validate_extended_connect(
    method: &str,
    http2: bool,
    protocol: Option<&str>,
    authority: Option<&str>,
    target: &str,
    mut headers: Headers,
) -> Result<Request, HandshakeError> {
    if method != "CONNECT" {
        return Err(HandshakeError::ConnectMethod(method.to_owned()));
    }
    if !http2 {
        return Err(HandshakeError::HttpVersion);
    }
    // The same comparison as the `Upgrade: websocket` token's on HTTP/1.1.
    match protocol {
        Some(p) if p.eq_ignore_ascii_case("websocket") => {}
        p => return Err(HandshakeError::ConnectProtocol(p.unwrap_or("").to_owned())),
    }
    check_no_body(&headers)?;
    for (name, canonical) in [
        ("sec-websocket-key", "Sec-WebSocket-Key"),
        ("upgrade", "Upgrade"),
        ("connection", "Connection"),
    ] {
        if headers.get(name).is_some() {
            return Err(HandshakeError::Http2Field(canonical));
        }
    }
    let host = at_most_once(&headers, "host", "Host")?.map(str::trim);
    let authority = match (authority, host) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => {
            // RFC 9113 §8.3.1: a Host that differs from :authority is a
            // request that two readers would route differently.
            return Err(HandshakeError::InvalidHost(h.to_owned()));
        }
        (Some(a), _) => a.to_owned(),
        (None, Some(h)) if !h.is_empty() => h.to_owned(),
        (None, _) => return Err(HandshakeError::MissingHost),
    };
    if !is_host(&authority) {
        return Err(HandshakeError::InvalidHost(authority));
    }
    let target = origin_form(target, &authority)?;
    check_version(&headers)?;
    if host.is_none() {
        headers.push("host", authority.as_bytes());
    }
    Ok(websocket_request(target, headers, String::new(), true))
}

/// Whether a request asks for a WebSocket, however badly: an `Upgrade`
/// field listing `websocket`, or any `Sec-WebSocket-*` field. Only a
/// request that does not is a plain HTTP request; one that does is held to
/// every rule of RFC 6455 §4.2.1. (A `Connection: upgrade` with another
/// protocol, `h2c` say, is a plain request: a server may ignore `Upgrade`,
/// RFC 9110 §7.8.)
fn asks_for_websocket(headers: &Headers) -> bool {
    headers.has_token("upgrade", "websocket")
        || headers.iter().any(|(name, _)| {
            name.len() >= 14 && name.as_bytes()[..14].eq_ignore_ascii_case(b"sec-websocket-")
        })
}

/// `uri-host [":" port]` (RFC 9112 §3.2 and RFC 3986 §3.2.2): a
/// registered name or IPv4 address, or an IP literal in brackets. What else
/// may come in a Host (a space, `/`, `@`) is where two parsers would split
/// the name differently.
fn is_host(host: &str) -> bool {
    let (name_ok, port) = match host.strip_prefix('[') {
        Some(literal) => {
            let Some((ip, after)) = literal.split_once(']') else {
                return false;
            };
            // IPv6, IPvFuture, and a zone identifier (RFC 6874) after "%25".
            let ok = !ip.is_empty()
                && ip
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":.%-_~".contains(&b));
            (ok, after)
        }
        None => {
            let (name, port) = host.split_at(host.find(':').unwrap_or(host.len()));
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
            (ok, port)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    name_ok && port_ok
}

/// The request target as origin-form (RFC 9112 §3.2): `/path?query` as is;
/// absolute-form only when its authority is the `Host` header (§3.2.2 has
/// the server use the target's authority over `Host`: requiring both to be
/// the same keeps a proxy that reads the other one from routing us elsewhere);
/// asterisk-form and authority-form, which no GET may use, refused. A
/// fragment is refused: it is never sent on the wire (RFC 6455 §3).
fn origin_form(target: &str, host: &str) -> Result<String, HandshakeError> {
    let refuse = || Err(HandshakeError::RequestTarget(target.to_owned()));
    if target.contains('#') {
        return refuse();
    }
    if target.starts_with('/') {
        return Ok(target.to_owned());
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return refuse();
    };
    if !["http", "https", "ws", "wss"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return refuse();
    }
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    // `host` passed `is_host`: an authority equal to it carries no userinfo
    // (RFC 9110 §4.2.4: a recipient should treat that as an error).
    if !authority.eq_ignore_ascii_case(host) {
        return refuse();
    }
    Ok(match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    })
}

/// An HTTP answer to a handshake, before it is written: as bytes
/// ([`Answer::to_bytes`]) by the byte path, as an `http::Response` by the
/// `http` feature. Both are built from this one value, so the two agree on
/// every status and field. Its fields are valid (token names, no line
/// breaks in values): whatever made one was checked.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    /// The fields, without `Content-Length` and `Connection: close`, which
    /// every non-101 answer gets when written.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Bytes,
}

impl Answer {
    fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(192 + self.body.len());
        let reason = match self.status {
            101 => "Switching Protocols",
            s => reason_phrase(s),
        };
        out.put_slice(format!("HTTP/1.1 {} {reason}\r\n", self.status).as_bytes());
        for (n, v) in &self.headers {
            for part in [n.as_bytes(), b": ", v.as_bytes(), b"\r\n"] {
                out.put_slice(part);
            }
        }
        if self.status != 101 {
            out.put_slice(
                format!(
                    "Content-Length: {}\r\nConnection: close\r\n",
                    self.body.len()
                )
                .as_bytes(),
            );
        }
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
        out.freeze()
    }
}

/// The `101 Switching Protocols` response for `request`, and what it negotiated.
///
/// `deflate` is the server's compression policy (`None`: never compress).
/// Fails with [`SendError::NotAnUpgrade`] when `request` is a plain HTTP
/// request (see [`Request::is_websocket_upgrade`]), and with
/// [`SendError::InvalidAccept`] when the chosen subprotocol was not offered
/// or a header is not valid.
pub fn accept_response(
    request: &Request,
    accept: &Accept,
    deflate: Option<&DeflateConfig>,
) -> Result<(Bytes, Negotiated), SendError> {
    if request.extended_connect {
        return Err(SendError::InvalidAccept(
            "an HTTP/2 extended CONNECT is answered by accept_http_response".into(),
        ));
    }
    accept_answer(request, accept, deflate).map(|(a, n)| (a.to_bytes(), n))
}

/// The 101 of [`accept_response`], before it is written.
pub(super) fn accept_answer(
    request: &Request,
    accept: &Accept,
    deflate: Option<&DeflateConfig>,
) -> Result<(Answer, Negotiated), SendError> {
    if !request.upgrade {
        return Err(SendError::NotAnUpgrade);
    }
    if let Some(p) = &accept.subprotocol {
        if !request.subprotocols.iter().any(|o| o == p) {
            return Err(SendError::InvalidAccept(format!(
                "subprotocol {p:?} was not offered"
            )));
        }
    }
    // RFC 8441 §5: over HTTP/2 the answer is a 2xx with neither the
    // upgrade fields nor Sec-WebSocket-Accept; the rest is the same.
    let (status, mut headers) = if request.extended_connect {
        (200, Vec::new())
    } else {
        let switch = vec![
            ("Upgrade".to_owned(), "websocket".to_owned()),
            ("Connection".to_owned(), "Upgrade".to_owned()),
            ("Sec-WebSocket-Accept".to_owned(), accept_key(&request.key)),
        ];
        (101, switch)
    };
    if let Some(p) = &accept.subprotocol {
        push_header(&mut headers, "Sec-WebSocket-Protocol", p)?;
    }
    let mut negotiated = Negotiated {
        subprotocol: accept.subprotocol.clone(),
        deflate: None,
    };
    if let (true, Some(cfg)) = (accept.compression, deflate) {
        if let Some((params, header)) = cfg.negotiate(&request.extensions) {
            push_header(&mut headers, "Sec-WebSocket-Extensions", &header)?;
            negotiated.deflate = Some(params);
        }
    }
    for (n, v) in &accept.headers {
        push_header(&mut headers, n, v)?;
    }
    let answer = Answer {
        status,
        headers,
        body: Bytes::new(),
    };
    Ok((answer, negotiated))
}

/// A response that rejects the request, or answers a plain HTTP request
/// without upgrading: status (200–599, not 101), extra headers and a body
/// (with `Content-Length` and `Connection: close`).
pub fn reject_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Bytes, SendError> {
    reject_answer(status, headers, Bytes::copy_from_slice(body)).map(|a| a.to_bytes())
}

/// The answer of [`reject_response`], before it is written.
pub(super) fn reject_answer(
    status: u16,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<Answer, SendError> {
    if !(200..=599).contains(&status) || status == 101 {
        return Err(SendError::InvalidAccept(format!(
            "status {status} cannot reject a handshake"
        )));
    }
    let mut checked = Vec::with_capacity(headers.len());
    for (n, v) in headers {
        push_header(&mut checked, n, v)?;
    }
    Ok(Answer {
        status,
        headers: checked,
        body,
    })
}

/// The HTTP answer to a request that failed validation.
pub fn error_response(err: &HandshakeError) -> Bytes {
    error_answer(err).to_bytes()
}

/// The answer of [`error_response`], before it is written: the one place
/// that maps a refusal to its status.
pub(super) fn error_answer(err: &HandshakeError) -> Answer {
    let (status, headers) = match err {
        HandshakeError::UnsupportedVersion(_) => (426, vec![("Sec-WebSocket-Version", "13")]),
        HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => {
            (431, vec![])
        }
        HandshakeError::Method(_) => (405, vec![("Allow", "GET")]),
        HandshakeError::ConnectMethod(_) => (405, vec![("Allow", "CONNECT")]),
        _ => (400, vec![]),
    };
    Answer {
        status,
        headers: headers
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        body: Bytes::from(format!("{err}\n")),
    }
}

fn push_header(
    headers: &mut Vec<(String, String)>,
    name: &str,
    value: &str,
) -> Result<(), SendError> {
    if !is_token(name) || !is_field_value(value) {
        return Err(SendError::InvalidAccept(format!("invalid header {name:?}")));
    }
    headers.push((name.to_owned(), value.to_owned()));
    Ok(())
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse(req: &str) -> Result<Option<Request>, HandshakeError> {
        ServerHandshake::new(&Config::default()).receive(req.as_bytes())
    }

    #[test]
    fn rfc6455_1_3_request_and_response() {
        let req = parse(GOOD).unwrap().unwrap();
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), Some("room=1"));
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.subprotocols(), ["chat", "superchat"]);
        assert_eq!(req.host(), "server.example.com");
        let (resp, n) = accept_response(&req, &Accept::new().subprotocol("chat"), None).unwrap();
        assert_eq!(
            std::str::from_utf8(&resp).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        assert_eq!(n.subprotocol.as_deref(), Some("chat"));
    }

    #[test]
    fn request_in_every_split_keeps_trailing_bytes() {
        let mut wire = GOOD.as_bytes().to_vec();
        wire.extend_from_slice(b"\x81\x80abcd");
        for cut in 0..wire.len() {
            let mut hs = ServerHandshake::new(&Config::default());
            let req = match hs.receive(&wire[..cut]).unwrap() {
                Some(r) => {
                    // Bytes after a complete head are kept, even in the same call.
                    let mut rest = BytesMut::from(&hs.take_rest()[..]);
                    rest.extend_from_slice(&wire[cut..]);
                    assert_eq!(&rest[..], b"\x81\x80abcd", "cut {cut}");
                    r
                }
                None => {
                    let r = hs.receive(&wire[cut..]).unwrap().expect("complete");
                    assert_eq!(&hs.take_rest()[..], b"\x81\x80abcd", "cut {cut}");
                    r
                }
            };
            assert_eq!(req.uri(), "/chat?room=1");
        }
    }

    #[test]
    fn each_rejection() {
        let swap = |from: &str, to: &str| GOOD.replacen(from, to, 1);
        let cases = [
            (swap("GET", "POST"), HandshakeError::Method("POST".into())),
            (swap("HTTP/1.1", "HTTP/1.0"), HandshakeError::HttpVersion),
            (
                swap("Host: server.example.com\r\n", ""),
                HandshakeError::MissingHost,
            ),
            (
                swap("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::Upgrade,
            ),
            (
                swap("Connection: Upgrade", "Connection: close"),
                HandshakeError::Connection,
            ),
            (
                swap("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                HandshakeError::Key,
            ),
            (
                swap("dGhlIHNhbXBsZSBub25jZQ==", "!!notbase64!!"),
                HandshakeError::Key,
            ),
            (
                swap("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::Key,
            ),
            (
                swap("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion("8".into()),
            ),
            (
                swap("Sec-WebSocket-Version: 13\r\n", ""),
                HandshakeError::UnsupportedVersion("".into()),
            ),
        ];
        for (req, err) in cases {
            assert_eq!(parse(&req), Err(err), "{req}");
        }
    }

    #[test]
    fn tokens_are_case_insensitive_and_listed() {
        let req = GOOD
            .replacen("Upgrade: websocket", "upgrade: WebSocket", 1)
            .replacen("Connection: Upgrade", "connection: keep-alive, upgrade", 1);
        assert!(parse(&req).unwrap().is_some());
    }

    #[test]
    fn header_count_and_size_limits() {
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = GOOD.replacen("\r\n\r\n", &format!("\r\n{many}\r\n"), 1);
        assert_eq!(
            parse(&req),
            Err(HandshakeError::TooManyHeaders { limit: 64 })
        );
        let cfg = Config {
            max_handshake_size: 100,
            ..Config::default()
        };
        assert_eq!(
            ServerHandshake::new(&cfg).receive(GOOD.as_bytes()),
            Err(HandshakeError::HeadTooLarge { limit: 100 })
        );
    }

    #[test]
    fn error_responses() {
        let r = error_response(&HandshakeError::UnsupportedVersion("8".into()));
        let text = std::str::from_utf8(&r).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
        let r = error_response(&HandshakeError::Key);
        assert!(r.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        let r = error_response(&HandshakeError::HeadTooLarge { limit: 1 });
        assert!(r.starts_with(b"HTTP/1.1 431 "));
        let r = error_response(&HandshakeError::Method("POST".into()));
        assert!(r.starts_with(b"HTTP/1.1 405 "));
        assert_eq!(status_of(&r), 405);
    }

    /// A masked text frame, as a client sends it (RFC 6455 §5.3).
    fn masked_text(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        assert!(payload.len() <= 125);
        let mut f = vec![0x81, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        f
    }

    fn status_of(resp: &[u8]) -> u16 {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut r = httparse::Response::new(&mut headers);
        assert!(matches!(r.parse(resp), Ok(httparse::Status::Complete(_))));
        assert!(
            r.headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("connection") && h.value == b"close"),
            "error response without Connection: close"
        );
        r.code.expect("status")
    }

    #[test]
    // A test needs some instant to start from; the core itself reads no clock.
    #[allow(clippy::disallowed_methods)]
    fn smuggled_frame_in_a_chunked_body_gets_400_and_goes_nowhere() {
        let frame = masked_text(b"smuggled", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(frame.len(), 14);
        let mut wire = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nTransfer-Encoding: chunked\r\nContent-Length: 14\r\n\r\n"
            .to_vec();
        wire.extend_from_slice(&frame);

        let mut hs = ServerHandshake::new(&Config::default());
        let err = hs.receive(&wire).unwrap_err();
        assert_eq!(err, HandshakeError::Body("Transfer-Encoding"));
        assert_eq!(status_of(&error_response(&err)), 400);
        assert!(hs.take_rest().is_empty(), "the body was handed on");
        // The refusal is final: more frames do not revive the handshake.
        assert_eq!(hs.receive(&frame), Err(err.clone()));
        assert!(hs.take_rest().is_empty());

        // Through a connection: a 400, an error, no request, no message.
        let now = std::time::Instant::now();
        let mut conn = crate::Connection::server(Config::default(), now);
        conn.receive(now, &wire);
        let mut sent = Vec::new();
        while let Some(b) = conn.poll_transmit() {
            sent.extend_from_slice(&b);
        }
        assert_eq!(status_of(&sent), 400);
        let mut events = Vec::new();
        while let Some(e) = conn.poll_event() {
            events.push(e);
        }
        assert_eq!(
            events,
            [crate::Event::Error(crate::ConnectionError::Handshake(err))]
        );
        assert!(conn.should_close_transport());
    }

    #[test]
    fn body_headers() {
        let with = |extra: &str| GOOD.replacen("\r\n\r\n", &format!("\r\n{extra}\r\n\r\n"), 1);
        let cases = [
            (
                "Transfer-Encoding: chunked",
                HandshakeError::Body("Transfer-Encoding"),
            ),
            // Any coding: even "identity" is a framing a proxy may act on.
            (
                "Transfer-Encoding: identity",
                HandshakeError::Body("Transfer-Encoding"),
            ),
            ("Content-Length: 14", HandshakeError::Body("Content-Length")),
            (
                "Content-Length: 0001",
                HandshakeError::Body("Content-Length"),
            ),
            (
                "Content-Length: 0\r\nContent-Length: 0",
                HandshakeError::DuplicateHeader("Content-Length"),
            ),
            (
                "Content-Length: 0, 0",
                HandshakeError::ContentLength("0, 0".into()),
            ),
            (
                "Content-Length: +0",
                HandshakeError::ContentLength("+0".into()),
            ),
            (
                "Content-Length: -1",
                HandshakeError::ContentLength("-1".into()),
            ),
            (
                "Content-Length: 0x0",
                HandshakeError::ContentLength("0x0".into()),
            ),
        ];
        for (extra, err) in cases {
            let req = with(extra);
            assert_eq!(parse(&req), Err(err.clone()), "{extra}");
            assert_eq!(status_of(&error_response(&err)), 400, "{extra}");
        }
        // A zero length declares no body: harmless, and some clients send it.
        for zero in ["Content-Length: 0", "content-length: 00"] {
            let req = parse(&with(zero)).unwrap().expect("accepted");
            assert_eq!(req.path(), "/chat");
        }
    }

    #[test]
    fn duplicate_headers_are_400() {
        let twice = |line: &str| GOOD.replacen(line, &format!("{line}{line}"), 1);
        let cases = [
            ("Host: server.example.com\r\n", "Host"),
            ("Upgrade: websocket\r\n", "Upgrade"),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key",
            ),
            ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version"),
        ];
        for (line, name) in cases {
            let err = parse(&twice(line)).unwrap_err();
            assert_eq!(err, HandshakeError::DuplicateHeader(name), "{line}");
            assert_eq!(status_of(&error_response(&err)), 400, "{line}");
        }
        // A second Host that differs is the case that matters for routing.
        let req = GOOD.replacen(
            "Host: server.example.com\r\n",
            "Host: server.example.com\r\nHost: internal.example\r\n",
            1,
        );
        assert_eq!(parse(&req), Err(HandshakeError::DuplicateHeader("Host")));
        // Fields that are lists by definition may repeat (RFC 6455 §11.3.2, §11.3.4).
        let req = GOOD.replacen(
            "Sec-WebSocket-Protocol: chat, superchat\r\n",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: superchat\r\n",
            1,
        );
        assert_eq!(
            parse(&req).unwrap().unwrap().subprotocols(),
            ["chat", "superchat"]
        );
    }

    #[test]
    fn host_must_be_host_and_port() {
        let host = |h: &str| parse(&GOOD.replacen("server.example.com", h, 1));
        for bad in [
            "a b",
            "a/b",
            "user@server.example.com",
            "server.example.com:80:80",
            "server.example.com:http",
            "[::1",
            "[]:80",
            ":80",
            "a\"b",
        ] {
            let err = host(bad).unwrap_err();
            assert_eq!(err, HandshakeError::InvalidHost(bad.into()), "{bad}");
            assert_eq!(status_of(&error_response(&err)), 400, "{bad}");
        }
        for good in [
            "server.example.com:8080",
            "127.0.0.1",
            "[::1]:9001",
            "[fe80::1%25eth0]",
            "xn--bcher-kva.example",
            "under_score.example:",
        ] {
            assert_eq!(host(good).unwrap().expect("accepted").host(), good);
        }
    }

    #[test]
    fn request_target_forms() {
        let target = |t: &str| parse(&GOOD.replacen("/chat?room=1", t, 1));
        for bad in [
            "*",
            "server.example.com:80",
            "server.example.com",
            "/chat#frag",
            "http://other.example/chat",
            "http://server.example.com:8080/chat",
            "http://user@server.example.com/chat",
            "ftp://server.example.com/chat",
            "http:///chat",
            "chat",
        ] {
            let err = target(bad).unwrap_err();
            assert_eq!(err, HandshakeError::RequestTarget(bad.into()), "{bad}");
            assert_eq!(status_of(&error_response(&err)), 400, "{bad}");
        }
        // Absolute-form naming the Host is origin-form with a prefix (RFC 9112 §3.2.2).
        for (abs, uri) in [
            ("http://server.example.com/chat?room=1", "/chat?room=1"),
            ("WSS://Server.Example.com/chat", "/chat"),
            ("http://server.example.com", "/"),
            ("https://server.example.com?q", "/?q"),
        ] {
            let req = target(abs).unwrap().expect("accepted");
            assert_eq!(req.uri(), uri, "{abs}");
        }
    }

    #[test]
    fn folded_lines_and_space_before_colon_are_400() {
        // httparse refuses both in its default configuration; we name them.
        let cases = [
            (
                GOOD.replacen(
                    "Origin: http://example.com\r\n",
                    "Origin: http://\r\n example.com\r\n",
                    1,
                ),
                HandshakeError::ObsoleteLineFolding,
            ),
            (
                GOOD.replacen(
                    "Upgrade: websocket\r\n",
                    "Upgrade: h2c,\r\n\twebsocket\r\n",
                    1,
                ),
                HandshakeError::ObsoleteLineFolding,
            ),
            (
                GOOD.replacen("Host: server", "Host : server", 1),
                HandshakeError::WhitespaceBeforeColon,
            ),
            (
                GOOD.replacen("Host: server", "Host\t: server", 1),
                HandshakeError::WhitespaceBeforeColon,
            ),
        ];
        for (req, err) in cases {
            assert_eq!(parse(&req), Err(err.clone()), "{req}");
            assert_eq!(status_of(&error_response(&err)), 400);
        }
        // Another fault in a name stays a plain HTTP error.
        let req = GOOD.replacen("Origin:", "Ori\"gin :", 1);
        assert!(matches!(parse(&req), Err(HandshakeError::Http(_))));
    }

    #[test]
    fn bare_line_feeds_are_400_so_the_head_ends_where_every_reader_says() {
        // Found by fuzzing: httparse ends a head at `\n\r\n`, the head
        // buffer only at `\r\n\r\n`; the bytes between were dropped as
        // neither head nor frames. A bare LF anywhere is now refused.
        let smuggle = GOOD.replacen(
            "Sec-WebSocket-Version: 13\r\n\r\n",
            "Sec-WebSocket-Version: 13\n\r\nX-Hidden: 1\r\n\r\n",
            1,
        );
        let all_lf = GOOD.replace("\r\n", "\n") + "\r\n\r\n";
        let one_lf = GOOD.replacen(
            "Host: server.example.com\r\n",
            "Host: server.example.com\n",
            1,
        );
        for req in [smuggle, all_lf, one_lf] {
            let mut hs = ServerHandshake::new(&Config::default());
            assert_eq!(
                hs.receive(req.as_bytes()),
                Err(HandshakeError::BareLineFeed),
                "{req:?}"
            );
            assert!(hs.take_rest().is_empty());
            assert_eq!(
                status_of(&error_response(&HandshakeError::BareLineFeed)),
                400
            );
        }
    }

    const PLAIN: &str = "GET /?x=1 HTTP/1.1\r\nHost: server.example.com\r\n\
        User-Agent: Mozilla/5.0\r\nAccept: text/html\r\nConnection: keep-alive\r\n\r\n";

    fn plain_config() -> Config {
        Config {
            answer_plain_http: true,
            ..Config::default()
        }
    }

    fn parse_plain(req: &str) -> Result<Option<Request>, HandshakeError> {
        ServerHandshake::new(&plain_config()).receive(req.as_bytes())
    }

    #[test]
    fn plain_get_is_refused_by_default() {
        let err = parse(PLAIN).unwrap_err();
        assert_eq!(err, HandshakeError::Upgrade);
        assert_eq!(status_of(&error_response(&err)), 400);
    }

    #[test]
    fn plain_get_reaches_the_application_when_asked_for() {
        let mut wire = PLAIN.as_bytes().to_vec();
        wire.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        for cut in 0..wire.len() {
            let mut hs = ServerHandshake::new(&plain_config());
            let req = match hs.receive(&wire[..cut]).unwrap() {
                Some(r) => r,
                None => hs.receive(&wire[cut..]).unwrap().expect("complete"),
            };
            assert!(!req.is_websocket_upgrade(), "cut {cut}");
            assert_eq!((req.path(), req.query()), ("/", Some("x=1")));
            assert_eq!(req.host(), "server.example.com");
            assert_eq!(req.header("accept"), Some("text/html"));
            assert_eq!((req.key(), req.subprotocols().len()), ("", 0));
            assert!(req.extensions().is_empty());
        }
        // An h2c upgrade may be ignored (RFC 9110 §7.8): plain too.
        let h2c = PLAIN.replacen(
            "Connection: keep-alive",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
            1,
        );
        assert!(!parse_plain(&h2c).unwrap().unwrap().is_websocket_upgrade());
        // A WebSocket request is still one, with the option on.
        let ws = parse_plain(GOOD).unwrap().unwrap();
        assert!(ws.is_websocket_upgrade());
        assert_eq!(ws, parse(GOOD).unwrap().unwrap());
    }

    #[test]
    fn a_plain_request_cannot_be_accepted_only_answered() {
        let req = parse_plain(PLAIN).unwrap().unwrap();
        for accept in [Accept::new(), Accept::new().compression(false)] {
            assert_eq!(
                accept_response(&req, &accept, Some(&DeflateConfig::default())),
                Err(SendError::NotAnUpgrade)
            );
        }
        let page = reject_response(
            200,
            &[("Content-Type".into(), "text/html".into())],
            b"<p>hi</p>",
        )
        .unwrap();
        assert_eq!(
            &page[..],
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9\r\nConnection: close\r\n\r\n<p>hi</p>"[..]
        );
    }

    #[test]
    // A test needs some instant to start from; the core itself reads no clock.
    #[allow(clippy::disallowed_methods)]
    fn a_plain_request_through_a_connection_gets_the_answer_and_never_a_101() {
        let now = std::time::Instant::now();
        let mut conn = crate::Connection::server(plain_config(), now);
        conn.receive(now, PLAIN.as_bytes());
        let req = match conn.poll_event() {
            Some(crate::Event::Request(r)) => r,
            other => panic!("{other:?}"),
        };
        assert!(!req.is_websocket_upgrade());
        assert_eq!(
            conn.accept(now, Accept::new()),
            Err(SendError::NotAnUpgrade)
        );
        assert!(conn.poll_transmit().is_none(), "accepting sent something");
        conn.reject(200, &[], b"page").unwrap();
        let mut sent = Vec::new();
        while let Some(b) = conn.poll_transmit() {
            sent.extend_from_slice(&b);
        }
        assert!(sent.starts_with(b"HTTP/1.1 200 OK\r\n"), "{sent:?}");
        assert!(sent.ends_with(b"\r\n\r\npage"));
        assert!(conn.should_close_transport());
    }

    #[test]
    fn plain_requests_keep_every_framing_rule() {
        let with = |extra: &str| PLAIN.replacen("\r\n\r\n", &format!("\r\n{extra}\r\n\r\n"), 1);
        let cases = [
            (
                with("Transfer-Encoding: chunked"),
                HandshakeError::Body("Transfer-Encoding"),
            ),
            (
                with("Content-Length: 5"),
                HandshakeError::Body("Content-Length"),
            ),
            (
                with("Content-Length: 0\r\nContent-Length: 0"),
                HandshakeError::DuplicateHeader("Content-Length"),
            ),
            (
                with("Host: internal.example"),
                HandshakeError::DuplicateHeader("Host"),
            ),
            (
                with("Upgrade: h2c\r\nUpgrade: h2c"),
                HandshakeError::DuplicateHeader("Upgrade"),
            ),
            (
                PLAIN.replacen("Host: server.example.com\r\n", "", 1),
                HandshakeError::MissingHost,
            ),
            (
                PLAIN.replacen("server.example.com", "a/b", 1),
                HandshakeError::InvalidHost("a/b".into()),
            ),
            (
                PLAIN.replacen("/?x=1", "http://other.example/", 1),
                HandshakeError::RequestTarget("http://other.example/".into()),
            ),
            (
                PLAIN.replacen("/?x=1", "*", 1),
                HandshakeError::RequestTarget("*".into()),
            ),
            (
                PLAIN.replacen("Accept: text", "Accept : text", 1),
                HandshakeError::WhitespaceBeforeColon,
            ),
            (
                PLAIN.replacen("Accept: text/html\r\n", "Accept: text/html,\r\n */*\r\n", 1),
                HandshakeError::ObsoleteLineFolding,
            ),
            (
                PLAIN.replacen("Accept: text/html\r\n", "Accept: text/html\n", 1),
                HandshakeError::BareLineFeed,
            ),
            (
                PLAIN.replacen("GET", "POST", 1),
                HandshakeError::Method("POST".into()),
            ),
            (
                PLAIN.replacen("HTTP/1.1", "HTTP/1.0", 1),
                HandshakeError::HttpVersion,
            ),
        ];
        for (req, err) in cases {
            let mut hs = ServerHandshake::new(&plain_config());
            assert_eq!(hs.receive(req.as_bytes()), Err(err.clone()), "{req:?}");
            assert!(hs.take_rest().is_empty());
            assert_eq!(parse(&req), Err(err), "{req:?}");
        }
        let big = with(&format!("X-Big: {}", "a".repeat(20 << 10)));
        assert!(matches!(
            parse_plain(&big),
            Err(HandshakeError::HeadTooLarge { .. })
        ));
    }

    #[test]
    fn a_broken_websocket_request_is_not_plain() {
        // Anything that asks for a WebSocket is held to RFC 6455 §4.2.1,
        // with the option on as off.
        let swap = |from: &str, to: &str| GOOD.replacen(from, to, 1);
        let drop = |line: &str| GOOD.replacen(line, "", 1);
        let cases = [
            (drop("Connection: Upgrade\r\n"), HandshakeError::Connection),
            (drop("Upgrade: websocket\r\n"), HandshakeError::Upgrade),
            (
                swap("Upgrade: websocket", "Upgrade: h2c"),
                HandshakeError::Upgrade,
            ),
            (
                drop("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
                HandshakeError::Key,
            ),
            (
                swap("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion("8".into()),
            ),
            (
                PLAIN.replacen("\r\n\r\n", "\r\nsec-websocket-protocol: chat\r\n\r\n", 1),
                HandshakeError::Upgrade,
            ),
            (
                PLAIN.replacen("\r\n\r\n", "\r\nUpgrade: websocket\r\n\r\n", 1),
                HandshakeError::Connection,
            ),
        ];
        for (req, err) in cases {
            assert_eq!(parse_plain(&req), Err(err.clone()), "{req}");
            assert_eq!(parse(&req), Err(err), "{req}");
        }
    }

    #[test]
    fn accept_and_reject_validation() {
        let req = parse(GOOD).unwrap().unwrap();
        assert!(accept_response(&req, &Accept::new().subprotocol("nope"), None).is_err());
        assert!(accept_response(&req, &Accept::new().header("Bad Name", "v"), None).is_err());
        assert!(
            accept_response(&req, &Accept::new().header("X", "a\r\nInjected: 1"), None).is_err()
        );
        let r = reject_response(403, &[("X-Reason".into(), "banned".into())], b"no").unwrap();
        assert_eq!(
            &r[..],
            b"HTTP/1.1 403 Forbidden\r\nX-Reason: banned\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
        );
        assert!(reject_response(101, &[], b"").is_err());
    }
}
