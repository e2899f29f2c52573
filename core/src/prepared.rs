//! [`PreparedMessage`]: a message encoded once and sent to many connections.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::{Bytes, BytesMut};

use crate::deflate::{Compressor, SharedClass};
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN, RSV1};
use crate::message::{Message, MessageKind};

/// A data message encoded once, to be sent to any number of connections
/// (a broadcast, a pub/sub fan-out) with
/// [`SendHalf::send_prepared`](crate::SendHalf::send_prepared) or
/// [`Connection::send_prepared`](crate::Connection::send_prepared).
///
/// Preparing builds the unmasked frame (header and payload, one copy of the
/// payload, once). Each server connection then queues that frame as is: the
/// same `Bytes` goes to every connection's output, so sending costs a
/// reference count, not a copy. With permessage-deflate, the compressed
/// frame is built on first use for each class of compressor that carries no
/// context between messages (our side's `no_context_takeover`: for a server
/// `server_no_context_takeover`, with the same window bits, level and memory
/// level), cached here, and shared by every connection of that class: a
/// message is compressed once per class, not once per connection.
///
/// A connection that keeps its compression context (context takeover)
/// cannot use shared compressed bytes: its peer's decompressor holds this
/// connection's history, and the next message's back-references must
/// match it. Such a connection compresses the payload with its own
/// compressor, as [`send`](crate::SendHalf::send) would. A message under
/// the connection's `min_compress_size` is sent uncompressed, as usual.
///
/// **Clients.** A client masks every frame with a fresh key (RFC 6455
/// §5.3), so no two client connections send the same bytes: a client
/// shares the payload (and the cached compressed payload, when its own
/// side has no context takeover) and masks it into its own output — one
/// copy, which masking needs anyway, but no second compression.
///
/// `Send + Sync`; cloning is an `Arc` clone.
///
/// ```
/// use std::time::Instant;
/// use wsmachine::{Config, Connection, Negotiated, PreparedMessage, Role};
///
/// let msg = PreparedMessage::new("hello, everyone");
/// let mut wire = Vec::new();
/// for _ in 0..3 {
///     let mut conn = Connection::upgraded(Role::Server, Config::default(), Negotiated::default(), None, Instant::now());
///     conn.send_prepared(&msg).unwrap();
///     while let Some(b) = conn.poll_transmit() {
///         wire.extend_from_slice(&b);
///     }
/// }
/// assert_eq!(wire, b"\x81\x0fhello, everyone".repeat(3));
/// ```
#[derive(Clone)]
pub struct PreparedMessage(Arc<Inner>);

struct Inner {
    kind: MessageKind,
    /// The unmasked, uncompressed frame.
    plain: Encoded,
    payload: Bytes,
    /// The first class of compressor met (nearly always the only one: a
    /// server usually has one deflate configuration): read without a lock.
    first: OnceLock<(SharedClass, Encoded)>,
    /// Any other classes.
    others: Mutex<Vec<(SharedClass, Encoded)>>,
}

/// One unmasked frame: header and payload in one buffer.
#[derive(Clone, Debug)]
pub(crate) struct Encoded {
    pub(crate) frame: Bytes,
    header_len: usize,
}

impl Encoded {
    fn new(opcode: OpCode, rsv: u8, payload: &[u8]) -> Self {
        let header = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let header_len = header.encode_to(&mut head);
        let mut frame = BytesMut::with_capacity(header_len + payload.len());
        frame.extend_from_slice(&head[..header_len]);
        frame.extend_from_slice(payload);
        Encoded {
            frame: frame.freeze(),
            header_len,
        }
    }

    /// The frame's payload (compressed if the frame is).
    pub(crate) fn payload(&self) -> &[u8] {
        &self.frame[self.header_len..]
    }
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("kind", &self.0.kind)
            .field("len", &self.0.payload.len())
            .finish_non_exhaustive()
    }
}

impl PreparedMessage {
    /// Encodes `msg` (text or binary) for sending to many connections. The
    /// payload is copied once, into the frame; compressed encodings are
    /// made when a connection first needs one.
    pub fn new(msg: impl Into<Message>) -> Self {
        let msg = msg.into();
        let kind = msg.kind();
        let plain = Encoded::new(opcode(kind), 0, msg.payload());
        let payload = plain.frame.slice(plain.header_len..);
        PreparedMessage(Arc::new(Inner {
            kind,
            plain,
            payload,
            first: OnceLock::new(),
            others: Mutex::new(Vec::new()),
        }))
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.0.kind
    }

    /// The message's payload (uncompressed), shared with the frame.
    pub fn payload(&self) -> &Bytes {
        &self.0.payload
    }

    /// The uncompressed, unmasked frame: what a server connection queues.
    ///
    /// ```
    /// use wsmachine::PreparedMessage;
    /// assert_eq!(&PreparedMessage::new(bytes::Bytes::from_static(b"hi")).frame()[..], b"\x82\x02hi");
    /// ```
    pub fn frame(&self) -> &Bytes {
        &self.0.plain.frame
    }

    pub(crate) fn plain(&self) -> &Encoded {
        &self.0.plain
    }

    /// The compressed frame for compressors of `class`: compressed on the
    /// first call for that class (once, even when several threads ask at
    /// the same time), then shared.
    pub(crate) fn compressed(&self, class: SharedClass) -> Encoded {
        let inner = &*self.0;
        let compress = || {
            let mut out = BytesMut::new();
            Compressor::compress_standalone(class, &inner.payload, &mut out);
            Encoded::new(opcode(inner.kind), RSV1, &out)
        };
        let (c, e) = inner.first.get_or_init(|| (class, compress()));
        if *c == class {
            return e.clone();
        }
        // Held while compressing: each class is compressed once.
        let mut others = inner.others.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, e)) = others.iter().find(|(c, _)| *c == class) {
            return e.clone();
        }
        let e = compress();
        others.push((class, e.clone()));
        e
    }
}

fn opcode(kind: MessageKind) -> OpCode {
    match kind {
        MessageKind::Text => OpCode::Text,
        MessageKind::Binary => OpCode::Binary,
    }
}

#[cfg(test)]
mod tests {
    // Tests play the event loop, which owns the clock.
    #![allow(clippy::disallowed_methods)]

    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::{
        Config, Connection, DeflateConfig, DeflateParams, Event, Negotiated, Role, SeededMask,
        SendError,
    };

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    /// Every parameter set a connection can have for prepared sends:
    /// no deflate, no context takeover (both ways, or ours only, with a
    /// small window), and context takeover (the fallback).
    fn parameter_sets() -> Vec<(&'static str, Option<DeflateParams>)> {
        let p = |snct, cnct, sbits, cbits| DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        };
        vec![
            ("none", None),
            ("no context takeover", Some(p(true, true, 15, 15))),
            ("ours only, 10 bits", Some(p(true, false, 10, 10))),
            ("theirs only", Some(p(false, true, 15, 15))),
            ("context takeover", Some(p(false, false, 15, 15))),
        ]
    }

    /// A connection of `role` and its peer, open with `deflate` negotiated.
    fn pair(role: Role, deflate: Option<DeflateParams>) -> (Connection, Connection) {
        let now = Instant::now();
        let cfg = Config::with_deflate();
        let negotiated = Negotiated {
            subprotocol: None,
            deflate,
        };
        let open = |role: Role, seed| {
            let mask = (role == Role::Client).then(|| Box::new(SeededMask::new([seed; 32])) as _);
            Connection::upgraded(role, cfg.clone(), negotiated.clone(), mask, now)
        };
        let peer = match role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        (open(role, 1), open(peer, 2))
    }

    /// Moves everything `from` queued to `to`; returns the chunks.
    fn deliver(from: &mut Connection, to: &mut Connection) -> Vec<Bytes> {
        let chunks: Vec<Bytes> = std::iter::from_fn(|| from.poll_transmit()).collect();
        for c in &chunks {
            to.receive(Instant::now(), c);
        }
        chunks
    }

    fn events(c: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn json(len: usize) -> String {
        let mut s = String::new();
        let mut i = 0;
        while s.len() < len {
            s.push_str(&format!(
                "{{\"id\":{i},\"name\":\"user{}\",\"ok\":true}},",
                i % 7
            ));
            i += 1;
        }
        s.truncate(len);
        s
    }

    #[test]
    fn is_send_sync_and_clone() {
        assert_send_sync_clone::<PreparedMessage>();
    }

    #[test]
    fn decodes_identically_with_every_parameter_set_interleaved_with_sends() {
        let big = PreparedMessage::new(json(3000));
        let bin = PreparedMessage::new(Bytes::from(vec![9u8; 1024]));
        let small = PreparedMessage::new("tiny"); // under min_compress_size
        let empty = PreparedMessage::new(Bytes::new());
        for role in [Role::Server, Role::Client] {
            for (name, deflate) in parameter_sets() {
                let (mut conn, mut peer) = pair(role, deflate);
                let mut expected = Vec::new();
                for round in 0..3 {
                    let own = json(2000 + round);
                    conn.send_text(&own).unwrap();
                    expected.push(Event::Text(own.into()));
                    for p in [&big, &bin, &small, &empty] {
                        conn.send_prepared(p).unwrap();
                        expected.push(match p.kind() {
                            MessageKind::Text => Event::Text(
                                crate::Utf8Bytes::try_from_bytes(p.payload().clone()).unwrap(),
                            ),
                            MessageKind::Binary => Event::Binary(p.payload().clone()),
                        });
                    }
                    // A normal send after a prepared one: with context
                    // takeover its back-references must still match.
                    conn.send_text(&json(1500)).unwrap();
                    expected.push(Event::Text(json(1500).into()));
                    deliver(&mut conn, &mut peer);
                }
                assert_eq!(events(&mut peer), expected, "{role:?}, {name}");
            }
        }
    }

    #[test]
    fn uncompressed_frames_are_shared_not_copied() {
        let msg = PreparedMessage::new(Bytes::from(vec![5u8; 1024]));
        let (mut server, mut client) = pair(Role::Server, None);
        server.send_text("before").unwrap();
        server.send_prepared(&msg).unwrap();
        server.send_prepared(&msg).unwrap();
        let chunks = deliver(&mut server, &mut client);
        let shared = chunks
            .iter()
            .filter(|c| c.as_ptr() == msg.frame().as_ptr())
            .count();
        assert_eq!(shared, 2, "{chunks:?}");
        // A client shares the payload but masks it into its own buffer.
        let (mut c, mut s) = pair(Role::Client, None);
        c.send_prepared(&msg).unwrap();
        let chunks = deliver(&mut c, &mut s);
        assert!(chunks.iter().all(|c| c.as_ptr() != msg.frame().as_ptr()));
        assert_eq!(events(&mut s), [Event::Binary(msg.payload().clone())]);
    }

    #[test]
    fn compressed_once_for_every_connection_of_a_class() {
        let msg = PreparedMessage::new(json(1024));
        let nct = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut seen = Vec::new();
        for _ in 0..5 {
            let (mut server, mut client) = pair(Role::Server, Some(nct));
            server.send_prepared(&msg).unwrap();
            let chunks = deliver(&mut server, &mut client);
            assert_eq!(chunks.len(), 1);
            assert_eq!(chunks[0][0], 0xC1, "FIN + RSV1 + text");
            assert!(chunks[0].len() < 600, "compressed: {}", chunks[0].len());
            seen.push(chunks[0].as_ptr());
            assert_eq!(
                events(&mut client),
                [Event::Text(json(1024).into())],
                "decodes"
            );
        }
        assert!(seen.iter().all(|p| *p == seen[0]), "one encoding, shared");
        // Another class (a smaller window) gets its own encoding, once.
        let small_window = DeflateParams {
            server_max_window_bits: 10,
            ..nct
        };
        let mut other = Vec::new();
        for _ in 0..2 {
            let (mut server, mut client) = pair(Role::Server, Some(small_window));
            server.send_prepared(&msg).unwrap();
            let chunks = deliver(&mut server, &mut client);
            other.push(chunks[0].as_ptr());
            assert_eq!(events(&mut client), [Event::Text(json(1024).into())]);
        }
        assert_eq!(other[0], other[1]);
        assert_ne!(other[0], seen[0]);
        // Context takeover compresses with the connection's own compressor.
        let (mut server, mut client) = pair(Role::Server, Some(DeflateParams::default()));
        server.send_prepared(&msg).unwrap();
        let chunks = deliver(&mut server, &mut client);
        assert!(chunks.iter().all(|c| c.as_ptr() != seen[0]));
        assert_eq!(events(&mut client), [Event::Text(json(1024).into())]);
    }

    #[test]
    fn compressed_once_across_threads() {
        let msg = PreparedMessage::new(json(4096));
        let nct = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let ptrs: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let msg = msg.clone();
                    s.spawn(move || {
                        let (mut server, mut client) = pair(Role::Server, Some(nct));
                        server.send_prepared(&msg).unwrap();
                        let chunks = deliver(&mut server, &mut client);
                        assert_eq!(events(&mut client), [Event::Text(json(4096).into())]);
                        chunks[0].as_ptr() as usize
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ptrs.iter().all(|p| *p == ptrs[0]));
    }

    #[test]
    fn honours_the_rules_of_a_normal_send() {
        let msg = PreparedMessage::new("hello");
        // Not open yet.
        let mut c = Connection::server(Config::default(), Instant::now());
        assert_eq!(c.send_prepared(&msg), Err(SendError::NotOpen));
        // A fragmented message in progress.
        let (mut server, mut client) = pair(Role::Server, None);
        server
            .send_fragment(MessageKind::Text, b"par", false)
            .unwrap();
        assert_eq!(
            server.send_prepared(&msg),
            Err(SendError::MessageInProgress)
        );
        server.send_fragment(MessageKind::Text, b"t", true).unwrap();
        server.send_prepared(&msg).unwrap();
        // After our Close.
        server
            .close(Instant::now(), crate::CloseCode::NORMAL, "")
            .unwrap();
        assert_eq!(server.send_prepared(&msg), Err(SendError::Closed));
        deliver(&mut server, &mut client);
        let ev = events(&mut client);
        assert_eq!(ev[0], Event::Text("part".into()));
        assert_eq!(ev[1], Event::Text("hello".into()));
        assert!(matches!(ev[2], Event::Close(_)));
    }

    #[test]
    fn min_compress_size_is_the_connections() {
        let msg = PreparedMessage::new(json(200));
        let negotiated = Negotiated {
            subprotocol: None,
            deflate: Some(DeflateParams {
                server_no_context_takeover: true,
                ..DeflateParams::default()
            }),
        };
        for (min, compressed) in [(100, true), (1000, false)] {
            let cfg = Config {
                deflate: Some(DeflateConfig {
                    min_compress_size: min,
                    ..DeflateConfig::default()
                }),
                ..Config::default()
            };
            let mut server =
                Connection::upgraded(Role::Server, cfg, negotiated.clone(), None, Instant::now());
            server.send_prepared(&msg).unwrap();
            let out = server.poll_transmit().unwrap();
            assert_eq!(out[0] & 0x40 != 0, compressed, "min {min}: RSV1");
        }
    }
}
