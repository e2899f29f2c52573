//! `connection`: one connection (either role, with or without compression,
//! opened by a real handshake or `Connection::upgraded`) driven by an
//! arbitrary interleaving of peer input (raw bytes or frames built from
//! fuzzed fields, compressed by a peer compressor when asked), local
//! commands, timer firings and end of stream. Every step goes through
//! [`Checked`], and the whole run through a bound on peak heap use.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use wsmachine::internals::{ClientHandshake, Compressor, FrameHeader, RSV1};
use wsmachine::{
    accept_response, Accept, ClientRequest, CloseCode, Config, Connection, Event, MemoryBudget,
    MessageKind, Negotiated, OpCode, PreparedMessage, Role, SeededMask, ServerHandshake,
};

use crate::alloc::Peak;
use crate::check::{epoch, Checked, Limits};
use crate::setup::DeflateSetup;

/// The whole input of one run.
#[derive(Arbitrary, Debug)]
pub struct ConnInput {
    /// Server (`true`) or client.
    pub server: bool,
    /// Limits and switches.
    pub setup: Setup,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

/// Limits and switches of the connection under test.
#[derive(Arbitrary, Debug)]
pub struct Setup {
    /// `max_frame_size` (bytes).
    pub max_frame_size: u16,
    /// `max_message_size`, in units of 4 bytes.
    pub max_message_size: u16,
    /// `max_fragments`.
    pub max_fragments: u8,
    /// `max_handshake_size` above 128 bytes.
    pub max_handshake_size: u16,
    /// `reassemble`.
    pub reassemble: bool,
    /// `auto_pong`.
    pub auto_pong: bool,
    /// `ping_interval` in ms.
    pub ping_interval_ms: Option<u16>,
    /// `pong_timeout` in ms.
    pub pong_timeout_ms: u16,
    /// `close_timeout` in ms.
    pub close_timeout_ms: u16,
    /// Compression configured (and, upgraded, negotiated).
    pub deflate: Option<DeflateSetup>,
    /// Open with a real handshake (`Some`) or `Connection::upgraded` (`None`).
    pub handshake: Option<HandshakeSetup>,
    /// Seed of the client's masking keys.
    pub mask_seed: u64,
}

/// How the handshake goes when there is one.
#[derive(Arbitrary, Debug)]
pub struct HandshakeSetup {
    /// The server accepts compression.
    pub accept_compression: bool,
    /// The peer offers/accepts with these settings (`None`: no compression on its side).
    pub peer_deflate: Option<DeflateSetup>,
    /// Server: reject with this status instead of accepting.
    pub reject: Option<u16>,
    /// Bytes that arrive right after the peer's handshake head, in the same chunk.
    pub trailing: Vec<u8>,
}

/// One thing that happens.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Raw bytes from the peer.
    Receive(Vec<u8>),
    /// A frame from the peer, built from fields.
    Frame(FrameOp),
    /// `send_text`.
    SendText(String),
    /// `send_binary`.
    SendBinary(Vec<u8>),
    /// `send_uncompressed` of a binary message.
    SendUncompressed(Vec<u8>),
    /// `send_fragment`.
    SendFragment {
        /// Text (`true`) or binary.
        text: bool,
        /// Payload.
        data: Vec<u8>,
        /// Last fragment.
        last: bool,
    },
    /// `ping`.
    Ping(Vec<u8>),
    /// `pong`.
    Pong(Vec<u8>),
    /// `close`.
    Close {
        /// Close code (any value).
        code: u16,
        /// Reason.
        reason: String,
    },
    /// `handle_timeout(now + ms)`.
    Advance(u16),
    /// `handle_timeout` at `poll_timeout()`.
    FireTimer,
    /// `receive_eof`.
    Eof,
    /// `send_prepared` of a new message (text: the payload, lossily made
    /// UTF-8), or of the last one prepared again when `again` (the cached
    /// compressed encoding is then reused).
    SendPrepared {
        /// Text (`true`) or binary.
        text: bool,
        /// Payload.
        data: Vec<u8>,
        /// Resend the previous prepared message instead, if there is one.
        again: bool,
    },
}

/// A peer frame described by its fields.
#[derive(Arbitrary, Debug)]
pub struct FrameOp {
    /// FIN bit.
    pub fin: bool,
    /// RSV bits (low three bits used).
    pub rsv: u8,
    /// Opcode (low nibble used).
    pub opcode: u8,
    /// Mask it the wrong way for our role.
    pub wrong_mask: bool,
    /// Masking key.
    pub key: [u8; 4],
    /// Compress the payload with the peer's compressor (and set RSV1 on a
    /// first data frame).
    pub compress: bool,
    /// Payload.
    pub payload: Vec<u8>,
    /// Deliver in two chunks, split at this byte.
    pub split: Option<u16>,
}

/// Runs the target on raw fuzzer bytes.
pub fn connection(data: &[u8]) {
    let Ok(input) = ConnInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    run(&input, data.len());
}

fn config(s: &Setup) -> Config {
    let ms = |ms: u16| Duration::from_millis(u64::from(ms));
    Config {
        max_frame_size: usize::from(s.max_frame_size),
        max_message_size: usize::from(s.max_message_size) * 4,
        max_fragments: usize::from(s.max_fragments),
        max_handshake_size: 128 + usize::from(s.max_handshake_size % 8192),
        reassemble: s.reassemble,
        auto_pong: s.auto_pong,
        ping_interval: s.ping_interval_ms.map(ms),
        pong_timeout: ms(s.pong_timeout_ms),
        close_timeout: ms(s.close_timeout_ms),
        deflate: s.deflate.as_ref().map(DeflateSetup::config),
        memory_budget: budget(s),
        ..Config::default()
    }
}

/// A quarter of the inputs run under a tiny memory budget of their own
/// (0–255 KiB), drawn from the mask seed so that the committed corpus keeps
/// its meaning; the rest under none, so the per-message limits are reached.
fn budget(s: &Setup) -> Option<MemoryBudget> {
    s.mask_seed
        .is_multiple_of(4)
        .then(|| MemoryBudget::new(((s.mask_seed >> 8) % 256) as usize * 1024))
}

/// Runs one structured input.
pub(crate) fn run(input: &ConnInput, input_len: usize) {
    let s = &input.setup;
    let cfg = config(s);
    let role = if input.server {
        Role::Server
    } else {
        Role::Client
    };
    let peer_role = if input.server {
        Role::Client
    } else {
        Role::Server
    };
    let limits = Limits {
        max_frame_size: cfg.max_frame_size,
        max_message_size: cfg.max_message_size,
        auto_pong: cfg.auto_pong,
    };
    // Live memory is bounded by the limits, three deflate states (ours both
    // ways and the peer's compressor, < 1 MiB together at the largest
    // settings) and what the input itself makes us send or hold.
    let bound = (3 << 20)
        + 4 * (cfg.max_frame_size + cfg.max_message_size + cfg.max_handshake_size)
        + 32 * input_len;
    let peak = Peak::start();
    let mut now = epoch();
    let mask = SeededMask::new(seed(s.mask_seed));

    let mut peer_comp: Option<Compressor> = None;
    let peer_cfg = |d: &Option<DeflateSetup>| Config {
        deflate: d.as_ref().map(DeflateSetup::config),
        ..Config::default()
    };
    let mut c = match &s.handshake {
        None => {
            let negotiated = Negotiated {
                subprotocol: None,
                deflate: s.deflate.as_ref().map(DeflateSetup::params),
            };
            let conn =
                Connection::upgraded(role, cfg.clone(), negotiated, Some(Box::new(mask)), now);
            if let (Some(p), Some(d)) = (conn.negotiated().deflate, &s.deflate) {
                peer_comp = Some(Compressor::new(&p, &d.config(), peer_role));
            }
            let mut c = Checked::new(conn, limits, false);
            c.step();
            c
        }
        Some(hs) => {
            let pcfg = peer_cfg(&hs.peer_deflate);
            let conn = match role {
                Role::Server => Connection::server(cfg.clone(), now),
                Role::Client => Connection::client(
                    cfg.clone(),
                    ClientRequest::new("example.com", "/chat?x=1").subprotocol("chat"),
                    [7; 16],
                    mask,
                    now,
                ),
            };
            let mut c = Checked::new(conn, limits, true);
            match role {
                Role::Server => {
                    let (mut peer, req) = ClientHandshake::new(
                        ClientRequest::new("example.com", "/"),
                        [9; 16],
                        &pcfg,
                    );
                    let mut first = req.to_vec();
                    first.extend_from_slice(&hs.trailing);
                    c.conn.receive(now, &first);
                    let step = c.step();
                    if matches!(step.events.first(), Some(Event::Request(_))) {
                        if let Some(status) = hs.reject {
                            let r = c.conn.reject(status, &[], b"no");
                            c.wire.stopped = true;
                            assert_eq!(r.is_ok(), (200..=599).contains(&status) && status != 101);
                            c.step();
                        } else {
                            let accept = Accept::new().compression(hs.accept_compression);
                            c.conn.accept(now, accept).expect("accept a valid request");
                            c.step();
                            // The peer must accept our 101 and agree on the parameters.
                            let head = c.wire.head.clone().expect("101 sent");
                            let (neg, resp, _) = peer
                                .receive(&head)
                                .expect("our 101 is valid")
                                .expect("our 101 is complete");
                            assert_eq!(resp.status, 101);
                            assert_eq!(&neg, c.conn.negotiated(), "both sides agree");
                            if let Some(p) = neg.deflate {
                                let d = pcfg.deflate.clone().unwrap_or_default();
                                peer_comp = Some(Compressor::new(&p, &d, peer_role));
                            }
                        }
                    } else {
                        c.wire.stopped = true;
                    }
                }
                Role::Client => {
                    c.step();
                    let head = c.wire.head.clone().expect("request sent");
                    let mut peer = ServerHandshake::new(&pcfg);
                    let req = peer
                        .receive(&head)
                        .expect("our request is valid")
                        .expect("our request is complete");
                    let accept = Accept::new()
                        .compression(hs.accept_compression)
                        .subprotocol("chat");
                    let (resp, neg) = accept_response(&req, &accept, pcfg.deflate.as_ref())
                        .expect("accept our request");
                    let mut first = resp.to_vec();
                    first.extend_from_slice(&hs.trailing);
                    c.conn.receive(now, &first);
                    let step = c.step();
                    if matches!(step.events.first(), Some(Event::Connected(_))) {
                        assert_eq!(&neg, c.conn.negotiated(), "both sides agree");
                        if let Some(p) = neg.deflate {
                            let d = pcfg.deflate.clone().unwrap_or_default();
                            peer_comp = Some(Compressor::new(&p, &d, peer_role));
                        }
                    } else {
                        // Only a configuration that cannot take a valid 101 fails here.
                        assert!(c.failed(), "no Connected event after a valid 101");
                    }
                }
            }
            c
        }
    };

    let mut scratch = BytesMut::new();
    let mut prepared: Option<PreparedMessage> = None;
    // The first step also drains what opening queued.
    c.step();
    for op in &input.ops {
        match op {
            Op::Receive(bytes) => c.conn.receive(now, bytes),
            Op::Frame(f) => {
                let bytes = build_frame(f, role, peer_comp.as_mut(), &mut scratch);
                let cut = f
                    .split
                    .map_or(bytes.len(), |s| usize::from(s).min(bytes.len()));
                c.conn.receive(now, &bytes[..cut]);
                c.step();
                c.conn.receive(now, &bytes[cut..]);
            }
            Op::SendText(t) => drop(c.conn.send_text(t)),
            Op::SendBinary(b) => drop(c.conn.send_binary(b)),
            Op::SendUncompressed(b) => drop(c.conn.send_uncompressed(b.clone())),
            Op::SendFragment { text, data, last } => {
                let kind = if *text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                drop(c.conn.send_fragment(kind, data, *last));
            }
            Op::Ping(p) => {
                let r = c.conn.ping(p);
                if p.len() > 125 {
                    assert!(r.is_err(), "ping of {} bytes accepted", p.len());
                }
            }
            Op::Pong(p) => c.pong(p),
            Op::Close { code, reason } => {
                let r = c.conn.close(now, CloseCode::from(*code), reason);
                if !CloseCode::from(*code).is_sendable() || reason.len() > 123 {
                    assert!(r.is_err(), "close({code}, {} bytes) accepted", reason.len());
                }
            }
            Op::Advance(ms) => {
                now += Duration::from_millis(u64::from(*ms));
                let due = c.conn.poll_timeout();
                c.conn.handle_timeout(now);
                // "Calling it early is harmless": before the deadline, nothing happens.
                if due.is_none_or(|d| now < d) {
                    let step = c.step();
                    assert!(
                        step.events.is_empty() && step.bytes.is_empty(),
                        "handle_timeout before the deadline did {step:?}"
                    );
                }
            }
            Op::FireTimer => {
                if let Some(t) = c.conn.poll_timeout() {
                    now = now.max(t);
                }
                c.conn.handle_timeout(now);
            }
            Op::Eof => c.conn.receive_eof(now),
            Op::SendPrepared { text, data, again } => {
                if !(*again && prepared.is_some()) {
                    prepared = Some(if *text {
                        PreparedMessage::new(String::from_utf8_lossy(data).into_owned())
                    } else {
                        PreparedMessage::new(data.clone())
                    });
                }
                if let Some(p) = &prepared {
                    drop(c.conn.send_prepared(p));
                }
            }
        }
        c.step();
        // One slice of pending work per operation, so later operations
        // (more input, timers, sends, the end) meet a frame in mid-inflate.
        if c.conn.has_pending_work() {
            c.conn.resume(now);
            c.step();
        }
        if let Some(b) = &cfg.memory_budget {
            assert!(b.in_use() <= b.limit(), "over the budget: {b:?}");
        }
    }
    peak.check(bound, "connection");
    // Every reservation returns with the connection, however it ended.
    let budget = cfg.memory_budget.clone();
    drop(c);
    if let Some(b) = budget {
        assert_eq!(b.in_use(), 0, "reservations left behind");
    }
}

fn seed(s: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&s.to_le_bytes());
    out
}

/// Encodes a peer frame from its fields.
pub(crate) fn build_frame(
    f: &FrameOp,
    role: Role,
    comp: Option<&mut Compressor>,
    scratch: &mut BytesMut,
) -> Vec<u8> {
    let opcode = OpCode::from_u8(f.opcode & 0x0F).ok();
    let mut rsv = f.rsv & 0b111;
    let payload: &[u8] = match (comp, opcode) {
        (Some(c), Some(op)) if f.compress && !op.is_control() => {
            scratch.clear();
            c.compress(&f.payload, f.fin, scratch);
            if op != OpCode::Continuation {
                rsv |= RSV1;
            }
            scratch
        }
        _ => &f.payload,
    };
    // The peer masks iff it is a client, i.e. iff we are the server.
    let masked = (role == Role::Server) != f.wrong_mask;
    let mut out = Vec::with_capacity(payload.len() + 14);
    match opcode {
        Some(op) => FrameHeader {
            fin: f.fin,
            rsv,
            opcode: op,
            mask: masked.then_some(f.key),
            payload_len: payload.len() as u64,
        }
        .encode(&mut out),
        None => {
            // A reserved opcode: encode the header by hand.
            out.push(u8::from(f.fin) << 7 | rsv << 4 | (f.opcode & 0x0F));
            let m = if masked { 0x80 } else { 0 };
            match payload.len() {
                n @ 0..=125 => out.push(m | n as u8),
                n @ 126..=0xFFFF => {
                    out.push(m | 126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(m | 127);
                    out.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            if masked {
                out.extend_from_slice(&f.key);
            }
        }
    }
    let start = out.len();
    out.extend_from_slice(payload);
    if masked {
        wsmachine::apply_mask(&mut out[start..], f.key, 0);
    }
    out
}
