//! `frame_decode`: arbitrary bytes through `FrameHeader::decode` and through
//! an upgraded connection of each role.
//!
//! Input: one configuration byte (bit 0: server, bit 1: compression
//! negotiated, bit 2: streaming instead of reassembly, bit 3: small limits,
//! bits 4–7: chunk size for the second feeding), then the wire bytes.

use wsmachine::internals::{FrameHeader, KEEP_ANSWERED};
use wsmachine::{Config, Connection, DeflateParams, Event, Negotiated, OpCode, Role, SeededMask};

use crate::alloc::Peak;
use crate::check::{epoch, Checked, Limits, Step};

/// Runs the target.
pub fn frame_decode(data: &[u8]) {
    header(data);
    let Some((&cfg, wire)) = data.split_first() else {
        return;
    };
    let peak = Peak::start();
    // The reference: one byte per step completes at most one frame, so no
    // answered event can go unreported and no Pong be coalesced.
    let reference = feed(cfg, wire, 1);
    reference.check_every_ping_answered();
    let whole = feed(cfg, wire, wire.len().max(1));
    let chunk = usize::from(cfg >> 4) + 1;
    let pieces = feed(cfg, wire, chunk);
    for (run, chunk) in [(&whole, wire.len().max(1)), (&pieces, chunk)] {
        assert_eq!(
            run,
            &reference.as_if_chunked(chunk, wire.len()),
            "events or frames depend on chunking (chunks of {chunk})"
        );
    }
    // The three runs' events are still held: the bound covers their
    // payloads, at most twice over (a message's buffer may have grown by
    // doubling).
    let held: usize = [&reference, &whole, &pieces]
        .iter()
        .flat_map(|r| &r.events)
        .map(|(_, e)| payload_len(e) * 2 + 256)
        .sum();
    let (frame, message) = limits(cfg);
    peak.check(
        (2 << 20) + 8 * (frame + message) + 16 * data.len() + held,
        "frame_decode",
    );
}

/// What one feeding produced, each item with the step (the piece fed, or
/// the end of the stream) that produced it.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<(usize, Event)>,
    /// Our frames, as (opcode, payload).
    frames: Vec<(usize, OpCode, Vec<u8>)>,
}

impl Run {
    /// In the one-byte reference, every Ping is answered with its payload,
    /// in order, in its own step, and nothing else is a Pong.
    fn check_every_ping_answered(&self) {
        let pings: Vec<(usize, &[u8])> = self
            .events
            .iter()
            .filter_map(|(s, e)| match e {
                Event::Ping(p) => Some((*s, &p[..])),
                _ => None,
            })
            .collect();
        let pongs: Vec<(usize, &[u8])> = self
            .frames
            .iter()
            .filter(|f| f.1 == OpCode::Pong)
            .map(|(s, _, p)| (*s, &p[..]))
            .collect();
        assert_eq!(pongs, pings, "Pings not answered with their payload");
    }

    /// What a feeding in pieces of `chunk` bytes must produce, from the
    /// one-byte reference: a frame completes in the piece holding its last
    /// byte, so step `s` of the reference (byte `s`, or the end of the
    /// stream at `len`) becomes piece `s / chunk`. Every event and frame
    /// is the same, in the same order, but for the answered events (Pings,
    /// all answered with auto-pong, and Pongs): of those a piece brings,
    /// the first `KEEP_ANSWERED` are reported; and for the Pongs: of more
    /// than 16 Pings in a piece, the first 15 and the last are answered
    /// (RFC 6455 §5.5.3).
    fn as_if_chunked(&self, chunk: usize, len: usize) -> Run {
        let pieces = len.div_ceil(chunk);
        let at = |s: usize| if s >= len { pieces } else { s / chunk };
        let mut events = Vec::new();
        let mut answered = (usize::MAX, 0);
        for (s, e) in &self.events {
            let step = at(*s);
            if matches!(e, Event::Ping(_) | Event::Pong(_)) {
                if answered.0 != step {
                    answered = (step, 0);
                }
                answered.1 += 1;
                if answered.1 > KEEP_ANSWERED {
                    continue;
                }
            }
            events.push((step, e.clone()));
        }
        let mut frames: Vec<(usize, OpCode, Vec<u8>)> = Vec::new();
        let mut pongs = (usize::MAX, 0);
        for (s, op, p) in &self.frames {
            let step = at(*s);
            if *op == OpCode::Pong {
                if pongs.0 != step {
                    pongs = (step, 0);
                }
                pongs.1 += 1;
                if pongs.1 > 16 {
                    // Coalesced: the latest takes the 16th's place.
                    let last = frames.last_mut().expect("15 Pongs before");
                    last.2.clone_from(p);
                    continue;
                }
            }
            frames.push((step, *op, p.clone()));
        }
        Run { events, frames }
    }
}

fn payload_len(e: &Event) -> usize {
    match e {
        Event::Text(t) => t.len(),
        Event::Binary(b) | Event::Ping(b) | Event::Pong(b) => b.len(),
        Event::Fragment(f) => f.data.len(),
        _ => 0,
    }
}

/// `FrameHeader::decode` alone: a decoded header re-encodes to the same
/// bytes (the decoder rejects non-minimal lengths), and every shorter prefix
/// is incomplete rather than an error or another header.
fn header(data: &[u8]) {
    let Ok(Some((h, n))) = FrameHeader::decode(data) else {
        return;
    };
    assert!(
        n <= data.len() && n == h.encoded_len(),
        "header length {n} for {h:?}"
    );
    let mut re = Vec::new();
    h.encode(&mut re);
    assert_eq!(re, &data[..n], "re-encoding {h:?}");
    for cut in 0..n {
        assert_eq!(
            FrameHeader::decode(&data[..cut]),
            Ok(None),
            "prefix of {cut} bytes"
        );
    }
    if h.opcode.is_control() {
        assert!(h.fin && h.payload_len <= 125);
    }
    assert!(h.payload_len < 1 << 63);
}

fn limits(cfg: u8) -> (usize, usize) {
    if cfg & 8 != 0 {
        (300, 1000)
    } else {
        (64 << 10, 256 << 10)
    }
}

fn feed(cfg: u8, wire: &[u8], chunk: usize) -> Run {
    let role = if cfg & 1 != 0 {
        Role::Server
    } else {
        Role::Client
    };
    let (frame, message) = limits(cfg);
    let config = Config {
        max_frame_size: frame,
        max_message_size: message,
        max_fragments: 64,
        reassemble: cfg & 4 == 0,
        ..Config::default()
    };
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: (cfg & 2 != 0).then(DeflateParams::default),
    };
    let conn = Connection::upgraded(
        role,
        config,
        negotiated,
        Some(Box::new(SeededMask::new([1; 32]))),
        epoch(),
    );
    let limits = Limits {
        max_frame_size: frame,
        max_message_size: message,
        auto_pong: true,
    };
    let mut c = Checked::new(conn, limits, false);
    let mut run = Run {
        events: Vec::new(),
        frames: Vec::new(),
    };
    let mut record = |i: usize, step: Step| {
        run.events.extend(step.events.into_iter().map(|e| (i, e)));
        run.frames
            .extend(step.frames.into_iter().map(|f| (i, f.opcode, f.payload)));
    };
    let mut steps = 0;
    for piece in wire.chunks(chunk) {
        c.conn.receive(epoch(), piece);
        // Inflating in slices changes nothing that is reported: the piece
        // is processed in full, without draining in between, as one call
        // processed it before the slices.
        while c.conn.has_pending_work() {
            c.conn.resume(epoch());
        }
        record(steps, c.step());
        steps += 1;
    }
    c.conn.receive_eof(epoch());
    record(steps, c.step());
    run
}
