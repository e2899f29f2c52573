//! An echo loop (`recv` -> `send`) answers pipelined messages with one write
//! per batch, not one per message: the transport's write calls are counted.

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

#[test]
fn pipelined_messages_are_echoed_in_one_batch() {
    let writes = Arc::new(AtomicUsize::new(0));
    let (listener, addr) = util::run(5, util::listener());
    let w = writes.clone();
    let server = std::thread::spawn(move || {
        util::run(30, async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = wsmachine_smol::accept(Counting {
                inner: tcp,
                writes: w,
            })
            .await
            .unwrap();
            while let Some(Ok(m)) = ws.recv().await {
                if ws.send(m).await.is_err() {
                    break;
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
    assert!(
        echo_writes <= 2,
        "{echo_writes} writes for 16 pipelined echoes"
    );
    drop(peer);
    server.join().unwrap();
}
