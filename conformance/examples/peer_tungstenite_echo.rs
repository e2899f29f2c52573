//! Peer echo server for the load benchmarks (issue 7): tokio-tungstenite,
//! written as the crate's own `examples/echo-server.rs` (the read half
//! forwarded into the write half, which flushes when the read side has
//! nothing more buffered), no compression, tokio's default runtime.
//!
//! `TT_MODE=send-each` selects the other common idiom instead: read a
//! message, `send` it back (`send` flushes, so one write per message), the
//! same read-then-send loop as our own `echo_server` examples. The default
//! (`TT_MODE=forward`) stays tokio-tungstenite's best case.
//!
//! ```text
//! cargo run --release -p wsmachine-conformance --example peer_tungstenite_echo -- 127.0.0.1:9102
//! TT_MODE=send-each cargo run --release -p wsmachine-conformance --example peer_tungstenite_echo
//! ```
//! Prints `listening on ws://ADDR` once ready.

use std::io::Write;

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() {
    let send_each = match std::env::var("TT_MODE").as_deref() {
        Ok("send-each") => true,
        Ok("forward") | Err(_) => false,
        Ok(other) => {
            eprintln!("peer_tungstenite_echo: TT_MODE={other}: expected forward or send-each");
            std::process::exit(2);
        }
    };
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9102".into());
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("peer_tungstenite_echo: cannot listen on {addr}: {e}");
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
                if send_each {
                    tokio::spawn(serve_send_each(tcp));
                } else {
                    tokio::spawn(serve(tcp));
                }
            }
            Err(e) => {
                eprintln!("peer_tungstenite_echo: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(tcp: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|m| std::future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}

async fn serve_send_each(tcp: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(m)) = ws.next().await {
        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
            break;
        }
    }
}
