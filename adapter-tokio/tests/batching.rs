//! An echo loop (`recv` -> `send`) answers pipelined messages with one write
//! per batch, not one per message: the transport's write calls are counted.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use wsmachine::{ClientRequest, Config, Connection, Event, SeededMask};

/// A stream that counts the write calls made on it.
struct Counting {
    inner: TcpStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
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
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn pipelined_messages_are_echoed_in_one_batch() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let w = writes.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = wsmachine_tokio::accept(Counting {
            inner: tcp,
            writes: w,
        })
        .await
        .unwrap();
        while let Some(Ok(m)) = ws.recv().await {
            ws.send(m).await.unwrap();
        }
    });

    // The peer: a bare core over a tokio socket, so its 16 messages leave in one write.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let now = std::time::Instant::now();
    let cfg = Config {
        ping_interval: None,
        ..Config::default()
    };
    let mut peer = Connection::client(
        cfg,
        ClientRequest::new("h", "/"),
        [7; 16],
        SeededMask::new([7; 32]),
        now,
    );
    let mut buf = vec![0u8; 64 << 10];
    let mut connected = false;
    while !connected {
        while let Some(b) = peer.poll_transmit() {
            tcp.write_all(&b).await.unwrap();
        }
        let n = tcp.read(&mut buf).await.unwrap();
        peer.receive(now, &buf[..n]);
        connected = matches!(peer.poll_event(), Some(Event::Connected(_)));
    }
    let before = writes.load(Ordering::Relaxed);
    let mut burst = Vec::new();
    for i in 0..16 {
        peer.send_text(&format!("message {i}")).unwrap();
    }
    while let Some(b) = peer.poll_transmit() {
        burst.extend_from_slice(&b);
    }
    tcp.write_all(&burst).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 16 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("echoes in time")
            .unwrap();
        assert!(n > 0, "server closed early");
        peer.receive(now, &buf[..n]);
        while let Some(e) = peer.poll_event() {
            if let Event::Text(t) = e {
                got.push(t.to_string());
            }
        }
    }
    let expected: Vec<String> = (0..16).map(|i| format!("message {i}")).collect();
    assert_eq!(got, expected);
    let echo_writes = writes.load(Ordering::Relaxed) - before;
    // One batch in the usual case; a read that splits the burst may add one.
    assert!(
        echo_writes <= 2,
        "{echo_writes} writes for 16 pipelined echoes"
    );
    drop(tcp);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
}
