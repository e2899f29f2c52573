//! An axum server with a compressed WebSocket echo route at `/ws`.
//!
//! ```text
//! cargo run -p wsmachine-tokio --features axum --example axum_echo -- 127.0.0.1:9003
//! cargo run -p wsmachine-tokio --example client -- ws://127.0.0.1:9003/ws
//! ```
//!
//! Prints `listening on ws://ADDR` once ready. The extractor accepts
//! permessage-deflate when offered and the `echo` subprotocol when asked
//! for (a client offering only others gets a 400); a plain `GET /ws` gets
//! the core's 400. The part between the markers is README's "An axum route".

use std::io::Write;

// README: begin
use axum::{response::Response, routing::get, Router};
use wsmachine_tokio::axum::WebSocketUpgrade;

async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.protocols(["echo"]).on_upgrade(|mut ws| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    })
}
// README: end

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9003".into());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("axum_echo: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("bound socket has an address");
    println!("listening on ws://{local}");
    let _ = std::io::stdout().flush();
    let app = Router::new().route("/ws", get(echo));
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("axum_echo: {e}");
        std::process::exit(1);
    }
}
