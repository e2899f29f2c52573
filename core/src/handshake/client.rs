//! Client side of the opening handshake (RFC 6455 §4.1).

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    accept_key, at_most_once, check_line_endings, check_no_body, encode_key, parsed_to_end,
    HeadBuffer, Headers, Negotiated, Response,
};
use crate::config::Config;
use crate::deflate::DeflateConfig;
use crate::error::{ExtensionError, HandshakeError, UrlError};
use crate::extensions::parse_extensions;

/// A parsed `ws://` or `wss://` URL.
///
/// ```
/// let u = wsmachine::WsUrl::parse("wss://example.com/chat?room=1").unwrap();
/// assert_eq!((u.secure, u.host.as_str(), u.port, u.path.as_str()), (true, "example.com", 443, "/chat?room=1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`
    pub secure: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port, defaulting to 80 or 443.
    pub port: u16,
    /// Resource name: path and query, at least `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses a `ws://` or `wss://` URL (`http://`/`https://` are accepted as
    /// aliases). Fragments are not allowed (RFC 6455 §3).
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        let (secure, rest) = if let Some(r) = strip_prefix_ci(url, "ws://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(url, "wss://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(url, "http://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(url, "https://") {
            (true, r)
        } else {
            return Err(UrlError::Scheme(url.to_owned()));
        };
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        if rest.bytes().any(|b| b <= b' ' || b == 0x7F) {
            // A space or line break would end up in the request line or Host
            // header: refuse rather than let a URL inject headers.
            return Err(UrlError::InvalidCharacter);
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        // A request target is ASCII (RFC 9112 §3.2): percent-encode the rest,
        // as browsers do.
        let path = percent_encode_non_ascii(&path);
        let default_port = if secure { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or(UrlError::Host(authority.to_owned()))?;
            let host = &v6[..end];
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| UrlError::Port(p.to_owned()))?,
                None if after.is_empty() => default_port,
                None => return Err(UrlError::Host(authority.to_owned())),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| UrlError::Port(p.to_owned()))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(UrlError::Host(String::new()));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:".contains(&b))
        {
            return Err(UrlError::Host(host));
        }
        Ok(WsUrl {
            secure,
            host,
            port,
            path,
        })
    }

    /// The `Host` header value: the host, bracketed if IPv6, with the port
    /// unless it is the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.secure { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn percent_encode_non_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_value(what: &str, v: &str) -> Result<(), HandshakeError> {
    if !super::is_field_value(v) {
        return Err(HandshakeError::InvalidRequest(format!(
            "line break or NUL in {what}"
        )));
    }
    Ok(())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// The client's opening request: a builder.
///
/// ```
/// use wsmachine::ClientRequest;
/// let req = ClientRequest::new("example.com", "/chat?room=1")
///     .origin("https://example.com")
///     .subprotocol("chat.v2")
///     .header("Authorization", "Bearer t0ken");
/// assert_eq!(req.path(), "/chat?room=1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    host: String,
    path: String,
    origin: Option<String>,
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// A request for `path` (resource name with query) on `host` (the `Host` header value).
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> Self {
        ClientRequest {
            host: host.into(),
            path: path.into(),
            origin: None,
            subprotocols: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A request for a parsed URL.
    pub fn from_url(url: &WsUrl) -> Self {
        ClientRequest::new(url.host_header(), url.path.clone())
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offers a subprotocol (in order of preference).
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Adds a header (e.g. `Authorization`, `Cookie`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The resource name.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `Host` header value.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The offered subprotocols.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// Checks that the request can be written as valid HTTP: no spaces or
    /// control characters in the host or path, header names and
    /// subprotocols are tokens, no line breaks in header values. Whatever
    /// fails here would otherwise let a caller's input inject headers.
    ///
    /// ```
    /// use wsmachine::ClientRequest;
    /// assert!(ClientRequest::new("h", "/").header("X-A", "ok").validate().is_ok());
    /// assert!(ClientRequest::new("h", "/").header("X-A", "v\r\nX-Evil: 1").validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), HandshakeError> {
        let bad = |b: u8| b <= b' ' || b == 0x7F;
        if self.host.is_empty() || self.host.bytes().any(bad) {
            return Err(HandshakeError::InvalidRequest(format!(
                "host {:?}",
                self.host
            )));
        }
        if !self.path.starts_with('/') || self.path.bytes().any(|b| bad(b) || !b.is_ascii()) {
            return Err(HandshakeError::InvalidRequest(format!(
                "path {:?}",
                self.path
            )));
        }
        if let Some(o) = &self.origin {
            check_value("Origin", o)?;
        }
        if let Some(p) = self.subprotocols.iter().find(|p| !super::is_token(p)) {
            return Err(HandshakeError::InvalidRequest(format!(
                "subprotocol {p:?} is not a token"
            )));
        }
        for (n, v) in &self.headers {
            if !super::is_token(n) {
                return Err(HandshakeError::InvalidRequest(format!("header name {n:?}")));
            }
            check_value(n, v)?;
        }
        Ok(())
    }

    fn write(&self, key: &str, deflate: Option<&DeflateConfig>, out: &mut BytesMut) {
        let mut put = |s: &str| out.put_slice(s.as_bytes());
        put("GET ");
        put(&self.path);
        put(" HTTP/1.1\r\nHost: ");
        put(&self.host);
        put("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
        put(key);
        put("\r\n");
        for (n, v) in self.offer_fields(deflate) {
            put(n);
            put(": ");
            put(&v);
            put("\r\n");
        }
        put("\r\n");
    }

    /// The fields both HTTP versions send after their own (RFC 6455 §4.1;
    /// RFC 8441 §5 keeps them): the version, Origin, the subprotocols and
    /// the permessage-deflate offer, then the caller's headers.
    pub(super) fn offer_fields<'a>(
        &'a self,
        deflate: Option<&DeflateConfig>,
    ) -> Vec<(&'a str, std::borrow::Cow<'a, str>)> {
        let mut fields = vec![("Sec-WebSocket-Version", "13".into())];
        if let Some(o) = &self.origin {
            fields.push(("Origin", o.as_str().into()));
        }
        if !self.subprotocols.is_empty() {
            fields.push((
                "Sec-WebSocket-Protocol",
                self.subprotocols.join(", ").into(),
            ));
        }
        if let Some(d) = deflate {
            fields.push(("Sec-WebSocket-Extensions", d.offer_header().into()));
        }
        for (n, v) in &self.headers {
            fields.push((n.as_str(), v.as_str().into()));
        }
        fields
    }
}

/// Client handshake: writes the request and validates the response.
///
/// Besides the checks of RFC 6455 §4.1 (status 101, `Upgrade`,
/// `Connection`, `Sec-WebSocket-Accept`, the subprotocol and extensions
/// offered), a 101 is refused when it declares a body
/// ([`HandshakeError::Body`]: any `Transfer-Encoding`, a `Content-Length`
/// other than 0; a 101 has no content, RFC 9110 §15.2), when `Upgrade` or
/// `Sec-WebSocket-Accept` appears twice ([`HandshakeError::DuplicateHeader`]),
/// or when a header line is folded or has whitespace before its colon.
/// The bytes after the 101's head are always the server's first frames.
///
/// ```
/// use wsmachine::internals::ClientHandshake;
/// use wsmachine::{ClientRequest, Config};
/// let (mut hs, request) = ClientHandshake::new(ClientRequest::new("h", "/"), [0; 16], &Config::default());
/// assert!(request.starts_with(b"GET / HTTP/1.1\r\n"));
/// let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///               Sec-WebSocket-Accept: ICX+Yqv66kxgM0FcWaLWlFLwTAI=\r\n\r\n\x81\x02hi";
/// let (negotiated, response, rest) = hs.receive(reply).unwrap().unwrap();
/// assert_eq!(response.status, 101);
/// assert_eq!(negotiated.subprotocol, None);
/// assert_eq!(&rest[..], b"\x81\x02hi");
/// ```
#[derive(Debug)]
pub struct ClientHandshake {
    expected_accept: String,
    subprotocols: Vec<String>,
    deflate: Option<DeflateConfig>,
    head: HeadBuffer,
    max_headers: usize,
    /// A non-101 answer whose body is still arriving: (response, bytes wanted).
    pending: Option<(Response, usize)>,
    /// The request failed [`ClientRequest::validate`]: nothing was written.
    invalid: Option<HandshakeError>,
}

/// What [`ClientHandshake::receive`] returns once the response is complete:
/// the negotiation, the response itself and the bytes after it.
pub type ClientOutcome = (Negotiated, Response, Bytes);

impl ClientHandshake {
    /// Starts a handshake with a 16-byte nonce; returns it and the request bytes to send.
    ///
    /// A request that fails [`ClientRequest::validate`] is not written: the
    /// bytes are empty and [`ClientHandshake::receive`] returns the error
    /// (as does [`ClientHandshake::error`] at once).
    pub fn new(request: ClientRequest, key: [u8; 16], config: &Config) -> (Self, Bytes) {
        let key = encode_key(&key);
        let mut out = BytesMut::with_capacity(256);
        let invalid = request.validate().err();
        if invalid.is_none() {
            request.write(&key, config.deflate.as_ref(), &mut out);
        }
        (
            ClientHandshake {
                expected_accept: accept_key(&key),
                subprotocols: request.subprotocols,
                deflate: config.deflate.clone(),
                head: HeadBuffer::new(config.max_handshake_size),
                max_headers: config.max_headers,
                pending: None,
                invalid,
            },
            out.freeze(),
        )
    }

    /// Feeds response bytes. `Ok(None)` means more are needed. On success,
    /// returns the negotiation, the response, and the bytes that followed the
    /// head (the server's first frames).
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<ClientOutcome>, HandshakeError> {
        if let Some(e) = &self.invalid {
            return Err(e.clone());
        }
        if let Some((_, want)) = &self.pending {
            let want = *want;
            let (mut resp, _) = self.pending.take().expect("pending");
            let mut body = BytesMut::from(&resp.body[..]);
            let take = (want - body.len()).min(data.len());
            body.extend_from_slice(&data[..take]);
            resp.body = body.freeze();
            if resp.body.len() >= want {
                return Err(HandshakeError::Status(Box::new(resp)));
            }
            self.pending = Some((resp, want));
            return Ok(None);
        }
        let Some(end) = self.head.push(data)? else {
            return Ok(None);
        };
        let mut headers = vec![httparse::EMPTY_HEADER; self.max_headers];
        let mut parsed = httparse::Response::new(&mut headers);
        let buf = &self.head.buf;
        check_line_endings(&buf[..end])?;
        parsed_to_end(
            parsed.parse(&buf[..end]),
            end,
            self.max_headers,
            &buf[..end],
        )?;
        let status = parsed.code.unwrap_or(0);
        let response = Response {
            status,
            reason: parsed.reason.unwrap_or("").to_owned(),
            headers: Headers::from_httparse(parsed.headers),
            body: Bytes::new(),
        };
        let rest = Bytes::copy_from_slice(&buf[end..]);
        if status != 101 {
            return self.non_101(response, rest);
        }
        if parsed.version != Some(1) {
            return Err(HandshakeError::HttpVersion);
        }
        let negotiated = self.validate(&response)?;
        Ok(Some((negotiated, response, rest)))
    }

    /// Why the request was not written, if it failed validation.
    pub fn error(&self) -> Option<&HandshakeError> {
        self.invalid.as_ref()
    }

    /// Called when the transport ended during the handshake: a non-101 answer
    /// whose body was still arriving is reported with what came.
    pub fn receive_eof(&mut self) -> HandshakeError {
        match self.pending.take() {
            Some((resp, _)) => HandshakeError::Status(Box::new(resp)),
            None => HandshakeError::Http("connection closed during the handshake".into()),
        }
    }

    fn non_101(
        &mut self,
        mut response: Response,
        rest: Bytes,
    ) -> Result<Option<ClientOutcome>, HandshakeError> {
        let cap = self.head.max_size;
        let declared = response
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        // With a Content-Length, the body is exactly that long (capped);
        // without one, it is whatever came with the head (capped).
        let want = declared.map(|n| n.min(cap)).unwrap_or(0);
        let take = match declared {
            Some(_) => rest.len().min(want),
            None => rest.len().min(cap),
        };
        response.body = rest.slice(..take);
        if response.body.len() >= want {
            return Err(HandshakeError::Status(Box::new(response)));
        }
        self.pending = Some((response, want));
        Ok(None)
    }

    /// Checks a 101. The bytes after its head are always the server's first
    /// frames: a 101 has no content (RFC 9110 §15.2), so one that declares
    /// a body (`Transfer-Encoding`, a `Content-Length` other than 0) is
    /// refused rather than guessed at, as are two `Upgrade` or
    /// `Sec-WebSocket-Accept` fields (RFC 6455 §11.3.3: the accept value
    /// appears once).
    fn validate(&self, r: &Response) -> Result<Negotiated, HandshakeError> {
        check_no_body(&r.headers)?;
        at_most_once(&r.headers, "upgrade", "Upgrade")?;
        if !r.headers.has_token("upgrade", "websocket") {
            return Err(HandshakeError::Upgrade);
        }
        if !r.headers.has_token("connection", "upgrade") {
            return Err(HandshakeError::Connection);
        }
        match at_most_once(&r.headers, "sec-websocket-accept", "Sec-WebSocket-Accept")? {
            Some(a) if a.trim() == self.expected_accept => {}
            _ => return Err(HandshakeError::Accept),
        }
        negotiate_response(&r.headers, &self.subprotocols, self.deflate.as_ref())
    }
}

/// What an accepting answer agreed on, over either HTTP version: at most
/// one subprotocol, one the client offered; only extensions it offered
/// (permessage-deflate, once, with parameters its offer allows).
pub(super) fn negotiate_response(
    headers: &Headers,
    offered: &[String],
    deflate_offer: Option<&DeflateConfig>,
) -> Result<Negotiated, HandshakeError> {
    let protocols = headers.list("sec-websocket-protocol");
    let subprotocol = match protocols.as_slice() {
        [] => None,
        [p] if offered.iter().any(|o| o == p) => Some(p.clone()),
        [p] => return Err(HandshakeError::Subprotocol(p.clone())),
        _ => return Err(HandshakeError::Subprotocol(protocols.join(", "))),
    };
    let mut deflate = None;
    for value in headers.get_all("sec-websocket-extensions") {
        for ext in parse_extensions(value)? {
            match (
                deflate_offer,
                ext.name.eq_ignore_ascii_case("permessage-deflate"),
            ) {
                (Some(cfg), true) => {
                    if deflate.is_some() {
                        return Err(ExtensionError::DuplicateExtension(ext.name).into());
                    }
                    deflate = Some(cfg.check_response(&ext)?);
                }
                _ => return Err(ExtensionError::UnofferedExtension(ext.name).into()),
            }
        }
    }
    Ok(Negotiated {
        subprotocol,
        deflate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = *b"the sample nonce";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn hs(req: ClientRequest) -> (ClientHandshake, Bytes) {
        ClientHandshake::new(req, KEY, &Config::default())
    }

    fn ok_response(extra: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn request_bytes_rfc6455_4_1() {
        let (_, req) = hs(ClientRequest::new("server.example.com", "/chat?x=1")
            .origin("http://example.com")
            .subprotocol("chat")
            .subprotocol("superchat")
            .header("Authorization", "Bearer abc"));
        let text = std::str::from_utf8(&req).unwrap();
        assert_eq!(
            text,
            "GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\nAuthorization: Bearer abc\r\n\r\n"
        );
    }

    #[test]
    fn response_accepted_in_every_split_with_trailing_frames() {
        let mut wire = ok_response("");
        wire.extend_from_slice(b"\x81\x02hi");
        for cut in 0..wire.len() {
            let (mut h, _) = hs(ClientRequest::new("h", "/"));
            let first = h.receive(&wire[..cut]).unwrap();
            let (_, resp, rest) = match first {
                Some(done) => {
                    let mut rest = BytesMut::from(&done.2[..]);
                    rest.extend_from_slice(&wire[cut..]);
                    (done.0, done.1, rest.freeze())
                }
                None => h.receive(&wire[cut..]).unwrap().expect("complete"),
            };
            assert_eq!(resp.status, 101);
            assert_eq!(&rest[..], b"\x81\x02hi", "cut {cut}");
        }
    }

    #[test]
    fn validation_failures() {
        let cases: Vec<(String, HandshakeError)> = vec![
            (
                format!("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"),
                HandshakeError::Upgrade,
            ),
            (
                format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"),
                HandshakeError::Connection,
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n".into(),
                HandshakeError::Accept,
            ),
            (
                "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".into(),
                HandshakeError::Accept,
            ),
            (
                String::from_utf8(ok_response("Sec-WebSocket-Protocol: other\r\n")).unwrap(),
                HandshakeError::Subprotocol("other".into()),
            ),
            (
                String::from_utf8(ok_response("Sec-WebSocket-Extensions: permessage-deflate\r\n")).unwrap(),
                HandshakeError::Extension(ExtensionError::UnofferedExtension("permessage-deflate".into())),
            ),
            (
                format!("HTTP/1.0 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"),
                HandshakeError::HttpVersion,
            ),
        ];
        for (resp, err) in cases {
            let (mut h, _) = hs(ClientRequest::new("h", "/"));
            assert_eq!(h.receive(resp.as_bytes()), Err(err), "{resp}");
        }
        let (mut h, _) = hs(ClientRequest::new("h", "/"));
        assert!(matches!(
            h.receive(b"garbage\r\n\r\n"),
            Err(HandshakeError::Http(_))
        ));
    }

    #[test]
    fn a_101_that_declares_a_body_is_refused() {
        let frame = b"\x81\x02hi";
        for (extra, err) in [
            (
                "Transfer-Encoding: chunked\r\n",
                HandshakeError::Body("Transfer-Encoding"),
            ),
            (
                "Content-Length: 4\r\n",
                HandshakeError::Body("Content-Length"),
            ),
            (
                "Content-Length: 0\r\nContent-Length: 0\r\n",
                HandshakeError::DuplicateHeader("Content-Length"),
            ),
            (
                "Content-Length: zero\r\n",
                HandshakeError::ContentLength("zero".into()),
            ),
        ] {
            let mut wire = ok_response(extra);
            wire.extend_from_slice(frame);
            let (mut h, _) = hs(ClientRequest::new("h", "/"));
            assert_eq!(h.receive(&wire), Err(err), "{extra}");
        }
        // Content-Length: 0 claims nothing: what follows is frames.
        let mut wire = ok_response("Content-Length: 0\r\n");
        wire.extend_from_slice(frame);
        let (mut h, _) = hs(ClientRequest::new("h", "/"));
        let (_, _, rest) = h.receive(&wire).unwrap().expect("complete");
        assert_eq!(&rest[..], frame);
    }

    #[test]
    fn duplicate_upgrade_or_accept_in_a_101_is_refused() {
        let accept_twice = ok_response(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"));
        let upgrade_twice = ok_response("Upgrade: websocket\r\n");
        for (wire, name) in [
            (accept_twice, "Sec-WebSocket-Accept"),
            (upgrade_twice, "Upgrade"),
        ] {
            let (mut h, _) = hs(ClientRequest::new("h", "/"));
            assert_eq!(h.receive(&wire), Err(HandshakeError::DuplicateHeader(name)));
        }
    }

    #[test]
    fn folded_response_lines_are_refused_by_name() {
        for (extra, err) in [
            ("X-A: 1\r\n  2\r\n", HandshakeError::ObsoleteLineFolding),
            ("X-A : 1\r\n", HandshakeError::WhitespaceBeforeColon),
            ("X-A: 1\nX-B: 2\r\n", HandshakeError::BareLineFeed),
        ] {
            let (mut h, _) = hs(ClientRequest::new("h", "/"));
            assert_eq!(h.receive(&ok_response(extra)), Err(err), "{extra}");
        }
    }

    #[test]
    fn offered_subprotocol_is_returned() {
        let (mut h, _) = hs(ClientRequest::new("h", "/")
            .subprotocol("a")
            .subprotocol("b"));
        let (n, _, _) = h
            .receive(&ok_response("Sec-WebSocket-Protocol: b\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!(n.subprotocol.as_deref(), Some("b"));
    }

    #[test]
    fn non_101_reports_status_headers_and_bounded_body() {
        let wire = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nX-Why: token\r\n\r\nforbidden";
        for cut in 0..wire.len() {
            let (mut h, _) = hs(ClientRequest::new("h", "/"));
            let r = match h.receive(&wire[..cut]) {
                Err(e) => Err(e),
                Ok(Some(_)) => panic!("not a 101"),
                Ok(None) => h.receive(&wire[cut..]).map(|_| ()),
            };
            match r {
                Err(HandshakeError::Status(resp)) => {
                    assert_eq!(resp.status, 403);
                    assert_eq!(resp.headers.get("x-why"), Some("token"));
                    assert_eq!(&resp.body[..], b"forbidden", "cut {cut}");
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        // A huge declared body is capped at the handshake size limit.
        let cfg = Config {
            max_handshake_size: 64,
            ..Config::default()
        };
        let (mut h, _) = ClientHandshake::new(ClientRequest::new("h", "/"), KEY, &cfg);
        let mut wire = b"HTTP/1.1 500 X\r\nContent-Length: 99999999\r\n\r\n".to_vec();
        wire.extend(std::iter::repeat(b'z').take(1000));
        match h.receive(&wire) {
            Err(HandshakeError::Status(resp)) => assert_eq!(resp.body.len(), 64),
            other => panic!("{other:?}"),
        }
        // Bytes past the declared length are not part of the body.
        let (mut h, _) = hs(ClientRequest::new("h", "/"));
        match h.receive(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden\x81\x02hi") {
            Err(HandshakeError::Status(resp)) => assert_eq!(&resp.body[..], b"forbidden"),
            other => panic!("{other:?}"),
        }
        // A body cut short by EOF is reported with what arrived.
        let (mut h, _) = hs(ClientRequest::new("h", "/"));
        assert_eq!(
            h.receive(b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nnope"),
            Ok(None)
        );
        match h.receive_eof() {
            HandshakeError::Status(resp) => assert_eq!(&resp.body[..], b"nope"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn injection_attempts_are_refused_before_anything_is_written() {
        assert!(
            WsUrl::parse("ws://example.com/chat HTTP/1.1\r\nX-Injected: yes\r\nFoo: /").is_err()
        );
        assert!(WsUrl::parse("ws://evil\r\nX-H: 1/").is_err());
        assert!(WsUrl::parse("ws://a b/").is_err());
        let u = WsUrl::parse("ws://h/päth?q=ü").unwrap();
        assert_eq!(u.path, "/p%C3%A4th?q=%C3%BC");
        for req in [
            ClientRequest::new("h", "/").header("X-A", "v\r\nX-Evil: 1"),
            ClientRequest::new("h", "/").header("Bad Name", "v"),
            ClientRequest::new("h\r\nX: 1", "/"),
            ClientRequest::new("h", "/ HTTP/1.1\r\nX: 1"),
            ClientRequest::new("h", "/").origin("o\n"),
            ClientRequest::new("h", "/").subprotocol("a b"),
        ] {
            let (mut hs, bytes) = ClientHandshake::new(req, KEY, &Config::default());
            assert!(bytes.is_empty());
            assert!(matches!(
                hs.error(),
                Some(HandshakeError::InvalidRequest(_))
            ));
            assert!(matches!(
                hs.receive(b"x"),
                Err(HandshakeError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn url_parsing() {
        let u = WsUrl::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9001, "/")
        );
        assert_eq!(u.host_header(), "127.0.0.1:9001");
        let u = WsUrl::parse("ws://[::1]:80/a?b").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 80, "/a?b")
        );
        assert_eq!(u.host_header(), "[::1]");
        let u = WsUrl::parse("WSS://h?q=1").unwrap();
        assert_eq!((u.secure, u.port, u.path.as_str()), (true, 443, "/?q=1"));
        for bad in [
            "ftp://x",
            "ws://",
            "ws://h:99999/",
            "ws://h/#frag",
            "ws://u@h/",
            "ws://[::1/",
        ] {
            assert!(WsUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
