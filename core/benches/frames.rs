//! Frame decode and encode throughput, side by side with tungstenite in the
//! same run, plus the unmask kernel against memcpy (the physical ceiling).
//!
//! ```text
//! cargo bench -p wsmachine --bench frames
//! ```
//! Decoding feeds a buffer of back-to-back frames in 64 KiB reads, as a
//! socket would, and drains every event; each library gets the same bytes.
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{Cursor, Read, Write};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsmachine::{
    apply_mask, Config, Connection, Event, FrameHeader, Negotiated, OpCode, Role, SeededMask,
};

const SIZES: [usize; 5] = [16, 125, 1024, 65536, 1 << 20];
const READ: usize = 64 << 10;

/// Back-to-back frames totalling about 4 MiB (at least 8 frames).
fn frames(size: usize, masked: bool, opcode: OpCode) -> (Vec<u8>, usize) {
    let count = ((4 << 20) / size).max(8);
    let payload: Vec<u8> = match opcode {
        OpCode::Text => "héllo wörld, ".bytes().cycle().take(size).collect(),
        _ => (0..size).map(|i| i as u8).collect(),
    };
    let mut out = BytesMut::new();
    for i in 0..count {
        let mask = masked.then(|| (i as u32).to_be_bytes());
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: size as u64,
        }
        .encode(&mut out);
        let start = out.len();
        out.extend_from_slice(&payload);
        if let Some(m) = mask {
            apply_mask(&mut out[start..], m, 0);
        }
    }
    (out.to_vec(), count)
}

fn config() -> Config {
    Config {
        ping_interval: None,
        max_message_size: 64 << 20,
        ..Config::default()
    }
}

fn ours_decode(role: Role, input: &[u8]) -> usize {
    let mask = (role == Role::Client).then(|| Box::new(SeededMask::new([1; 32])) as Box<_>);
    let mut c = Connection::upgraded(role, config(), Negotiated::default(), mask, Instant::now());
    let now = Instant::now();
    let mut n = 0;
    for chunk in input.chunks(READ) {
        c.receive(now, chunk);
        while let Some(e) = c.poll_event() {
            if let Event::Binary(_) | Event::Text(_) = e {
                n += 1;
            }
        }
    }
    n
}

/// An in-memory duplex for tungstenite: reads from `input`, discards writes.
struct Mem(Cursor<Vec<u8>>);
impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = buf.len().min(READ);
        let n = self.0.read(&mut buf[..len])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}
impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn tungstenite_decode(role: Role, input: &[u8]) -> usize {
    use tungstenite::protocol::{Role as TRole, WebSocket, WebSocketConfig};
    let role = match role {
        Role::Client => TRole::Client,
        Role::Server => TRole::Server,
    };
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(16 << 20));
    let mut ws = WebSocket::from_raw_socket(Mem(Cursor::new(input.to_vec())), role, Some(cfg));
    let mut n = 0;
    while let Ok(m) = ws.read() {
        if m.is_binary() || m.is_text() {
            n += 1;
        }
    }
    n
}

fn decode(c: &mut Criterion) {
    for (name, opcode) in [("binary", OpCode::Binary), ("text", OpCode::Text)] {
        for (side, role, masked) in [
            ("server_masked", Role::Server, true),
            ("client_unmasked", Role::Client, false),
        ] {
            let mut g = c.benchmark_group(format!("decode_{name}_{side}"));
            g.sample_size(20);
            for size in SIZES {
                let (input, count) = frames(size, masked, opcode);
                g.throughput(Throughput::Bytes((count * size) as u64));
                g.bench_with_input(BenchmarkId::new("wsmachine", size), &input, |b, i| {
                    b.iter(|| assert_eq!(ours_decode(role, i), count))
                });
                g.bench_with_input(BenchmarkId::new("tungstenite", size), &input, |b, i| {
                    b.iter(|| assert_eq!(tungstenite_decode(role, i), count))
                });
            }
            g.finish();
        }
    }
}

fn encode(c: &mut Criterion) {
    for (side, role) in [
        ("server_unmasked", Role::Server),
        ("client_masked", Role::Client),
    ] {
        let mut g = c.benchmark_group(format!("encode_binary_{side}"));
        g.sample_size(20);
        for size in SIZES {
            let count = ((4 << 20) / size).max(8);
            let payload = Bytes::from(vec![7u8; size]);
            g.throughput(Throughput::Bytes((count * size) as u64));
            g.bench_function(BenchmarkId::new("wsmachine", size), |b| {
                let mask =
                    (role == Role::Client).then(|| Box::new(SeededMask::new([1; 32])) as Box<_>);
                let mut conn = Connection::upgraded(
                    role,
                    config(),
                    Negotiated::default(),
                    mask,
                    Instant::now(),
                );
                b.iter(|| {
                    let mut written = 0;
                    for _ in 0..count {
                        conn.send(payload.clone()).unwrap();
                        while let Some(out) = conn.poll_transmit() {
                            written += out.len();
                        }
                    }
                    written
                })
            });
            g.bench_function(BenchmarkId::new("tungstenite", size), |b| {
                use tungstenite::protocol::{Message, Role as TRole, WebSocket};
                let role = if role == Role::Client {
                    TRole::Client
                } else {
                    TRole::Server
                };
                let mut ws = WebSocket::from_raw_socket(Mem(Cursor::new(Vec::new())), role, None);
                b.iter(|| {
                    for _ in 0..count {
                        ws.write(Message::Binary(payload.clone())).unwrap();
                    }
                    ws.flush().unwrap();
                })
            });
        }
        g.finish();
    }
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask_vs_memcpy");
    for size in [64 << 10, 1 << 20] {
        let src = vec![3u8; size];
        let mut dst = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("apply_mask", size), |b| {
            b.iter(|| apply_mask(&mut dst, [1, 2, 3, 4], 1))
        });
        g.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| dst.copy_from_slice(&src))
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode, unmask);
criterion_main!(benches);
