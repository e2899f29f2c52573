//! Heap bytes an idle server connection costs in the tokio adapter: the
//! task, its `WebSocket` (with the core inside), the socket's registration
//! and timer, after the handshake and one small echo.
//!
//! A global allocator counts live bytes per thread. The server runs on a
//! current-thread runtime on the test thread; the clients are plain
//! blocking sockets on another thread, so their allocations are not
//! counted. Heap bytes, not RSS: allocator overhead and fragmentation come
//! on top (see BENCHMARKS.md for the RSS measurement).
// The test drives its own clients and clock.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::sync::mpsc;

use tokio::net::TcpListener;

// The memory tests' one counting allocator, core's (both crates are in
// this workspace).
#[path = "../../core/tests/support/live_bytes.rs"]
mod live_bytes;
use live_bytes::live;

#[global_allocator]
static A: live_bytes::LiveBytes = live_bytes::LiveBytes;

const CONNS: usize = 64;

/// One blocking client: handshake, one 16-byte echo, then holds the socket
/// until told to go.
fn client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // A masked binary frame with a zero mask: the payload goes as is.
    let mut frame = vec![0x82, 0x80 | 16, 0, 0, 0, 0];
    frame.extend_from_slice(&[7; 16]);
    s.write_all(&frame).unwrap();
    let mut echo = [0u8; 18];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo[..2], &[0x82, 16]);
    s
}

#[test]
fn idle_server_connection_heap_cost() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Warm up what is allocated once per runtime (timer wheel, I/O
        // driver pages) with one connection that comes and goes.
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let clients = std::thread::spawn(move || {
            let warm = client(addr);
            drop(warm);
            let held: Vec<_> = (0..CONNS).map(|_| client(addr)).collect();
            ready_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            drop(held);
        });
        let serve = |tcp| async move {
            let mut ws = wsmachine_tokio::accept(tcp).await.unwrap();
            while let Some(Ok(m)) = ws.recv().await {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
        };
        let (tcp, _) = listener.accept().await.unwrap();
        tokio::spawn(serve(tcp)).await.unwrap();
        let before = live();
        let mut tasks = Vec::new();
        for _ in 0..CONNS {
            let (tcp, _) = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(serve(tcp)));
        }
        let mut ready_rx = ready_rx;
        ready_rx.recv().await.unwrap();
        // Every task is idle in `recv` now, without yielding: each client
        // read its echo, which its server task wrote in a poll that then
        // went on to `recv` and found nothing to read; on this one thread
        // that poll ended before this task resumed.
        // The JoinHandles themselves are the test's, not the connections'.
        let handles =
            (tasks.capacity() * std::mem::size_of::<tokio::task::JoinHandle<()>>()) as isize;
        let per_conn = (live() - before - handles) / CONNS as isize;
        eprintln!("idle tokio server connection: {per_conn} heap bytes");
        done_tx.send(()).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        clients.join().unwrap();
        // 1 489 bytes when written (2 425 before the configuration was
        // shared, the core's rarely used state boxed and the adapter wrote
        // straight from the core's buffers): the task with its future
        // (1 024: Tokio rounds tasks to 128 bytes; the `WebSocket` is 600,
        // the core 440 of it), the socket's registration (256), the
        // keepalive timer (112), the link between the core's halves (88),
        // the adapter's wakers (56), and the input and output buffers with
        // the header the input shares with the payloads it hands out.
        // With the `tracing` feature each connection also holds its span
        // (about 300 bytes with no subscriber installed).
        let bound = if cfg!(feature = "tracing") {
            1920
        } else {
            1536
        };
        assert!(
            per_conn <= bound,
            "{per_conn} heap bytes per idle connection"
        );
    });
}
