//! The `client` example of each adapter exits when the connection ends,
//! even while its stdin is still open (DESIGN.md §4): 0 after a closing
//! handshake the server started, non-zero with a message on stderr when the
//! server just drops the connection. And when stdin ends first, the client
//! closes and still prints every echo that was on its way.
//!
//! Each example is built with `cargo build -p <adapter> --example client`
//! (the three share the output name `examples/client`, so each build is
//! copied aside under a lock before the next one), then run against a
//! Tokio server in this test, with a stdin pipe left open (closed only
//! after its lines by the tests of the end of stdin).
//! The deadline only catches a client that never exits: it is a minute,
//! where a client that works takes milliseconds.

mod interop_support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use wsmachine_tokio::{accept, CloseCode};

const HANG: Duration = Duration::from_secs(60);

/// Builds `pkg`'s `client` example and returns a copy of it that no other
/// build overwrites.
fn client_binary(pkg: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let exe = interop_support::build_example(pkg, "client");
    static COPIES: AtomicUsize = AtomicUsize::new(0);
    let copy = std::env::temp_dir().join(format!(
        "wsmachine-examples-exit-{}-{}-{pkg}-client",
        std::process::id(),
        COPIES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::copy(&exe, &copy).expect("copy the example aside");
    copy
}

enum Server {
    /// Echoes the client's first message, then closes with 1000.
    ClosesAfterOneMessage,
    /// Reads the client's first message, then drops the TCP connection.
    Vanishes,
    /// Echoes every message until the client's Close (stdin ends first).
    EchoesUntilClose,
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `pkg`'s client against a server that ends the connection as
/// `server` says, with stdin open until the client has exited (but for
/// `EchoesUntilClose`: then stdin ends after its lines).
fn run_client(pkg: &str, server: Server) -> Run {
    let stdin_ends = matches!(server, Server::EchoesUntilClose);
    let exe = client_binary(pkg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("address");
    let served = rt.spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = accept(tcp).await.expect("handshake");
        let first = ws.recv().await.expect("a message").expect("a message");
        match server {
            Server::ClosesAfterOneMessage => {
                ws.send(first).await.expect("echo");
                ws.close(CloseCode::NORMAL, "bye").await.expect("close");
                while let Some(m) = ws.recv().await {
                    m.expect("nothing after our Close but the client's");
                }
            }
            Server::Vanishes => drop(ws),
            Server::EchoesUntilClose => {
                ws.send(first).await.expect("echo");
                while let Some(m) = ws.recv().await {
                    ws.send(m.expect("a message")).await.expect("echo");
                }
            }
        }
    });

    let mut child = Command::new(&exe)
        .arg(format!("ws://{addr}/"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client");
    // One line, and stdin stays open: the handle lives until the end.
    let mut stdin = child.stdin.take().expect("stdin");
    let stdin = if stdin_ends {
        stdin
            .write_all(b"first line\nsecond line\n")
            .expect("write stdin");
        drop(stdin);
        None
    } else {
        stdin.write_all(b"one line\n").expect("write stdin");
        stdin.flush().expect("flush stdin");
        Some(stdin)
    };

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > HANG {
            // Only the child this test started, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&exe);
            panic!("{pkg} client still running {HANG:?} after the connection ended");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    drop(stdin);
    let _ = std::fs::remove_file(&exe);
    rt.block_on(served).expect("server task");
    Run {
        status,
        stdout,
        stderr,
    }
}

fn exits_0_when_the_server_closes(pkg: &str) {
    let run = run_client(pkg, Server::ClosesAfterOneMessage);
    assert!(
        run.status.success(),
        "{pkg}: {} after a clean close; stderr: {}",
        run.status,
        run.stderr
    );
    assert_eq!(run.stdout, "one line\n", "{pkg}: what the client printed");
}

/// `printf 'first line\nsecond line\n' | client URL` (shared/contract-smoke.sh):
/// the Close goes out right behind the two lines, and the echoes that
/// arrive after it are printed all the same.
fn prints_every_echo_when_stdin_ends_at_once(pkg: &str) {
    let run = run_client(pkg, Server::EchoesUntilClose);
    assert!(
        run.status.success(),
        "{pkg}: {} after its own clean close; stderr: {}",
        run.status,
        run.stderr
    );
    assert_eq!(
        run.stdout, "first line\nsecond line\n",
        "{pkg}: what the client printed"
    );
}

fn exits_non_zero_with_a_message_when_the_server_vanishes(pkg: &str) {
    let run = run_client(pkg, Server::Vanishes);
    assert!(
        !run.status.success(),
        "{pkg}: exit 0 after the connection was dropped"
    );
    assert!(
        !run.stderr.trim().is_empty(),
        "{pkg}: failed with nothing on stderr"
    );
}

#[test]
fn tokio_client_exits_0_when_the_server_closes_with_stdin_open() {
    exits_0_when_the_server_closes("wsmachine-tokio");
}

#[test]
fn tokio_client_exits_non_zero_when_the_server_vanishes_with_stdin_open() {
    exits_non_zero_with_a_message_when_the_server_vanishes("wsmachine-tokio");
}

#[test]
fn smol_client_exits_0_when_the_server_closes_with_stdin_open() {
    exits_0_when_the_server_closes("wsmachine-smol");
}

#[test]
fn smol_client_exits_non_zero_when_the_server_vanishes_with_stdin_open() {
    exits_non_zero_with_a_message_when_the_server_vanishes("wsmachine-smol");
}

#[test]
fn async_std_client_exits_0_when_the_server_closes_with_stdin_open() {
    exits_0_when_the_server_closes("wsmachine-async-std");
}

#[test]
fn async_std_client_exits_non_zero_when_the_server_vanishes_with_stdin_open() {
    exits_non_zero_with_a_message_when_the_server_vanishes("wsmachine-async-std");
}

#[test]
fn tokio_client_prints_every_echo_when_stdin_ends_at_once() {
    prints_every_echo_when_stdin_ends_at_once("wsmachine-tokio");
}

#[test]
fn smol_client_prints_every_echo_when_stdin_ends_at_once() {
    prints_every_echo_when_stdin_ends_at_once("wsmachine-smol");
}

#[test]
fn async_std_client_prints_every_echo_when_stdin_ends_at_once() {
    prints_every_echo_when_stdin_ends_at_once("wsmachine-async-std");
}
