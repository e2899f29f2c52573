//! `frame_decode`: arbitrary bytes through `FrameHeader::decode` and through
//! an upgraded connection of each role.
//!
//! Input: one configuration byte (bit 0: server, bit 1: compression
//! negotiated, bit 2: streaming instead of reassembly, bit 3: small limits,
//! bits 4–7: chunk size for the second feeding), then the wire bytes.

use wsmachine::internals::FrameHeader;
use wsmachine::{Config, Connection, DeflateParams, Event, Negotiated, Role, SeededMask};

use crate::alloc::Peak;
use crate::check::{epoch, Checked, Limits};

/// Runs the target.
pub fn frame_decode(data: &[u8]) {
    header(data);
    let Some((&cfg, wire)) = data.split_first() else {
        return;
    };
    let peak = Peak::start();
    let whole = feed(cfg, wire, wire.len().max(1));
    let chunk = usize::from(cfg >> 4) + 1;
    let pieces = feed(cfg, wire, chunk);
    assert_eq!(
        whole, pieces,
        "events depend on chunking (chunks of {chunk})"
    );
    // Both event lists are still held: the bound covers their payloads, at
    // most twice over (a message's buffer may have grown by doubling).
    let held: usize = whole
        .iter()
        .chain(&pieces)
        .map(|e| payload_len(e) * 2 + 256)
        .sum();
    let (frame, message) = limits(cfg);
    peak.check(
        (2 << 20) + 8 * (frame + message) + 16 * data.len() + held,
        "frame_decode",
    );
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

fn feed(cfg: u8, wire: &[u8], chunk: usize) -> Vec<Event> {
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
    let mut events = Vec::new();
    for piece in wire.chunks(chunk) {
        c.conn.receive(epoch(), piece);
        events.extend(c.step().events);
    }
    c.conn.receive_eof(epoch());
    events.extend(c.step().events);
    events
}
