//! Peer echo server for the load benchmarks (issue 7): tokio-websockets,
//! written as the crate's own `examples/echo_server.rs` (`next` / `send`
//! per message, default limits), no compression (it has none), tokio's
//! default multi-threaded runtime like every other server measured.
//!
//! ```text
//! cargo run --release -p wsmachine-conformance --example peer_tokio_websockets_echo -- 127.0.0.1:9104
//! ```
//! Prints `listening on ws://ADDR` once ready.

use std::io::Write;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_websockets::ServerBuilder;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9104".into());
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("peer_tokio_websockets_echo: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("bound socket has an address");
    println!("listening on ws://{local}");
    let _ = std::io::stdout().flush();
    loop {
        let conn = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("peer_tokio_websockets_echo: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        tokio::spawn(tokio::task::unconstrained(async move {
            let Ok((_request, mut ws)) = ServerBuilder::new().accept(conn).await else {
                return;
            };
            while let Some(Ok(item)) = ws.next().await {
                if (item.is_text() || item.is_binary()) && ws.send(item).await.is_err() {
                    return;
                }
            }
        }));
    }
}
