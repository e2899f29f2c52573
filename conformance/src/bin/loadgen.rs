//! Echo load generator for wsmachine and peer WebSocket servers (issue 7).
//!
//! ```text
//! loadgen --addr HOST:PORT [--conns 64] [--size 16] [--window 16]
//!         [--duration 5] [--warmup 1] [--server-pid PID] [--raw | --deflate] [--label NAME]
//! loadgen --idle N --addr HOST:PORT [--deflate] [--compressed-msg | --json-msgs K --size BYTES]
//!         [--server-pid PID] [--hold 2] [--label NAME]
//! loadgen --raw-echo-server ADDR [--max-secs 900]
//! ```
//!
//! **Throughput mode** (the default) opens `--conns` connections, does the
//! opening handshake on each (no compression offered), then keeps
//! `--window` binary messages of `--size` bytes in flight on every
//! connection (`--window 1` is ping-pong) for `--warmup` + `--duration`
//! seconds (duration capped at 60 s) and prints msgs/s, payload MB/s
//! (one direction, 10^6 bytes), p50/p99 round-trip latency, and, with
//! `--server-pid`, the server's CPU time per message (utime+stime from
//! `/proc/PID/stat` before and after the measured window). The last line of
//! output is machine-readable: `RESULT key=value ...`.
//!
//! The generator is built not to be the bottleneck: every frame is
//! pre-encoded and pre-masked once (all connections share one buffer of
//! `window + 1` copies of the frame), a connection writes all the frames it
//! may send in one `write` and reads as much as the socket has, the reply
//! parser only reads frame headers and skips payloads, and the runtime is a
//! single-threaded tokio (`--threads N` for more) so the server keeps a core.
//! Its own CPU time per message is reported too (`client_cpu_us`).
//!
//! `--deflate` offers permessage-deflate (the server must accept it) and
//! sends compressed text instead: 64 different JSON-like messages of
//! `--size` bytes (`bench::json_message`), each compressed once at startup
//! as a fresh deflate stream with a 512-byte window (legal whatever window
//! and context takeover the server answers), cycled through in order. The
//! server inflates each and compresses its echo; the echoes are counted,
//! not inflated, and the share of them that came back compressed (RSV1) is
//! reported (`compressed_pct`), so a server that echoes uncompressed is seen.
//!
//! `--raw` speaks to a plain TCP echo (`--raw-echo-server`): no handshake,
//! the same masked frames; the echo comes back masked and is parsed the
//! same way, so the byte pattern on the wire is the same as with a
//! WebSocket server (the WebSocket server's reply is 4 bytes shorter per
//! frame: no masking key).
//!
//! **Idle mode** (`--idle N`) opens N connections, the client source
//! addresses spread over 127.0.0.2–127.0.0.201, does one small echo on each
//! (16 B binary; with `--deflate` permessage-deflate is offered, and with
//! `--compressed-msg` the one message is a compressed 256-byte text so the
//! server's inflate and deflate streams are both in use; `--json-msgs K`
//! instead sends K compressed JSON-like messages of `--size` bytes and waits
//! for their K echoes), holds them all open for `--hold` seconds, and
//! reports the server's VmRSS growth per connection (from
//! `/proc/PID/status`) right after the last connection's traffic and after
//! the hold, then closes them all. N needs N file
//! descriptors here and in the server: raise `ulimit -n` before starting
//! both.
//!
//! Every loop is bounded: a global deadline aborts connections that stall,
//! and `--raw-echo-server` exits by itself after `--max-secs`. Loopback only.
// This is an event loop around sockets: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use wsmachine::internals::{Compressor, FrameHeader, RSV1};
use wsmachine::{DeflateConfig, DeflateParams, OpCode, Role};
use wsmachine_conformance::bench::{json_message, parse_header};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const MAX_DURATION: f64 = 60.0;
const READ_BUF: usize = 64 << 10;
/// Connections opened at once in idle mode.
const CONNECT_BATCH: usize = 256;
/// Different messages `--deflate` cycles through: enough that a server
/// keeping its compression context cannot echo a message as one
/// back-reference to its previous copy (its window is at most 32 KiB).
const DEFLATE_PERIOD: usize = 64;

const USAGE: &str = "usage:
  loadgen --addr HOST:PORT [--conns N] [--size BYTES] [--window W] [--duration SECS]
          [--warmup SECS] [--server-pid PID] [--raw | --deflate] [--threads N] [--label NAME]
  loadgen --idle N --addr HOST:PORT [--deflate] [--compressed-msg | --json-msgs K --size BYTES]
          [--server-pid PID] [--hold SECS] [--label NAME]
  loadgen --raw-echo-server ADDR [--max-secs SECS]";

#[derive(Clone, Debug)]
struct Args {
    addr: Option<SocketAddr>,
    conns: usize,
    size: usize,
    window: usize,
    duration: f64,
    warmup: f64,
    server_pid: Option<u32>,
    raw: bool,
    threads: usize,
    label: String,
    idle: Option<usize>,
    deflate: bool,
    compressed_msg: bool,
    json_msgs: usize,
    hold: f64,
    raw_echo_server: Option<String>,
    max_secs: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            addr: None,
            conns: 64,
            size: 16,
            window: 16,
            duration: 5.0,
            warmup: 1.0,
            server_pid: None,
            raw: false,
            threads: 1,
            label: String::from("server"),
            idle: None,
            deflate: false,
            compressed_msg: false,
            json_msgs: 0,
            hold: 2.0,
            raw_echo_server: None,
            max_secs: 900,
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        }
        match flag.as_str() {
            "--addr" => {
                let v = value("--addr")?;
                let v = v.trim_start_matches("ws://").trim_end_matches('/');
                a.addr = Some(v.parse().map_err(|e| format!("--addr {v}: {e}"))?);
            }
            "--conns" => a.conns = num("--conns", value("--conns")?)?,
            "--size" => a.size = num("--size", value("--size")?)?,
            "--window" => a.window = num("--window", value("--window")?)?,
            "--duration" => a.duration = num("--duration", value("--duration")?)?,
            "--warmup" => a.warmup = num("--warmup", value("--warmup")?)?,
            "--server-pid" => a.server_pid = Some(num("--server-pid", value("--server-pid")?)?),
            "--threads" => a.threads = num("--threads", value("--threads")?)?,
            "--label" => a.label = value("--label")?,
            "--raw" => a.raw = true,
            "--idle" => a.idle = Some(num("--idle", value("--idle")?)?),
            "--deflate" => a.deflate = true,
            "--compressed-msg" => a.compressed_msg = true,
            "--json-msgs" => a.json_msgs = num("--json-msgs", value("--json-msgs")?)?,
            "--hold" => a.hold = num("--hold", value("--hold")?)?,
            "--raw-echo-server" => a.raw_echo_server = Some(value("--raw-echo-server")?),
            "--max-secs" => a.max_secs = num("--max-secs", value("--max-secs")?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.raw_echo_server.is_none() && a.addr.is_none() {
        return Err("--addr is required".into());
    }
    if a.addr.is_some_and(|s| !s.ip().is_loopback()) {
        return Err("loopback addresses only".into());
    }
    if a.raw && a.deflate {
        return Err("--raw and --deflate exclude each other".into());
    }
    if (a.compressed_msg || a.json_msgs > 0) && !a.deflate {
        return Err("--compressed-msg and --json-msgs need --deflate".into());
    }
    if a.conns == 0 || a.window == 0 || a.threads == 0 {
        return Err("--conns, --window and --threads must be at least 1".into());
    }
    if !(a.duration > 0.0 && a.warmup >= 0.0 && a.hold >= 0.0) {
        return Err("--duration must be positive, --warmup and --hold not negative".into());
    }
    a.duration = a.duration.min(MAX_DURATION);
    a.warmup = a.warmup.min(MAX_DURATION);
    a.hold = a.hold.min(MAX_DURATION);
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("loadgen: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let result = if let Some(addr) = args.raw_echo_server.clone() {
        // Like the peers' servers: tokio's default multi-threaded runtime.
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(BoxError::from)
            .and_then(|rt| rt.block_on(raw_echo_server(&addr, args.max_secs)))
    } else {
        let mut b = if args.threads == 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(args.threads);
            b
        };
        b.enable_all()
            .build()
            .map_err(BoxError::from)
            .and_then(|rt| {
                rt.block_on(async {
                    if args.idle.is_some() {
                        idle(&args).await
                    } else {
                        throughput(&args).await
                    }
                })
            })
    };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- frames

/// One masked binary (or text) frame from the client.
fn masked_frame(opcode: OpCode, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameHeader {
        fin: true,
        rsv,
        opcode,
        mask: Some(MASK),
        payload_len: payload.len() as u64,
    }
    .encode_frame(payload, &mut out);
    out.to_vec()
}

/// A masked, compressed text frame: `text` as a fresh deflate stream with
/// a 512-byte window, legal under any `client_max_window_bits` (>= 9) and
/// any context takeover the server may answer, so one encoding serves
/// every connection.
fn compressed_text_frame(text: &[u8]) -> Vec<u8> {
    let params = DeflateParams {
        client_max_window_bits: 9,
        ..DeflateParams::default()
    };
    let cfg = DeflateConfig {
        client_max_window_bits: 9,
        ..DeflateConfig::default()
    };
    let mut c = Compressor::new(&params, &cfg, Role::Client);
    let mut out = BytesMut::new();
    c.compress(text, true, &mut out);
    masked_frame(OpCode::Text, RSV1, &out)
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + 1) as u8).collect()
}

/// Counts the whole frames in a byte stream, skipping payloads without
/// buffering them (only a partial header is ever kept).
#[derive(Default)]
struct FrameCounter {
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// A header split across reads.
    partial: Vec<u8>,
    /// Data frames seen, and those with RSV1 set (compressed).
    frames: u64,
    compressed: u64,
}

impl FrameCounter {
    /// Feeds bytes; returns how many frames completed. `Err` on a frame
    /// that is not a data frame (e.g. the server's Close).
    fn feed(&mut self, mut data: &[u8]) -> Result<usize, String> {
        let mut done = 0;
        loop {
            if self.skip > 0 {
                let n = (data.len() as u64).min(self.skip) as usize;
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip > 0 {
                    return Ok(done);
                }
                done += 1;
            }
            if data.is_empty() {
                return Ok(done);
            }
            let parsed = if self.partial.is_empty() {
                match parse_header(data) {
                    Some(h) => {
                        data = &data[h.0..];
                        Some(h)
                    }
                    None => None,
                }
            } else {
                let had = self.partial.len();
                let take = data.len().min(14 - had);
                self.partial.extend_from_slice(&data[..take]);
                match parse_header(&self.partial) {
                    Some(h) => {
                        data = &data[h.0 - had..];
                        self.partial.clear();
                        Some(h)
                    }
                    None => {
                        self.partial.truncate(had);
                        None
                    }
                }
            };
            let Some((_, len, b0, _)) = parsed else {
                self.partial.extend_from_slice(data);
                return Ok(done);
            };
            let opcode = b0 & 0x0f;
            if opcode != 1 && opcode != 2 {
                return Err(format!("unexpected frame with opcode {opcode}"));
            }
            self.frames += 1;
            // RSV1 in the first byte of the frame (`internals::RSV1` is
            // the bit in `FrameHeader::rsv`, not in the byte).
            self.compressed += u64::from(b0 & 0x40 != 0);
            if len == 0 {
                done += 1;
            } else {
                self.skip = len;
            }
        }
    }
}

// ---------------------------------------------------------------- handshake

async fn connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> Result<TcpStream, BoxError> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    }
    let tcp = sock.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The opening handshake; returns the bytes that followed the response.
async fn handshake(
    tcp: &mut TcpStream,
    addr: SocketAddr,
    deflate: bool,
) -> Result<Vec<u8>, BoxError> {
    let ext = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            if !head.starts_with("HTTP/1.1 101") {
                let first = head.lines().next().unwrap_or_default();
                return Err(format!("handshake refused: {first}").into());
            }
            if deflate && !head.to_ascii_lowercase().contains("permessage-deflate") {
                return Err("the server did not accept permessage-deflate".into());
            }
            return Ok(buf[end + 4..].to_vec());
        }
        if buf.len() > 16 << 10 {
            return Err("handshake response too long".into());
        }
    }
}

// ---------------------------------------------------------------- CPU and memory

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we know).
fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------- throughput

struct Shared {
    /// Shared by every connection: the period (`lens.len()` frames, sent
    /// in this order, over and over) repeated enough times that any
    /// `window` consecutive frames starting in the first period are one
    /// contiguous slice.
    frames: Vec<u8>,
    /// The length of each frame of the period, and of the period.
    lens: Vec<usize>,
    period: usize,
    window: usize,
    measuring: AtomicBool,
    stop: AtomicBool,
}

#[derive(Default)]
struct ConnStats {
    msgs: u64,
    latencies_ns: Vec<u64>,
    error: Option<String>,
    /// Echoes seen, and those compressed (over the whole run).
    frames: u64,
    compressed: u64,
}

async fn drive(mut tcp: TcpStream, leftover: Vec<u8>, sh: Arc<Shared>) -> ConnStats {
    let mut st = ConnStats::default();
    if let Err(e) = drive_inner(&mut tcp, leftover, &sh, &mut st).await {
        st.error = Some(e.to_string());
    }
    // Best effort: a Close frame (1000), then drop the socket.
    let close = masked_frame(OpCode::Close, 0, &1000u16.to_be_bytes());
    let _ = tcp.try_write(&close);
    st
}

async fn drive_inner(
    tcp: &mut TcpStream,
    leftover: Vec<u8>,
    sh: &Shared,
    st: &mut ConnStats,
) -> Result<(), BoxError> {
    let mut counter = FrameCounter::default();
    let r = drive_frames(tcp, leftover, sh, st, &mut counter).await;
    st.frames = counter.frames;
    st.compressed = counter.compressed;
    r
}

async fn drive_frames(
    tcp: &mut TcpStream,
    leftover: Vec<u8>,
    sh: &Shared,
    st: &mut ConnStats,
    counter: &mut FrameCounter,
) -> Result<(), BoxError> {
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(sh.window);
    let mut rbuf = vec![0u8; READ_BUF];
    // Bytes queued but not yet written, the offset of the next byte to
    // write within the periodic frame buffer, and the frame (index in the
    // period) the next reply lets us queue.
    let mut pending: usize = (0..sh.window).map(|i| sh.lens[i % sh.lens.len()]).sum();
    let mut off = 0usize;
    let mut next = sh.window % sh.lens.len();
    let start = Instant::now();
    for _ in 0..sh.window {
        sent_at.push_back(start);
    }
    let mut replies = counter.feed(&leftover)?;
    loop {
        if replies > 0 {
            let now = Instant::now();
            let measuring = sh.measuring.load(Ordering::Relaxed);
            for _ in 0..replies {
                let t = sent_at
                    .pop_front()
                    .ok_or("more replies than messages sent")?;
                if measuring {
                    st.msgs += 1;
                    st.latencies_ns.push((now - t).as_nanos() as u64);
                }
            }
            if sh.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            for _ in 0..replies {
                sent_at.push_back(now);
                pending += sh.lens[next];
                next = (next + 1) % sh.lens.len();
            }
            replies = 0;
        }
        let interest = if pending > 0 {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = tcp.ready(interest).await?;
        if pending > 0 && ready.is_writable() {
            match tcp.try_write(&sh.frames[off..off + pending]) {
                Ok(n) => {
                    pending -= n;
                    off = (off + n) % sh.period;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        if ready.is_readable() {
            match tcp.try_read(&mut rbuf) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => replies = counter.feed(&rbuf[..n])?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        if sh.stop.load(Ordering::Relaxed) && replies == 0 {
            return Ok(());
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64
}

async fn throughput(a: &Args) -> Result<(), BoxError> {
    let addr = a.addr.ok_or("--addr is required")?;
    let period: Vec<Vec<u8>> = if a.deflate {
        (0..DEFLATE_PERIOD as u64)
            .map(|i| compressed_text_frame(json_message(i, a.size).as_bytes()))
            .collect()
    } else {
        vec![masked_frame(OpCode::Binary, 0, &payload(a.size))]
    };
    let lens: Vec<usize> = period.iter().map(Vec::len).collect();
    let period: Vec<u8> = period.concat();
    let max_len = lens.iter().copied().max().unwrap_or(0);
    // One period to start anywhere in, plus room for a full window after.
    let copies = 1 + (a.window * max_len).div_ceil(period.len());
    let sh = Arc::new(Shared {
        frames: period.repeat(copies),
        lens,
        period: period.len(),
        window: a.window,
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });

    // Connect and handshake everyone first, with a bound.
    let setup = async {
        let mut conns = Vec::with_capacity(a.conns);
        for chunk in (0..a.conns).collect::<Vec<_>>().chunks(CONNECT_BATCH) {
            let mut set = tokio::task::JoinSet::new();
            for _ in chunk {
                let (raw, deflate) = (a.raw, a.deflate);
                set.spawn(async move {
                    let mut tcp = connect(addr, None).await?;
                    let leftover = if raw {
                        Vec::new()
                    } else {
                        handshake(&mut tcp, addr, deflate).await?
                    };
                    Ok::<_, BoxError>((tcp, leftover))
                });
            }
            while let Some(r) = set.join_next().await {
                conns.push(r??);
            }
        }
        Ok::<_, BoxError>(conns)
    };
    let conns = tokio::time::timeout(Duration::from_secs(30), setup)
        .await
        .map_err(|_| "connecting took more than 30 s")??;

    let mut set = tokio::task::JoinSet::new();
    for (tcp, leftover) in conns {
        set.spawn(drive(tcp, leftover, sh.clone()));
    }
    let pid = a.server_pid.map(|p| p.to_string());
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    let s0 = pid.as_deref().and_then(cpu_ticks);
    let c0 = cpu_ticks("self");
    let t0 = Instant::now();
    sh.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    sh.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let s1 = pid.as_deref().and_then(cpu_ticks);
    let c1 = cpu_ticks("self");
    sh.stop.store(true, Ordering::Relaxed);

    let mut msgs = 0u64;
    let (mut frames, mut compressed) = (0u64, 0u64);
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    let gather = async {
        while let Some(r) = set.join_next().await {
            match r {
                Ok(st) => {
                    msgs += st.msgs;
                    frames += st.frames;
                    compressed += st.compressed;
                    lat.extend_from_slice(&st.latencies_ns);
                    errors.extend(st.error);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), gather)
        .await
        .is_err()
    {
        errors.push("some connections did not stop within 5 s (aborted)".into());
        set.abort_all();
    }
    lat.sort_unstable();
    let tck = clk_tck();
    let per_msg = |t0: Option<u64>, t1: Option<u64>| match (t0, t1) {
        (Some(t0), Some(t1)) if msgs > 0 => {
            format!("{:.3}", (t1 - t0) as f64 / tck * 1e6 / msgs as f64)
        }
        _ => "nan".into(),
    };
    let util = |t0: Option<u64>, t1: Option<u64>| match (t0, t1) {
        (Some(t0), Some(t1)) => format!("{:.0}", (t1 - t0) as f64 / tck / elapsed * 100.0),
        _ => "nan".into(),
    };
    let rate = msgs as f64 / elapsed;
    let mbps = rate * a.size as f64 / 1e6;
    let p50 = percentile(&lat, 0.50) / 1e3;
    let p99 = percentile(&lat, 0.99) / 1e3;
    let mode = match (a.window, a.deflate) {
        (1, false) => "ping-pong",
        (_, false) => "pipelined",
        (1, true) => "ping-pong, deflate",
        (_, true) => "pipelined, deflate",
    };
    let compressed_pct = if frames > 0 {
        format!("{:.1}", compressed as f64 * 100.0 / frames as f64)
    } else {
        "nan".into()
    };
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        eprintln!(
            "loadgen: {} connection error(s), e.g.: {}",
            errors.len(),
            errors
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    println!(
        "{}: {} conns x {} B {mode} (window {}), {elapsed:.2} s: {rate:.0} msg/s, {mbps:.1} MB/s, \
         p50 {p50:.1} us, p99 {p99:.1} us, server CPU {} us/msg ({}%), loadgen CPU {} us/msg ({}%), \
         {compressed_pct}% of echoes compressed",
        a.label,
        a.conns,
        a.size,
        a.window,
        per_msg(s0, s1),
        util(s0, s1),
        per_msg(c0, c1),
        util(c0, c1),
    );
    println!(
        "RESULT label={} conns={} size={} window={} secs={elapsed:.3} msgs={msgs} msgs_per_s={rate:.0} \
         mb_per_s={mbps:.2} p50_us={p50:.1} p99_us={p99:.1} server_cpu_us={} server_cpu_pct={} \
         client_cpu_us={} client_cpu_pct={} deflate={} compressed_pct={compressed_pct} errors={}",
        a.label,
        a.conns,
        a.size,
        a.window,
        per_msg(s0, s1),
        util(s0, s1),
        per_msg(c0, c1),
        util(c0, c1),
        a.deflate,
        errors.len(),
    );
    let _ = std::io::stdout().flush();
    if msgs == 0 {
        return Err("no message was echoed in the measured window".into());
    }
    Ok(())
}

// ---------------------------------------------------------------- idle

/// `msgs` messages (`frame`, all of them) and their echoes, on a fresh
/// connection.
async fn open_idle(
    addr: SocketAddr,
    source: Ipv4Addr,
    deflate: bool,
    frame: Arc<Vec<u8>>,
    msgs: usize,
) -> Result<TcpStream, BoxError> {
    let mut tcp = connect(addr, Some(source)).await?;
    let leftover = handshake(&mut tcp, addr, deflate).await?;
    tcp.write_all(&frame).await?;
    let mut counter = FrameCounter::default();
    let mut got = counter.feed(&leftover)?;
    let mut buf = [0u8; 2048];
    while got < msgs {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Err("closed before the echo".into());
        }
        got += counter.feed(&buf[..n])?;
    }
    Ok(tcp)
}

async fn idle(a: &Args) -> Result<(), BoxError> {
    let addr = a.addr.ok_or("--addr is required")?;
    let n = a.idle.unwrap_or(0);
    let pid = a.server_pid.ok_or("--idle needs --server-pid")?;
    // The messages each connection sends (all at once) and waits to see echoed.
    let (frame, msgs) = if a.json_msgs > 0 {
        let frames: Vec<Vec<u8>> = (0..a.json_msgs as u64)
            .map(|i| compressed_text_frame(json_message(i, a.size).as_bytes()))
            .collect();
        (frames.concat(), a.json_msgs)
    } else if a.compressed_msg {
        let text: Vec<u8> = b"idle connection, one compressed message; "
            .iter()
            .copied()
            .cycle()
            .take(256)
            .collect();
        (compressed_text_frame(&text), 1)
    } else {
        (masked_frame(OpCode::Binary, 0, &payload(16)), 1)
    };
    let frame = Arc::new(frame);

    // Warm up the server (runtime threads, allocator arenas) with a few
    // connections that come and go, then take the baseline.
    for i in 0..4 {
        let c = open_idle(
            addr,
            Ipv4Addr::new(127, 0, 0, 2 + i),
            a.deflate,
            frame.clone(),
            msgs,
        )
        .await?;
        drop(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_rss_kib(pid).ok_or("cannot read the server's VmRSS")?;

    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let opening = async {
        for start in (0..n).step_by(CONNECT_BATCH) {
            let mut set = tokio::task::JoinSet::new();
            for i in start..(start + CONNECT_BATCH).min(n) {
                let source = Ipv4Addr::new(127, 0, 0, 2 + (i % 200) as u8);
                set.spawn(open_idle(addr, source, a.deflate, frame.clone(), msgs));
            }
            while let Some(r) = set.join_next().await {
                conns.push(r??);
            }
        }
        Ok::<_, BoxError>(())
    };
    let opened = tokio::time::timeout(Duration::from_secs(120), opening).await;
    let open_secs = t0.elapsed().as_secs_f64();
    let opened_n = conns.len();
    if let Err(e) = opened
        .map_err(|_| BoxError::from("opening took more than 120 s"))
        .and_then(|r| r)
    {
        eprintln!("loadgen: stopped opening after {opened_n} connections: {e}");
    }
    // Right after the last connection's echoes: what the traffic left.
    let traffic = vm_rss_kib(pid).ok_or("cannot read the server's VmRSS")?;
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let after = vm_rss_kib(pid).ok_or("cannot read the server's VmRSS")?;
    let growth = |rss: u64| {
        if opened_n > 0 {
            (rss as f64 - before as f64) / opened_n as f64
        } else {
            f64::NAN
        }
    };
    let (per_conn_traffic, per_conn) = (growth(traffic), growth(after));
    let close = masked_frame(OpCode::Close, 0, &1000u16.to_be_bytes());
    for c in &conns {
        let _ = c.try_write(&close);
    }
    drop(conns);
    println!(
        "{}: {opened_n} idle connections (opened in {open_secs:.1} s{}): server VmRSS {before} KiB -> \
         {traffic} KiB right after the traffic ({per_conn_traffic:.2} KiB per connection) -> {after} KiB \
         after {:.1} s idle ({per_conn:.2} KiB per connection)",
        a.label,
        match (a.deflate, a.compressed_msg, a.json_msgs) {
            (false, _, _) => String::new(),
            (true, _, k @ 1..) => format!(", deflate negotiated, {k} compressed {} B echoes", a.size),
            (true, false, _) => ", deflate negotiated, 16 B echo".into(),
            (true, true, _) => ", deflate negotiated, compressed 256 B echo".into(),
        },
        a.hold,
    );
    println!(
        "RESULT label={} idle={opened_n} deflate={} compressed_msg={} json_msgs={} size={} \
         rss_before_kib={before} rss_traffic_kib={traffic} rss_after_kib={after} \
         kib_per_conn_traffic={per_conn_traffic:.3} kib_per_conn={per_conn:.3}",
        a.label, a.deflate, a.compressed_msg, a.json_msgs, a.size
    );
    let _ = std::io::stdout().flush();
    if opened_n < n {
        return Err(format!("only {opened_n} of {n} connections opened").into());
    }
    Ok(())
}

// ---------------------------------------------------------------- raw echo

/// The ceiling: a plain TCP echo (one read, one write of what was read), on
/// tokio's default runtime like the peers' servers.
async fn raw_echo_server(addr: &str, max_secs: u64) -> Result<(), BoxError> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        return Err("loopback addresses only".into());
    }
    println!("listening on tcp://{local}");
    let _ = std::io::stdout().flush();
    let serve = async {
        loop {
            let (mut tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("raw echo: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; READ_BUF];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tcp.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    };
    // Bounded: the server stops by itself.
    let _ = tokio::time::timeout(Duration::from_secs(max_secs), serve).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_handles_split_headers_and_payloads() {
        let mut wire = Vec::new();
        for size in [0usize, 5, 125, 126, 300, 70_000] {
            wire.extend_from_slice(&masked_frame(OpCode::Binary, 0, &payload(size)));
        }
        for step in [1usize, 3, 7, 1000, wire.len()] {
            let mut c = FrameCounter::default();
            let total: usize = wire.chunks(step).map(|ch| c.feed(ch).unwrap()).sum();
            assert_eq!(total, 6, "step {step}");
        }
    }

    #[test]
    fn counter_counts_compressed_echoes() {
        // A server's unmasked frames: one compressed (RSV1), one not.
        let mut wire = vec![0xc1, 0x03, 1, 2, 3];
        wire.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        let mut c = FrameCounter::default();
        assert_eq!(c.feed(&wire).unwrap(), 2);
        assert_eq!((c.frames, c.compressed), (2, 1));
        // The frames --deflate sends are compressed text.
        let f = compressed_text_frame(json_message(0, 1024).as_bytes());
        assert_eq!(f[0], 0xc1);
    }
}
