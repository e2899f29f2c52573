//! Shared by the benchmark tools (`fanout`, `loadgen`, the `fanout_server`
//! example): the deterministic message text both ends build, so a receiver
//! can check every byte it got without the sender telling it what to expect,
//! the frame-header parse of their receivers, and the process CPU and
//! memory readings from `/proc`.

/// The `i`-th benchmark message: `size` bytes of JSON-like text (a
/// market-data tick with a few price levels), the same on every call.
///
/// Compression benchmarks need text that compresses like real traffic:
/// repeated keys and structure, varying numbers. Consecutive messages
/// differ, so a compressor that keeps its context between messages
/// (context takeover) gains from the shared structure, as in a real feed,
/// but cannot send a whole message as one back-reference.
///
/// ```
/// let m = wsmachine_conformance::bench::json_message(7, 1024);
/// assert_eq!(m.len(), 1024);
/// assert!(m.starts_with("{\"seq\":7,") && m.ends_with("]}"));
/// assert_eq!(m, wsmachine_conformance::bench::json_message(7, 1024));
/// ```
pub fn json_message(i: u64, size: usize) -> String {
    const TOPICS: [&str; 4] = ["AAPL", "MSFT", "NVDA", "AMZN"];
    let mut s = format!(
        "{{\"seq\":{i},\"topic\":\"quotes.eq.{}\",\"levels\":[",
        TOPICS[(i % 4) as usize]
    );
    // xorshift64: deterministic and cheap; `| 1` keeps the state non-zero.
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut first = true;
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let entry = format!(
            "{}{{\"px\":{}.{:02},\"qty\":{},\"side\":\"{}\"}}",
            if first { "" } else { "," },
            100 + x % 400,
            (x >> 12) % 100,
            (x >> 20) % 5000,
            if x & 1 == 0 { "bid" } else { "ask" }
        );
        if s.len() + entry.len() + 2 > size {
            break;
        }
        s.push_str(&entry);
        first = false;
    }
    // JSON whitespace fills the message to its exact size.
    while s.len() + 2 < size {
        s.push(' ');
    }
    s.push_str("]}");
    s.truncate(size);
    s
}

/// utime + stime of process `pid` (`"self"` for this one) from
/// `/proc/PID/stat`, in clock ticks, all threads included.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may contain spaces) start
    // after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Time on CPU of every thread of process `pid`, in nanoseconds, from
/// `/proc/PID/task/*/schedstat`: the same quantity as [`cpu_ticks`] with
/// nanosecond resolution (ticks are 10 ms, too coarse for short runs), for
/// threads alive when it is read.
pub fn cpu_ns(pid: &str) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread may end between listing and reading: skip it.
        let Ok(s) = std::fs::read_to_string(path) else {
            continue;
        };
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we know).
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn vm_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Parses a frame header: `(header length, payload length, first byte,
/// masked)`.
pub fn parse_header(b: &[u8]) -> Option<(usize, u64, u8, bool)> {
    if b.len() < 2 {
        return None;
    }
    let masked = b[1] & 0x80 != 0;
    let (mut hlen, len) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (4, u64::from(u16::from_be_bytes([b[2], b[3]])))
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            let mut l = [0u8; 8];
            l.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(l))
        }
        n => (2, u64::from(n)),
    };
    if masked {
        hlen += 4;
    }
    (b.len() >= hlen).then_some((hlen, len, b[0], masked))
}

/// The tokio `echo_server` example in its HTTP/2 mode, started on a free
/// loopback port: its address (from the `listening on https://ADDR` line)
/// and a TLS client configuration that trusts the certificate it generated
/// (from the `certificate: PATH` line). Ended, by its PID, when dropped.
pub struct H2EchoServer {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Trusts the server's certificate only.
    pub tls: std::sync::Arc<wsmachine_tokio::rustls::ClientConfig>,
}

impl H2EchoServer {
    /// Starts `exe --h2 127.0.0.1:0` (an `echo_server` built with the
    /// `http2` feature) and reads its first two lines. Panics, saying
    /// what it read, when they are not what the example prints.
    pub fn start(exe: &std::path::Path) -> H2EchoServer {
        use std::io::{BufRead, BufReader};
        use wsmachine_tokio::rustls::pki_types::{pem::PemObject, CertificateDer};
        use wsmachine_tokio::rustls::{self, ClientConfig, RootCertStore};

        let mut child = std::process::Command::new(exe)
            .args(["--h2", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} --h2: {e}", exe.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut line = || lines.next().and_then(Result::ok).unwrap_or_default();
        let (first, second) = (line(), line());
        let printed = first
            .strip_prefix("listening on https://")
            .and_then(|rest| rest.split(' ').next())
            .zip(second.strip_prefix("certificate: "));
        let Some((addr, pem)) = printed else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("echo_server --h2 printed {first:?} and {second:?}");
        };
        let mut roots = RootCertStore::empty();
        let cert = CertificateDer::from_pem_file(pem).expect("the printed certificate");
        roots.add(cert).expect("a root");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        H2EchoServer {
            child,
            addr: addr.to_owned(),
            tls: std::sync::Arc::new(tls),
        }
    }

    /// The server's process id (for its CPU time in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for H2EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
