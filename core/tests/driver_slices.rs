//! The driver yields between the slices of a large inflate.
//!
//! The core inflates a compressed frame at most 256 KiB per call and says
//! when work is left without new input (`has_pending_work`). The driver
//! must then give the executor back (wake its own task, return `Pending`)
//! after each slice, so a decompression bomb costs the other tasks on that
//! thread one slice at a time, not the whole message limit in one poll.
//! Here a bomb waits whole on an in-memory transport and the receiving
//! future is polled by hand with a counting waker: every poll but the last
//! must return `Pending` having woken the task itself, and the slices must
//! add up to the message limit before the 1009.
#![cfg(feature = "driver")]

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::BytesMut;
use wsmachine::driver::{ByteStream, Error, Io, WebSocket};
use wsmachine::internals::{Compressor, FrameHeader, RSV1};
use wsmachine::{
    apply_mask, Config, ConnectionError, DeflateConfig, DeflateParams, Message, Negotiated, OpCode,
    ProtocolError, Role,
};

#[path = "support/still_runtime.rs"]
mod still_runtime;
use still_runtime::{Rt, Task};

/// Bytes the connection may read; what it wrote. Reads and writes never
/// wait for the other side, so every `Pending` comes from the driver.
#[derive(Default)]
struct Wire {
    incoming: Vec<u8>,
    written: Vec<u8>,
}

#[derive(Clone, Default)]
struct Transport(Arc<Mutex<Wire>>);

impl Io<Transport> for Rt {
    type ByteStream = ByteStream<Transport, Rt>;

    fn byte_stream(inner: ByteStream<Transport, Rt>) -> Self::ByteStream {
        inner
    }

    fn poll_read(
        io: &mut Transport,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut w = io.0.lock().unwrap();
        // The peer keeps the connection open: nothing more ever arrives
        // (a read that pends would need a waker; none is ever woken).
        if w.incoming.is_empty() {
            return Poll::Pending;
        }
        let n = buf.len().min(w.incoming.len());
        buf[..n].copy_from_slice(&w.incoming[..n]);
        w.incoming.drain(..n);
        Poll::Ready(Ok(n))
    }

    fn poll_write(io: &mut Transport, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Rt::poll_write_vectored(io, cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        io: &mut Transport,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut w = io.0.lock().unwrap();
        let mut n = 0;
        for b in bufs {
            w.written.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(_io: &mut Transport, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(_io: &mut Transport, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const MIB: usize = 1 << 20;
/// The message limit: 16 slices of 256 KiB.
const LIMIT: usize = 4 * MIB;

/// A server connection with compression whose transport holds one masked
/// client frame of 8 MiB of zeros, deflated (8 KiB on the wire).
fn bombed() -> (WebSocket<Transport, Rt>, Transport) {
    let params = DeflateParams::default();
    let mut comp = Compressor::new(&params, &DeflateConfig::default(), Role::Client);
    let mut payload = BytesMut::new();
    comp.compress(&vec![0; 2 * LIMIT], true, &mut payload);
    let mut frame = Vec::new();
    FrameHeader {
        fin: true,
        rsv: RSV1,
        opcode: OpCode::Binary,
        mask: Some([1, 2, 3, 4]),
        payload_len: payload.len() as u64,
    }
    .encode(&mut frame);
    let start = frame.len();
    frame.extend_from_slice(&payload);
    apply_mask(&mut frame[start..], [1, 2, 3, 4], 0);
    assert!(frame.len() < 64 << 10, "one read takes it all");
    let transport = Transport::default();
    transport.0.lock().unwrap().incoming = frame;
    let config = Config {
        max_message_size: LIMIT,
        memory_budget: None,
        ping_interval: None,
        ..Config::default()
    };
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: Some(params),
    };
    let ws = WebSocket::from_upgraded(transport.clone(), Role::Server, negotiated, config);
    (ws, transport)
}

/// Polls `fut` until it is ready; asserts that every `Pending` woke the
/// task (a yield, not a wait for I/O). Returns the output and how many
/// polls it took.
fn poll_yielding<F: Future>(fut: F) -> (F::Output, usize) {
    let (task, waker) = Task::new();
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut polls = 0;
    loop {
        let woken = task.woken();
        polls += 1;
        assert!(polls < 10_000, "no end");
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return (out, polls),
            Poll::Pending => assert_eq!(
                task.woken(),
                woken + 1,
                "poll {polls} returned Pending without waking its task"
            ),
        }
    }
}

/// Whether `polls` is the number of 256 KiB slices a bomb takes to pass
/// the limit (the first slice is a little short: its inflate steps start
/// small).
fn one_slice_per_poll(polls: usize) -> bool {
    let slices = LIMIT / (256 << 10);
    (slices..=slices + 2).contains(&polls)
}

fn assert_too_big(out: Option<Result<Message, Error>>, transport: &Transport) {
    match out {
        Some(Err(Error::Ws(ConnectionError::Protocol(ProtocolError::MessageTooBig {
            size,
            limit,
        })))) => assert_eq!((size, limit), (LIMIT as u64 + 1, LIMIT)),
        other => panic!("{other:?}"),
    }
    // The last frame written is the Close, with 1009.
    let written = &transport.0.lock().unwrap().written[..];
    let mut rest = written;
    let mut last = None;
    while let Ok(Some((h, n))) = FrameHeader::decode(rest) {
        let end = n + h.payload_len as usize;
        last = Some((h.opcode, rest[n..end].to_vec()));
        rest = &rest[end..];
    }
    assert!(rest.is_empty(), "whole frames only");
    match last {
        Some((OpCode::Close, p)) => assert_eq!(p[..2], 1009u16.to_be_bytes()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn recv_yields_after_each_slice_of_a_bomb() {
    let (mut ws, transport) = bombed();
    let (out, polls) = poll_yielding(ws.recv());
    assert!(one_slice_per_poll(polls), "{polls} polls");
    assert_too_big(out, &transport);
}

#[test]
fn a_split_reader_yields_after_each_slice_of_a_bomb() {
    let (ws, transport) = bombed();
    let (mut reader, _writer) = ws.split();
    let (out, polls) = poll_yielding(reader.recv());
    assert!(one_slice_per_poll(polls), "{polls} polls");
    assert_too_big(out, &transport);
}

#[test]
fn a_send_reads_ahead_one_slice_per_call() {
    // The application only sends: the read-ahead of each `send` inflates
    // one slice (and wakes the task for the next), never the whole bomb.
    let (mut ws, transport) = bombed();
    let mut sends = 0;
    while ws.state() == wsmachine::State::Open {
        let (out, polls) = poll_yielding(ws.send(Message::Text("tick".into())));
        out.unwrap();
        assert_eq!(polls, 1, "a send with room completes in one poll");
        sends += 1;
        assert!(sends < 100, "no end");
    }
    assert!(one_slice_per_poll(sends), "{sends} sends");
    let (out, _) = poll_yielding(ws.recv());
    assert_too_big(out, &transport);
}
