//! A minimal echo server straight over the wsmachine core, for the load
//! benchmarks of issue 7: what the sans-IO core can do when its driver
//! drains every event of a read and answers with one vectored write.
//!
//! Not an adapter (no timers, no backpressure, no TLS; the opening
//! handshake is answered by hand, without compression): it isolates the
//! core's cost from the adapter's driver. Each connection is one tokio task:
//! read (up to 64 KiB) → `receive` → every `Event` echoed with `send` →
//! every `poll_transmit` chunk written with one `write_vectored` (more if
//! the socket takes less).
//!
//! ```text
//! cargo run --release -p wsmachine-conformance --example peer_wsmachine_core_echo -- 127.0.0.1:9106
//! ```
//! Prints `listening on ws://ADDR` once ready.
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{IoSlice, Write};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsmachine::{accept_key, Config, Connection, Event, Negotiated, Role};

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9106".into());
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("peer_wsmachine_core_echo: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("bound socket has an address");
    println!("listening on ws://{local}");
    let _ = std::io::stdout().flush();
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = serve(tcp).await;
                });
            }
            Err(e) => {
                eprintln!("peer_wsmachine_core_echo: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads the request head; answers 101 with the accept key. Returns the
/// bytes that followed the head.
async fn handshake(tcp: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    let end = loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 || head.len() > 16 << 10 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let key = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(&key)
    );
    tcp.write_all(resp.as_bytes()).await?;
    Ok(head[end..].to_vec())
}

async fn serve(mut tcp: TcpStream) -> std::io::Result<()> {
    let leftover = handshake(&mut tcp).await?;
    let config = Config {
        ping_interval: None,
        ..Config::default()
    };
    let mut conn = Connection::upgraded(
        Role::Server,
        config,
        Negotiated::default(),
        None,
        Instant::now(),
    );
    let mut buf = vec![0u8; 64 << 10];
    let mut out: Vec<Bytes> = Vec::new();
    let mut first = Some(leftover);
    loop {
        let now = Instant::now();
        match first.take() {
            Some(b) => conn.receive(now, &b),
            None => {
                let n = tcp.read(&mut buf).await?;
                if n == 0 {
                    conn.receive_eof(now);
                } else {
                    conn.receive(now, &buf[..n]);
                }
            }
        }
        // One connection per process: finish a sliced inflate at once.
        while conn.has_pending_work() {
            conn.resume(now);
        }
        while let Some(ev) = conn.poll_event() {
            let sent = match ev {
                Event::Text(t) => conn.send(t),
                Event::Binary(b) => conn.send(b),
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        while let Some(b) = conn.poll_transmit() {
            out.push(b);
        }
        write_all_vectored(&mut tcp, &mut out).await?;
        if conn.should_close_transport() {
            return tcp.shutdown().await;
        }
    }
}

async fn write_all_vectored(tcp: &mut TcpStream, out: &mut Vec<Bytes>) -> std::io::Result<()> {
    let mut i = 0;
    while i < out.len() {
        let slices: Vec<IoSlice<'_>> = out[i..].iter().take(64).map(|b| IoSlice::new(b)).collect();
        let mut n = tcp.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let len = out[i].len();
            if n >= len {
                n -= len;
                i += 1;
            } else {
                bytes::Buf::advance(&mut out[i], n);
                n = 0;
            }
        }
    }
    out.clear();
    Ok(())
}
