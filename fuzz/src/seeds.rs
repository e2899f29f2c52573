//! Seed inputs made from in-memory client/server exchanges: real handshakes,
//! frames of every kind and length encoding, compressed messages. The
//! `gen_seeds` binary writes them to a corpus directory; the regression test
//! runs every target on them.
//!
//! `connection` and `round_trip` take structured (`arbitrary`) input, whose
//! byte layout is not meant to be written by hand: libFuzzer finds their
//! structure quickly from an empty corpus, and their committed regression
//! inputs come from `cargo fuzz cmin`.

use bytes::BytesMut;
use wsmachine::internals::{ClientHandshake, Compressor};
use wsmachine::{
    accept_response, error_response, reject_response, Accept, ClientRequest, CloseCode, Config,
    Connection, DeflateConfig, DeflateParams, HandshakeError, MessageKind, Negotiated, Role,
    SeededMask, ServerHandshake,
};

use crate::handshake::CLIENT_KEY;

/// One seed: target name, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// Every seed, for every target that takes raw protocol bytes.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    frames(&mut out);
    server_handshakes(&mut out);
    client_handshakes(&mut out);
    inflate(&mut out);
    extensions(&mut out);
    http_requests(&mut out);
    out
}

fn drain(c: &mut Connection) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(b) = c.poll_transmit() {
        v.extend_from_slice(&b);
    }
    v
}

/// What a peer of `role` sends: a sequence of frames of every kind.
fn peer_frames(sender: Role, deflate: bool, script: u8) -> Vec<u8> {
    let cfg = Config {
        deflate: deflate.then(DeflateConfig::default),
        ..Config::default()
    };
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: deflate.then(DeflateParams::default),
    };
    let mask = SeededMask::new([1; 32]);
    let mut c = Connection::upgraded(
        sender,
        cfg,
        negotiated,
        Some(Box::new(mask)),
        crate::check::epoch(),
    );
    let ok = |r: Result<(), wsmachine::SendError>| r.expect("send");
    match script {
        0 => ok(c.send_text("Hello")),
        1 => {
            ok(c.send_binary(&[0xAB; 300]));
            ok(c.send_binary(&[]));
        }
        2 => {
            ok(c.send_fragment(MessageKind::Text, "Hel".as_bytes(), false));
            ok(c.ping(b"mid"));
            ok(c.send_fragment(MessageKind::Text, "lo ☃".as_bytes(), true));
        }
        3 => {
            ok(c.ping(b"ping"));
            ok(c.pong(b"pong"));
            ok(c.close(crate::check::epoch(), CloseCode::NORMAL, "bye"));
        }
        4 => {
            let text = "the quick brown fox jumps over the lazy dog ".repeat(20);
            ok(c.send_text(&text));
            ok(c.send_text(&text));
            ok(c.send_binary(&[7; 70]));
        }
        6 => {
            // More answered events than wait unread, around a message.
            for i in 0..40u8 {
                ok(c.ping(&[i; 3]));
            }
            ok(c.pong(b"unasked"));
            ok(c.send_text("between"));
            for i in 0..20u8 {
                ok(c.ping(&[i]));
            }
            ok(c.close(crate::check::epoch(), CloseCode::NORMAL, "flood"));
        }
        _ => {
            ok(c.send_fragment(MessageKind::Binary, &[1; 200], false));
            ok(c.send_fragment(MessageKind::Binary, &[2; 10], false));
            ok(c.send_fragment(MessageKind::Binary, &[], true));
            ok(c.close(crate::check::epoch(), CloseCode::from(4000), "done"));
        }
    }
    drain(&mut c)
}

fn frames(out: &mut Vec<Seed>) {
    for script in 0..7u8 {
        for deflate in [false, true] {
            for (sender, server_bit) in [(Role::Client, 1u8), (Role::Server, 0)] {
                // The flood in pieces of 13 bytes: some hold several Pings.
                let chunk = if script == 6 { 12 } else { script % 3 };
                let cfg = server_bit | u8::from(deflate) << 1 | chunk << 4;
                let mut data = vec![cfg];
                data.extend(peer_frames(sender, deflate, script));
                let name = format!(
                    "s{script}-{}-{}",
                    if deflate { "deflate" } else { "plain" },
                    cfg & 1
                );
                out.push(("frame_decode", name, data));
            }
        }
    }
    // RFC 6455 §5.7 and a few violations, as a client would receive them.
    let raw: [(&str, &[u8]); 8] = [
        ("rfc-hello", b"\x81\x05Hello"),
        ("rfc-fragments", b"\x01\x03Hel\x80\x02lo"),
        ("rfc-ping", b"\x89\x05Hello"),
        ("rfc-256", &[0x82, 0x7e, 0x01, 0x00]),
        ("reserved-opcode", b"\x83\x00"),
        ("bad-utf8", b"\x81\x02\xc3\x28"),
        ("close-1-byte", b"\x88\x01\x03"),
        ("long-64", &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
    ];
    for (name, bytes) in raw {
        let mut data = vec![0u8];
        data.extend_from_slice(bytes);
        out.push(("frame_decode", name.to_string(), data));
    }
}

fn deflate_cfg(variant: u8) -> Option<DeflateConfig> {
    let mut d = DeflateConfig::default();
    match variant {
        0 => return None,
        1 => {}
        2 => {
            d.server_no_context_takeover = true;
            d.client_no_context_takeover = true;
        }
        _ => {
            d.request_server_max_window_bits = true;
            d.server_max_window_bits = 9;
            d.client_max_window_bits = 10;
        }
    }
    Some(d)
}

fn request(variant: u8) -> ClientRequest {
    let r = ClientRequest::new("example.com:8080", "/chat?room=1");
    match variant {
        0 => r,
        1 => r.subprotocol("chat").subprotocol("superchat"),
        2 => r
            .origin("https://example.com")
            .header("Authorization", "Bearer x"),
        _ => r.subprotocol("chat").origin("null"),
    }
}

fn server_handshakes(out: &mut Vec<Seed>) {
    for v in 0..4u8 {
        let cfg = Config {
            deflate: deflate_cfg(v),
            ..Config::default()
        };
        let (_, req) = ClientHandshake::new(request(v), [v; 16], &cfg);
        let cfg_byte = if v > 0 { 4 } else { 0 } | (v << 5);
        let mut data = vec![cfg_byte];
        data.extend_from_slice(&req);
        out.push(("server_handshake", format!("request-{v}"), data.clone()));
        // With the client's first frames in the same chunk.
        data.extend(peer_frames(Role::Client, false, v));
        out.push(("server_handshake", format!("request-frames-{v}"), data));
    }
    let bad: [(&str, &[u8]); 5] = [
        ("http10", b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"),
        ("post", b"POST / HTTP/1.1\r\nHost: a\r\n\r\n"),
        (
            "version8",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        ),
        (
            "no-key",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ),
        (
            "bad-extensions",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"16\", permessage-deflate;;\r\n\r\n",
        ),
    ];
    for (name, bytes) in bad {
        let mut data = vec![4u8];
        data.extend_from_slice(bytes);
        out.push(("server_handshake", name.to_string(), data));
    }
    // What a proxy could read differently from us (each refused with 400),
    // and the absolute-form target that is accepted, as edits of a valid
    // request: (name, text replaced, replacement).
    const BASE: &str = "GET /chat?x=1 HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    let end = "\r\n\r\n";
    let edits: [(&str, &str, &str); 17] = [
        (
            "smuggle-chunked",
            end,
            "\r\nTransfer-Encoding: chunked\r\nContent-Length: 14\r\n\r\n",
        ),
        ("content-length-14", end, "\r\nContent-Length: 14\r\n\r\n"),
        ("content-length-0", end, "\r\nContent-Length: 0\r\n\r\n"),
        (
            "content-length-twice",
            end,
            "\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "content-length-list",
            end,
            "\r\nContent-Length: 0, 0\r\n\r\n",
        ),
        (
            "host-twice",
            "Host: a.example\r\n",
            "Host: a.example\r\nHost: b.example\r\n",
        ),
        (
            "upgrade-twice",
            "Upgrade: websocket\r\n",
            "Upgrade: websocket\r\nUpgrade: websocket\r\n",
        ),
        (
            "key-twice",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version",
        ),
        (
            "version-twice",
            end,
            "\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ),
        (
            "obs-fold",
            "Upgrade: websocket\r\n",
            "Upgrade:\r\n websocket\r\n",
        ),
        ("space-before-colon", "Host:", "Host :"),
        ("host-with-path", "Host: a.example", "Host: a.example/x"),
        ("target-asterisk", "/chat?x=1", "*"),
        ("target-authority", "/chat?x=1", "a.example:80"),
        ("target-fragment", "/chat?x=1", "/chat#x"),
        ("target-absolute", "/chat?x=1", "http://a.example/chat?x=1"),
        (
            "target-absolute-other-host",
            "/chat?x=1",
            "http://b.example/chat?x=1",
        ),
    ];
    for (name, from, to) in edits {
        let mut data = vec![4u8];
        data.extend_from_slice(BASE.replacen(from, to, 1).as_bytes());
        if name == "smuggle-chunked" {
            data.extend(masked_text(b"smuggled"));
        }
        out.push(("server_handshake", name.to_string(), data));
    }
}

/// A client's text frame with a fixed mask.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    f
}

fn client_handshakes(out: &mut Vec<Seed>) {
    for v in 0..4u8 {
        let cfg = Config {
            deflate: deflate_cfg(v),
            ..Config::default()
        };
        // The client target offers "chat" and "superchat" with CLIENT_KEY.
        let (_, req) = ClientHandshake::new(request(1), CLIENT_KEY, &cfg);
        let mut server = ServerHandshake::new(&cfg);
        let req = server.receive(&req).expect("valid").expect("complete");
        let accept = if v % 2 == 0 {
            Accept::new()
        } else {
            Accept::new().subprotocol("chat")
        };
        let (resp, _) = accept_response(&req, &accept, cfg.deflate.as_ref()).expect("accept");
        // The target's config byte: bit 2 offers deflate, bit 3 requests a
        // server window and no server context takeover, bit 4 client nct.
        let cfg_byte = match v {
            0 => 0,
            1 => 4,
            2 => 4 | 16,
            _ => 4 | 8,
        } | (v << 5);
        let mut data = vec![cfg_byte];
        data.extend_from_slice(&resp);
        out.push(("client_handshake", format!("accept-{v}"), data.clone()));
        data.extend(peer_frames(Role::Server, v == 1, v));
        out.push(("client_handshake", format!("accept-frames-{v}"), data));
    }
    let rejected =
        reject_response(403, &[("X-Why".into(), "no".into())], b"forbidden").expect("403");
    let mut data = vec![0u8];
    data.extend_from_slice(&rejected);
    out.push(("client_handshake", "reject-403".into(), data));
    let err = error_response(&HandshakeError::UnsupportedVersion("8".into()));
    let mut data = vec![0u8];
    data.extend_from_slice(&err);
    out.push(("client_handshake", "error-426".into(), data));
    // 101s the client refuses (a declared body, repeated fields) and the
    // harmless Content-Length: 0, each with a frame after the head.
    let extras: [(&str, &str); 6] = [
        ("101-chunked", "Transfer-Encoding: chunked\r\n"),
        ("101-content-length-2", "Content-Length: 2\r\n"),
        ("101-content-length-0", "Content-Length: 0\r\n"),
        (
            "101-accept-twice",
            "Sec-WebSocket-Accept: ICX+Yqv66kxgM0FcWaLWlFLwTAI=\r\n",
        ),
        ("101-upgrade-twice", "Upgrade: websocket\r\n"),
        ("101-obs-fold", "X-A: 1\r\n 2\r\n"),
    ];
    for (name, extra) in extras {
        let mut data = vec![0u8];
        data.extend_from_slice(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
                crate::handshake::CLIENT_ACCEPT
            )
            .as_bytes(),
        );
        data.extend_from_slice(b"\x81\x02hi");
        out.push(("client_handshake", name.into(), data));
    }
}

fn inflate(out: &mut Vec<Seed>) {
    let messages: [&[u8]; 4] = [
        b"Hello",
        b"Hello, Hello, Hello, Hello again",
        b"",
        &[0x55; 3000],
    ];
    for bits in [8u8, 9, 12, 15] {
        for nct in [false, true] {
            for sender in [Role::Client, Role::Server] {
                let params = DeflateParams {
                    server_no_context_takeover: nct,
                    client_no_context_takeover: nct,
                    server_max_window_bits: bits,
                    client_max_window_bits: bits,
                };
                let mut c = Compressor::new(&params, &DeflateConfig::default(), sender);
                // Decompressed by the other role.
                let receiver_bit = u8::from(sender == Role::Client);
                let mut data = vec![receiver_bit | (bits - 8) << 1 | u8::from(nct) << 4, 16];
                for (i, m) in messages.iter().enumerate() {
                    // The second message in two frames.
                    let parts: Vec<(&[u8], bool)> = if i == 1 {
                        vec![(&m[..10], false), (&m[10..], true)]
                    } else {
                        vec![(m, true)]
                    };
                    for (part, fin) in parts {
                        let mut buf = BytesMut::new();
                        c.compress(part, fin, &mut buf);
                        data.push(u8::from(fin));
                        data.extend_from_slice(&(buf.len() as u16).to_le_bytes());
                        data.extend_from_slice(&buf);
                    }
                }
                let name = format!("w{bits}-nct{}-{}", u8::from(nct), receiver_bit);
                out.push(("inflate", name, data));
            }
        }
    }
    // A small bomb: 1 MiB of zeros against a 64 KiB limit.
    let params = DeflateParams::default();
    let mut c = Compressor::new(&params, &DeflateConfig::default(), Role::Client);
    let mut buf = BytesMut::new();
    c.compress(&vec![0; 1 << 20], true, &mut buf);
    let mut data = vec![1 | 7 << 1, 16, 1];
    data.extend_from_slice(&(buf.len() as u16).to_le_bytes());
    data.extend_from_slice(&buf);
    out.push(("inflate", "bomb".into(), data));
}

fn extensions(out: &mut Vec<Seed>) {
    let headers = [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits, permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; client_max_window_bits=\"12\", x-webkit-deflate-frame",
        "x-foo; a=1; b=\"two\", , permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; unknown_param",
    ];
    for (i, h) in headers.iter().enumerate() {
        // Two DeflateSetup values (8 bytes each), then the header text.
        let mut data = vec![0u8; 16];
        data[2] = i as u8;
        data[8 + 7] = (i % 2) as u8;
        data.extend_from_slice(h.as_bytes());
        out.push(("extensions", format!("header-{i}"), data));
    }
}

/// Seeds from the conformance byte-traces under `dir` (feature `trace`):
/// each trace file for `trace_parse`; what the recorded endpoint received,
/// whole, for `server_handshake` or `client_handshake` (by its role); and
/// the frames after the handshake for `frame_decode`.
#[cfg(feature = "trace")]
pub fn from_traces(dir: &std::path::Path) -> std::io::Result<Vec<Seed>> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "trace") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(("trace_parse", stem.clone(), text.clone().into_bytes()));
        let Ok(trace) = wsmachine_conformance::parse_trace(&text) else {
            continue;
        };
        let mut received = Vec::new();
        for item in &trace.items {
            if let wsmachine_conformance::Item::Recv(b) = item {
                received.extend_from_slice(b);
            }
        }
        let server = trace.header.role == Role::Server;
        let target = if server {
            "server_handshake"
        } else {
            "client_handshake"
        };
        let mut hs = vec![0u8];
        hs.extend_from_slice(&received);
        out.push((target, format!("trace-{stem}"), hs));
        if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let deflate = trace.header.extensions != "none";
            let mut fd = vec![u8::from(server) | u8::from(deflate) << 1];
            fd.extend_from_slice(&received[i + 4..]);
            out.push(("frame_decode", format!("trace-{stem}"), fd));
        }
    }
    Ok(out)
}

/// `http_request`: heads an HTTP/2 server or hyper hands over, accepted and
/// refused (see that target's input format).
fn http_requests(out: &mut Vec<Seed>) {
    const H2: u8 = 4 | 8; // CONNECT over HTTP/2 with a `:protocol`
    let cases: [(&str, u8, &str); 9] = [
        (
            "h2",
            H2,
            "https://example.com/chat?room=1\nwebsocket\nsec-websocket-version:13\n\
             sec-websocket-protocol:chat, superchat\nsec-websocket-extensions:permessage-deflate; client_max_window_bits",
        ),
        (
            "h2-deflate",
            H2 | 16,
            "https://example.com:8443/\nWebSocket\nsec-websocket-version:13\n\
             sec-websocket-extensions:permessage-deflate; client_no_context_takeover",
        ),
        (
            "h1",
            1,
            "/chat\nhost:example.com\nupgrade:websocket\nconnection:Upgrade\n\
             sec-websocket-key:dGhlIHNhbXBsZSBub25jZQ==\nsec-websocket-version:13\nsec-websocket-protocol:chat",
        ),
        (
            "h1-deflate",
            1 | 16,
            "/\nhost:a\nupgrade:websocket\nconnection:Upgrade\nsec-websocket-key:dGhlIHNhbXBsZSBub25jZQ==\n\
             sec-websocket-version:13\nsec-websocket-extensions:permessage-deflate",
        ),
        (
            "h2-upgrade-field",
            H2,
            "https://a/\nwebsocket\nsec-websocket-version:13\nupgrade:websocket",
        ),
        ("h2-version-8", H2, "https://a/\nwebsocket\nsec-websocket-version:8"),
        ("h2-get", 1 | 4 | 8, "https://a/\nwebsocket\nsec-websocket-version:13"),
        (
            "h2-host-mismatch",
            H2,
            "https://a/\nwebsocket\nsec-websocket-version:13\nhost:b",
        ),
        (
            "h2-small-limits",
            H2 | 32,
            "https://a/\nh2c\nsec-websocket-version:13\nx-a:1\nx-b:2\nx-c:3\nx-d:4\nx-e:5\nx-f:6\nx-g:7\nx-h:8",
        ),
    ];
    for (name, cfg, text) in cases {
        let mut data = vec![cfg];
        data.extend_from_slice(text.as_bytes());
        out.push(("http_request", name.to_string(), data));
    }
}
