//! `round_trip`: a client and a server connected in memory, with any
//! permessage-deflate settings on either side. Whatever sequence of messages
//! one sends (whole, uncompressed or in fragments) arrives unchanged and in
//! order at the other, through any chunking of the byte streams and in
//! reassembling or streaming mode; Pings arrive and are answered; the
//! closing handshake then completes on both sides. Both connections run
//! under the [`Checked`] invariants.

use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use wsmachine::{
    Accept, ClientRequest, CloseCode, Config, Connection, Event, Message, MessageKind, OpCode,
    SeededMask, State,
};

use crate::check::{epoch, Checked, Limits};
use crate::setup::DeflateSetup;

/// The whole input of one run.
#[derive(Arbitrary, Debug)]
pub struct RtInput {
    /// The client's compression offer.
    pub client_deflate: Option<DeflateSetup>,
    /// The server's compression policy.
    pub server_deflate: Option<DeflateSetup>,
    /// The server accepts compression when offered.
    pub accept_compression: bool,
    /// The client reassembles messages (or streams fragments).
    pub client_reassemble: bool,
    /// The server reassembles messages.
    pub server_reassemble: bool,
    /// Client masking seed.
    pub mask_seed: u64,
    /// What happens.
    pub ops: Vec<RtOp>,
}

/// One step of the exchange.
#[derive(Arbitrary, Debug)]
pub enum RtOp {
    /// A message from one side.
    Send {
        /// Sent by the client (else by the server).
        from_client: bool,
        /// Text or binary payload.
        payload: Payload,
        /// How it is sent.
        how: How,
    },
    /// A Ping from one side.
    Ping {
        /// Sent by the client.
        from_client: bool,
        /// Payload (cut to 125 bytes).
        payload: Vec<u8>,
    },
    /// Deliver up to `max + 1` pending bytes in one direction.
    Deliver {
        /// Towards the server (else the client).
        to_server: bool,
        /// Chunk size − 1.
        max: u16,
    },
}

/// A message payload.
#[derive(Arbitrary, Debug, Clone)]
pub enum Payload {
    /// Text.
    Text(String),
    /// Binary.
    Binary(Vec<u8>),
}

/// How a message is sent.
#[derive(Arbitrary, Debug)]
pub enum How {
    /// `send_text` / `send_binary`.
    Whole,
    /// `send_uncompressed`.
    Uncompressed,
    /// `send_fragment`, cut at these offsets (taken modulo the length + 1).
    Fragments(Vec<u16>),
}

/// Runs the target on raw fuzzer bytes.
pub fn round_trip(data: &[u8]) {
    let Ok(input) = RtInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    run(&input);
}

struct Side {
    c: Checked,
    /// Complete messages received.
    received: Vec<(MessageKind, Vec<u8>)>,
    /// Streaming mode: the message being received.
    partial: Option<(MessageKind, Vec<u8>)>,
    pings: Vec<Vec<u8>>,
    pongs: Vec<Vec<u8>>,
    /// The Pongs this side sent (its answers to the other's Pings).
    sent_pongs: Vec<Vec<u8>>,
    closes: Vec<wsmachine::CloseFrame>,
    /// Bytes this side sent that the other has not received yet.
    out: VecDeque<u8>,
}

impl Side {
    fn new(c: Checked) -> Self {
        Side {
            c,
            received: Vec::new(),
            partial: None,
            pings: Vec::new(),
            pongs: Vec::new(),
            sent_pongs: Vec::new(),
            closes: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// Drains output into `out` and records events.
    fn step(&mut self) {
        let step = self.c.step();
        self.out.extend(step.bytes);
        self.sent_pongs.extend(
            step.frames
                .into_iter()
                .filter(|f| f.opcode == OpCode::Pong)
                .map(|f| f.payload),
        );
        for ev in step.events {
            match ev {
                Event::Request(_) => {
                    self.c.conn.accept(epoch(), Accept::new()).expect("accept");
                    self.step();
                }
                Event::Connected(_) => {}
                Event::Text(t) => self
                    .received
                    .push((MessageKind::Text, t.as_bytes().to_vec())),
                Event::Binary(b) => self.received.push((MessageKind::Binary, b.to_vec())),
                Event::Fragment(f) => {
                    let (_, buf) = self.partial.get_or_insert_with(|| (f.kind, Vec::new()));
                    buf.extend_from_slice(&f.data);
                    if f.last {
                        let done = self.partial.take().expect("in progress");
                        self.received.push(done);
                    }
                }
                Event::Ping(p) => self.pings.push(p.to_vec()),
                Event::Pong(p) => self.pongs.push(p.to_vec()),
                Event::Close(f) => self.closes.push(f),
                Event::Error(e) => panic!("{:?} failed: {e}", self.c.conn.role()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// Moves up to `max` bytes from `from`'s output into `to`.
fn deliver(from: &mut Side, to: &mut Side, max: usize) -> bool {
    let n = max.min(from.out.len());
    if n == 0 {
        return false;
    }
    let chunk: Vec<u8> = from.out.drain(..n).collect();
    to.c.conn.receive(epoch(), &chunk);
    to.step();
    // A large compressed message is inflated a slice per call, events
    // taken in between, as a driver does.
    while to.c.conn.has_pending_work() {
        to.c.conn.resume(epoch());
        to.step();
    }
    true
}

fn settle(client: &mut Side, server: &mut Side) {
    while deliver(client, server, usize::MAX) | deliver(server, client, usize::MAX) {}
}

fn config(deflate: &Option<DeflateSetup>, reassemble: bool) -> Config {
    Config {
        deflate: deflate.as_ref().map(DeflateSetup::config),
        reassemble,
        ping_interval: None,
        ..Config::default()
    }
}

fn limits(c: &Config) -> Limits {
    Limits {
        max_frame_size: c.max_frame_size,
        max_message_size: c.max_message_size,
        auto_pong: c.auto_pong,
    }
}

/// Runs one structured input.
pub(crate) fn run(input: &RtInput) {
    let now = epoch();
    let ccfg = config(&input.client_deflate, input.client_reassemble);
    let mut scfg = config(&input.server_deflate, input.server_reassemble);
    if !input.accept_compression {
        scfg.deflate = None;
    }
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&input.mask_seed.to_le_bytes());
    let client = Connection::client(
        ccfg.clone(),
        ClientRequest::new("example.com", "/"),
        [5; 16],
        SeededMask::new(seed),
        now,
    );
    let server = Connection::server(scfg.clone(), now);
    let mut client = Side::new(Checked::new(client, limits(&ccfg), true));
    let mut server = Side::new(Checked::new(server, limits(&scfg), true));
    client.step();
    settle(&mut client, &mut server);
    assert_eq!(client.c.conn.state(), State::Open);
    assert_eq!(server.c.conn.state(), State::Open);
    assert_eq!(
        client.c.conn.negotiated(),
        server.c.conn.negotiated(),
        "negotiation differs"
    );
    let compressed = client.c.conn.negotiated().deflate.is_some();
    assert_eq!(
        compressed,
        input.client_deflate.is_some()
            && input.server_deflate.is_some()
            && input.accept_compression,
        "compression negotiated iff offered and accepted"
    );

    let mut to_server = Vec::new();
    let mut to_client = Vec::new();
    let mut pings_to_server = Vec::new();
    let mut pings_to_client = Vec::new();
    for op in &input.ops {
        match op {
            RtOp::Send {
                from_client,
                payload,
                how,
            } => {
                let (side, expected) = if *from_client {
                    (&mut client, &mut to_server)
                } else {
                    (&mut server, &mut to_client)
                };
                let (kind, bytes) = match payload {
                    Payload::Text(t) => (MessageKind::Text, t.as_bytes().to_vec()),
                    Payload::Binary(b) => (MessageKind::Binary, b.clone()),
                };
                let conn = &mut side.c.conn;
                match how {
                    How::Whole => match payload {
                        Payload::Text(t) => conn.send_text(t),
                        Payload::Binary(b) => conn.send_binary(b),
                    },
                    How::Uncompressed => conn.send_uncompressed(match payload {
                        Payload::Text(t) => Message::from(t.clone()),
                        Payload::Binary(b) => Message::from(Bytes::from(b.clone())),
                    }),
                    How::Fragments(cuts) => {
                        let mut cuts: Vec<usize> = cuts
                            .iter()
                            .map(|c| usize::from(*c) % (bytes.len() + 1))
                            .collect();
                        cuts.sort_unstable();
                        let mut start = 0;
                        let mut r = Ok(());
                        for cut in cuts.into_iter().chain([bytes.len()]) {
                            let last = cut == bytes.len();
                            r = r.and(conn.send_fragment(kind, &bytes[start..cut], last));
                            start = cut;
                            if last {
                                break;
                            }
                        }
                        r
                    }
                }
                .expect("send on an open connection");
                expected.push((kind, bytes));
                side.step();
            }
            RtOp::Ping {
                from_client,
                payload,
            } => {
                let p = &payload[..payload.len().min(125)];
                let (side, expected) = if *from_client {
                    (&mut client, &mut pings_to_server)
                } else {
                    (&mut server, &mut pings_to_client)
                };
                side.c.conn.ping(p).expect("ping on an open connection");
                expected.push(p.to_vec());
                side.step();
            }
            RtOp::Deliver {
                to_server: true,
                max,
            } => {
                deliver(&mut client, &mut server, usize::from(*max) + 1);
            }
            RtOp::Deliver {
                to_server: false,
                max,
            } => {
                deliver(&mut server, &mut client, usize::from(*max) + 1);
            }
        }
    }
    settle(&mut client, &mut server);
    assert_eq!(server.received, to_server, "client → server messages");
    assert_eq!(client.received, to_client, "server → client messages");
    for (to, from, sent, dir) in [
        (&server, &client, &pings_to_server, "client → server"),
        (&client, &server, &pings_to_client, "server → client"),
    ] {
        // Every Ping arrives and is reported, in order, unless a read
        // brought more answered events than wait unread (16): then the
        // ones reported are still among those sent, in order.
        if to.c.capped {
            assert_subsequence(&to.pings, sent, &format!("{dir} pings"));
        } else {
            assert_eq!(&to.pings, sent, "{dir} pings");
        }
        // The Pongs on the wire answer Pings sent, in order, the last one
        // included (more than 16 waiting may be coalesced, RFC 6455
        // §5.5.3); the Pongs reported are among them.
        assert_subsequence(&to.sent_pongs, sent, &format!("{dir} pongs sent"));
        assert_eq!(
            to.sent_pongs.last(),
            sent.last(),
            "{dir}: last Ping answered"
        );
        if from.c.capped {
            assert_subsequence(&from.pongs, &to.sent_pongs, &format!("{dir} pongs"));
        } else {
            assert_eq!(from.pongs, to.sent_pongs, "{dir} pongs reported");
        }
    }

    // The closing handshake, started by the client.
    client
        .c
        .conn
        .close(now, CloseCode::NORMAL, "bye")
        .expect("close");
    client.step();
    settle(&mut client, &mut server);
    assert_eq!(
        server.closes,
        [wsmachine::CloseFrame::new(CloseCode::NORMAL, "bye")]
    );
    assert_eq!(client.closes.len(), 1);
    assert_eq!(client.closes[0].code, CloseCode::NORMAL);
    assert_eq!(server.c.conn.state(), State::Closed);
    assert_eq!(client.c.conn.state(), State::Closed);
    assert!(
        server.c.conn.should_close_transport(),
        "server closes TCP first"
    );
    // The server closes TCP; the client sees a clean end.
    client.c.conn.receive_eof(now);
    client.step();
    assert!(client.c.conn.should_close_transport());
}

/// `sub` is `full` with some items left out, the rest in order.
fn assert_subsequence(sub: &[Vec<u8>], full: &[Vec<u8>], what: &str) {
    let mut rest = full.iter();
    for (i, item) in sub.iter().enumerate() {
        assert!(
            rest.any(|x| x == item),
            "{what}: item {i} ({item:?}) out of order or never sent"
        );
    }
}
