//! Peer echo server for the load benchmarks (issue 7): wtx 0.46, the newest
//! release that builds on stable Rust 1.95 (the releases after it declare
//! 1.96 and use library features unstable on 1.95), no compression, tokio's
//! default multi-threaded runtime. With `WTX_DEFLATE=1` it accepts
//! permessage-deflate with wtx's own `Flate2::default()` (windows of 12
//! bits, flate2's default level, zlib-rs backend) and compresses its
//! echoes: the compressed echo benchmark's Rust peer (issue 15).
//!
//! The connection loop is the one of wtx's own echo servers
//! (`wtx-instances/web-socket-examples/web-socket-server.rs` and the
//! Autobahn server of that release): `split_mut` into common, reader and
//! writer parts, `read_frame` with `WebSocketPayloadOrigin::Adaptive` (the
//! payload stays in wtx's network buffer) and `write_frame` of the same
//! frame back. The handshake is `WebSocketAcceptor::default().accept`, as
//! in `OptionedServer::web_socket_tokio`, which those examples call; that
//! helper is not used as is because it binds the listener itself (no
//! readiness line) and leases each connection's buffer from a pool sized
//! by default to the number of CPUs, which would admit only two connections
//! at a time here: each connection owns its `WebSocketBuffer` instead.
//!
//! ```text
//! cargo run --release -p wsmachine-conformance --example peer_wtx_echo -- 127.0.0.1:9105
//! ```
//! Prints `listening on ws://ADDR` once ready.

use std::io::Write;

use tokio::net::{TcpListener, TcpStream};
use wtx::collection::Vector;
use wtx::web_socket::compression::Flate2;
use wtx::web_socket::{OpCode, WebSocketAcceptor, WebSocketPayloadOrigin};

#[tokio::main]
async fn main() {
    let deflate = std::env::var("WTX_DEFLATE").is_ok_and(|v| v == "1");
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9105".into());
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("peer_wtx_echo: cannot listen on {addr}: {e}");
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
                    let _ = serve(tcp, deflate).await;
                });
            }
            Err(e) => {
                eprintln!("peer_wtx_echo: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The echo loop, for either acceptor (their WebSocket types differ by
/// the compression type parameter).
macro_rules! echo {
    ($ws:expr) => {{
        let mut ws = $ws;
        let (mut common, mut reader, mut writer) = ws.split_mut();
        let mut buffer = Vector::new();
        loop {
            let mut frame = reader
                .read_frame(&mut buffer, &mut common, WebSocketPayloadOrigin::Adaptive)
                .await?;
            match frame.op_code() {
                OpCode::Binary | OpCode::Text => {
                    writer.write_frame(&mut common, &mut frame).await?
                }
                OpCode::Close => break,
                _ => {}
            }
        }
        Ok(())
    }};
}

async fn serve(tcp: TcpStream, deflate: bool) -> wtx::Result<()> {
    if deflate {
        let acceptor = WebSocketAcceptor::default().compression(Flate2::default());
        echo!(acceptor.accept(tcp).await?)
    } else {
        echo!(WebSocketAcceptor::default().accept(tcp).await?)
    }
}
