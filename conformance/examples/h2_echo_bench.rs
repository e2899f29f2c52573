//! Echo throughput over HTTP/2 against HTTP/1.1, side by side (issue 17):
//! the tokio `echo_server` example in its HTTP/2 mode serves both on one
//! port, and this client opens `--conns` WebSockets either as that many
//! `wss://` connections (HTTP/1.1 upgrades) or as that many streams of one
//! HTTP/2 connection (extended CONNECT), keeps `--window` binary messages
//! of `--size` bytes in flight on each, and measures messages per second
//! and the server's CPU time per message (`/proc/PID/stat`). Rounds
//! alternate between the two, `--rounds` of each; medians at the end.
//!
//! ```text
//! cargo build --release -p wsmachine-tokio --features http2 --example echo_server
//! cargo run --release -p wsmachine-conformance --example h2_echo_bench -- \
//!     --server target/release/examples/echo_server [--conns 64] [--size 1024] \
//!     [--window 16] [--messages 2000] [--rounds 5]
//! ```
//!
//! Every loop is bounded (`--messages` per connection per round, a 120 s
//! deadline per round). Loopback only; the server is started here and
//! ended by its PID.
// A benchmark owns the clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use wsmachine_conformance::bench::H2EchoServer;
use wsmachine_tokio::h2::H2Connection;
use wsmachine_tokio::rustls::ClientConfig;
use wsmachine_tokio::{ConnectBuilder, Message, WebSocket};

struct Args {
    server: String,
    conns: usize,
    size: usize,
    window: usize,
    messages: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        server: "target/release/examples/echo_server".into(),
        conns: 64,
        size: 1024,
        window: 16,
        messages: 2000,
        rounds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        let n = || v.parse::<usize>().unwrap_or_else(|_| panic!("{k} {v}"));
        match k.as_str() {
            "--server" => a.server = v.clone(),
            "--conns" => a.conns = n(),
            "--size" => a.size = n(),
            "--window" => a.window = n().max(1),
            "--messages" => a.messages = n().max(1),
            "--rounds" => a.rounds = n().clamp(1, 50),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Keeps `window` messages in flight on `ws` until `messages` have come
/// back.
async fn pump<S>(mut ws: WebSocket<S>, payload: bytes::Bytes, window: usize, messages: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut sent = 0;
    while sent < window.min(messages) {
        ws.send(Message::Binary(payload.clone()))
            .await
            .expect("send");
        sent += 1;
    }
    for _ in 0..messages {
        match ws.recv().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), payload.len()),
            other => panic!("echo: {other:?}"),
        }
        if sent < messages {
            ws.send(Message::Binary(payload.clone()))
                .await
                .expect("send");
            sent += 1;
        }
    }
    ws.close(wsmachine_tokio::CloseCode::NORMAL, "")
        .await
        .expect("close");
    while ws.recv().await.is_some() {}
}

async fn round(a: &Args, h2: bool, addr: &str, tls: &Arc<ClientConfig>, pid: u32) -> (f64, f64) {
    let url = format!("wss://{addr}/");
    let payload = bytes::Bytes::from(vec![0x5a; a.size]);
    // Connections and streams are opened before the clock starts.
    let mut tasks = Vec::new();
    let mut h1 = Vec::new();
    let mut streams = Vec::new();
    if h2 {
        let conn = H2Connection::connect_tls(&format!("https://{addr}"), tls.clone())
            .await
            .expect("HTTP/2 connection");
        for _ in 0..a.conns {
            let (ws, _) = conn
                .open(ConnectBuilder::new(url.as_str()).compression(false))
                .await
                .expect("WebSocket over HTTP/2");
            streams.push(ws);
        }
    } else {
        for _ in 0..a.conns {
            let (ws, _) = ConnectBuilder::new(url.as_str())
                .compression(false)
                .no_proxy()
                .tls(tls.clone())
                .connect()
                .await
                .expect("WebSocket over HTTP/1.1");
            h1.push(ws);
        }
    }
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    for ws in streams {
        tasks.push(tokio::spawn(pump(
            ws,
            payload.clone(),
            a.window,
            a.messages,
        )));
    }
    for ws in h1 {
        tasks.push(tokio::spawn(pump(
            ws,
            payload.clone(),
            a.window,
            a.messages,
        )));
    }
    let all = async {
        for t in tasks {
            t.await.expect("connection task");
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("a round within 120 s");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let total = (a.conns * a.messages) as f64;
    (total / secs, cpu / total * 1e6)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let server = H2EchoServer::start(std::path::Path::new(&a.server));
    let (addr, tls, pid) = (server.addr.clone(), server.tls.clone(), server.pid());
    // One thread: the server keeps the other core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut h1, mut h2) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for r in 0..a.rounds {
            for over_h2 in [false, true] {
                let (rate, cpu) = round(&a, over_h2, &addr, &tls, pid).await;
                let name = if over_h2 { "http2" } else { "http1.1" };
                println!("round {r} {name}: {rate:.0} msg/s, server {cpu:.3} µs CPU/msg");
                if over_h2 { &mut h2 } else { &mut h1 }.push((rate, cpu));
            }
        }
    });
    drop(server);
    let med = |v: &[(f64, f64)]| {
        (
            median(v.iter().map(|x| x.0).collect()),
            median(v.iter().map(|x| x.1).collect()),
        )
    };
    let (r1, c1) = med(&h1);
    let (r2, c2) = med(&h2);
    println!(
        "RESULT conns={} size={} window={} messages={} rounds={} \
         http1_msgs_per_s={r1:.0} http2_msgs_per_s={r2:.0} ratio={:.2} \
         http1_server_us={c1:.3} http2_server_us={c2:.3} cpu_ratio={:.2}",
        a.conns,
        a.size,
        a.window,
        a.messages,
        a.rounds,
        r2 / r1,
        c2 / c1
    );
}
