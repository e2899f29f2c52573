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
use wsmachine_tokio::{CloseCode, CloseFrame};

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
    let mut browser = Peer::spawn_group(
        "chromium",
        Command::new(&chromium)
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
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg(&url),
    )
    .expect("start chromium");
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
