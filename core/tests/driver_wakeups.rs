//! Wake-ups between two tasks that share one transport, staged by hand.
//!
//! A transport may keep a waiting task's registration only until an
//! operation in that direction succeeds: smol's `TcpStream` (async-net)
//! holds one pending `writable()` and one `readable()` future per stream
//! and drops it whenever a write (read) goes through, whichever task made
//! it. Readiness also reaches the waiting task late, through the reactor.
//! So when the reader of a split connection writes the output the writer
//! waits on, or one side of an unsplit connection polled from two tasks
//! reads or writes (or flushes, on TLS) for the other, the driver itself
//! must wake the other task: the transport's wake-up may never come.
//!
//! The transport here does exactly that, and the tests poll futures with
//! counting wakers in the one interleaving that loses the wake-up: the
//! waiting task registers, the transport becomes ready without telling
//! anyone yet, the other task's operation succeeds (dropping the
//! registration), and only then does the reactor's notice arrive — to no
//! one. Each test then asserts that the waiting task was woken.
#![cfg(feature = "driver")]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wsmachine::driver::{ByteStream, Io, WebSocket};
use wsmachine::{Config, Message, Negotiated, Role};

#[path = "support/still_runtime.rs"]
mod still_runtime;
use still_runtime::{Rt, Task};

/// The test's side of the transport: what the connection may write and
/// read next, and who waits.
#[derive(Default)]
struct Wire {
    /// Bytes the connection may still write.
    room: usize,
    written: usize,
    /// Bytes the connection may read.
    incoming: Vec<u8>,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// Like a TLS stream: writes are taken into a buffer at once, and
    /// `flush` writes the buffer to the socket (which needs `room`).
    tls: bool,
    buffered: usize,
}

#[derive(Clone, Default)]
struct Transport(Arc<Mutex<Wire>>);

impl Transport {
    fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.0.lock().unwrap()
    }

    /// The reactor's late look at the socket (epoll reports what holds
    /// when it asks): writable, so it wakes whoever is still registered —
    /// nobody, if a successful write dropped the registration.
    fn notify_writable(&self) {
        let mut w = self.wire();
        if w.room > 0 {
            if let Some(w) = w.write_waker.take() {
                w.wake();
            }
        }
    }

    /// Likewise for readability: nothing to report once another task has
    /// read what arrived.
    fn notify_readable(&self) {
        let mut w = self.wire();
        if !w.incoming.is_empty() {
            if let Some(w) = w.read_waker.take() {
                w.wake();
            }
        }
    }
}

impl Io<Transport> for Rt {
    type ByteStream = ByteStream<Transport, Rt>;

    fn byte_stream(inner: ByteStream<Transport, Rt>) -> Self::ByteStream {
        inner
    }

    fn poll_read(
        io: &mut Transport,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut w = io.wire();
        if w.incoming.is_empty() {
            w.read_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(w.incoming.len());
        buf[..n].copy_from_slice(&w.incoming[..n]);
        w.incoming.drain(..n);
        w.read_waker = None;
        Poll::Ready(Ok(n))
    }

    fn poll_write(io: &mut Transport, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Rt::poll_write_vectored(io, cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        io: &mut Transport,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut w = io.wire();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if w.tls {
            w.buffered += len;
            return Poll::Ready(Ok(len));
        }
        let n = len.min(w.room);
        if n == 0 {
            w.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        w.room -= n;
        w.written += n;
        w.write_waker = None;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(io: &mut Transport, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut w = io.wire();
        if w.buffered == 0 {
            return Poll::Ready(Ok(()));
        }
        if w.room < w.buffered {
            w.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = w.buffered;
        w.room -= n;
        w.written += n;
        w.buffered = 0;
        w.write_waker = None;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(_io: &mut Transport, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const HIGH_WATER: usize = 1024;

fn client(t: &Transport) -> WebSocket<Transport, Rt> {
    let config = Config {
        write_buffer_high_water: HIGH_WATER,
        ping_interval: None,
        memory_budget: None,
        ..Config::default()
    };
    WebSocket::from_upgraded(t.clone(), Role::Client, Negotiated::default(), config)
}

fn poll<F: Future>(f: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// An unmasked server text frame.
fn server_text(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x81, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

#[test]
fn the_reader_wakes_a_writer_whose_output_it_wrote() {
    let t = Transport::default();
    let (mut reader, mut writer) = client(&t).split();
    let (writer_task, ww) = Task::new();
    let (reader_task, rw) = Task::new();

    // The writer queues more than the high-water mark; nothing can be
    // written, so the next send waits for room.
    t.wire().room = 0;
    assert!(poll(pin!(writer.send(vec![1u8; 4 * HIGH_WATER])), &ww).is_ready());
    let mut next = pin!(writer.send(Message::from("next")));
    assert!(poll(next.as_mut(), &ww).is_pending());
    let before = writer_task.woken();

    // The socket drains; before the reactor says so, the reader runs (a
    // message arrived) and writes the writer's output.
    t.wire().room = usize::MAX;
    t.wire().incoming = server_text(b"hello");
    let got = poll(pin!(reader.recv()), &rw);
    assert!(matches!(got, Poll::Ready(Some(Ok(Message::Text(ref s)))) if s.as_str() == "hello"));
    assert!(
        t.wire().written > 4 * HIGH_WATER,
        "the reader wrote the output"
    );
    t.notify_writable();

    assert!(
        writer_task.woken() > before,
        "the writer waits for room it already has, and nothing will wake it"
    );
    assert!(poll(next.as_mut(), &ww).is_ready());
    let _ = reader_task;
}

/// The same over a TLS-like stream, whose `flush` does the socket writes:
/// the reader's flush that went through must wake the writer waiting in
/// its own flush.
#[test]
fn the_reader_wakes_a_writer_whose_flush_it_finished() {
    let t = Transport::default();
    t.wire().tls = true;
    let (mut reader, mut writer) = client(&t).split();
    let (writer_task, ww) = Task::new();
    let (_reader_task, rw) = Task::new();

    assert!(poll(pin!(writer.send(vec![1u8; 100])), &ww).is_ready());
    let mut flush = pin!(writer.flush());
    assert!(poll(flush.as_mut(), &ww).is_pending());
    let before = writer_task.woken();

    t.wire().room = usize::MAX;
    t.wire().incoming = server_text(b"hello");
    let got = poll(pin!(reader.recv()), &rw);
    assert!(matches!(got, Poll::Ready(Some(Ok(_)))));
    assert!(
        t.wire().written > 100,
        "the reader's flush wrote the output"
    );
    t.notify_writable();

    assert!(
        writer_task.woken() > before,
        "the writer waits in a flush that is done, and nothing will wake it"
    );
    assert!(poll(flush.as_mut(), &ww).is_ready());
}

#[test]
fn the_receiving_side_wakes_a_sending_task_whose_output_it_wrote() {
    let t = Transport::default();
    let mut ws = client(&t);
    let (send_task, sw) = Task::new();
    let (_recv_task, rw) = Task::new();

    t.wire().room = 0;
    {
        let mut send = pin!(ws.send(vec![1u8; 4 * HIGH_WATER]));
        assert!(poll(send.as_mut(), &sw).is_ready());
    }
    // The sending task waits for room; the receiving task (another task
    // polling the same connection) then runs while the socket has drained.
    {
        let mut next = pin!(ws.send(Message::from("next")));
        assert!(poll(next.as_mut(), &sw).is_pending());
    }
    let before = send_task.woken();
    t.wire().room = usize::MAX;
    t.wire().incoming = server_text(b"hello");
    {
        let got = poll(pin!(ws.recv()), &rw);
        assert!(matches!(got, Poll::Ready(Some(Ok(_)))));
    }
    assert!(
        t.wire().written > 4 * HIGH_WATER,
        "the receiving side wrote the output"
    );
    t.notify_writable();
    assert!(
        send_task.woken() > before,
        "the receiving side wrote the output the sending task waits on, and nothing will wake it"
    );
}

#[test]
fn the_sending_side_wakes_a_receiving_task_whose_message_it_read() {
    let t = Transport::default();
    let mut ws = client(&t);
    let (recv_task, rw) = Task::new();
    let (_send_task, sw) = Task::new();
    t.wire().room = usize::MAX;

    // The receiving task waits for a message.
    {
        let mut recv = pin!(ws.recv());
        assert!(poll(recv.as_mut(), &rw).is_pending());
    }
    let before = recv_task.woken();
    // A message arrives; before the reactor says so, the sending task
    // (reading ahead so Pings are answered) reads it into the connection.
    t.wire().incoming = server_text(b"hello");
    {
        let mut send = pin!(ws.send(Message::from("out")));
        assert!(poll(send.as_mut(), &sw).is_ready());
    }
    assert!(t.wire().incoming.is_empty(), "the sending side read ahead");
    t.notify_readable();
    assert!(
        recv_task.woken() > before,
        "the message waits in the connection, and nothing will wake the receiving task"
    );
    let got = poll(pin!(ws.recv()), &rw);
    assert!(matches!(got, Poll::Ready(Some(Ok(_)))));
}
