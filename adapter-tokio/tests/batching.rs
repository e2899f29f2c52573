//! An echo loop (`recv` -> `send`, or `forward`) answers pipelined messages
//! with one write per batch, not one per message: the transport's write
//! calls are counted.

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

/// How the server under test echoes.
#[derive(Clone, Copy, Debug)]
enum Echo {
    /// `while let Some(m) = ws.recv().await { ws.send(m).await }`
    RecvSend,
    /// tokio-tungstenite's idiom: `stream.forward(sink)` over the socket's
    /// `Stream` and `Sink` (split by `futures`' `StreamExt::split`).
    Forward,
    /// `reader.forward(writer)` over `split()` halves.
    SplitForward,
}

async fn serve(ws: wsmachine_tokio::WebSocket<Counting>, how: Echo) {
    use futures_util::StreamExt;
    match how {
        Echo::RecvSend => {
            let mut ws = ws;
            while let Some(Ok(m)) = ws.recv().await {
                ws.send(m).await.unwrap();
            }
        }
        Echo::Forward => {
            let (sink, stream) = StreamExt::split(ws);
            let _ = stream.forward(sink).await;
        }
        Echo::SplitForward => {
            let (reader, mut writer) = ws.split();
            let _ = reader.forward(&mut writer).await;
            let _ = writer.close(wsmachine::CloseCode::NORMAL, "").await;
        }
    }
}

/// Sends 16 messages in one write to a server echoing them `how`, and
/// returns the number of writes the server made for the echoes.
async fn echo_writes(how: Echo) -> usize {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let w = writes.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = wsmachine_tokio::accept(Counting {
            inner: tcp,
            writes: w,
        })
        .await
        .unwrap();
        serve(ws, how).await;
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
    drop(tcp);
    // The server sees the end of the stream and returns; a panic in it (an
    // echo that failed to send) fails the test instead of going unseen.
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server ends once the peer is gone")
        .expect("the server task did not panic");
    echo_writes
}

// The burst is one 300-byte write on loopback, so it arrives in one read:
// its 16 echoes must leave in exactly one write, whichever way the
// application echoes.

#[tokio::test]
async fn recv_send_loop_echoes_a_burst_in_one_write() {
    assert_eq!(echo_writes(Echo::RecvSend).await, 1);
}

#[tokio::test]
async fn forward_echoes_a_burst_in_one_write() {
    assert_eq!(echo_writes(Echo::Forward).await, 1);
}

#[tokio::test]
async fn split_halves_echo_a_burst_in_one_write() {
    assert_eq!(echo_writes(Echo::SplitForward).await, 1);
}
