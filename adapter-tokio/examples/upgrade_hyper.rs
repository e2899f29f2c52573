//! A hyper 1.x HTTP server that hands upgraded connections to
//! `WebSocket::from_upgraded`: hyper owns HTTP, wsmachine owns WebSocket.
//!
//! ```text
//! cargo run -p wsmachine-tokio --example upgrade_hyper -- 127.0.0.1:9002
//! cargo run -p wsmachine-tokio --example client -- ws://127.0.0.1:9002/
//! ```
//!
//! Prints `listening on ws://ADDR` once ready. The core's `http` feature
//! validates hyper's parsed request by the same rules as `accept` (a
//! refusal gets the same status: 400, 426 with `Sec-WebSocket-Version: 13`,
//! …) and builds the `101`, so compression is negotiated exactly as
//! `accept` would, and `from_upgraded` gets matching parameters.

use std::convert::Infallible;
use std::io::Write;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wsmachine::{accept_http_response, error_http_response};
use wsmachine_tokio::{Accept, Config, Role, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    let _ = std::io::stdout().flush();
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service_fn(handle))
                .with_upgrades()
                .await;
            if let Err(e) = served {
                eprintln!("upgrade_hyper: {e}");
            }
        });
    }
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let config = Config::with_deflate();
    let ws_req = match wsmachine::Request::from_http(&req, &config) {
        Ok(r) => r,
        Err(e) => return Ok(error_http_response(&e).map(Full::new)),
    };
    let (response, negotiated) =
        match accept_http_response(&ws_req, &Accept::new(), config.deflate.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                let mut r = Response::new(Full::new(Bytes::from(format!("{e}\n"))));
                *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                return Ok(r);
            }
        };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => return eprintln!("upgrade_hyper: upgrade failed: {e}"),
        };
        let mut ws =
            WebSocket::from_upgraded(TokioIo::new(upgraded), Role::Server, negotiated, config);
        while let Some(Ok(msg)) = ws.recv().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Ok(response.map(|()| Full::default()))
}
