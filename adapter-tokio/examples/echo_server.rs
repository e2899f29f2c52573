//! An echo server: every message comes back as it was sent.
//!
//! ```text
//! cargo run -p wsmachine-tokio --example echo_server -- 127.0.0.1:9001
//! ```
//!
//! Prints `listening on ws://ADDR` once ready. Accepts permessage-deflate
//! when the client offers it. A plain HTTP `GET /` (no `Upgrade`) gets a
//! small browser demo page that connects back with `new WebSocket(...)`:
//! the library reads every request head, under the opening handshake's
//! limits and deadline, and `Config::answer_plain_http` hands a plain one
//! to the `accept_with` callback, which answers it with a `Reject`.
//!
//! With the `http2` feature it has an HTTP/2 mode (RFC 8441):
//!
//! ```text
//! cargo run -p wsmachine-tokio --features http2 --example echo_server -- --h2 127.0.0.1:9443
//! ```
//!
//! serves `https://ADDR/` with a certificate it generates for 127.0.0.1
//! and localhost (its PEM is written to the path it prints, for
//! `curl --cacert` or a browser's trust store; Chromium takes
//! `--ignore-certificate-errors` for a quick look). A browser that loads the
//! demo page over HTTP/2 opens its `wss://` WebSocket as an extended
//! CONNECT on the page's own connection; HTTP/1.1 clients (ALPN
//! `http/1.1`) get the upgrade as usual, on the same port.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use wsmachine_tokio::{accept_with, Accept, Config, Error, Reject, Request};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--h2") {
        let addr = args.nth(1).unwrap_or_else(|| "127.0.0.1:9443".into());
        #[cfg(feature = "http2")]
        return h2::main(addr).await;
        #[cfg(not(feature = "http2"))]
        {
            eprintln!("echo_server: --h2 {addr} needs the http2 feature: cargo run -p wsmachine-tokio --features http2 --example echo_server -- --h2");
            std::process::exit(2);
        }
    }
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9001".into());
    let (listener, local) = listen(&addr).await;
    println!("listening on ws://{local}");
    let _ = std::io::stdout().flush();
    // One `Config` for every connection, shared: each holds a pointer to
    // it, not a copy. Compression when offered; plain HTTP requests go to
    // `route` instead of getting a 400, so the page is served by the same
    // handshake, under its size limits and its 10 s deadline.
    let config = Arc::new(Config {
        answer_plain_http: true,
        ..Config::with_deflate()
    });
    loop {
        let (tcp, peer) = next_connection(&listener).await;
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, config).await {
                eprintln!("echo_server: {peer}: {e}");
            }
        });
    }
}

/// Binds `addr`, or says why not and exits 1.
async fn listen(addr: &str) -> (TcpListener, SocketAddr) {
    match TcpListener::bind(addr).await {
        Ok(l) => {
            let local = l.local_addr().expect("bound socket has an address");
            (l, local)
        }
        Err(e) => {
            eprintln!("echo_server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    }
}

/// The next accepted connection, with Nagle off.
async fn next_connection(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                return (tcp, peer);
            }
            Err(e) => {
                // e.g. out of file descriptors: keep serving the others.
                eprintln!("echo_server: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(tcp: TcpStream, config: Arc<Config>) -> Result<(), Error> {
    let mut ws = match accept_with(tcp, config, route).await {
        Ok(ws) => ws,
        // `route` answered with a page or a 404, and that was sent.
        Err(Error::Rejected) => return Ok(()),
        Err(e) => return Err(e),
    };
    // The peer's Close is answered only once `recv` has handed out every
    // message before it, so each of them can still be echoed.
    while let Some(msg) = ws.recv().await {
        ws.send(msg?).await?;
    }
    Ok(())
}

/// A WebSocket request is accepted, whatever its path; a plain `GET /`
/// (a browser) gets the demo page, any other plain request a 404.
fn route(req: &Request) -> Result<Accept, Reject> {
    if req.is_websocket_upgrade() {
        Ok(Accept::new())
    } else if req.path() == "/" {
        Err(Reject::page("text/html; charset=utf-8", PAGE))
    } else {
        Err(Reject::new(404)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body("not found\n"))
    }
}

/// The HTTP/2 mode: TLS with ALPN `h2` and `http/1.1`, each connection
/// served by hyper through `serve_connection`, which allows both an
/// HTTP/1.1 upgrade and extended CONNECT.
#[cfg(feature = "http2")]
mod h2 {
    use std::convert::Infallible;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::{Method, Request, Response, StatusCode};
    use wsmachine_tokio::hyper::WebSocketUpgrade;
    use wsmachine_tokio::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use wsmachine_tokio::{rustls, serve_connection, tokio_rustls::TlsAcceptor};

    pub(super) async fn main(addr: String) {
        let (listener, local) = super::listen(&addr).await;
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let ck = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
        let pem = std::env::temp_dir().join(format!("wsmachine-echo-{}.pem", local.port()));
        if let Err(e) = std::fs::write(&pem, ck.cert.pem()) {
            eprintln!("echo_server: cannot write {}: {e}", pem.display());
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .expect("the generated certificate");
        // HTTP/2 first: a browser that can, takes it.
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = TlsAcceptor::from(Arc::new(tls));
        println!(
            "listening on https://{local} (HTTP/2 and HTTP/1.1; WebSockets at wss://{local}/)"
        );
        println!("certificate: {}", pem.display());
        let _ = std::io::Write::flush(&mut std::io::stdout());
        loop {
            let (tcp, peer) = super::next_connection(&listener).await;
            let tls = tls.clone();
            tokio::spawn(async move {
                let stream = match tls.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => return eprintln!("echo_server: {peer}: TLS: {e}"),
                };
                let service = hyper::service::service_fn(route);
                if let Err(e) = serve_connection(stream, service).await {
                    eprintln!("echo_server: {peer}: {e}");
                }
            });
        }
    }

    /// The demo page for a plain `GET /`, a 404 for other plain requests,
    /// and every WebSocket request (an HTTP/1.1 upgrade or an HTTP/2
    /// extended CONNECT) echoed.
    async fn route(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let plain = req.method() == Method::GET && !req.headers().contains_key("upgrade");
        if plain {
            let (status, body) = if req.uri().path() == "/" {
                (StatusCode::OK, super::PAGE)
            } else {
                (StatusCode::NOT_FOUND, "not found\n")
            };
            let kind = if status == StatusCode::OK {
                "text/html"
            } else {
                "text/plain"
            };
            let resp = Response::builder()
                .status(status)
                .header("content-type", format!("{kind}; charset=utf-8"))
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .expect("a valid response");
            return Ok(resp);
        }
        let ws = match WebSocketUpgrade::from_request(&mut req) {
            Ok(ws) => ws,
            Err(rejection) => return Ok(rejection.into_response()),
        };
        Ok(ws.on_upgrade(|mut ws| async move {
            while let Some(Ok(msg)) = ws.recv().await {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        }))
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wsmachine echo</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  #log { border: 1px solid #ccc; height: 20rem; overflow-y: auto; padding: .5rem; font-family: monospace; white-space: pre-wrap; }
  .out { color: #06c; } .in { color: #080; } .sys { color: #888; }
  form { display: flex; gap: .5rem; margin: .5rem 0; } input[type=text] { flex: 1; }
</style>
</head>
<body>
<h1>wsmachine echo</h1>
<p id="status" class="sys">connecting…</p>
<form id="f">
  <input type="text" id="msg" value="hello" autocomplete="off">
  <label><input type="checkbox" id="bin"> binary</label>
  <button>Send</button>
</form>
<div id="log"></div>
<script>
const log = (cls, text) => {
  const d = document.createElement("div");
  d.className = cls; d.textContent = text;
  const l = document.getElementById("log"); l.appendChild(d); l.scrollTop = l.scrollHeight;
};
const hex = buf => Array.from(new Uint8Array(buf), b => b.toString(16).padStart(2, "0")).join(" ");
const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
const ws = new WebSocket(url);
ws.binaryType = "arraybuffer";
ws.onopen = () => { document.getElementById("status").textContent = "connected to " + url + (ws.extensions ? " (" + ws.extensions + ")" : ""); };
ws.onclose = e => { document.getElementById("status").textContent = "closed: " + e.code + " " + e.reason; };
ws.onerror = () => log("sys", "error");
ws.onmessage = e => log("in", typeof e.data === "string" ? "← " + e.data : "← [binary] " + hex(e.data));
document.getElementById("f").onsubmit = ev => {
  ev.preventDefault();
  const text = document.getElementById("msg").value;
  if (document.getElementById("bin").checked) {
    const bytes = new TextEncoder().encode(text);
    ws.send(bytes); log("out", "→ [binary] " + hex(bytes.buffer));
  } else {
    ws.send(text); log("out", "→ " + text);
  }
};
</script>
</body>
</html>
"#;
