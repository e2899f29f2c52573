//! wsmachine-tokio written with the same idiom as the tokio-tungstenite
//! peer (`peer_tungstenite_echo.rs`, the crate's own example): the read
//! half forwarded into the write half, which is flushed only when no
//! further message is ready. A companion to the adapter's `echo_server`
//! (`recv` then `send`, which waits for each message to be written) for the
//! load benchmarks of issue 7: same library, the batching idiom. No
//! compression is negotiated by the load generator.
//!
//! ```text
//! cargo run --release -p wsmachine-conformance --example peer_wsmachine_forward_echo -- 127.0.0.1:9105
//! ```
//! Prints `listening on ws://ADDR` once ready.

use std::io::Write;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9105".into());
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("peer_wsmachine_forward_echo: cannot listen on {addr}: {e}");
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
                tokio::spawn(serve(tcp));
            }
            Err(e) => {
                eprintln!("peer_wsmachine_forward_echo: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(tcp: TcpStream) {
    let Ok(ws) = wsmachine_tokio::accept(tcp).await else {
        return;
    };
    // The adapter's own split: halves usable on separate tasks.
    let (read, write) = ws.split();
    let _ = read.forward(write).await;
}
