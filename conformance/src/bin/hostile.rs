//! Hostile clients against an echo server, measured from outside (issue 14):
//! how much memory a server gives to connections that send the start of a
//! huge message and wait, and how it answers decompression bombs.
//!
//! ```text
//! hostile --server PATH [--label NAME]
//!         [--scenario deflate-hold,plain-hold,bomb,plain-frame-hold]
//!         [--conns 200] [--hold 5] [--ramp 60] [--probe-ms 200]
//!         [--sample-ms 250] [--max-rss-mb 12000] [--min-avail-mb 3000]
//! ```
//!
//! For each scenario the tool starts a fresh server, `PATH 127.0.0.1:0`
//! (any program that takes its listen address as first argument and
//! prints `listening on ws://ADDR` once ready, such as every adapter's
//! `echo_server` example), as its own child process, and ends it at the end
//! of the scenario by its PID (never by name). It talks to 127.0.0.1 only,
//! and reads the server's memory from `/proc/PID/status`: VmRSS as the
//! baseline after one second of warm-up probes, then every `--sample-ms`
//! (for the safety limit below) and at the end of the hold; the peak is the
//! larger of the samples and VmHWM (the kernel's exact high-water mark,
//! which catches the short peaks of the `bomb` scenario that sampling
//! misses). The server's CPU time (user + system, `/proc/PID/stat`) from the
//! baseline to the end is reported too. Once every attack connection has
//! been closed, the tool waits one second and reads VmRSS again ("MiB 1 s
//! after the attackers closed" in the note, `after_close_kib`): whether the
//! memory comes back. A `CURVE` line gives the sampled RSS over the
//! scenario, one `t_s:MiB` point per half second (the largest sample in
//! it), times from the baseline, with the attack's start, the end of the
//! hold and the moment every attack connection was closed.
//!
//! Each scenario opens `--conns` attack connections, one thread each, and
//! does the opening handshake by hand (masked client frames; the compressed
//! scenarios offer `permessage-deflate; client_no_context_takeover;
//! server_no_context_takeover` and fail the connection if it is not
//! accepted):
//!
//! - `deflate-hold`: the first, non-final fragment (RSV1, binary) of a
//!   compressed message: 48 MiB of zeros, deflated and sync-flushed, about
//!   48 KiB on the wire. Then the connection stays open and idle.
//! - `plain-hold`: an unfinished plain binary message of 24 MiB: a
//!   non-final 12 MiB frame, then a final 12 MiB continuation of which all
//!   but the last byte is sent. Then open and idle.
//! - `plain-frame-hold`: one final plain binary frame of 16 MiB (the
//!   default `max_frame_size`) of which all but the last byte is sent: the
//!   whole message sits in the server's input buffer as one partial frame.
//!   Then open and idle.
//! - `bomb`: one complete compressed frame (RSV1, FIN, binary) of about
//!   1 MiB that inflates to 1 GiB of zeros; then the connection waits for
//!   what the server answers (a Close with 1009 or 1013 is expected) and
//!   echoes a Close it receives.
//!
//! Once every attacker has sent its bytes (or failed, or `--ramp` seconds
//! passed) the scenario holds for `--hold` seconds (a `bomb` scenario
//! instead waits until every attacker's connection has ended, for at most
//! `--ramp` seconds), then closes every attack connection and stops the
//! server. Throughout, a probe client opens a fresh connection every
//! `--probe-ms` (handshake without compression, a 5-byte text message, its
//! echo, a Close), each on its own thread, so a server that stalls is still
//! sampled on time: its latency is from the start of `connect` to the
//! echo's arrival, so a server slow to accept counts, and a probe fails on
//! any error or after 5 s (the reasons are counted on stderr). The
//! percentiles are over the probes that succeeded among those started from
//! the first attacker's start to the end of the scenario.
//!
//! Safety: if the server's RSS passes `--max-rss-mb`, or the machine's
//! MemAvailable drops under `--min-avail-mb`, the scenario is aborted, the
//! server is killed (by PID) and the line says how many attack connections
//! were in by then. Every loop is bounded in count and time; a scenario
//! takes at most `2 × ramp + hold` seconds and a few more to start and stop.
//!
//! Output, per scenario: a Markdown table row (the header is printed first),
//! a machine-readable `RESULT key=value ...` line and the `CURVE` line. "in" counts the
//! attackers whose whole payload was written; "open" those whose
//! connection was still open when the scenario closed them; "err/EOF"
//! those that saw an I/O error or end of stream without a Close frame;
//! close codes are counted per code (1005 stands for a Close without code).
//! 200 connections, the probe and the server's own descriptors fit in a
//! `ulimit -n` of 1024.
//!
//! An attacker writes its bytes in 1 MiB pieces and looks at what the
//! server sent between them: a Close that refuses the message (1009, or
//! 1013 from a server with a memory budget) stops the sending, is echoed,
//! and counts under its code rather than as an error.
//!
//! Running it, against one adapter or all three:
//!
//! ```text
//! cargo build --release -p wsmachine-conformance --bin hostile
//! cargo build --release -p wsmachine-tokio --example echo_server
//! target/release/hostile --server target/release/examples/echo_server --label tokio
//!
//! conformance/bench/hostile.sh        # builds; tokio, smol, async-std (see the script)
//! ```
//!
//! (The adapters' examples share the name `echo_server`: build one, run
//! it, then the next; the script copies each one out.) BENCHMARKS.md,
//! "Hostile clients (issue 14)", has the figures before the memory budget
//! and with it.
// A load tool around sockets and a child process: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use wsmachine::internals::{Compressor, FrameHeader, RSV1};
use wsmachine::{DeflateConfig, DeflateParams, OpCode, Role};

const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x2e];
const MIB: usize = 1 << 20;
/// Inflated size of the `deflate-hold` fragment.
const DEFLATE_HOLD_INFLATED: usize = 48 * MIB;
/// Each of the two `plain-hold` frames.
const PLAIN_FRAME: usize = 12 * MIB;
/// The one `plain-frame-hold` frame: the default `max_frame_size`, the
/// largest frame a default server takes.
const PLAIN_BIG_FRAME: usize = 16 * MIB;
/// Inflated size of the `bomb` message.
const BOMB_INFLATED: usize = 1024 * MIB;
/// Zeros compressed per `Compressor::compress` call.
const COMPRESS_CHUNK: usize = 4 * MIB;
/// Warm-up probes run this long before the baseline is taken.
const WARMUP: Duration = Duration::from_secs(1);
/// A probe fails after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// More probes than this in flight count as failed without being made.
const MAX_PROBES_IN_FLIGHT: usize = 64;
/// Attack sockets poll the stop flag this often.
const POLL: Duration = Duration::from_millis(200);
/// Bound on writing an attack payload.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the server's start and on joining the threads at the end.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The RSS "after close" is read this long after every attack connection
/// has been closed.
const AFTER_CLOSE: Duration = Duration::from_secs(1);
/// The RSS curve is printed at this resolution (the samples in between are
/// summarised by their maximum).
const CURVE_STEP: Duration = Duration::from_millis(500);
const MAX_CONNS: usize = 5000;
const MAX_SECS: f64 = 300.0;

const USAGE: &str = "usage:
  hostile --server PATH [--label NAME] [--scenario deflate-hold,plain-hold,bomb,plain-frame-hold]
          [--conns N] [--hold SECS] [--ramp SECS] [--probe-ms MS] [--sample-ms MS]
          [--max-rss-mb MB] [--min-avail-mb MB]
The server is started as `PATH 127.0.0.1:0` and must print `listening on ws://ADDR`.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    DeflateHold,
    PlainHold,
    PlainFrameHold,
    Bomb,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::DeflateHold,
        Scenario::PlainHold,
        Scenario::Bomb,
        Scenario::PlainFrameHold,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::DeflateHold => "deflate-hold",
            Scenario::PlainHold => "plain-hold",
            Scenario::PlainFrameHold => "plain-frame-hold",
            Scenario::Bomb => "bomb",
        }
    }

    fn deflate(self) -> bool {
        matches!(self, Scenario::DeflateHold | Scenario::Bomb)
    }

    fn holds(self) -> bool {
        self != Scenario::Bomb
    }
}

#[derive(Clone, Debug)]
struct Args {
    server: PathBuf,
    label: String,
    scenarios: Vec<Scenario>,
    conns: usize,
    hold: f64,
    ramp: f64,
    probe_ms: u64,
    sample_ms: u64,
    max_rss_mb: u64,
    min_avail_mb: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut server = None;
    let mut a = Args {
        server: PathBuf::new(),
        label: String::new(),
        scenarios: Scenario::ALL.to_vec(),
        conns: 200,
        hold: 5.0,
        ramp: 60.0,
        probe_ms: 200,
        sample_ms: 250,
        max_rss_mb: 12_000,
        min_avail_mb: 3_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        }
        match flag.as_str() {
            "--server" => server = Some(PathBuf::from(value("--server")?)),
            "--label" => a.label = value("--label")?,
            "--scenario" => {
                a.scenarios = value("--scenario")?
                    .split(',')
                    .map(|s| {
                        Scenario::ALL
                            .into_iter()
                            .find(|k| k.name() == s.trim())
                            .ok_or_else(|| format!("unknown scenario {s}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--conns" => a.conns = num("--conns", value("--conns")?)?,
            "--hold" => a.hold = num("--hold", value("--hold")?)?,
            "--ramp" => a.ramp = num("--ramp", value("--ramp")?)?,
            "--probe-ms" => a.probe_ms = num("--probe-ms", value("--probe-ms")?)?,
            "--sample-ms" => a.sample_ms = num("--sample-ms", value("--sample-ms")?)?,
            "--max-rss-mb" => a.max_rss_mb = num("--max-rss-mb", value("--max-rss-mb")?)?,
            "--min-avail-mb" => a.min_avail_mb = num("--min-avail-mb", value("--min-avail-mb")?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    a.server = server.ok_or("--server is required")?;
    if a.label.is_empty() {
        a.label = a
            .server
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "server".into());
    }
    if a.conns == 0 || a.conns > MAX_CONNS {
        return Err(format!("--conns must be 1..={MAX_CONNS}"));
    }
    if !(a.hold >= 0.0 && a.hold <= MAX_SECS && a.ramp > 0.0 && a.ramp <= MAX_SECS) {
        return Err(format!("--hold and --ramp must be within 0..={MAX_SECS} s"));
    }
    a.probe_ms = a.probe_ms.clamp(10, 10_000);
    a.sample_ms = a.sample_ms.clamp(10, 10_000);
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("hostile: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    println!(
        "| server | scenario | conns | in | baseline MiB | peak MiB | growth MiB | MiB per conn in \
         | close codes (attackers) | open | err/EOF | server CPU s | probes ok/failed | probe p50 ms | p99 ms | max ms | note |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for &scenario in &args.scenarios {
        let t = Instant::now();
        let payload = Arc::new(attack_bytes(scenario));
        eprintln!(
            "hostile: {}: {} payload {} bytes (prepared in {:.1} s)",
            args.label,
            scenario.name(),
            payload.len(),
            t.elapsed().as_secs_f64()
        );
        match run_scenario(&args, scenario, payload) {
            Ok(r) => r.print(&args),
            Err(e) => {
                eprintln!("hostile: {} {}: {e}", args.label, scenario.name());
                failed = true;
            }
        }
        let _ = std::io::stdout().flush();
    }
    if failed {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- frames

/// A masked client frame.
fn frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8], out: &mut BytesMut) {
    FrameHeader {
        fin,
        rsv,
        opcode,
        mask: Some(MASK),
        payload_len: payload.len() as u64,
    }
    .encode_frame(payload, out);
}

/// `len` zeros deflated in one no-context-takeover stream, as the payload
/// of one frame (sync-flushed; the `00 00 ff ff` tail removed when `fin`).
fn deflated_zeros(len: usize, fin: bool) -> BytesMut {
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let config = DeflateConfig {
        client_max_window_bits: 15,
        level: 9,
        mem_level: 9,
        ..DeflateConfig::default()
    };
    let mut c = Compressor::new(&params, &config, Role::Client);
    let zeros = vec![0u8; COMPRESS_CHUNK.min(len)];
    let mut out = BytesMut::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len());
        left -= n;
        c.compress(&zeros[..n], fin && left == 0, &mut out);
    }
    out
}

/// What each attack connection writes after the handshake.
fn attack_bytes(s: Scenario) -> Vec<u8> {
    let mut out = BytesMut::new();
    match s {
        Scenario::DeflateHold => {
            let z = deflated_zeros(DEFLATE_HOLD_INFLATED, false);
            frame(false, RSV1, OpCode::Binary, &z, &mut out);
        }
        Scenario::PlainHold => {
            let zeros = vec![0u8; PLAIN_FRAME];
            frame(false, 0, OpCode::Binary, &zeros, &mut out);
            frame(true, 0, OpCode::Continuation, &zeros, &mut out);
            // The message never completes.
            out.truncate(out.len() - 1);
        }
        Scenario::PlainFrameHold => {
            let zeros = vec![0u8; PLAIN_BIG_FRAME];
            frame(true, 0, OpCode::Binary, &zeros, &mut out);
            // The frame (the whole message) never completes.
            out.truncate(out.len() - 1);
        }
        Scenario::Bomb => {
            let z = deflated_zeros(BOMB_INFLATED, true);
            frame(true, RSV1, OpCode::Binary, &z, &mut out);
        }
    }
    out.to_vec()
}

/// Parses an unmasked server frame at the front of `b`:
/// `(opcode, payload range)` once it is complete.
fn server_frame(b: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
    if b.len() < 2 {
        return None;
    }
    let (hlen, len): (usize, usize) = match b[1] & 0x7f {
        126 => (4, u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize),
        127 => {
            let mut l = [0u8; 8];
            l.copy_from_slice(b.get(2..10)?);
            (10, usize::try_from(u64::from_be_bytes(l)).ok()?)
        }
        n => (2, n as usize),
    };
    let end = hlen.checked_add(len)?;
    (b.len() >= end).then_some((b[0] & 0x0f, hlen..end))
}

/// Whether the server frames at the front of `b` include a Close.
fn has_close(mut b: &[u8]) -> bool {
    while let Some((op, range)) = server_frame(b) {
        if op == 8 {
            return true;
        }
        b = &b[range.end..];
    }
    false
}

// ---------------------------------------------------------------- handshake

fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The opening handshake; returns the bytes that followed the response.
fn handshake(tcp: &mut TcpStream, addr: SocketAddr, deflate: bool) -> Result<Vec<u8>, String> {
    let ext = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; \
         server_no_context_takeover\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    tcp.write_all(req.as_bytes())
        .map_err(|e| format!("handshake write: {e}"))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match tcp.read(&mut chunk) {
            Ok(0) => return Err("EOF during the handshake".into()),
            Ok(n) => n,
            Err(e) => return Err(format!("handshake read: {}", io_kind(&e))),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 101") {
                let first = head.lines().next().unwrap_or_default().to_owned();
                return Err(format!("handshake refused: {first}"));
            }
            let accepted = head.lines().any(|l| {
                l.starts_with("sec-websocket-extensions:") && l.contains("permessage-deflate")
            });
            if deflate && !accepted {
                return Err("permessage-deflate not accepted".into());
            }
            return Ok(buf[end + 4..].to_vec());
        }
        if buf.len() > 16 << 10 {
            return Err("handshake response too long".into());
        }
    }
}

fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::BrokenPipe => "broken pipe".into(),
        ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

// ---------------------------------------------------------------- the server

/// A `/proc/PID/status` field in KiB: `VmRSS` (resident now) or `VmHWM`
/// (the most it has been resident, exact where sampling may miss a peak).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start at ')'.
    let f: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    // f[0] is field 3 (state): utime is field 14, stime 15.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn mem_available_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The server child: killed by its PID when dropped.
struct Server {
    child: Arc<Mutex<Child>>,
    pid: u32,
    addr: SocketAddr,
    /// Lines the server wrote to stderr, and the first few of them.
    stderr: Arc<Mutex<(usize, Vec<String>)>>,
}

impl Server {
    fn start(path: &PathBuf) -> Result<Server, String> {
        let mut child = Command::new(path)
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let child = Arc::new(Mutex::new(child));
        let server = |addr| Server {
            child: child.clone(),
            pid,
            addr,
            stderr: Arc::new(Mutex::new((0, Vec::new()))),
        };
        // Both pipes are drained for the server's whole life, so it never
        // blocks on a full pipe; they end when it exits.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("listening on ws://") {
                    let _ = tx.send(a.trim().trim_end_matches('/').to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a,
            Err(_) => {
                drop(server("127.0.0.1:9".parse().expect("literal")));
                return Err("the server did not print `listening on ws://ADDR` in 10 s".into());
            }
        };
        let addr: SocketAddr = match addr.parse() {
            Ok(a) => a,
            Err(e) => {
                drop(server("127.0.0.1:9".parse().expect("literal")));
                return Err(format!("bad listen address {addr}: {e}"));
            }
        };
        let s = server(addr);
        if !addr.ip().is_loopback() {
            return Err(format!("the server listens on {addr}, not on loopback"));
        }
        let log = s.stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                l.0 += 1;
                if l.1.len() < 3 {
                    l.1.push(line);
                }
            }
        });
        Ok(s)
    }

    fn rss_kib(&self) -> Option<u64> {
        vm_rss_kib(self.pid)
    }

    /// `Some(status)` once the server has exited.
    fn exited(&self) -> Option<String> {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match c.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }
}

/// Kills the server child by its PID (SIGKILL) and reaps it.
fn kill_child(child: &Mutex<Child>) {
    let mut c = child.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(None) = c.try_wait() {
        let _ = c.kill();
    }
    let _ = c.wait();
}

impl Drop for Server {
    fn drop(&mut self) {
        kill_child(&self.child);
    }
}

// ---------------------------------------------------------------- probes

#[derive(Default)]
struct Probes {
    latencies_us: Vec<u64>,
    failed: usize,
    /// Why probes failed, with counts.
    errors: BTreeMap<String, usize>,
}

/// One probe: connect, handshake, a small text message and its echo, then
/// a Close. Returns the latency from connect to echo.
fn probe(addr: SocketAddr) -> Result<Duration, String> {
    let t0 = Instant::now();
    let deadline = t0 + PROBE_TIMEOUT;
    let mut tcp = connect(addr, PROBE_TIMEOUT).map_err(|e| format!("connect: {}", io_kind(&e)))?;
    tcp.set_read_timeout(Some(PROBE_TIMEOUT))
        .and_then(|_| tcp.set_write_timeout(Some(PROBE_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut buf = handshake(&mut tcp, addr, false)?;
    let mut msg = BytesMut::new();
    frame(true, 0, OpCode::Text, b"probe", &mut msg);
    tcp.write_all(&msg)
        .map_err(|e| format!("write: {}", io_kind(&e)))?;
    let mut chunk = [0u8; 1024];
    loop {
        if let Some((op, range)) = server_frame(&buf) {
            match op {
                1 if &buf[range.clone()] == b"probe" => break,
                8 => return Err(format!("server closed: {}", close_code(&buf[range]))),
                9 | 10 => {
                    buf.drain(..range.end);
                    continue;
                }
                _ => return Err(format!("unexpected frame, opcode {op}")),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || buf.len() > 64 << 10 {
            return Err("no echo".into());
        }
        tcp.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match tcp.read(&mut chunk) {
            Ok(0) => return Err("EOF before the echo".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("echo: {}", io_kind(&e))),
        }
    }
    let latency = t0.elapsed();
    // A polite close, bounded: not part of the latency.
    let mut close = BytesMut::new();
    frame(true, 0, OpCode::Close, &1000u16.to_be_bytes(), &mut close);
    if tcp.write_all(&close).is_ok() {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = tcp.read(&mut chunk);
    }
    Ok(latency)
}

fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}

// ---------------------------------------------------------------- attackers

#[derive(Default)]
struct Outcome {
    /// The whole payload was written.
    sent: bool,
    /// The code of the server's Close frame, if one came.
    close: Option<u16>,
    /// An I/O error or EOF without a Close, or a failed handshake.
    error: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    /// Attackers that wrote their whole payload.
    sent: AtomicUsize,
    /// Attackers that are done (failed, or their connection ended).
    ended: AtomicUsize,
    /// Attackers that ended without writing their whole payload.
    failed: AtomicUsize,
}

fn attacker(addr: SocketAddr, s: Scenario, payload: &[u8], sh: &Shared) -> Outcome {
    let mut out = Outcome::default();
    let r = attack(addr, s, payload, sh, &mut out);
    if let Err(e) = r {
        out.error = Some(e);
    }
    out
}

fn attack(
    addr: SocketAddr,
    s: Scenario,
    payload: &[u8],
    sh: &Shared,
    out: &mut Outcome,
) -> Result<(), String> {
    let mut tcp = connect(addr, START_TIMEOUT).map_err(|e| format!("connect: {}", io_kind(&e)))?;
    tcp.set_read_timeout(Some(START_TIMEOUT))
        .and_then(|_| tcp.set_write_timeout(Some(WRITE_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut buf = handshake(&mut tcp, addr, s.deflate())?;
    let written = send_payload(&mut tcp, payload, &mut buf, sh);
    if written.is_ok() {
        out.sent = true;
        sh.sent.fetch_add(1, Ordering::Relaxed);
    }
    tcp.set_read_timeout(Some(POLL))
        .map_err(|e| e.to_string())?;
    // Read what the server says until it closes or the scenario stops. A
    // failed write is reported after reading whatever the server sent
    // before it went away (its Close, usually).
    let mut chunk = [0u8; 4096];
    let mut closed_by_server = false;
    let linger_until = Instant::now() + Duration::from_secs(2);
    loop {
        while let Some((op, range)) = server_frame(&buf) {
            if op == 8 && out.close.is_none() {
                out.close = Some(close_code(&buf[range.clone()]));
                // Echo it (code only), as a client does; then wait for EOF.
                let mut reply = BytesMut::new();
                let code = &buf[range.start..range.end.min(range.start + 2)];
                frame(true, 0, OpCode::Close, code, &mut reply);
                let _ = tcp.write_all(&reply);
                closed_by_server = true;
            }
            buf.drain(..range.end);
        }
        if buf.len() > 1 << 20 {
            return Err("unexpected large frame from the server".into());
        }
        if sh.stop.load(Ordering::Relaxed) {
            break;
        }
        if written.is_err() && Instant::now() > linger_until {
            break;
        }
        match tcp.read(&mut chunk) {
            Ok(0) => {
                if !closed_by_server {
                    out.error = Some("EOF without a Close".into());
                }
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            // A reset after the server's Close is how it drops the bytes
            // it did not read: not an error.
            Err(_) if closed_by_server => break,
            Err(e) => {
                out.error = Some(format!("read: {}", io_kind(&e)));
                break;
            }
        }
    }
    // A write cut short by the server's Close (or by the reset that
    // follows it) is a refusal, counted by its close code.
    if let Err(e) = written {
        if out.close.is_none() {
            out.error = Some(e);
        }
    }
    Ok(())
}

/// Writes `payload` in pieces, and between them takes in whatever the
/// server sent (into `buf`), so a Close that refuses the message is seen
/// while the rest is still unsent, and the sending stops there, as a
/// client's would. Bounded by `WRITE_TIMEOUT` and the stop flag.
fn send_payload(
    tcp: &mut TcpStream,
    payload: &[u8],
    buf: &mut Vec<u8>,
    sh: &Shared,
) -> Result<(), String> {
    const PIECE: usize = 1 << 20;
    let deadline = Instant::now() + WRITE_TIMEOUT;
    tcp.set_write_timeout(Some(POLL))
        .map_err(|e| e.to_string())?;
    let mut off = 0;
    let mut chunk = [0u8; 4096];
    while off < payload.len() {
        match tcp.write(&payload[off..payload.len().min(off + PIECE)]) {
            Ok(0) => return Err("write: closed".into()),
            Ok(n) => off += n,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(format!("write: {}", io_kind(&e))),
        }
        // Whatever the server has sent, without waiting for more.
        tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
        let got = loop {
            match tcp.read(&mut chunk) {
                Ok(0) => break Err("write: EOF while sending".to_owned()),
                Ok(n) if buf.len() < 1 << 20 => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => break Err("unexpected large frame from the server".to_owned()),
                Err(e) if is_timeout(&e) => break Ok(()),
                Err(e) => break Err(format!("write: {}", io_kind(&e))),
            }
        };
        tcp.set_nonblocking(false).map_err(|e| e.to_string())?;
        got?;
        if has_close(buf) {
            return Err("refused while sending".into());
        }
        if sh.stop.load(Ordering::Relaxed) {
            return Err("write: the scenario ended first".into());
        }
        if Instant::now() > deadline {
            return Err("write: timed out".into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- a scenario

struct Report {
    scenario: Scenario,
    conns: usize,
    sent: usize,
    open: usize,
    closes: BTreeMap<u16, usize>,
    errors: BTreeMap<String, usize>,
    baseline_kib: u64,
    peak_kib: u64,
    held_kib: Option<u64>,
    probes: Probes,
    warm_p50_us: f64,
    aborted: Option<String>,
    secs: f64,
    ramp_secs: f64,
    settle_secs: f64,
    /// From the first attacker's start to the end of the hold.
    attack_secs: f64,
    server_log: (usize, Vec<String>),
    /// Server CPU time (user + system) from the baseline to the end.
    server_cpu_secs: f64,
    /// VmRSS `AFTER_CLOSE` after every attack connection was closed.
    after_kib: Option<u64>,
    curve: Curve,
}

/// The server's RSS over the scenario, times from the baseline.
#[derive(Default)]
struct Curve {
    samples: Vec<(Duration, u64)>,
    /// The first attacker started.
    attack_at: Duration,
    /// The end of the hold (a bomb: every attacker answered).
    held_at: Duration,
    /// Every attack connection closed.
    closed_at: Duration,
}

impl Curve {
    /// `t:MiB` pairs, one per `CURVE_STEP` (the largest sample in it).
    fn points(&self) -> String {
        let mut out: Vec<(u128, u64)> = Vec::new();
        let step = CURVE_STEP.as_millis();
        for &(t, k) in &self.samples {
            let slot = t.as_millis() / step;
            match out.last_mut() {
                Some((s, m)) if *s == slot => *m = (*m).max(k),
                _ => out.push((slot, k)),
            }
        }
        out.iter()
            .map(|&(s, k)| format!("{:.1}:{:.0}", (s * step) as f64 / 1e3, mib(k)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Report {
    fn print(&self, a: &Args) {
        let lat = &self.probes.latencies_us;
        let (p50, p99, max) = (
            percentile(lat, 0.5) / 1e3,
            percentile(lat, 0.99) / 1e3,
            lat.last().map_or(f64::NAN, |&m| m as f64 / 1e3),
        );
        let growth = self.peak_kib.saturating_sub(self.baseline_kib);
        let per_conn = if self.sent > 0 {
            mib(growth) / self.sent as f64
        } else {
            f64::NAN
        };
        let codes = if self.closes.is_empty() {
            "none".to_owned()
        } else {
            self.closes
                .iter()
                .map(|(c, n)| format!("{c}×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let nerr: usize = self.errors.values().sum();
        let mut note = self.aborted.clone().unwrap_or_default();
        if let Some(held) = self.held_kib {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!("{:.0} MiB at end of hold", mib(held)));
        }
        if let Some(after) = self.after_kib {
            note.push_str(&format!(
                ", {:.0} MiB 1 s after the attackers closed",
                mib(after)
            ));
        }
        if self.scenario.holds() {
            note.push_str(&format!(
                "; sent in {:.1} s, quiet after {:.1} s more",
                self.ramp_secs, self.settle_secs
            ));
        } else {
            let answered = if self.open == 0 { "all" } else { "not all" };
            note.push_str(&format!(
                "; {answered} answered in {:.1} s",
                self.attack_secs
            ));
        }
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {codes} | {} | {nerr} | {:.1} | {}/{} | {p50:.1} | {p99:.1} | {max:.1} | {note} |",
            a.label,
            self.scenario.name(),
            self.conns,
            self.sent,
            mib(self.baseline_kib),
            mib(self.peak_kib),
            mib(growth),
            per_conn,
            self.open,
            self.server_cpu_secs,
            lat.len(),
            self.probes.failed,
        );
        let codes_kv = self
            .closes
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "RESULT label={} scenario={} conns={} sent={} open={} closes={} errors={nerr} \
             baseline_kib={} peak_kib={} held_kib={} after_close_kib={} growth_kib={growth} server_cpu_s={:.2} probes_ok={} \
             probes_failed={} probe_p50_ms={p50:.2} probe_p99_ms={p99:.2} probe_max_ms={max:.2} \
             warm_probe_p50_ms={:.2} ramp_secs={:.1} settle_secs={:.1} secs={:.1} aborted={}",
            a.label,
            self.scenario.name(),
            self.conns,
            self.sent,
            self.open,
            if codes_kv.is_empty() { "none" } else { &codes_kv },
            self.baseline_kib,
            self.peak_kib,
            self.held_kib.map_or("nan".into(), |k| k.to_string()),
            self.after_kib.map_or("nan".into(), |k| k.to_string()),
            self.server_cpu_secs,
            lat.len(),
            self.probes.failed,
            self.warm_p50_us / 1e3,
            self.ramp_secs,
            self.settle_secs,
            self.secs,
            self.aborted.is_some(),
        );
        let c = &self.curve;
        println!(
            "CURVE label={} scenario={} attack_s={:.1} held_s={:.1} closed_s={:.1} \
             rss_mib(t_s:MiB)={}",
            a.label,
            self.scenario.name(),
            c.attack_at.as_secs_f64(),
            c.held_at.as_secs_f64(),
            c.closed_at.as_secs_f64(),
            c.points(),
        );
        for (e, n) in &self.errors {
            eprintln!(
                "hostile: {} {}: {n} attacker(s): {e}",
                a.label,
                self.scenario.name()
            );
        }
        for (e, n) in &self.probes.errors {
            eprintln!(
                "hostile: {} {}: {n} probe(s) failed: {e}",
                a.label,
                self.scenario.name()
            );
        }
        let (n, first) = &self.server_log;
        if *n > 0 {
            eprintln!(
                "hostile: {} {}: the server wrote {n} line(s) to stderr, e.g. {:?}",
                a.label,
                self.scenario.name(),
                first
            );
        }
    }
}

fn run_scenario(a: &Args, s: Scenario, payload: Arc<Vec<u8>>) -> Result<Report, String> {
    let t0 = Instant::now();
    let server = Server::start(&a.server)?;
    let addr = server.addr;
    let pid = server.pid;

    // The probe runs from the start; `attack_start` splits warm-up probes
    // from those during the attack.
    let stop_probes = Arc::new(AtomicBool::new(false));
    let warm = Arc::new(Mutex::new(Probes::default()));
    let probes = Arc::new(Mutex::new(Probes::default()));
    let attacking = Arc::new(AtomicBool::new(false));
    let probe_thread = {
        let (stop, warm, probes, attacking) = (
            stop_probes.clone(),
            warm.clone(),
            probes.clone(),
            attacking.clone(),
        );
        let every = Duration::from_millis(a.probe_ms);
        // Bounded: at most this many probes in a scenario, and in flight.
        let max_probes = ((2.0 * MAX_SECS + 60.0) * 1000.0 / a.probe_ms as f64) as usize;
        let in_flight = Arc::new(AtomicUsize::new(0));
        thread::spawn(move || {
            // A probe starts every `every` whether or not the one before has
            // finished, so a server that stalls is sampled evenly.
            let mut running = Vec::new();
            for _ in 0..max_probes {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let start = Instant::now();
                let during = attacking.load(Ordering::Relaxed);
                let target = if during { probes.clone() } else { warm.clone() };
                if in_flight.load(Ordering::Relaxed) >= MAX_PROBES_IN_FLIGHT {
                    let mut p = target.lock().unwrap_or_else(|p| p.into_inner());
                    p.failed += 1;
                    *p.errors.entry("too many in flight".into()).or_default() += 1;
                } else {
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    let mine = in_flight.clone();
                    let h = thread::Builder::new().stack_size(256 << 10).spawn(move || {
                        let r = probe(addr);
                        let mut p = target.lock().unwrap_or_else(|p| p.into_inner());
                        match r {
                            Ok(d) => p.latencies_us.push(d.as_micros() as u64),
                            Err(e) => {
                                p.failed += 1;
                                *p.errors.entry(e).or_default() += 1;
                            }
                        }
                        mine.fetch_sub(1, Ordering::Relaxed);
                    });
                    match h {
                        Ok(h) => running.push(h),
                        Err(_) => {
                            in_flight.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                }
                running.retain(|h: &thread::JoinHandle<()>| !h.is_finished());
                thread::sleep(every.saturating_sub(start.elapsed()));
            }
            // Each probe ends within PROBE_TIMEOUT and a second of closing.
            for h in running {
                let _ = h.join();
            }
        })
    };
    thread::sleep(WARMUP);
    let baseline = server.rss_kib().ok_or("cannot read the server's VmRSS")?;
    let cpu0 = cpu_secs(pid);

    // The sampler: peak RSS and the safety limits.
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        sent: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    let peak = Arc::new(AtomicUsize::new(baseline as usize));
    // (time since the baseline, RSS) of every sample, for the curve.
    let t_base = Instant::now();
    let samples: Arc<Mutex<Vec<(Duration, u64)>>> =
        Arc::new(Mutex::new(vec![(Duration::ZERO, baseline)]));
    let aborted: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, aborted, stop, sh, child, samples) = (
            peak.clone(),
            aborted.clone(),
            stop_sampler.clone(),
            sh.clone(),
            server.child.clone(),
            samples.clone(),
        );
        let every = Duration::from_millis(a.sample_ms);
        let max_rss_kib = a.max_rss_mb * 1024;
        let min_avail_kib = a.min_avail_mb * 1024;
        let max_samples = ((2.0 * MAX_SECS + 60.0) * 1000.0 / a.sample_ms as f64) as usize;
        thread::spawn(move || {
            for _ in 0..max_samples {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Some(rss) = vm_rss_kib(pid) else { break };
                peak.fetch_max(rss as usize, Ordering::Relaxed);
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((t_base.elapsed(), rss));
                let avail = mem_available_kib().unwrap_or(u64::MAX);
                if rss > max_rss_kib || avail < min_avail_kib {
                    let why = if rss > max_rss_kib {
                        format!("RSS {} MiB over --max-rss-mb", rss / 1024)
                    } else {
                        format!("MemAvailable {} MiB under --min-avail-mb", avail / 1024)
                    };
                    *aborted.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                        "aborted at {} connections in: {why}",
                        sh.sent.load(Ordering::Relaxed)
                    ));
                    kill_child(&child);
                    sh.stop.store(true, Ordering::Relaxed);
                    break;
                }
                thread::sleep(every);
            }
        })
    };

    // The attack.
    attacking.store(true, Ordering::Relaxed);
    let attack_start = Instant::now();
    let attack_at = t_base.elapsed();
    let mut handles = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let (sh, payload) = (sh.clone(), payload.clone());
        let h = thread::Builder::new()
            .name(format!("attacker-{i}"))
            .stack_size(256 << 10)
            .spawn(move || {
                let o = attacker(addr, s, &payload, &sh);
                if !o.sent {
                    sh.failed.fetch_add(1, Ordering::Relaxed);
                }
                sh.ended.fetch_add(1, Ordering::Relaxed);
                o
            })
            .map_err(|e| format!("cannot start attacker thread {i}: {e}"))?;
        handles.push(h);
    }
    // Ramp: until every attacker has sent its payload or ended.
    let ramp_deadline = attack_start + Duration::from_secs_f64(a.ramp);
    let stopped = |sh: &Shared| sh.stop.load(Ordering::Relaxed) || server.exited().is_some();
    while Instant::now() < ramp_deadline && !stopped(&sh) {
        let done = sh.sent.load(Ordering::Relaxed) + sh.failed.load(Ordering::Relaxed);
        if done >= a.conns {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let ramp_secs = attack_start.elapsed().as_secs_f64();
    // Settle: writing the bytes is not the server having taken them in. Wait
    // (at most `--ramp` s) until the server is quiet: in the last second it
    // used under 0.05 s of CPU and its RSS moved by under 1%.
    let settle_start = Instant::now();
    let settle_deadline = settle_start + Duration::from_secs_f64(a.ramp);
    let mut last = (cpu_secs(pid), server.rss_kib());
    while s.holds() && Instant::now() < settle_deadline && !stopped(&sh) {
        thread::sleep(Duration::from_secs(1));
        let now = (cpu_secs(pid), server.rss_kib());
        if let ((Some(c0), Some(r0)), (Some(c1), Some(r1))) = (last, now) {
            if c1 - c0 < 0.05 && r1.abs_diff(r0) * 100 <= r0 {
                break;
            }
        }
        last = now;
    }
    let settle_secs = settle_start.elapsed().as_secs_f64();
    // Hold. A bomb scenario instead waits for every connection to end (the
    // server's answer may take a while under load), for at most `--ramp`.
    let hold = if s.holds() { a.hold } else { a.ramp };
    let hold_deadline = Instant::now() + Duration::from_secs_f64(hold);
    while Instant::now() < hold_deadline && !stopped(&sh) {
        if !s.holds() && sh.ended.load(Ordering::Relaxed) >= a.conns {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let attack_secs = attack_start.elapsed().as_secs_f64();
    let held = server.rss_kib();
    let held_at = t_base.elapsed();
    if let Some(h) = held {
        peak.fetch_max(h as usize, Ordering::Relaxed);
    }
    let open = a.conns - sh.ended.load(Ordering::Relaxed);
    sh.stop.store(true, Ordering::Relaxed);

    // Gather: every attacker polls `stop` within POLL, or is bounded by a
    // write timeout.
    let mut report = Report {
        scenario: s,
        conns: a.conns,
        sent: 0,
        open,
        closes: BTreeMap::new(),
        errors: BTreeMap::new(),
        baseline_kib: baseline,
        peak_kib: 0,
        held_kib: held,
        probes: Probes::default(),
        warm_p50_us: 0.0,
        aborted: None,
        secs: 0.0,
        ramp_secs,
        settle_secs,
        attack_secs,
        server_log: (0, Vec::new()),
        server_cpu_secs: f64::NAN,
        after_kib: None,
        curve: Curve::default(),
    };
    for h in handles {
        match h.join() {
            Ok(o) => {
                report.sent += usize::from(o.sent);
                if let Some(c) = o.close {
                    *report.closes.entry(c).or_default() += 1;
                }
                if let Some(e) = o.error {
                    *report.errors.entry(e).or_default() += 1;
                }
            }
            Err(_) => *report.errors.entry("attacker panicked".into()).or_default() += 1,
        }
    }
    // Every attack socket is closed now (each attacker's thread dropped its
    // own): does the memory come back? The sampler and the probes go on.
    let closed_at = t_base.elapsed();
    if server.exited().is_none() {
        thread::sleep(AFTER_CLOSE);
        report.after_kib = server.rss_kib();
    }
    let after_at = t_base.elapsed();
    stop_probes.store(true, Ordering::Relaxed);
    stop_sampler.store(true, Ordering::Relaxed);
    let _ = probe_thread.join();
    let _ = sampler.join();
    let mut samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    if let Some(h) = held {
        samples.push((held_at, h));
    }
    if let Some(k) = report.after_kib {
        samples.push((after_at, k));
    }
    samples.sort_unstable();
    report.curve = Curve {
        samples,
        attack_at,
        held_at,
        closed_at,
    };
    if let Some(st) = server.exited() {
        if aborted.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            report.aborted = Some(format!("server exited by itself: {st}"));
        }
    }
    if report.aborted.is_none() {
        report.aborted = aborted.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
    // The exact peak, where the server is still there to ask.
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    report.peak_kib = (peak.load(Ordering::Relaxed) as u64).max(hwm);
    report.server_cpu_secs = match (cpu0, cpu_secs(pid)) {
        (Some(c0), Some(c1)) => c1 - c0,
        _ => f64::NAN,
    };
    report.server_log = server
        .stderr
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    drop(server);
    let mut p = std::mem::take(&mut *probes.lock().unwrap_or_else(|p| p.into_inner()));
    p.latencies_us.sort_unstable();
    report.probes = p;
    let mut w = std::mem::take(&mut *warm.lock().unwrap_or_else(|p| p.into_inner()));
    w.latencies_us.sort_unstable();
    report.warm_p50_us = percentile(&w.latencies_us, 0.5);
    report.secs = t0.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsmachine::{apply_mask, Config, Connection, Negotiated, State};

    #[test]
    fn server_frame_parses_lengths() {
        assert_eq!(server_frame(&[0x88, 2, 0x03, 0xf1]), Some((8, 2..4)));
        assert_eq!(server_frame(&[0x88, 2, 0x03]), None);
        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.resize(4 + 256, 0);
        assert_eq!(server_frame(&long), Some((2, 4..260)));
    }

    #[test]
    fn deflated_zeros_inflate_to_their_size() {
        let z = deflated_zeros(3 * COMPRESS_CHUNK + 5, true);
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut d = wsmachine::internals::Decompressor::new(&params, Role::Server);
        let mut out = BytesMut::new();
        d.decompress(&z, true, &mut out, 64 << 20).unwrap();
        assert_eq!(out.len(), 3 * COMPRESS_CHUNK + 5);
        assert!(out.iter().all(|&b| b == 0));
        // The ratio that makes a bomb: about 1000:1.
        assert!(z.len() < out.len() / 900, "{} bytes", z.len());
    }

    /// A default server core fed `bytes`: it must still be open and
    /// waiting for the rest, with no event.
    fn waiting_server_core(bytes: &[u8]) -> (Connection, Instant) {
        let now = Instant::now();
        let mut c = Connection::upgraded(
            Role::Server,
            Config::default(),
            Negotiated::default(),
            None,
            now,
        );
        c.receive(now, bytes);
        assert!(c.poll_event().is_none());
        assert_eq!(c.state(), State::Open);
        (c, now)
    }

    #[test]
    fn plain_hold_is_an_unfinished_message_the_core_accepts() {
        let bytes = attack_bytes(Scenario::PlainHold);
        assert_eq!(bytes.len(), 2 * PLAIN_FRAME + 2 * 14 - 1);
        waiting_server_core(&bytes);
    }

    #[test]
    fn plain_frame_hold_is_one_big_frame_short_of_its_last_byte() {
        let bytes = attack_bytes(Scenario::PlainFrameHold);
        // 2 + 8 bytes of length + 4 of mask, then the payload minus one byte.
        assert_eq!(bytes.len(), 14 + PLAIN_BIG_FRAME - 1);
        assert_eq!(bytes[0], 0x82, "FIN, binary, no RSV");
        assert_eq!(bytes[1], 0x80 | 127, "masked, 64-bit length");
        let len = u64::from_be_bytes(bytes[2..10].try_into().unwrap());
        assert_eq!(len as usize, PLAIN_BIG_FRAME);
        assert_eq!(PLAIN_BIG_FRAME, Config::default().max_frame_size);
        assert!(!Scenario::PlainFrameHold.deflate());
        assert!(Scenario::PlainFrameHold.holds());
        // Within the limits: the core waits for the last byte.
        let (mut c, now) = waiting_server_core(&bytes);
        // With the last byte the message is delivered whole.
        let mut last = [0u8];
        apply_mask(&mut last, MASK, (PLAIN_BIG_FRAME - 1) % 4);
        c.receive(now, &last);
        match c.poll_event() {
            Some(wsmachine::Event::Binary(m)) => assert_eq!(m.len(), PLAIN_BIG_FRAME),
            other => panic!("expected the message, got {other:?}"),
        }
    }

    /// A server that refuses big messages (as one with a memory budget
    /// will): the attacker sees its Close while sending, stops, and counts
    /// the close code, not an error.
    #[test]
    fn a_refusal_while_sending_is_counted_by_its_code() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let cfg = Config {
                max_message_size: 1 << 20,
                ..Config::with_deflate()
            };
            let mut conn = Connection::server(cfg, Instant::now());
            let mut buf = vec![0u8; 64 << 10];
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                while let Some(bytes) = conn.poll_transmit() {
                    tcp.write_all(&bytes).unwrap();
                }
                if conn.should_close_transport() {
                    return;
                }
                while let Some(ev) = conn.poll_event() {
                    if let wsmachine::Event::Request(_) = ev {
                        conn.accept(Instant::now(), wsmachine::Accept::new())
                            .unwrap();
                    }
                }
                tcp.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                match tcp.read(&mut buf) {
                    Ok(0) => conn.receive_eof(Instant::now()),
                    Ok(n) => conn.receive(Instant::now(), &buf[..n]),
                    Err(e) if is_timeout(&e) => conn.handle_timeout(Instant::now()),
                    Err(_) => return,
                }
            }
            panic!("the test server did not finish");
        });
        let sh = Shared {
            stop: AtomicBool::new(false),
            sent: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        };
        let payload = attack_bytes(Scenario::PlainHold);
        let o = attacker(addr, Scenario::PlainHold, &payload, &sh);
        server.join().unwrap();
        assert_eq!(o.close, Some(1009));
        assert!(!o.sent);
        assert_eq!(o.error, None);
    }
}
