//! The tokio adapter's axum extractor (`wsmachine_tokio::axum`, feature
//! `axum`) behind `axum::serve` on loopback: a compressed echo through it
//! with our own client and with Python's `websockets`, the core's answer
//! to requests it refuses (a plain GET, another version, a declared body),
//! a subprotocol the route does not speak, and README's "An axum route"
//! kept the same as `examples/axum_echo.rs`.

mod interop_support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::{response::Response, routing::get, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsmachine_tokio::axum::WebSocketUpgrade;
use wsmachine_tokio::{ConnectBuilder, DeflateConfig, Message};

/// Only catches a hang; a working exchange takes milliseconds.
const HANG: Duration = Duration::from_secs(30);

async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.protocols(["echo.v2", "echo.v1"])
        .on_upgrade(|mut ws| async move {
            while let Some(Ok(msg)) = ws.recv().await {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        })
}

/// Serves the route at `/ws` on a free loopback port, on this test's
/// runtime (it ends with the test).
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/ws", get(echo)))
            .await
            .expect("serve");
    });
    addr
}

/// Sends `request` as it is and reads the answer until the server closes.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.expect("read");
        String::from_utf8(answer).expect("a UTF-8 answer")
    };
    tokio::time::timeout(HANG, exchange)
        .await
        .expect("the server answers and closes")
}

fn status_and_head(answer: &str) -> (&str, String) {
    let (head, _) = answer.split_once("\r\n\r\n").expect("a complete head");
    (&answer[9..12], head.to_ascii_lowercase())
}

#[tokio::test]
async fn compressed_echo_through_the_extractor() {
    let addr = serve().await;
    let connect = ConnectBuilder::new(format!("ws://{addr}/ws"))
        .compression(DeflateConfig::default())
        .subprotocol("echo.v1")
        .no_proxy()
        .connect();
    let (mut ws, response) = tokio::time::timeout(HANG, connect)
        .await
        .expect("no hang")
        .expect("the route upgrades");
    assert_eq!(response.status, 101);
    let ext = response
        .headers
        .get("sec-websocket-extensions")
        .expect("an extension answer");
    assert!(ext.starts_with("permessage-deflate"), "{ext}");
    assert!(ws.negotiated().deflate.is_some(), "deflate negotiated");
    assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("echo.v1"));
    let text = "κόσμε ".repeat(10_000);
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    let round = async {
        for msg in [Message::from(text.clone()), Message::from(binary.clone())] {
            ws.send(msg.clone()).await.expect("send");
            let back = ws.recv().await.expect("an echo").expect("an echo");
            assert_eq!(back, msg);
        }
        ws.close(wsmachine_tokio::CloseCode::NORMAL, "done")
            .await
            .expect("close");
        while let Some(m) = ws.recv().await {
            m.expect("only the server's Close after ours");
        }
    };
    tokio::time::timeout(HANG, round).await.expect("no hang");
}

#[tokio::test]
async fn a_request_that_is_not_an_upgrade_gets_the_byte_paths_answer() {
    let addr = serve().await;
    // A plain GET: 400, as `accept` answers it (the core's one table).
    let answer = raw(addr, "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let (status, head) = status_and_head(&answer);
    assert_eq!(status, "400", "{answer}");
    assert!(head.contains("\r\nconnection: close"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nmissing or invalid Upgrade header\n"),
        "{answer}"
    );
    // Another WebSocket version: 426 naming the one we speak.
    let v8 = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 8\r\n\r\n";
    let answer = raw(addr, v8).await;
    let (status, head) = status_and_head(&answer);
    assert_eq!(status, "426", "{answer}");
    assert!(head.contains("\r\nsec-websocket-version: 13"), "{answer}");
    // An upgrade that declares a body is refused here too, though hyper
    // read the body: the smuggling rule holds on this path.
    let chunked = v8.replace(
        "Version: 8\r\n",
        "Version: 13\r\nTransfer-Encoding: chunked\r\n",
    ) + "0\r\n\r\n";
    let answer = raw(addr, &chunked).await;
    let (status, _) = status_and_head(&answer);
    assert_eq!(status, "400", "{answer}");
    assert!(answer.contains("handshake message with a body (Transfer-Encoding)"));
}

#[tokio::test]
async fn a_subprotocol_the_route_does_not_speak_is_refused() {
    let addr = serve().await;
    let refused = ConnectBuilder::new(format!("ws://{addr}/ws"))
        .subprotocol("mqtt")
        .no_proxy()
        .connect();
    let err = tokio::time::timeout(HANG, refused)
        .await
        .expect("no hang")
        .expect_err("no common subprotocol");
    assert_eq!(err.http_status(), Some(400), "{err}");
    // The client's preference wins among those the route speaks.
    let preferred = ConnectBuilder::new(format!("ws://{addr}/ws"))
        .subprotocol("mqtt")
        .subprotocol("echo.v1")
        .subprotocol("echo.v2")
        .no_proxy()
        .connect();
    let (ws, _) = tokio::time::timeout(HANG, preferred)
        .await
        .expect("no hang")
        .expect("a common subprotocol");
    assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("echo.v1"));
    // No subprotocol offered: accepted without one (RFC 6455 §4.2.2).
    let none = ConnectBuilder::new(format!("ws://{addr}/ws"))
        .no_proxy()
        .connect();
    let (ws, response) = tokio::time::timeout(HANG, none)
        .await
        .expect("no hang")
        .expect("accepted without a subprotocol");
    assert_eq!(ws.negotiated().subprotocol, None);
    assert_eq!(response.headers.get("sec-websocket-protocol"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 with venv (Debian: apt-get install python3-venv); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn python_websockets_client_through_the_extractor() {
    use interop_support::*;
    let py = peer(
        "python_websockets_client_through_the_extractor",
        python_websockets(),
        "python3 with the venv module (Debian: apt-get install python3-venv) and access to PyPI",
    );
    let addr = serve().await;
    let url = format!("ws://{addr}/ws");
    let res = tokio::task::block_in_place(|| run_python_client(&py, &url, true, "echo"));
    assert_all_ok("python client", &res, &echo_check_keys());
    assert!(
        res["extensions"].contains("permessage-deflate"),
        "{:?}",
        res["extensions"]
    );
}

/// README's "An axum route" is the route of `examples/axum_echo.rs`, which
/// the workspace compiles: the part between its `// README:` markers
/// appears in README.md as it is.
#[test]
fn readme_axum_route_is_the_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = std::fs::read_to_string(root.join("adapter-tokio/examples/axum_echo.rs"))
        .expect("the example");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let (_, rest) = example
        .split_once("// README: begin\n")
        .expect("begin marker");
    let (route, _) = rest.split_once("// README: end\n").expect("end marker");
    assert!(
        readme.contains(&format!("```rust,ignore\n{route}```\n")),
        "README.md's axum route differs from examples/axum_echo.rs:\n{route}"
    );
}
