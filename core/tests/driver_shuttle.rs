//! The split halves' shared state under the shuttle model checker.
//!
//! `WebSocketReader` and `WebSocketWriter` share one `Arc<Shared<S>>` (a
//! mutex around the transport and the sending state, the `dirty` and
//! `finished` flags, the waker lists). Built with `--cfg shuttle`, the
//! driver takes those primitives from shuttle (core/src/driver/sync.rs), so
//! shuttle schedules every lock and atomic access; here the reader, the
//! writer and the peer (a server `Connection` over an in-memory duplex pipe
//! of bounded capacity) each run on a shuttle thread, and every schedule
//! tried must finish (a lost wake-up shows as shuttle's deadlock panic)
//! with everything delivered:
//! 1. messages both ways: all sent arrive, all received are delivered;
//! 2. the writer closing while the reader waits: the reader sees the
//!    peer's Close and returns `None`, `close` returns;
//! 3. a Ping answered by the reader while the writer is parked on
//!    backpressure (the peer reads nothing until the pipe is full);
//! 4. both halves dropped in either order, mid-operation: no panic, and
//!    the transport is dropped (nothing leaks);
//! 5. at the end nothing is left unsent: the pipe carried exactly the
//!    bytes of every frame the client encoded, and `pending_output` is 0.
//!
//! The pipe keeps a waiting task's waker only until an operation in that
//! direction succeeds, as smol's `TcpStream` does: the reader writing the
//! writer's output (or a Pong) while the writer waits for room must wake
//! the writer itself.
//!
//! Run it with its own target directory (the flag rebuilds everything):
//!
//! ```text
//! RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle \
//!     cargo test -p wsmachine --features driver --test driver_shuttle
//! ```
//!
//! `SHUTTLE_ITERATIONS` (default 1000) sets the iterations per scheduler
//! (random and PCT) and test. A failure prints the schedule to replay with
//! `shuttle::replay`.
#![cfg(all(shuttle, feature = "driver"))]

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use shuttle::future::block_on;
use shuttle::sync::{mpsc, Mutex, MutexGuard};
use shuttle::thread;
use wsmachine::driver::{ByteStream, Error, Io, Runtime, Timer, WebSocket};
use wsmachine::{CloseCode, Config, Connection, Event, Message, Negotiated, Role};

// ---------------------------------------------------------------------------
// The runtime: a clock that stands still, a timer that never fires.

struct Rt;

// A test runtime's clock: read once, then it stands still.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Runtime for Rt {
    type Timer = StillTimer;

    fn now() -> Instant {
        // Time never passes: no keepalive or close timeout fires, so every
        // schedule depends on the interleaving alone (and replays).
        epoch()
    }

    fn timer() -> StillTimer {
        StillTimer(None)
    }

    fn fill_random(buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
    }
}

/// Fires only when reset to an instant that has passed.
struct StillTimer(Option<Instant>);

impl Timer for StillTimer {
    fn reset(&mut self, at: Instant) {
        self.0 = Some(at);
    }

    fn poll_elapsed(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        match self.0 {
            Some(at) if at <= Rt::now() => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

// ---------------------------------------------------------------------------
// The transport: two bounded one-way pipes behind shuttle mutexes.

struct Pipe {
    buf: VecDeque<u8>,
    cap: usize,
    /// The writing end shut down or was dropped: end of stream once drained.
    shut: bool,
    /// The reading end was dropped: writes fail.
    gone: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// Bytes accepted so far.
    written: usize,
}

type PipeRef = Arc<Mutex<Pipe>>;

fn pipe(cap: usize) -> PipeRef {
    Arc::new(Mutex::new(Pipe {
        buf: VecDeque::new(),
        cap,
        shut: false,
        gone: false,
        read_waker: None,
        write_waker: None,
        written: 0,
    }))
}

fn lock(p: &PipeRef) -> MutexGuard<'_, Pipe> {
    p.lock().expect("pipe lock poisoned")
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// One end of the duplex pipe.
struct End {
    rx: PipeRef,
    tx: PipeRef,
    drops: Arc<AtomicUsize>,
}

impl Drop for End {
    fn drop(&mut self) {
        let w = {
            let mut p = lock(&self.tx);
            p.shut = true;
            p.read_waker.take()
        };
        wake(w);
        let w = {
            let mut p = lock(&self.rx);
            p.gone = true;
            p.write_waker.take()
        };
        wake(w);
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// The client's end, the server's end, and how many ends were dropped.
fn duplex(cap: usize) -> (End, End, Arc<AtomicUsize>) {
    let (c2s, s2c) = (pipe(cap), pipe(cap));
    let drops = Arc::new(AtomicUsize::new(0));
    let client = End {
        rx: s2c.clone(),
        tx: c2s.clone(),
        drops: drops.clone(),
    };
    let server = End {
        rx: c2s,
        tx: s2c,
        drops: drops.clone(),
    };
    (client, server, drops)
}

impl Io<End> for Rt {
    type ByteStream = ByteStream<End, Rt>;

    fn byte_stream(inner: ByteStream<End, Rt>) -> Self::ByteStream {
        inner
    }

    fn poll_read(io: &mut End, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut p = lock(&io.rx);
        if p.buf.is_empty() {
            if p.shut {
                return Poll::Ready(Ok(0));
            }
            p.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(p.buf.len());
        for (d, s) in buf.iter_mut().zip(p.buf.drain(..n)) {
            *d = s;
        }
        // Like smol's `TcpStream` (async-net), a read that succeeds drops
        // whatever task waited for readability on this stream: a waiting
        // task must not rely on its registration surviving another task's
        // read.
        p.read_waker = None;
        let w = p.write_waker.take();
        drop(p);
        wake(w);
        Poll::Ready(Ok(n))
    }

    fn poll_write(io: &mut End, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Rt::poll_write_vectored(io, cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        io: &mut End,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut p = lock(&io.tx);
        if p.gone || p.shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = p.cap - p.buf.len();
        if room == 0 {
            p.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut n = 0;
        for b in bufs {
            let k = b.len().min(room - n);
            p.buf.extend(&b[..k]);
            n += k;
            if n == room {
                break;
            }
        }
        p.written += n;
        // Likewise a write that succeeds drops the registration of a task
        // waiting for writability (async-net keeps one pending `writable()`
        // future per stream, not per task).
        p.write_waker = None;
        let w = p.read_waker.take();
        drop(p);
        wake(w);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(_io: &mut End, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(io: &mut End, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let w = {
            let mut p = lock(&io.tx);
            p.shut = true;
            p.read_waker.take()
        };
        wake(w);
        Poll::Ready(Ok(()))
    }
}

// ---------------------------------------------------------------------------
// The peer: a server `Connection` driven inline on its own shuttle thread.

struct Peer {
    conn: Connection,
    io: End,
    eof: bool,
    /// Read nothing until the client has filled the pipe (backpressure).
    hold: bool,
    got: Vec<Message>,
    pongs: Vec<Vec<u8>>,
    close: Option<CloseCode>,
    /// Start the closing handshake once this many messages arrived.
    close_after: Option<usize>,
}

impl Peer {
    fn new(io: End) -> Self {
        Peer {
            conn: Connection::upgraded(
                Role::Server,
                config(),
                Negotiated::default(),
                None,
                Rt::now(),
            ),
            io,
            eof: false,
            hold: false,
            got: Vec::new(),
            pongs: Vec::new(),
            close: None,
            close_after: None,
        }
    }

    /// Whether reading is still held back; registers for the pipe filling.
    fn holding(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.hold {
            return false;
        }
        let mut p = lock(&self.io.rx);
        if p.buf.len() < p.cap && !p.shut {
            p.read_waker = Some(cx.waker().clone());
            return true;
        }
        self.hold = false;
        false
    }

    /// Runs the connection until the closing handshake is over and its
    /// output written, then shuts its side of the pipe down.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut buf = [0u8; 256];
        loop {
            let mut progress = false;
            while let Some(out) = self.conn.peek_transmit() {
                match Rt::poll_write(&mut self.io, cx, out) {
                    Poll::Ready(Ok(n)) => {
                        self.conn.advance_transmit(n);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => panic!("peer write failed: {e}"),
                    Poll::Pending => break,
                }
            }
            while let Some(ev) = self.conn.poll_event() {
                match ev {
                    Event::Text(t) => self.got.push(Message::Text(t)),
                    Event::Binary(b) => self.got.push(Message::Binary(b)),
                    Event::Pong(p) => self.pongs.push(p.to_vec()),
                    Event::Close(f) => self.close = Some(f.code),
                    Event::Error(e) => panic!("peer error: {e:?}"),
                    _ => {}
                }
                progress = true;
            }
            if self.close_after == Some(self.got.len()) {
                self.close_after = None;
                self.conn
                    .close(Rt::now(), CloseCode::NORMAL, "")
                    .expect("peer close");
                continue;
            }
            if self.conn.should_close_transport() && self.conn.pending_output() == 0 {
                let _ = Rt::poll_shutdown(&mut self.io, cx);
                return Poll::Ready(());
            }
            if !self.eof && !self.holding(cx) {
                match Rt::poll_read(&mut self.io, cx, &mut buf) {
                    Poll::Ready(Ok(0)) => {
                        self.eof = true;
                        self.conn.receive_eof(Rt::now());
                        progress = true;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.conn.receive(Rt::now(), &buf[..n]);
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => panic!("peer read failed: {e}"),
                    Poll::Pending => {}
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers.

/// Output over this makes the writer wait.
const HIGH_WATER: usize = 64;
/// Each pipe direction holds at most this many bytes.
const PIPE_CAP: usize = 48;

fn config() -> Config {
    Config {
        write_buffer_high_water: HIGH_WATER,
        // The process-wide budget is shared state outside the model.
        memory_budget: None,
        ..Config::default()
    }
}

fn client(io: End) -> WebSocket<End, Rt> {
    WebSocket::from_upgraded(io, Role::Client, Negotiated::default(), config())
}

/// The bytes of one masked client frame with a payload of `len` bytes.
fn client_frame_len(len: usize) -> usize {
    let ext = match len {
        0..=125 => 0,
        126..=65535 => 2,
        _ => 8,
    };
    2 + ext + 4 + len
}

fn message(from: &str, i: usize, len: usize) -> Message {
    let mut s = format!("{from}{i}:");
    while s.len() < len {
        s.push('x');
    }
    Message::from(s)
}

/// Polls `f` once (with the shuttle thread's waker), then drops it.
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    let mut f = pin!(f);
    block_on(poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))))
}

fn iterations() -> usize {
    std::env::var("SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// Runs `test` under the random and the PCT scheduler.
fn check(test: fn()) {
    let n = iterations();
    shuttle::check_random(test, n);
    shuttle::check_pct(test, n, 3);
}

// ---------------------------------------------------------------------------
// The scenarios.

/// Client writer sends `n` messages of `len` bytes and closes; the peer
/// sends `m` and echoes the Close. With `ping`, the peer first sends a Ping
/// and reads nothing until the client has filled the pipe, and the writer
/// closes only after the reader has seen the Ping (so the Pong is due).
fn exchange(n: usize, m: usize, len: usize, ping: bool) {
    let (c, s, drops) = duplex(PIPE_CAP);
    let mut peer = Peer::new(s);
    if ping {
        peer.conn.ping(b"p!").unwrap();
        peer.hold = true;
    }
    for i in 0..m {
        peer.conn.send(message("s", i, len)).unwrap();
    }
    let (mut reader, mut writer) = client(c).split();
    let (saw_ping, ping_seen) = mpsc::channel::<()>();

    let peer = thread::spawn(move || {
        block_on(poll_fn(|cx| peer.poll_run(cx)));
        peer
    });
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let mut saw_ping = Some(saw_ping);
        while let Some(ev) = block_on(reader.recv_event()) {
            match ev.expect("reader error") {
                Event::Text(t) => got.push(Message::Text(t)),
                Event::Binary(b) => got.push(Message::Binary(b)),
                Event::Ping(_) => {
                    if let Some(tx) = saw_ping.take() {
                        tx.send(()).unwrap();
                    }
                }
                _ => {}
            }
        }
        // Unblock the writer even if no Ping came (asserted below).
        drop(saw_ping);
        (reader, got)
    });
    let writer = thread::spawn(move || {
        for i in 0..n {
            block_on(writer.send(message("c", i, len))).expect("send");
        }
        if ping {
            let _ = ping_seen.recv();
        }
        block_on(writer.close(CloseCode::NORMAL, "")).expect("close");
        writer
    });

    let (reader, got) = reader.join().unwrap();
    let writer = writer.join().unwrap();
    let peer = peer.join().unwrap();

    // Everything sent arrived, in order, both ways.
    let expect_c: Vec<_> = (0..n).map(|i| message("c", i, len)).collect();
    let expect_s: Vec<_> = (0..m).map(|i| message("s", i, len)).collect();
    assert_eq!(peer.got, expect_c, "the peer's messages");
    assert_eq!(got, expect_s, "the reader's messages");
    assert_eq!(peer.close, Some(CloseCode::NORMAL));
    assert_eq!(
        reader.close_frame().map(|f| f.code),
        Some(CloseCode::NORMAL)
    );
    if ping {
        assert_eq!(peer.pongs, vec![b"p!".to_vec()], "the Pong");
    }
    // Nothing left unsent: every frame the client encoded crossed the
    // pipe, byte for byte.
    assert_eq!(writer.pending_output(), 0);
    let expected = n * client_frame_len(len)
        + peer
            .pongs
            .iter()
            .map(|p| client_frame_len(p.len()))
            .sum::<usize>()
        + client_frame_len(2);
    assert_eq!(lock(&peer.io.rx).written, expected, "bytes on the wire");

    drop((reader, writer));
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the client's transport");
    drop(peer);
}

#[test]
fn messages_both_ways() {
    // 100-byte messages over a 48-byte pipe with a 64-byte high-water
    // mark: partial writes, and the writer waits for room.
    check(|| exchange(4, 4, 100, false));
}

#[test]
fn writer_closes_while_reader_waits() {
    check(|| exchange(0, 0, 0, false));
    check(|| exchange(0, 2, 10, false));
}

#[test]
fn ping_answered_while_writer_parked() {
    check(|| exchange(4, 1, 100, true));
}

/// The writer sends `n` messages and goes idle (kept, or dropped with
/// `drop_writer`) with output still pending: the reader must write it. The
/// peer closes once all arrived; the reader echoes and returns `None`.
fn writer_leaves_output(n: usize, drop_writer: bool) {
    let (c, s, drops) = duplex(PIPE_CAP);
    let mut peer = Peer::new(s);
    peer.close_after = Some(n);
    let (mut reader, mut writer) = client(c).split();

    let peer = thread::spawn(move || {
        block_on(poll_fn(|cx| peer.poll_run(cx)));
        peer
    });
    let reader = thread::spawn(move || {
        let m = block_on(reader.recv());
        assert!(m.is_none(), "unexpected message {m:?}");
        reader
    });
    let writer = thread::spawn(move || {
        for i in 0..n {
            block_on(writer.send(message("c", i, 100))).expect("send");
        }
        (!drop_writer).then_some(writer)
    });

    let reader = reader.join().unwrap();
    let writer = writer.join().unwrap();
    let peer = peer.join().unwrap();

    let expect: Vec<_> = (0..n).map(|i| message("c", i, 100)).collect();
    assert_eq!(peer.got, expect, "the peer's messages");
    assert_eq!(peer.close, Some(CloseCode::NORMAL), "the Close echo");
    assert_eq!(
        reader.close_frame().map(|f| f.code),
        Some(CloseCode::NORMAL)
    );
    let mut writer = writer;
    if let Some(w) = &mut writer {
        assert_eq!(w.pending_output(), 0);
        let late = block_on(w.send("late"));
        assert!(matches!(late, Err(Error::Closed(_))), "{late:?}");
    }
    let expected = n * client_frame_len(100) + client_frame_len(2);
    assert_eq!(lock(&peer.io.rx).written, expected, "bytes on the wire");
    drop((reader, writer));
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the client's transport");
    drop(peer);
}

#[test]
fn reader_writes_what_the_writer_left() {
    check(|| writer_leaves_output(3, false));
    check(|| writer_leaves_output(3, true));
}

/// The halves dropped on two threads (so in either order) while their
/// operations are in progress: the reader's `recv` polled once, the
/// writer's `send` waiting for room (the peer never reads).
fn drop_halves(writer_first: Option<bool>) {
    let (c, s, drops) = duplex(PIPE_CAP);
    let (mut reader, mut writer) = client(c).split();
    let r = move || {
        assert!(poll_once(reader.recv()).is_pending());
        drop(reader);
    };
    let w = move || {
        for i in 0..3 {
            if poll_once(writer.send(message("c", i, 100))).is_pending() {
                break;
            }
        }
        drop(writer);
    };
    match writer_first {
        Some(true) => {
            w();
            r();
        }
        Some(false) => {
            r();
            w();
        }
        None => {
            let r = thread::spawn(r);
            let w = thread::spawn(w);
            r.join().unwrap();
            w.join().unwrap();
        }
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the client's transport");
    drop(s);
}

#[test]
fn halves_dropped_in_either_order() {
    check(|| drop_halves(None));
    // One order each, on one thread (nothing to schedule: run once).
    shuttle::check_random(|| drop_halves(Some(true)), 1);
    shuttle::check_random(|| drop_halves(Some(false)), 1);
}
