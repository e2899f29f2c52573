//! `http_request`: a request head as the `http` crate carries it (what
//! hyper, axum or an HTTP/2 server hands over), validated by
//! `Request::from_h2_connect` (RFC 8441 extended CONNECT) and
//! `Request::from_http` (HTTP/1.1 upgrade), with the answer each leads to
//! checked: an accepted request gets a `200` over HTTP/2 or a `101` over
//! HTTP/1.1, a refused one the status its error names, and neither path
//! panics whatever the fields.
//!
//! Input: one configuration byte — bits 0–1 the method (CONNECT, GET,
//! POST, `connect`), bit 2 HTTP/2 (else HTTP/1.1), bit 3 a `:protocol`,
//! bit 4 permessage-deflate on, bit 5 small limits (8 fields, a 256-byte
//! head) — then lines: the URI, the `:protocol` value when bit 3 is set,
//! and `name:value` fields. A URI the `http` crate refuses ends the input;
//! a field it refuses is left out.

use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use wsmachine::{
    accept_http_response, error_h2_response, error_http_response, Accept, Config, DeflateConfig,
    HandshakeError, Request,
};

struct Input {
    request: http::Request<()>,
    protocol: Option<String>,
    config: Config,
}

fn parse(data: &[u8]) -> Option<Input> {
    let (&cfg, rest) = data.split_first()?;
    let mut lines = rest.split(|&b| b == b'\n');
    let method = match cfg & 3 {
        0 => Method::CONNECT,
        1 => Method::GET,
        2 => Method::POST,
        // Methods are case-sensitive (RFC 9110 §9.1): not CONNECT.
        _ => Method::from_bytes(b"connect").ok()?,
    };
    let version = if cfg & 4 != 0 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let uri = Uri::try_from(lines.next()?).ok()?;
    let protocol = if cfg & 8 != 0 {
        Some(String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned())
    } else {
        None
    };
    let mut request = http::Request::builder()
        .method(method)
        .version(version)
        .uri(uri)
        .body(())
        .ok()?;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    let config = Config {
        max_headers: if cfg & 32 != 0 { 8 } else { 64 },
        max_handshake_size: if cfg & 32 != 0 { 256 } else { 4096 },
        deflate: (cfg & 16 != 0).then(DeflateConfig::default),
        ..Config::default()
    };
    Some(Input {
        request,
        protocol,
        config,
    })
}

fn field<'a>(req: &'a http::Request<()>, name: &str) -> Option<&'a [u8]> {
    req.headers().get(name).map(HeaderValue::as_bytes)
}

/// The status and fields every refusal must carry, over either version.
fn check_refusal(e: &HandshakeError, resp: &http::Response<bytes::Bytes>) {
    let status = resp.status().as_u16();
    assert!(
        matches!(status, 400 | 405 | 426 | 431),
        "{e:?} answered {status}"
    );
    match e {
        HandshakeError::UnsupportedVersion(_) => {
            assert_eq!(status, 426);
            assert_eq!(resp.headers()["sec-websocket-version"], "13");
        }
        HandshakeError::ConnectMethod(_) => {
            assert_eq!(status, 405);
            assert_eq!(resp.headers()["allow"], "CONNECT");
        }
        HandshakeError::Method(_) => {
            assert_eq!(status, 405);
            assert_eq!(resp.headers()["allow"], "GET");
        }
        _ => {}
    }
}

/// The answer to an accepted request: `expected` and the negotiated
/// subprotocol echoed, or a refusal to build it (never a panic).
fn check_accept(ws: &Request, cfg: &Config, expected: u16) {
    let mut accept = Accept::new();
    if let Some(p) = ws.subprotocols().first() {
        accept = accept.subprotocol(p.clone());
    }
    let Ok((resp, negotiated)) = accept_http_response(ws, &accept, cfg.deflate.as_ref()) else {
        return;
    };
    assert_eq!(resp.status().as_u16(), expected);
    let header = |n: &str| resp.headers().get(n).map(|v| v.as_bytes().to_vec());
    assert_eq!(
        header("sec-websocket-protocol"),
        negotiated.subprotocol.map(String::into_bytes)
    );
    if negotiated.deflate.is_some() {
        assert!(header("sec-websocket-extensions").is_some());
    }
}

/// The target: both validations on the same head.
pub fn http_request(data: &[u8]) {
    let Some(input) = parse(data) else {
        return;
    };
    let (req, cfg) = (&input.request, &input.config);

    match Request::from_h2_connect(req, input.protocol.as_deref(), cfg) {
        Ok(ws) => {
            assert_eq!(req.method(), Method::CONNECT);
            assert_eq!(req.version(), Version::HTTP_2);
            assert!(input
                .protocol
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case("websocket")));
            assert_eq!(field(req, "sec-websocket-version"), Some(&b"13"[..]));
            for banned in ["sec-websocket-key", "upgrade", "connection"] {
                assert!(
                    field(req, banned).is_none(),
                    "{banned} accepted over HTTP/2"
                );
            }
            assert!(ws.is_extended_connect());
            if let Some(authority) = req.uri().authority() {
                assert_eq!(ws.host(), authority.as_str());
            }
            check_accept(&ws, cfg, 200);
        }
        Err(e) => {
            let resp = error_h2_response(&e);
            check_refusal(&e, &resp);
            assert!(resp.headers().get("connection").is_none());
        }
    }

    match Request::from_http(req, cfg) {
        Ok(ws) => {
            assert_eq!(req.method(), Method::GET);
            assert_eq!(req.version(), Version::HTTP_11);
            assert!(!ws.is_extended_connect());
            assert!(field(req, "sec-websocket-key").is_some());
            check_accept(&ws, cfg, 101);
        }
        Err(e) => {
            let resp = error_http_response(&e);
            check_refusal(&e, &resp);
            assert_eq!(resp.headers()["connection"], "close");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds reach both answers: an accepted extended CONNECT and an
    /// accepted upgrade, not only refusals.
    #[test]
    fn the_valid_seeds_are_accepted() {
        let seeds = crate::seeds::all();
        let seed = |name: &str| {
            let (_, _, data) = seeds
                .iter()
                .find(|(t, n, _)| *t == "http_request" && n == name)
                .expect("seed");
            parse(data).expect("parses")
        };
        for name in ["h2", "h2-deflate"] {
            let i = seed(name);
            let ws = Request::from_h2_connect(&i.request, i.protocol.as_deref(), &i.config);
            assert!(ws.is_ok(), "{name}: {ws:?}");
        }
        for name in ["h1", "h1-deflate"] {
            let i = seed(name);
            let ws = Request::from_http(&i.request, &i.config);
            assert!(ws.is_ok(), "{name}: {ws:?}");
        }
        for name in [
            "h2-upgrade-field",
            "h2-version-8",
            "h2-get",
            "h2-host-mismatch",
        ] {
            let i = seed(name);
            let ws = Request::from_h2_connect(&i.request, i.protocol.as_deref(), &i.config);
            assert!(ws.is_err(), "{name}: {ws:?}");
        }
    }
}
