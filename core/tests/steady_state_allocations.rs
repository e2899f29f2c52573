//! Counts heap allocations with a counting global allocator: an echo of
//! small unfragmented, uncompressed messages through a server core must not
//! allocate per message once warmed up.
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use bytes::BytesMut;
use wsmachine::internals::FrameHeader;
use wsmachine::{Config, Connection, Event, Negotiated, OpCode, Role};

struct Counting;

thread_local! {
    // Per thread: the test harness's own threads allocate when they like.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn masked_frames(opcode: OpCode, payload: &[u8], count: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    for i in 0..count {
        let m = (i as u32 ^ 0x5a5a_1234).to_be_bytes();
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(m),
            payload_len: payload.len() as u64,
        }
        .encode_frame(payload, &mut out);
    }
    out.to_vec()
}

/// One read of `batch` pipelined messages, every event echoed, every output chunk written.
fn echo_round(conn: &mut Connection, now: Instant, input: &[u8]) -> usize {
    conn.receive(now, input);
    let mut echoed = 0;
    while let Some(e) = conn.poll_event() {
        match e {
            Event::Text(t) => conn.send(t).unwrap(),
            Event::Binary(b) => conn.send(b).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
        echoed += 1;
    }
    while let Some(out) = conn.poll_transmit() {
        std::hint::black_box(&out);
    }
    echoed
}

#[test]
fn echo_of_small_messages_allocates_nothing_in_steady_state() {
    let now = Instant::now();
    let cfg = Config {
        ping_interval: None,
        ..Config::default()
    };
    for (opcode, payload) in [
        (OpCode::Binary, vec![7u8; 16]),
        (OpCode::Text, b"sixteen bytes!!!".to_vec()),
        (OpCode::Binary, vec![1u8; 1024]),
    ] {
        let mut conn =
            Connection::upgraded(Role::Server, cfg.clone(), Negotiated::default(), None, now);
        let input = masked_frames(opcode, &payload, 16);
        for _ in 0..100 {
            assert_eq!(echo_round(&mut conn, now, &input), 16);
        }
        let before = allocs();
        let mut echoed = 0;
        for _ in 0..1000 {
            echoed += echo_round(&mut conn, now, &input);
        }
        let allocs = allocs() - before;
        assert_eq!(echoed, 16_000);
        assert_eq!(
            allocs,
            0,
            "{allocs} allocations for {echoed} echoed {}-byte {opcode:?} messages",
            payload.len()
        );
    }
}
