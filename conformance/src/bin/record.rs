//! Corpus generator and driver-based test peers.
//!
//! ```text
//! record corpus [--only PEER[,PEER]] [--scenario S] [--out DIR]
//!                                                   regenerate conformance/traces/ from real peers
//! record serve [ADDR] [--trace-dir DIR]             echo server over the recording driver
//! record autobahn-client URL AGENT [--trace-out FILE]
//!                                                   fuzzingserver client over the recording driver
//! record check FILE...                              check verdicts, replay (whole and byte by byte)
//! ```
//!
//! Every corpus session gets the peer's verdict (the `verdict:` header line;
//! the rules per peer are in the crate documentation). A session the peer
//! rejected is not saved: it goes to `target/rejected-traces/`, is listed
//! in the failure summary, and the command exits non-zero. The Python and
//! Node peers are `scripts/py_peer.py` and `node_peer.js`; the
//! python, node and tungstenite peers are also recorded against the tokio
//! and smol adapters (echo, both roles, ± deflate; see
//! `wsmachine_conformance::adapter`).
//!
//! PEER is one of `python-websockets`, `node-ws`, `tungstenite`, `autobahn`,
//! `chromium`. The corpus command installs Python `websockets` into
//! `target/peers-venv`, Node `ws` into `target/node-peers` and `wstest` into
//! `target/autobahn-venv` when missing. Chromium is never installed (it
//! needs root): `$CHROMIUM` when set, else `/usr/bin/chromium` or
//! `chromium` / `chromium-browser` in PATH, and the peer is skipped with a
//! message when there is none (`record corpus --only chromium` records only
//! its server-role traces, `traces/chromium/`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::collections::BTreeMap;
use tokio::net::{TcpListener, TcpStream};
use wsmachine::{Config, Role};

use wsmachine_conformance::adapter::{self, Adapter, AdapterSession};
use wsmachine_conformance::driver::{self, EchoScript, Script, Session, Step, Steps};
use wsmachine_conformance::trace::{Action, Kind, Trace, Verdict};
use wsmachine_conformance::{parse_trace, replay_both, Recorder};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Builds the command line of an external peer from its arguments.
type PeerCommand = Box<dyn Fn(&[&str]) -> Command>;

const TUNGSTENITE: &str = "tungstenite 0.26.2 (Rust, in process, blocking std TcpStream)";
const AUTOBAHN: &str = "autobahn-testsuite 25.10.1 (wstest, Python 3 port)";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("record: cannot start tokio: {e}");
            std::process::exit(2);
        }
    };
    let r = match args.first().map(String::as_str) {
        Some("corpus") => rt.block_on(corpus(&args[1..])),
        Some("serve") => rt.block_on(serve(&args[1..])),
        Some("autobahn-client") => rt.block_on(autobahn_client(&args[1..])),
        Some("check") => check(&args[1..]),
        _ => {
            Err("usage: record corpus|serve|autobahn-client|check … (see src/bin/record.rs)".into())
        }
    };
    if let Err(e) = r {
        eprintln!("record: {e}");
        std::process::exit(1);
    }
}

fn check(files: &[String]) -> Result<(), BoxError> {
    let mut bad = 0;
    for f in files {
        let text = std::fs::read_to_string(f)?;
        match parse_trace(&text)
            .map_err(|e| e.to_string())
            .and_then(|t| replay_both(&t))
        {
            Ok(s) => println!(
                "ok   {f} ({} recv chunks, {} sent bytes, {} events)",
                s.recv_chunks, s.sent_bytes, s.events
            ),
            Err(e) => {
                bad += 1;
                println!("FAIL {f}: {e}");
            }
        }
    }
    if bad > 0 {
        return Err(format!("{bad} of {} traces failed", files.len()).into());
    }
    Ok(())
}

// ------------------------------------------------------------------ driver servers

fn server_session(peer: &str, scenario: &str, deflate: bool) -> Session {
    let mut s = Session::new(Role::Server, peer, scenario);
    s.config = if deflate {
        Config::with_deflate()
    } else {
        Config::default()
    };
    s.config.ping_interval = None;
    s
}

async fn serve(args: &[String]) -> Result<(), BoxError> {
    let addr = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let trace_dir = arg_value(args, "--trace-dir").map(PathBuf::from);
    if let Some(d) = &trace_dir {
        std::fs::create_dir_all(d)?;
    }
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    let mut n = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        n += 1;
        let trace_dir = trace_dir.clone();
        tokio::spawn(async move {
            let mut s = server_session("unknown client", "echo server", true);
            s.limit = Duration::from_secs(600);
            s.config.max_message_size = 64 << 20;
            let rec = if trace_dir.is_some() {
                Recorder::new()
            } else {
                Recorder::disabled()
            };
            match driver::run(stream, &s, &mut EchoScript, rec).await {
                Ok(t) => {
                    if let Some(d) = trace_dir {
                        let _ = std::fs::write(d.join(format!("conn-{n:04}.trace")), t.to_string());
                    }
                }
                Err(e) => eprintln!("connection {n}: {e}"),
            }
        });
    }
}

/// The fuzzingserver loop (getCaseCount, runCase, updateReports) over the driver.
async fn autobahn_client(args: &[String]) -> Result<(), BoxError> {
    let url = args.first().cloned().ok_or("autobahn-client URL AGENT")?;
    let agent = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "wsmachine-driver".into());
    let trace_out = arg_value(args, "--trace-out");
    let base = wsmachine::WsUrl::parse(&url)?;
    let addr = format!("{}:{}", base.host, base.port);
    let session = |path: String, scenario: &str| {
        let mut s = Session::new(Role::Client, AUTOBAHN, scenario);
        s.config = Config::with_deflate();
        s.config.ping_interval = None;
        s.request.host = base.host_header();
        s.request.path = path;
        s.limit = Duration::from_secs(300);
        s
    };
    let s = session("/getCaseCount".into(), "getCaseCount");
    let mut steps = Steps::new([Step::Messages(1)]);
    driver::run(
        TcpStream::connect(&addr).await?,
        &s,
        &mut steps,
        Recorder::disabled(),
    )
    .await?;
    let count: usize = steps
        .texts
        .first()
        .and_then(|t| t.trim().parse().ok())
        .ok_or("no case count")?;
    eprintln!("autobahn-client: {count} cases");
    for case in 1..=count {
        let s = session(
            format!("/runCase?case={case}&agent={agent}"),
            &format!("autobahn case {case} (echo)"),
        );
        let stream = TcpStream::connect(&addr).await?;
        let _ = stream.set_nodelay(true);
        let rec = if trace_out.is_some() {
            Recorder::new()
        } else {
            Recorder::disabled()
        };
        match driver::run(stream, &s, &mut EchoScript, rec).await {
            Ok(t) => {
                if let Some(f) = &trace_out {
                    std::fs::write(f, t.to_string())?;
                }
            }
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    let s = session(format!("/updateReports?agent={agent}"), "updateReports");
    let mut steps = Steps::new([]);
    driver::run(
        TcpStream::connect(&addr).await?,
        &s,
        &mut steps,
        Recorder::disabled(),
    )
    .await?;
    Ok(())
}

// ------------------------------------------------------------------ corpus

struct Out {
    dir: PathBuf,
    written: Vec<PathBuf>,
    /// Traces recorded and replayed, per `peer role recorder`, for the summary.
    counts: std::collections::BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl Out {
    /// Saves `trace` with the peer's `verdict`, unless the peer rejected the
    /// session: then nothing is saved (a stale file of that name is
    /// removed, so the corpus never keeps a session a peer rejected) and the
    /// rejection is listed among the failures.
    fn save(
        &mut self,
        peer_dir: &str,
        name: &str,
        mut trace: Trace,
        verdict: Verdict,
    ) -> Result<(), BoxError> {
        let dir = self.dir.join(peer_dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.trace"));
        if !verdict.ok {
            let _ = std::fs::remove_file(&path);
            // Kept out of the corpus, for whoever looks into the rejection.
            let kept = workspace_root()
                .join("target/rejected-traces")
                .join(peer_dir);
            std::fs::create_dir_all(&kept)?;
            trace.header.verdict = Some(verdict.clone());
            std::fs::write(kept.join(format!("{name}.trace")), trace.to_string())?;
            println!(
                "REJECTED {} (kept in {}) -- verdict: {verdict}",
                path.display(),
                kept.display()
            );
            self.failures.push(format!(
                "{}: the peer rejected the session ({}): verdict: {verdict}",
                path.display(),
                trace.header.scenario
            ));
            return Ok(());
        }
        trace.header.verdict = Some(verdict);
        let text = trace.to_string();
        std::fs::write(&path, &text)?;
        let replayed = parse_trace(&text)
            .map_err(|e| e.to_string())
            .and_then(|t| replay_both(&t));
        match replayed {
            Ok(_) => {
                println!("recorded {} ({} items)", path.display(), trace.items.len());
                let recorder = if trace.header.recorded_by.starts_with("wsmachine-tokio") {
                    "tokio adapter"
                } else if trace.header.recorded_by.starts_with("wsmachine-smol") {
                    "smol adapter"
                } else {
                    "driver"
                };
                let role = match trace.header.role {
                    Role::Client => "client",
                    Role::Server => "server",
                };
                *self
                    .counts
                    .entry(format!("{peer_dir} {role} {recorder}"))
                    .or_default() += 1;
            }
            Err(e) => {
                println!("recorded {} -- REPLAY FAILS: {e}", path.display());
                self.failures.push(format!("{}: {e}", path.display()));
            }
        }
        self.written.push(path);
        Ok(())
    }

    /// A session that produced no trace (the session itself failed).
    fn failed(&mut self, what: &str, e: impl std::fmt::Display, verdict: Option<&Verdict>) {
        let v = verdict.map_or_else(String::new, |v| format!(" (peer's verdict: {v})"));
        println!("FAILED {what}: {e}{v}");
        self.failures.push(format!("{what}: {e}{v}"));
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn field(k: &str, v: impl std::fmt::Display) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// One `TAG key=value …` record of a peer script (values percent-encoded).
fn parse_record(line: &str) -> Option<(String, BTreeMap<String, String>)> {
    let mut parts = line.split_whitespace();
    let tag = parts.next()?.to_owned();
    let mut fields = BTreeMap::new();
    for p in parts {
        let (k, v) = p.split_once('=')?;
        fields.insert(k.to_owned(), percent_decode(v));
    }
    Some((tag, fields))
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
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

/// The Close code a peer must have received from us when the scenario
/// went as designed: our Close (or our echo of the peer's) for the normal
/// ends, 1007 / 1002 for the invalid UTF-8 and reserved-opcode cases.
fn want_close(scenario: &str) -> u16 {
    match scenario {
        "server-close" => 1001,
        "badutf8" => 1007,
        "badframe" => 1002,
        _ => 1000,
    }
}

/// The verdict of an external peer *client* (python / node) from its exit
/// status and records: exit 0, `done` printed, every `result` `ok`, no
/// `error`, and the Close it received is [`want_close`].
fn client_script_verdict(
    exit: Option<std::process::ExitStatus>,
    stdout: &str,
    want: u16,
) -> Verdict {
    let mut ok = true;
    let mut fields = Vec::new();
    match exit.and_then(|s| s.code()) {
        Some(0) => fields.push(field("peer-exit", 0)),
        Some(c) => {
            ok = false;
            fields.push(field("peer-exit", c));
        }
        None => {
            ok = false;
            fields.push(field("peer-exit", "killed-after-timeout"));
        }
    }
    let (mut checks, mut bad, mut done, mut close) = (0, Vec::new(), false, None);
    for line in stdout.lines() {
        match parse_record(line) {
            Some((tag, f)) if tag == "result" => {
                for (k, v) in f {
                    checks += 1;
                    if v != "ok" {
                        bad.push(format!("{k}:{v}"));
                    }
                }
            }
            Some((tag, f)) if tag == "close" => close = f.get("rcvd_code").cloned(),
            Some((tag, f)) if tag == "error" => bad.push(format!(
                "error:{}",
                f.get("message").map_or("", String::as_str)
            )),
            Some((tag, _)) if tag == "done" => done = true,
            _ => {}
        }
    }
    fields.push(field(
        "peer-checks",
        format!("{}/{checks}", checks - bad.len().min(checks)),
    ));
    if !bad.is_empty() {
        ok = false;
        fields.push(field("peer-failed", bad.join(",")));
    }
    if !done {
        ok = false;
        fields.push(field("peer-done", "no"));
    }
    let close = close.unwrap_or_else(|| "none".into());
    if close != want.to_string() {
        ok = false;
        fields.push(field("peer-close-expected", want));
    }
    fields.push(field("peer-close", close));
    Verdict::new(ok, fields)
}

/// The verdict of an external peer *server* from its `report` record for
/// the connection: no error, its checks `ok`, and the Close it received is
/// [`want_close`].
fn server_report_verdict(report: Option<&BTreeMap<String, String>>, want: u16) -> Verdict {
    let Some(r) = report else {
        return Verdict::new(false, vec![field("peer-report", "none-within-10s")]);
    };
    let get = |k: &str| r.get(k).map_or("", String::as_str);
    let mut ok = true;
    let mut fields = vec![field("peer-report", "yes")];
    if !get("error").is_empty() {
        ok = false;
        fields.push(field("peer-error", get("error")));
    }
    fields.push(field("peer-checks", get("checks")));
    ok &= get("checks") == "ok";
    if get("rcvd_code") != want.to_string() {
        ok = false;
        fields.push(field("peer-close-expected", want));
    }
    fields.push(field("peer-close", get("rcvd_code")));
    Verdict::new(ok, fields)
}

/// A peer server process: killed (by its own PID) when dropped; its stdout
/// records arrive on a channel, read by a thread.
struct PeerServer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PeerServer {
    fn spawn(mut cmd: Command) -> Result<PeerServer, BoxError> {
        let mut child = cmd.stdout(Stdio::piped()).spawn()?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut s = PeerServer { child, lines };
        // Up to its "ready" line.
        loop {
            match s.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.starts_with("ready") => return Ok(s),
                Ok(_) => {}
                Err(_) => {
                    let st = s.child.try_wait().ok().flatten();
                    return Err(format!("peer server not ready (exit status {st:?})").into());
                }
            }
        }
    }

    /// The next `report` record for `path` (others are skipped), within 10 s.
    fn report_for(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            if let Some((tag, f)) = parse_record(&line) {
                if tag == "report" && f.get("path").map(String::as_str) == Some(path) {
                    return Some(f);
                }
            }
        }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a peer client process to its end (killed after 20 s) and returns its
/// exit status (`None` when it had to be killed) and stdout.
fn wait_client(mut child: Child) -> (Option<std::process::ExitStatus>, String) {
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = out {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Err(_) => break None,
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    (status, reader.join().unwrap_or_default())
}

fn ensure_peers(root: &Path) -> Result<(String, String), BoxError> {
    let venv = root.join("target/peers-venv");
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    let py = venv.join("bin/python");
    if !Command::new(&py)
        .args(["-c", "import websockets"])
        .status()?
        .success()
    {
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", "websockets"]))?;
    }
    let pyver = String::from_utf8(
        Command::new(&py)
            .args(["-c", "import websockets; print(websockets.__version__)"])
            .output()?
            .stdout,
    )?;
    let node = root.join("target/node-peers");
    if !node.join("node_modules/ws").exists() {
        std::fs::create_dir_all(&node)?;
        run(Command::new("npm")
            .args(["install", "--silent", "ws"])
            .current_dir(&node))?;
    }
    let pkg = std::fs::read_to_string(node.join("node_modules/ws/package.json"))?;
    let nodever = pkg
        .split("\"version\"")
        .nth(1)
        .and_then(|s| s.split('"').nth(1))
        .unwrap_or("?")
        .to_string();
    Ok((pyver.trim().to_string(), nodever))
}

fn run(cmd: &mut Command) -> Result<(), BoxError> {
    let st = cmd.status()?;
    if !st.success() {
        return Err(format!("{cmd:?} failed: {st}").into());
    }
    Ok(())
}

/// A client-side scenario: request path, our script, what it shows.
fn client_scenarios() -> Vec<(&'static str, &'static str, Vec<Step>)> {
    let t = |s: &str| Step::Do(Action::SendText(s.into()));
    vec![
        (
            "echo",
            "/echo",
            vec![
                t("hello"),
                Step::Messages(1),
                Step::Do(Action::SendBinary(vec![0, 1, 2, 255])),
                Step::Messages(1),
                Step::Do(Action::Fragment {
                    kind: Kind::Text,
                    last: false,
                    data: b"Hel".to_vec(),
                }),
                Step::Do(Action::Fragment {
                    kind: Kind::Text,
                    last: false,
                    data: b"lo, ".to_vec(),
                }),
                Step::Do(Action::Fragment {
                    kind: Kind::Text,
                    last: true,
                    data: b"fragments".to_vec(),
                }),
                Step::Messages(1),
                t(&"compressible ".repeat(40)),
                Step::Messages(1),
                Step::Do(Action::Ping(b"p1".to_vec())),
                Step::Pong,
                Step::Do(Action::Close(1000, "done".into())),
            ],
        ),
        ("server-close", "/close", vec![]),
        (
            "ping",
            "/ping",
            vec![
                Step::Messages(1),
                Step::Do(Action::Close(1000, "done".into())),
            ],
        ),
        (
            "fragments",
            "/fragments",
            vec![
                Step::Messages(1),
                Step::Do(Action::Close(1000, "done".into())),
            ],
        ),
        ("badutf8", "/badutf8", vec![]),
        ("badframe", "/badframe", vec![]),
    ]
}

/// A server-side scenario: the peer client's scenario name and our script.
fn server_script(scenario: &str) -> Box<dyn Script> {
    match scenario {
        "server-close" => Box::new(Steps::new([
            Step::Messages(1),
            Step::Do(Action::Close(1001, "going away".into())),
        ])),
        // Waits for the client's "ping me" first: closing right after the
        // Pong raced the client's own send (python-websockets then failed
        // its send with ConnectionClosedOK, and that session was in the
        // corpus as if it had gone well).
        "ping" => Box::new(Steps::new([
            Step::Messages(1),
            Step::Do(Action::Ping(b"are you there".to_vec())),
            Step::Do(Action::SendText("hello from server".into())),
            Step::Pong,
            Step::Do(Action::Close(1000, "done".into())),
        ])),
        _ => Box::new(EchoScript),
    }
}

const SERVER_SCENARIOS: [&str; 4] = ["echo", "server-close", "ping", "badutf8"];

/// The adapters recorded against the external peers (async-std runs the
/// smol adapter's generic code).
const ADAPTERS: [Adapter; 2] = [Adapter::Tokio, Adapter::Smol];

/// The peer server's verdict on the connection to `path` it served.
type ServerVerdict<'a> = &'a mut dyn FnMut(&str, u16) -> Verdict;

async fn record_client_vs(
    out: &mut Out,
    peer_dir: &str,
    peer: &str,
    port: u16,
    deflate: bool,
    only: Option<&str>,
    verdict_of: ServerVerdict<'_>,
) -> Result<(), BoxError> {
    let suffix = if deflate { "-deflate" } else { "" };
    for (name, path, steps) in client_scenarios() {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let scenario = format!(
            "client {name} against {path}{}",
            if deflate {
                ", permessage-deflate offered"
            } else {
                ""
            }
        );
        let mut s = Session::new(Role::Client, peer, &scenario);
        s.config = if deflate {
            Config::with_deflate()
        } else {
            Config::default()
        };
        s.config.ping_interval = None;
        s.request.host = format!("127.0.0.1:{port}");
        s.request.path = path.into();
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let _ = stream.set_nodelay(true);
        let mut script = Steps::new(steps);
        let trace = driver::run(stream, &s, &mut script, Recorder::new()).await;
        let verdict = tokio::task::block_in_place(|| verdict_of(path, want_close(name)));
        let file = format!("client-{name}{suffix}");
        match trace {
            Ok(t) => out.save(peer_dir, &file, t, verdict)?,
            Err(e) => out.failed(&format!("{peer_dir}/{file}"), e, Some(&verdict)),
        }
    }
    // The adapters as clients: the echo scenario.
    if only.is_some_and(|o| o != "echo") {
        return Ok(());
    }
    for adapter in ADAPTERS {
        let s = AdapterSession {
            adapter,
            role: Role::Client,
            peer: peer.into(),
            scenario: format!(
                "{} adapter client echo against /echo (text, binary, compressible text, ping, close 1000){}",
                adapter.name(),
                if deflate {
                    ", permessage-deflate offered"
                } else {
                    ""
                }
            ),
            deflate,
            url: format!("ws://127.0.0.1:{port}/echo"),
            limit: Duration::from_secs(20),
        };
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let trace = adapter::run(stream, &s).await;
        let verdict = tokio::task::block_in_place(|| verdict_of("/echo", 1000));
        let file = format!("{}-client-echo{suffix}", adapter.name());
        match trace {
            Ok(t) => out.save(peer_dir, &file, t, verdict)?,
            Err(e) => out.failed(&format!("{peer_dir}/{file}"), e, Some(&verdict)),
        }
    }
    Ok(())
}

/// Starts a peer client for one session; the returned function waits for
/// it and gives its verdict.
type PeerClient<'a> = &'a dyn Fn(&str) -> Result<Box<dyn FnOnce() -> Verdict + Send>, BoxError>;

/// Accepts one connection on `listener` and records it (through the driver
/// or, with `adapter`, through that adapter) while the peer client runs.
#[allow(clippy::too_many_arguments)]
async fn record_server_vs(
    out: &mut Out,
    peer_dir: &str,
    peer: &str,
    scenario: &str,
    deflate: bool,
    adapter: Option<Adapter>,
    listener: &TcpListener,
    client: PeerClient<'_>,
) -> Result<(), BoxError> {
    let accepted = if deflate {
        ", permessage-deflate accepted"
    } else {
        ""
    };
    let waiter = client(scenario)?;
    let suffix = if deflate { "-deflate" } else { "" };
    let accept = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    let (trace, file) = match accept {
        Ok(Ok((stream, _))) => {
            let _ = stream.set_nodelay(true);
            match adapter {
                None => {
                    let s = server_session(peer, &format!("server {scenario}{accepted}"), deflate);
                    let mut script = server_script(scenario);
                    (
                        driver::run(stream, &s, script.as_mut(), Recorder::new()).await,
                        format!("server-{scenario}{suffix}"),
                    )
                }
                Some(a) => {
                    let s = AdapterSession {
                        adapter: a,
                        role: Role::Server,
                        peer: peer.into(),
                        scenario: format!(
                            "{} adapter server {scenario}, echoes every message{accepted}",
                            a.name()
                        ),
                        deflate,
                        url: String::new(),
                        limit: Duration::from_secs(20),
                    };
                    (
                        adapter::run(stream, &s).await,
                        format!("{}-server-{scenario}{suffix}", a.name()),
                    )
                }
            }
        }
        Ok(Err(e)) => (Err(e), format!("server-{scenario}{suffix}")),
        Err(_) => (
            Err(std::io::Error::other("no connection within 10 s")),
            format!("server-{scenario}{suffix}"),
        ),
    };
    let verdict = tokio::task::spawn_blocking(waiter).await?;
    match trace {
        Ok(t) => out.save(peer_dir, &file, t, verdict)?,
        Err(e) => out.failed(&format!("{peer_dir}/{file}"), e, Some(&verdict)),
    }
    Ok(())
}

async fn corpus(args: &[String]) -> Result<(), BoxError> {
    let root = workspace_root();
    let only: Option<Vec<String>> =
        arg_value(args, "--only").map(|s| s.split(',').map(str::to_string).collect());
    let want = |p: &str| only.as_ref().map_or(true, |o| o.iter().any(|x| x == p));
    let scenario_only = arg_value(args, "--scenario");
    let mut out = Out {
        dir: arg_value(args, "--out")
            .map_or_else(|| root.join("conformance/traces"), PathBuf::from),
        written: Vec::new(),
        counts: BTreeMap::new(),
        failures: Vec::new(),
    };
    let scripts = root.join("conformance/scripts");
    let (pyver, nodever) = if want("python-websockets") || want("node-ws") {
        ensure_peers(&root)?
    } else {
        (String::new(), String::new())
    };
    let py = root.join("target/peers-venv/bin/python");
    let node_modules = root.join("target/node-peers/node_modules");

    // Python websockets and Node ws: external processes.
    let externals: Vec<(&str, String, PeerCommand)> = vec![
        (
            "python-websockets",
            format!("python-websockets {pyver} (asyncio API, CPython)"),
            Box::new({
                let py = py.clone();
                let script = scripts.join("py_peer.py");
                move |a: &[&str]| {
                    let mut c = Command::new(&py);
                    c.arg(&script).args(a);
                    c
                }
            }),
        ),
        (
            "node-ws",
            format!("node-ws {nodever} (Node.js)"),
            Box::new({
                let script = scripts.join("node_peer.js");
                let nm = node_modules.clone();
                move |a: &[&str]| {
                    let mut c = Command::new("node");
                    c.arg(&script).args(a).env("NODE_PATH", &nm);
                    c
                }
            }),
        ),
    ];
    for (dir, peer, cmd) in &externals {
        if !want(dir) {
            continue;
        }
        for deflate in [false, true] {
            let comp = if deflate { "deflate" } else { "none" };
            // Our client against their server.
            let port = free_port()?;
            let server = PeerServer::spawn(cmd(&["server", &port.to_string(), comp]))?;
            let mut verdict_of = |path: &str, want: u16| {
                server_report_verdict(server.report_for(path).as_ref(), want)
            };
            record_client_vs(
                &mut out,
                dir,
                peer,
                port,
                deflate,
                scenario_only.as_deref(),
                &mut verdict_of,
            )
            .await?;
            drop(server);
            // Their client against our server.
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("ws://{}/", listener.local_addr()?);
            let client = |scenario: &str| -> Result<Box<dyn FnOnce() -> Verdict + Send>, BoxError> {
                let child = cmd(&["client", &url, scenario, comp])
                    .stdout(Stdio::piped())
                    .spawn()?;
                let want = want_close(scenario);
                Ok(Box::new(move || {
                    let (status, stdout) = wait_client(child);
                    client_script_verdict(status, &stdout, want)
                }))
            };
            for scenario in SERVER_SCENARIOS {
                if scenario_only.as_deref().is_some_and(|o| o != scenario)
                    || (deflate && scenario != "echo")
                {
                    continue;
                }
                record_server_vs(
                    &mut out, dir, peer, scenario, deflate, None, &listener, &client,
                )
                .await?;
            }
            if scenario_only.as_deref().map_or(true, |o| o == "echo") {
                for a in ADAPTERS {
                    record_server_vs(
                        &mut out,
                        dir,
                        peer,
                        "echo",
                        deflate,
                        Some(a),
                        &listener,
                        &client,
                    )
                    .await?;
                }
            }
        }
    }

    if want("tungstenite") {
        let (port, reports) = tung::spawn_server()?;
        let mut verdict_of = |path: &str, want: u16| tung::server_verdict(&reports, path, want);
        record_client_vs(
            &mut out,
            "tungstenite",
            TUNGSTENITE,
            port,
            false,
            scenario_only.as_deref(),
            &mut verdict_of,
        )
        .await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = |scenario: &str| -> Result<Box<dyn FnOnce() -> Verdict + Send>, BoxError> {
            let want = want_close(scenario);
            let scenario = scenario.to_string();
            let h = std::thread::spawn(move || tung::client(addr, &scenario));
            Ok(Box::new(move || tung::client_verdict(h.join(), want)))
        };
        for scenario in SERVER_SCENARIOS {
            if scenario_only.as_deref().is_some_and(|o| o != scenario) {
                continue;
            }
            record_server_vs(
                &mut out,
                "tungstenite",
                TUNGSTENITE,
                scenario,
                false,
                None,
                &listener,
                &client,
            )
            .await?;
        }
        if scenario_only.as_deref().map_or(true, |o| o == "echo") {
            for a in ADAPTERS {
                record_server_vs(
                    &mut out,
                    "tungstenite",
                    TUNGSTENITE,
                    "echo",
                    false,
                    Some(a),
                    &listener,
                    &client,
                )
                .await?;
            }
        }
    }

    if want("autobahn") {
        autobahn_corpus(&root, &mut out).await?;
    }

    if want("chromium") {
        chromium::corpus(&root, &mut out, scenario_only.as_deref()).await?;
    }

    println!(
        "{} traces written, {} failures",
        out.written.len(),
        out.failures.len()
    );
    for (k, n) in &out.counts {
        println!("  {n:3} {k}");
    }
    if !out.failures.is_empty() {
        println!("failures (rejected by the peer, failed sessions, traces that do not replay):");
        for f in &out.failures {
            println!("  {f}");
        }
        return Err(format!("{} sessions failed", out.failures.len()).into());
    }
    Ok(())
}

/// Autobahn cases recorded in both roles (small ones; one wstest run per case).
const AUTOBAHN_CASES: [&str; 12] = [
    "1.1.1", "1.2.2", "2.3", "3.1", "5.3", "5.6", "6.4.1", "7.1.1", "7.5.1", "12.1.1", "13.1.1",
    "13.7.1",
];

/// wstest's verdict on one case: `run.sh` ended cleanly and the case's
/// `behavior` and `behaviorClose` in the report (`index.json` in its out
/// dir) are OK or INFORMATIONAL.
fn wstest_verdict(
    py: &Path,
    outdir: &Path,
    agent: &str,
    case: &str,
    run: Option<std::process::ExitStatus>,
) -> Verdict {
    let mut fields = Vec::new();
    let mut ok = true;
    match run.and_then(|s| s.code()) {
        Some(0) => fields.push(field("run-exit", 0)),
        c => {
            ok = false;
            fields.push(field(
                "run-exit",
                c.map_or("none".into(), |c| c.to_string()),
            ));
        }
    }
    let read = Command::new(py)
        .args([
            "-c",
            "import json,sys; c=json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]]; print(c['behavior'], c['behaviorClose'])",
        ])
        .arg(outdir.join("index.json"))
        .args([agent, case])
        .stderr(Stdio::null())
        .output();
    let text = read
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match text.as_deref().and_then(|t| t.split_once(' ')) {
        Some((b, bc)) => {
            let good = |v: &str| v == "OK" || v == "INFORMATIONAL";
            ok &= good(b) && good(bc);
            fields.push(field("wstest", b));
            fields.push(field("wstest-close", bc));
        }
        None => {
            ok = false;
            fields.push(field("wstest", "no-report"));
        }
    }
    Verdict::new(ok, fields)
}

async fn autobahn_corpus(root: &Path, out: &mut Out) -> Result<(), BoxError> {
    let venv = root.join("target/autobahn-venv");
    let wstest = venv.join("bin/wstest");
    let py = venv.join("bin/python");
    let shared = root.join("../shared/autobahn");
    if !wstest.exists() {
        run(Command::new("bash").arg(shared.join("setup.sh")).arg(&venv))?;
    }
    let work = root.join("target/autobahn-corpus");
    let self_exe = std::env::current_exe()?;
    for case in AUTOBAHN_CASES {
        // fuzzingclient against our server.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}", listener.local_addr()?);
        let outdir = work.join(format!("client-{case}"));
        let _ = std::fs::remove_dir_all(&outdir);
        let child = Command::new("bash")
            .arg(shared.join("run.sh"))
            .args(["client", &url])
            .arg(&outdir)
            .arg(case)
            .env("WSTEST", &wstest)
            .env("AGENT", "wsmachine-driver")
            .stdout(Stdio::null())
            .spawn()?;
        let mut s = server_session(
            AUTOBAHN,
            &format!("autobahn fuzzingclient case {case}, we echo"),
            true,
        );
        s.limit = Duration::from_secs(60);
        let trace = match tokio::time::timeout(Duration::from_secs(30), listener.accept()).await {
            Ok(Ok((stream, _))) => {
                let _ = stream.set_nodelay(true);
                driver::run(stream, &s, &mut EchoScript, Recorder::new()).await
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("wstest did not connect within 30 s")),
        };
        let (status, _) = tokio::task::spawn_blocking(move || wait_client(child)).await?;
        let verdict = wstest_verdict(&py, &outdir, "wsmachine-driver", case, status);
        let file = format!("server-case-{case}");
        match trace {
            Ok(t) => out.save("autobahn", &file, t, verdict)?,
            Err(e) => out.failed(&format!("autobahn/{file}"), e, Some(&verdict)),
        }

        // Our client against fuzzingserver.
        let port = free_port()?;
        let file = work.join(format!("server-{case}.trace"));
        let outdir = work.join(format!("server-{case}"));
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_dir_all(&outdir);
        let st = Command::new("bash")
            .arg(shared.join("run.sh"))
            .args(["server", &port.to_string()])
            .arg(&outdir)
            .arg(case)
            .arg("--")
            .arg(&self_exe)
            .args([
                "autobahn-client",
                &format!("ws://127.0.0.1:{port}"),
                "wsmachine-driver",
                "--trace-out",
            ])
            .arg(&file)
            .env("WSTEST", &wstest)
            .stdout(Stdio::null())
            .status()?;
        let verdict = wstest_verdict(&py, &outdir, "wsmachine-driver", case, Some(st));
        let name = format!("client-case-{case}");
        match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_trace(&t).map_err(|e| e.to_string()))
        {
            Ok(mut trace) => {
                trace.header.scenario = format!("autobahn fuzzingserver case {case}, we echo");
                out.save("autobahn", &name, trace, verdict)?;
            }
            Err(e) => out.failed(&format!("autobahn/{name}"), e, Some(&verdict)),
        }
    }
    Ok(())
}

mod tung {
    //! tungstenite peers, in process on blocking threads. Each reports what
    //! it concluded: the Close it received from us, or the error that ended
    //! it (a `ConnectionClosed` after the closing handshake is the normal end).
    use super::*;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::CloseFrame;
    use tungstenite::Message;

    type Ws = tungstenite::WebSocket<StdStream>;

    /// How a tungstenite session ended: the Close code received from us
    /// (`None`: none) and what went wrong, if anything.
    pub(super) type Outcome = (Option<u16>, Result<(), String>);

    pub(super) fn spawn_server() -> Result<(u16, Receiver<(String, Outcome)>), BoxError> {
        let l = StdListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let tx: Sender<(String, Outcome)> = tx.clone();
                std::thread::spawn(move || {
                    let mut path = String::new();
                    let mut close = None;
                    let r = serve_one(s, &mut path, &mut close).map_err(|e| e.to_string());
                    let _ = tx.send((path, (close, r)));
                });
            }
        });
        Ok((port, rx))
    }

    /// The tungstenite server's verdict on the connection to `path`.
    pub(super) fn server_verdict(
        reports: &Receiver<(String, Outcome)>,
        path: &str,
        want: u16,
    ) -> Verdict {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match reports.recv_timeout(left) {
                Ok((p, outcome)) if p == path => return verdict(outcome, want),
                Ok(_) => {}
                Err(_) => {
                    return Verdict::new(false, vec![field("tungstenite", "no-report-within-10s")])
                }
            }
        }
    }

    /// The tungstenite client's verdict (its thread's result).
    pub(super) fn client_verdict(joined: std::thread::Result<Outcome>, want: u16) -> Verdict {
        match joined {
            Ok(o) => verdict(o, want),
            Err(_) => Verdict::new(false, vec![field("tungstenite", "panicked")]),
        }
    }

    fn verdict((close, r): Outcome, want: u16) -> Verdict {
        let mut ok = true;
        let mut fields = Vec::new();
        match r {
            Ok(()) => fields.push(field("tungstenite", "ok")),
            Err(e) => {
                ok = false;
                fields.push(field("tungstenite", e));
            }
        }
        if close != Some(want) {
            ok = false;
            fields.push(field("peer-close-expected", want));
        }
        fields.push(field(
            "peer-close",
            close.map_or_else(|| "none".into(), |c| c.to_string()),
        ));
        Verdict::new(ok, fields)
    }

    /// Reads until the connection ends; the Close received is noted. The
    /// normal end (after the closing handshake) is `ConnectionClosed`.
    fn finish(ws: &mut Ws, close: &mut Option<u16>) -> Result<(), BoxError> {
        loop {
            match ws.read() {
                Ok(Message::Close(f)) => {
                    *close = Some(f.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    return Err(format!("unexpected message {m:?}").into())
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    #[allow(clippy::result_large_err)]
    fn serve_one(
        s: StdStream,
        path_out: &mut String,
        close: &mut Option<u16>,
    ) -> Result<(), BoxError> {
        let _ = s.set_nodelay(true);
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let p2 = path.clone();
        let mut ws = tungstenite::accept_hdr(
            s,
            move |req: &tungstenite::handshake::server::Request, resp| {
                if let Ok(mut p) = p2.lock() {
                    *p = req.uri().path().to_string();
                }
                Ok(resp)
            },
        )?;
        let path = path.lock().map(|p| p.clone()).unwrap_or_default();
        path_out.clone_from(&path);
        match path.as_str() {
            "/close" => {
                ws.send(Message::text("bye soon"))?;
                ws.close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "going away".into(),
                }))?;
            }
            "/ping" => ws.send(Message::Ping(b"are you there".to_vec().into()))?,
            "/fragments" => {
                ws.write(Message::Frame(Frame::message(
                    b"frag".to_vec(),
                    OpCode::Data(Data::Text),
                    false,
                )))?;
                ws.write(Message::Frame(Frame::message(
                    b"ment".to_vec(),
                    OpCode::Data(Data::Continue),
                    false,
                )))?;
                ws.send(Message::Frame(Frame::message(
                    b"ed".to_vec(),
                    OpCode::Data(Data::Continue),
                    true,
                )))?;
            }
            "/badutf8" => ws.get_mut().write_all(&[0x81, 0x02, 0xc3, 0x28])?,
            "/badframe" => ws.get_mut().write_all(&[0x83, 0x00])?,
            _ => {}
        }
        loop {
            match ws.read() {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => ws.send(m)?,
                Ok(Message::Pong(_)) if path == "/ping" => {
                    ws.send(Message::text("pong received"))?
                }
                Ok(Message::Close(f)) => {
                    *close = Some(f.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next text or binary message, checked against what was sent.
    fn echo_of(ws: &mut Ws, sent: &Message) -> Result<(), BoxError> {
        loop {
            match ws.read()? {
                m @ (Message::Text(_) | Message::Binary(_)) => {
                    if &m != sent {
                        return Err(format!("echo {m:?} differs from {sent:?}").into());
                    }
                    return Ok(());
                }
                _ => continue,
            }
        }
    }

    pub(super) fn client(addr: SocketAddr, scenario: &str) -> Outcome {
        let mut close = None;
        let r = run_client(addr, scenario, &mut close).map_err(|e| e.to_string());
        (close, r)
    }

    fn run_client(
        addr: SocketAddr,
        scenario: &str,
        close: &mut Option<u16>,
    ) -> Result<(), BoxError> {
        let s = StdStream::connect(addr)?;
        let _ = s.set_nodelay(true);
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), s)?;
        match scenario {
            "echo" => {
                for m in [
                    Message::text("hello"),
                    Message::binary(vec![0u8, 1, 2, 255]),
                ] {
                    ws.send(m.clone())?;
                    echo_of(&mut ws, &m)?;
                }
                ws.write(Message::Frame(Frame::message(
                    b"Hel".to_vec(),
                    OpCode::Data(Data::Text),
                    false,
                )))?;
                ws.write(Message::Frame(Frame::message(
                    b"lo, ".to_vec(),
                    OpCode::Data(Data::Continue),
                    false,
                )))?;
                ws.send(Message::Frame(Frame::message(
                    b"fragments".to_vec(),
                    OpCode::Data(Data::Continue),
                    true,
                )))?;
                echo_of(&mut ws, &Message::text("Hello, fragments"))?;
                let big = Message::text("compressible ".repeat(40));
                ws.send(big.clone())?;
                echo_of(&mut ws, &big)?;
                ws.send(Message::Ping(b"p1".to_vec().into()))?;
                loop {
                    if let Message::Pong(_) = ws.read()? {
                        break;
                    }
                }
                ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "done".into(),
                }))?;
                finish(&mut ws, close)
            }
            "server-close" | "ping" => {
                ws.send(Message::text(if scenario == "ping" {
                    "ping me"
                } else {
                    "close me"
                }))?;
                if scenario == "ping" {
                    echo_of(&mut ws, &Message::text("hello from server"))?;
                }
                finish(&mut ws, close)
            }
            "badutf8" => {
                ws.get_mut()
                    .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28])?;
                finish(&mut ws, close)
            }
            other => Err(format!("unknown scenario {other}").into()),
        }
    }
}

mod chromium {
    //! Headless Chromium as the client of our recording server.
    //!
    //! Chromium loads `peers/chromium/trace.html` from a tiny in-process HTTP
    //! server; the page's query string holds the plan: one WebSocket listener
    //! per session (so our script and deflate choice are fixed before the
    //! request arrives), run in order. The browser runs in its own process
    //! group with a fresh profile and is stopped by that group's id (its PID).
    //!
    //! Chromium's `Sec-WebSocket-Key`, masks and read chunking differ on every
    //! run; the traces replay regardless, since what is checked is our sent
    //! bytes, a function of the bytes received.
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use wsmachine_conformance::trace::{Expected, Item};

    const INSTALL: &str = "apt-get install chromium, or set CHROMIUM=/path/to/chromium";

    /// The sessions: page scenario and whether our server accepts
    /// permessage-deflate (Chromium always offers it).
    const SESSIONS: [(&str, bool); 6] = [
        ("echo", true),
        ("echo", false),
        ("server-close", true),
        ("server-close", false),
        ("ping", true),
        ("ping", false),
    ];

    /// The system's Chromium: `$CHROMIUM` when set (only it), else
    /// `/usr/bin/chromium`, or `chromium` / `chromium-browser` in PATH.
    fn find() -> Option<PathBuf> {
        if let Some(c) = std::env::var_os("CHROMIUM") {
            return Some(PathBuf::from(c)).filter(|c| c.is_file());
        }
        let mut cands: Vec<PathBuf> = vec!["/usr/bin/chromium".into()];
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                cands.push(dir.join("chromium"));
                cands.push(dir.join("chromium-browser"));
            }
        }
        cands.into_iter().find(|c| c.is_file())
    }

    /// `chromium 156.0.8078.79` from `chromium --version` (bounded: 30 s).
    fn version(bin: &Path) -> Result<String, BoxError> {
        let mut child = Command::new(bin)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} --version did not finish", bin.display()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut text = String::new();
        if let Some(mut o) = child.stdout.take() {
            o.read_to_string(&mut text)?;
        }
        // "Chromium 156.0.8078.79 built on Debian GNU/Linux 12 (bookworm)"
        text.lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .find(|v| v.starts_with(|c: char| c.is_ascii_digit()) && v.contains('.'))
            .map(|v| format!("chromium {v}"))
            .ok_or_else(|| format!("no version in `{} --version`: {text:?}", bin.display()).into())
    }

    /// Serves `page` for `GET /` and `GET /?…`, 404 for anything else.
    async fn page_server(
        page: String,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Bounded: the browser asks for the page and maybe a favicon.
            for _ in 0..32 {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let page = page.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    let read = tokio::time::timeout(Duration::from_secs(10), async {
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                            match tcp.read(&mut buf).await {
                                Ok(0) | Err(_) => return false,
                                Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
                            }
                        }
                        true
                    })
                    .await;
                    if read != Ok(true) {
                        return;
                    }
                    let response = if head.starts_with(b"GET / ") || head.starts_with(b"GET /?") {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                             Cache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                            page.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .into()
                    };
                    let _ = tcp.write_all(response.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        Ok((addr, task))
    }

    /// The browser, in its own process group; stopped (SIGTERM, then
    /// SIGKILL, to that group only) and its profile removed when dropped.
    struct Browser {
        child: Child,
        profile: PathBuf,
    }

    impl Browser {
        fn spawn(bin: &Path, url: &str) -> Result<Browser, BoxError> {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let profile = std::env::temp_dir().join(format!(
                "wsmachine-chromium-corpus-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&profile)?;
            let log = std::fs::File::create(profile.join("chromium-stderr.log"))?;
            let mut cmd = Command::new(bin);
            cmd.args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
            #[cfg(unix)]
            {
                use std::os::unix::process::CommandExt as _;
                cmd.process_group(0);
            }
            match cmd.spawn() {
                Ok(child) => Ok(Browser { child, profile }),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&profile);
                    Err(format!("cannot start {}: {e}", bin.display()).into())
                }
            }
        }

        /// The last lines Chromium wrote to stderr.
        fn stderr_tail(&self) -> String {
            let text = std::fs::read_to_string(self.profile.join("chromium-stderr.log"))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        }

        #[cfg(unix)]
        fn signal_group(&self, sig: &str) {
            // The group id is the browser's PID: only what it started is in it.
            let _ = Command::new("kill")
                .args([sig, "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            #[cfg(unix)]
            {
                self.signal_group("-TERM");
                // Not `try_wait`: the browser stays unreaped (a zombie at
                // worst) until after the SIGKILL, so its PID, the group id,
                // cannot be reused in between.
                let stat = format!("/proc/{}/stat", self.child.id());
                let deadline = std::time::Instant::now() + Duration::from_secs(3);
                while std::time::Instant::now() < deadline {
                    let state = std::fs::read_to_string(&stat).unwrap_or_default();
                    if state.is_empty()
                        || state
                            .rsplit(") ")
                            .next()
                            .map_or(true, |r| r.starts_with('Z'))
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                // Helpers that outlived the browser process.
                self.signal_group("-KILL");
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }

    /// Our side of a session.
    fn script(scenario: &str) -> Box<dyn Script> {
        match scenario {
            "server-close" => Box::new(Steps::new([
                Step::Echo(1),
                Step::Do(Action::Close(4000, "bye".into())),
            ])),
            "ping" => Box::new(Steps::new([
                Step::Do(Action::Ping(b"are you there".to_vec())),
                Step::Pong,
                Step::Do(Action::SendText("pong received".into())),
            ])),
            _ => Box::new(EchoScript),
        }
    }

    /// The page's verdict, as the trace shows it: for `echo` and `ping` the
    /// page closes with 1000 "done" only when every check passed (4001 and
    /// the failures otherwise); for `server-close` the page only answers
    /// our Close (4000 "bye"), so its answer is the verdict.
    fn page_verdict(scenario: &str, trace: &Trace) -> Verdict {
        let close = trace.items.iter().find_map(|i| match i {
            Item::Expect(Expected::Close(code, reason)) => Some((*code, reason.clone())),
            _ => None,
        });
        let ok = match (scenario, &close) {
            ("server-close", Some((4000, r))) => r == "bye",
            ("server-close", _) => false,
            (_, Some((1000, r))) => r == "done",
            _ => false,
        };
        let (code, reason) = close.unwrap_or((0, "none".into()));
        Verdict::new(
            ok,
            vec![
                field(
                    if scenario == "server-close" {
                        "page-close-answer"
                    } else {
                        "page-close"
                    },
                    code,
                ),
                field("page-reason", reason),
            ],
        )
    }

    pub(super) async fn corpus(
        root: &Path,
        out: &mut Out,
        only: Option<&str>,
    ) -> Result<(), BoxError> {
        let Some(bin) = find() else {
            println!(
                "skipping chromium: not installed (looked at $CHROMIUM, else /usr/bin/chromium and PATH); {INSTALL}"
            );
            return Ok(());
        };
        let peer = format!(
            "{} (headless, page peers/chromium/trace.html)",
            version(&bin)?
        );
        let page = std::fs::read_to_string(root.join("conformance/peers/chromium/trace.html"))?;
        let mut plan = Vec::new();
        for (scenario, deflate) in SESSIONS {
            if only.is_some_and(|o| o != scenario) {
                continue;
            }
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let name = format!(
                "{scenario}-{}",
                if deflate { "deflate" } else { "nodeflate" }
            );
            let port = listener.local_addr()?.port();
            plan.push((scenario, deflate, name, port, listener));
        }
        if plan.is_empty() {
            return Ok(());
        }
        let (http, page_task) = page_server(page).await?;
        let query: Vec<String> = plan
            .iter()
            .map(|(_, _, n, p, _)| format!("{n}:{p}"))
            .collect();
        let url = format!("http://{http}/?plan={}", query.join(","));
        let browser = Browser::spawn(&bin, &url)?;
        for (i, (scenario, deflate, _, _, listener)) in plan.iter().enumerate() {
            let mut s = server_session(
                &peer,
                &format!(
                    "server {scenario}, page script, permessage-deflate offered and {}",
                    if *deflate { "accepted" } else { "declined" }
                ),
                true,
            );
            s.accept_compression = *deflate;
            // The first session waits for the browser to start.
            let wait = Duration::from_secs(if i == 0 { 60 } else { 30 });
            let stream = match tokio::time::timeout(wait, listener.accept()).await {
                Ok(r) => r?.0,
                Err(_) => {
                    out.failures.push(format!(
                        "chromium {scenario}: no connection within {wait:?}; chromium stderr:\n{}",
                        browser.stderr_tail()
                    ));
                    break;
                }
            };
            let _ = stream.set_nodelay(true);
            let mut script = script(scenario);
            let suffix = if *deflate { "-deflate" } else { "" };
            let name = format!("server-{scenario}{suffix}");
            match driver::run(stream, &s, script.as_mut(), Recorder::new()).await {
                Ok(t) => {
                    let verdict = page_verdict(scenario, &t);
                    out.save("chromium", &name, t, verdict)?;
                }
                Err(e) => out.failed(&format!("chromium/{name}"), e, None),
            }
        }
        drop(browser);
        page_task.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The verdict rules: what a peer printed and how it exited decide
    //! whether its session may enter the corpus.
    use super::*;

    #[cfg(unix)]
    fn exit(code: i32) -> Option<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt as _;
        Some(std::process::ExitStatus::from_raw(code << 8))
    }

    const GOOD: &str =
        "result echo.text=ok\nresult pong=ok\nclose rcvd_code=1000 rcvd_reason=done\ndone\n";

    #[cfg(unix)]
    #[test]
    fn client_verdict_needs_exit_0_done_every_check_and_the_close() {
        let v = client_script_verdict(exit(0), GOOD, 1000);
        assert!(v.ok, "{v}");
        assert_eq!(
            v.to_string(),
            "ok peer-exit=0 peer-checks=2/2 peer-close=1000"
        );
        // Each failure alone rejects the session, and says why.
        let v = client_script_verdict(exit(1), GOOD, 1000);
        assert!(!v.ok && v.get("peer-exit") == Some("1"), "{v}");
        let v = client_script_verdict(None, GOOD, 1000);
        assert!(
            !v.ok && v.get("peer-exit") == Some("killed-after-timeout"),
            "{v}"
        );
        let v = client_script_verdict(exit(0), &GOOD.replace("pong=ok", "pong=timeout%20x"), 1000);
        assert!(
            !v.ok && v.get("peer-failed") == Some("pong:timeout_x"),
            "{v}"
        );
        let v = client_script_verdict(exit(0), &GOOD.replace("done\n", ""), 1000);
        assert!(!v.ok && v.get("peer-done") == Some("no"), "{v}");
        let v = client_script_verdict(exit(0), GOOD, 1007);
        assert!(!v.ok && v.get("peer-close-expected") == Some("1007"), "{v}");
        let v = client_script_verdict(exit(0), &format!("error message=boom\n{GOOD}"), 1000);
        assert!(!v.ok && v.get("peer-failed") == Some("error:boom"), "{v}");
    }

    #[test]
    fn server_verdict_needs_a_clean_report_with_the_close() {
        let (_, good) =
            parse_record("report path=%2Fecho rcvd_code=1002 checks=ok error=").expect("record");
        assert!(server_report_verdict(Some(&good), 1002).ok);
        assert!(!server_report_verdict(Some(&good), 1000).ok);
        assert!(!server_report_verdict(None, 1002).ok);
        let mut bad = good.clone();
        bad.insert("error".into(), "ConnectionClosedError()".into());
        assert!(!server_report_verdict(Some(&bad), 1002).ok);
        let mut bad = good;
        bad.insert("checks".into(), "no-pong".into());
        assert!(!server_report_verdict(Some(&bad), 1002).ok);
    }

    #[test]
    fn want_close_per_scenario() {
        assert_eq!(
            [
                "echo",
                "server-close",
                "ping",
                "fragments",
                "badutf8",
                "badframe"
            ]
            .map(want_close),
            [1000, 1001, 1000, 1000, 1007, 1002]
        );
    }
}
