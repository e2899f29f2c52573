//! Heap bytes an idle server connection keeps: after the opening handshake
//! and one small echo, with every output chunk written and every event
//! taken, a `Connection` (its struct and what it points to) must hold at
//! most 768 bytes on a 64-bit target: 736 when written, a 520-byte struct
//! (the configuration is shared, and what only compression, closing or a
//! failure needs is boxed when it is needed; the counters
//! `Connection::stats` reads, kept on every connection, added 56 bytes to
//! it) and 216 bytes of heap: the
//! link between the halves and the input and output buffers it keeps so
//! that the steady state does not allocate (the event and chunk queues the
//! handshake used are given back). The bound is on the total, so a struct
//! that grows fails it as well as a buffer that is kept.
//!
//! A counting global allocator tracks the live bytes of each thread, so a
//! test sees only its own allocations (a process-wide count once caught the
//! harness's threads and failed one run in four); the connection is boxed
//! so that its own size is counted too.
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use wsmachine::internals::FrameHeader;
use wsmachine::{Accept, Config, Connection, Event, OpCode};

#[path = "support/live_bytes.rs"]
mod live_bytes;
use live_bytes::live;

#[global_allocator]
static A: live_bytes::LiveBytes = live_bytes::LiveBytes;

const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

fn masked_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let m = [1, 2, 3, 4];
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(m),
        payload_len: payload.len() as u64,
    }
    .encode_frame(payload, &mut out);
    out.to_vec()
}

/// What an idle connection may hold, its struct included (64-bit target;
/// pointers and buffer headers are half the size on 32-bit ones).
fn bound() -> isize {
    if cfg!(target_pointer_width = "64") {
        768
    } else {
        544
    }
}

/// One configuration shared by every connection, as a server would: the
/// connections then hold a reference to it, not a copy each.
fn quiet() -> Arc<Config> {
    Arc::new(Config {
        ping_interval: None,
        ..Config::default()
    })
}

/// Runs a server connection through the handshake and `echoes` echoes,
/// returns it idle (output drained, no event left).
fn idle_server(cfg: Arc<Config>, echoes: usize) -> Box<Connection> {
    let now = Instant::now();
    let mut conn = Box::new(Connection::server(cfg, now));
    conn.receive(now, REQUEST);
    match conn.poll_event() {
        Some(Event::Request(_)) => conn.accept(now, Accept::new()).unwrap(),
        other => panic!("expected the request, got {other:?}"),
    }
    while conn.poll_transmit().is_some() {}
    let frame = masked_frame(OpCode::Binary, &[7; 16]);
    for _ in 0..echoes {
        conn.receive(now, &frame);
        match conn.poll_event() {
            Some(Event::Binary(b)) => conn.send(b).unwrap(),
            other => panic!("expected the message, got {other:?}"),
        }
        while conn.poll_transmit().is_some() {}
    }
    assert!(conn.poll_event().is_none());
    conn
}

#[test]
fn idle_connection_after_one_echo_holds_at_most_768_bytes() {
    let cfg = quiet();
    // Warm up anything lazily allocated once per process.
    drop(idle_server(cfg.clone(), 1));
    let before = live();
    let conns: Vec<Box<Connection>> = (0..100).map(|_| idle_server(cfg.clone(), 1)).collect();
    let held = (live() - before) / conns.len() as isize;
    let own = std::mem::size_of::<Connection>() as isize;
    eprintln!("idle connection: {held} bytes of heap ({own} of them the Connection struct)");
    assert!(
        held <= bound(),
        "an idle connection holds {held} bytes ({own} in its struct)"
    );
    drop(conns);
}

/// A read full of tiny frames must not leave a connection holding an event
/// queue sized for that read once the application took every event: 64 KiB
/// of 16-byte messages is ~2 900 events (~140 KiB of queue), of empty Pings
/// ~10 900. Bounded as an idle connection is.
#[test]
fn a_burst_of_tiny_frames_leaves_no_queue_behind() {
    let cfg = quiet();
    drop(idle_server(cfg.clone(), 1));
    let now = Instant::now();
    let data = masked_frame(OpCode::Binary, &[7; 16]);
    let ping = masked_frame(OpCode::Ping, &[]);
    for (name, frame) in [("16-byte messages", &data), ("empty Pings", &ping)] {
        let burst: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * ((64 << 10) / frame.len()))
            .collect();
        let before = live();
        let mut conns: Vec<Box<Connection>> =
            (0..10).map(|_| idle_server(cfg.clone(), 1)).collect();
        for conn in &mut conns {
            conn.receive(now, &burst);
            let mut n = 0;
            while let Some(ev) = conn.poll_event() {
                assert!(matches!(ev, Event::Binary(_) | Event::Ping(_)), "{ev:?}");
                n += 1;
            }
            // Every message is delivered; of answered Pings, the first 16
            // (they need nothing from the application; see `Event::Ping`).
            let frames = burst.len() / frame.len();
            let want = if name == "empty Pings" { 16 } else { frames };
            assert_eq!(n, want);
            while conn.poll_transmit().is_some() {}
        }
        let held = (live() - before) / conns.len() as isize;
        eprintln!("after a 64 KiB burst of {name}: {held} bytes of heap");
        assert!(held <= bound(), "after a burst of {name}: {held} bytes");
        drop(conns);
    }
}
