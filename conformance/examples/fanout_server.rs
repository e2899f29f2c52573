//! Fan-out server for `conformance/bench/fanout.sh` (issue 15): holds
//! `--conns` connections and publishes `--messages` JSON-like text messages
//! of `--size` bytes (`wsmachine_conformance::bench::json_message`) to every
//! one of them, in bursts of `--burst`, then exits once every client has
//! closed. The `fanout` load process (src/bin/fanout.rs) opens the
//! connections, checks every byte of every message on every connection and
//! reads this process's CPU time.
//!
//! ```text
//! fanout_server ADDR --variant V --conns N --messages M [--burst 16] [--size 1024]
//!               [--preset none|default|shared|small] [--max-secs 300]
//! fanout_server ADDR --variant echo [--preset ...] [--max-secs 3600]
//! ```
//!
//! Variants, each written the way an application would (one task per
//! connection fed by a `tokio::sync::broadcast` channel, unless said
//! otherwise):
//!
//! - `wsmachine`: each task `ws.send(msg.clone()).await` (wsmachine_tokio);
//! - `wsmachine-prepared`: the publisher builds one `PreparedMessage` per
//!   message, each task `ws.send_prepared(&p).await`;
//! - `wsmachine-prepared-try`: no sending task: the publisher loop calls
//!   `try_send_prepared(&p)` on every connection's split writer. Each
//!   connection still has its reader's task, which the driver needs: it is
//!   the reader that writes what `try_send` queued;
//! - `tokio-tungstenite`: each task `ws.send(Message::Text(..)).await`
//!   (a write and a flush per message, tokio-tungstenite's `Sink::send`);
//! - `raw-tcp`: no WebSocket at all (no handshake): each task writes the
//!   same frame bytes with `write_all`, the floor for writing them;
//! - `raw-tcp-batched`: the same, but each task takes every message waiting
//!   in its channel (at most a burst) and writes them with one vectored
//!   write: the floor for a library that coalesces its writes;
//! - `echo`: not a fan-out: a wsmachine echo server with the chosen
//!   deflate preset, for `loadgen --idle` memory measurements.
//!
//! `--preset` picks the server's permessage-deflate configuration for the
//! wsmachine variants (plain `DeflateConfig` fields, so this builds on
//! releases without named presets): `none` (default: compression off),
//! `default` (`DeflateConfig::default()`: context takeover, window 12),
//! `shared` (`server_no_context_takeover` and `client_no_context_takeover`:
//! a prepared message is compressed once for every connection) and `small`
//! (window bits 9 and memLevel 1, context takeover).
//!
//! Pacing: the publisher sends a burst into the channel and waits until
//! every connection has handed the burst to its transport (the tasks count
//! down; for `wsmachine-prepared-try`, until every writer's
//! `pending_output()` is 0) before the next, so the channel never lags
//! and nothing is dropped. Publishing starts 1 s after the last of the
//! `--conns` handshakes, so the load process can read this process's CPU
//! time before it. Every loop is bounded: the whole run by `--max-secs`.
//! Loopback only.
// This is an event loop around sockets: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, Notify};
use tokio_tungstenite::tungstenite;
use wsmachine_conformance::bench::{cpu_ns, json_message};
use wsmachine_tokio::{Accept, Config, DeflateConfig, Message, PreparedMessage, WebSocket};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Capped by `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 16384;

const USAGE: &str = "usage:
  fanout_server ADDR --variant wsmachine|wsmachine-prepared|wsmachine-prepared-try|tokio-tungstenite|
                          raw-tcp|raw-tcp-batched
                --conns N --messages M [--burst B] [--size BYTES] [--preset none|default|shared|small]
                [--max-secs SECS]
  fanout_server ADDR --variant echo [--preset ...] [--max-secs SECS]";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Wsmachine,
    Prepared,
    PreparedTry,
    Tungstenite,
    RawTcp,
    RawTcpBatched,
    Echo,
}

struct Args {
    addr: String,
    variant: Variant,
    conns: usize,
    messages: usize,
    burst: usize,
    size: usize,
    preset: Option<DeflateConfig>,
    max_secs: u64,
}

/// The server's deflate configuration by preset name.
fn preset(name: &str) -> Result<Option<DeflateConfig>, String> {
    Ok(match name {
        "none" => None,
        "default" => Some(DeflateConfig::default()),
        "shared" => Some(DeflateConfig::shared()),
        "small" => Some(DeflateConfig::small_windows()),
        other => return Err(format!("unknown preset {other}")),
    })
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        addr: String::new(),
        variant: Variant::Wsmachine,
        conns: 1000,
        messages: 100,
        burst: 16,
        size: 1024,
        preset: None,
        max_secs: 300,
    };
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        }
        match flag.as_str() {
            "--variant" => {
                a.variant = match value("--variant")?.as_str() {
                    "wsmachine" => Variant::Wsmachine,
                    "wsmachine-prepared" => Variant::Prepared,
                    "wsmachine-prepared-try" => Variant::PreparedTry,
                    "tokio-tungstenite" => Variant::Tungstenite,
                    "raw-tcp" => Variant::RawTcp,
                    "raw-tcp-batched" => Variant::RawTcpBatched,
                    "echo" => Variant::Echo,
                    other => return Err(format!("unknown variant {other}")),
                }
            }
            "--conns" => a.conns = num("--conns", value("--conns")?)?,
            "--messages" => a.messages = num("--messages", value("--messages")?)?,
            "--burst" => a.burst = num("--burst", value("--burst")?)?,
            "--size" => a.size = num("--size", value("--size")?)?,
            "--preset" => a.preset = preset(&value("--preset")?)?,
            "--max-secs" => a.max_secs = num("--max-secs", value("--max-secs")?)?,
            // The address may come anywhere (the bench scripts append it).
            other if !other.starts_with('-') && a.addr.is_empty() => a.addr = other.into(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.addr.is_empty() {
        return Err("ADDR is required".into());
    }
    if a.conns == 0 || a.messages == 0 || a.burst == 0 {
        return Err("--conns, --messages and --burst must be at least 1".into());
    }
    if a.preset.is_some()
        && matches!(
            a.variant,
            Variant::Tungstenite | Variant::RawTcp | Variant::RawTcpBatched
        )
    {
        return Err("--preset is for the wsmachine variants".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fanout_server: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // tokio's default multi-threaded runtime, like the peers' servers: one
    // worker per CPU this process may run on (one, under taskset).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let max = Duration::from_secs(args.max_secs);
    let max_secs = args.max_secs;
    // The server (accept loop, publisher) is a task on the worker, like the
    // connection tasks: `block_on` would run it on the main thread, and the
    // publisher and the connections would then be two threads taking turns
    // on the one CPU, waking each other across threads, and coalescing
    // depending on when the scheduler switches.
    let result = rt.block_on(async move {
        match tokio::time::timeout(max, tokio::spawn(async move { run(&args).await })).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(format!("gave up after --max-secs {max_secs}").into()),
        }
    });
    // Do not wait for tasks still blocked on a peer that went away.
    rt.shutdown_background();
    if let Err(e) = result {
        eprintln!("fanout_server: {e}");
        std::process::exit(1);
    }
}

async fn run(a: &Args) -> Result<(), BoxError> {
    // A backlog for 10,000 connections arriving at once: with the default
    // (128 here), the overflow drops the client's final ACK, and a client
    // that sends nothing (raw TCP) believes a connection exists that the
    // server never accepts.
    let addr: SocketAddr = a.addr.parse()?;
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        return Err("loopback addresses only".into());
    }
    println!("listening on ws://{local}");
    let _ = std::io::stdout().flush();
    let config = Arc::new(Config {
        deflate: a.preset.clone(),
        ..Config::default()
    });
    let texts: Vec<String> = (0..a.messages as u64)
        .map(|i| json_message(i, a.size))
        .collect();
    let pace = Arc::new(Pace {
        remaining: AtomicUsize::new(0),
        notify: Notify::new(),
        burst: a.burst,
        messages: a.messages,
    });
    let t = match a.variant {
        Variant::Echo => return echo(listener, config).await,
        Variant::Wsmachine => {
            let conns = accept_n(&listener, a.conns, move |tcp| {
                ws_accept(tcp, config.clone())
            });
            let conns = conns.await?.into_iter().map(WsConn).collect();
            let texts: Vec<Message> = texts.into_iter().map(Message::from).collect();
            fan_out_tasks(conns, &pace, |i| texts[i].clone()).await?
        }
        Variant::Prepared => {
            let conns = accept_n(&listener, a.conns, move |tcp| {
                ws_accept(tcp, config.clone())
            });
            let conns = conns.await?.into_iter().map(PreparedConn).collect();
            // Encoding the message is part of the measured work: done by the
            // publisher, once per message.
            fan_out_tasks(conns, &pace, |i| PreparedMessage::new(texts[i].clone())).await?
        }
        Variant::PreparedTry => {
            let conns = accept_n(&listener, a.conns, move |tcp| {
                ws_accept(tcp, config.clone())
            });
            fan_out_try(conns.await?, &pace, &texts).await?
        }
        Variant::Tungstenite => {
            let conns = accept_n(&listener, a.conns, |tcp| async move {
                Ok(tokio_tungstenite::accept_async(tcp).await?)
            });
            let conns = conns.await?.into_iter().map(TtConn).collect();
            let texts: Vec<tungstenite::Message> = texts
                .into_iter()
                .map(|t| tungstenite::Message::Text(t.into()))
                .collect();
            fan_out_tasks(conns, &pace, |i| texts[i].clone()).await?
        }
        Variant::RawTcp | Variant::RawTcpBatched => {
            let batched = a.variant == Variant::RawTcpBatched;
            let conns = accept_n(&listener, a.conns, |tcp| async move { Ok(tcp) });
            let conns = conns
                .await?
                .into_iter()
                .map(|tcp| RawConn { tcp, batched })
                .collect();
            // The very bytes a WebSocket server sends: the unmasked frame.
            let frames: Vec<Bytes> = texts
                .into_iter()
                .map(|t| PreparedMessage::new(t).frame().clone())
                .collect();
            fan_out_tasks(conns, &pace, |i| frames[i].clone()).await?
        }
    };
    println!(
        "done conns={} messages={} publish_secs={:.3} server_cpu_ns={} cpu_us_per_delivery={:.3}",
        a.conns,
        a.messages,
        t.secs,
        t.cpu_ns,
        t.cpu_ns as f64 / 1e3 / (a.conns * a.messages) as f64
    );
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Accepts `n` connections, running `handshake` on each in its own task
/// (so a slow handshake does not hold up the accept loop), and returns
/// them once all are done; then waits 1 s so the load process can take
/// its CPU reading before publishing starts.
async fn accept_n<T, F, Fut>(
    listener: &TcpListener,
    n: usize,
    handshake: F,
) -> Result<Vec<T>, BoxError>
where
    T: Send + 'static,
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = Result<T, BoxError>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        set.spawn(handshake(tcp));
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        conns.push(r??);
    }
    println!("accepted {n}");
    let _ = std::io::stdout().flush();
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(conns)
}

async fn ws_accept(tcp: TcpStream, config: Arc<Config>) -> Result<WebSocket<TcpStream>, BoxError> {
    Ok(wsmachine_tokio::accept_with(tcp, config, |_| Ok(Accept::new())).await?)
}

/// Counts down the connections that have not yet handed the current burst
/// to their transport; the last one wakes the publisher.
struct Pace {
    remaining: AtomicUsize,
    notify: Notify,
    burst: usize,
    messages: usize,
}

struct Timing {
    secs: f64,
    cpu_ns: u64,
}

/// One connection of a task-per-connection variant.
trait Conn: Send + 'static {
    type Item: Clone + Send + Sync + 'static;
    /// Sends one message the way the library's users do.
    fn send(&mut self, item: &Self::Item) -> impl Future<Output = Result<(), BoxError>> + Send;
    /// Whether the task hands over every message waiting at once.
    fn batched(&self) -> bool {
        false
    }
    /// Sends several messages (only called when `batched`).
    fn send_batch(
        &mut self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        async move {
            for item in items {
                self.send(item).await?;
            }
            Ok(())
        }
    }
    /// After the last message: flushes and waits for the client to close.
    fn finish(self) -> impl Future<Output = Result<(), BoxError>> + Send;
}

struct WsConn(WebSocket<TcpStream>);

impl Conn for WsConn {
    type Item = Message;
    async fn send(&mut self, item: &Message) -> Result<(), BoxError> {
        Ok(self.0.send(item.clone()).await?)
    }
    async fn finish(mut self) -> Result<(), BoxError> {
        self.0.flush().await?;
        // Every message is out: how the client goes away (its Close, a
        // reset) is not this benchmark's business.
        while let Some(Ok(_)) = self.0.recv().await {}
        Ok(())
    }
}

struct PreparedConn(WebSocket<TcpStream>);

impl Conn for PreparedConn {
    type Item = PreparedMessage;
    async fn send(&mut self, item: &PreparedMessage) -> Result<(), BoxError> {
        Ok(self.0.send_prepared(item).await?)
    }
    async fn finish(self) -> Result<(), BoxError> {
        WsConn(self.0).finish().await
    }
}

struct TtConn(tokio_tungstenite::WebSocketStream<TcpStream>);

impl Conn for TtConn {
    type Item = tungstenite::Message;
    async fn send(&mut self, item: &tungstenite::Message) -> Result<(), BoxError> {
        Ok(self.0.send(item.clone()).await?)
    }
    async fn finish(mut self) -> Result<(), BoxError> {
        self.0.flush().await?;
        while let Some(r) = self.0.next().await {
            if r.is_err() {
                break;
            }
        }
        Ok(())
    }
}

struct RawConn {
    tcp: TcpStream,
    /// Write everything waiting in one call (`raw-tcp-batched`).
    batched: bool,
}

impl Conn for RawConn {
    type Item = Bytes;
    fn batched(&self) -> bool {
        self.batched
    }
    async fn send(&mut self, item: &Bytes) -> Result<(), BoxError> {
        Ok(self.tcp.write_all(item).await?)
    }
    async fn send_batch(&mut self, items: &[Bytes]) -> Result<(), BoxError> {
        // write_all over the slices (IoSlice::advance_slices needs a newer
        // Rust than the workspace's minimum).
        let (mut i, mut off) = (0, 0);
        while i < items.len() {
            let mut slices = Vec::with_capacity(items.len() - i);
            slices.push(std::io::IoSlice::new(&items[i][off..]));
            slices.extend(items[i + 1..].iter().map(|b| std::io::IoSlice::new(b)));
            let mut n = self.tcp.write_vectored(&slices).await?;
            if n == 0 {
                return Err("the socket accepts no more bytes".into());
            }
            while i < items.len() && n >= items[i].len() - off {
                n -= items[i].len() - off;
                i += 1;
                off = 0;
            }
            off += n;
        }
        Ok(())
    }
    async fn finish(mut self) -> Result<(), BoxError> {
        let mut buf = [0u8; 256];
        while let Ok(1..) = self.tcp.read(&mut buf).await {}
        Ok(())
    }
}

async fn conn_task<C: Conn>(
    mut c: C,
    mut rx: broadcast::Receiver<C::Item>,
    pace: Arc<Pace>,
) -> Result<(), BoxError> {
    let mut batch = Vec::with_capacity(pace.burst);
    let mut seq = 0;
    while seq < pace.messages {
        // Lagged is impossible with the pacing; it would be an error.
        let item = rx.recv().await?;
        if c.batched() {
            // Everything already waiting: the rest of this burst at most,
            // as the next is only sent once every connection took this one.
            batch.push(item);
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            c.send_batch(&batch).await?;
        } else {
            c.send(&item).await?;
        }
        let sent = batch.len().max(1);
        batch.clear();
        seq += sent;
        // The last of a burst: one fewer connection to wait for.
        let burst_end = seq % pace.burst == 0 || seq == pace.messages;
        if burst_end && pace.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            pace.notify.notify_one();
        }
    }
    c.finish().await
}

/// One task per connection fed by a broadcast channel; `item(i)` makes
/// the channel's `i`-th message (counted as publishing work).
async fn fan_out_tasks<C: Conn>(
    conns: Vec<C>,
    pace: &Arc<Pace>,
    item: impl Fn(usize) -> C::Item,
) -> Result<Timing, BoxError> {
    let n = conns.len();
    let (tx, _) = broadcast::channel(pace.burst);
    let mut set = tokio::task::JoinSet::new();
    for c in conns {
        set.spawn(conn_task(c, tx.subscribe(), pace.clone()));
    }
    let c0 = cpu_ns("self").unwrap_or(0);
    let t0 = Instant::now();
    for start in (0..pace.messages).step_by(pace.burst) {
        pace.remaining.store(n, Ordering::Release);
        for i in start..(start + pace.burst).min(pace.messages) {
            tx.send(item(i))
                .map_err(|_| "every connection task ended")?;
        }
        pace.notify.notified().await;
    }
    let timing = Timing {
        secs: t0.elapsed().as_secs_f64(),
        cpu_ns: cpu_ns("self").unwrap_or(0).saturating_sub(c0),
    };
    join_connections(set).await?;
    Ok(timing)
}

/// Waits for every connection task; the first failure is printed, the
/// count of them is the error.
async fn join_connections(
    mut set: tokio::task::JoinSet<Result<(), BoxError>>,
) -> Result<(), BoxError> {
    let mut errors = 0usize;
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.map_err(BoxError::from).and_then(|r| r) {
            if errors == 0 {
                eprintln!("fanout_server: a connection failed: {e}");
            }
            errors += 1;
        }
    }
    if errors > 0 {
        return Err(format!("{errors} connections failed").into());
    }
    Ok(())
}

/// The publisher loop sends to every connection's split writer without
/// waiting (`try_send_prepared`); each connection's reader task writes.
async fn fan_out_try(
    conns: Vec<WebSocket<TcpStream>>,
    pace: &Pace,
    texts: &[String],
) -> Result<Timing, BoxError> {
    let mut set = tokio::task::JoinSet::new();
    let mut writers = Vec::with_capacity(conns.len());
    for ws in conns {
        let (mut reader, writer) = ws.split();
        writers.push(writer);
        // Ends when the client closes; errors show up as the publisher's
        // `try_send_prepared` failing.
        set.spawn(async move {
            while let Some(Ok(_)) = reader.recv().await {}
            Ok::<_, BoxError>(())
        });
    }
    let c0 = cpu_ns("self").unwrap_or(0);
    let t0 = Instant::now();
    let mut backpressure = 0u64;
    for start in (0..pace.messages).step_by(pace.burst) {
        for text in &texts[start..(start + pace.burst).min(pace.messages)] {
            let p = PreparedMessage::new(text.clone());
            for w in &mut writers {
                if w.try_send_prepared(&p)? == wsmachine_tokio::SendStatus::Backpressure {
                    backpressure += 1;
                }
            }
        }
        // Wait until every reader has written the burst. Writers already
        // drained stay drained (nothing new is queued meanwhile), so the
        // cursor only moves forward: N checks per burst, plus one per wait.
        let mut cursor = 0;
        while cursor < writers.len() {
            if writers[cursor].pending_output() == 0 {
                cursor += 1;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let timing = Timing {
        secs: t0.elapsed().as_secs_f64(),
        cpu_ns: cpu_ns("self").unwrap_or(0).saturating_sub(c0),
    };
    if backpressure > 0 {
        println!("backpressure reported {backpressure} times");
    }
    drop(writers);
    join_connections(set).await?;
    Ok(timing)
}

/// An echo server with the chosen deflate preset (for memory measurements).
async fn echo(listener: TcpListener, config: Arc<Config>) -> Result<(), BoxError> {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // e.g. out of file descriptors: keep serving the others.
                eprintln!("fanout_server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let config = config.clone();
        tokio::spawn(async move {
            let mut ws = ws_accept(tcp, config).await?;
            while let Some(msg) = ws.recv().await {
                ws.send(msg?).await?;
            }
            Ok::<_, BoxError>(())
        });
    }
}
