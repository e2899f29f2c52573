//! permessage-deflate memory: a decompression bomb fails fast with bounded
//! memory, and the per-connection cost table in `DeflateConfig`'s doc is
//! what the codec really allocates. Allocations are counted per thread by a
//! global allocator, so tests running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use bytes::BytesMut;
use wsmachine::internals::{Compressor, Decompressor, FrameHeader, RSV1};
use wsmachine::{
    Config, Connection, ConnectionError, DeflateConfig, DeflateParams, Event, MemoryBudget,
    Negotiated, OpCode, ProtocolError, Role, SeededMask,
};

struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = CURRENT.try_with(|c| {
        let now = c.get() + delta;
        c.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn current() -> isize {
    CURRENT.with(Cell::get)
}

/// Resets the peak to the current level and returns that level.
fn reset_peak() -> isize {
    let now = current();
    PEAK.with(|p| p.set(now));
    now
}

fn peak() -> isize {
    PEAK.with(Cell::get)
}

/// Writes bits least-significant first, as DEFLATE does (RFC 1951 §3.1.1).
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code, sent most-significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// The densest deflate bomb: one dynamic block whose codes give literal 0,
/// end-of-block and length 258 (code 285) lengths 2, 2 and 1, and distance 1
/// a 1-bit code, so each "copy 258 bytes from 1 back" costs 2 bits: every
/// zero byte after this header inflates to 1032 zero bytes. Returns the
/// header (which also emits the first literal 0); `reps` copies fill whole
/// zero bytes when `reps` is a multiple of 4.
fn bomb_header() -> Bits {
    let mut b = Bits::default();
    b.put(0, 1); // BFINAL 0
    b.put(2, 2); // BTYPE 10: dynamic Huffman
    b.put(286 - 257, 5); // HLIT: literal/length codes 0..=285
    b.put(0, 5); // HDIST: one distance code
    b.put(18 - 4, 4); // HCLEN: code length codes up to order index 17 (symbol 1)
                      // Code length code lengths in the order 16,17,18,0,8,7,9,6,10,5,11,4,12,3,13,2,14,1:
                      // symbol 18 → 1 bit ("0"), symbols 1 and 2 → 2 bits ("10", "11").
    for sym in [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1] {
        let len = match sym {
            18 => 1,
            1 | 2 => 2,
            _ => 0,
        };
        b.put(len, 3);
    }
    let (len1, len2, zeros) = ((0b10, 2), (0b11, 2), (0b0, 1));
    let zero_run = |b: &mut Bits, n: u32| {
        b.code(zeros.0, zeros.1);
        b.put(n - 11, 7);
    };
    b.code(len2.0, len2.1); // literal 0: 2 bits
    zero_run(&mut b, 138); // literals 1..=138
    zero_run(&mut b, 117); // literals 139..=255
    b.code(len2.0, len2.1); // 256 end of block: 2 bits
    zero_run(&mut b, 28); // 257..=284
    b.code(len1.0, len1.1); // 285 (length 258): 1 bit
    b.code(len1.0, len1.1); // distance code 0 (distance 1): 1 bit
                            // Literal/length codes: 285 → "0", 0 → "10", 256 → "11"; distance 0 → "0".
    b.code(0b10, 2); // the literal 0 the copies repeat
    b
}

#[test]
fn bomb_header_is_valid_deflate() {
    let mut b = bomb_header();
    for _ in 0..1000 {
        b.code(0, 1);
        b.code(0, 1);
    }
    b.code(0b11, 2); // end of block
    b.put(0, 3); // empty stored block header; the receiver's trailer completes it
    let wire = b.finish();
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let mut out = BytesMut::new();
    d.decompress(&wire, true, &mut out, 1 << 20).unwrap();
    assert_eq!(out.len(), 1 + 258 * 1000);
    assert!(out.iter().all(|&x| x == 0));
}

#[test]
fn bomb_fails_fast_with_bounded_memory() {
    // Deflate's best ratio is 1032:1, so 1 GiB needs 1 MiB of input; it is fed
    // as a fragmented message of 64 KiB frames.
    let mut wire = bomb_header().finish();
    let zero_bytes = (1usize << 30) / 1032 + 1;
    wire.resize(wire.len() + zero_bytes, 0);
    let limit = 8 << 20;
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let base = reset_peak();
    let mut out = BytesMut::new();
    let mut result = Ok(());
    let frames: Vec<&[u8]> = wire.chunks(64 << 10).collect();
    for (i, f) in frames.iter().enumerate() {
        result = d.decompress(f, i + 1 == frames.len(), &mut out, limit);
        if result.is_err() {
            break;
        }
    }
    let used = peak() - base;
    eprintln!(
        "bomb: {result:?}, peak {used} bytes, out capacity {}",
        out.capacity()
    );
    assert_eq!(
        result,
        Err(ProtocolError::MessageTooBig {
            size: limit as u64 + 1,
            limit
        })
    );
    assert!(used < (limit + (1 << 20)) as isize, "peak {used} bytes");
    assert!(out.capacity() <= limit + 1);
}

#[test]
fn a_bomb_through_a_connection_stops_at_the_memory_budget() {
    // The same 1 GiB bomb under a 64 MiB message limit, through a client
    // connection whose budget has 4 MiB: inflating stops at the budget, and
    // the connection never allocated much past it.
    let mut body = bomb_header().finish();
    body.resize(body.len() + (1usize << 30) / 1032 + 1, 0);
    let mut wire = BytesMut::new();
    FrameHeader {
        fin: true,
        rsv: RSV1,
        opcode: OpCode::Binary,
        mask: None,
        payload_len: body.len() as u64,
    }
    .encode(&mut wire);
    wire.extend_from_slice(&body);
    drop(body);
    let budget = MemoryBudget::new(4 << 20);
    let cfg = Config {
        memory_budget: Some(budget.clone()),
        ..Config::default()
    };
    // The test plays the event loop, which owns the clock.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: Some(DeflateParams::default()),
    };
    let mask = Box::new(SeededMask::new([1; 32]));
    let mut c = Connection::upgraded(Role::Client, cfg, negotiated, Some(mask), now);
    let base = reset_peak();
    for piece in wire.chunks(64 << 10) {
        c.receive(now, piece);
    }
    // Inflated a slice per call, as a driver would, yielding in between.
    while c.has_pending_work() {
        c.resume(now);
    }
    let used = peak() - base;
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        matches!(
            &events[..],
            [Event::Error(ConnectionError::Protocol(
                ProtocolError::MemoryBudget { .. }
            ))]
        ),
        "{events:?}"
    );
    // The compressed frame itself (1 MiB) is held whole before inflating.
    let bound = (4 << 20) + wire.len() + (1 << 20);
    assert!(used < bound as isize, "peak {used} bytes, bound {bound}");
    assert_eq!(budget.in_use(), 0);
}

fn text(n: usize) -> Vec<u8> {
    let mut s = Vec::new();
    let mut i = 0;
    while s.len() < n {
        s.extend_from_slice(format!("{{\"id\":{i},\"name\":\"user{}\"}}\n", i % 97).as_bytes());
        i += 1;
    }
    s
}

/// Bytes a compressor and a decompressor keep once they have handled a
/// message, for one window size and memLevel.
fn footprint(bits: u8, mem_level: u8) -> (isize, isize) {
    let p = DeflateParams {
        client_max_window_bits: bits,
        server_max_window_bits: bits,
        ..DeflateParams::default()
    };
    let cfg = DeflateConfig {
        client_max_window_bits: bits,
        server_max_window_bits: bits,
        mem_level,
        ..DeflateConfig::default()
    };
    let msg = text(100_000);
    let mut wire = BytesMut::with_capacity(200_000);
    let mut out = BytesMut::with_capacity(200_000);

    let before = current();
    let mut c = Compressor::new(&p, &cfg, Role::Client);
    c.compress(&msg, true, &mut wire);
    let compressor = current() - before;

    let before = current();
    let mut d = Decompressor::new(&p, Role::Server);
    d.decompress(&wire, true, &mut out, 1 << 20).unwrap();
    let decompressor = current() - before;
    assert!(out[..] == msg[..]);
    drop((c, d));
    (compressor, decompressor)
}

#[test]
fn memory_per_connection_table() {
    eprintln!("| window bits | memLevel | compressor | decompressor | per connection |");
    let mut rows = Vec::new();
    for (bits, mem) in [(15, 8), (15, 5), (12, 8), (12, 5), (10, 5), (9, 1), (8, 1)] {
        let (c, d) = footprint(bits, mem);
        eprintln!(
            "| {bits} | {mem} | {} KiB | {} KiB | {} KiB |",
            (c + 512) / 1024,
            (d + 512) / 1024,
            (c + d + 512) / 1024
        );
        rows.push((bits, mem, c, d));
    }
    let kib = |bits: u8, mem: u8| {
        let r = rows.iter().find(|r| r.0 == bits && r.1 == mem).unwrap();
        ((r.2 + 512) / 1024, (r.3 + 512) / 1024)
    };
    // The figures documented on DeflateConfig (within a few KiB, for other
    // platforms' struct sizes).
    let near = |got: isize, want: isize| (got - want).abs() <= 4;
    let (c, d) = kib(12, 5);
    assert!(near(c, 165) && near(d, 50), "12/5: {c} + {d} KiB");
    let (c, d) = kib(15, 8);
    assert!(near(c, 403) && near(d, 78), "15/8: {c} + {d} KiB");
    // The default budget is well under half of zlib's defaults.
    assert!(kib(12, 5).0 * 2 < kib(15, 8).0);
}

#[test]
fn streams_are_allocated_on_first_use_only() {
    let p = DeflateParams::default();
    let cfg = DeflateConfig::default();
    let before = current();
    let mut c = Compressor::new(&p, &cfg, Role::Server);
    let mut d = Decompressor::new(&p, Role::Server);
    let idle = current() - before;
    assert!(
        idle < 1024,
        "an unused compressor and decompressor hold {idle} bytes"
    );
    // Using them allocates the zlib state (the table in DeflateConfig's doc).
    let mut wire = BytesMut::new();
    c.compress(&text(1000), true, &mut wire);
    let mut out = BytesMut::new();
    d.decompress(&wire, true, &mut out, 1 << 20).unwrap();
    drop(out);
    let used = current() - before - wire.len() as isize;
    assert!(used > 100 << 10, "used streams hold {used} bytes");
    drop((c, d));
}

#[path = "support/handshake.rs"]
mod handshake;

mod idle_release {
    use super::current;
    use super::handshake::{open, pump};
    use std::time::{Duration, Instant};
    use wsmachine::internals::FrameHeader;
    use wsmachine::{ClientRequest, Config, Connection, DeflateConfig, Event, SeededMask};

    /// Streams of the connection's own, freed after 1 s without traffic
    /// (the default takes them from the thread's pool for each message).
    fn dedicated() -> Config {
        Config {
            deflate: Some(DeflateConfig {
                release_after_idle: Some(Duration::from_secs(1)),
                ..DeflateConfig::default()
            }),
            ..Config::default()
        }
    }

    fn pair(now: Instant) -> (Connection, Connection) {
        let client = Connection::client(
            dedicated(),
            ClientRequest::new("h", "/"),
            [3; 16],
            SeededMask::new([4; 32]),
            now,
        );
        let (client, server) = open(client, dedicated(), now);
        assert!(client.negotiated().deflate.is_some());
        (client, server)
    }

    fn text(seed: u32) -> String {
        (0..60)
            .map(|i| format!("{{\"id\":{},\"user\":\"u{}\"}}", seed + i, (seed + i) % 7))
            .collect()
    }

    /// Sends `msg` from `a` to `b`; returns the payload size on the wire.
    fn exchange(a: &mut Connection, b: &mut Connection, msg: &str, now: Instant) -> usize {
        a.send_text(msg).unwrap();
        let wire = pump(a, b, now);
        match b.poll_event() {
            Some(Event::Text(t)) => assert_eq!(t, msg),
            other => panic!("expected the text, got {other:?}"),
        }
        let (h, _) = FrameHeader::decode(&wire).unwrap().unwrap();
        assert_ne!(h.rsv, 0, "sent compressed");
        h.payload_len as usize
    }

    #[test]
    fn idle_connections_free_their_zlib_streams_and_resume_with_context() {
        // The test is the event loop here: it owns the clock.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        let before = current();
        let (mut client, mut server) = pair(t0);
        let cold = exchange(&mut client, &mut server, &text(0), t0);
        exchange(&mut server, &mut client, &text(0), t0);
        let busy = current() - before;
        // Both ends hold a compressor and a decompressor: ~2 × 200 KiB.
        assert!(busy > 300 << 10, "{busy} bytes while busy");

        // Activity on one side only (the server keeps sending) keeps the
        // streams: the idle period counts from the last message either way.
        let t1 = t0 + Duration::from_millis(900);
        exchange(&mut server, &mut client, &text(1), t1);
        let t2 = t0 + Duration::from_millis(1500);
        server.handle_timeout(t2);
        while server.poll_transmit().is_some() {}
        assert!(
            current() - before > 300 << 10,
            "released while the server was sending"
        );

        // Both ends let go within two idle periods (a send is only noticed
        // when the timer fires, and counts as if made then).
        let mut t3 = t2;
        for _ in 0..2 {
            t3 += Duration::from_millis(1100);
            for c in [&mut client, &mut server] {
                c.handle_timeout(t3);
                while c.poll_transmit().is_some() {}
            }
        }
        let idle = current() - before;
        eprintln!("two connected ends: {busy} bytes busy, {idle} bytes idle");
        // What stays: the structs and each direction's 4 KiB window.
        assert!(idle < 24 << 10, "{idle} bytes held by two idle ends");
        // Nothing left to do until the keepalive Ping.
        let next = server.poll_timeout().expect("keepalive");
        assert!(
            next >= t3 + Duration::from_secs(20),
            "woken again at {next:?}"
        );

        // Context takeover goes on: the same text again is a few bytes.
        let t4 = t3 + Duration::from_secs(5);
        let warm = exchange(&mut client, &mut server, &text(0), t4);
        exchange(&mut server, &mut client, &text(0), t4);
        assert!(
            warm * 4 < cold,
            "after release {warm} bytes, first time {cold}"
        );
    }
}

/// Once a large reassembled message is delivered and the application drops
/// it, the connection keeps none of its memory: the reassembly buffer's
/// spare room would otherwise pin the whole allocation until the next
/// fragmented message.
#[test]
fn a_delivered_fragmented_message_leaves_nothing_behind() {
    const MIB: usize = 1 << 20;
    let mut wire = BytesMut::new();
    for (fin, opcode, len) in [
        (false, OpCode::Binary, 3 * MIB),
        (true, OpCode::Continuation, MIB + 1),
    ] {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: len as u64,
        }
        .encode(&mut wire);
        wire.extend_from_slice(&vec![5; len]);
    }
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let cfg = Config {
        memory_budget: None,
        ..Config::default()
    };
    let mask = Box::new(SeededMask::new([1; 32]));
    let mut c = Connection::upgraded(Role::Client, cfg, Negotiated::default(), Some(mask), now);
    let base = current();
    for piece in wire.chunks(64 << 10) {
        c.receive(now, piece);
    }
    match c.poll_event() {
        Some(Event::Binary(b)) => assert_eq!(b.len(), 4 * MIB + 1),
        other => panic!("{other:?}"),
    }
    let held = current() - base;
    assert!(held <= (64 << 10) as isize, "{held} bytes kept");
}
