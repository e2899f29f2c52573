//! Scenario tests: a client core against a server core in memory, and
//! crafted bytes against one core. Named after the RFC sections they check.
// Tests play the event loop, which owns the clock.
#![allow(clippy::disallowed_methods)]

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::frame::{FrameHeader, OpCode};
use crate::mask::{apply_mask, SeededMask};
use crate::{ProtocolError, Role};

/// Moves bytes between a client and a server, `chunk` bytes at a time.
pub(crate) struct Pair {
    pub(crate) client: Connection,
    pub(crate) server: Connection,
    pub(crate) now: Instant,
    pub(crate) chunk: usize,
    pub(crate) client_events: Vec<Event>,
    pub(crate) server_events: Vec<Event>,
}

impl Pair {
    pub(crate) fn new(client_cfg: Config, server_cfg: Config, chunk: usize) -> Pair {
        let now = Instant::now();
        let client = Connection::client(
            client_cfg,
            ClientRequest::new("example.com", "/chat?x=1"),
            *b"0123456789abcdef",
            SeededMask::new([9; 32]),
            now,
        );
        let server = Connection::server(server_cfg, now);
        let mut p = Pair {
            client,
            server,
            now,
            chunk,
            client_events: vec![],
            server_events: vec![],
        };
        p.drive();
        let req = p
            .server_events
            .drain(..)
            .find_map(|e| match e {
                Event::Request(r) => Some(r),
                _ => None,
            })
            .expect("request event");
        assert_eq!(req.uri(), "/chat?x=1");
        p.server.accept(p.now, Accept::new()).unwrap();
        p.drive();
        assert!(matches!(p.client_events.remove(0), Event::Connected(_)));
        assert_eq!(p.client.state(), State::Open);
        assert_eq!(p.server.state(), State::Open);
        p
    }

    pub(crate) fn default(chunk: usize) -> Pair {
        Pair::new(Config::default(), Config::default(), chunk)
    }

    /// Exchanges bytes until neither side has anything to send nor
    /// received bytes to process (see `Connection::has_pending_work`).
    pub(crate) fn drive(&mut self) {
        loop {
            let a = Self::pump(&mut self.client, &mut self.server, self.now, self.chunk);
            let b = Self::pump(&mut self.server, &mut self.client, self.now, self.chunk);
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            let mut resumed = false;
            for c in [&mut self.client, &mut self.server] {
                if c.has_pending_work() {
                    c.resume(self.now);
                    resumed = true;
                }
            }
            if !a && !b && !resumed {
                break;
            }
        }
    }

    fn pump(from: &mut Connection, to: &mut Connection, now: Instant, chunk: usize) -> bool {
        let mut moved = false;
        while let Some(bytes) = from.poll_transmit() {
            moved = true;
            for piece in bytes.chunks(chunk.max(1)) {
                to.receive(now, piece);
            }
        }
        moved
    }

    /// Jumps the clock to the earlier deadline and fires it.
    pub(crate) fn advance_to_next_timeout(&mut self) -> Option<Instant> {
        let t = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()?;
        self.now = self.now.max(t);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.drive();
        Some(t)
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn text(len: usize) -> String {
    "aé€𝄞"
        .chars()
        .cycle()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= len).then_some(c)
        })
        .collect()
}

const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 3 << 20, 5 << 20];

#[test]
fn rfc6455_5_messages_of_every_size_both_directions_in_several_splits() {
    for chunk in [usize::MAX, 1, 7, 1000] {
        let mut p = Pair::default(chunk);
        for &size in &SIZES {
            if chunk == 1 && size > 70_000 {
                continue; // byte-at-a-time on multi-MiB payloads adds nothing but time
            }
            let bin = payload(size);
            let txt = text(size);
            p.client.send_binary(&bin).unwrap();
            p.client.send_text(&txt).unwrap();
            p.server.send_binary(&bin).unwrap();
            p.server.send(Message::Text(txt.clone().into())).unwrap();
            p.drive();
            for events in [&mut p.server_events, &mut p.client_events] {
                assert_eq!(events.len(), 2, "size {size} chunk {chunk}");
                assert_eq!(events[0], Event::Binary(Bytes::from(bin.clone())));
                assert_eq!(events[1], Event::Text(txt.clone().into()));
                events.clear();
            }
        }
    }
}

#[test]
fn rfc6455_5_4_fragmented_messages_with_pings_interleaved() {
    for chunk in [usize::MAX, 1, 5] {
        let mut p = Pair::default(chunk);
        let txt = "κόσμε fragmented message";
        let bytes = txt.as_bytes();
        // Split inside a multi-byte character on purpose.
        p.client
            .send_fragment(MessageKind::Text, &bytes[..3], false)
            .unwrap();
        p.client.ping(b"in between").unwrap();
        p.client
            .send_fragment(MessageKind::Text, &bytes[3..10], false)
            .unwrap();
        p.client
            .send_fragment(MessageKind::Text, &[], false)
            .unwrap();
        p.client
            .send_fragment(MessageKind::Text, &bytes[10..], true)
            .unwrap();
        p.drive();
        assert_eq!(
            p.server_events,
            vec![
                Event::Ping(Bytes::from_static(b"in between")),
                Event::Text(txt.into())
            ]
        );
        // The automatic Pong reached the client.
        assert_eq!(
            p.client_events,
            vec![Event::Pong(Bytes::from_static(b"in between"))]
        );
        // Server to client, binary, a megabyte in 64 KiB fragments.
        let big = payload(1 << 20);
        let parts: Vec<&[u8]> = big.chunks(65536).collect();
        for (i, part) in parts.iter().enumerate() {
            p.server
                .send_fragment(MessageKind::Binary, part, i + 1 == parts.len())
                .unwrap();
        }
        p.drive();
        assert_eq!(p.client_events[1], Event::Binary(Bytes::from(big)));
    }
}

#[test]
fn send_fragment_misuse_is_refused() {
    let mut p = Pair::default(usize::MAX);
    p.client
        .send_fragment(MessageKind::Text, b"a", false)
        .unwrap();
    assert_eq!(p.client.send_text("x"), Err(SendError::MessageInProgress));
    assert_eq!(
        p.client.send_fragment(MessageKind::Binary, b"b", true),
        Err(SendError::MessageInProgress)
    );
    p.client
        .send_fragment(MessageKind::Text, b"b", true)
        .unwrap();
    p.client.send_text("c").unwrap();
    p.drive();
    assert_eq!(
        p.server_events,
        vec![Event::Text("ab".into()), Event::Text("c".into())]
    );
    assert_eq!(
        p.client.ping(&[0; 126]),
        Err(SendError::ControlTooLong(126))
    );
}

#[test]
fn streaming_mode_delivers_fragments_as_they_come() {
    let server_cfg = Config {
        reassemble: false,
        ..Config::default()
    };
    let mut p = Pair::new(Config::default(), server_cfg, usize::MAX);
    p.client
        .send_fragment(MessageKind::Text, "hé".as_bytes(), false)
        .unwrap();
    p.client
        .send_fragment(MessageKind::Text, b"llo", true)
        .unwrap();
    p.client.send_binary(b"one").unwrap();
    p.drive();
    let frag = |kind, data: &'static [u8], first, last| {
        Event::Fragment(Fragment {
            kind,
            data: Bytes::from_static(data),
            first,
            last,
        })
    };
    assert_eq!(
        p.server_events,
        vec![
            frag(MessageKind::Text, "hé".as_bytes(), true, false),
            frag(MessageKind::Text, b"llo", false, true),
            frag(MessageKind::Binary, b"one", true, true),
        ]
    );
}

#[test]
fn rfc6455_7_closing_handshake_started_by_either_side() {
    for initiator in [Role::Client, Role::Server] {
        let mut p = Pair::default(3);
        let (a, b) = match initiator {
            Role::Client => (&mut p.client, &mut p.server),
            Role::Server => (&mut p.server, &mut p.client),
        };
        a.send_text("last words").unwrap();
        a.close(p.now, CloseCode::GOING_AWAY, "bye").unwrap();
        assert_eq!(a.state(), State::Closing);
        assert_eq!(a.send_text("more"), Err(SendError::Closed));
        let _ = b;
        p.drive();
        let (ev_a, ev_b) = match initiator {
            Role::Client => (&p.client_events, &p.server_events),
            Role::Server => (&p.server_events, &p.client_events),
        };
        assert_eq!(
            ev_b,
            &vec![
                Event::Text("last words".into()),
                Event::Close(CloseFrame::new(CloseCode::GOING_AWAY, "bye"))
            ]
        );
        // The echo carries the code back.
        assert_eq!(
            ev_a,
            &vec![Event::Close(CloseFrame::new(CloseCode::GOING_AWAY, ""))]
        );
        assert_eq!(p.client.state(), State::Closed);
        assert_eq!(p.server.state(), State::Closed);
        // The server closes TCP first; the client waits (RFC 6455 §7.1.1).
        assert!(p.server.should_close_transport());
        assert!(!p.client.should_close_transport());
        p.client.receive_eof(p.now);
        assert!(p.client.should_close_transport());
        assert_eq!(
            p.client.poll_event(),
            None,
            "clean EOF after close is no error"
        );
    }
}

#[test]
fn client_closes_transport_itself_when_server_lingers() {
    let mut p = Pair::default(usize::MAX);
    p.client.close(p.now, CloseCode::NORMAL, "").unwrap();
    p.drive();
    assert!(!p.client.should_close_transport());
    let deadline = p.client.poll_timeout().expect("close timer");
    assert_eq!(deadline, p.now + Config::default().close_timeout);
    p.client.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!p.client.should_close_transport(), "early call is a no-op");
    p.client.handle_timeout(deadline);
    assert!(p.client.should_close_transport());
    assert_eq!(p.client.poll_event(), None);
}

#[test]
fn close_timeout_against_a_silent_peer() {
    let mut p = Pair::default(usize::MAX);
    p.server.close(p.now, CloseCode::NORMAL, "").unwrap();
    while p.server.poll_transmit().is_some() {} // the client never sees it
    let t = p.server.poll_timeout().unwrap();
    assert_eq!(t, p.now + Config::default().close_timeout);
    p.server.handle_timeout(t);
    assert_eq!(
        p.server.poll_event(),
        Some(Event::Error(ConnectionError::TimedOut(
            Timeout::ClosingHandshake
        )))
    );
    assert!(p.server.should_close_transport());
    assert_eq!(p.server.state(), State::Closed);
}

/// A server with keepalive every 10 s and a 5 s Pong deadline.
fn keepalive_config() -> Config {
    Config {
        ping_interval: Some(Duration::from_secs(10)),
        pong_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// Takes the server's output, which must be one keepalive Ping, and
/// returns its payload.
fn take_keepalive_ping(s: &mut Connection) -> Vec<u8> {
    let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
    assert_eq!(out[..2], [0x89, 0x04], "a 4-byte Ping: {out:02x?}");
    out[2..].to_vec()
}

#[test]
fn keepalive_pings_on_the_interval_whatever_the_traffic_and_measures_rtt() {
    let mut p = Pair::new(
        Config {
            ping_interval: None,
            ..keepalive_config()
        },
        keepalive_config(),
        usize::MAX,
    );
    let start = p.now;
    assert_eq!(p.client.poll_timeout(), None);
    assert_eq!(p.server.stats().last_rtt, None);
    // The first Ping, 10 s after opening even though data flowed meanwhile.
    p.now += Duration::from_secs(3);
    p.client.send_text("busy").unwrap();
    p.drive();
    assert_eq!(
        p.server.poll_timeout(),
        Some(start + Duration::from_secs(10))
    );
    let t = start + Duration::from_secs(10);
    p.server.handle_timeout(t);
    let ping = p.server.poll_transmit().expect("keepalive ping");
    // While it waits, the one deadline is its Pong's.
    assert_eq!(p.server.poll_timeout(), Some(t + Duration::from_secs(5)));
    // The client answers 250 ms later: that is the round-trip time.
    p.now = t + Duration::from_millis(250);
    p.client.receive(p.now, &ping);
    p.drive();
    assert!(matches!(p.client_events.as_slice(), [Event::Ping(_)]));
    assert!(matches!(
        p.server_events.as_slice(),
        [Event::Text(_), Event::Pong(_)]
    ));
    let stats = p.server.stats();
    assert_eq!(stats.last_rtt, Some(Duration::from_millis(250)));
    assert_eq!(stats.keepalive_pings, 1);
    assert_eq!(p.client.stats().auto_pongs, 1);
    // The next Ping is due 10 s after the last one, not after the traffic.
    p.now = t + Duration::from_secs(7);
    p.client.send_text("alive").unwrap();
    p.drive();
    assert_eq!(p.server.poll_timeout(), Some(t + Duration::from_secs(10)));
    // Answered at once this time: the RTT is updated to 0.
    assert_eq!(
        p.advance_to_next_timeout(),
        Some(t + Duration::from_secs(10))
    );
    assert_eq!(p.server.stats().last_rtt, Some(Duration::ZERO));
    assert_eq!(p.server.stats().keepalive_pings, 2);
    assert_eq!(p.server.poll_timeout(), Some(t + Duration::from_secs(20)));
}

#[test]
fn keepalive_fails_a_peer_that_sends_but_never_answers_at_the_deadline() {
    let (mut s, start) = open_server(keepalive_config());
    let t = start + Duration::from_secs(10);
    s.handle_timeout(t);
    take_keepalive_ping(&mut s);
    // The peer keeps sending data (every second) and never sends the Pong.
    for i in 1..5 {
        s.receive(t + Duration::from_secs(i), &client_frame(0x81, b"data"));
        assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(5)));
    }
    s.handle_timeout(t + Duration::from_secs(5) - Duration::from_nanos(1));
    assert_eq!(s.state(), State::Open);
    s.handle_timeout(t + Duration::from_secs(5));
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(
        events.last(),
        Some(&Event::Error(ConnectionError::TimedOut(Timeout::Pong)))
    );
    let close: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
    assert_eq!(&close[..4], b"\x88\x18\x03\xf3"); // 1011 with a reason
    assert_eq!(&close[4..], b"keepalive ping timeout");
    assert!(s.should_close_transport());
    assert_eq!(s.stats().last_rtt, None);
}

#[test]
fn keepalive_ignores_unsolicited_pongs() {
    let (mut s, start) = open_server(keepalive_config());
    // Before any Ping: the schedule stays.
    s.receive(
        start + Duration::from_secs(1),
        &client_frame(0x8A, b"hello"),
    );
    assert_eq!(s.poll_timeout(), Some(start + Duration::from_secs(10)));
    let t = start + Duration::from_secs(10);
    s.handle_timeout(t);
    let payload = take_keepalive_ping(&mut s);
    // Pongs that do not carry the Ping's payload: an empty one, one with
    // another counter, one answering an application's Ping.
    let mut other = payload.clone();
    other[3] ^= 1;
    for pong in [&b""[..], &other, b"app ping"] {
        s.receive(t + Duration::from_secs(1), &client_frame(0x8A, pong));
        assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(5)));
        assert_eq!(s.stats().last_rtt, None);
    }
    // The matching one answers it.
    s.receive(t + Duration::from_secs(2), &client_frame(0x8A, &payload));
    assert_eq!(s.stats().last_rtt, Some(Duration::from_secs(2)));
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(10)));
    // Sent again after it was answered, it changes nothing.
    s.receive(t + Duration::from_secs(3), &client_frame(0x8A, &payload));
    assert_eq!(s.stats().last_rtt, Some(Duration::from_secs(2)));
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(10)));
}

/// RFC 6455 §5.5.3 lets a peer answer only the most recent Ping: when the
/// application pings right after a keepalive Ping, the Pong to its Ping
/// meets the keepalive deadline (no RTT: it is not the keepalive Ping's).
#[test]
fn keepalive_accepts_the_pong_to_a_later_application_ping() {
    let (mut s, start) = open_server(keepalive_config());
    let t = start + Duration::from_secs(10);
    s.handle_timeout(t);
    take_keepalive_ping(&mut s);
    s.ping(b"app").unwrap();
    let _ = std::iter::from_fn(|| s.poll_transmit()).count();
    // The peer answers only the latest Ping, the application's.
    s.receive(t + Duration::from_secs(1), &client_frame(0x8A, b"app"));
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(10)));
    s.handle_timeout(t + Duration::from_secs(5));
    assert_eq!(s.state(), State::Open);
    assert_eq!(s.stats().last_rtt, None);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events, [Event::Pong(Bytes::from_static(b"app"))]);
    // An application Ping sent *before* the next keepalive Ping does not
    // excuse that one: unanswered, it fails the connection.
    s.ping(b"early").unwrap();
    s.handle_timeout(t + Duration::from_secs(10));
    let _ = std::iter::from_fn(|| s.poll_transmit()).count();
    s.receive(t + Duration::from_secs(11), &client_frame(0x8A, b"early"));
    s.handle_timeout(t + Duration::from_secs(15));
    assert_eq!(
        std::iter::from_fn(|| s.poll_event()).last(),
        Some(Event::Error(ConnectionError::TimedOut(Timeout::Pong)))
    );
}

#[test]
fn keepalive_waits_for_the_pong_and_then_pings_at_once_when_it_is_late() {
    // A Pong deadline longer than the interval: one Ping at a time.
    let cfg = Config {
        pong_timeout: Duration::from_secs(30),
        ..keepalive_config()
    };
    let (mut s, start) = open_server(cfg);
    let t = start + Duration::from_secs(10);
    s.handle_timeout(t);
    let payload = take_keepalive_ping(&mut s);
    s.handle_timeout(t + Duration::from_secs(10));
    assert_eq!(s.poll_transmit(), None, "no second Ping while one waits");
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(30)));
    s.receive(t + Duration::from_secs(12), &client_frame(0x8A, &payload));
    assert_eq!(s.stats().last_rtt, Some(Duration::from_secs(12)));
    // The interval has passed: the next Ping is due now.
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(10)));
    s.handle_timeout(t + Duration::from_secs(12));
    let next = take_keepalive_ping(&mut s);
    assert_ne!(next, payload);
    assert_eq!(s.stats().keepalive_pings, 2);
}

#[test]
fn stats_count_messages_and_bytes_each_way() {
    let mut p = Pair::new(Config::with_deflate(), Config::with_deflate(), usize::MAX);
    let big = "x".repeat(2000); // compressed (over min_compress_size)
    p.client.send_text("hello").unwrap();
    p.client.send_binary(&[1, 2, 3]).unwrap();
    p.client.send_text(&big).unwrap();
    p.client
        .send_fragment(MessageKind::Binary, b"ab", false)
        .unwrap();
    p.client
        .send_fragment(MessageKind::Binary, b"cde", true)
        .unwrap();
    p.server.send_text("ok").unwrap();
    p.client.ping(b"p").unwrap();
    p.drive();
    let (c, s) = (p.client.stats(), p.server.stats());
    assert_eq!((c.messages_out, s.messages_in), (4, 4));
    assert_eq!((c.messages_in, s.messages_out), (1, 1));
    assert_eq!(c.bytes_out, 5 + 3 + 2000 + 5);
    assert_eq!(s.bytes_in, c.bytes_out);
    assert_eq!((c.bytes_in, s.bytes_out), (2, 2));
    // The 2000-byte text went compressed, and so did the streamed message
    // (streamed messages always are); the small ones did not.
    assert!(
        c.compressed_bytes_out > 0 && c.compressed_bytes_out < 100,
        "{c:?}"
    );
    assert_eq!(s.compressed_bytes_in, c.compressed_bytes_out);
    assert_eq!((s.compressed_bytes_out, c.compressed_bytes_in), (0, 0));
    // Every frame byte, both ways: headers, masks, the Ping and its Pong.
    assert_eq!(s.wire_bytes_in, c.wire_bytes_out);
    assert_eq!(c.wire_bytes_in, s.wire_bytes_out);
    assert_eq!(s.wire_bytes_out, 2 + 2 + 2 + 1); // "ok" and the Pong
    assert_eq!((s.auto_pongs, c.auto_pongs), (1, 0));
    // The halves split the counters; the connection adds them up.
    let (rx, tx) = p.server.halves();
    assert_eq!((rx.stats().messages_in, rx.stats().messages_out), (4, 0));
    assert_eq!((tx.stats().messages_in, tx.stats().messages_out), (0, 1));
}

#[test]
fn opening_handshake_timeout() {
    let now = Instant::now();
    let mut s = Connection::server(Config::default(), now);
    s.receive(now, b"GET / HTTP/1.1\r\n");
    let t = s.poll_timeout().unwrap();
    assert_eq!(t, now + Duration::from_secs(10));
    s.handle_timeout(t);
    assert_eq!(
        s.poll_event(),
        Some(Event::Error(ConnectionError::TimedOut(
            Timeout::OpeningHandshake
        )))
    );
    assert!(s.should_close_transport());
}

#[test]
fn server_answers_bad_requests_with_http_errors() {
    let now = Instant::now();
    let mut s = Connection::server(Config::default(), now);
    s.receive(
        now,
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    let resp = s.poll_transmit().unwrap();
    let text = std::str::from_utf8(&resp).unwrap();
    assert!(text.starts_with("HTTP/1.1 426 "), "{text}");
    assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
    assert!(matches!(
        s.poll_event(),
        Some(Event::Error(ConnectionError::Handshake(
            HandshakeError::UnsupportedVersion(_)
        )))
    ));
    assert!(s.should_close_transport());
}

#[test]
fn reject_sends_the_response_and_ends() {
    let now = Instant::now();
    let mut c = Connection::client(
        Config::default(),
        ClientRequest::new("h", "/"),
        [3; 16],
        SeededMask::new([1; 32]),
        now,
    );
    let mut s = Connection::server(Config::default(), now);
    while let Some(b) = c.poll_transmit() {
        s.receive(now, &b);
    }
    assert!(matches!(s.poll_event(), Some(Event::Request(_))));
    s.reject(403, &[("X-Why".into(), "banned".into())], b"go away")
        .unwrap();
    assert_eq!(
        s.accept(now, Accept::new()),
        Err(SendError::NoPendingRequest)
    );
    while let Some(b) = s.poll_transmit() {
        c.receive(now, &b);
    }
    assert!(s.should_close_transport());
    match c.poll_event() {
        Some(Event::Error(ConnectionError::Handshake(HandshakeError::Status(r)))) => {
            assert_eq!(r.status, 403);
            assert_eq!(r.headers.get("x-why"), Some("banned"));
            assert_eq!(&r.body[..], b"go away");
        }
        other => panic!("{other:?}"),
    }
}

/// A server core opened directly, and a helper to build client frames.
fn open_server(cfg: Config) -> (Connection, Instant) {
    let now = Instant::now();
    (
        Connection::upgraded(Role::Server, cfg, Negotiated::default(), None, now),
        now,
    )
}

fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let h = FrameHeader {
        fin: first & 0x80 != 0,
        rsv: (first >> 4) & 7,
        opcode: OpCode::from_u8(first & 0xF).unwrap_or(OpCode::Binary),
        mask: Some([0x11, 0x22, 0x33, 0x44]),
        payload_len: payload.len() as u64,
    };
    h.encode_frame(payload, &mut out);
    if first & 0xF != h.opcode.as_u8() {
        out[0] = first; // reserved opcodes cannot be built through OpCode
    }
    out.to_vec()
}

/// Decodes the server's output as one unmasked frame: (opcode, payload).
fn sent_frame(bytes: &[u8]) -> (OpCode, Vec<u8>) {
    let (h, n) = FrameHeader::decode(bytes).unwrap().unwrap();
    assert!(h.mask.is_none());
    (h.opcode, bytes[n..n + h.payload_len as usize].to_vec())
}

fn expect_failure(input: &[u8], cfg: Config, err: ProtocolError) {
    for chunk in [input.len().max(1), 1] {
        let (mut s, now) = open_server(cfg.clone());
        for piece in input.chunks(chunk) {
            s.receive(now, piece);
        }
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(
            events.last(),
            Some(&Event::Error(ConnectionError::Protocol(err.clone()))),
            "{err:?}"
        );
        let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
        let (op, body) = sent_frame(&out);
        assert_eq!(op, OpCode::Close);
        let code = u16::from_be_bytes([body[0], body[1]]);
        assert_eq!(CloseCode::from(code), err.close_code(), "{err:?}");
        assert!(s.should_close_transport());
        assert_eq!(s.state(), State::Closed);
        // Sticky: later input is ignored, no second error.
        s.receive(now, &client_frame(0x81, b"ignored"));
        assert_eq!(s.poll_event(), None);
        assert_eq!(s.send_text("x"), Err(SendError::Closed));
    }
}

/// A loop that writes while `pending_output` says so, and otherwise reads,
/// must see the Close released by taking the Close or Error event (it
/// comes in a read of its own here, after the messages were answered).
#[test]
fn taking_the_close_or_error_event_counts_the_close_as_pending_output() {
    for (input, code) in [
        (client_frame(0x88, &[0x03, 0xe8]), CloseCode::NORMAL),
        (client_frame(0x81, b"\xff"), CloseCode::INVALID_PAYLOAD),
    ] {
        let (mut s, now) = open_server(Config::default());
        s.receive(now, &client_frame(0x81, b"last"));
        let Some(Event::Text(t)) = s.poll_event() else {
            panic!("expected the message")
        };
        s.send(t).unwrap();
        while s.poll_transmit().is_some() {}
        s.receive(now, &input);
        assert_eq!(s.pending_output(), 0, "held back until the event is taken");
        assert!(matches!(
            s.poll_event(),
            Some(Event::Close(_) | Event::Error(_))
        ));
        assert!(s.pending_output() > 0, "{code:?}");
        let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
        let (op, body) = sent_frame(&out);
        assert_eq!(op, OpCode::Close);
        assert_eq!(
            CloseCode::from(u16::from_be_bytes([body[0], body[1]])),
            code
        );
    }
}

#[test]
fn rfc6455_5_1_to_5_5_every_rejection_with_its_close_code() {
    let d = Config::default;
    expect_failure(b"\x81\x02hi", d(), ProtocolError::UnmaskedFrame);
    expect_failure(
        &client_frame(0x83, b""),
        d(),
        ProtocolError::ReservedOpcode(3),
    );
    expect_failure(
        &client_frame(0x8B, b""),
        d(),
        ProtocolError::ReservedOpcode(0xB),
    );
    expect_failure(
        &client_frame(0xC1, b"x"),
        d(),
        ProtocolError::ReservedBits(4),
    );
    expect_failure(
        &client_frame(0xA1, b"x"),
        d(),
        ProtocolError::ReservedBits(2),
    );
    expect_failure(
        &client_frame(0x09, b""),
        d(),
        ProtocolError::FragmentedControl,
    );
    expect_failure(
        &client_frame(0x89, &[0; 126]),
        d(),
        ProtocolError::ControlExtendedLength,
    );
    expect_failure(
        &client_frame(0x80, b"x"),
        d(),
        ProtocolError::UnexpectedContinuation,
    );
    let mut two_starts = client_frame(0x01, b"a");
    two_starts.extend(client_frame(0x81, b"b"));
    expect_failure(&two_starts, d(), ProtocolError::ExpectedContinuation);
    expect_failure(
        &client_frame(0x81, &[0xff]),
        d(),
        ProtocolError::InvalidUtf8,
    );
    expect_failure(
        &client_frame(0x88, b"\x03"),
        d(),
        ProtocolError::InvalidClosePayload,
    );
    expect_failure(
        &client_frame(0x88, b"\x03\xed"),
        d(),
        ProtocolError::InvalidCloseCode(1005),
    );
    expect_failure(
        &client_frame(0x88, b"\x03\xe8\xc0"),
        d(),
        ProtocolError::InvalidUtf8,
    );
    expect_failure(
        b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00abcd",
        d(),
        ProtocolError::LengthMsbSet,
    );
    expect_failure(
        b"\x82\xfe\x00\x05abcd",
        d(),
        ProtocolError::NonMinimalLength,
    );
}

#[test]
fn limits_fail_with_1009_before_buffering() {
    let small = Config {
        max_frame_size: 100,
        max_message_size: 150,
        max_fragments: 3,
        ..Config::default()
    };
    // The header alone is enough: no payload follows.
    expect_failure(
        b"\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00abcd",
        small.clone(),
        ProtocolError::FrameTooBig {
            size: 1 << 32,
            limit: 100,
        },
    );
    let mut msg = client_frame(0x02, &[0; 100]);
    msg.extend(client_frame(0x00, &[0; 51]));
    expect_failure(
        &msg,
        small.clone(),
        ProtocolError::MessageTooBig {
            size: 151,
            limit: 150,
        },
    );
    let mut many = Vec::new();
    for _ in 0..3 {
        many.extend(client_frame(if many.is_empty() { 2 } else { 0 }, b"x"));
    }
    many.extend(client_frame(0x80, b"x"));
    expect_failure(&many, small, ProtocolError::TooManyFragments { limit: 3 });
}

#[test]
fn rfc6455_8_1_invalid_utf8_fails_fast_mid_frame() {
    let (mut s, now) = open_server(Config::default());
    let mut frame = client_frame(
        0x81,
        &[
            b"valid so far \xce\xba".as_slice(),
            b"\xf4\x90",
            &[b'x'; 200],
        ]
        .concat(),
    );
    // Deliver only the header and the first bytes with the impossible sequence.
    let cut = 8 + 16 + 2;
    s.receive(now, &frame[..cut]);
    assert_eq!(
        s.poll_event(),
        Some(Event::Error(ConnectionError::Protocol(
            ProtocolError::InvalidUtf8
        )))
    );
    frame.clear();
    // A valid prefix of a still-incomplete frame produces nothing yet.
    let (mut s, now) = open_server(Config::default());
    let ok = client_frame(0x81, "ünïcödé".as_bytes());
    s.receive(now, &ok[..ok.len() - 1]);
    assert_eq!(s.poll_event(), None);
    s.receive(now, &ok[ok.len() - 1..]);
    assert_eq!(s.poll_event(), Some(Event::Text("ünïcödé".into())));
}

#[test]
fn client_rejects_masked_server_frames() {
    let now = Instant::now();
    let mut c = Connection::upgraded(
        Role::Client,
        Config::default(),
        Negotiated::default(),
        Some(Box::new(SeededMask::new([1; 32]))),
        now,
    );
    c.receive(now, &client_frame(0x81, b"hi"));
    assert_eq!(
        c.poll_event(),
        Some(Event::Error(ConnectionError::Protocol(
            ProtocolError::MaskedFrame
        )))
    );
    let out: Vec<u8> = std::iter::from_fn(|| c.poll_transmit()).flatten().collect();
    let (h, n) = FrameHeader::decode(&out).unwrap().unwrap();
    assert_eq!(h.opcode, OpCode::Close);
    let mut body = out[n..].to_vec();
    apply_mask(&mut body, h.mask.expect("client frames are masked"), 0);
    assert_eq!(&body[..2], &1002u16.to_be_bytes());
}

#[test]
fn eof_without_close_is_abnormal() {
    let mut p = Pair::default(usize::MAX);
    p.server.receive_eof(p.now);
    assert_eq!(
        p.server.poll_event(),
        Some(Event::Error(ConnectionError::Eof))
    );
    assert_eq!(p.server.state(), State::Closed);
    assert!(p.server.should_close_transport());
    assert_eq!(ConnectionError::Eof.close_code(), CloseCode::ABNORMAL);
}

#[test]
fn ping_flood_replies_are_bounded() {
    let (mut s, now) = open_server(Config::default());
    let mut flood = Vec::new();
    for i in 0..10_000u32 {
        flood.extend(client_frame(0x89, &i.to_be_bytes()));
    }
    s.receive(now, &flood);
    let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
    // 16 pongs of 6 bytes at most, the last one answering the last ping.
    assert_eq!(out.len(), 16 * 6);
    assert_eq!(&out[out.len() - 4..], &9999u32.to_be_bytes());
}

#[test]
fn split_halves_work_apart_and_replies_cross_over() {
    let mut p = Pair::default(usize::MAX);
    let (mut rx, mut tx) = p.server.split().expect("open");
    let now = p.now;
    p.client.ping(b"are you there").unwrap();
    p.client.send_text("to the receiving half").unwrap();
    while let Some(b) = p.client.poll_transmit() {
        rx.receive(now, &b);
    }
    assert_eq!(
        rx.poll_event(),
        Some(Event::Ping(Bytes::from_static(b"are you there")))
    );
    assert_eq!(
        rx.poll_event(),
        Some(Event::Text("to the receiving half".into()))
    );
    assert!(rx.has_pending_replies());
    // The sending half, on its own task, sends data; the Pong goes out with it.
    tx.send_text("from the sending half").unwrap();
    while let Some(b) = tx.poll_transmit() {
        p.client.receive(now, &b);
    }
    let events: Vec<_> = std::iter::from_fn(|| p.client.poll_event()).collect();
    assert_eq!(
        events,
        vec![
            Event::Pong(Bytes::from_static(b"are you there")),
            Event::Text("from the sending half".into())
        ]
    );
    // Closing: the receiving half sees the peer's Close; the echo leaves via the sending half.
    p.client.close(now, CloseCode::NORMAL, "done").unwrap();
    while let Some(b) = p.client.poll_transmit() {
        rx.receive(now, &b);
    }
    assert_eq!(
        rx.poll_event(),
        Some(Event::Close(CloseFrame::new(CloseCode::NORMAL, "done")))
    );
    assert_eq!(tx.send_text("late"), Err(SendError::Closed));
    let echo = tx.poll_transmit().unwrap();
    assert_eq!(&echo[..], b"\x88\x02\x03\xe8");
    assert_eq!(rx.state(), State::Closed);
    assert!(rx.is_done_with_transport());
}

#[test]
fn split_is_refused_before_the_handshake() {
    let c = Connection::server(Config::default(), Instant::now());
    assert!(c.split().is_err());
}

#[test]
fn large_server_payload_is_queued_without_copy() {
    let mut p = Pair::default(usize::MAX);
    let big = Bytes::from(payload(1 << 20));
    p.server.send(big.clone()).unwrap();
    let header = p.server.poll_transmit().unwrap();
    assert_eq!(&header[..], b"\x82\x7f\x00\x00\x00\x00\x00\x10\x00\x00");
    let body = p.server.poll_transmit().unwrap();
    assert_eq!(
        body.as_ptr(),
        big.as_ptr(),
        "the payload is the caller's buffer"
    );
    assert_eq!(p.server.poll_transmit(), None);
}

#[test]
fn client_masks_with_a_fresh_key_per_frame() {
    let mut p = Pair::default(usize::MAX);
    p.client.send_text("a").unwrap();
    p.client.send_text("a").unwrap();
    let out = p.client.poll_transmit().unwrap();
    let (h1, n1) = FrameHeader::decode(&out).unwrap().unwrap();
    let (h2, _) = FrameHeader::decode(&out[n1 + 1..]).unwrap().unwrap();
    assert!(h1.mask.is_some() && h2.mask.is_some());
    assert_ne!(h1.mask, h2.mask);
}

#[test]
fn frames_glued_to_the_handshake_are_processed() {
    let now = Instant::now();
    let mut c = Connection::client(
        Config::default(),
        ClientRequest::new("h", "/"),
        [5; 16],
        SeededMask::new([5; 32]),
        now,
    );
    let mut s = Connection::server(Config::default(), now);
    let mut req = BytesMut::new();
    while let Some(b) = c.poll_transmit() {
        req.extend_from_slice(&b);
    }
    // The client's request and a first frame in one read, before accept.
    c.halves().1.set_open(None);
    c.send_text("early").unwrap();
    while let Some(b) = c.poll_transmit() {
        req.extend_from_slice(&b);
    }
    s.receive(now, &req);
    assert!(matches!(s.poll_event(), Some(Event::Request(_))));
    assert_eq!(s.poll_event(), None);
    s.accept(now, Accept::new()).unwrap();
    assert_eq!(s.poll_event(), Some(Event::Text("early".into())));
}

#[test]
fn rfc7692_compressed_messages_round_trip_through_the_connection() {
    use crate::deflate::DeflateConfig;
    let variants = [
        DeflateConfig::default(),
        DeflateConfig {
            client_no_context_takeover: true,
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        },
        DeflateConfig {
            client_max_window_bits: 9,
            server_max_window_bits: 8,
            ..DeflateConfig::default()
        },
    ];
    for deflate in variants {
        for chunk in [usize::MAX, 3] {
            let cfg = Config {
                deflate: Some(deflate.clone()),
                ..Config::default()
            };
            let mut p = Pair::new(cfg.clone(), cfg, chunk);
            assert!(p.client.negotiated().deflate.is_some(), "{deflate:?}");
            let big = text(200_000);
            for _ in 0..3 {
                p.client.send_text(&big).unwrap();
                p.server.send_text(&big).unwrap();
                p.client.send_binary(b"").unwrap();
                p.server
                    .send_fragment(MessageKind::Binary, &payload(3000), false)
                    .unwrap();
                p.server.ping(b"mid").unwrap();
                p.server
                    .send_fragment(MessageKind::Binary, &payload(5), true)
                    .unwrap();
            }
            p.drive();
            let expect_server = [Event::Text(big.clone().into()), Event::Binary(Bytes::new())];
            // The server's Pings come back as Pongs; the data is what matters here.
            let pongs = p
                .server_events
                .iter()
                .filter(|e| matches!(e, Event::Pong(_)))
                .count();
            assert_eq!(pongs, 3);
            p.server_events.retain(|e| !matches!(e, Event::Pong(_)));
            assert_eq!(p.server_events.len(), 6);
            for (i, e) in p.server_events.iter().enumerate() {
                assert_eq!(e, &expect_server[i % 2], "{deflate:?} chunk {chunk}");
            }
            let joined: Vec<u8> = [payload(3000), payload(5)].concat();
            let client_data: Vec<_> = p
                .client_events
                .iter()
                .filter(|e| !matches!(e, Event::Ping(_)))
                .collect();
            assert_eq!(client_data.len(), 6);
            for pair in client_data.chunks(2) {
                assert_eq!(pair[0], &Event::Text(big.clone().into()));
                assert_eq!(pair[1], &Event::Binary(Bytes::from(joined.clone())));
            }
        }
    }
}

/// Everything `c` has to send, in one piece.
fn drain_output(c: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = c.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn rfc7692_shared_preset_connections_share_the_thread_streams() {
    use crate::budget::MemoryBudget;
    use crate::deflate::{clear_thread_pool, thread_pool_len, DeflateConfig};
    clear_thread_pool();
    let budget = MemoryBudget::new(16 << 20);
    let server_cfg = Config {
        deflate: Some(DeflateConfig::shared()),
        memory_budget: Some(budget.clone()),
        ..Config::default()
    };
    // Clients offer the defaults; the server demands no context takeover
    // both ways (RFC 7692 §7.1.1.2), so both ends share their streams.
    let mut pairs: Vec<Pair> = (0..8)
        .map(|_| Pair::new(Config::with_deflate(), server_cfg.clone(), usize::MAX))
        .collect();
    for p in &pairs {
        let d = p.client.negotiated().deflate.expect("negotiated");
        assert!(d.server_no_context_takeover && d.client_no_context_takeover);
    }
    // Each client streams a 60 KB message in three fragments; each server
    // receives it 1000 bytes per `receive`, the servers in turn, so all
    // eight inflate at once, each past its free allowance in the budget.
    let msg: Vec<u8> = payload(60_000);
    let mut wires: Vec<Vec<u8>> = pairs
        .iter_mut()
        .map(|p| {
            for (i, piece) in msg.chunks(20_000).enumerate() {
                p.client
                    .send_fragment(MessageKind::Binary, piece, i == 2)
                    .unwrap();
            }
            drain_output(&mut p.client)
        })
        .collect();
    let mut pos = 0;
    let mut in_flight_seen = false;
    while wires.iter().any(|w| pos < w.len()) {
        for (p, w) in pairs.iter_mut().zip(&wires) {
            if pos < w.len() {
                p.server.receive(p.now, &w[pos..(pos + 1000).min(w.len())]);
            }
        }
        pos += 1000;
        if thread_pool_len().1 == 0 && budget.in_use() > 0 {
            in_flight_seen = true;
        }
    }
    assert!(in_flight_seen, "eight messages inflating at once");
    for p in &mut pairs {
        assert_eq!(
            p.server.poll_event(),
            Some(Event::Binary(msg.clone().into()))
        );
    }
    assert_eq!(budget.in_use(), 0);
    assert_eq!(thread_pool_len().1, crate::deflate::FREE_PER_CLASS);

    // The servers answer with whole messages: one compressor for all.
    for p in &mut pairs {
        p.server.send_binary(&msg[..5000]).unwrap();
        assert_eq!(thread_pool_len().0, 1);
        p.drive();
        assert_eq!(
            p.client_events.pop(),
            Some(Event::Binary(msg[..5000].to_vec().into()))
        );
    }

    // Mid-message: a failure, a Close and a dropped connection each give
    // the stream and the budget back at once.
    wires.clear();
    for p in &mut pairs[..3] {
        p.client
            .send_fragment(MessageKind::Binary, &msg[..30_000], false)
            .unwrap();
        let w = drain_output(&mut p.client);
        p.server.receive(p.now, &w);
    }
    let free = thread_pool_len().1;
    let now = pairs[0].now;
    assert!(budget.in_use() > 0);
    // Garbage as the next fragment: 1007 (invalid payload data).
    let bad = client_frame(0x00, &[0xff; 8]);
    pairs[0].server.receive(now, &bad);
    assert!(matches!(
        pairs[0].server.poll_event(),
        Some(Event::Error(ConnectionError::Protocol(
            ProtocolError::Inflate(_)
        )))
    ));
    assert_eq!(thread_pool_len().1, free + 1);
    // The peer closes mid-message: its compressor's stream goes back on
    // its Close, our decompressor's on receiving it.
    assert_eq!(thread_pool_len().0, 0, "three clients mid-message");
    pairs[1].client.close(now, CloseCode::NORMAL, "").unwrap();
    assert_eq!(thread_pool_len().0, 1);
    let w = drain_output(&mut pairs[1].client);
    pairs[1].server.receive(now, &w);
    assert!(matches!(
        pairs[1].server.poll_event(),
        Some(Event::Close(_))
    ));
    assert_eq!(thread_pool_len().1, free + 2);
    // The application drops the connection.
    let gone = pairs.remove(2);
    drop(gone);
    assert_eq!(
        thread_pool_len().1,
        (free + 3).min(crate::deflate::FREE_PER_CLASS)
    );
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn rfc7692_compressed_bit_and_uncompressed_opt_out() {
    let cfg = Config::with_deflate();
    let mut p = Pair::new(cfg.clone(), cfg, usize::MAX);
    p.server.send_text(&"a".repeat(1000)).unwrap();
    let out = p.server.poll_transmit().unwrap();
    assert_eq!(out[0], 0xC1, "FIN + RSV1 + text");
    assert!(out.len() < 100, "1000 repeated bytes compress");
    p.server
        .send_uncompressed(Message::Binary(Bytes::from(vec![7; 1000])))
        .unwrap();
    let out = p.server.poll_transmit().unwrap();
    assert_eq!(out[0], 0x82, "FIN + binary, RSV1 clear");
    assert_eq!(out.len(), 4 + 1000);
}

#[test]
fn rfc7692_decompression_bomb_fails_with_1009() {
    use crate::deflate::{Compressor, DeflateConfig, DeflateParams};
    use crate::MemoryBudget;
    let params = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    // 64 MiB of zeros compress to about 64 KiB.
    let mut comp = Compressor::new(&params, &DeflateConfig::default(), Role::Client);
    let mut bomb = BytesMut::new();
    comp.compress(&vec![0u8; 64 << 20], true, &mut bomb);
    let budget = MemoryBudget::new(64 << 20);
    let cfg = Config {
        max_message_size: 1 << 20,
        memory_budget: Some(budget.clone()),
        ..Config::default()
    };
    let now = Instant::now();
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: Some(params),
    };
    let mut s = Connection::upgraded(Role::Server, cfg, negotiated, None, now);
    // A final compressed Binary frame (FIN, RSV1), masked.
    let frame = client_frame(0xC2, &bomb);
    // Inflated a slice per call: the first call stops at the quantum, and
    // says that work is left without new input.
    s.receive(now, &frame);
    assert_eq!(s.poll_event(), None);
    assert!(s.has_pending_work());
    let quantum = super::recv::INFLATE_QUANTUM;
    let mut held = s.rx.message_len();
    assert!(held > 0 && held <= quantum, "{held} bytes after one call");
    // Each later call inflates at most the quantum more, and the budget
    // reservation follows: it never falls, covers what is held, and grows.
    let first = budget.in_use();
    assert!(first >= held, "{budget:?} for {held} bytes");
    let (mut calls, mut reserved) = (1, first);
    let ev = loop {
        s.resume(now);
        calls += 1;
        if let Some(ev) = s.poll_event() {
            break ev;
        }
        assert!(s.has_pending_work());
        let now_held = s.rx.message_len();
        assert!(
            now_held > held && now_held - held <= quantum,
            "{held} -> {now_held}"
        );
        held = now_held;
        assert!(
            budget.in_use() >= reserved.max(held),
            "{budget:?} for {held} bytes"
        );
        reserved = budget.in_use();
    };
    assert!(reserved > first, "{budget:?}");
    assert!(calls > (1 << 20) / quantum, "{calls} calls");
    match ev {
        Event::Error(ConnectionError::Protocol(e @ ProtocolError::MessageTooBig { .. })) => {
            assert_eq!(e.close_code(), CloseCode::TOO_BIG)
        }
        other => panic!("{other:?}"),
    }
    assert!(!s.has_pending_work());
    assert_eq!(
        budget.in_use(),
        0,
        "the reservation returns with the failure"
    );
    let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
    assert_eq!(out[0], 0x88, "a Close frame");
    assert_eq!(&out[2..4], &1009u16.to_be_bytes());
}

#[test]
fn a_failure_between_slices_ends_the_inflate_and_its_reservation() {
    use crate::deflate::{Compressor, DeflateConfig, DeflateParams};
    use crate::MemoryBudget;
    let params = DeflateParams::default();
    let mut comp = Compressor::new(&params, &DeflateConfig::default(), Role::Client);
    let mut bomb = BytesMut::new();
    comp.compress(&vec![0u8; 8 << 20], true, &mut bomb);
    // A final compressed Binary frame (FIN, RSV1), masked.
    let frame = client_frame(0xC2, &bomb);
    let budget = MemoryBudget::new(64 << 20);
    let cfg = Config {
        memory_budget: Some(budget.clone()),
        ping_interval: Some(Duration::from_secs(1)),
        pong_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let now = Instant::now();
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: Some(params),
    };
    let mut s = Connection::upgraded(Role::Server, cfg, negotiated, None, now);
    s.receive(now, &frame);
    assert!(s.has_pending_work());
    assert!(budget.in_use() > 0);
    // The keepalive Ping goes unanswered (the driver was slow to resume):
    // the connection fails between two slices.
    let mut t = now;
    while s.state() == State::Open {
        t = s.poll_timeout().expect("keepalive armed");
        s.handle_timeout(t);
        while s.poll_transmit().is_some() {}
    }
    assert!(!s.has_pending_work(), "no work is left once failed");
    assert_eq!(budget.in_use(), 0, "the paused frame's reservation returns");
    s.resume(t);
    let evs: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        matches!(
            &evs[..],
            [Event::Error(ConnectionError::TimedOut(Timeout::Pong))]
        ),
        "{evs:?}"
    );

    // The same when our output passes `max_pending_output` (the peer does
    // not read): `resume` drops the frame rather than inflating on.
    let cfg = Config {
        memory_budget: Some(budget.clone()),
        max_pending_output: Some(1 << 20),
        ..Config::default()
    };
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: Some(params),
    };
    let mut s = Connection::upgraded(Role::Server, cfg, negotiated, None, now);
    s.receive(now, &frame);
    assert!(s.has_pending_work());
    s.send_uncompressed(Bytes::from(vec![0u8; 2 << 20]))
        .unwrap();
    assert_eq!(s.send_binary(b"x"), Err(SendError::PendingOutputLimit));
    s.resume(now);
    assert!(!s.has_pending_work());
    assert_eq!(budget.in_use(), 0);
    let evs: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        matches!(
            &evs[..],
            [Event::Error(ConnectionError::PendingOutputLimit)]
        ),
        "{evs:?}"
    );
}

/// Compressed client traffic and how a server core reports it, fed in
/// pieces of `chunk` bytes with slices of `quantum`; `eager`: resume after
/// each piece until no work is left (a driver), else feed on and resume
/// only at the end (bytes fed meanwhile wait behind the work).
fn sliced_run(
    wire: &[u8],
    cfg: &Config,
    params: &crate::DeflateParams,
    quantum: usize,
    chunk: usize,
    eager: bool,
) -> Vec<Event> {
    let now = Instant::now();
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: Some(*params),
    };
    let mut s = Connection::upgraded(Role::Server, cfg.clone(), negotiated, None, now);
    s.rx.set_quantum(quantum);
    let mut evs = Vec::new();
    let mut drain = |s: &mut Connection| {
        evs.extend(std::iter::from_fn(|| s.poll_event()));
        while s.poll_transmit().is_some() {}
    };
    for piece in wire.chunks(chunk) {
        s.receive(now, piece);
        drain(&mut s);
        while eager && s.has_pending_work() {
            s.resume(now);
            drain(&mut s);
        }
    }
    while s.has_pending_work() {
        s.resume(now);
        drain(&mut s);
    }
    s.receive_eof(now);
    drain(&mut s);
    evs
}

#[test]
fn rfc7692_inflating_in_slices_changes_no_event_whatever_the_slice_and_the_chunking() {
    use crate::deflate::DeflateConfig;
    use crate::DeflateParams;
    let now = Instant::now();
    for no_takeover in [false, true] {
        for reassemble in [true, false] {
            let params = DeflateParams {
                client_no_context_takeover: no_takeover,
                server_no_context_takeover: no_takeover,
                ..DeflateParams::default()
            };
            // What a client sends: messages below and above the quantum,
            // one frame and several, a burst of small ones that together
            // pass it, a Ping and a plain message between, then a bomb
            // past the limit.
            let mut client = Connection::upgraded(
                Role::Client,
                Config {
                    deflate: Some(DeflateConfig::default()),
                    ..Config::default()
                },
                Negotiated {
                    subprotocol: None,
                    deflate: Some(params),
                },
                Some(Box::new(SeededMask::new([3; 32]))),
                now,
            );
            client.send_text("small").unwrap();
            client.send_text(&text(600_000)).unwrap();
            for (i, last) in [(0, false), (1, false), (2, true)] {
                client
                    .send_fragment(MessageKind::Binary, &payload(300_000 + i), last)
                    .unwrap();
            }
            for i in 0..40 {
                client.send_text(&text(20_000 + i)).unwrap();
            }
            client.ping(b"between").unwrap();
            client
                .send_uncompressed(Bytes::from_static(b"plain"))
                .unwrap();
            client.send_binary(&vec![0u8; 3 << 20]).unwrap();
            let wire: Vec<u8> = std::iter::from_fn(|| client.poll_transmit())
                .flatten()
                .collect();
            // Reassembling, a budget that the messages fit in and the bomb
            // does not: its refusal (and what it says was needed) must not
            // depend on the slices either. Streaming, the message limit.
            let budget = reassemble.then(|| crate::MemoryBudget::new(1536 << 10));
            let cfg = Config {
                max_message_size: 2 << 20,
                reassemble,
                memory_budget: budget.clone(),
                ..Config::default()
            };
            let reference = sliced_run(&wire, &cfg, &params, usize::MAX, wire.len(), true);
            let last = match reference.last() {
                Some(Event::Error(ConnectionError::Protocol(e))) => e,
                other => panic!("{other:?}"),
            };
            if reassemble {
                assert!(
                    matches!(last, ProtocolError::MemoryBudget { .. }),
                    "{last:?}"
                );
            } else {
                assert!(
                    matches!(last, ProtocolError::MessageTooBig { .. }),
                    "{last:?}"
                );
            }
            let messages = if reassemble {
                1 + 1 + 1 + 40
            } else {
                1 + 1 + 3 + 40
            };
            assert_eq!(
                reference.len(),
                messages + 1 + 1 + 1,
                "no_takeover {no_takeover}"
            );
            for quantum in [64 << 10, 100_000, super::recv::INFLATE_QUANTUM, 1 << 20] {
                for chunk in [wire.len(), 65536, 1000, 7] {
                    for eager in [true, false] {
                        let run = sliced_run(&wire, &cfg, &params, quantum, chunk, eager);
                        assert!(
                            run == reference,
                            "quantum {quantum}, chunk {chunk}, eager {eager}, \
                             no_takeover {no_takeover}, reassemble {reassemble}"
                        );
                        if let Some(b) = &budget {
                            assert_eq!(b.in_use(), 0, "reservations left behind");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn answers_to_messages_before_a_close_go_out_before_the_close_echo() {
    let mut p = Pair::default(usize::MAX);
    // Two messages and a Close arrive in one read.
    p.client.send_text("one").unwrap();
    p.client.send_text("two").unwrap();
    p.client.close(p.now, CloseCode::NORMAL, "").unwrap();
    let wire: Vec<u8> = std::iter::from_fn(|| p.client.poll_transmit())
        .flatten()
        .collect();
    p.server.receive(p.now, &wire);
    // The application echoes each message as it takes it.
    let mut answered = 0;
    while let Some(e) = p.server.poll_event() {
        match e {
            Event::Text(t) => {
                p.server.send(t).unwrap();
                answered += 1;
            }
            Event::Close(f) => assert_eq!(f.code, CloseCode::NORMAL),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answered, 2);
    assert_eq!(p.server.send_text("after close"), Err(SendError::Closed));
    let out: Vec<u8> = std::iter::from_fn(|| p.server.poll_transmit())
        .flatten()
        .collect();
    assert_eq!(&out[..], b"\x81\x03one\x81\x03two\x88\x02\x03\xe8");
    assert!(p.server.should_close_transport());
}

#[test]
fn answers_to_messages_before_a_protocol_error_go_out_before_our_close() {
    // Autobahn 3.2: a valid message, then a frame with a reserved bit, in one read.
    let (mut s, now) = open_server(Config::default());
    let mut wire = client_frame(0x81, b"Hello, world!");
    wire.extend(client_frame(0xA1, b"Hello, world!"));
    wire.extend(client_frame(0x89, b""));
    s.receive(now, &wire);
    assert!(
        !s.should_close_transport(),
        "the Close has not been sent yet"
    );
    match s.poll_event() {
        Some(Event::Text(t)) => s.send(t).unwrap(),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.poll_event(), Some(Event::Error(_))));
    assert_eq!(s.poll_event(), None, "no Pong, no event after the error");
    let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
    assert_eq!(&out[..15], b"\x81\x0dHello, world!");
    assert_eq!(out[15], 0x88);
    assert_eq!(&out[17..19], &1002u16.to_be_bytes());
    assert!(s.should_close_transport());
}

#[test]
fn sending_half_refuses_frames_once_the_receiving_half_is_done() {
    let p = Pair::default(usize::MAX);
    let (mut rx, mut tx) = p.server.split().expect("open");
    rx.receive_eof(p.now);
    assert_eq!(rx.poll_event(), Some(Event::Error(ConnectionError::Eof)));
    assert_eq!(tx.send_text("nobody listens"), Err(SendError::Closed));
    assert_eq!(tx.ping(b""), Err(SendError::Closed));
    assert_eq!(
        tx.close(p.now, CloseCode::NORMAL, ""),
        Err(SendError::Closed)
    );
}

#[test]
fn a_failure_waiting_for_the_application_has_one_bounded_timer() {
    // A message the application has not taken, then a bad frame: the Close
    // waits for the Error event, but not forever, and the timer never spins.
    let cfg = Config {
        ping_interval: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let (mut s, now) = open_server(cfg);
    let mut wire = client_frame(0x81, b"unread");
    wire.extend(client_frame(0x83, b""));
    s.receive(now, &wire);
    let t = s
        .poll_timeout()
        .expect("a bounded wait for the application");
    assert_eq!(t, now + Config::default().close_timeout);
    // Firing early changes nothing, and the deadline stays put (no spinning).
    s.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(s.poll_timeout(), Some(t));
    assert_eq!(s.poll_transmit(), None);
    s.handle_timeout(t);
    let out: Vec<u8> = std::iter::from_fn(|| s.poll_transmit()).flatten().collect();
    assert_eq!(out[0], 0x88);
    assert_eq!(&out[2..4], &1002u16.to_be_bytes());
    assert!(s.should_close_transport());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn unbounded_timeouts_mean_never_not_overflow() {
    let cfg = Config {
        opening_handshake_timeout: Duration::MAX,
        close_timeout: Duration::MAX,
        pong_timeout: Duration::MAX,
        ping_interval: Some(Duration::MAX),
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg.clone(), usize::MAX);
    assert_eq!(p.client.poll_timeout(), None);
    p.client.close(p.now, CloseCode::NORMAL, "").unwrap();
    assert_eq!(p.client.poll_timeout(), None);
    p.drive();
    assert_eq!(p.client.poll_timeout(), None);
    let s = Connection::server(cfg, p.now);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn halves_do_not_parse_frames_before_the_handshake() {
    let now = Instant::now();
    let mut s = Connection::server(Config::default(), now);
    s.halves().0.receive(now, &client_frame(0x81, b"pre"));
    assert_eq!(s.poll_event(), None);
}

#[test]
fn a_small_message_after_a_large_frame_does_not_pin_its_buffer() {
    let (mut s, now) = open_server(Config::default());
    let mut wire = client_frame(0x82, &payload(1 << 20));
    wire.extend(client_frame(0x81, b"hi"));
    s.receive(now, &wire);
    let Some(Event::Binary(big)) = s.poll_event() else {
        panic!("binary")
    };
    let Some(Event::Text(small)) = s.poll_event() else {
        panic!("text")
    };
    // The large payload is still zero-copy; the small one is its own allocation.
    let big_range = big.as_ptr() as usize..big.as_ptr() as usize + (2 << 20);
    assert!(!big_range.contains(&(small.as_bytes().as_ptr() as usize)));
    assert_eq!(small, "hi");
}

/// An open connection of `role` (a client masks with a seeded source).
fn open_upgraded(role: Role) -> Connection {
    let mask = (role == Role::Client).then(|| Box::new(SeededMask::new([3; 32])) as Box<_>);
    Connection::upgraded(
        role,
        Config::default(),
        Negotiated::default(),
        mask,
        Instant::now(),
    )
}

/// What `poll_transmit` hands out after `queue` ran on `c`: the reference
/// the borrowed-output paths are compared with.
fn transmitted(mut c: Connection, queue: fn(&mut Connection)) -> Vec<u8> {
    queue(&mut c);
    std::iter::from_fn(|| c.poll_transmit()).flatten().collect()
}

/// `peek_transmit`/`advance_transmit` hand out the same bytes as
/// `poll_transmit`, in any write sizes, mixed with it, across zero-copy
/// chunks and control replies.
#[test]
fn peek_transmit_matches_poll_transmit() {
    fn queue(c: &mut Connection) {
        c.send_binary(b"a").unwrap();
        c.send(Bytes::from(payload(5000))).unwrap(); // a zero-copy chunk (server)
        c.send_text("tail").unwrap();
        c.ping(b"p").unwrap();
        c.send(Bytes::from(payload(300))).unwrap();
    }
    for role in [Role::Server, Role::Client] {
        let open = || open_upgraded(role);
        let want = transmitted(open(), queue);
        for step in [1, 2, 7, 100, 4096, usize::MAX] {
            let mut c = open();
            queue(&mut c);
            let mut got = Vec::new();
            let mut turn = 0;
            loop {
                turn += 1;
                if turn % 5 == 0 {
                    // Mixed with poll_transmit.
                    match c.poll_transmit() {
                        Some(b) => got.extend_from_slice(&b),
                        None => break,
                    }
                    continue;
                }
                let (_, tx) = c.halves();
                let Some(buf) = tx.peek_transmit() else { break };
                let n = buf.len().min(step);
                got.extend_from_slice(&buf[..n]);
                tx.advance_transmit(n);
            }
            assert_eq!(got, want, "{role:?} step {step}");
            assert_eq!(c.pending_output(), 0);
            // Over-advancing past what was peeked is clamped.
            c.send_binary(b"xyz").unwrap();
            let (_, tx) = c.halves();
            let len = tx.peek_transmit().unwrap().len();
            tx.advance_transmit(len + 10);
            assert_eq!(tx.pending_output(), 0);
            assert!(tx.peek_transmit().is_none());
        }
    }
}

/// `peek_transmit_vectored` shows the queued output in order across the
/// zero-copy chunks and the encode buffer, and `advance_transmit` takes a
/// vectored write's count wherever it ends: the bytes are those of
/// `poll_transmit`, for any number of slots and any write size.
#[test]
fn vectored_peek_and_advance_match_poll_transmit() {
    fn queue(c: &mut Connection) {
        c.send_binary(b"a").unwrap();
        c.send(Bytes::from(payload(5000))).unwrap(); // a chunk of its own (server)
        c.send_text("tail").unwrap();
        c.send(Bytes::from(payload(4096))).unwrap();
        c.ping(b"p").unwrap();
        c.send(Bytes::from(payload(300))).unwrap();
    }
    for role in [Role::Server, Role::Client] {
        let open = || open_upgraded(role);
        let want = transmitted(open(), queue);
        for slots in [1, 2, 3, 8] {
            for step in [1, 3, 101, 4097, 5010, usize::MAX] {
                let mut c = open();
                queue(&mut c);
                let mut got = Vec::new();
                let mut most = 0;
                loop {
                    let mut bufs = vec![IoSlice::new(&[]); slots];
                    let k = c.peek_transmit_vectored(&mut bufs);
                    if k == 0 {
                        break;
                    }
                    most = most.max(k);
                    // A transport that takes `step` bytes of the slices.
                    let mut n = 0;
                    for b in &bufs[..k] {
                        let take = b.len().min(step - n);
                        got.extend_from_slice(&b[..take]);
                        n += take;
                        if n == step {
                            break;
                        }
                    }
                    c.advance_transmit(n);
                }
                assert_eq!(got, want, "{role:?} {slots} slots, step {step}");
                assert_eq!(c.pending_output(), 0);
                if role == Role::Server && step == usize::MAX {
                    // header+"a", 5000, header+"tail"+header, 4096, the rest.
                    assert_eq!(most, slots.min(5), "{slots} slots");
                }
            }
        }
        // Advancing past everything queued counts as all of it.
        let mut c = open();
        queue(&mut c);
        c.advance_transmit(usize::MAX);
        assert_eq!(c.pending_output(), 0);
        assert_eq!(c.peek_transmit_vectored(&mut [IoSlice::new(&[])]), 0);
        // A dead transport's output is dropped; replies queued meanwhile too.
        queue(&mut c);
        c.clear_transmit();
        assert_eq!(c.pending_output(), 0);
        assert!(c.poll_transmit().is_none());
    }
}

/// One frame as `role`'s peer sends it: masked (with a key derived from
/// `seed`) when it goes to a server.
fn peer_frame(role: Role, first: u8, payload: &[u8], seed: u32) -> Vec<u8> {
    let mask = (role == Role::Server).then(|| (seed.wrapping_mul(0x9E37_79B9) | 1).to_le_bytes());
    let mut out = BytesMut::new();
    FrameHeader {
        fin: first & 0x80 != 0,
        rsv: (first >> 4) & 7,
        opcode: OpCode::from_u8(first & 0xF).unwrap_or(OpCode::Binary),
        mask,
        payload_len: payload.len() as u64,
    }
    .encode_frame(payload, &mut out);
    out[0] = first; // reserved opcodes cannot be built through OpCode
    out.to_vec()
}

/// Everything a core does with `input` fed in `pieces`: its events and its
/// output bytes, with the small-frame fast path on or off.
fn run_core(role: Role, cfg: &Config, fast: bool, pieces: &[&[u8]]) -> (Vec<Event>, Vec<u8>) {
    let (events, out, _) = run_core_taking(role, cfg, fast, pieces, usize::MAX, false);
    (events, out)
}

/// Feeds `pieces`, taking at most `take` events after each, then (with
/// `eof`) ends the stream and takes the rest. Returns the events, the
/// output, and what `pending_events` said after each piece.
fn run_core_taking(
    role: Role,
    cfg: &Config,
    fast: bool,
    pieces: &[&[u8]],
    take: usize,
    eof: bool,
) -> (Vec<Event>, Vec<u8>, Vec<usize>) {
    let now = Instant::now();
    let mask = (role == Role::Client).then(|| Box::new(SeededMask::new([5; 32])) as Box<_>);
    let mut c = Connection::upgraded(role, cfg.clone(), Negotiated::default(), mask, now);
    if !fast {
        c.halves().0.disable_fast_path();
    }
    let mut events = Vec::new();
    let mut pending = Vec::new();
    for p in pieces {
        c.receive(now, p);
        pending.push(c.pending_events());
        events.extend(std::iter::from_fn(|| c.poll_event()).take(take));
    }
    if eof {
        c.receive_eof(now);
    }
    events.extend(std::iter::from_fn(|| c.poll_event()));
    let out = std::iter::from_fn(|| c.poll_transmit()).flatten().collect();
    (events, out, pending)
}

/// Traffic that mixes what the fast path takes (small whole Text/Binary
/// frames, empty ones, 125-byte ones, multi-byte characters) with what it
/// must leave to the full path (control frames, fragments, 16-bit
/// lengths, a message in progress), ending with a Close.
fn mixed_traffic(role: Role) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut seed = 0;
    let mut f = |first: u8, payload: &[u8]| {
        seed += 1;
        wire.extend(peer_frame(role, first, payload, seed));
    };
    f(0x81, "héllo".as_bytes());
    f(0x82, &[]);
    f(0x81, b"");
    f(0x82, &payload(125));
    f(0x82, &payload(126));
    f(0x81, text(125).as_bytes());
    f(0x89, b"ping");
    f(0x82, &payload(16));
    f(0x01, "frag".as_bytes());
    f(0x8A, b"pong in between");
    f(0x80, " mënt".as_bytes());
    f(0x81, "𝄞 after a fragmented message".as_bytes());
    f(0x02, &payload(3));
    f(0x00, &payload(4));
    f(0x80, &payload(5));
    for i in 0..20 {
        if i % 2 == 0 {
            f(0x81, text(i * 6).as_bytes());
        } else {
            f(0x82, &payload(i * 6));
        }
    }
    f(0x88, &[0x03, 0xe8, b'b', b'y', b'e']);
    wire
}

#[test]
fn small_frame_fast_path_matches_the_full_path_at_every_split() {
    for role in [Role::Server, Role::Client] {
        let wire = mixed_traffic(role);
        for reassemble in [true, false] {
            let cfg = Config {
                reassemble,
                ..Config::default()
            };
            let want = run_core(role, &cfg, false, &[&wire]);
            assert!(
                want.0.len() > 30 && matches!(want.0.last(), Some(Event::Close(_))),
                "{role:?}: {:?}",
                want.0.last()
            );
            assert_eq!(run_core(role, &cfg, true, &[&wire]), want, "{role:?} whole");
            for cut in 0..=wire.len() {
                let (a, b) = wire.split_at(cut);
                assert_eq!(
                    run_core(role, &cfg, true, &[a, b]),
                    want,
                    "{role:?} reassemble {reassemble} cut {cut}"
                );
            }
            let bytes: Vec<&[u8]> = wire.chunks(1).collect();
            assert_eq!(run_core(role, &cfg, true, &bytes), want, "{role:?} bytes");
        }
    }
}

/// Small frames the fast path checked wait in the input buffer until
/// `poll_event` takes them; events queued meanwhile (a control frame, an
/// error, the end of the stream) must still come after them, and
/// `pending_events` must count them. The application here leaves events
/// behind between reads, which is when the two can meet.
#[test]
fn small_frames_left_between_reads_keep_their_order_and_count() {
    for role in [Role::Server, Role::Client] {
        let wire = mixed_traffic(role);
        // Without the final Close, so the end of the stream is an Error.
        let close = peer_frame(role, 0x88, &[0x03, 0xe8, b'b', b'y', b'e'], 0).len();
        let open_wire = &wire[..wire.len() - close];
        let bad = [open_wire, &peer_frame(role, 0x81, b"bad \xff", 3)].concat();
        let cfg = Config::default();
        for (name, wire, eof) in [
            ("close", &wire[..], false),
            ("eof", open_wire, true),
            ("bad utf-8", &bad[..], false),
        ] {
            for take in [0, 1, 3] {
                for cut in (0..=wire.len()).step_by(7) {
                    let (a, rest) = wire.split_at(cut);
                    let (b, c) = rest.split_at(rest.len() / 2);
                    let pieces = [a, b, c];
                    let want = run_core_taking(role, &cfg, false, &pieces, take, eof);
                    let got = run_core_taking(role, &cfg, true, &pieces, take, eof);
                    assert_eq!(got, want, "{role:?} {name} take {take} cut {cut}");
                }
            }
        }
    }
}

#[test]
fn small_frame_fast_path_rejects_what_the_full_path_rejects() {
    let d = Config::default;
    let tight = Config {
        max_frame_size: 10,
        max_message_size: 12,
        ..Config::default()
    };
    for role in [Role::Server, Role::Client] {
        let good = |i: u32| peer_frame(role, 0x81, b"fine", i);
        let other = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        let cases: Vec<(Vec<u8>, Config)> = vec![
            (peer_frame(role, 0x81, b"bad \xff utf-8", 9), d()),
            (peer_frame(role, 0x81, b"cut \xe2\x82", 9), d()),
            (peer_frame(role, 0x81, b"\xed\xa0\x80 surrogate", 9), d()),
            (peer_frame(role, 0xC1, b"rsv1", 9), d()),
            (peer_frame(role, 0xA2, b"rsv2", 9), d()),
            (peer_frame(role, 0x83, b"reserved op", 9), d()),
            (peer_frame(other, 0x82, b"wrong masking", 9), d()),
            (peer_frame(role, 0x80, b"stray continuation", 9), d()),
            (peer_frame(role, 0x82, &payload(11), 9), tight.clone()),
            (
                [
                    peer_frame(role, 0x02, &payload(8), 8),
                    peer_frame(role, 0x80, &payload(8), 9),
                ]
                .concat(),
                tight.clone(),
            ),
            (
                peer_frame(role, 0x82, &payload(1), 9),
                Config {
                    max_fragments: 0,
                    ..d()
                },
            ),
        ];
        for (i, (bad, cfg)) in cases.iter().enumerate() {
            let wire = [good(1), good(2), bad.clone(), good(3)].concat();
            let want = run_core(role, cfg, false, &[&wire]);
            assert!(
                matches!(want.0.last(), Some(Event::Error(_))),
                "{role:?} case {i}: {:?}",
                want.0
            );
            assert_eq!(
                run_core(role, cfg, true, &[&wire]),
                want,
                "{role:?} case {i}"
            );
            for cut in 0..=wire.len() {
                let (a, b) = wire.split_at(cut);
                assert_eq!(
                    run_core(role, cfg, true, &[a, b]),
                    want,
                    "{role:?} case {i} cut {cut}"
                );
            }
        }
    }
}

/// Large reads are parsed in steps, and the payload of a frame in progress
/// is copied, unmasked and validated on the way in: whatever the read
/// sizes, the events are those of the whole input, and invalid UTF-8 deep
/// in a large frame still fails as soon as it has arrived.
#[test]
fn large_frames_in_any_read_sizes() {
    let big_text = text(200_000);
    for role in [Role::Server, Role::Client] {
        let mut wire = peer_frame(role, 0x81, big_text.as_bytes(), 1);
        wire.extend(peer_frame(role, 0x89, b"between", 2));
        wire.extend(peer_frame(role, 0x02, &payload(70_000), 3));
        wire.extend(peer_frame(role, 0x80, &payload(30_000), 4));
        wire.extend(peer_frame(role, 0x81, "small é".as_bytes(), 5));
        let want = run_core(role, &Config::default(), true, &[&wire]);
        assert_eq!(want.0.len(), 4, "{:?}", want.0.len());
        assert_eq!(want.0[0], Event::Text(big_text.as_str().into()));
        for size in [1, 999, 16 << 10, (16 << 10) + 1, 65536, 100_000] {
            let pieces: Vec<&[u8]> = wire.chunks(size).collect();
            assert_eq!(
                run_core(role, &Config::default(), true, &pieces),
                want,
                "{role:?} reads of {size}"
            );
        }
        for at in [0, 16383, 16384, 100_001, 199_999] {
            let mut bad = big_text.clone().into_bytes();
            bad[at] = 0xFF;
            let wire = peer_frame(role, 0x81, &bad, 7);
            let hlen = wire.len() - bad.len();
            // Only up to the bad byte: the error is already there.
            let upto = &wire[..hlen + at + 1];
            for size in [1000, 16 << 10, 65536, upto.len()] {
                let pieces: Vec<&[u8]> = upto.chunks(size).collect();
                let (events, _) = run_core(role, &Config::default(), true, &pieces);
                assert_eq!(
                    events,
                    vec![Event::Error(ConnectionError::Protocol(
                        ProtocolError::InvalidUtf8
                    ))],
                    "{role:?} bad byte at {at}, reads of {size}"
                );
            }
        }
    }
}

/// Large and small messages in reads of pseudo-random sizes (the way a
/// socket delivers them): every message arrives whole and in order.
#[test]
fn messages_in_reads_of_random_sizes() {
    for role in [Role::Server, Role::Client] {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for i in 0..300u32 {
            if i % 10 == 0 {
                let p = vec![i as u8; 300_000];
                wire.extend(peer_frame(role, 0x82, &p, i));
                want.push(Event::Binary(Bytes::from(p)));
            } else {
                let t = format!("msg {i}");
                wire.extend(peer_frame(role, 0x81, t.as_bytes(), i));
                want.push(Event::Text(t.as_str().into()));
            }
        }
        let mut seed = 12345u64;
        for _round in 0..5 {
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let n = ((seed >> 33) as usize % 70_000 + 1).min(wire.len() - at);
                pieces.push(&wire[at..at + n]);
                at += n;
            }
            let (events, _) = run_core(role, &Config::default(), true, &pieces);
            assert_eq!(events.len(), want.len(), "{role:?}");
            assert!(events == want, "{role:?}");
        }
    }
}

/// Found by fuzzing and by a differential run against python-websockets: a
/// text frame cut short behind whole small frames skipped the fail-fast
/// UTF-8 check when the whole frames were still waiting in the input
/// buffer, so the outcome depended on where the reads were cut.
#[test]
fn invalid_utf8_behind_waiting_small_frames_fails_whatever_the_chunking() {
    let eof = Event::Error(ConnectionError::Eof);
    let bad = Event::Error(ConnectionError::Protocol(ProtocolError::InvalidUtf8));
    // (frames before, text payload, bytes of it sent, the last event)
    type Case<'a> = (&'a [(u8, &'a [u8])], &'a [u8], usize, &'a Event);
    for role in [Role::Client, Role::Server] {
        let cases: [Case<'_>; 5] = [
            // The fuzzer's input: an empty text frame, then 0x80 in a cut one.
            (
                &[(0x81, b"")],
                &[0, 0, 0, 0, 0, 0, 0x80, 0, 0x81, 0, 0],
                8,
                &bad,
            ),
            // The differential run's: "abc" binary, then 0xff.
            (
                &[(0x82, b"abc")],
                &[0xff, b'a', b'b', 0, 0, 0, 0, 0, 0],
                3,
                &bad,
            ),
            // Several frames waiting, invalid byte first in the cut frame.
            (&[(0x81, b"x"), (0x82, b"yz")], &[0xc0, 0x80, b'a'], 1, &bad),
            // Cut inside a valid two-byte character: nothing to fail on yet.
            (&[(0x81, b"x")], "é and more".as_bytes(), 1, &eof),
            // Valid so far, the invalid byte not sent.
            (&[(0x82, b"abc")], &[b'a', b'b', 0xff], 2, &eof),
        ];
        for (i, (before, text, sent, last)) in cases.into_iter().enumerate() {
            let mut wire = Vec::new();
            for (n, (first, payload)) in before.iter().enumerate() {
                wire.extend(peer_frame(role, *first, payload, n as u32));
            }
            let cut = peer_frame(role, 0x81, text, 99);
            let head = cut.len() - text.len();
            wire.extend_from_slice(&cut[..head + sent]);
            let cfg = Config::default();
            let whole = run_core_taking(role, &cfg, true, &[&wire], usize::MAX, true).0;
            let bytes: Vec<&[u8]> = wire.chunks(1).collect();
            let pieces = run_core_taking(role, &cfg, true, &bytes, usize::MAX, true).0;
            let full = run_core_taking(role, &cfg, false, &[&wire], usize::MAX, true).0;
            assert_eq!(whole, pieces, "{role:?} case {i}: whole vs byte by byte");
            assert_eq!(whole, full, "{role:?} case {i}: fast vs full path");
            assert_eq!(
                whole.len(),
                before.len() + 1,
                "{role:?} case {i}: {whole:?}"
            );
            assert_eq!(whole.last(), Some(last), "{role:?} case {i}");
        }
    }
}

/// Found by a differential run against python-websockets: under context
/// takeover a message ended by a BFINAL block (RFC 7692 §7.2.3.4) lost the
/// window, so the next one, copying back into it, failed to inflate.
#[test]
fn rfc7692_a_bfinal_message_keeps_its_window_for_the_next() {
    let wire = [
        0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, // "Hello", BFINAL
        0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00, // copy 5 from 5 back
        0x88, 0x02, 0x03, 0xe8, // Close 1000
    ];
    let now = Instant::now();
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: Some(crate::DeflateParams::default()),
    };
    for chunk in [wire.len(), 1] {
        let mask = Box::new(SeededMask::new([5; 32]));
        let mut c = Connection::upgraded(
            Role::Client,
            Config::default(),
            negotiated.clone(),
            Some(mask),
            now,
        );
        let mut events = Vec::new();
        for piece in wire.chunks(chunk) {
            c.receive(now, piece);
            events.extend(std::iter::from_fn(|| c.poll_event()));
        }
        let texts: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["Hello", "Hello"], "{events:?}");
        assert!(
            matches!(events.last(), Some(Event::Close(f)) if f.code == crate::CloseCode::NORMAL)
        );
    }
}

/// Our output decoded into frames, unmasked: (opcode, payload).
fn own_frames(mut out: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Some((h, n)) = FrameHeader::decode(out).unwrap() {
        let end = n + h.payload_len as usize;
        let mut payload = out[n..end].to_vec();
        if let Some(m) = h.mask {
            apply_mask(&mut payload, m, 0);
        }
        frames.push((h.opcode, payload));
        out = &out[end..];
    }
    assert!(out.is_empty(), "a partial frame sent");
    frames
}

fn drain_frames(c: &mut Connection) -> Vec<(OpCode, Vec<u8>)> {
    let out: Vec<u8> = std::iter::from_fn(|| c.poll_transmit()).flatten().collect();
    own_frames(&out)
}

/// RFC 6455 §5.5.2: an application that only sends (it never takes an
/// event) still has every Ping answered, each with its payload, in order:
/// answered Pings do not count against read-ahead, and at most
/// `KEEP_ANSWERED` of them wait unread; the rest are answered unreported.
#[test]
fn rfc6455_5_5_2_a_send_only_application_answers_every_ping() {
    for role in [Role::Server, Role::Client] {
        let mut c = open_upgraded(role);
        let now = Instant::now();
        let mut pongs = Vec::new();
        for i in 0..1000u32 {
            c.receive(now, &peer_frame(role, 0x89, &i.to_be_bytes(), i));
            assert_eq!(c.pending_events_for_read_ahead(), 0, "{role:?} Ping {i}");
            assert!(c.pending_events() <= KEEP_ANSWERED, "{role:?} Ping {i}");
            c.send_text("mine").unwrap();
            for (op, p) in drain_frames(&mut c) {
                match op {
                    OpCode::Pong => pongs.push(p),
                    OpCode::Text => assert_eq!(p, b"mine"),
                    other => panic!("{role:?}: {other:?} sent"),
                }
            }
        }
        let want: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(pongs, want, "{role:?}");
        // The first 16 are reported; once the application takes events
        // again, the next Ping is too. Pongs count the same way.
        let first: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
        let want: Vec<Event> = (0..KEEP_ANSWERED as u32)
            .map(|i| Event::Ping(Bytes::copy_from_slice(&i.to_be_bytes())))
            .collect();
        assert_eq!(first, want, "{role:?}");
        c.receive(now, &peer_frame(role, 0x89, b"again", 1));
        c.receive(now, &peer_frame(role, 0x8A, b"pong", 2));
        assert_eq!(
            c.poll_event(),
            Some(Event::Ping(Bytes::from_static(b"again")))
        );
        assert_eq!(
            c.poll_event(),
            Some(Event::Pong(Bytes::from_static(b"pong")))
        );
        assert_eq!(c.poll_event(), None);
    }
}

/// A Ping the application answers itself (`auto_pong` off) is never
/// dropped and holds back read-ahead like a message.
#[test]
fn pings_the_application_answers_count_and_are_all_reported() {
    let cfg = Config {
        auto_pong: false,
        ..Config::default()
    };
    let (mut s, now) = open_server(cfg);
    for i in 0..40u32 {
        s.receive(now, &client_frame(0x89, &i.to_be_bytes()));
        s.receive(now, &client_frame(0x8A, b"p"));
    }
    assert_eq!(s.pending_events_for_read_ahead(), 40);
    assert_eq!(s.pending_events(), 40 + KEEP_ANSWERED);
    assert!(drain_frames(&mut s).is_empty(), "no Pong from the core");
    let pings: Vec<Event> = std::iter::from_fn(|| s.poll_event())
        .filter(|e| matches!(e, Event::Ping(_)))
        .collect();
    assert_eq!(pings.len(), 40);
}

/// The peer's Close behind answered Pings and Pongs is echoed by
/// `release_close` though the application took no event, and every event
/// is still there for it, in order (RFC 6455 §5.5.1).
#[test]
fn rfc6455_5_5_1_release_close_echoes_a_close_behind_answered_pings() {
    for role in [Role::Server, Role::Client] {
        for pings in [0, 1, 3, 40] {
            let mut c = open_upgraded(role);
            let now = Instant::now();
            let mut wire = Vec::new();
            for i in 0..pings {
                wire.extend(peer_frame(role, 0x89, &[i as u8], i));
            }
            wire.extend(peer_frame(role, 0x8A, b"pong", 99));
            wire.extend(peer_frame(role, 0x88, &[0x03, 0xe8, b'b', b'y', b'e'], 7));
            c.receive(now, &wire);
            assert_eq!(c.pending_events_for_read_ahead(), 1);
            let before = drain_frames(&mut c);
            assert!(
                before.iter().all(|(op, _)| *op == OpCode::Pong),
                "{before:?}"
            );
            assert_eq!(before.len(), pings.min(16) as usize);
            assert!(c.release_close(), "{role:?} {pings}");
            assert_eq!(drain_frames(&mut c), [(OpCode::Close, vec![0x03, 0xe8])]);
            assert!(!c.release_close(), "only once");
            assert_eq!(c.state(), State::Closed);
            assert_eq!(c.should_close_transport(), role == Role::Server);
            let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            let reported = (pings as usize + 1).min(KEEP_ANSWERED);
            assert_eq!(events.len(), reported + 1, "{role:?} {pings}: {events:?}");
            assert!(matches!(events.last(), Some(Event::Close(f)) if f.reason == "bye"));
            assert!(drain_frames(&mut c).is_empty(), "one Close");
        }
    }
}

/// `release_close` leaves the Close behind anything the application
/// answers (a message, a Ping with `auto_pong` off), so its answers go
/// first; once it took those, the Close goes without taking the Close
/// event. The Close of a protocol error is released the same way.
#[test]
fn release_close_waits_for_what_the_application_answers() {
    let close = client_frame(0x88, &[0x03, 0xe8]);
    let manual = Config {
        auto_pong: false,
        ..Config::default()
    };
    for (cfg, first) in [
        (Config::default(), client_frame(0x81, b"hi")),
        (manual, client_frame(0x89, b"hi")),
    ] {
        let (mut s, now) = open_server(cfg);
        s.receive(
            now,
            &[first, client_frame(0x8A, b""), close.clone()].concat(),
        );
        assert_eq!(s.pending_events_for_read_ahead(), 2);
        assert!(!s.release_close());
        assert!(drain_frames(&mut s).is_empty());
        match s.poll_event() {
            Some(Event::Text(t)) => s.send(t).unwrap(),
            Some(Event::Ping(p)) => s.pong(&p).unwrap(),
            other => panic!("{other:?}"),
        }
        assert!(s.release_close());
        let out = drain_frames(&mut s);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1, b"hi", "the answer goes first");
        assert_eq!(out[1], (OpCode::Close, vec![0x03, 0xe8]));
        assert_eq!(s.poll_event(), Some(Event::Pong(Bytes::new())));
        assert!(matches!(s.poll_event(), Some(Event::Close(_))));
        assert!(drain_frames(&mut s).is_empty(), "one Close");
    }
    // Our Close after a protocol error, behind an answered Ping.
    let (mut s, now) = open_server(Config::default());
    s.receive(
        now,
        &[client_frame(0x89, b"x"), client_frame(0xA1, b"bad")].concat(),
    );
    assert!(s.release_close());
    let out = drain_frames(&mut s);
    assert_eq!(out[0], (OpCode::Pong, b"x".to_vec()));
    assert_eq!(out[1].0, OpCode::Close);
    assert_eq!(out[1].1[..2], 1002u16.to_be_bytes());
    assert!(s.should_close_transport());
    assert_eq!(s.poll_event(), Some(Event::Ping(Bytes::from_static(b"x"))));
    assert!(matches!(s.poll_event(), Some(Event::Error(_))));
    // Nothing held back: nothing to release.
    let (mut s, now) = open_server(Config::default());
    assert!(!s.release_close());
    s.receive(now, &client_frame(0x89, b""));
    assert!(!s.release_close());
}

/// The give-up timer: once the connection is done with its transport, our
/// last bytes get `close_timeout` to leave; a peer that never reads them
/// does not hold the connection (and its output) for ever.
#[test]
fn a_done_connection_gives_up_output_the_peer_never_takes() {
    let (mut s, now) = open_server(Config::default());
    let close_timeout = Config::default().close_timeout;
    // A big message the peer will never read, then the peer's Close.
    s.send_binary(&payload(1 << 20)).unwrap();
    s.receive(now, &client_frame(0x88, &1000u16.to_be_bytes()));
    assert!(matches!(s.poll_event(), Some(Event::Close(_))));
    // A write attempt encodes the Close echo behind the message; the
    // transport takes nothing.
    assert!(s.peek_transmit().is_some());
    // Done (a server after both Closes), but the output is still there.
    assert!(s.pending_output() > 1 << 20);
    assert!(!s.should_close_transport());
    let (rx, _) = s.halves();
    assert!(rx.is_done_with_transport());
    assert!(!rx.should_abandon_output());
    let deadline = s.poll_timeout().expect("the give-up timer");
    assert_eq!(deadline, now + close_timeout);
    s.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!s.should_close_transport(), "early call is a no-op");
    assert!(s.pending_output() > 0);
    s.handle_timeout(deadline);
    let (rx, _) = s.halves();
    assert!(rx.should_abandon_output());
    assert_eq!(s.pending_output(), 0, "the unsent bytes are dropped");
    assert!(s.should_close_transport());
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.poll_event(), None);
}

/// Written out in time, the give-up timer never matters: the connection
/// reports no deadline once it is done and nothing is pending.
#[test]
fn a_done_connection_with_nothing_pending_has_no_timer() {
    let (mut s, now) = open_server(Config::default());
    s.receive(now, &client_frame(0x88, &1000u16.to_be_bytes()));
    assert!(matches!(s.poll_event(), Some(Event::Close(_))));
    while s.poll_transmit().is_some() {}
    assert!(s.should_close_transport());
    assert_eq!(s.poll_timeout(), None);
    // The receiving half alone cannot see the output: it keeps the
    // deadline for a driver whose sending half is elsewhere.
    let (rx, _) = s.halves();
    assert_eq!(
        rx.poll_timeout(),
        Some(now + Config::default().close_timeout)
    );
}

/// After end of stream the timer runs from the end.
#[test]
fn the_give_up_timer_runs_from_end_of_stream() {
    let (mut s, now) = open_server(Config::default());
    s.send_binary(&payload(1 << 20)).unwrap();
    let later = now + Duration::from_secs(3);
    s.receive_eof(later);
    assert!(matches!(
        s.poll_event(),
        Some(Event::Error(ConnectionError::Eof))
    ));
    assert_eq!(
        s.poll_timeout(),
        Some(later + Config::default().close_timeout)
    );
}

/// `Config::max_pending_output`: the send that finds more than the limit
/// unsent fails, drops the output, ends the connection (transport to
/// close, no Close frame), and the receiving half reports it after the
/// events received before; a message larger than the limit still goes
/// when little is waiting.
#[test]
fn a_send_past_the_output_limit_drops_the_output_and_ends_the_connection() {
    let cfg = Config {
        max_pending_output: Some(10_000),
        write_buffer_high_water: 1_000,
        ..Config::default()
    };
    let (mut s, now) = open_server(cfg);
    // Larger than the limit, but nothing is waiting: it goes.
    s.send_binary(&payload(50_000)).unwrap();
    assert_eq!(s.pending_output(), 50_000 + 4);
    while s.poll_transmit().is_some() {}
    // Received before the failure: delivered before its error.
    s.receive(now, &client_frame(0x81, b"before"));
    for i in 0..3 {
        s.send_binary(&payload(4_000))
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
    }
    // 12 012 bytes wait: the next send (data or control) fails.
    assert_eq!(s.ping(b"x"), Err(SendError::PendingOutputLimit));
    assert_eq!(s.pending_output(), 0);
    assert!(s.poll_transmit().is_none());
    assert!(s.should_close_transport());
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.send_binary(b"later"), Err(SendError::Closed));
    // A Ping that arrives now is not even read: no Pong may follow output
    // that stopped mid-frame.
    s.receive(now, &client_frame(0x89, b"p"));
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.poll_event(), Some(Event::Text("before".into())));
    assert!(matches!(
        s.poll_event(),
        Some(Event::Error(ConnectionError::PendingOutputLimit))
    ));
    assert!(s.poll_event().is_none());
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.poll_timeout(), None);
}

/// A limit below `write_buffer_high_water` counts as the mark: a sender
/// that waits there never trips it.
#[test]
fn the_output_limit_is_never_below_the_high_water_mark() {
    let cfg = Config {
        max_pending_output: Some(0),
        write_buffer_high_water: 10_000,
        ..Config::default()
    };
    let (mut s, _) = open_server(cfg);
    s.send_binary(&payload(9_000)).unwrap();
    s.send_binary(&payload(9_000)).unwrap();
    assert_eq!(s.send_binary(b"x"), Err(SendError::PendingOutputLimit));
}

#[test]
fn stats_agree_between_the_fast_path_and_the_full_path() {
    // Whatever path a frame takes and however the reads cut the bytes,
    // the counters are those of the events handed out.
    for role in [Role::Server, Role::Client] {
        let wire = mixed_traffic(role);
        for chunk in [1, 7, 64, wire.len()] {
            let mut seen = Vec::new();
            for fast in [true, false] {
                let now = Instant::now();
                let mask =
                    (role == Role::Client).then(|| Box::new(SeededMask::new([5; 32])) as Box<_>);
                let mut c =
                    Connection::upgraded(role, Config::default(), Negotiated::default(), mask, now);
                if !fast {
                    c.halves().0.disable_fast_path();
                }
                let (mut messages, mut bytes) = (0, 0);
                for piece in wire.chunks(chunk) {
                    c.receive(now, piece);
                    while let Some(ev) = c.poll_event() {
                        if let Event::Text(t) = &ev {
                            (messages, bytes) = (messages + 1, bytes + t.len() as u64);
                        } else if let Event::Binary(b) = &ev {
                            (messages, bytes) = (messages + 1, bytes + b.len() as u64);
                        }
                    }
                }
                let s = c.stats();
                assert_eq!(
                    (s.messages_in, s.bytes_in),
                    (messages, bytes),
                    "{role:?} {chunk}"
                );
                assert_eq!(s.wire_bytes_in, wire.len() as u64);
                seen.push(s);
            }
            assert_eq!(seen[0], seen[1], "{role:?} {chunk}");
        }
    }
}

/// A fragment of a message being reassembled joins the message as it
/// arrives: the input buffer never grows to hold the frame (it would keep
/// that allocation, uncounted by the memory budget, for as long as the
/// message lasts), whatever the role and the mask offsets of the reads,
/// and the message is the one sent, multi-byte characters cut across
/// fragments and reads included.
#[test]
fn fragments_join_the_message_as_they_arrive() {
    const MIB: usize = 1 << 20;
    let unit = "aé€😀"; // 1 + 2 + 3 + 4 bytes
    let text = unit.repeat(3 * MIB / unit.len());
    let bytes = text.as_bytes();
    // Cuts inside characters, so each fragment alone is not UTF-8.
    let (a, b) = (MIB + 1, 2 * MIB + 2);
    for role in [Role::Server, Role::Client] {
        let mut wire = peer_frame(role, 0x01, &bytes[..a], 1);
        wire.extend(peer_frame(role, 0x00, &bytes[a..b], 2));
        wire.extend(peer_frame(role, 0x80, &bytes[b..], 3));
        for read in [(64 << 10) + 1, 4093] {
            let now = Instant::now();
            let mask = (role == Role::Client).then(|| Box::new(SeededMask::new([5; 32])) as Box<_>);
            let mut c =
                Connection::upgraded(role, Config::default(), Negotiated::default(), mask, now);
            let mut most = 0;
            for piece in wire.chunks(read) {
                c.receive(now, piece);
                most = most.max(c.halves().0.input_capacity());
            }
            assert!(
                most <= 2 * read.max(16 << 10),
                "{role:?}, reads of {read}: input grew to {most}"
            );
            match c.poll_event() {
                Some(Event::Text(t)) => assert!(t == text.as_str(), "{role:?}, reads of {read}"),
                other => panic!("{role:?}, reads of {read}: {other:?}"),
            }
        }
    }
}

/// Fragments taken as they arrive and fragments taken whole give the same
/// events, and invalid UTF-8 in a fragment fails at the same point, however
/// the reads cut the frames (and their mask keys).
#[test]
fn fragments_taken_as_they_arrive_change_no_event() {
    for role in [Role::Client, Role::Server] {
        let mut good = Vec::new();
        good.extend(peer_frame(role, 0x01, "fragmént one, ".as_bytes(), 1));
        good.extend(peer_frame(role, 0x89, b"ping", 2));
        good.extend(peer_frame(role, 0x00, "twø 😀 ".as_bytes(), 3));
        good.extend(peer_frame(role, 0x80, "and thrée".as_bytes(), 4));
        good.extend(peer_frame(role, 0x02, &[7; 37], 5));
        good.extend(peer_frame(role, 0x80, &[9; 41], 6));
        let mut bad = peer_frame(role, 0x01, "fine so far ".as_bytes(), 7);
        bad.extend(peer_frame(
            role,
            0x00,
            b"still fine \xc3\x28 and more after it",
            8,
        ));
        bad.extend(peer_frame(role, 0x80, b"never reached", 9));
        let bad_utf8 = Event::Error(ConnectionError::Protocol(ProtocolError::InvalidUtf8));
        for (wire, last) in [(good, Event::Error(ConnectionError::Eof)), (bad, bad_utf8)] {
            let cfg = Config::default();
            let whole = run_core_taking(role, &cfg, true, &[&wire], usize::MAX, true).0;
            assert_eq!(whole.last(), Some(&last), "{whole:?}");
            if last == Event::Error(ConnectionError::Eof) {
                assert_eq!(
                    whole[..3],
                    [
                        Event::Ping(Bytes::from_static(b"ping")),
                        Event::Text("fragmént one, twø 😀 and thrée".into()),
                        Event::Binary([[7; 37].as_slice(), &[9; 41]].concat().into()),
                    ]
                );
            }
            for read in 1..=9 {
                let pieces: Vec<&[u8]> = wire.chunks(read).collect();
                let got = run_core_taking(role, &cfg, true, &pieces, usize::MAX, true).0;
                assert_eq!(got, whole, "{role:?}, reads of {read}");
            }
        }
    }
}
