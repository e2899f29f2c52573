//! Frame decode and encode throughput, side by side with tungstenite in the
//! same run, plus the unmask kernel against memcpy (the physical ceiling).
//!
//! ```text
//! cargo bench -p wsmachine --bench frames
//! ```
//! Decoding feeds a buffer of back-to-back frames in 64 KiB reads, as a
//! socket would, and drains every event; each library gets the same bytes.
//!
//! Groups: `decode_{binary,text}_{server_masked,client_unmasked}` (GB/s by
//! frame size), `decode_frames_per_s` (small frames, frames/s),
//! `decode_fragmented` (messages in many frames, reassembled),
//! `decode_compressed` and `encode_compressed` (permessage-deflate against
//! the same messages uncompressed; ours only, tungstenite has no
//! compression), `encode_binary_*` (`wsmachine` drains each message with
//! `poll_transmit`, `wsmachine_peek` with `peek_transmit`/`advance_transmit`)
//! and `unmask_vs_memcpy`.
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{Cursor, Read, Write};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsmachine::internals::{Compressor, FrameHeader, RSV1};
use wsmachine::{
    apply_mask, Config, Connection, DeflateConfig, DeflateParams, Event, Negotiated, OpCode, Role,
    SeededMask,
};

mod input;
use input::frames;

const SIZES: [usize; 5] = [16, 125, 1024, 65536, 1 << 20];
const READ: usize = 64 << 10;

fn config() -> Config {
    Config {
        ping_interval: None,
        max_message_size: 64 << 20,
        ..Config::default()
    }
}

fn ours_decode(role: Role, input: &[u8]) -> usize {
    ours_decode_with(role, config(), Negotiated::default(), input)
}

/// An open connection in `role` (a client masks with a seeded source).
fn connection(role: Role, config: Config, negotiated: Negotiated) -> Connection {
    let mask = (role == Role::Client).then(|| Box::new(SeededMask::new([1; 32])) as Box<_>);
    Connection::upgraded(role, config, negotiated, mask, Instant::now())
}

fn ours_decode_with(role: Role, config: Config, negotiated: Negotiated, input: &[u8]) -> usize {
    let mut c = connection(role, config, negotiated);
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
                let mut conn = connection(role, config(), Negotiated::default());
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
            // The same, draining with `peek_transmit`/`advance_transmit` (a
            // driver writing from a borrowed slice) instead of `poll_transmit`.
            g.bench_function(BenchmarkId::new("wsmachine_peek", size), |b| {
                let mut conn = connection(role, config(), Negotiated::default());
                b.iter(|| {
                    let mut written = 0;
                    for _ in 0..count {
                        conn.send(payload.clone()).unwrap();
                        while let Some(out) = conn.peek_transmit() {
                            let n = std::hint::black_box(out).len();
                            written += n;
                            conn.advance_transmit(n);
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

/// Small frames: frames per second, side by side.
fn decode_frames_per_s(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_frames_per_s");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for size in [16, 125] {
        let (input, count) = frames(size, true, OpCode::Binary);
        g.throughput(Throughput::Elements(count as u64));
        g.bench_with_input(BenchmarkId::new("wsmachine", size), &input, |b, i| {
            b.iter(|| assert_eq!(ours_decode(Role::Server, i), count))
        });
        g.bench_with_input(BenchmarkId::new("tungstenite", size), &input, |b, i| {
            b.iter(|| assert_eq!(tungstenite_decode(Role::Server, i), count))
        });
    }
    g.finish();
}

/// Client-masked messages of `msg` bytes, each in `msg / frag` frames,
/// totalling about 4 MiB; returns the bytes and the message count.
fn fragmented(msg: usize, frag: usize, opcode: OpCode) -> (Vec<u8>, usize) {
    let count = ((4 << 20) / msg).max(8);
    let payload: Vec<u8> = match opcode {
        OpCode::Text => "héllo wörld, ".bytes().cycle().take(msg).collect(),
        _ => (0..msg).map(|i| i as u8).collect(),
    };
    let mut out = BytesMut::new();
    for i in 0..count {
        let parts: Vec<&[u8]> = payload.chunks(frag).collect();
        for (k, part) in parts.iter().enumerate() {
            let mask = ((i * 131 + k) as u32).to_be_bytes();
            FrameHeader {
                fin: k + 1 == parts.len(),
                rsv: 0,
                opcode: if k == 0 { opcode } else { OpCode::Continuation },
                mask: Some(mask),
                payload_len: part.len() as u64,
            }
            .encode_frame(part, &mut out);
        }
    }
    (out.to_vec(), count)
}

/// Fragmented messages, reassembled (text is validated across fragments).
fn decode_fragmented(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_fragmented");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for (name, opcode) in [("binary", OpCode::Binary), ("text", OpCode::Text)] {
        // 64 KiB in 16 frames of 4 KiB; 1 KiB in 64 frames of 16 B.
        for (msg, frag) in [(65536, 4096), (1024, 16)] {
            let (input, count) = fragmented(msg, frag, opcode);
            let id = format!("{name}/{msg}B_in_{frag}B_frames");
            g.throughput(Throughput::Bytes((count * msg) as u64));
            g.bench_with_input(BenchmarkId::new("wsmachine", &id), &input, |b, i| {
                b.iter(|| assert_eq!(ours_decode(Role::Server, i), count))
            });
            g.bench_with_input(BenchmarkId::new("tungstenite", &id), &input, |b, i| {
                b.iter(|| assert_eq!(tungstenite_decode(Role::Server, i), count))
            });
        }
    }
    g.finish();
}

/// JSON-like text, as in benches/deflate.rs.
fn json_text(n: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(n + 100);
    let mut i = 0u32;
    while s.len() < n {
        s.extend_from_slice(
            format!(
                "{{\"id\":{i},\"user\":\"user{}\",\"event\":\"click\",\"x\":{},\"y\":{}}}\n",
                i % 97,
                i.wrapping_mul(31) % 1920,
                i.wrapping_mul(17) % 1080
            )
            .as_bytes(),
        );
        i += 1;
    }
    s.truncate(n);
    s
}

/// What a bare `permessage-deflate` offer negotiates, with the server's
/// default configuration.
fn deflate_negotiated() -> (Config, Negotiated) {
    let params = DeflateParams {
        server_max_window_bits: DeflateConfig::default().server_max_window_bits,
        ..DeflateParams::default()
    };
    let cfg = Config {
        deflate: Some(DeflateConfig::default()),
        ..config()
    };
    (
        cfg,
        Negotiated {
            deflate: Some(params),
            ..Negotiated::default()
        },
    )
}

/// Client-masked text messages of `size` bytes, compressed with context
/// takeover (or not), about 4 MiB of text in all.
fn text_messages(size: usize, compressed: bool) -> (Vec<u8>, usize) {
    let count = ((4 << 20) / size).max(8);
    let text = json_text(size);
    let (_, negotiated) = deflate_negotiated();
    let params = negotiated.deflate.expect("deflate negotiated");
    let mut comp = Compressor::new(&params, &DeflateConfig::default(), Role::Client);
    let mut out = BytesMut::new();
    let mut body = BytesMut::new();
    for i in 0..count {
        body.clear();
        if compressed {
            comp.compress(&text, true, &mut body);
        } else {
            body.extend_from_slice(&text);
        }
        let mask = (i as u32).to_be_bytes();
        FrameHeader {
            fin: true,
            rsv: if compressed { RSV1 } else { 0 },
            opcode: OpCode::Text,
            mask: Some(mask),
            payload_len: body.len() as u64,
        }
        .encode_frame(&body, &mut out);
    }
    (out.to_vec(), count)
}

/// Receiving JSON-like text compressed (permessage-deflate, context
/// takeover, server defaults) against the same text uncompressed; bytes
/// are counted uncompressed.
fn decode_compressed(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_compressed");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let (cfg, negotiated) = deflate_negotiated();
    for size in [1024, 65536] {
        for compressed in [false, true] {
            let (input, count) = text_messages(size, compressed);
            let name = if compressed { "deflate" } else { "plain" };
            g.throughput(Throughput::Bytes((count * size) as u64));
            g.bench_with_input(BenchmarkId::new(name, size), &input, |b, i| {
                b.iter(|| {
                    assert_eq!(
                        ours_decode_with(Role::Server, cfg.clone(), negotiated.clone(), i),
                        count
                    )
                })
            });
        }
    }
    g.finish();
}

/// Sending JSON-like text as a server, compressed against plain.
fn encode_compressed(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_compressed");
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for size in [1024, 65536] {
        let count = ((4 << 20) / size).max(8);
        let text = String::from_utf8(json_text(size)).expect("ASCII");
        let text = wsmachine::Utf8Bytes::from(text);
        g.throughput(Throughput::Bytes((count * size) as u64));
        for compressed in [false, true] {
            let name = if compressed { "deflate" } else { "plain" };
            let (cfg, negotiated) = if compressed {
                deflate_negotiated()
            } else {
                (config(), Negotiated::default())
            };
            g.bench_function(BenchmarkId::new(name, size), |b| {
                let mut conn = connection(Role::Server, cfg.clone(), negotiated.clone());
                b.iter(|| {
                    let mut written = 0;
                    for _ in 0..count {
                        conn.send(text.clone()).unwrap();
                        while let Some(out) = conn.poll_transmit() {
                            written += out.len();
                        }
                    }
                    written
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    decode,
    decode_frames_per_s,
    decode_fragmented,
    decode_compressed,
    encode,
    encode_compressed,
    unmask
);
criterion_main!(benches);
