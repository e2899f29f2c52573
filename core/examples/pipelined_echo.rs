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
//! Arguments: messages (default 200 000), payload bytes (default 32).
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use wsmachine::{apply_mask, Config, Connection, Event, Negotiated, Role};

const BATCH: usize = 64;

/// One masked binary frame from a client (mask `[1, 2, 3, 4]`).
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [1, 2, 3, 4];
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(200_000, |a| a.parse().expect("messages"));
    let size: usize = args
        .next()
        .map_or(32, |a| a.parse().expect("payload bytes"));
    let now = Instant::now();
    let config = Config {
        ping_interval: None,
        ..Config::default()
    };
    let mut server = Connection::upgraded(Role::Server, config, Negotiated::default(), None, now);
    let frame = client_frame(&vec![7; size]);
    let batch: Vec<u8> = frame.repeat(BATCH);
    let (mut echoed, mut written) = (0usize, 0usize);
    while echoed < n {
        server.receive(now, &batch);
        while let Some(ev) = server.poll_event() {
            match ev {
                Event::Binary(b) => server.send(b).expect("echo"),
                other => panic!("unexpected {other:?}"),
            }
            echoed += 1;
        }
        while let Some(out) = server.peek_transmit() {
            let k = out.len();
            written += k;
            server.advance_transmit(k);
        }
    }
    println!("{echoed} messages of {size} bytes echoed, {written} bytes written");
}
