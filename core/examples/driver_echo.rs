//! The echo loop of the adapters' `echo_server` (`while let Some(m) =
//! ws.recv().await { ws.send(m).await }`) through the real driver, in
//! memory, for counting instructions per message: each "wake" makes one
//! batch of masked client frames readable, and the loop polls `recv` and
//! `send` by hand until `recv` pends. Everything the driver does per
//! message is counted (the core, the driver's bookkeeping, the clock reads
//! through the runtime), and nothing of a runtime or the kernel.
//!
//! ```text
//! cargo build --release -p wsmachine --features driver --example driver_echo
//! valgrind --tool=callgrind target/release/examples/driver_echo 200000 16 16
//! ```
//! Arguments: messages (default 200 000), payload bytes (default 16),
//! messages per read (default 16, as 16 in flight on a connection).
//! It prints, per message: the clock reads, the transport's reads (those
//! that found nothing: each is a `recv` system call on a futures-io
//! runtime, none on tokio after a short read), and writes.
// This is the event loop around the driver: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::cell::Cell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::BytesMut;
use wsmachine::driver::{Io, Runtime, Timer, WebSocket};
use wsmachine::internals::FrameHeader;
use wsmachine::{Config, Negotiated, OpCode, Role};

thread_local! {
    static CLOCK_READS: Cell<usize> = const { Cell::new(0) };
}

/// A runtime with the real clock (as tokio's, smol's and async-std's) and a
/// timer that never fires (the keepalive is 30 s away).
struct Rt;

struct NeverTimer;

impl Timer for NeverTimer {
    fn reset(&mut self, _at: Instant) {}

    fn poll_elapsed(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Runtime for Rt {
    type Timer = NeverTimer;

    fn now() -> Instant {
        CLOCK_READS.with(|c| c.set(c.get() + 1));
        Instant::now()
    }

    fn timer() -> NeverTimer {
        NeverTimer
    }

    fn fill_random(buf: &mut [u8]) {
        buf.fill(0x5a);
    }
}

/// The loop polls by hand: nobody to wake (`Waker::noop` is newer than
/// the crate's MSRV).
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// The socket: one batch readable per wake, writes always accepted.
#[derive(Default)]
struct Mem {
    batch: Vec<u8>,
    readable: bool,
    reads: usize,
    empty_reads: usize,
    writes: usize,
    written: usize,
}

impl Io<Mem> for Rt {
    type ByteStream = ();

    fn byte_stream(_inner: wsmachine::driver::ByteStream<Mem, Rt>) {}

    fn poll_read(io: &mut Mem, _cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        io.reads += 1;
        if !std::mem::take(&mut io.readable) {
            io.empty_reads += 1;
            return Poll::Pending;
        }
        let n = io.batch.len();
        buf[..n].copy_from_slice(&io.batch);
        Poll::Ready(Ok(n))
    }

    fn poll_write(io: &mut Mem, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        io.writes += 1;
        io.written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        io: &mut Mem,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        io.writes += 1;
        let n = bufs.iter().map(|b| b.len()).sum();
        io.written += n;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(_io: &mut Mem, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(_io: &mut Mem, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One masked binary frame from a client.
fn client_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode: OpCode::Binary,
        mask: Some(mask),
        payload_len: payload.len() as u64,
    }
    .encode_frame(payload, &mut out);
    out.to_vec()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: usize| {
        args.next()
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (n, size, per_read) = (arg(200_000), arg(16), arg(16));
    let batch: Vec<u8> = (0..per_read)
        .flat_map(|i| client_frame(&vec![7; size], (i as u32 ^ 0x5a5a_1234).to_be_bytes()))
        .collect();
    assert!(batch.len() <= 64 << 10, "one batch must fit one read");
    let mem = Mem {
        batch,
        ..Mem::default()
    };
    // The echo_server examples' configuration (compression when offered;
    // not offered here), so the keepalive deadline is armed as there.
    let config = Config::with_deflate();
    let mut ws: WebSocket<Mem, Rt> =
        WebSocket::from_upgraded(mem, Role::Server, Negotiated::default(), config);
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut echoed = 0;
    while echoed < n {
        ws.get_mut().readable = true;
        loop {
            let msg = match pin!(ws.recv()).poll(&mut cx) {
                Poll::Ready(Some(Ok(m))) => m,
                Poll::Ready(other) => panic!("recv: {other:?}"),
                Poll::Pending => break,
            };
            match pin!(ws.send(msg)).poll(&mut cx) {
                Poll::Ready(Ok(())) => echoed += 1,
                other => panic!("send: {other:?}"),
            }
        }
    }
    let io = ws.get_ref();
    let per = |x: usize| x as f64 / echoed as f64;
    println!(
        "{echoed} messages of {size} bytes echoed, {per_read} per read, {} bytes written; \
         per message: {:.4} clock reads, {:.4} reads ({:.4} empty), {:.4} writes",
        io.written,
        per(CLOCK_READS.with(Cell::get)),
        per(io.reads),
        per(io.empty_reads),
        per(io.writes),
    );
}
