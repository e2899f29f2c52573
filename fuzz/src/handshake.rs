//! `server_handshake` and `client_handshake`: the opening-handshake parsers
//! on arbitrary bytes, fed whole and in pieces (the result must not depend
//! on the chunking), with the answers they lead to checked for validity.
//!
//! Input: one configuration byte (limits, chunk size, deflate policy), then
//! the HTTP bytes.

use bytes::Bytes;
use wsmachine::internals::ClientHandshake;
use wsmachine::{
    accept_key, accept_response, error_response, parse_extensions, reject_response, Accept,
    ClientRequest, Config, Connection, DeflateConfig, Event, HandshakeError, Headers, Request,
    SendError, ServerHandshake,
};

use crate::alloc::Peak;
use crate::check::{epoch, Checked, Limits};

fn config(cfg: u8) -> Config {
    let deflate = (cfg & 4 != 0).then(|| DeflateConfig {
        server_no_context_takeover: cfg & 8 != 0,
        request_server_max_window_bits: cfg & 8 != 0,
        client_no_context_takeover: cfg & 16 != 0,
        ..DeflateConfig::default()
    });
    Config {
        max_handshake_size: if cfg & 1 != 0 { 256 } else { 4096 },
        max_headers: if cfg & 2 != 0 { 8 } else { 64 },
        max_frame_size: 4096,
        max_message_size: 16 << 10,
        deflate,
        ..Config::default()
    }
}

fn chunk(cfg: u8) -> usize {
    usize::from(cfg >> 5) * 3 + 1
}

/// A parsed HTTP response of ours: status and headers.
fn parse_response(bytes: &[u8]) -> (u16, Vec<(String, String)>, usize) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let n = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("our response does not parse: {other:?}"),
    };
    let hs = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8(h.value.to_vec()).expect("ASCII header"),
            )
        })
        .collect();
    (r.code.expect("status"), hs, n)
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

type ServerResult = Result<Option<(Request, Bytes)>, HandshakeError>;

fn feed_server(config: &Config, data: &[u8], chunk: usize) -> ServerResult {
    let mut hs = ServerHandshake::new(config);
    let mut pieces = data.chunks(chunk.max(1));
    for piece in pieces.by_ref() {
        match hs.receive(piece) {
            Ok(Some(req)) => {
                let mut rest = hs.take_rest().to_vec();
                pieces.for_each(|p| rest.extend_from_slice(p));
                return Ok(Some((req, rest.into())));
            }
            Ok(None) => {}
            Err(e) => {
                // A refused head hands nothing on, now or later.
                assert!(hs.take_rest().is_empty(), "bytes handed on after {e}");
                assert_eq!(hs.receive(b"\x81\x80abcd").as_ref(), Err(&e));
                assert!(hs.take_rest().is_empty(), "bytes handed on after {e}");
                return Err(e);
            }
        }
    }
    Ok(None)
}

/// The request head as it came: up to the first blank line.
fn raw_head(http: &[u8]) -> &[u8] {
    let end = http
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an accepted request has a complete head");
    &http[..end + 2]
}

/// Whether `headers` declare no body: no Transfer-Encoding, and at most one
/// Content-Length whose digits are all zero.
fn declares_no_body(headers: &Headers) -> bool {
    let mut lengths = headers.get_all("content-length");
    let len_ok = match (lengths.next(), lengths.next()) {
        (None, _) => true,
        (Some(v), None) => {
            let v = v.trim();
            !v.is_empty() && v.bytes().all(|b| b == b'0')
        }
        (Some(_), Some(_)) => false,
    };
    headers.get("transfer-encoding").is_none() && len_ok
}

/// What a request we accept may not be: anything a proxy could read
/// differently (RFC 9112 §3.2, §5.1, §5.2, §6.3).
fn check_accepted_request(req: &Request, http: &[u8]) {
    let h = req.headers();
    assert!(declares_no_body(h), "accepted a request with a body");
    if req.is_websocket_upgrade() {
        for name in [
            "host",
            "upgrade",
            "sec-websocket-key",
            "sec-websocket-version",
        ] {
            assert_eq!(h.get_all(name).count(), 1, "accepted with {name} repeated");
        }
    } else {
        // A plain request asks for no WebSocket in any way.
        assert_eq!(h.get_all("host").count(), 1, "accepted with host repeated");
        assert!(
            h.get_all("upgrade").count() <= 1,
            "accepted with upgrade repeated"
        );
        assert!(
            h.get_all("upgrade").all(|v| !v
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))),
            "a request for a WebSocket passed as plain"
        );
        assert!(
            h.iter()
                .all(|(n, _)| !n.to_ascii_lowercase().starts_with("sec-websocket-")),
            "a request with Sec-WebSocket fields passed as plain"
        );
        assert!(req.key().is_empty() && req.subprotocols().is_empty());
    }
    assert!(
        !req.host().trim().contains([' ', '\t', '/', '@', '?', '#']),
        "accepted Host {:?}",
        req.host()
    );
    assert!(
        req.uri().starts_with('/') && !req.uri().contains('#'),
        "accepted target {:?} is not origin-form",
        req.uri()
    );
    let head = raw_head(http);
    let mut lines = head.split(|&b| b == b'\n').skip(1);
    assert!(
        lines.all(|l| !l.starts_with(b" ") && !l.starts_with(b"\t")),
        "accepted a folded header line"
    );
    let target = head.split(|&b| b == b' ').nth(1).expect("request line");
    if !target.starts_with(b"/") {
        // Absolute-form: the authority is the Host header, the rest is uri().
        let text = std::str::from_utf8(target).expect("ASCII target");
        let (_, rest) = text.split_once("://").expect("absolute-form");
        let (authority, _) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        assert!(
            authority.eq_ignore_ascii_case(req.host().trim()),
            "absolute-form {text:?} names another host than {:?}",
            req.host()
        );
        assert!(rest.ends_with(req.uri().trim_start_matches('/')));
    }
}

/// Runs the server-side target.
pub fn server_handshake(data: &[u8]) {
    let Some((&cfg, http)) = data.split_first() else {
        return;
    };
    let config = config(cfg);
    let peak = Peak::start();
    let whole = feed_server(&config, http, http.len());
    let pieces = feed_server(&config, http, chunk(cfg));
    assert_eq!(whole, pieces, "result depends on chunking");
    // With plain HTTP answered by the application: the same result but
    // where the default refuses a request for asking for no WebSocket.
    let plain_config = Config {
        answer_plain_http: true,
        ..config.clone()
    };
    let plain = feed_server(&plain_config, http, http.len());
    assert_eq!(
        plain,
        feed_server(&plain_config, http, chunk(cfg)),
        "result depends on chunking"
    );
    match (&whole, &plain) {
        (Err(HandshakeError::Upgrade), Ok(Some((req, rest)))) if !req.is_websocket_upgrade() => {
            assert!(http.ends_with(rest), "rest is not the tail of the input");
            assert!(!req.host().trim().is_empty(), "accepted without Host");
            check_accepted_request(req, http);
            for compression in [false, true] {
                let accept = Accept::new().compression(compression);
                assert_eq!(
                    accept_response(req, &accept, config.deflate.as_ref()),
                    Err(SendError::NotAnUpgrade),
                    "a plain request accepted"
                );
            }
            let page = reject_response(200, &[("Content-Type".into(), "text/plain".into())], b"ok")
                .expect("a page answers a plain request");
            let (status, hs, n) = parse_response(&page);
            assert_eq!((status, n + 2), (200, page.len()));
            assert_eq!(header(&hs, "content-length"), Some("2"));
        }
        (w, p) => assert_eq!(w, p, "answer_plain_http changed more than plain requests"),
    }
    match &whole {
        Ok(Some((req, rest))) => {
            assert!(http.ends_with(rest), "rest is not the tail of the input");
            assert!(!req.host().trim().is_empty(), "accepted without Host");
            assert!(req.is_websocket_upgrade(), "a plain request by default");
            check_accepted_request(req, http);
            for compression in [false, true] {
                let accept = Accept::new().compression(compression);
                let (resp, neg) = accept_response(req, &accept, config.deflate.as_ref())
                    .expect("accepting a valid request");
                let (status, hs, n) = parse_response(&resp);
                assert_eq!((status, n), (101, resp.len()));
                assert_eq!(
                    header(&hs, "sec-websocket-accept"),
                    Some(&*accept_key(req.key()))
                );
                match header(&hs, "sec-websocket-extensions") {
                    Some(v) => {
                        let ext = parse_extensions(v).expect("our extension header parses");
                        assert_eq!(ext.len(), 1);
                        let p = neg.deflate.expect("header implies negotiation");
                        assert!((8..=15).contains(&p.server_max_window_bits));
                        assert!((8..=15).contains(&p.client_max_window_bits));
                    }
                    None => assert_eq!(neg.deflate, None),
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            let resp = error_response(e);
            let (status, hs, n) = parse_response(&resp);
            assert!(
                matches!(status, 400 | 405 | 426 | 431),
                "status {status} for {e}"
            );
            let len: usize = header(&hs, "content-length")
                .expect("length")
                .parse()
                .expect("number");
            assert_eq!(n + len, resp.len());
            if status == 426 {
                assert_eq!(header(&hs, "sec-websocket-version"), Some("13"));
            }
        }
    }
    // The same bytes through a server connection.
    let limits = Limits {
        max_frame_size: config.max_frame_size,
        max_message_size: config.max_message_size,
        auto_pong: true,
    };
    for config in [config.clone(), plain_config] {
        let mut c = Checked::new(Connection::server(config, epoch()), limits, true);
        for piece in http.chunks(chunk(cfg)) {
            c.conn.receive(epoch(), piece);
            for ev in c.step().events {
                assert!(matches!(ev, Event::Request(_) | Event::Error(_)), "{ev:?}");
            }
        }
        c.conn.receive_eof(epoch());
        c.step();
    }
    peak.check(
        (1 << 20) + 8 * config.max_handshake_size + 16 * data.len(),
        "server_handshake",
    );
}

/// The fixed client key, so the fuzzer can keep a valid `Sec-WebSocket-Accept`.
pub const CLIENT_KEY: [u8; 16] = [0; 16];
/// `Sec-WebSocket-Accept` for [`CLIENT_KEY`].
pub const CLIENT_ACCEPT: &str = "ICX+Yqv66kxgM0FcWaLWlFLwTAI=";

fn client_request() -> ClientRequest {
    ClientRequest::new("example.com", "/")
        .subprotocol("chat")
        .subprotocol("superchat")
}

type ClientResult = Result<(wsmachine::Negotiated, wsmachine::Response, Bytes), HandshakeError>;

fn feed_client(config: &Config, data: &[u8], chunk: usize) -> ClientResult {
    let (mut hs, _) = ClientHandshake::new(client_request(), CLIENT_KEY, config);
    let mut pieces = data.chunks(chunk.max(1));
    for piece in pieces.by_ref() {
        if let Some((neg, resp, rest)) = hs.receive(piece)? {
            let mut rest = rest.to_vec();
            pieces.for_each(|p| rest.extend_from_slice(p));
            return Ok((neg, resp, rest.into()));
        }
    }
    Err(hs.receive_eof())
}

/// A non-101 response's body is whatever arrived with it, up to its
/// Content-Length: compare only that much across chunkings.
fn normalise(r: ClientResult) -> ClientResult {
    match r {
        Err(HandshakeError::Status(mut resp)) => {
            let want = resp
                .headers
                .get("content-length")
                .and_then(|v| v.trim().parse::<usize>().ok());
            match want {
                Some(n) if resp.body.len() > n => resp.body.truncate(n),
                Some(_) => {}
                None => resp.body = Bytes::new(),
            }
            Err(HandshakeError::Status(resp))
        }
        other => other,
    }
}

/// Runs the client-side target.
pub fn client_handshake(data: &[u8]) {
    let Some((&cfg, http)) = data.split_first() else {
        return;
    };
    let config = config(cfg);
    let peak = Peak::start();
    let whole = feed_client(&config, http, http.len());
    let pieces = feed_client(&config, http, chunk(cfg));
    assert_eq!(
        normalise(whole.clone()),
        normalise(pieces),
        "result depends on chunking"
    );
    match &whole {
        Ok((neg, resp, rest)) => {
            assert_eq!(resp.status, 101);
            assert!(http.ends_with(rest), "rest is not the tail of the input");
            // A 101 has no content: what follows it is frames, so it may
            // not claim any (RFC 9110 §15.2).
            assert!(
                declares_no_body(&resp.headers),
                "accepted a 101 with a body"
            );
            for name in ["upgrade", "sec-websocket-accept"] {
                assert_eq!(
                    resp.headers.get_all(name).count(),
                    1,
                    "accepted with {name} repeated"
                );
            }
            assert_eq!(
                resp.headers.get("sec-websocket-accept").map(str::trim),
                Some(CLIENT_ACCEPT)
            );
            if let Some(p) = &neg.subprotocol {
                assert!(
                    p == "chat" || p == "superchat",
                    "unoffered subprotocol {p:?}"
                );
            }
            if let Some(d) = &neg.deflate {
                let ours = config
                    .deflate
                    .as_ref()
                    .expect("deflate accepted but not offered");
                assert!((8..=15).contains(&d.server_max_window_bits));
                assert!((8..=15).contains(&d.client_max_window_bits));
                if ours.server_no_context_takeover {
                    assert!(d.server_no_context_takeover);
                }
                if ours.client_no_context_takeover {
                    assert!(d.client_no_context_takeover);
                }
            }
        }
        Err(HandshakeError::Status(resp)) => {
            assert_ne!(resp.status, 101);
            // Bytes after the declared body are not part of it.
            let declared = resp
                .headers
                .get("content-length")
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(n) = declared {
                assert!(
                    resp.body.len() <= n,
                    "body of {} bytes, Content-Length {n}",
                    resp.body.len()
                );
            }
            assert!(
                resp.body.len() <= config.max_handshake_size,
                "body kept past the limit"
            );
        }
        Err(_) => {}
    }
    // The same bytes through a client connection.
    let limits = Limits {
        max_frame_size: config.max_frame_size,
        max_message_size: config.max_message_size,
        auto_pong: true,
    };
    let conn = Connection::client(
        config.clone(),
        client_request(),
        CLIENT_KEY,
        wsmachine::SeededMask::new([3; 32]),
        epoch(),
    );
    let mut c = Checked::new(conn, limits, true);
    c.step();
    for piece in http.chunks(chunk(cfg)) {
        c.conn.receive(epoch(), piece);
        c.step();
    }
    c.conn.receive_eof(epoch());
    c.step();
    peak.check(
        (1 << 20) + 8 * config.max_handshake_size + 16 * data.len(),
        "client_handshake",
    );
}
