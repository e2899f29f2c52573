//! Interop with Python's `websockets` (installed into `target/interop-venv`
//! on first use), in both roles, with and without permessage-deflate:
//!
//! - the Python client against our in-process Tokio server: text and binary
//!   at 0/1/125/126/64 KiB/1 MiB, non-ASCII text, fragmented sends, a Ping,
//!   a close from Python with a code and reason, and a close started by our
//!   server; both sides' observations are checked;
//! - our Tokio client against the Python server: the same echo round, the
//!   server closing with 4000 "bye", the server pinging us; and a raw-socket
//!   Python server sending invalid UTF-8, where the Close our client sends
//!   (1007) is checked as the peer received it;
//! - the smol and async-std adapters: an echo round trip with compression
//!   each way (their `accept` in-process against the Python client, their
//!   clients, over their own runtime's TCP, against the Python server);
//! - prepared messages: our Tokio server fans the same `PreparedMessage`s
//!   (text and binary, under and over `min_compress_size`) out to several
//!   Python clients at once, with the split writer's `try_send_prepared` and the
//!   unsplit `send_prepared`, under each negotiated parameter set (none,
//!   context takeover, `server_no_context_takeover`,
//!   `client_no_context_takeover`, both, a 9- and an 8-bit server window):
//!   three clients of one set, then one server with clients of every set;
//!   each client sends every message back and our server compares it byte
//!   for byte.
//!
//! Without `python3` the tests are reported as ignored, with the reason
//! (and fail under `WSMACHINE_REQUIRE_PEERS=1`); see `conformance/build.rs`.

mod interop_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interop_support::*;
use wsmachine::{ConnectionError, ProtocolError};

const INSTALL: &str =
    "python3 with the venv module (Debian: apt-get install python3-venv) and access to PyPI";

fn python(test: &str) -> PathBuf {
    peer(test, python_websockets(), INSTALL)
}

/// Starts `peers/python/server.py`; returns the guard and its address.
fn start_server(py: &Path, deflate: bool) -> (Peer, SocketAddr) {
    let mut peer = Peer::spawn(
        "python websockets server",
        python_script(py, "server.py").arg(if deflate { "deflate" } else { "none" }),
    )
    .expect("start python server");
    let addr = peer
        .wait_listening(Duration::from_secs(30))
        .expect("python server ready");
    (peer, addr)
}

/// The report the Python server prints when the connection on `path` ends.
fn server_report(peer: &mut Peer, path: &str) -> BTreeMap<String, String> {
    tokio::task::block_in_place(|| peer.wait_record(STEP, "report", "path", path))
        .expect("python server report")
}

// ---------------------------------------------------------------------------
// (a) Python client → our Tokio server

async fn python_client_echo(deflate: bool, test: &str) {
    let py = python(test);
    let mut server = TokioServer::start().await;
    let url = server.url("/echo");
    let res = tokio::task::block_in_place(|| run_python_client(&py, &url, deflate, "echo"));
    println!("python websockets {}", res["version"]);
    assert_all_ok("python client", &res, &echo_check_keys());
    assert_eq!(
        res["extensions"].contains("permessage-deflate"),
        deflate,
        "extensions the Python client saw accepted: {:?}",
        res["extensions"]
    );
    // Python started the close: our echo carries its code (an echo need not
    // repeat the reason, RFC 6455 §5.5.1).
    assert_eq!(res["close.rcvd_code"], "4001");
    assert_eq!(res["close.sent_code"], "4001");
    assert_eq!(res["close.rcvd_then_sent"], "False");
    let report = server.report().await;
    assert_eq!(report.path, "/echo");
    assert_server_saw_echo("python client", &report, deflate, (4001, "python done"));
    assert!(report.pings.iter().any(|p| &p[..] == b"py-ping"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn python_client_to_tokio_server_deflate() {
    python_client_echo(true, "python_client_to_tokio_server_deflate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn python_client_to_tokio_server_plain() {
    python_client_echo(false, "python_client_to_tokio_server_plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn tokio_server_closes_python_client() {
    let py = python("tokio_server_closes_python_client");
    let mut server = TokioServer::start().await;
    let url = server.url("/server-close");
    let res = tokio::task::block_in_place(|| run_python_client(&py, &url, true, "server-close"));
    assert_eq!(res["server_close"], "ok");
    // Python received our Close first and echoed it.
    assert_eq!(res["close.rcvd_code"], "4002");
    assert_eq!(res["close.rcvd_reason"], "server bye");
    assert_eq!(res["close.sent_code"], "4002");
    assert_eq!(res["close.rcvd_then_sent"], "True");
    let report = server.report().await;
    assert!(report.deflate, "compression negotiated");
    assert_server_closed("python client", &report);
}

// ---------------------------------------------------------------------------
// (b) our Tokio client → Python server

async fn tokio_client_echo_python(deflate: bool, test: &str) {
    let py = python(test);
    let (mut peer, addr) = start_server(&py, deflate);
    let path = if deflate {
        "/echo/deflate"
    } else {
        "/echo/plain"
    };
    let ours = tokio_client_echo(&format!("ws://{addr}{path}"), deflate).await;
    let report = server_report(&mut peer, path);
    assert_eq!(report["error"], "", "python server error");
    assert_eq!(report["sent_code"], "4001", "python echoed our close");
    assert_eq!(report["rcvd_then_sent"], "True");
    assert_peer_server_echo("python server", &report, &ours, deflate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn tokio_client_to_python_server_deflate() {
    tokio_client_echo_python(true, "tokio_client_to_python_server_deflate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn tokio_client_to_python_server_plain() {
    tokio_client_echo_python(false, "tokio_client_to_python_server_plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn python_server_closes_tokio_client_4000() {
    let py = python("python_server_closes_tokio_client_4000");
    let (mut peer, addr) = start_server(&py, true);
    tokio_client_server_closes(&format!("ws://{addr}/close4000")).await;
    let report = server_report(&mut peer, "/close4000");
    assert_eq!(report["sent_code"], "4000");
    assert_eq!(
        report["rcvd_code"], "4000",
        "our client echoed the server's close code"
    );
    assert_eq!(report["rcvd_then_sent"], "False");
    assert!(report["extensions"].contains("permessage-deflate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn python_server_pings_tokio_client() {
    let py = python("python_server_pings_tokio_client");
    let (mut peer, addr) = start_server(&py, true);
    tokio_client_answers_ping(&format!("ws://{addr}/ping")).await;
    let report = server_report(&mut peer, "/ping");
    assert_eq!(report["pong"], "ok");
    assert_eq!(report["rcvd_code"], "1000");
}

/// A raw Python server sends invalid UTF-8 in `mode`; our client must fail
/// with `InvalidUtf8` and send a masked Close 1007.
async fn invalid_utf8(mode: &str, test: &str) {
    let py = python(test);
    let mut peer = Peer::spawn(
        "python raw server",
        python_script(&py, "raw_server.py").arg(mode),
    )
    .expect("start raw server");
    let addr = peer
        .wait_listening(Duration::from_secs(30))
        .expect("raw server ready");
    let (mut ws, _) = tokio_connect(&format!("ws://{addr}/raw"), true).await;
    assert!(
        ws.negotiated().deflate.is_none(),
        "the raw server declines compression"
    );
    let got = tokio::time::timeout(STEP, ws.recv()).await.expect("recv");
    assert!(
        matches!(
            got,
            Some(Err(wsmachine_tokio::Error::Ws(ConnectionError::Protocol(
                ProtocolError::InvalidUtf8
            ))))
        ),
        "expected an InvalidUtf8 failure, got {got:?}"
    );
    let end = tokio::time::timeout(STEP, ws.recv()).await.expect("recv");
    assert!(end.is_none(), "nothing after the failure: {end:?}");
    let report = tokio::task::block_in_place(|| peer.wait_record(STEP, "report", "eof", "0"))
        .expect("raw server report");
    assert_eq!(
        report["opcode"], "8",
        "the first frame back is a Close: {report:?}"
    );
    assert_eq!(report["masked"], "1", "client frames are masked");
    assert_eq!(report["close_code"], "1007", "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn tokio_client_invalid_utf8_closes_1007() {
    invalid_utf8("invalid-utf8", "tokio_client_invalid_utf8_closes_1007").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn tokio_client_invalid_utf8_mid_fragment_closes_1007() {
    invalid_utf8(
        "invalid-utf8-fragmented",
        "tokio_client_invalid_utf8_mid_fragment_closes_1007",
    )
    .await;
}

// ---------------------------------------------------------------------------
// (c) smol and async-std adapters

/// Accepts one connection from a Tokio listener with `$adapter::accept`
/// (over [`FuturesIo`]) and echoes until the peer closes. Yields
/// `(deflate negotiated, messages echoed, the peer's Close, error)`.
macro_rules! adapter_echo_once {
    ($adapter:ident, $listener:expr) => {{
        let (tcp, _) = $listener.accept().await.expect("accept");
        let mut ws = $adapter::accept(FuturesIo(tcp))
            .await
            .expect("adapter accept");
        let deflate = ws.negotiated().deflate.is_some();
        let mut echoed = 0usize;
        let mut error = None;
        // Bounded: the client sends two messages.
        for _ in 0..100 {
            match ws.recv().await {
                None => break,
                Some(Err(e)) => {
                    error = Some(e.to_string());
                    break;
                }
                Some(Ok(m)) => {
                    echoed += 1;
                    if let Err(e) = ws.send(m).await {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        (deflate, echoed, ws.close_frame().cloned(), error)
    }};
}

/// The Python client's `roundtrip` scenario (1000-byte text, 64 KiB binary,
/// close 1000) with compression against an adapter's in-process server.
macro_rules! python_client_to_adapter {
    ($adapter:ident, $test:expr) => {{
        let py = python($test);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), async {
                adapter_echo_once!($adapter, listener)
            })
            .await
        });
        let res = tokio::task::block_in_place(|| run_python_client(&py, &url, true, "roundtrip"));
        assert_all_ok(
            "python client",
            &res,
            &["text.roundtrip".into(), "binary.roundtrip".into()],
        );
        assert!(
            res["extensions"].contains("permessage-deflate"),
            "the Python client saw compression accepted: {:?}",
            res["extensions"]
        );
        assert_eq!(res["close.rcvd_code"], "1000", "our echo of the close");
        let (deflate, echoed, close, error) = server
            .await
            .expect("server task")
            .expect("server finished within 60 s");
        assert_eq!(error, None);
        assert!(deflate, "compression negotiated on our side");
        assert_eq!(echoed, 2);
        assert_eq!(close.map(|c| u16::from(c.code)), Some(1000));
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn python_client_to_smol_server() {
    python_client_to_adapter!(wsmachine_smol, "python_client_to_smol_server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn python_client_to_async_std_server() {
    python_client_to_adapter!(wsmachine_async_std, "python_client_to_async_std_server");
}

/// An echo round trip with compression by an adapter's client (same method
/// names in every adapter) against the Python server; yields whether
/// deflate was negotiated.
macro_rules! adapter_roundtrip {
    ($adapter:ident, $url:expr) => {{
        let (mut ws, _) = $adapter::ConnectBuilder::new($url)
            .compression(true)
            .connect()
            .await
            .expect("connect");
        let deflate = ws.negotiated().deflate.is_some();
        let text = text_payload(1000);
        ws.send(text.clone()).await.expect("send text");
        match ws.recv().await {
            Some(Ok($adapter::Message::Text(t))) => assert!(t == text.as_str(), "text echo"),
            other => panic!("text echo: {other:?}"),
        }
        let bin = bytes::Bytes::from(binary_payload(65536));
        ws.send(bin.clone()).await.expect("send binary");
        match ws.recv().await {
            Some(Ok($adapter::Message::Binary(b))) => assert!(b == bin, "binary echo"),
            other => panic!("binary echo: {other:?}"),
        }
        ws.close($adapter::CloseCode::from(4001), "rust done")
            .await
            .expect("close");
        assert_eq!(
            ws.close_frame(),
            Some(&$adapter::CloseFrame::new(4001.into(), "rust done"))
        );
        deflate
    }};
}

fn check_adapter_report(peer: &mut Peer, path: &str) {
    let report = peer
        .wait_record(STEP, "report", "path", path)
        .expect("python server report");
    assert!(
        report["extensions"].contains("permessage-deflate"),
        "{report:?}"
    );
    assert_eq!(report["messages"], "2");
    assert_eq!(report["bytes"], (1000 + 65536).to_string());
    assert_eq!(report["rcvd_code"], "4001");
    assert_eq!(report["rcvd_reason"], "rust done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn smol_client_to_python_server() {
    let py = python("smol_client_to_python_server");
    let (mut peer, addr) = start_server(&py, true);
    // smol's I/O runs on async-io's own reactor thread, so its futures can
    // be awaited from any executor.
    let url = format!("ws://{addr}/echo/smol");
    let deflate = tokio::time::timeout(Duration::from_secs(30), async {
        adapter_roundtrip!(wsmachine_smol, &url)
    })
    .await
    .expect("smol round trip within 30 s");
    assert!(deflate, "smol client negotiated compression");
    tokio::task::block_in_place(|| check_adapter_report(&mut peer, "/echo/smol"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn async_std_client_to_python_server() {
    let py = python("async_std_client_to_python_server");
    let (mut peer, addr) = start_server(&py, true);
    let url = format!("ws://{addr}/echo/async-std");
    let deflate = tokio::time::timeout(Duration::from_secs(30), async {
        adapter_roundtrip!(wsmachine_async_std, &url)
    })
    .await
    .expect("async-std round trip within 30 s");
    assert!(deflate, "async-std client negotiated compression");
    tokio::task::block_in_place(|| check_adapter_report(&mut peer, "/echo/async-std"));
}

// ---------------------------------------------------------------------------
// (d) prepared messages fanned out to Python clients

/// Our Tokio server sends the same prepared messages to a Python client
/// on each connection of `sets` at once; each client sends everything back
/// and our server compares it with what it sent (see [`prepared_fanout`]).
async fn prepared_to_python_clients(sets: &[DeflateSet], test: &str) {
    let py = python(test);
    fanout_to_peers("python client", sets, "extensions", move |url| {
        run_python_client(&py, url, true, "mirror")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_python_clients_no_compression() {
    prepared_to_python_clients(
        &[DeflateSet::None; 3],
        "prepared_to_python_clients_no_compression",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_python_clients_context_takeover() {
    // More connections than a thread parks zlib streams for (4 of a
    // class): each message's stream was last another connection's, reset
    // and primed with this one's window, and the peer's zlib must read it.
    prepared_to_python_clients(
        &[DeflateSet::ContextTakeover; 7],
        "prepared_to_python_clients_context_takeover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_python_clients_server_no_context_takeover() {
    prepared_to_python_clients(
        &[DeflateSet::ServerNoContextTakeover; 3],
        "prepared_to_python_clients_server_no_context_takeover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_python_clients_client_no_context_takeover() {
    prepared_to_python_clients(
        &[DeflateSet::ClientNoContextTakeover; 3],
        "prepared_to_python_clients_client_no_context_takeover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_python_clients_no_context_takeover_both_ways() {
    prepared_to_python_clients(
        &[DeflateSet::NoContextTakeover; 3],
        "prepared_to_python_clients_no_context_takeover_both_ways",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_python_clients_small_server_window() {
    prepared_to_python_clients(
        &[DeflateSet::SmallServerWindow; 3],
        "prepared_to_python_clients_small_server_window",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_python_clients_smallest_server_window() {
    prepared_to_python_clients(
        &[DeflateSet::SmallestServerWindow; 3],
        "prepared_to_python_clients_smallest_server_window",
    )
    .await;
}

/// One server, one client of each parameter set: a prepared message has
/// an encoding per class of connection, and each must get its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_python_clients_of_every_parameter_set_at_once() {
    prepared_to_python_clients(
        &[
            DeflateSet::ServerNoContextTakeover,
            DeflateSet::SmallServerWindow,
            DeflateSet::None,
            DeflateSet::ContextTakeover,
            DeflateSet::NoContextTakeover,
            DeflateSet::ClientNoContextTakeover,
            DeflateSet::SmallServerWindow,
            DeflateSet::SmallestServerWindow,
            DeflateSet::ServerNoContextTakeover,
        ],
        "prepared_to_python_clients_of_every_parameter_set_at_once",
    )
    .await;
}
