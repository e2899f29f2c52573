//! An echo server: every message comes back as it was sent.
//!
//! ```text
//! cargo run -p wsmachine-tokio --example echo_server -- 127.0.0.1:9001
//! ```
//!
//! Prints `listening on ws://ADDR` once ready. Accepts permessage-deflate
//! when the client offers it. A plain HTTP `GET /` (no `Upgrade`) gets a
//! small browser demo page that connects back with `new WebSocket(...)`.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use wsmachine::{HandshakeError, ServerHandshake};
use wsmachine_tokio::{accept_with, Accept, Config};

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
        tokio::spawn(async move {
            if let Err(e) = serve(tcp).await {
                eprintln!("echo_server: {peer}: {e}");
            }
        });
    }
}

async fn serve(mut tcp: TcpStream) -> Result<(), wsmachine_tokio::Error> {
    // One `Config` for every connection (`Config::with_deflate()`, shared):
    // each holds a pointer to it, not a copy.
    let config = Config::shared_with_deflate();
    // What is awaited before the echo loop is boxed (and `verdict` ends with
    // its block), so none of it sizes this connection's task for its whole
    // life: the task is the `WebSocket` and little else.
    let head = {
        let Some((head, verdict)) = Box::pin(read_head(&mut tcp, &config)).await? else {
            return Ok(());
        };
        if let Err(HandshakeError::Upgrade | HandshakeError::Connection) = verdict {
            if head.starts_with(b"GET ") {
                return Box::pin(serve_page(tcp, &head)).await;
            }
        }
        head
    };
    // Replay what we read and let `accept_with` answer (101, or the error).
    let stream = Prefixed {
        prefix: head,
        pos: 0,
        inner: tcp,
    };
    let mut ws = accept_with(stream, config, |_| Ok(Accept::new())).await?;
    // The peer's Close is answered only once `recv` has handed out every
    // message before it, so each of them can still be echoed.
    while let Some(msg) = ws.recv().await {
        ws.send(msg?).await?;
    }
    Ok(())
}

/// Reads the request head ourselves to tell a browser's page request from a
/// WebSocket upgrade; the core's handshake parser decides which it is.
/// `None` when the client left before sending a whole head.
async fn read_head(
    tcp: &mut TcpStream,
    config: &Config,
) -> std::io::Result<Option<(Vec<u8>, Result<(), HandshakeError>)>> {
    let mut head = Vec::with_capacity(1024);
    let mut hs = ServerHandshake::new(config);
    loop {
        let start = head.len();
        if tcp.read_buf(&mut head).await? == 0 {
            return Ok(None);
        }
        match hs.receive(&head[start..]) {
            Ok(None) => continue,
            Ok(Some(_)) => return Ok(Some((head, Ok(())))),
            Err(e) => return Ok(Some((head, Err(e)))),
        }
    }
}

async fn serve_page(mut tcp: TcpStream, head: &[u8]) -> Result<(), wsmachine_tokio::Error> {
    let (status, body) = if head.starts_with(b"GET / ") || head.starts_with(b"GET /?") {
        ("200 OK", PAGE)
    } else {
        ("404 Not Found", "not found\n")
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(resp.as_bytes()).await?;
    tcp.shutdown().await?;
    Ok(())
}

/// A stream that first yields bytes already read from `inner`.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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
