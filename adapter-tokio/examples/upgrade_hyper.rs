//! A hyper 1.x HTTP server that hands upgraded connections to
//! `WebSocket::from_upgraded`: hyper owns HTTP, wsmachine owns WebSocket.
//!
//! ```text
//! cargo run -p wsmachine-tokio --example upgrade_hyper -- 127.0.0.1:9002
//! cargo run -p wsmachine-tokio --example client -- ws://127.0.0.1:9002/
//! ```
//!
//! The request is validated by the core's `ServerHandshake` and the `101`
//! is built by `accept_response`, so compression is negotiated exactly as
//! `accept` would, and `from_upgraded` gets matching parameters.

use std::convert::Infallible;
use std::io::Write;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wsmachine::{accept_response, error_response, ServerHandshake};
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
    // Give the core the request head as it came (hyper has parsed it
    // already; re-serialising keeps every check in one place, the core).
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method(), req.uri());
    for (name, value) in req.headers() {
        head.push_str(&format!(
            "{}: {}\r\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    head.push_str("\r\n");
    let ws_req = match ServerHandshake::new(&config).receive(head.as_bytes()) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(plain(StatusCode::BAD_REQUEST, "incomplete request\n")),
        Err(e) => return Ok(raw_to_response(&error_response(&e))),
    };
    let (raw_101, negotiated) =
        match accept_response(&ws_req, &Accept::new(), config.deflate.as_ref()) {
            Ok(r) => r,
            Err(e) => return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"))),
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
    Ok(raw_to_response(&raw_101))
}

/// Turns a response head built by the core into hyper's `Response`.
fn raw_to_response(raw: &[u8]) -> Response<Full<Bytes>> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(500);
    let mut resp = Response::builder().status(status);
    for line in lines {
        if let Some((n, v)) = line.split_once(": ") {
            // hyper computes these itself for non-101 answers.
            if !n.eq_ignore_ascii_case("content-length") {
                resp = resp.header(n, v);
            }
        }
    }
    resp.body(Full::new(Bytes::from(body.to_owned())))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad response\n"))
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r
}
