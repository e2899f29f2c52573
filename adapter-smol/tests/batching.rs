//! An echo loop (`recv` -> `send`, or `forward`) answers pipelined messages
//! with one write per batch, not one per message: the transport's write
//! calls are counted.

mod util;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use wsmachine::Event;

/// A stream that counts the write calls made on it.
struct Counting<S> {
    inner: S,
    writes: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// How the server under test echoes.
#[derive(Clone, Copy, Debug)]
enum Echo {
    /// `while let Some(m) = ws.recv().await { ws.send(m).await }`
    RecvSend,
    /// `stream.forward(sink)` over the socket's `Stream` and `Sink` (split
    /// by `futures`' `StreamExt::split`).
    Forward,
    /// `reader.forward(writer)` over `split()` halves.
    SplitForward,
}

/// Sends 16 messages in one write to a server echoing them `how`, and
/// returns the number of writes the server made for the echoes.
fn echo_writes(how: Echo) -> usize {
    let writes = Arc::new(AtomicUsize::new(0));
    let (listener, addr) = util::run(5, util::listener());
    let w = writes.clone();
    let server = std::thread::spawn(move || {
        util::run(30, async move {
            use futures_util::StreamExt;
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = wsmachine_smol::accept(Counting {
                inner: tcp,
                writes: w,
            })
            .await
            .unwrap();
            match how {
                Echo::RecvSend => {
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                }
                Echo::Forward => {
                    let (sink, stream) = StreamExt::split(ws);
                    let _ = stream.forward(sink).await;
                }
                Echo::SplitForward => {
                    let (reader, mut writer) = ws.split();
                    let _ = reader.forward(&mut writer).await;
                }
            }
        })
    });
    let mut peer = util::RawPeer::connect(addr);
    let before = writes.load(Ordering::Relaxed);
    for i in 0..16 {
        peer.conn.send_text(&format!("message {i}")).unwrap();
    }
    // All 16 frames leave in one write: poll_transmit hands them out as one chunk.
    peer.flush();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 16 {
        assert!(Instant::now() < deadline, "echoes in time");
        assert!(peer.read_some(), "server closed early");
        while let Some(e) = peer.conn.poll_event() {
            if let Event::Text(t) = e {
                got.push(t.to_string());
            }
        }
    }
    let expected: Vec<String> = (0..16).map(|i| format!("message {i}")).collect();
    assert_eq!(got, expected);
    let echo_writes = writes.load(Ordering::Relaxed) - before;
    drop(peer);
    server.join().unwrap();
    echo_writes
}

// The burst is one 300-byte write on loopback, so it arrives in one read:
// its 16 echoes must leave in exactly one write, whichever way the
// application echoes.

#[test]
fn recv_send_loop_echoes_a_burst_in_one_write() {
    assert_eq!(echo_writes(Echo::RecvSend), 1);
}

#[test]
fn forward_echoes_a_burst_in_one_write() {
    assert_eq!(echo_writes(Echo::Forward), 1);
}

#[test]
fn split_halves_echo_a_burst_in_one_write() {
    assert_eq!(echo_writes(Echo::SplitForward), 1);
}
