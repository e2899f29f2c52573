//! How often the driver reads the transport and the clock on the echo
//! path: each read, and each clock read, is a system call on some runtimes
//! (an empty read on a futures-io runtime is a `recv` failing with EAGAIN).
//!
//! - The `send` answering the last message of a read that emptied the
//!   transport does not read ahead (the `recv` after it reads); any other
//!   `send` still does, so Pings are answered while the application only
//!   sends.
//! - The timer, once armed for the core's deadline, says when to look at the
//!   clock: polls before it fires read no clock.
#![cfg(feature = "driver")]
// The test's runtime owns its (hand-moved) clock.
#![allow(clippy::disallowed_methods)]

use std::cell::Cell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use wsmachine::driver::{ByteStream, Io, Runtime, Timer, WebSocket};
use wsmachine::internals::FrameHeader;
use wsmachine::{Config, Message, Negotiated, OpCode, Role};

thread_local! {
    // Each test runs on its own thread: its own clock.
    static CLOCK: Cell<Option<Instant>> = const { Cell::new(None) };
    static CLOCK_READS: Cell<usize> = const { Cell::new(0) };
    static TIMER_FIRED: Cell<bool> = const { Cell::new(false) };
}

/// A clock moved by hand, counting its reads; a timer that fires when the
/// test says so.
struct Rt;

fn epoch() -> Instant {
    CLOCK.with(|c| *c.get().get_or_insert_with(Instant::now))
}

fn advance(by: Duration) {
    CLOCK.with(|c| c.set(Some(epoch() + by)));
}

fn clock_reads() -> usize {
    CLOCK_READS.with(Cell::get)
}

struct HandTimer;

impl Timer for HandTimer {
    fn reset(&mut self, _at: Instant) {
        TIMER_FIRED.with(|f| f.set(false));
    }

    fn poll_elapsed(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        if TIMER_FIRED.with(Cell::get) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Runtime for Rt {
    type Timer = HandTimer;

    fn now() -> Instant {
        CLOCK_READS.with(|c| c.set(c.get() + 1));
        epoch()
    }

    fn timer() -> HandTimer {
        HandTimer
    }

    fn fill_random(buf: &mut [u8]) {
        buf.fill(0x5a);
    }
}

/// Reads hand out everything that arrived (a short read) or pend; writes
/// take everything.
#[derive(Default)]
struct Wire {
    incoming: Vec<u8>,
    reads: usize,
    written: Vec<u8>,
}

#[derive(Clone, Default)]
struct Transport(Arc<Mutex<Wire>>);

impl Transport {
    fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.0.lock().unwrap()
    }

    fn arrive(&self, bytes: &[u8]) {
        self.wire().incoming.extend_from_slice(bytes);
    }

    fn reads(&self) -> usize {
        self.wire().reads
    }

    fn take_written(&self) -> Vec<u8> {
        std::mem::take(&mut self.wire().written)
    }
}

impl Io<Transport> for Rt {
    type ByteStream = ByteStream<Transport, Rt>;

    fn byte_stream(inner: ByteStream<Transport, Rt>) -> Self::ByteStream {
        inner
    }

    fn poll_read(
        t: &mut Transport,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut w = t.wire();
        w.reads += 1;
        if w.incoming.is_empty() {
            return Poll::Pending;
        }
        let n = w.incoming.len().min(buf.len());
        buf[..n].copy_from_slice(&w.incoming[..n]);
        w.incoming.drain(..n);
        Poll::Ready(Ok(n))
    }

    fn poll_write(t: &mut Transport, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        t.wire().written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        t: &mut Transport,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut w = t.wire();
        let mut n = 0;
        for b in bufs {
            w.written.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(_t: &mut Transport, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(_t: &mut Transport, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn server(t: &Transport, config: Config) -> WebSocket<Transport, Rt> {
    WebSocket::from_upgraded(t.clone(), Role::Server, Negotiated::default(), config)
}

fn quiet() -> Config {
    Config {
        ping_interval: None,
        ..Config::default()
    }
}

/// A masked client frame.
fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    let mask = [1, 2, 3, 4];
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(mask),
        payload_len: payload.len() as u64,
    }
    .encode_frame(payload, &mut out);
    out.to_vec()
}

/// A waker that does nothing: the tests poll by hand (`Waker::noop` is
/// newer than the crate's MSRV).
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn poll<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(&Waker::from(Arc::new(Noop))))
}

/// `recv` → `send` until `recv` pends; returns the messages echoed.
fn echo_until_pending(ws: &mut WebSocket<Transport, Rt>) -> usize {
    let mut echoed = 0;
    loop {
        let msg = match poll(pin!(ws.recv())) {
            Poll::Ready(Some(Ok(m))) => m,
            Poll::Ready(other) => panic!("recv: {other:?}"),
            Poll::Pending => return echoed,
        };
        match poll(pin!(ws.send(msg))) {
            Poll::Ready(Ok(())) => echoed += 1,
            other => panic!("send: {other:?}"),
        }
    }
}

#[test]
fn an_echo_loop_reads_once_for_its_batch_and_once_to_wait() {
    let t = Transport::default();
    let mut ws = server(&t, quiet());
    let batch: Vec<u8> = (0..4)
        .flat_map(|i| client_frame(OpCode::Binary, &[i; 16]))
        .collect();
    for round in 1..=3 {
        t.arrive(&batch);
        let reads = t.reads();
        assert_eq!(echo_until_pending(&mut ws), 4, "round {round}");
        // The read of the batch and the `recv` that pends: the `send` of
        // the batch's last answer did not read ahead.
        assert_eq!(t.reads() - reads, 2, "round {round}");
        assert_eq!(t.take_written().len(), 4 * 18, "round {round}");
    }
}

#[test]
fn a_ping_that_arrives_after_the_batch_is_answered_by_the_next_recv() {
    let t = Transport::default();
    let mut ws = server(&t, quiet());
    t.arrive(&client_frame(OpCode::Binary, b"one"));
    let Poll::Ready(Some(Ok(msg))) = poll(pin!(ws.recv())) else {
        panic!("the message");
    };
    // Arrives between the read and the answer: the send does not see it...
    t.arrive(&client_frame(OpCode::Ping, b"p"));
    assert!(matches!(poll(pin!(ws.send(msg))), Poll::Ready(Ok(()))));
    assert_eq!(t.take_written(), [&[0x82, 3][..], b"one"].concat());
    // ...the recv after it reads it, and the Pong goes out.
    assert!(poll(pin!(ws.recv())).is_pending());
    assert_eq!(t.take_written(), [0x8a, 1, b'p']);
}

#[test]
fn a_send_that_answers_no_batch_reads_ahead() {
    let t = Transport::default();
    let mut ws = server(&t, quiet());
    // The application only sends: a Ping waiting in the transport is read
    // and answered by the send.
    t.arrive(&client_frame(OpCode::Ping, b"p"));
    assert!(matches!(
        poll(pin!(ws.send(Message::from(String::from("hi"))))),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(
        t.take_written(),
        [&[0x8a, 1, b'p'][..], &[0x81, 2], b"hi"].concat()
    );
    // Also the send after one that skipped its read (an echo loop's last
    // answer): the skip is once per batch.
    t.arrive(&client_frame(OpCode::Binary, b"one"));
    let Poll::Ready(Some(Ok(msg))) = poll(pin!(ws.recv())) else {
        panic!("the message");
    };
    t.arrive(&client_frame(OpCode::Ping, b"q"));
    assert!(matches!(poll(pin!(ws.send(msg))), Poll::Ready(Ok(()))));
    assert_eq!(t.take_written(), [&[0x82, 3][..], b"one"].concat());
    assert!(matches!(
        poll(pin!(ws.send(Message::from(String::from("x"))))),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(
        t.take_written(),
        [&[0x8a, 1, b'q'][..], &[0x81, 1], b"x"].concat()
    );
}

#[test]
fn polls_before_the_timer_fires_read_no_clock() {
    let t = Transport::default();
    let mut ws = server(
        &t,
        Config {
            ping_interval: Some(Duration::from_secs(30)),
            ..Config::default()
        },
    );
    // The first poll arms the timer for the keepalive deadline.
    assert!(poll(pin!(ws.recv())).is_pending());
    let reads = clock_reads();
    for _ in 0..10 {
        assert!(poll(pin!(ws.recv())).is_pending());
    }
    assert_eq!(
        clock_reads(),
        reads,
        "polls of an armed timer read the clock"
    );
    // The deadline passes, but the timer has not fired: nothing yet (the
    // timer is what says the deadline passed).
    advance(Duration::from_secs(31));
    assert!(poll(pin!(ws.recv())).is_pending());
    assert!(t.take_written().is_empty());
    // It fires: the clock is read, and the keepalive Ping goes out.
    TIMER_FIRED.with(|f| f.set(true));
    assert!(poll(pin!(ws.recv())).is_pending());
    assert!(clock_reads() > reads);
    let out = t.take_written();
    assert_eq!(out[0], 0x89, "a Ping: {out:?}");
}
