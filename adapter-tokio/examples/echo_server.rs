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

use std::io::Write;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use wsmachine_tokio::{accept_with, Accept, Config, Error, Reject, Request};

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo_server: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("bound socket has an address");
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
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // e.g. out of file descriptors: keep serving the others.
                eprintln!("echo_server: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, config).await {
                eprintln!("echo_server: {peer}: {e}");
            }
        });
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
