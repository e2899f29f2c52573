//! The opening handshake from and to the `http` crate's types (feature
//! `http`): for a request an HTTP server (hyper, axum) has parsed already,
//! and for a client request written as an `http::Request`.
//!
//! Nothing here is a second copy of a rule: a server request goes through
//! the byte path's own validation (`validate_head`), and responses are
//! built from the same answers as [`accept_response`](super::accept_response)
//! and [`error_response`](super::error_response) write as bytes.

use bytes::Bytes;

use super::server::{accept_answer, error_answer, reject_answer, validate_head, Answer};
use super::{check_no_body, Accept, ClientRequest, Headers, Negotiated, Request, WsUrl};
use crate::config::Config;
use crate::deflate::DeflateConfig;
use crate::error::{HandshakeError, SendError};

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

fn from_head(
    method: &::http::Method,
    version: ::http::Version,
    uri: &::http::Uri,
    fields: &::http::HeaderMap,
    config: &Config,
) -> Result<Request, HandshakeError> {
    if fields.len() > config.max_headers {
        return Err(HandshakeError::TooManyHeaders {
            limit: config.max_headers,
        });
    }
    let target = uri.to_string();
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
pub fn accept_http_response(
    request: &Request,
    accept: &Accept,
    deflate: Option<&DeflateConfig>,
) -> Result<(::http::Response<()>, Negotiated), SendError> {
    let (answer, negotiated) = accept_answer(request, accept, deflate)?;
    Ok((to_http(answer)?.map(|_| ()), negotiated))
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
    to_http(error_answer(err)).expect("error answers are valid HTTP")
}

/// The answer of [`reject_response`](crate::reject_response) as an
/// `http::Response`: status (200–599, not 101), extra headers, body, and
/// `Connection: close`.
pub fn reject_http_response(
    status: u16,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Result<::http::Response<Bytes>, SendError> {
    to_http(reject_answer(status, headers, body.into())?)
}

fn to_http(answer: Answer) -> Result<::http::Response<Bytes>, SendError> {
    let invalid = |e: ::http::Error| SendError::InvalidAccept(e.to_string());
    let mut builder = ::http::Response::builder().status(answer.status);
    for (n, v) in &answer.headers {
        builder = builder.header(n.as_str(), v.as_str());
    }
    if answer.status != 101 {
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
}
