//! Support shared by the real-peer interop tests (`interop_*.rs`) and the
//! tests that run the examples (building one, `build_example`): setting up
//! peers no one here wrote (a Python venv with `websockets`, Node's `ws`
//! under `target/`, the system's Chromium), running their scripts from
//! `conformance/peers/` as child processes that are killed by PID when the
//! test ends, an in-process Tokio echo server that reports what it saw, and
//! the echo checks both directions share.
//!
//! Peers that cannot be installed without root (Chromium) are looked up,
//! never installed. A test whose peer's program is missing is compiled as
//! ignored, with the reason in the summary `cargo test` prints, unless
//! `WSMACHINE_REQUIRE_PEERS=1` (CI sets it in `.ci/run`): then it runs and
//! the missing peer fails it. See `conformance/build.rs`.
//!
//! Peer scripts print records, one per line: `TAG key=value key=value ...`
//! with percent-encoded values (see `peers/python/common.py`).
#![allow(dead_code)] // each test binary uses part of this module

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wsmachine::DeflateParams;
use wsmachine_tokio::{
    Accept, CloseCode, CloseFrame, Config, DeflateConfig, Event, Message, PreparedMessage,
};

/// Message sizes every echo check covers: empty, one byte, the largest 7-bit
/// length, the smallest 16-bit length, a 64-bit length, and 1 MiB.
pub(crate) const SIZES: [usize; 6] = [0, 1, 125, 126, 65536, 1 << 20];

/// Non-ASCII text with 2-, 3- and 4-byte UTF-8 sequences.
pub(crate) const UNICODE_TEXT: &str = "héllo wörld ✓ 日本語 🦀";

/// Upper bound on any single network wait in these tests.
pub(crate) const STEP: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Requiring peers

/// The peer, or a failure saying what is missing and how to install it.
///
/// A test reaches this only when its peer's program was found when it was
/// built (`conformance/build.rs`): a test whose peer is absent is compiled
/// as ignored, with the reason, so `cargo test` counts it as ignored rather
/// than passed. What fails here is a peer that is present but cannot be set
/// up (a venv or npm install that fails), which is a failure, not a skip.
pub(crate) fn peer<T>(test: &str, peer: Result<T, String>, install: &str) -> T {
    match peer {
        Ok(p) => p,
        Err(why) => panic!("{test}: peer unavailable: {why}\n  install: {install}"),
    }
}

// ---------------------------------------------------------------------------
// Examples

/// Builds example `name` of package `pkg` with `cargo build` and returns
/// the path cargo reports for it (examples of different packages may share
/// that path: copy it aside before building another).
pub(crate) fn build_example(pkg: &str, name: &str) -> PathBuf {
    build_example_with(pkg, name, &[])
}

/// [`build_example`] with the package's `features` turned on.
pub(crate) fn build_example_with(pkg: &str, name: &str, features: &[&str]) -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "-p", pkg, "--example", name]);
    if !features.is_empty() {
        cargo.args(["--features", &features.join(",")]);
    }
    cargo
        .args(["--message-format=json-render-diagnostics"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit());
    // What `cargo test` sets for this test only (not in the shell that ran
    // it): ring's build script reruns when these change, so with them ring
    // would be rebuilt here, and again by the next `cargo test`.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&&*k)
        {
            cargo.env_remove(&*k);
        }
    }
    let out = cargo.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build -p {pkg} --example {name} failed"
    );
    let stdout = String::from_utf8(out.stdout).expect("cargo prints UTF-8");
    // The artifact line of the example: `"executable":"<path>"`.
    let exe = stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#) && l.contains(pkg))
        .filter(|l| l.contains(r#""kind":["example"]"#))
        .find_map(|l| {
            let (_, rest) = l.split_once(r#""executable":""#)?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} executable in cargo's output for {pkg}"));
    PathBuf::from(exe)
}

// ---------------------------------------------------------------------------
// Paths

/// Cargo's target directory (or `target/<triple>`), from this test
/// executable's path: `<target>/<profile>/deps/<test>-<hash>`.
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// `conformance/peers`, where the peer scripts live.
pub(crate) fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A name no other test, thread or process uses at the same time.
pub(crate) fn unique(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// A fresh directory under `target/interop-tmp`, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> TempDir {
        let dir = target_dir().join("interop-tmp").join(unique(prefix));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Processes

/// Runs `cmd` to completion, killing it (by PID) after `limit`. Stdout and
/// stderr are collected on threads so a chatty child never blocks.
pub(crate) fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {desc}: {e}"))?;
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{desc} did not finish within {limit:?}; stderr:\n{}",
                    String::from_utf8_lossy(&err.join().unwrap_or_default())
                ));
            }
            Err(e) => return Err(format!("waiting for {desc}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// A long-running child (a peer server, a browser, an example binary) that
/// is killed by PID when dropped. Its stdout lines arrive on a channel; its
/// stderr is kept for failure messages.
pub(crate) struct Peer {
    name: String,
    child: Child,
    /// Killed as a process group (the child is the leader of a new group),
    /// for browsers that start helper processes.
    group: bool,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Peer {
    /// Spawns `cmd` (stdin closed, stdout and stderr captured).
    pub(crate) fn spawn(name: &str, cmd: &mut Command) -> Result<Peer, String> {
        Peer::spawn_inner(name, cmd, false)
    }

    /// Spawns `cmd` as the leader of a new process group; dropping the guard
    /// terminates the whole group (the child and the processes it started).
    pub(crate) fn spawn_group(name: &str, cmd: &mut Command) -> Result<Peer, String> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Peer::spawn_inner(name, cmd, true)
    }

    fn spawn_inner(name: &str, cmd: &mut Command, group: bool) -> Result<Peer, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Bounded: keeps the last 64 KiB a chatty browser writes.
            while let Ok(n @ 1..) = err_pipe.read(&mut buf) {
                let mut s = sink.lock().unwrap();
                s.extend_from_slice(&buf[..n]);
                if s.len() > 64 << 10 {
                    let cut = s.len() - (64 << 10);
                    s.drain(..cut);
                }
            }
        });
        Ok(Peer {
            name: name.to_owned(),
            child,
            group,
            lines,
            seen: Vec::new(),
            stderr,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote to stderr so far (the last 64 KiB).
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (at most `limit`) for a stdout line for which `pick` returns
    /// `Some`; lines that do not match are kept for later calls.
    pub(crate) fn wait_for<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<T, String> {
        if let Some(i) = self.seen.iter().position(|l| pick(l).is_some()) {
            let line = self.seen.remove(i);
            return Ok(pick(&line).expect("matched before"));
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => match pick(&line) {
                    Some(t) => return Ok(t),
                    None => self.seen.push(line),
                },
                Err(e) => {
                    let status = self.child.try_wait().ok().flatten();
                    return Err(format!(
                        "{}: no {what} within {limit:?} ({e:?}; exit status {status:?})\nstdout so far:\n{}\nstderr:\n{}",
                        self.name,
                        self.seen.join("\n"),
                        self.stderr()
                    ));
                }
            }
        }
    }

    /// Waits for the `listening on ws://ADDR` line and returns `ADDR`.
    pub(crate) fn wait_listening(&mut self, limit: Duration) -> Result<SocketAddr, String> {
        self.wait_for(limit, "`listening on ws://` line", |l| {
            let rest = l.trim().strip_prefix("listening on ws://")?;
            rest.trim_end_matches('/').parse().ok()
        })
    }

    /// Waits for a record with `tag` whose `key` field equals `value`.
    pub(crate) fn wait_record(
        &mut self,
        limit: Duration,
        tag: &str,
        key: &str,
        value: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        self.wait_for(limit, &format!("`{tag}` record with {key}={value}"), |l| {
            let (t, fields) = parse_record(l)?;
            (t == tag && fields.get(key).map(String::as_str) == Some(value)).then_some(fields)
        })
    }

    /// Terminates the child (and its group) now; also done on drop.
    pub(crate) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) && !self.group {
            return;
        }
        if self.group {
            // SIGTERM lets a browser take its helpers down with it; SIGKILL
            // to the group afterwards for whatever is left. The group id is
            // the child's PID: only processes this test started are in it.
            let pgid = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-TERM", "--", &pgid])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &pgid])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Records printed by peer scripts

/// Parses `TAG key=value ...` (values percent-encoded).
pub(crate) fn parse_record(line: &str) -> Option<(String, BTreeMap<String, String>)> {
    let mut parts = line.split_whitespace();
    let tag = parts.next()?.to_owned();
    let mut fields = BTreeMap::new();
    for p in parts {
        let (k, v) = p.split_once('=')?;
        fields.insert(k.to_owned(), percent_decode(v));
    }
    Some((tag, fields))
}

/// Merges every `result key=value` record of `stdout` into one map.
pub(crate) fn results(stdout: &str) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for line in stdout.lines() {
        if let Some((tag, fields)) = parse_record(line) {
            if tag == "result" {
                all.extend(fields);
            }
        }
    }
    all
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Asserts that the peer reported `ok` for every key in `keys`.
pub(crate) fn assert_all_ok(peer: &str, res: &BTreeMap<String, String>, keys: &[String]) {
    let bad: Vec<String> = keys
        .iter()
        .filter(|k| res.get(*k).map(String::as_str) != Some("ok"))
        .map(|k| format!("{k}: {:?}", res.get(k)))
        .collect();
    assert!(
        bad.is_empty(),
        "{peer} reported failures: {bad:#?}\nall results: {res:#?}"
    );
}

/// The keys every echo scenario of the peer clients reports `ok` for.
pub(crate) fn echo_check_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for n in SIZES {
        keys.push(format!("text.{n}"));
        keys.push(format!("binary.{n}"));
    }
    for k in [
        "text.unicode",
        "fragmented.text",
        "fragmented.binary",
        "fragmented.split_utf8",
        "ping",
    ] {
        keys.push(k.to_owned());
    }
    keys
}

// ---------------------------------------------------------------------------
// Payloads (same shapes as the peer scripts')

/// `n` bytes of compressible ASCII text.
pub(crate) fn text_payload(n: usize) -> String {
    const PATTERN: &str = "wsmachine interop, the quick brown fox jumps over the lazy dog. ";
    PATTERN.repeat(n / PATTERN.len() + 1)[..n].to_owned()
}

/// `n` pseudo-random (incompressible) bytes, reproducible per size.
pub(crate) fn binary_payload(n: usize) -> Vec<u8> {
    let mut x = (n as u32).wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The total payload bytes of one text and one binary message per size.
pub(crate) fn sizes_total() -> u64 {
    SIZES.iter().map(|&n| 2 * n as u64).sum()
}

// ---------------------------------------------------------------------------
// Peer environments

fn python3() -> Result<PathBuf, String> {
    for cand in ["python3", "python"] {
        if let Ok(out) = run_bounded(Command::new(cand).arg("--version"), Duration::from_secs(20)) {
            let v = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            if out.status.success() && v.contains("Python 3") {
                return Ok(PathBuf::from(cand));
            }
        }
    }
    Err("no python3 in PATH".into())
}

fn python_imports_websockets(py: &Path) -> bool {
    py.exists()
        && run_bounded(
            Command::new(py).args(["-c", "import websockets.asyncio.server"]),
            Duration::from_secs(30),
        )
        .is_ok_and(|o| o.status.success())
}

/// The Python interpreter of `target/interop-venv`, with `websockets`
/// installed; creates the venv on first use. Safe when several test
/// binaries do it at once: each builds in its own temporary directory and
/// renames it into place atomically (the loser discards its copy).
pub(crate) fn python_websockets() -> Result<PathBuf, String> {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PY.get_or_init(|| {
        let target = target_dir();
        let venv = target.join("interop-venv");
        let py = venv.join("bin").join("python");
        if python_imports_websockets(&py) {
            return Ok(py);
        }
        let python = python3()?;
        let tmp = target.join(unique("interop-venv.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        let made = (|| {
            let out = run_bounded(
                Command::new(&python).args(["-m", "venv"]).arg(&tmp),
                Duration::from_secs(120),
            )?;
            if !out.status.success() {
                return Err(format!(
                    "python3 -m venv failed (is python3-venv installed?): {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let out = run_bounded(
                Command::new(tmp.join("bin").join("python")).args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                    "websockets>=14,<18",
                ]),
                Duration::from_secs(300),
            )?;
            if !out.status.success() {
                return Err(format!(
                    "pip install websockets failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if venv.exists() && !python_imports_websockets(&py) {
            let _ = std::fs::remove_dir_all(&venv); // a broken leftover
        }
        if std::fs::rename(&tmp, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&tmp); // another process won
        }
        if python_imports_websockets(&py) {
            Ok(py)
        } else {
            Err(format!("{} cannot import websockets", py.display()))
        }
    })
    .clone()
}

/// Runs `peers/python/client.py URL COMPRESSION SCENARIO` to completion and
/// returns its `result` records.
pub(crate) fn run_python_client(
    py: &Path,
    url: &str,
    deflate: bool,
    scenario: &str,
) -> BTreeMap<String, String> {
    let compression = if deflate { "deflate" } else { "none" };
    let out = run_bounded(
        python_script(py, "client.py").args([url, compression, scenario]),
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("python client: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let res = results(&stdout);
    assert!(
        out.status.success() && res.get("done").map(String::as_str) == Some("1"),
        "python client {scenario} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    res
}

/// A Python peer script of `peers/python` run with the venv's interpreter.
pub(crate) fn python_script(py: &Path, script: &str) -> Command {
    let mut cmd = Command::new(py);
    cmd.args(["-u", "-B"])
        .arg(peers_dir().join("python").join(script))
        .current_dir(peers_dir().join("python"));
    cmd
}

/// `node` and the `node_modules` directory (in `target/interop-node`) that
/// holds `ws`; installs `ws` on first use, race-free as the venv above.
#[derive(Clone, Debug)]
pub(crate) struct NodeEnv {
    pub(crate) node_modules: PathBuf,
}

impl NodeEnv {
    /// A Node peer script of `peers/node` with `ws` resolvable.
    pub(crate) fn script(&self, script: &str) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(peers_dir().join("node").join(script))
            .env("NODE_PATH", &self.node_modules)
            .current_dir(peers_dir().join("node"));
        cmd
    }
}

pub(crate) fn node_ws() -> Result<NodeEnv, String> {
    static NODE: OnceLock<Result<NodeEnv, String>> = OnceLock::new();
    NODE.get_or_init(|| {
        let out = run_bounded(
            Command::new("node").arg("--version"),
            Duration::from_secs(20),
        )
        .map_err(|e| format!("no node in PATH: {e}"))?;
        if !out.status.success() {
            return Err("node --version failed".into());
        }
        let target = target_dir();
        let dir = target.join("interop-node");
        let modules = dir.join("node_modules");
        let ok = |m: &Path| m.join("ws").join("package.json").exists();
        if ok(&modules) {
            return Ok(NodeEnv {
                node_modules: modules,
            });
        }
        let tmp = target.join(unique("interop-node.tmp"));
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        std::fs::write(
            tmp.join("package.json"),
            "{\"name\":\"wsmachine-interop-peers\",\"private\":true}\n",
        )
        .map_err(|e| e.to_string())?;
        let out = run_bounded(
            Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "ws@8",
                ])
                .current_dir(&tmp),
            Duration::from_secs(300),
        );
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(format!(
                    "npm install ws failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        }
        if dir.exists() && !ok(&modules) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        if ok(&modules) {
            Ok(NodeEnv {
                node_modules: modules,
            })
        } else {
            Err(format!("{} has no ws", modules.display()))
        }
    })
    .clone()
}

/// The system's Chromium (`$CHROMIUM`, `/usr/bin/chromium`, or `chromium`
/// / `chromium-browser` in PATH). Never installed here: it needs root.
pub(crate) fn chromium() -> Result<PathBuf, String> {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Some(c) = std::env::var_os("CHROMIUM") {
        cands.push(c.into());
    }
    cands.push("/usr/bin/chromium".into());
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            cands.push(dir.join("chromium"));
            cands.push(dir.join("chromium-browser"));
        }
    }
    for c in cands {
        if c.is_file() {
            let out = run_bounded(Command::new(&c).arg("--version"), Duration::from_secs(30));
            if out.is_ok_and(|o| o.status.success()) {
                return Ok(c);
            }
        }
    }
    Err("no chromium found (looked at $CHROMIUM, /usr/bin/chromium, PATH)".into())
}

// ---------------------------------------------------------------------------
// futures-io view of a Tokio stream (for the smol / async-std adapters)

/// A Tokio stream seen through the `futures-io` traits, so the smol and
/// async-std adapters' `accept` (generic over any futures-io stream) can
/// serve connections accepted by a Tokio listener in-process.
///
/// Why not their `echo_server` examples: all three adapters name their
/// example `echo_server`, so a workspace build uplifts them to the same
/// `target/debug/examples/echo_server` (cargo warns of the collision and
/// reports only that path), and a per-package build (`-p`) resolves
/// features differently from `cargo test --workspace` and recompiles part
/// of the graph (≈45 s here). In-process runs the same adapter code.
pub(crate) struct FuturesIo<S>(pub(crate) S);

impl<S: AsyncRead + Unpin> futures_io::AsyncRead for FuturesIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> futures_io::AsyncWrite for FuturesIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// Byte counting, to see compression on the wire

/// Bytes read and written through a [`Counting`] stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) read: Arc<AtomicU64>,
    pub(crate) written: Arc<AtomicU64>,
}

impl Counters {
    pub(crate) fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// A Tokio stream wrapper that counts the bytes crossing it.
pub(crate) struct Counting<S> {
    inner: S,
    counters: Counters,
}

impl<S> Counting<S> {
    pub(crate) fn new(inner: S) -> (Self, Counters) {
        let counters = Counters::default();
        (
            Counting {
                inner,
                counters: counters.clone(),
            },
            counters,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.counters.read.fetch_add(n, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.counters.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Asserts what the wire byte counts say about compression: with deflate,
/// the compressible half of the traffic (text) must have shrunk the total
/// well below the payload; without, the wire carries at least the payload.
pub(crate) fn assert_wire(what: &str, wire: u64, payload: u64, deflate: bool) {
    if deflate {
        assert!(
            wire * 4 < payload * 3,
            "{what}: {wire} bytes on the wire for {payload} payload bytes: compression did not happen"
        );
    } else {
        assert!(
            wire >= payload,
            "{what}: {wire} bytes on the wire for {payload} payload bytes without compression"
        );
    }
}

// ---------------------------------------------------------------------------
// In-process Tokio server (our side, for peer clients)

/// What the in-process server saw on one connection.
#[derive(Debug, Default)]
pub(crate) struct ServerReport {
    pub(crate) path: String,
    /// The offered `Sec-WebSocket-Extensions` header, as the peer sent it.
    pub(crate) offered_extensions: String,
    pub(crate) deflate: bool,
    pub(crate) messages: usize,
    pub(crate) payload_bytes: u64,
    pub(crate) pings: Vec<Bytes>,
    /// The peer's Close frame.
    pub(crate) close: Option<CloseFrame>,
    /// `Some` when the server started the close: the result of `close()`.
    pub(crate) server_close: Option<Result<(), String>>,
    pub(crate) error: Option<String>,
    /// Text messages starting with `RESULT ` (a browser page's verdict).
    pub(crate) results: Vec<String>,
    pub(crate) wire_read: u64,
    pub(crate) wire_written: u64,
}

/// An in-process `wsmachine-tokio` server on 127.0.0.1: echoes every
/// message; on path `/server-close…` it answers the text `close-me` by
/// closing with 4002 "server bye". Each finished connection sends a
/// [`ServerReport`].
pub(crate) struct TokioServer {
    pub(crate) addr: SocketAddr,
    reports: tokio::sync::mpsc::UnboundedReceiver<ServerReport>,
    task: tokio::task::JoinHandle<()>,
}

impl TokioServer {
    pub(crate) async fn start() -> TokioServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, reports) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Bounded: a test opens a handful of connections.
            for _ in 0..64 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let report = tokio::time::timeout(Duration::from_secs(90), serve_one(tcp))
                        .await
                        .unwrap_or_else(|_| ServerReport {
                            error: Some("connection exceeded 90 s".into()),
                            ..ServerReport::default()
                        });
                    let _ = tx.send(report);
                });
            }
        });
        TokioServer {
            addr,
            reports,
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The next finished connection's report (at most `STEP` away).
    pub(crate) async fn report(&mut self) -> ServerReport {
        tokio::time::timeout(STEP, self.reports.recv())
            .await
            .expect("no server report within the time limit")
            .expect("server task ended")
    }
}

impl Drop for TokioServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(tcp: tokio::net::TcpStream) -> ServerReport {
    let (stream, counters) = Counting::new(tcp);
    let mut report = ServerReport::default();
    let mut path = String::new();
    let mut offered = String::new();
    let config = Config::with_deflate();
    let ws = wsmachine_tokio::accept_with(stream, config, |req| {
        path = req.uri().to_owned();
        offered = req
            .header("sec-websocket-extensions")
            .unwrap_or("")
            .to_owned();
        Ok(Accept::new())
    })
    .await;
    report.path = path;
    report.offered_extensions = offered;
    match ws {
        Ok(ws) => echo_and_report(ws, report, Some(&counters)).await,
        Err(e) => {
            report.error = Some(format!("accept failed: {e}"));
            report
        }
    }
}

/// Echoes every message of an accepted connection until it ends and fills
/// in the rest of `report` (`path` and `offered_extensions` are the
/// caller's); `counters` count the bytes of the stream under `ws`, and
/// without them the wire bytes are the connection's own count
/// ([`Stats`](wsmachine_tokio::Stats)), for a stream that cannot be
/// wrapped (an HTTP/2 stream, whose TCP connection carries other streams).
pub(crate) async fn echo_and_report<S>(
    mut ws: wsmachine_tokio::WebSocket<S>,
    mut report: ServerReport,
    counters: Option<&Counters>,
) -> ServerReport
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    report.deflate = ws.negotiated().deflate.is_some();
    let closer = report.path.starts_with("/server-close");
    // Bounded by the number of events a test sends (and the 90 s above).
    for _ in 0..10_000 {
        match ws.recv_event().await {
            None => break,
            Some(Err(e)) => {
                report.error = Some(e.to_string());
                break;
            }
            Some(Ok(ev)) => match ev {
                Event::Text(t) => {
                    report.messages += 1;
                    report.payload_bytes += t.len() as u64;
                    if closer && t == "close-me" {
                        let r = ws.close(CloseCode::from(4002), "server bye").await;
                        report.server_close = Some(r.map_err(|e| e.to_string()));
                        break;
                    }
                    if t.starts_with("RESULT ") {
                        report.results.push(t.to_string());
                    }
                    if let Err(e) = ws.send(Message::Text(t)).await {
                        report.error = Some(format!("send: {e}"));
                        break;
                    }
                }
                Event::Binary(b) => {
                    report.messages += 1;
                    report.payload_bytes += b.len() as u64;
                    if let Err(e) = ws.send(Message::Binary(b)).await {
                        report.error = Some(format!("send: {e}"));
                        break;
                    }
                }
                Event::Ping(p) => report.pings.push(p),
                Event::Close(f) => report.close = Some(f),
                _ => {}
            },
        }
    }
    if report.close.is_none() {
        report.close = ws.close_frame().cloned();
    }
    (report.wire_read, report.wire_written) = match counters {
        Some(c) => (c.read(), c.written()),
        None => {
            let stats = ws.stats();
            (stats.wire_bytes_in, stats.wire_bytes_out)
        }
    };
    report
}

/// Checks the in-process server's view of a peer client's `echo` scenario.
pub(crate) fn assert_server_saw_echo(
    peer: &str,
    r: &ServerReport,
    deflate: bool,
    close: (u16, &str),
) {
    assert_eq!(r.error, None, "{peer}: server error; report {r:#?}");
    assert_eq!(
        r.deflate, deflate,
        "{peer}: negotiated deflate; offered {:?}",
        r.offered_extensions
    );
    // SIZES × 2 + unicode + 3 fragmented messages.
    assert_eq!(r.messages, SIZES.len() * 2 + 4, "{peer}: message count");
    assert!(
        r.pings
            .iter()
            .any(|p| p.starts_with(b"py-ping") || p.starts_with(b"node-ping")),
        "{peer}: the client's ping was not seen: {:?}",
        r.pings
    );
    let want = CloseFrame::new(CloseCode::from(close.0), close.1);
    assert_eq!(
        r.close.as_ref(),
        Some(&want),
        "{peer}: the client's Close frame"
    );
    let payload = r.payload_bytes;
    assert_wire(&format!("{peer} → server"), r.wire_read, payload, deflate);
    assert_wire(
        &format!("server → {peer}"),
        r.wire_written,
        payload,
        deflate,
    );
}

/// Checks the in-process server's view of a `server-close` scenario.
pub(crate) fn assert_server_closed(peer: &str, r: &ServerReport) {
    assert_eq!(r.error, None, "{peer}: server error; report {r:#?}");
    assert_eq!(
        r.server_close,
        Some(Ok(())),
        "{peer}: the server's close() must complete the closing handshake"
    );
    assert_eq!(
        r.close,
        Some(CloseFrame::new(CloseCode::from(4002), "server bye")),
        "{peer}: the peer must echo the server's Close"
    );
}

// ---------------------------------------------------------------------------
// Our Tokio client against a peer server

/// What our client saw; the peer's own report is checked by the caller.
#[derive(Debug)]
pub(crate) struct ClientEcho {
    pub(crate) deflate: bool,
    pub(crate) wire: Counters,
    pub(crate) payload: u64,
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {STEP:?}"))
}

/// Connects our Tokio client (compression offered or not) over a counting
/// TCP stream.
pub(crate) async fn tokio_connect(
    url: &str,
    compression: bool,
) -> (
    wsmachine_tokio::WebSocket<Counting<tokio::net::TcpStream>>,
    Counters,
) {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .expect("ws:// URL");
    let tcp = within("tcp connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("tcp connect");
    let (stream, counters) = Counting::new(tcp);
    let (ws, _resp) = within(
        "handshake",
        wsmachine_tokio::ConnectBuilder::new(url)
            .compression(compression)
            .connect_on(stream),
    )
    .await
    .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    (ws, counters)
}

/// Our Tokio client's echo round: text and binary at every size, a
/// non-ASCII text, a Ping answered by a Pong, then Close 4001 "rust done"
/// echoed by the peer.
pub(crate) async fn tokio_client_echo(url: &str, compression: bool) -> ClientEcho {
    let (mut ws, wire) = tokio_connect(url, compression).await;
    let mut payload = 0;
    for n in SIZES {
        let text = text_payload(n);
        within("send", ws.send(text.clone()))
            .await
            .expect("send text");
        match within("recv", ws.recv()).await {
            Some(Ok(Message::Text(t))) => {
                assert!(t == text.as_str(), "text echo of {n} bytes differs")
            }
            other => panic!("text echo of {n} bytes: {other:?}"),
        }
        let bin = Bytes::from(binary_payload(n));
        within("send", ws.send(bin.clone()))
            .await
            .expect("send binary");
        match within("recv", ws.recv()).await {
            Some(Ok(Message::Binary(b))) => assert!(b == bin, "binary echo of {n} bytes differs"),
            other => panic!("binary echo of {n} bytes: {other:?}"),
        }
        payload += 2 * n as u64;
    }
    within("send", ws.send(UNICODE_TEXT)).await.expect("send");
    match within("recv", ws.recv()).await {
        Some(Ok(Message::Text(t))) => assert_eq!(t, UNICODE_TEXT),
        other => panic!("unicode echo: {other:?}"),
    }
    within("ping", ws.ping(b"rs-ping")).await.expect("ping");
    let mut pong = None;
    for _ in 0..10 {
        match within("pong", ws.recv_event()).await {
            Some(Ok(Event::Pong(p))) => {
                pong = Some(p);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("waiting for the pong: {other:?}"),
        }
    }
    assert_eq!(pong.as_deref(), Some(&b"rs-ping"[..]), "pong payload");
    let deflate = ws.negotiated().deflate.is_some();
    within("close", ws.close(CloseCode::from(4001), "rust done"))
        .await
        .expect("close handshake");
    assert_eq!(
        ws.close_frame(),
        Some(&CloseFrame::new(CloseCode::from(4001), "rust done")),
        "the peer must echo our Close"
    );
    assert!(within("recv after close", ws.recv()).await.is_none());
    ClientEcho {
        deflate,
        wire,
        payload,
    }
}

/// Checks a peer server's report of our client's echo round.
pub(crate) fn assert_peer_server_echo(
    peer: &str,
    report: &BTreeMap<String, String>,
    ours: &ClientEcho,
    compression: bool,
) {
    assert_eq!(
        ours.deflate, compression,
        "{peer}: our side's negotiated deflate"
    );
    let ext = report.get("extensions").map(String::as_str).unwrap_or("");
    assert_eq!(
        ext.contains("permessage-deflate"),
        compression,
        "{peer}: the peer's negotiated extensions {ext:?}"
    );
    assert_eq!(
        report.get("rcvd_code").map(String::as_str),
        Some("4001"),
        "{peer}: {report:?}"
    );
    assert_eq!(
        report.get("rcvd_reason").map(String::as_str),
        Some("rust done"),
        "{peer}: {report:?}"
    );
    let want_msgs = (SIZES.len() * 2 + 1).to_string();
    assert_eq!(
        report.get("messages"),
        Some(&want_msgs),
        "{peer}: message count {report:?}"
    );
    let want_bytes = (sizes_total() + UNICODE_TEXT.len() as u64).to_string();
    assert_eq!(
        report.get("bytes"),
        Some(&want_bytes),
        "{peer}: payload bytes {report:?}"
    );
    assert_wire(
        &format!("client → {peer}"),
        ours.wire.written(),
        ours.payload,
        compression,
    );
    assert_wire(
        &format!("{peer} → client"),
        ours.wire.read(),
        ours.payload,
        compression,
    );
}

/// Our Tokio client on a peer server's `/close4000` path: the server sends
/// "hello" then closes with 4000 "bye".
pub(crate) async fn tokio_client_server_closes(url: &str) {
    let (mut ws, _) = tokio_connect(url, true).await;
    match within("recv", ws.recv()).await {
        Some(Ok(Message::Text(t))) => assert_eq!(t, "hello"),
        other => panic!("expected \"hello\": {other:?}"),
    }
    let end = within("recv", ws.recv()).await;
    assert!(
        end.is_none(),
        "a clean close ends recv with None, got {end:?}"
    );
    assert_eq!(
        ws.close_frame(),
        Some(&CloseFrame::new(CloseCode::from(4000), "bye"))
    );
}

/// Our Tokio client on a peer server's `/ping` path: the server pings us,
/// and tells us whether our (automatic) Pong arrived.
pub(crate) async fn tokio_client_answers_ping(url: &str) {
    let (mut ws, _) = tokio_connect(url, true).await;
    match within("recv", ws.recv()).await {
        Some(Ok(Message::Text(t))) => assert_eq!(t, "pong-ok", "the peer's view of our pong"),
        other => panic!("expected \"pong-ok\": {other:?}"),
    }
    within("close", ws.close(CloseCode::NORMAL, ""))
        .await
        .expect("close");
}

// ---------------------------------------------------------------------------
// Prepared messages fanned out to peer clients

/// A permessage-deflate parameter set, chosen by our server's config; the
/// peer clients offer compression with their defaults
/// (`permessage-deflate; client_max_window_bits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeflateSet {
    /// Compression declined.
    None,
    /// Both sides keep their context (the server's window 12 bits): a
    /// prepared message is compressed by each connection's own compressor.
    ContextTakeover,
    /// `server_no_context_takeover`: one compressed encoding for every
    /// connection.
    ServerNoContextTakeover,
    /// `client_no_context_takeover` only: the server keeps its context.
    ClientNoContextTakeover,
    /// Both: the shared preset.
    NoContextTakeover,
    /// `server_no_context_takeover` with `server_max_window_bits=9`: a
    /// second class of shared encoding.
    SmallServerWindow,
    /// The same with 8 bits, which zlib's deflate does not support (it
    /// uses 9): what we send must still fit a 256-byte window.
    SmallestServerWindow,
}

impl DeflateSet {
    /// (`server_no_context_takeover`, `client_no_context_takeover`,
    /// `server_max_window_bits`), or `None` without compression.
    fn params(self) -> Option<(bool, bool, u8)> {
        match self {
            DeflateSet::None => None,
            DeflateSet::ContextTakeover => Some((false, false, 12)),
            DeflateSet::ServerNoContextTakeover => Some((true, false, 12)),
            DeflateSet::ClientNoContextTakeover => Some((false, true, 12)),
            DeflateSet::NoContextTakeover => Some((true, true, 12)),
            DeflateSet::SmallServerWindow => Some((true, false, 9)),
            DeflateSet::SmallestServerWindow => Some((true, false, 8)),
        }
    }

    fn config(self) -> Config {
        let deflate = self.params().map(|(snct, cnct, bits)| DeflateConfig {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: bits,
            ..DeflateConfig::default()
        });
        Config {
            deflate,
            ..Config::default()
        }
    }

    /// Checks the `Sec-WebSocket-Extensions` a peer client saw accepted.
    pub(crate) fn check_peer_extensions(self, peer: &str, ext: &str) {
        let Some((snct, cnct, bits)) = self.params() else {
            assert_eq!(ext, "", "{peer}: compression declined, {self:?}");
            return;
        };
        let has = |p: &str| ext.split(';').any(|e| e.trim() == p);
        assert!(has("permessage-deflate"), "{peer}: {ext:?}, {self:?}");
        assert_eq!(has("server_no_context_takeover"), snct, "{peer}: {ext:?}");
        assert_eq!(has("client_no_context_takeover"), cnct, "{peer}: {ext:?}");
        assert!(
            has(&format!("server_max_window_bits={bits}")),
            "{peer}: {ext:?}, {self:?}"
        );
    }
}

/// What a fan-out sends each connection, in order: prepared messages (text
/// and binary, under and over `min_compress_size` (128), up to a 64-bit
/// length, empty), with messages of the connection's own between them, so
/// that with context takeover an own message's back-references follow a
/// prepared one's. Twice: the second round repeats the first's content, so
/// a compressor that kept context finds it. `Some` marks a prepared one.
pub(crate) fn fanout_messages() -> Vec<(Message, Option<PreparedMessage>)> {
    let json = |n: usize| {
        let mut s = String::new();
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(
                "{{\"id\":{i},\"user\":\"u{}\",\"ok\":true}},",
                i % 7
            ));
            i += 1;
        }
        s.truncate(n);
        s
    };
    let compressible = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 251 / 8) as u8).collect() };
    // Random bytes repeated once: the only matches are `n` bytes back, so
    // a compressor whose window is larger than the peer was told (a shared
    // encoding of the wrong class) makes the peer's inflater fail.
    let repeated = |n: usize| -> Vec<u8> { binary_payload(n).repeat(2) };
    let mut out = Vec::new();
    for round in 0..2 {
        let prepared = [
            Message::from("hi"),
            Message::from(binary_payload(100)),
            Message::from(json(127)),
            Message::from(json(128)),
            Message::from(binary_payload(4096)),
            Message::from(json(20_000)),
            Message::from(compressible(70_000)),
            Message::from(UNICODE_TEXT),
            Message::from(Vec::new()),
            // Distances over 2^8 and under 2^9, over 2^9 and under 2^12,
            // over 2^12.
            Message::from(repeated(400)),
            Message::from(repeated(3000)),
            Message::from(repeated(20_000)),
        ];
        for (i, m) in prepared.into_iter().enumerate() {
            let p = PreparedMessage::new(m.clone());
            out.push((m, Some(p)));
            if i % 3 == 2 {
                let own = match i {
                    2 => Message::from(json(2000 + round)),
                    5 => Message::from(compressible(3000 + round)),
                    _ => Message::from(text_payload(300)),
                };
                out.push((own, None));
            }
        }
    }
    out
}

fn message_len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
    }
}

/// How `got` differs from `want`.
fn differ(want: &Message, got: &Message) -> String {
    let bytes = |m: &Message| match m {
        Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
        Message::Binary(b) => b.clone(),
    };
    let (w, g) = (bytes(want), bytes(got));
    let at = w.iter().zip(g.iter()).position(|(a, b)| a != b);
    format!(
        "{} bytes of {:?} for {} of {:?}, first difference at {at:?}",
        g.len(),
        got.kind(),
        w.len(),
        want.kind()
    )
}

type Counted = Counting<tokio::net::TcpStream>;

/// A connection of a fan-out, on either surface. The whole connection is
/// larger than the split reader (it holds the sending half and its
/// counters inline, the split one behind a lock): one value per
/// connection of a test, not worth a box.
#[allow(clippy::large_enum_variant)]
enum Target {
    /// Prepared messages queued with the writer's `try_send_prepared`,
    /// which never waits; the reader writes them out.
    Split(
        wsmachine_tokio::WebSocketReader<Counted>,
        wsmachine_tokio::WebSocketWriter<Counted>,
    ),
    /// Sent with `send_prepared().await`.
    Whole(wsmachine_tokio::WebSocket<Counted>),
}

impl Target {
    fn negotiated(&self) -> Option<DeflateParams> {
        match self {
            Target::Split(r, _) => r.negotiated().deflate,
            Target::Whole(ws) => ws.negotiated().deflate,
        }
    }

    /// Sends `m`, as `prepared` when it is one.
    async fn send(
        &mut self,
        m: &Message,
        prepared: Option<&PreparedMessage>,
    ) -> Result<(), wsmachine_tokio::Error> {
        match (self, prepared) {
            // Queued, with or without backpressure: the reader writes it.
            (Target::Split(_, w), Some(p)) => w.try_send_prepared(p).map(drop),
            (Target::Split(_, w), None) => w.try_send(m.clone()).map(drop),
            (Target::Whole(ws), Some(p)) => ws.send_prepared(p).await,
            (Target::Whole(ws), None) => ws.send(m.clone()).await,
        }
    }

    async fn recv(&mut self) -> Option<Result<Message, wsmachine_tokio::Error>> {
        match self {
            Target::Split(r, _) => r.recv().await,
            Target::Whole(ws) => ws.recv().await,
        }
    }

    fn close_frame(&self) -> Option<CloseFrame> {
        match self {
            Target::Split(r, _) => r.close_frame().cloned(),
            Target::Whole(ws) => ws.close_frame().cloned(),
        }
    }

    async fn close(&mut self) -> Result<(), wsmachine_tokio::Error> {
        match self {
            Target::Split(_, w) => w.close(CloseCode::NORMAL, "fan-out done").await,
            Target::Whole(ws) => ws.close(CloseCode::NORMAL, "fan-out done").await,
        }
    }
}

/// What [`prepared_fanout`] saw.
#[derive(Debug)]
pub(crate) struct FanoutReport {
    /// The deflate parameters negotiated on each connection.
    pub(crate) negotiated: Vec<Option<DeflateParams>>,
    /// Bytes our server wrote on each connection, and the payload bytes
    /// each was sent.
    pub(crate) written: Vec<u64>,
    pub(crate) payload: u64,
}

/// Our server's side of a prepared-message fan-out: accepts one connection
/// on `listener` per element of `sets`, with that set's config, queues each message of
/// [`fanout_messages`] to every connection in turn (the same
/// `PreparedMessage` for all: on the even connections, split, with the
/// writer's `try_send_prepared`, own messages with `try_send`; on the odd
/// ones with `send_prepared` and `send`), expects each peer to send every message back
/// unchanged and in order, then closes each connection with 1000.
pub(crate) async fn prepared_fanout(
    listener: tokio::net::TcpListener,
    sets: &[DeflateSet],
    accepted: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<FanoutReport, String> {
    let mut conns = Vec::new();
    for (k, set) in sets.iter().enumerate() {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let _ = accepted.send(());
        let (stream, counters) = Counting::new(tcp);
        let ws = wsmachine_tokio::accept_with(stream, set.config(), |_| Ok(Accept::new()))
            .await
            .map_err(|e| format!("accept: {e}"))?;
        // Both surfaces: every other connection is split.
        let target = if k % 2 == 0 {
            let (r, w) = ws.split();
            Target::Split(r, w)
        } else {
            Target::Whole(ws)
        };
        conns.push((target, counters));
    }
    let msgs = fanout_messages();
    let negotiated = conns.iter().map(|(t, _)| t.negotiated()).collect();
    for (m, prepared) in &msgs {
        for (k, (t, _)) in conns.iter_mut().enumerate() {
            t.send(m, prepared.as_ref())
                .await
                .map_err(|e| format!("connection {k}: send: {e}"))?;
        }
    }
    let expected: Arc<Vec<Message>> = Arc::new(msgs.iter().map(|(m, _)| m.clone()).collect());
    let payload = expected.iter().map(|m| message_len(m) as u64).sum();
    let mut tasks = Vec::new();
    for (k, (mut t, counters)) in conns.into_iter().enumerate() {
        let expected = expected.clone();
        tasks.push(tokio::spawn(async move {
            for (i, want) in expected.iter().enumerate() {
                match t.recv().await {
                    Some(Ok(got)) if got == *want => {}
                    Some(Ok(got)) => {
                        return Err(format!(
                            "connection {k}, message {i}: the peer sent back {}",
                            differ(want, &got)
                        ))
                    }
                    other => {
                        return Err(format!(
                            "connection {k}, message {i}: {other:?} (the peer's Close: {:?})",
                            t.close_frame()
                        ))
                    }
                }
            }
            t.close()
                .await
                .map_err(|e| format!("connection {k}: close: {e}"))?;
            while let Some(m) = t.recv().await {
                m.map_err(|e| format!("connection {k}: after close: {e}"))?;
            }
            Ok(counters.written())
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(FanoutReport {
        negotiated,
        written,
        payload,
    })
}

/// Checks our server's side of a fan-out whose connections had `sets`.
pub(crate) fn assert_fanout(peer: &str, sets: &[DeflateSet], r: &FanoutReport) {
    for (k, (d, set)) in r.negotiated.iter().zip(sets).enumerate() {
        let got = d.map(|d| {
            (
                d.server_no_context_takeover,
                d.client_no_context_takeover,
                d.server_max_window_bits,
            )
        });
        assert_eq!(
            got,
            set.params(),
            "{peer}, connection {k}: negotiated {d:?}"
        );
    }
    for (k, (w, set)) in r.written.iter().zip(sets).enumerate() {
        assert_wire(
            &format!("server → {peer} {k}, {set:?}"),
            *w,
            r.payload,
            set.params().is_some(),
        );
    }
}

/// Runs a prepared-message fan-out from our server to peer clients, one
/// client per element of `sets` (connected one after the other, so the
/// k-th gets `sets[k]`), each started by `client(url)` and returning its
/// `result` records; `extensions` is the key under which a client reports
/// the `Sec-WebSocket-Extensions` it saw accepted.
pub(crate) async fn fanout_to_peers<F>(peer: &str, sets: &[DeflateSet], extensions: &str, client: F)
where
    F: Fn(&str) -> BTreeMap<String, String> + Clone + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("addr"));
    let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let owned = sets.to_vec();
    let server = tokio::spawn(async move {
        tokio::time::timeout(
            Duration::from_secs(90),
            prepared_fanout(listener, &owned, tx),
        )
        .await
    });
    let mut clients = Vec::new();
    for _ in sets {
        let (client, url) = (client.clone(), url.clone());
        clients.push(tokio::task::spawn_blocking(move || client(&url)));
        // The next client connects once this one was accepted.
        if tokio::time::timeout(STEP, accepted.recv())
            .await
            .ok()
            .flatten()
            .is_none()
        {
            break; // the server failed: its error is reported below
        }
    }
    let report = server
        .await
        .expect("server task")
        .expect("fan-out within 90 s")
        .unwrap_or_else(|e| panic!("{peer}, {sets:?}: {e}"));
    assert_fanout(peer, sets, &report);
    let sent = fanout_messages().len().to_string();
    for (c, set) in clients.into_iter().zip(sets) {
        let res = c.await.expect("client thread");
        set.check_peer_extensions(peer, &res[extensions]);
        assert_eq!(res["mirrored"], sent, "{peer}, {set:?}: {res:?}");
        assert_eq!(res["close.rcvd_code"], "1000", "{peer}, {set:?}: {res:?}");
    }
}
