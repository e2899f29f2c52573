//! The `DeflateConfig` presets measured on a realistic message mix: the
//! compression ratio each costs and the heap bytes a server connection
//! holds right after traffic and once idle. Prints the table in
//! `DeflateConfig`'s doc:
//!
//! ```text
//! cargo test -p wsmachine --release --test deflate_presets -- --nocapture
//! ```
//!
//! The mix is deterministic (a seeded generator): chat messages and
//! market-data batches as JSON, 100 B to 4 KiB, log-uniform sizes. Each
//! server connection talks to a client offering the defaults (what a
//! browser offers: `permessage-deflate; client_max_window_bits`), so the
//! server's preset alone decides what is negotiated. Allocations are
//! counted per thread by a global allocator, so tests running in parallel
//! do not disturb each other; the shared zlib streams of the thread's pool
//! are counted apart (they are per thread, not per connection).
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use wsmachine::internals::{clear_thread_pool, thread_pool_len, FrameHeader};
use wsmachine::{ClientRequest, Config, Connection, DeflateConfig, Event, SeededMask};

#[path = "support/handshake.rs"]
mod handshake;
#[path = "support/live_bytes.rs"]
mod live_bytes;
use handshake::pump;
use live_bytes::live;

#[global_allocator]
static A: live_bytes::LiveBytes = live_bytes::LiveBytes;

/// xorshift64*: a fixed sequence for a fixed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "the",
    "a",
    "to",
    "and",
    "of",
    "in",
    "is",
    "it",
    "you",
    "that",
    "for",
    "on",
    "with",
    "this",
    "was",
    "are",
    "be",
    "have",
    "not",
    "but",
    "we",
    "they",
    "what",
    "can",
    "will",
    "just",
    "so",
    "deploy",
    "release",
    "build",
    "failed",
    "passed",
    "review",
    "merge",
    "branch",
    "server",
    "latency",
    "memory",
    "ticket",
    "customer",
    "meeting",
    "tomorrow",
    "today",
    "lunch",
    "thanks",
    "great",
    "looks",
    "good",
    "please",
    "check",
    "update",
    "issue",
    "fixed",
    "again",
    "later",
    "monitor",
    "alert",
    "cpu",
    "disk",
    "network",
    "graph",
    "dashboard",
    "query",
    "index",
    "cache",
    "timeout",
    "retry",
    "queue",
    "worker",
    "shard",
    "replica",
    "leader",
    "follower",
];
const NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe",
];
const SYMBOLS: &[&str] = &[
    "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "BRK.B", "JPM", "V", "BTC-USD",
    "ETH-USD", "EURUSD", "GBPUSD", "USDJPY", "XAUUSD",
];

/// One message of the mix, its length drawn log-uniformly in 100..=4096.
fn message(rng: &mut Rng, seq: u64) -> String {
    let target = (100.0 * 40.96f64.powf(rng.below(1 << 20) as f64 / (1 << 20) as f64)) as usize;
    let ts = 1_765_000_000_000 + seq * 37 + rng.below(30);
    let mut m = match rng.below(3) {
        0 => {
            // A chat message: the text fills it to its size.
            let mut s = format!(
                "{{\"type\":\"message\",\"room\":\"room-{}\",\"user\":{{\"id\":{},\"name\":\"{}\"}},\"ts\":{ts},\"text\":\"",
                rng.below(50),
                rng.below(100_000),
                rng.pick(NAMES)
            );
            while s.len() + 3 < target {
                s.push_str(rng.pick(WORDS));
                s.push(' ');
            }
            s.push_str("\"}");
            s
        }
        1 => {
            // An order-book update: levels until it reaches its size.
            let sym = rng.pick(SYMBOLS);
            let mid = 100 + rng.below(900);
            let mut s = format!(
                "{{\"type\":\"book\",\"sym\":\"{sym}\",\"seq\":{seq},\"ts\":{ts},\"levels\":["
            );
            let mut first = true;
            while s.len() + 60 < target {
                if !first {
                    s.push(',');
                }
                first = false;
                let side = if rng.below(2) == 0 { "bid" } else { "ask" };
                s.push_str(&format!(
                    "{{\"side\":\"{side}\",\"px\":{}.{:02},\"qty\":{}}}",
                    mid + rng.below(5),
                    rng.below(100),
                    rng.below(10_000)
                ));
            }
            s.push_str("]}");
            s
        }
        _ => {
            // A batch of trades.
            let mut s = format!("{{\"type\":\"trades\",\"ts\":{ts},\"data\":[");
            let mut first = true;
            while s.len() + 100 < target {
                if !first {
                    s.push(',');
                }
                first = false;
                s.push_str(&format!(
                    "{{\"id\":{},\"sym\":\"{}\",\"px\":{}.{:04},\"qty\":{},\"side\":\"{}\",\"ts\":{}}}",
                    seq * 1000 + rng.below(1000),
                    rng.pick(SYMBOLS),
                    10 + rng.below(2000),
                    rng.below(10_000),
                    1 + rng.below(500),
                    if rng.below(2) == 0 { "buy" } else { "sell" },
                    ts + rng.below(1000)
                ));
            }
            s.push_str("]}");
            s
        }
    };
    while m.len() < 100 {
        m.push(' ');
    }
    assert!(m.len() <= 4096, "{}", m.len());
    m
}

fn open_pair(server_cfg: &Arc<Config>, now: Instant, i: usize) -> (Connection, Connection) {
    // The client's streams are its own, so that the thread's pool holds
    // only what the servers' preset puts there.
    let client_cfg = Config {
        deflate: Some(DeflateConfig {
            release_after_idle: None,
            ..DeflateConfig::default()
        }),
        ..Config::default()
    };
    let client = Connection::client(
        client_cfg,
        ClientRequest::new("example.com", "/"),
        [i as u8; 16],
        SeededMask::new([i as u8; 32]),
        now,
    );
    let (client, server) = handshake::open(client, server_cfg.clone(), now);
    assert_eq!(
        server.negotiated().deflate.is_some(),
        server_cfg.deflate.is_some()
    );
    (client, server)
}

/// Payload bytes of the frames in `wire` (the compressed size).
fn payload_bytes(mut wire: &[u8]) -> usize {
    let mut n = 0;
    while !wire.is_empty() {
        let (h, len) = FrameHeader::decode(wire).unwrap().unwrap();
        n += h.payload_len as usize;
        wire = &wire[len + h.payload_len as usize..];
    }
    n
}

struct Row {
    ratio: f64,
    busy: isize,
    idle: isize,
    pool: isize,
}

const CONNECTIONS: usize = 50;
const MESSAGES: usize = 40;

/// `CONNECTIONS` server connections with `preset` (or none), each sending `MESSAGES`
/// of the mix to its client and receiving them back (an echo): the
/// compressed size over the plain size of what the servers sent, and the
/// heap bytes per server connection right after and once idle.
fn measure_with(preset: Option<&DeflateConfig>) -> Row {
    let now = Instant::now();
    let cfg = Arc::new(Config {
        deflate: preset.cloned(),
        ..Config::default()
    });
    clear_thread_pool();
    let base = live();
    let mut servers = Vec::with_capacity(CONNECTIONS);
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let (c, s) = open_pair(&cfg, now, i);
        clients.push(c);
        servers.push(s);
    }
    let (mut plain, mut compressed) = (0usize, 0usize);
    // Interleaved: message k goes out on every connection before k + 1.
    for k in 0..MESSAGES {
        for (i, (c, s)) in clients.iter_mut().zip(&mut servers).enumerate() {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((i * MESSAGES + k) as u64 + 1));
            let m = message(&mut rng, k as u64);
            s.send_text(&m).unwrap();
            plain += m.len();
            compressed += payload_bytes(&pump(s, c, now));
            match c.poll_event() {
                Some(Event::Text(t)) => {
                    assert_eq!(t, m.as_str());
                    c.send_text(&t).unwrap();
                }
                other => panic!("{other:?}"),
            }
            pump(c, s, now);
            match s.poll_event() {
                Some(Event::Text(t)) => assert_eq!(t, m.as_str()),
                other => panic!("{other:?}"),
            }
        }
    }
    drop(clients);
    let with_pool = live();
    clear_thread_pool();
    let pool = with_pool - live();
    let busy = (live() - base) / CONNECTIONS as isize;
    // Two idle periods: every connection releases what it can.
    for step in 1..=3 {
        let later = now + Duration::from_millis(1100 * step);
        for s in &mut servers {
            s.handle_timeout(later);
            while s.poll_transmit().is_some() {}
        }
    }
    let idle = (live() - base) / CONNECTIONS as isize;
    assert_eq!(thread_pool_len(), (0, 0));
    drop(servers);
    Row {
        ratio: compressed as f64 / plain as f64,
        busy,
        idle,
        pool,
    }
}

#[test]
fn the_mix_is_deterministic_and_in_range() {
    let mut a = Rng(7);
    let mut b = Rng(7);
    let mut sizes = Vec::new();
    for k in 0..200 {
        let m = message(&mut a, k);
        assert_eq!(m, message(&mut b, k));
        assert!((100..=4096).contains(&m.len()), "{}", m.len());
        sizes.push(m.len());
    }
    sizes.sort_unstable();
    // Log-uniform: the median is near sqrt(100 * 4096) = 640.
    let median = sizes[100];
    assert!((400..1000).contains(&median), "median {median}");
}

#[test]
fn presets_table() {
    let presets = [
        ("`shared()`", Some(DeflateConfig::shared())),
        ("`small_windows()`", Some(DeflateConfig::small_windows())),
        ("`default()`", Some(DeflateConfig::default())),
        (
            "`default()`, streams of its own (`release_after_idle` 1 s)",
            Some(DeflateConfig {
                release_after_idle: Some(Duration::from_secs(1)),
                ..DeflateConfig::default()
            }),
        ),
        ("no compression", None),
    ];
    eprintln!("| preset | compressed / plain | per connection, busy | per connection, idle | per thread |");
    eprintln!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, preset) in &presets {
        let r = measure_with(preset.as_ref());
        eprintln!(
            "| {name} | {:.3} | {:.1} KiB | {:.1} KiB | {:.0} KiB |",
            r.ratio,
            r.busy as f64 / 1024.0,
            r.idle as f64 / 1024.0,
            r.pool as f64 / 1024.0
        );
        rows.push(r);
    }
    let [shared, small, full, own, none] = &rows[..] else {
        unreachable!()
    };
    // What the table in DeflateConfig's doc claims, with room for other
    // platforms' struct sizes. Shared: no zlib stream per connection, and
    // no buffer kept between messages (input, output, inflate output): the
    // connection's state only, right after the traffic as when idle, where
    // an uncompressed connection keeps its buffers.
    assert!(shared.busy < 2 << 10, "shared busy {}", shared.busy);
    assert!(shared.idle <= shared.busy, "shared idle {}", shared.idle);
    assert!(shared.busy * 4 < none.busy, "shared busy {}", shared.busy);
    // One compressor and one decompressor for the whole thread.
    assert!(
        (150 << 10..300 << 10).contains(&shared.pool),
        "shared pool {}",
        shared.pool
    );
    // The default and small windows: context takeover with the thread's
    // streams, so a connection keeps its windows of plaintext (4 KiB per
    // direction at window 12, 1 KiB at 10) and its state, busy or idle.
    assert!(full.busy < 12 << 10, "default busy {}", full.busy);
    assert!(full.idle <= full.busy, "default idle {}", full.idle);
    assert!(small.busy < full.busy, "small busy {}", small.busy);
    // The thread parks a stream per direction for each of a few
    // connections (FREE_PER_CLASS), so that they go on without priming.
    assert!(
        (150 << 10..2 << 20).contains(&full.pool),
        "default pool {}",
        full.pool
    );
    // The same compression as streams of its own, which hold 200 KiB
    // more per connection while busy.
    assert!(
        (full.ratio - own.ratio).abs() < 0.002,
        "{} vs {}",
        full.ratio,
        own.ratio
    );
    assert!(own.busy > full.busy + (200 << 10), "own busy {}", own.busy);
    assert_eq!(own.pool, 0);
    // Context takeover is what the memory buys.
    assert!(full.ratio < small.ratio && small.ratio < shared.ratio);
}
