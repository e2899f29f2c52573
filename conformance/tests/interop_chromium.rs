//! Interop with a real browser: headless Chromium loads
//! `peers/chromium/interop.html` over `http://127.0.0.1:PORT/` from a tiny
//! in-process HTTP responder, and the page talks to our in-process Tokio
//! WebSocket server on a second port (the adapter's `accept` answers only
//! upgrade requests, so the page needs its own listener). Chromium offers
//! permessage-deflate by default; the page echoes text and binary messages
//! of 0/1/125/126/64 KiB/1 MiB plus non-ASCII text, sends its verdict as a
//! `RESULT ...` message, and closes with 1000 "page done".
//!
//! Checked: the page's verdict (every echo intact, the browser's view of the
//! negotiated extensions), our side's negotiated deflate, fewer bytes on the
//! wire than payload (compression really happened in both directions), and
//! the browser's Close frame.
//!
//! Over HTTP/2 (RFC 8441): the same page is loaded over HTTPS from an
//! in-process server that speaks HTTP/2 and HTTP/1.1 on one port
//! (`serve_connection`, a generated certificate Chromium is told to
//! accept); its `wss://` WebSocket to the same origin must arrive as an
//! extended CONNECT on the page's own connection, and the same checks
//! apply (the wire bytes then are the WebSocket's own, from its counters).
//!
//! Chromium needs root to install (`.ci/run` installs it); without it the
//! test is reported as ignored, with the reason, and fails under
//! `WSMACHINE_REQUIRE_PEERS=1` (see `conformance/build.rs`).

mod interop_support;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use interop_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsmachine_tokio::hyper::WebSocketUpgrade;
use wsmachine_tokio::{CloseCode, CloseFrame, Config};

const INSTALL: &str = "apt-get install chromium (or set CHROMIUM=/path/to/chromium)";

/// Serves the test page for `GET /…` and 404 for anything else; counts the
/// page loads. Ends with the test's runtime.
async fn page_server(page: String) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let loads = Arc::new(AtomicUsize::new(0));
    let counter = loads.clone();
    tokio::spawn(async move {
        // Bounded: the browser asks for the page and maybe a favicon.
        for _ in 0..32 {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let page = page.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                let read = tokio::time::timeout(Duration::from_secs(10), async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    true
                })
                .await;
                if read != Ok(true) {
                    return;
                }
                let response = if head.starts_with(b"GET / ") || head.starts_with(b"GET /?") {
                    counter.fetch_add(1, Ordering::Relaxed);
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
    (addr, loads)
}

/// Starts headless Chromium on `url` with the flags every test here uses
/// (no sandbox, GPU, QUIC or background traffic) and `extra`.
fn headless(chromium: &std::path::Path, profile: &TempDir, extra: &[&str], url: &str) -> Peer {
    Peer::spawn_group(
        "chromium",
        Command::new(chromium)
            .args([
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
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(url),
    )
    .expect("start chromium")
}

/// What the server must have seen of the page's session (`interop.html`):
/// path, Chromium's deflate offer accepted, the page's passing verdict over
/// every echo, its Close 1000 "page done", and compression on the wire both
/// ways.
fn assert_page_session(report: &ServerReport, stderr: &str) {
    assert_eq!(report.path, "/chromium");
    assert_eq!(report.error, None, "server error; report {report:#?}");
    assert!(
        report.offered_extensions.contains("permessage-deflate"),
        "Chromium offered {:?}",
        report.offered_extensions
    );
    assert!(report.deflate, "compression negotiated on our side");
    let verdict = report.results.first().unwrap_or_else(|| {
        panic!("the page sent no verdict; report {report:#?}\nchromium stderr:\n{stderr}")
    });
    println!("page verdict: {verdict}");
    assert!(
        verdict.starts_with("RESULT PASS "),
        "page verdict: {verdict}"
    );
    assert!(
        verdict.contains("extensions=permessage-deflate"),
        "the browser's negotiated extensions: {verdict}"
    );
    assert!(
        verdict.ends_with(&format!("checks={}", SIZES.len() * 2 + 1)),
        "{verdict}"
    );
    // Echoes + the verdict itself.
    assert_eq!(report.messages, SIZES.len() * 2 + 2);
    assert_eq!(
        report.close,
        Some(CloseFrame::new(CloseCode::NORMAL, "page done")),
        "the browser's Close frame"
    );
    assert_wire(
        "chromium → server",
        report.wire_read,
        report.payload_bytes,
        true,
    );
    assert_wire(
        "server → chromium",
        report.wire_written,
        report.payload_bytes,
        true,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_chromium,
    ignore = "Chromium not found: apt-get install chromium (or set CHROMIUM); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn chromium_page_to_tokio_server_deflate() {
    let test = "chromium_page_to_tokio_server_deflate";
    let chromium = peer(test, chromium(), INSTALL);
    let page = std::fs::read_to_string(peers_dir().join("chromium").join("interop.html"))
        .expect("read interop.html");
    let (http, loads) = page_server(page).await;
    let mut server = TokioServer::start().await;
    let profile = TempDir::new("chromium-profile");
    let url = format!("http://{http}/?ws={}", server.addr.port());
    let mut browser = headless(&chromium, &profile, &[], &url);
    // The page's whole run: startup, ~2.3 MB each way, the close.
    let report = tokio::time::timeout(Duration::from_secs(60), server.report()).await;
    let stderr = browser.stderr();
    browser.stop();
    drop(profile);
    let report = report.unwrap_or_else(|_| {
        panic!(
            "no WebSocket session from Chromium within 60 s (page loads: {}); chromium stderr:\n{stderr}",
            loads.load(Ordering::Relaxed)
        )
    });
    assert!(loads.load(Ordering::Relaxed) >= 1, "the page was served");
    assert_page_session(&report, &stderr);
}

/// Which request the HTTP/2 test's server saw, and on which TCP connection.
#[derive(Clone, Debug)]
struct Seen {
    conn: usize,
    version: hyper::Version,
    method: hyper::Method,
    path: String,
    /// For a WebSocket request: whether it came as an HTTP/2 extended
    /// CONNECT (`WebSocketUpgrade::is_http2`).
    websocket_over_h2: Option<bool>,
}

/// An HTTPS server on 127.0.0.1 (a generated certificate; ALPN `h2` and
/// `http/1.1`), each connection served by `serve_connection`: `GET /` is
/// the page, WebSocket requests are echoed with `echo_and_report`. Every
/// request is recorded with its connection's number.
async fn h2_server(
    page: String,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::Mutex<Vec<Seen>>>,
    tokio::sync::mpsc::UnboundedReceiver<ServerReport>,
) {
    use hyper::body::{Bytes, Incoming};
    use wsmachine_tokio::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use wsmachine_tokio::{rustls, tokio_rustls::TlsAcceptor};

    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("rcgen");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("cert");
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (reports_tx, reports) = tokio::sync::mpsc::unbounded_channel();
    let log = seen.clone();
    tokio::spawn(async move {
        // Bounded: the browser opens a connection or two.
        for conn in 0..32 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tls, log, reports_tx, page) =
                (tls.clone(), log.clone(), reports_tx.clone(), page.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        let (log, reports_tx, page) =
                            (log.clone(), reports_tx.clone(), page.clone());
                        async move {
                            let mut seen = Seen {
                                conn,
                                version: req.version(),
                                method: req.method().clone(),
                                path: req.uri().path().to_owned(),
                                websocket_over_h2: None,
                            };
                            let plain = req.method() == hyper::Method::GET
                                && !req.headers().contains_key("upgrade");
                            let response = if plain {
                                let (status, body) = if seen.path == "/" {
                                    (200, page)
                                } else {
                                    (404, String::new())
                                };
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "text/html; charset=utf-8")
                                    .header("cache-control", "no-store")
                                    .body(http_body_util::Full::new(Bytes::from(body)))
                                    .expect("response")
                            } else {
                                match WebSocketUpgrade::from_request(&mut req) {
                                    Err(rejection) => rejection.into_response(),
                                    Ok(ws) => {
                                        seen.websocket_over_h2 = Some(ws.is_http2());
                                        let report = ServerReport {
                                            path: ws.request().uri().to_owned(),
                                            offered_extensions: ws
                                                .request()
                                                .header("sec-websocket-extensions")
                                                .unwrap_or("")
                                                .to_owned(),
                                            ..ServerReport::default()
                                        };
                                        ws.config(Config::with_deflate()).on_upgrade(
                                            move |ws| async move {
                                                let report =
                                                    echo_and_report(ws, report, None).await;
                                                let _ = reports_tx.send(report);
                                            },
                                        )
                                    }
                                }
                            };
                            log.lock().expect("log").push(seen);
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                let _ = wsmachine_tokio::serve_connection(stream, service).await;
            });
        }
    });
    (addr, seen, reports)
}

/// RFC 8441 with a real browser: the page comes over HTTPS with HTTP/2,
/// and its `wss://` WebSocket to the same origin arrives as an extended
/// CONNECT on the page's own connection; text, binary and compressed
/// messages echo and the page closes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_chromium,
    ignore = "Chromium not found: apt-get install chromium (or set CHROMIUM); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
async fn chromium_page_over_http2_to_tokio_server() {
    let test = "chromium_page_over_http2_to_tokio_server";
    let chromium = peer(test, chromium(), INSTALL);
    let page = std::fs::read_to_string(peers_dir().join("chromium").join("interop.html"))
        .expect("read interop.html");
    let (addr, seen, mut reports) = h2_server(page).await;
    let profile = TempDir::new("chromium-profile");
    // The server's certificate is generated for this run.
    let url = format!("https://{addr}/");
    let mut browser = headless(&chromium, &profile, &["--ignore-certificate-errors"], &url);
    let report = tokio::time::timeout(Duration::from_secs(60), reports.recv()).await;
    let stderr = browser.stderr();
    browser.stop();
    drop(profile);
    let seen = seen.lock().expect("log").clone();
    let report = match report {
        Ok(Some(r)) => r,
        _ => panic!(
            "no WebSocket session from Chromium within 60 s; requests {seen:#?}\nchromium stderr:\n{stderr}"
        ),
    };
    // The page over HTTP/2, and the WebSocket as an extended CONNECT on
    // that same connection.
    let page = seen
        .iter()
        .find(|s| s.method == hyper::Method::GET && s.path == "/")
        .unwrap_or_else(|| panic!("the page was not requested: {seen:#?}"));
    assert_eq!(page.version, hyper::Version::HTTP_2, "{seen:#?}");
    let ws = seen
        .iter()
        .find(|s| s.websocket_over_h2.is_some())
        .unwrap_or_else(|| panic!("no WebSocket request: {seen:#?}"));
    assert_eq!(ws.websocket_over_h2, Some(true), "{seen:#?}");
    assert_eq!(
        (&ws.method, ws.version, ws.conn),
        (&hyper::Method::CONNECT, hyper::Version::HTTP_2, page.conn),
        "an extended CONNECT on the page's connection: {seen:#?}"
    );
    // The wire bytes are the WebSocket's own on its stream (its counters).
    assert_page_session(&report, &stderr);
}
