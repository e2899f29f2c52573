//! Fan-out: one 1 KiB message to 1,000 server connections, sent as
//! (a) a clone of the message to each connection (`send`: each one frames
//! the payload again, copying it, and with compression compresses it again)
//! and (b) one [`PreparedMessage`] (`send_prepared`: the frame is shared,
//! and compressed once per no-context-takeover class). The time is per
//! broadcast (1,000 sends, preparing included), output drained the way the
//! driver drains it (`peek_transmit_vectored` + `advance_transmit`).
//!
//! ```text
//! cargo bench -p wsmachine --bench fanout
//! ```
//! Groups: `fanout_1k_x1000/{uncompressed,server_no_context_takeover}`,
//! each with `clone_send` and `prepared`; and
//! `fanout_1k_x1000/context_takeover` (prepared falls back to each
//! connection's compressor: no gain expected, the cost of correctness).
//! `fanin_1k_x1000/{client_no_context_takeover,context_takeover}`: each
//! connection receives one compressed 1 KiB message.
//!
//! One run (release, 2 shared cores), per broadcast of 1,000 sends:
//! uncompressed 53.7 µs clone+send, 36.3 µs prepared; with
//! `server_no_context_takeover` 41.7 ms clone+send (a zlib reset per
//! message per connection), 58.5 µs prepared (one compression); with
//! context takeover prepared falls back to 8.2 ms.
//!
//! Since connections without context takeover share their thread's zlib
//! streams instead of each resetting its own (A/B, old and new binaries
//! run alternately twice on 2 cores shared with other work, load ~6;
//! medians old → new): `server_no_context_takeover/clone_send` 69.9 and
//! 83.3 ms → 16.7 and 10.9 ms (one warm stream instead of 1,000 cold
//! ones); `prepared` 109 and 115 µs → 102 and 72 µs (the one compression
//! no longer allocates a stream); `fanin_1k_x1000/client_no_context_takeover`
//! 7.1 and 8.5 ms → 4.2 and 4.7 ms; the unchanged `context_takeover` fanin,
//! as a control, 2.75 and 3.04 ms → 3.12 and 3.02 ms.
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wsmachine::{
    Config, Connection, DeflateParams, Event, Message, Negotiated, PreparedMessage, Role,
    SeededMask,
};

const CONNECTIONS: usize = 1000;

/// 1 KiB of JSON-like text.
fn message() -> String {
    let mut s = String::new();
    let mut i = 0u32;
    while s.len() < 1024 {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"u{}\",\"price\":{}.{:02},\"side\":\"{}\"}},",
            i.wrapping_mul(2_654_435_761) % 997,
            100 + i % 37,
            i % 100,
            if i % 3 == 0 { "buy" } else { "sell" }
        ));
        i += 1;
    }
    s.truncate(1024);
    s
}

fn connections(deflate: Option<DeflateParams>) -> Vec<Connection> {
    let cfg = std::sync::Arc::new(Config {
        ping_interval: None,
        ..Config::with_deflate()
    });
    let negotiated = Negotiated {
        subprotocol: None,
        deflate,
    };
    (0..CONNECTIONS)
        .map(|_| {
            Connection::upgraded(
                Role::Server,
                cfg.clone(),
                negotiated.clone(),
                None,
                Instant::now(),
            )
        })
        .collect()
}

/// Drains a connection's output as the driver writes it.
fn drain(c: &mut Connection) -> usize {
    let mut n = 0;
    loop {
        let mut bufs = [IoSlice::new(&[]); 8];
        let k = c.peek_transmit_vectored(&mut bufs);
        if k == 0 {
            return n;
        }
        let len: usize = bufs[..k].iter().map(|b| black_box(b.len())).sum();
        c.advance_transmit(len);
        n += len;
    }
}

fn fanout(c: &mut Criterion) {
    let text = message();
    let msg = Message::Text(text.clone().into());
    let mut g = c.benchmark_group("fanout_1k_x1000");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(CONNECTIONS as u64));
    let nct = DeflateParams {
        server_no_context_takeover: true,
        ..DeflateParams::default()
    };
    for (name, deflate) in [
        ("uncompressed", None),
        ("server_no_context_takeover", Some(nct)),
        ("context_takeover", Some(DeflateParams::default())),
    ] {
        let mut conns = connections(deflate);
        if name != "context_takeover" {
            g.bench_function(format!("{name}/clone_send"), |b| {
                b.iter(|| {
                    let mut n = 0;
                    for c in &mut conns {
                        c.send(msg.clone()).unwrap();
                        n += drain(c);
                    }
                    n
                })
            });
        }
        g.bench_function(format!("{name}/prepared"), |b| {
            b.iter(|| {
                let p = PreparedMessage::new(msg.clone());
                let mut n = 0;
                for c in &mut conns {
                    c.send_prepared(&p).unwrap();
                    n += drain(c);
                }
                n
            })
        });
    }
    g.finish();
}

/// The other way: each of the 1,000 server connections receives one
/// compressed 1 KiB message from its client (a masked frame, compressed
/// by the client's own compressor beforehand) and the application takes
/// it. With `client_no_context_takeover` the servers inflate with the
/// thread's shared decompressor; with context takeover each with its own.
fn fanin(c: &mut Criterion) {
    let text = message();
    let mut g = c.benchmark_group("fanin_1k_x1000");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(CONNECTIONS as u64));
    let nct = DeflateParams {
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    for (name, params) in [
        ("client_no_context_takeover", nct),
        ("context_takeover", DeflateParams::default()),
    ] {
        let mut conns = connections(Some(params));
        // Every connection's client sends the same message again and
        // again: with context takeover each is a few bytes after the
        // first, so the frames are made per round, as the peer would.
        let mut client = Connection::upgraded(
            Role::Client,
            Config::with_deflate(),
            Negotiated {
                subprotocol: None,
                deflate: Some(params),
            },
            Some(Box::new(SeededMask::new([1; 32]))),
            Instant::now(),
        );
        let mut frame = || {
            client.send_text(&text).unwrap();
            let mut wire = Vec::new();
            while let Some(b) = client.poll_transmit() {
                wire.extend_from_slice(&b);
            }
            wire
        };
        // Context takeover: the first message primes each connection, and
        // every later one refers back into the one before.
        let first = frame();
        let steady = frame();
        for c in &mut conns {
            c.receive(Instant::now(), &first);
            black_box(c.poll_event());
        }
        let now = Instant::now();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0;
                for c in &mut conns {
                    c.receive(now, &steady);
                    if let Some(Event::Text(t)) = c.poll_event() {
                        n += t.len();
                    }
                }
                assert_eq!(n, CONNECTIONS * text.len());
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fanout, fanin);
criterion_main!(benches);
