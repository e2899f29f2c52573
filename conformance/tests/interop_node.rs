//! Interop with Node's `ws` (installed into `target/interop-node` on first
//! use), in both roles, with permessage-deflate (threshold 0: every message
//! compressed) and without:
//!
//! - the `ws` client against our in-process Tokio server: text and binary at
//!   0/1/125/126/64 KiB/1 MiB, non-ASCII text, fragmented sends (`fin:
//!   false`), a Ping, Close 4001 from Node, and a close started by our server
//!   (4002);
//! - our Tokio client against the `ws` server: the same echo round with
//!   Close 4001 from us, the server closing with 4000 "bye", and the server
//!   pinging us;
//! - prepared messages: our Tokio server fans the same `PreparedMessage`s
//!   (text and binary, under and over `min_compress_size`) out to several
//!   `ws` clients at once, with the split writer's `try_send_prepared` and the
//!   unsplit `send_prepared`, under each negotiated parameter set (none,
//!   context takeover, `server_no_context_takeover`,
//!   `client_no_context_takeover`, both, a 9- and an 8-bit server window):
//!   three clients of one set, then one server with clients of every set;
//!   each client sends every message back and our server compares it byte
//!   for byte.
//!
//! Both sides' observations are checked, including bytes on the wire (so
//! compression is seen to happen, not only to be negotiated). Without `node`
//! and `npm` the tests are reported as ignored, with the reason (and fail
//! under `WSMACHINE_REQUIRE_PEERS=1`); see `conformance/build.rs`.

mod interop_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use interop_support::*;

const INSTALL: &str =
    "Node.js ≥ 18 with npm and access to the npm registry (Debian: apt-get install nodejs npm)";

fn node(test: &str) -> NodeEnv {
    peer(test, node_ws(), INSTALL)
}

/// Runs `peers/node/client.js URL COMPRESSION SCENARIO` to completion.
fn run_client(env: &NodeEnv, url: &str, deflate: bool, scenario: &str) -> BTreeMap<String, String> {
    let compression = if deflate { "deflate" } else { "none" };
    let out = run_bounded(
        env.script("client.js").args([url, compression, scenario]),
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("node client: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let res = results(&stdout);
    assert!(
        out.status.success() && res.get("done").map(String::as_str) == Some("1"),
        "node client {scenario} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    res
}

fn start_server(env: &NodeEnv, deflate: bool) -> (Peer, SocketAddr) {
    let mut peer = Peer::spawn(
        "node ws server",
        env.script("server.js")
            .arg(if deflate { "deflate" } else { "none" }),
    )
    .expect("start node server");
    let addr = peer
        .wait_listening(Duration::from_secs(30))
        .expect("node server ready");
    (peer, addr)
}

fn server_report(peer: &mut Peer, path: &str) -> BTreeMap<String, String> {
    tokio::task::block_in_place(|| peer.wait_record(STEP, "report", "path", path))
        .expect("node server report")
}

// ---------------------------------------------------------------------------
// Node `ws` client → our Tokio server

async fn node_client_echo(deflate: bool, test: &str) {
    let env = node(test);
    let mut server = TokioServer::start().await;
    let url = server.url("/echo");
    let res = tokio::task::block_in_place(|| run_client(&env, &url, deflate, "echo"));
    println!("node ws {}", res["version"]);
    assert_all_ok("node client", &res, &echo_check_keys());
    assert_eq!(
        res["extensions"].contains("permessage-deflate"),
        deflate,
        "extensions the Node client saw accepted: {:?}",
        res["extensions"]
    );
    assert_eq!(res["close.rcvd_code"], "4001", "our echo of Node's close");
    let report = server.report().await;
    assert_eq!(report.path, "/echo");
    assert_server_saw_echo("node client", &report, deflate, (4001, "node done"));
    assert!(report.pings.iter().any(|p| &p[..] == b"node-ping"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn node_client_to_tokio_server_deflate() {
    node_client_echo(true, "node_client_to_tokio_server_deflate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn node_client_to_tokio_server_plain() {
    node_client_echo(false, "node_client_to_tokio_server_plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn tokio_server_closes_node_client() {
    let env = node("tokio_server_closes_node_client");
    let mut server = TokioServer::start().await;
    let url = server.url("/server-close");
    let res = tokio::task::block_in_place(|| run_client(&env, &url, true, "server-close"));
    assert_eq!(res["close.rcvd_code"], "4002");
    assert_eq!(res["close.rcvd_reason"], "server bye");
    let report = server.report().await;
    assert!(report.deflate, "compression negotiated");
    assert_server_closed("node client", &report);
}

// ---------------------------------------------------------------------------
// our Tokio client → Node `ws` server

async fn tokio_client_echo_node(deflate: bool, test: &str) {
    let env = node(test);
    let (mut peer, addr) = start_server(&env, deflate);
    let path = if deflate {
        "/echo/deflate"
    } else {
        "/echo/plain"
    };
    let ours = tokio_client_echo(&format!("ws://{addr}{path}"), deflate).await;
    let report = server_report(&mut peer, path);
    assert_peer_server_echo("node server", &report, &ours, deflate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn tokio_client_to_node_server_deflate() {
    tokio_client_echo_node(true, "tokio_client_to_node_server_deflate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn tokio_client_to_node_server_plain() {
    tokio_client_echo_node(false, "tokio_client_to_node_server_plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn node_server_closes_tokio_client_4000() {
    let env = node("node_server_closes_tokio_client_4000");
    let (mut peer, addr) = start_server(&env, true);
    tokio_client_server_closes(&format!("ws://{addr}/close4000")).await;
    let report = server_report(&mut peer, "/close4000");
    // `ws` reports the code of the Close it received: our echo.
    assert_eq!(report["rcvd_code"], "4000");
    assert!(report["extensions"].contains("permessage-deflate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn node_server_pings_tokio_client() {
    let env = node("node_server_pings_tokio_client");
    let (mut peer, addr) = start_server(&env, true);
    tokio_client_answers_ping(&format!("ws://{addr}/ping")).await;
    let report = server_report(&mut peer, "/ping");
    assert_eq!(report["pong"], "ok");
    assert_eq!(report["rcvd_code"], "1000");
}

// ---------------------------------------------------------------------------
// Prepared messages fanned out to Node `ws` clients

/// Our Tokio server sends the same prepared messages to a Node client
/// on each connection of `sets` at once; each client sends everything back
/// and our server compares it with what it sent (see [`prepared_fanout`]).
async fn prepared_to_node_clients(sets: &[DeflateSet], test: &str) {
    let env = node(test);
    fanout_to_peers("node client", sets, "accepted_extensions", move |url| {
        run_client(&env, url, true, "mirror")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_node_clients_no_compression() {
    prepared_to_node_clients(
        &[DeflateSet::None; 3],
        "prepared_to_node_clients_no_compression",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_node_clients_context_takeover() {
    // More connections than a thread parks zlib streams for (4 of a
    // class): each message's stream was last another connection's, reset
    // and primed with this one's window, and the peer's zlib must read it.
    prepared_to_node_clients(
        &[DeflateSet::ContextTakeover; 7],
        "prepared_to_node_clients_context_takeover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_node_clients_server_no_context_takeover() {
    prepared_to_node_clients(
        &[DeflateSet::ServerNoContextTakeover; 3],
        "prepared_to_node_clients_server_no_context_takeover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_node_clients_client_no_context_takeover() {
    prepared_to_node_clients(
        &[DeflateSet::ClientNoContextTakeover; 3],
        "prepared_to_node_clients_client_no_context_takeover",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_node_clients_no_context_takeover_both_ways() {
    prepared_to_node_clients(
        &[DeflateSet::NoContextTakeover; 3],
        "prepared_to_node_clients_no_context_takeover_both_ways",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_node_clients_small_server_window() {
    prepared_to_node_clients(
        &[DeflateSet::SmallServerWindow; 3],
        "prepared_to_node_clients_small_server_window",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_node_clients_smallest_server_window() {
    prepared_to_node_clients(
        &[DeflateSet::SmallestServerWindow; 3],
        "prepared_to_node_clients_smallest_server_window",
    )
    .await;
}

/// One server, one client of each parameter set: a prepared message has
/// an encoding per class of connection, and each must get its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_node,
    ignore = "node or npm not found: install Node.js with npm; WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn prepared_to_node_clients_of_every_parameter_set_at_once() {
    prepared_to_node_clients(
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
        "prepared_to_node_clients_of_every_parameter_set_at_once",
    )
    .await;
}
