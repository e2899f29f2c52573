//! Echo throughput of WebSockets over HTTP/2 (RFC 8441) beside HTTP/1.1,
//! one run each, on loopback: `SOCKETS` WebSockets (HTTP/1.1: one TCP
//! connection each; HTTP/2: one stream each, all on one connection), each
//! echoing `MESSAGES` binary messages of `BYTES` bytes, uncompressed, the
//! client writing on one task while it reads on another.
//!
//! ```text
//! cargo run --release -p wsmachine-tokio --features http2 --example h2_vs_h1 -- [BYTES] [MESSAGES] [SOCKETS]
//! ```
//!
//! Both are served by one `serve_connection` on the same port, with
//! hyper's default HTTP/2 windows.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use wsmachine_tokio::h2::H2Connection;
use wsmachine_tokio::hyper::WebSocketUpgrade;
use wsmachine_tokio::{CloseCode, ConnectBuilder, WebSocket};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |n: usize, default: usize| {
        std::env::args()
            .nth(n)
            .map_or(default, |a| a.parse().expect("a number"))
    };
    let (bytes, messages, sockets) = (arg(1, 16 * 1024), arg(2, 10_000), arg(3, 1));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tcp.set_nodelay(true).ok();
            tokio::spawn(wsmachine_tokio::serve_connection(
                tcp,
                service_fn(|mut req| async move {
                    let ws = match WebSocketUpgrade::from_request(&mut req) {
                        Ok(ws) => ws.compression(false),
                        Err(refused) => return Ok::<_, Infallible>(refused.into_response()),
                    };
                    Ok(ws.on_upgrade::<_, _, Full<Bytes>>(|mut ws| async move {
                        while let Some(Ok(msg)) = ws.recv().await {
                            if ws.send(msg).await.is_err() {
                                break;
                            }
                        }
                    }))
                }),
            ));
        }
    });
    let url = format!("ws://{addr}/echo");
    let request = || ConnectBuilder::new(&url).compression(false).no_proxy();

    let mut h1 = Vec::new();
    for _ in 0..sockets {
        h1.push(request().connect().await?.0);
    }
    let h1_time = run(h1, bytes, messages).await;

    let h2 = H2Connection::connect(&format!("http://{addr}")).await?;
    let mut over_h2 = Vec::new();
    for _ in 0..sockets {
        over_h2.push(h2.open(request()).await?.0);
    }
    let h2_time = run(over_h2, bytes, messages).await;

    let total = (bytes * messages * sockets) as f64 / (1024.0 * 1024.0);
    println!("{sockets} WebSocket(s) x {messages} messages x {bytes} bytes, echoed:");
    for (name, t) in [("HTTP/1.1", h1_time), ("HTTP/2  ", h2_time)] {
        let rate = total / t.as_secs_f64();
        println!(
            "{name}  {:>8.1} ms  {rate:>8.1} MiB/s",
            t.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Echoes on every WebSocket at once; the time until the last echo.
async fn run<S>(sockets: Vec<WebSocket<S>>, bytes: usize, messages: usize) -> Duration
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let (mut writers, mut readers) = (Vec::new(), Vec::new());
    for ws in sockets {
        let (mut reader, mut writer) = ws.split();
        writers.push(tokio::spawn(async move {
            let payload = Bytes::from(vec![7u8; bytes]);
            for _ in 0..messages {
                writer.send(payload.clone()).await.expect("send");
            }
            writer
        }));
        readers.push(tokio::spawn(async move {
            for _ in 0..messages {
                reader.recv().await.expect("an echo").expect("an echo");
            }
        }));
    }
    for reader in readers {
        reader.await.expect("reader");
    }
    let elapsed = start.elapsed();
    for writer in writers {
        let mut writer = writer.await.expect("writer");
        let _ = writer.close(CloseCode::NORMAL, "").await;
    }
    elapsed
}
