//! Frame decoding side by side with fastwebsockets and wtx, whose codecs
//! only run over an async stream: all get the same back-to-back masked
//! frames (client to server) in reads of at most 64 KiB, from memory, and
//! hand out every message. fastwebsockets runs in `FragmentCollector`, as
//! its own echo example does (that is where it validates UTF-8); wtx reads
//! with `WebSocketPayloadOrigin::Adaptive`, as its echo examples do (it
//! validates text by default), through its own `StreamReader` trait, which
//! the same in-memory stream implements. Both streams are polled on a
//! current-thread Tokio runtime, whose overhead per read is part of what it
//! costs to use.
//!
//! ```text
//! cargo bench -p wsmachine --bench peers
//! ```
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsmachine::{Config, Connection, Event, Negotiated, OpCode, Role};

mod input;

const READ: usize = 64 << 10;

fn ours(input: &[u8]) -> usize {
    let cfg = Config {
        ping_interval: None,
        ..Config::default()
    };
    let now = Instant::now();
    let mut c = Connection::upgraded(Role::Server, cfg, Negotiated::default(), None, now);
    let mut n = 0;
    for chunk in input.chunks(READ) {
        c.receive(now, chunk);
        while let Some(e) = c.poll_event() {
            if let Event::Text(_) | Event::Binary(_) = e {
                n += 1;
            }
        }
    }
    n
}

/// A stream that reads `data` at most `READ` bytes at a time and swallows
/// writes (fastwebsockets and wtx write nothing for data frames).
struct Memory {
    data: Bytes,
}

impl AsyncRead for Memory {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(buf.remaining()).min(READ);
        let chunk = self.data.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Memory {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl wtx::stream::StreamReader for Memory {
    async fn read(&mut self, bytes: &mut [u8]) -> wtx::Result<usize> {
        let n = self.data.len().min(bytes.len()).min(READ);
        let chunk = self.data.split_to(n);
        bytes[..n].copy_from_slice(&chunk);
        Ok(n)
    }
}

impl wtx::stream::StreamWriter for Memory {
    async fn write_all(&mut self, _: &[u8]) -> wtx::Result<()> {
        Ok(())
    }
    async fn write_all_vectored(&mut self, _: &[&[u8]]) -> wtx::Result<()> {
        Ok(())
    }
}

fn wtx(rt: &tokio::runtime::Runtime, input: &Bytes, count: usize) -> usize {
    use wtx::web_socket::{WebSocket, WebSocketBuffer, WebSocketPayloadOrigin};
    rt.block_on(async {
        let mut ws = WebSocket::<_, _, _, _, false>::new(
            (),
            false,
            wtx::rng::Xorshift64::from(1),
            Memory {
                data: input.clone(),
            },
            WebSocketBuffer::default(),
        );
        let mut buffer = wtx::collection::Vector::new();
        let mut n = 0;
        while n < count {
            let frame = ws
                .read_frame(&mut buffer, WebSocketPayloadOrigin::Adaptive)
                .await
                .expect("valid frames");
            std::hint::black_box(frame.payload());
            n += 1;
        }
        n
    })
}

fn fastwebsockets(rt: &tokio::runtime::Runtime, input: &Bytes, count: usize) -> usize {
    rt.block_on(async {
        let ws = fastwebsockets::WebSocket::after_handshake(
            Memory {
                data: input.clone(),
            },
            fastwebsockets::Role::Server,
        );
        let mut ws = fastwebsockets::FragmentCollector::new(ws);
        let mut n = 0;
        while n < count {
            let frame = ws.read_frame().await.expect("valid frames");
            std::hint::black_box(&frame.payload);
            n += 1;
        }
        n
    })
}

fn decode(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for (name, opcode) in [("binary", OpCode::Binary), ("text", OpCode::Text)] {
        let mut g = c.benchmark_group(format!("peers_decode_{name}_server_masked"));
        for size in [16usize, 125, 1024, 65536] {
            let (input, count) = input::frames(size, true, opcode);
            let input = Bytes::from(input);
            g.throughput(Throughput::Bytes((size * count) as u64));
            assert_eq!(ours(&input), count);
            assert_eq!(fastwebsockets(&rt, &input, count), count);
            assert_eq!(wtx(&rt, &input, count), count);
            g.bench_with_input(BenchmarkId::new("wsmachine", size), &input, |b, i| {
                b.iter(|| ours(i))
            });
            g.bench_with_input(BenchmarkId::new("fastwebsockets", size), &input, |b, i| {
                b.iter(|| fastwebsockets(&rt, i, count))
            });
            g.bench_with_input(BenchmarkId::new("wtx", size), &input, |b, i| {
                b.iter(|| wtx(&rt, i, count))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = decode
}
criterion_main!(benches);
