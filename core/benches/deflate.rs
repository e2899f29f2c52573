//! permessage-deflate throughput: compress and decompress of text-like
//! (JSON lines) and random payloads of 1 KiB and 1 MiB, with the default
//! configuration (window 12, memLevel 5, level 6) and context takeover.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsmachine::internals::{Compressor, Decompressor};
use wsmachine::{DeflateConfig, DeflateParams, Role};

fn text(n: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(n + 100);
    let mut i = 0u32;
    while s.len() < n {
        s.extend_from_slice(
            format!(
                "{{\"id\":{i},\"user\":\"user{}\",\"event\":\"click\",\"x\":{},\"y\":{},\"ok\":{}}}\n",
                i % 97,
                i.wrapping_mul(31) % 1920,
                i.wrapping_mul(17) % 1080,
                i % 3 == 0
            )
            .as_bytes(),
        );
        i += 1;
    }
    s.truncate(n);
    s
}

fn random(n: usize) -> Vec<u8> {
    let mut seed = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

fn params() -> DeflateParams {
    DeflateParams {
        server_max_window_bits: 12,
        client_max_window_bits: 12,
        ..DeflateParams::default()
    }
}

fn bench(c: &mut Criterion) {
    let cfg = DeflateConfig::default();
    let p = params();
    for (kind, make) in [("text", text as fn(usize) -> Vec<u8>), ("random", random)] {
        for size in [1 << 10, 1 << 20] {
            let data = make(size);
            let label = if size == 1 << 10 { "1KiB" } else { "1MiB" };

            let mut g = c.benchmark_group(format!("compress/{kind}"));
            g.throughput(Throughput::Bytes(size as u64));
            let mut comp = Compressor::new(&p, &cfg, Role::Server);
            let mut out = BytesMut::with_capacity(size * 2);
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    out.clear();
                    comp.compress(black_box(&data), true, &mut out);
                    black_box(out.len())
                })
            });
            g.finish();

            // The first message of a fresh compressor refers only to itself, so
            // one decompressor can inflate it again and again, whatever its
            // context holds.
            let mut comp = Compressor::new(&p, &cfg, Role::Server);
            let mut first = BytesMut::new();
            comp.compress(&data, true, &mut first);
            let ratio = first.len() as f64 / size as f64;
            eprintln!(
                "{kind} {label}: compressed to {:.1}% (first message)",
                ratio * 100.0
            );
            let mut g = c.benchmark_group(format!("decompress/{kind}"));
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                let mut d = Decompressor::new(&p, Role::Client);
                let mut out = BytesMut::with_capacity(size + 1024);
                b.iter(|| {
                    out.clear();
                    d.decompress(black_box(&first), true, &mut out, usize::MAX)
                        .unwrap();
                    black_box(out.len())
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
