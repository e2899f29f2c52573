//! The thread's pool of zlib streams under many connections at once: up to
//! 12 connection pairs on one thread, from a few (level, memLevel, window)
//! classes so that their streams collide in the pool; most with the
//! default `release_after_idle` of zero (streams parked under the
//! connection's tag, taken by others, reset and primed from the window),
//! some with streams of their own or a short idle release, some without
//! context takeover; the pool cleared and connections replaced now and
//! then. Messages copy bytes from the past, often from the edge of the
//! window, and go whole, uncompressed or in fragments interleaved with
//! other connections' messages, delivered in random pieces.
//!
//! Two checks per message: the receiving connection gets it intact, and an
//! independent zlib-rs inflater with the negotiated window (one stream per
//! direction for the connection's whole life, never primed) reads the same
//! message from the wire, so a compressor that refers to bytes the peer's
//! window does not hold is caught even when our decompressor would make
//! the same mistake. Seeded and deterministic: `POOL_TRIALS` and
//! `POOL_START` pick other seeds (the default run is the first 60).
// The test is the event loop here: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use wsmachine::internals::{clear_thread_pool, FrameHeader, RSV1};
use wsmachine::{
    apply_mask, Config, Connection, DeflateConfig, DeflateParams, Event, MessageKind, Negotiated,
    OpCode, Role, SeededMask,
};
use zlib_rs::{Inflate, InflateFlush};

const TRAILER: [u8; 4] = [0, 0, 0xff, 0xff];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

struct Dir {
    /// Undelivered bytes.
    wire: VecDeque<u8>,
    /// Bytes not yet parsed by the reference.
    parse: Vec<u8>,
    expected: VecDeque<Vec<u8>>,
    ref_expected: VecDeque<Vec<u8>>,
    ref_inflate: Inflate,
    ref_msg: Option<(bool, Vec<u8>)>,
    bits: u8,
    /// The window the sending compressor really uses (for near-edge copies).
    gen_bits: u8,
    nct: bool,
    history: Vec<u8>,
    /// Fragmented message in progress: the message, the cut points, next piece.
    streaming: Option<(Vec<u8>, Vec<usize>, usize)>,
    sent: usize,
    compressed_msgs: usize,
}

impl Dir {
    fn new(bits: u8, nct: bool) -> Self {
        Dir {
            wire: VecDeque::new(),
            parse: Vec::new(),
            expected: VecDeque::new(),
            ref_expected: VecDeque::new(),
            ref_inflate: Inflate::new(false, bits.max(8)),
            ref_msg: None,
            bits,
            gen_bits: bits,
            nct,
            history: Vec::new(),
            streaming: None,
            sent: 0,
            compressed_msgs: 0,
        }
    }

    fn gen(&mut self, rng: &mut Rng) -> Vec<u8> {
        let len = match rng.below(4) {
            0 => rng.below(16),
            1 => rng.below(300),
            2 => rng.below(3000),
            _ => rng.below(9000),
        } as usize;
        let mut m = Vec::with_capacity(len);
        let window = 1usize << self.gen_bits.max(9);
        while m.len() < len {
            match rng.below(4) {
                0 | 1 if !self.history.is_empty() => {
                    // Copy from the past, often near the window's edge.
                    let all = self.history.len() + m.len();
                    let dist = match rng.below(3) {
                        0 => 1 + rng.below(window as u64 + 600) as usize,
                        1 => window.saturating_sub(rng.below(300) as usize).max(1),
                        _ => 1 + rng.below(64) as usize,
                    }
                    .min(all);
                    let n = (3 + rng.below(200) as usize).min(len - m.len());
                    for k in 0..n {
                        let idx = all - dist + k;
                        let b = if idx < self.history.len() {
                            self.history[idx]
                        } else {
                            m[idx - self.history.len()]
                        };
                        m.push(b);
                    }
                }
                2 => {
                    let n = (1 + rng.below(40) as usize).min(len - m.len());
                    for _ in 0..n {
                        m.push(rng.next() as u8);
                    }
                }
                _ => {
                    let n = (1 + rng.below(60) as usize).min(len - m.len());
                    let c = b"abcdefgh{}\":,"[rng.below(13) as usize];
                    m.resize(m.len() + n, c);
                }
            }
        }
        self.history.extend_from_slice(&m);
        if self.history.len() > 1 << 16 {
            self.history.drain(..self.history.len() - (1 << 15));
        }
        m
    }

    fn parse_frames(&mut self, ctx: &str) {
        loop {
            let Some((h, n)) = FrameHeader::decode(&self.parse).expect("our frames decode") else {
                return;
            };
            let plen = h.payload_len as usize;
            if self.parse.len() < n + plen {
                return;
            }
            let mut payload = self.parse[n..n + plen].to_vec();
            self.parse.drain(..n + plen);
            if let Some(k) = h.mask {
                apply_mask(&mut payload, k, 0);
            }
            match h.opcode {
                OpCode::Binary | OpCode::Text => {
                    assert!(self.ref_msg.is_none(), "{ctx}: new message inside one");
                    self.ref_msg = Some((h.rsv & RSV1 != 0, payload));
                }
                OpCode::Continuation => {
                    self.ref_msg
                        .as_mut()
                        .expect("continuation")
                        .1
                        .extend_from_slice(&payload);
                }
                other => panic!("{ctx}: unexpected {other:?}"),
            }
            if h.fin {
                let (compressed, data) = self.ref_msg.take().unwrap();
                let want = self.ref_expected.pop_front().expect("a message expected");
                if compressed {
                    self.compressed_msgs += 1;
                    let mut input = data.clone();
                    input.extend_from_slice(&TRAILER);
                    let mut out = vec![0u8; want.len() + 4096];
                    let out0 = self.ref_inflate.total_out();
                    let in0 = self.ref_inflate.total_in();
                    let r = self
                        .ref_inflate
                        .decompress(&input, &mut out, InflateFlush::SyncFlush);
                    let got = (self.ref_inflate.total_out() - out0) as usize;
                    let used = (self.ref_inflate.total_in() - in0) as usize;
                    assert!(
                        r.is_ok(),
                        "{ctx}: reference inflate (window {}) failed: {r:?} {:?}",
                        self.bits,
                        self.ref_inflate.error_message()
                    );
                    assert_eq!(used, input.len(), "{ctx}: reference left input");
                    assert!(
                        got == want.len() && out[..got] == want[..],
                        "{ctx}: reference inflate differs ({} vs {} bytes)",
                        got,
                        want.len()
                    );
                    if self.nct {
                        self.ref_inflate = Inflate::new(false, self.bits.max(8));
                    }
                } else {
                    assert!(data == want, "{ctx}: uncompressed differs");
                }
            }
        }
    }
}

struct Pair {
    conns: [Connection; 2],
    /// dirs[0]: client -> server, dirs[1]: server -> client.
    dirs: [Dir; 2],
    desc: String,
}

fn random_cfg(rng: &mut Rng, classes: &[(u32, u8, u8)]) -> DeflateConfig {
    let (level, mem_level, bits) = classes[rng.below(classes.len() as u64) as usize];
    DeflateConfig {
        level,
        mem_level,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
        min_compress_size: [0, 0, 16, 128][rng.below(4) as usize],
        release_after_idle: match rng.below(8) {
            0 => None,
            1 => Some(Duration::from_millis(5)),
            _ => Some(Duration::ZERO),
        },
        ..DeflateConfig::default()
    }
}

fn new_pair(rng: &mut Rng, now: Instant, classes: &[(u32, u8, u8)], id: usize) -> Pair {
    let p = DeflateParams {
        client_no_context_takeover: rng.chance(1, 5),
        server_no_context_takeover: rng.chance(1, 5),
        client_max_window_bits: 8 + rng.below(8) as u8,
        server_max_window_bits: 8 + rng.below(8) as u8,
    };
    let ccfg = random_cfg(rng, classes);
    let scfg = random_cfg(rng, classes);
    let mk = |role, d: &DeflateConfig, seed: u8| {
        let config = Config {
            deflate: Some(d.clone()),
            memory_budget: None,
            ping_interval: None,
            ..Config::default()
        };
        let mask: Option<Box<dyn wsmachine::MaskSource>> = match role {
            Role::Client => Some(Box::new(SeededMask::new([seed; 32]))),
            Role::Server => None,
        };
        Connection::upgraded(
            role,
            config,
            Negotiated {
                subprotocol: None,
                deflate: Some(p),
            },
            mask,
            now,
        )
    };
    // The window each compressor really uses: min(negotiated, ours).
    let cbits = p
        .client_max_window_bits
        .min(ccfg.client_max_window_bits.clamp(8, 15));
    let sbits = p
        .server_max_window_bits
        .min(scfg.server_max_window_bits.clamp(8, 15));
    Pair {
        conns: [
            mk(Role::Client, &ccfg, id as u8),
            mk(Role::Server, &scfg, 0),
        ],
        dirs: [
            Dir {
                gen_bits: cbits,
                ..Dir::new(p.client_max_window_bits, p.client_no_context_takeover)
            },
            Dir {
                gen_bits: sbits,
                ..Dir::new(p.server_max_window_bits, p.server_no_context_takeover)
            },
        ],
        desc: format!("pair {id}: {p:?} client {ccfg:?} server {scfg:?}"),
    }
}

fn drain(pair: &mut Pair, d: usize) {
    while let Some(b) = pair.conns[d].poll_transmit() {
        pair.dirs[d].wire.extend(b.iter());
        pair.dirs[d].parse.extend_from_slice(&b);
    }
    let desc = pair.desc.clone();
    pair.dirs[d].parse_frames(&format!("dir {d} {desc}"));
}

fn deliver(pair: &mut Pair, d: usize, n: usize, now: Instant) {
    let n = n.min(pair.dirs[d].wire.len());
    let bytes: Vec<u8> = pair.dirs[d].wire.drain(..n).collect();
    let r = 1 - d;
    pair.conns[r].receive(now, &bytes);
    while pair.conns[r].has_pending_work() {
        pair.conns[r].resume(now);
    }
    while let Some(ev) = pair.conns[r].poll_event() {
        match ev {
            Event::Binary(b) => {
                let want = pair.dirs[d]
                    .expected
                    .pop_front()
                    .expect("expected a message");
                assert!(
                    b[..] == want[..],
                    "dir {d}: message differs ({} vs {} bytes) {}",
                    b.len(),
                    want.len(),
                    pair.desc
                );
            }
            other => panic!("dir {d}: unexpected event {other:?} {}", pair.desc),
        }
    }
    // The receiver may have queued replies (none expected but drain anyway).
    drain(pair, r);
}

fn trial(seed: u64) -> (usize, usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut now = Instant::now();
    if rng.chance(1, 3) {
        clear_thread_pool();
    }
    // A small set of classes so that compressors collide in the pool.
    let all = [
        (6u32, 5u8, 12u8),
        (1, 8, 15),
        (9, 1, 8),
        (0, 5, 10),
        (4, 9, 9),
        (3, 2, 11),
    ];
    let nclasses = 1 + rng.below(3) as usize;
    let classes: Vec<_> = (0..nclasses)
        .map(|_| all[rng.below(all.len() as u64) as usize])
        .collect();
    let npairs = 1 + rng.below(12) as usize;
    let mut pairs: Vec<Pair> = (0..npairs)
        .map(|i| new_pair(&mut rng, now, &classes, i))
        .collect();
    let mut next_id = npairs;
    let ops = 50 + rng.below(400);
    for _ in 0..ops {
        let pi = rng.below(pairs.len() as u64) as usize;
        let d = rng.below(2) as usize;
        let pair = &mut pairs[pi];
        match rng.below(12) {
            0..=2 => {
                if pair.dirs[d].streaming.is_none() {
                    let m = pair.dirs[d].gen(&mut rng);
                    pair.conns[d].send_binary(&m).expect("send");
                    pair.dirs[d].expected.push_back(m.clone());
                    pair.dirs[d].ref_expected.push_back(m);
                    pair.dirs[d].sent += 1;
                    drain(pair, d);
                }
            }
            3 => {
                if pair.dirs[d].streaming.is_none() {
                    let m = pair.dirs[d].gen(&mut rng);
                    pair.conns[d].send_uncompressed(m.clone()).expect("send");
                    pair.dirs[d].expected.push_back(m.clone());
                    pair.dirs[d].ref_expected.push_back(m);
                    drain(pair, d);
                }
            }
            4..=6 => {
                let dir = &mut pair.dirs[d];
                if dir.streaming.is_none() {
                    let m = dir.gen(&mut rng);
                    let k = rng.below(5) as usize;
                    let mut cuts: Vec<usize> = (0..k)
                        .map(|_| rng.below(m.len() as u64 + 1) as usize)
                        .collect();
                    cuts.sort_unstable();
                    cuts.push(m.len());
                    dir.streaming = Some((m, cuts, 0));
                }
                let (m, cuts, i) = dir.streaming.as_mut().unwrap();
                let from = if *i == 0 { 0 } else { cuts[*i - 1] };
                let to = cuts[*i];
                let last = *i + 1 == cuts.len();
                let piece = m[from..to].to_vec();
                *i += 1;
                let done = last.then(|| m.clone());
                if let Some(m) = &done {
                    dir.expected.push_back(m.clone());
                    dir.ref_expected.push_back(m.clone());
                    dir.streaming = None;
                }
                pair.conns[d]
                    .send_fragment(MessageKind::Binary, &piece, last)
                    .expect("fragment");
                drain(pair, d);
            }
            7..=9 => {
                let n = match rng.below(3) {
                    0 => 1 + rng.below(8),
                    1 => 1 + rng.below(500),
                    _ => u64::MAX >> 1,
                } as usize;
                deliver(pair, d, n, now);
            }
            10 => {
                now += Duration::from_millis(rng.below(20));
                for p in pairs.iter_mut() {
                    for c in &mut p.conns {
                        c.handle_timeout(now);
                    }
                    drain(p, 0);
                    drain(p, 1);
                }
            }
            _ => {
                if rng.chance(1, 6) {
                    clear_thread_pool();
                } else if rng.chance(1, 4) {
                    // Replace a pair (its codecs disown their parked streams).
                    for dd in 0..2 {
                        let len = pairs[pi].dirs[dd].wire.len();
                        deliver(&mut pairs[pi], dd, len, now);
                    }
                    pairs[pi] = new_pair(&mut rng, now, &classes, next_id);
                    next_id += 1;
                }
            }
        }
    }
    // Finish everything.
    let mut msgs = (0, 0);
    for p in pairs.iter_mut() {
        for d in 0..2 {
            if let Some((m, cuts, i)) = p.dirs[d].streaming.take() {
                let from = if i == 0 { 0 } else { cuts[i - 1] };
                p.conns[d]
                    .send_fragment(MessageKind::Binary, &m[from..], true)
                    .unwrap();
                p.dirs[d].expected.push_back(m.clone());
                p.dirs[d].ref_expected.push_back(m);
                drain(p, d);
            }
        }
        for d in 0..2 {
            let len = p.dirs[d].wire.len();
            deliver(p, d, len, now);
            assert!(p.dirs[d].expected.is_empty(), "lost messages {}", p.desc);
            assert!(p.dirs[d].ref_expected.is_empty(), "reference lost messages");
            msgs.0 += p.dirs[d].sent;
            msgs.1 += p.dirs[d].compressed_msgs;
        }
    }
    msgs
}

#[test]
fn pooled_streams_serve_many_connections_with_context_takeover() {
    let n: u64 = std::env::var("POOL_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let start: u64 = std::env::var("POOL_START")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut total = (0, 0);
    for seed in start..start + n {
        let r = std::panic::catch_unwind(|| trial(seed));
        match r {
            Ok(m) => {
                total.0 += m.0;
                total.1 += m.1;
            }
            Err(e) => {
                eprintln!("seed {seed} failed");
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!(
        "{n} trials, {} whole sends, {} compressed messages checked by the reference",
        total.0, total.1
    );
    // The mix must have compressed plenty, or the reference checked little.
    assert!(total.1 > 20 * n as usize, "{} compressed messages", total.1);
}
