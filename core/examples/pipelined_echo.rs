//! A fixed pipelined echo in memory, for counting instructions: a server
//! `Connection` receives batches of 64 masked client frames, echoes every
//! message and writes its output away, `N` messages in all. No I/O, no
//! clock beyond one `Instant`, no randomness: the same run every time, so
//! `valgrind --tool=callgrind` gives a repeatable count per message even on
//! a loaded machine.
//!
//! ```text
//! cargo build --release -p wsmachine --example pipelined_echo
//! valgrind --tool=callgrind target/release/examples/pipelined_echo 200000 32
//! ```
//! Arguments: messages (default 200 000), payload bytes (default 32), and
//! `plain` (default), `deflate` (permessage-deflate without context
//! takeover, every message compressed, the same 64 frames each batch) or
//! `ctx` (with context takeover, as a bare offer negotiates: the client's
//! frames for all the messages are made first, which both counts of an A/B
//! include alike) or `ctx-pooled` (the same with `release_after_idle` of
//! zero: both ends' streams come from the thread's pool for each message,
//! primed with the connection's window). Compressed payloads are
//! `abcdefgh` repeated.
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use bytes::BytesMut;
use wsmachine::internals::FrameHeader;
use wsmachine::{
    Config, Connection, DeflateConfig, DeflateParams, Event, Negotiated, OpCode, Role, SeededMask,
};

const BATCH: usize = 64;

/// One masked binary frame from a client (mask `[1, 2, 3, 4]`).
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = BytesMut::new();
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode: OpCode::Binary,
        mask: Some(mask),
        payload_len: payload.len() as u64,
    }
    .encode_frame(payload, &mut out);
    out.to_vec()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(200_000, |a| a.parse().expect("messages"));
    let size: usize = args
        .next()
        .map_or(32, |a| a.parse().expect("payload bytes"));
    let mode = args.next().unwrap_or_else(|| "plain".into());
    let now = Instant::now();
    if mode != "plain" {
        return compressed(n, size, mode.starts_with("ctx"), mode == "ctx-pooled", now);
    }
    let config = Config {
        ping_interval: None,
        ..Config::default()
    };
    let mut server = Connection::upgraded(Role::Server, config, Negotiated::default(), None, now);
    let frame = client_frame(&vec![7; size]);
    let batch: Vec<u8> = frame.repeat(BATCH);
    echo(&mut server, &[batch], n, size, now);
}

/// The echo loop: feeds the batches in turn until `n` messages were echoed.
fn echo(server: &mut Connection, batches: &[Vec<u8>], n: usize, size: usize, now: Instant) {
    let (mut echoed, mut written) = (0usize, 0usize);
    let mut next = batches.iter().cycle();
    while echoed < n {
        server.receive(now, next.next().expect("a batch"));
        loop {
            while let Some(ev) = server.poll_event() {
                match ev {
                    Event::Binary(b) => server.send(b).expect("echo"),
                    other => panic!("unexpected {other:?}"),
                }
                echoed += 1;
            }
            // Messages inflating past 256 KiB take more than one call.
            if !server.has_pending_work() {
                break;
            }
            server.resume(now);
        }
        while let Some(out) = server.peek_transmit() {
            let k = out.len();
            written += k;
            server.advance_transmit(k);
        }
    }
    println!("{echoed} messages of {size} bytes echoed, {written} bytes written");
}

/// The same loop with permessage-deflate both ways; client frames made by
/// a client core (every message compressed, masked with a seeded source).
fn compressed(n: usize, size: usize, takeover: bool, pooled: bool, now: Instant) {
    let deflate = DeflateConfig {
        client_no_context_takeover: !takeover,
        server_no_context_takeover: !takeover,
        min_compress_size: 0,
        release_after_idle: Some(std::time::Duration::from_secs(if pooled { 0 } else { 1 })),
        ..DeflateConfig::default()
    };
    let params = DeflateParams {
        client_no_context_takeover: !takeover,
        server_no_context_takeover: !takeover,
        ..DeflateParams::default()
    };
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: Some(params),
    };
    let config = Config {
        ping_interval: None,
        deflate: Some(deflate),
        ..Config::default()
    };
    let mut client = Connection::upgraded(
        Role::Client,
        config.clone(),
        negotiated.clone(),
        Some(Box::new(SeededMask::new([7; 32]))),
        now,
    );
    let payload: Vec<u8> = (0..size).map(|i| b"abcdefgh"[i % 8]).collect();
    // Without takeover every message compresses alike: one batch, repeated.
    let batches: Vec<Vec<u8>> = (0..if takeover { n.div_ceil(BATCH) } else { 1 })
        .map(|_| {
            for _ in 0..BATCH {
                client.send_binary(&payload).expect("send");
            }
            std::iter::from_fn(|| client.poll_transmit())
                .flatten()
                .collect()
        })
        .collect();
    let mut server = Connection::upgraded(Role::Server, config, negotiated, None, now);
    echo(&mut server, &batches, n, size, now);
}
