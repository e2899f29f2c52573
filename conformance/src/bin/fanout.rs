//! The load side of the fan-out benchmark (issue 15; `bench/fanout.sh`).
//!
//! ```text
//! fanout --addr HOST:PORT --conns N --messages M --server-pid PID
//!        [--size 1024] [--raw | --deflate] [--label NAME] [--timeout 300]
//! ```
//!
//! Opens `--conns` connections to a `fanout_server` (the client source
//! addresses spread over 127.0.0.2–127.0.0.201, so repeated runs of 10,000
//! connections do not run out of ports to TIME_WAIT), reads the server's
//! CPU time (utime+stime of `/proc/PID/stat`, and the nanosecond sum of
//! `/proc/PID/task/*/schedstat`) once every handshake is done, receives
//! the `--messages` messages the server publishes on every connection,
//! reads the CPU time again when the last message has arrived on the last
//! connection, and prints the server's CPU time per delivered message.
//! The connections are closed after that reading, so the closing
//! handshakes are not counted.
//!
//! Every byte of every message on every connection is compared with the
//! message expected at that position (`bench::json_message`, built here
//! independently of the server), and the count must be exact: a variant
//! that drops, reorders or corrupts messages fails the run instead of
//! looking fast. Stronger than a checksum, and as cheap (a `memcmp`).
//!
//! Without `--deflate` the client speaks the protocol itself (no
//! compression offered; `--raw`: no handshake either, for the raw TCP
//! server), parsing frames as they stream in, so the load side stays cheap.
//! With `--deflate` each connection is a wsmachine client offering
//! permessage-deflate, which must be accepted; the payloads it inflates
//! are checked the same way, and the bytes received on the wire are
//! counted (compressed size per message).
//!
//! The runtime is a single-threaded tokio (run it on the other core than
//! the server). Every loop is bounded: connecting by 120 s, the whole
//! delivery by `--timeout`. Loopback only.
// This is an event loop around sockets: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use wsmachine::{apply_mask, DeflateConfig, Message};
use wsmachine_conformance::bench::{clk_tck, cpu_ns, cpu_ticks, json_message, parse_header};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connections opened at once.
const CONNECT_BATCH: usize = 256;
const READ_BUF: usize = 64 << 10;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const USAGE: &str = "usage:
  fanout --addr HOST:PORT --conns N --messages M --server-pid PID
         [--size BYTES] [--raw | --deflate] [--label NAME] [--timeout SECS]";

struct Args {
    addr: SocketAddr,
    conns: usize,
    messages: usize,
    size: usize,
    server_pid: u32,
    raw: bool,
    deflate: bool,
    label: String,
    timeout: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut pid = None;
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        conns: 1000,
        messages: 100,
        size: 1024,
        server_pid: 0,
        raw: false,
        deflate: false,
        label: "server".into(),
        timeout: 300,
    };
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
                addr = Some(v.parse().map_err(|e| format!("--addr {v}: {e}"))?);
            }
            "--conns" => a.conns = num("--conns", value("--conns")?)?,
            "--messages" => a.messages = num("--messages", value("--messages")?)?,
            "--size" => a.size = num("--size", value("--size")?)?,
            "--server-pid" => pid = Some(num("--server-pid", value("--server-pid")?)?),
            "--raw" => a.raw = true,
            "--deflate" => a.deflate = true,
            "--label" => a.label = value("--label")?,
            "--timeout" => a.timeout = num("--timeout", value("--timeout")?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    a.addr = addr.ok_or("--addr is required")?;
    a.server_pid = pid.ok_or("--server-pid is required")?;
    if !a.addr.ip().is_loopback() {
        return Err("loopback addresses only".into());
    }
    if a.conns == 0 || a.messages == 0 {
        return Err("--conns and --messages must be at least 1".into());
    }
    if a.raw && a.deflate {
        return Err("--raw and --deflate exclude each other".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fanout: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BoxError::from)
        .and_then(|rt| rt.block_on(run(&args)));
    if let Err(e) = result {
        eprintln!("fanout: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- connecting

async fn connect(addr: SocketAddr, source: Ipv4Addr) -> Result<TcpStream, BoxError> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let tcp = sock.connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// The opening handshake without extensions; returns the bytes that
/// followed the response.
async fn handshake(tcp: &mut TcpStream, addr: SocketAddr) -> Result<Vec<u8>, BoxError> {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
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
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err("handshake refused".into());
            }
            return Ok(buf[end + 4..].to_vec());
        }
        if buf.len() > 16 << 10 {
            return Err("handshake response too long".into());
        }
    }
}

/// A TCP stream that counts the bytes it reads (the wire size of what the
/// server sent, compressed or not).
struct Counting {
    tcp: TcpStream,
    read: u64,
}

impl AsyncRead for Counting {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        this.read += (buf.filled().len() - before) as u64;
        r
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

type Ws = wsmachine_tokio::WebSocket<Counting>;

enum Conn {
    /// Our own frame parser (no compression), with the bytes that came
    /// after the handshake response.
    Plain(TcpStream, Vec<u8>),
    Deflate(Box<Ws>),
}

async fn open(addr: SocketAddr, raw: bool, deflate: bool, i: usize) -> Result<Conn, BoxError> {
    // 200 source addresses: 50 connections each at 10,000.
    let source = Ipv4Addr::new(127, 0, 0, 2 + (i % 200) as u8);
    let mut tcp = connect(addr, source).await?;
    if raw {
        return Ok(Conn::Plain(tcp, Vec::new()));
    }
    if !deflate {
        let leftover = handshake(&mut tcp, addr).await?;
        return Ok(Conn::Plain(tcp, leftover));
    }
    let (ws, _) = wsmachine_tokio::ConnectBuilder::new(format!("ws://{addr}/"))
        .no_proxy()
        .compression(DeflateConfig::default())
        .connect_on(Counting { tcp, read: 0 })
        .await?;
    if ws.negotiated().deflate.is_none() {
        return Err("the server did not accept permessage-deflate".into());
    }
    Ok(Conn::Deflate(Box::new(ws)))
}

// ---------------------------------------------------------------- checking

/// Checks a stream of unmasked, uncompressed text frames against the
/// expected messages, byte by byte, as the bytes arrive (a frame split
/// across reads is compared piece by piece, never buffered).
struct Checker<'a> {
    expected: &'a [Vec<u8>],
    /// Messages completed.
    count: usize,
    /// Of the current frame: payload bytes left, and the offset reached.
    left: u64,
    off: usize,
    /// A header split across reads.
    partial: Vec<u8>,
    mismatches: usize,
}

impl<'a> Checker<'a> {
    fn new(expected: &'a [Vec<u8>]) -> Self {
        Checker {
            expected,
            count: 0,
            left: 0,
            off: 0,
            partial: Vec::new(),
            mismatches: 0,
        }
    }

    fn done(&self) -> bool {
        self.count == self.expected.len() && self.left == 0 && self.partial.is_empty()
    }

    fn end_message(&mut self) {
        if self.off != self.expected[self.count].len() {
            self.mismatches += 1;
        }
        self.count += 1;
        self.off = 0;
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        loop {
            if self.left > 0 {
                let n = (data.len() as u64).min(self.left) as usize;
                let want = self.expected[self.count].get(self.off..self.off + n);
                if want != Some(&data[..n]) {
                    self.mismatches += 1;
                }
                self.off += n;
                self.left -= n as u64;
                data = &data[n..];
                if self.left > 0 {
                    return Ok(());
                }
                self.end_message();
            }
            if data.is_empty() {
                return Ok(());
            }
            let had = self.partial.len();
            let parsed = if had == 0 {
                parse_header(data)
            } else {
                let take = data.len().min(14 - had);
                self.partial.extend_from_slice(&data[..take]);
                let h = parse_header(&self.partial);
                self.partial.truncate(had);
                h
            };
            let Some((hlen, len, b0, masked)) = parsed else {
                self.partial.extend_from_slice(data);
                return Ok(());
            };
            data = &data[hlen - had..];
            self.partial.clear();
            // FIN, no RSV bit, text: what every server variant sends.
            if b0 != 0x81 || masked {
                return Err(format!(
                    "unexpected frame: first byte {b0:#04x}, masked {masked}"
                ));
            }
            if self.count == self.expected.len() {
                return Err("more messages than published".into());
            }
            self.left = len;
            if len == 0 {
                self.end_message();
            }
        }
    }
}

#[derive(Default)]
struct ConnStats {
    count: usize,
    mismatches: usize,
    wire_bytes: u64,
}

/// Receives every message on one connection; returns the connection for
/// closing after the CPU reading.
async fn receive(conn: Conn, expected: Arc<Vec<Vec<u8>>>) -> (Conn, Result<ConnStats, BoxError>) {
    match conn {
        Conn::Plain(mut tcp, leftover) => {
            let r = async {
                let mut c = Checker::new(&expected);
                c.feed(&leftover)?;
                let mut buf = vec![0u8; READ_BUF];
                let mut wire = leftover.len() as u64;
                while !c.done() {
                    let n = tcp.read(&mut buf).await?;
                    if n == 0 {
                        return Err(format!("closed after {} messages", c.count).into());
                    }
                    wire += n as u64;
                    c.feed(&buf[..n])?;
                }
                Ok(ConnStats {
                    count: c.count,
                    mismatches: c.mismatches,
                    wire_bytes: wire,
                })
            }
            .await;
            (Conn::Plain(tcp, Vec::new()), r)
        }
        Conn::Deflate(mut ws) => {
            let r = async {
                let mut st = ConnStats::default();
                while st.count < expected.len() {
                    let msg = match ws.recv().await {
                        Some(m) => m?,
                        None => return Err(format!("closed after {} messages", st.count).into()),
                    };
                    let ok = match &msg {
                        Message::Text(t) => t.as_bytes() == &expected[st.count][..],
                        Message::Binary(_) => false,
                    };
                    st.mismatches += usize::from(!ok);
                    st.count += 1;
                }
                st.wire_bytes = ws.get_ref().read;
                Ok::<_, BoxError>(st)
            }
            .await;
            (Conn::Deflate(ws), r)
        }
    }
}

/// Closes a connection: a Close frame, then the server's answer (or EOF).
async fn close(conn: Conn) {
    match conn {
        Conn::Plain(mut tcp, _) => {
            // Masked Close 1000 (a client's frames are masked).
            let mut frame = vec![0x88, 0x82, MASK[0], MASK[1], MASK[2], MASK[3], 0x03, 0xe8];
            apply_mask(&mut frame[6..], MASK, 0);
            let _ = tcp.write_all(&frame).await;
            let mut buf = [0u8; 256];
            while let Ok(1..) = tcp.read(&mut buf).await {}
        }
        Conn::Deflate(mut ws) => {
            let _ = ws.close(wsmachine::CloseCode::NORMAL, "").await;
            while let Some(Ok(_)) = ws.recv().await {}
        }
    }
}

// ---------------------------------------------------------------- the run

async fn run(a: &Args) -> Result<(), BoxError> {
    let expected: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..a.messages as u64)
            .map(|i| json_message(i, a.size).into_bytes())
            .collect(),
    );
    let pid = a.server_pid.to_string();

    let t_open = Instant::now();
    let mut conns = Vec::with_capacity(a.conns);
    let opening = async {
        for start in (0..a.conns).step_by(CONNECT_BATCH) {
            let mut set = tokio::task::JoinSet::new();
            for i in start..(start + CONNECT_BATCH).min(a.conns) {
                set.spawn(open(a.addr, a.raw, a.deflate, i));
            }
            while let Some(r) = set.join_next().await {
                conns.push(r??);
            }
        }
        Ok::<_, BoxError>(())
    };
    tokio::time::timeout(Duration::from_secs(120), opening)
        .await
        .map_err(|_| "opening the connections took more than 120 s")??;
    let open_secs = t_open.elapsed().as_secs_f64();

    // The server publishes 1 s after its last handshake: read its CPU time now.
    let s0 = cpu_ticks(&pid).ok_or("cannot read the server's /proc/PID/stat")?;
    let n0 = cpu_ns(&pid).unwrap_or(0);
    let c0 = cpu_ticks("self").unwrap_or(0);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in conns {
        set.spawn(receive(c, expected.clone()));
    }
    let mut stats = ConnStats::default();
    let mut errors = Vec::new();
    let mut done = Vec::with_capacity(a.conns);
    let gather = async {
        while let Some(r) = set.join_next().await {
            match r {
                Ok((c, Ok(st))) => {
                    stats.count += st.count;
                    stats.mismatches += st.mismatches;
                    stats.wire_bytes += st.wire_bytes;
                    done.push(c);
                }
                Ok((c, Err(e))) => {
                    errors.push(e.to_string());
                    done.push(c);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
    };
    let timed_out = tokio::time::timeout(Duration::from_secs(a.timeout), gather)
        .await
        .is_err();
    let secs = t0.elapsed().as_secs_f64();
    let s1 = cpu_ticks(&pid).ok_or("cannot read the server's /proc/PID/stat")?;
    let n1 = cpu_ns(&pid).unwrap_or(0);
    let c1 = cpu_ticks("self").unwrap_or(0);
    if timed_out {
        errors.push(format!("not every message arrived within {} s", a.timeout));
        set.abort_all();
    }

    // Close after the reading, bounded.
    let mut closing = tokio::task::JoinSet::new();
    for c in done {
        closing.spawn(close(c));
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while closing.join_next().await.is_some() {}
    })
    .await;

    let deliveries = (a.conns * a.messages) as f64;
    let tck = clk_tck();
    let server_us = (s1 - s0) as f64 / tck * 1e6 / deliveries;
    let server_ns_us = (n1.saturating_sub(n0)) as f64 / 1e3 / deliveries;
    let client_us = (c1 - c0) as f64 / tck * 1e6 / deliveries;
    let wire_per_msg = stats.wire_bytes as f64 / stats.count.max(1) as f64;
    let ok = errors.is_empty() && stats.mismatches == 0 && stats.count == a.conns * a.messages;
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        eprintln!(
            "fanout: {} error(s), e.g.: {}",
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
        "{}: {} conns x {} msgs of {} B{} (opened in {open_secs:.1} s), delivered {} in {secs:.2} s \
         ({:.0} msg/s), {} mismatched, {wire_per_msg:.0} B/msg on the wire: server CPU {server_us:.3} us/msg \
         (schedstat {server_ns_us:.3}), fanout CPU {client_us:.3} us/msg",
        a.label,
        a.conns,
        a.messages,
        a.size,
        if a.deflate { ", deflate" } else { "" },
        stats.count,
        stats.count as f64 / secs,
        stats.mismatches,
    );
    println!(
        "RESULT label={} conns={} messages={} size={} deflate={} delivered={} mismatches={} errors={} \
         secs={secs:.3} wire_bytes_per_msg={wire_per_msg:.1} server_cpu_us={server_us:.4} \
         server_cpu_ns_us={server_ns_us:.4} client_cpu_us={client_us:.4} ok={}",
        a.label,
        a.conns,
        a.messages,
        a.size,
        a.deflate,
        stats.count,
        stats.mismatches,
        errors.len(),
        u8::from(ok),
    );
    let _ = std::io::stdout().flush();
    if !ok {
        return Err("not every message arrived intact".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn checker_accepts_split_frames_and_counts_mismatches() {
        let expected: Vec<Vec<u8>> = (0..4).map(|i| json_message(i, 300).into_bytes()).collect();
        let wire: Vec<u8> = expected.iter().flat_map(|m| frame(m)).collect();
        for step in [1usize, 3, 7, 301, wire.len()] {
            let mut c = Checker::new(&expected);
            for ch in wire.chunks(step) {
                c.feed(ch).unwrap();
            }
            assert!(c.done(), "step {step}");
            assert_eq!(c.mismatches, 0, "step {step}");
        }
        // Messages out of order: every one mismatches.
        let mut swapped = expected.clone();
        swapped.swap(0, 1);
        swapped.swap(2, 3);
        let wire: Vec<u8> = swapped.iter().flat_map(|m| frame(m)).collect();
        let mut c = Checker::new(&expected);
        c.feed(&wire).unwrap();
        assert_eq!((c.count, c.mismatches), (4, 4));
        // One message too many is an error.
        let mut c = Checker::new(&expected[..1]);
        assert!(c
            .feed(&[frame(&expected[0]), frame(&expected[1])].concat())
            .is_err());
    }
}
