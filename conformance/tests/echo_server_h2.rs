//! The tokio `echo_server` example's HTTP/2 mode (`--h2`, feature
//! `http2`): it prints its address and the path of the certificate it
//! generated; with that certificate trusted, a WebSocket over HTTP/2
//! (extended CONNECT on one HTTP/2 connection) and one over HTTP/1.1
//! (ALPN `http/1.1`) echo on the same port, compressed, and a plain
//! `GET /` gets the demo page.
//!
//! The example is built with `cargo build -p wsmachine-tokio --features
//! http2 --example echo_server` and ended by its PID. The deadline only
//! catches a hang.

mod interop_support;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsmachine_conformance::bench::H2EchoServer;
use wsmachine_tokio::h2::H2Connection;
use wsmachine_tokio::rustls::pki_types::ServerName;
use wsmachine_tokio::{CloseCode, ConnectBuilder, Message};

#[test]
fn echo_server_h2_mode_serves_both_versions_and_the_page() {
    let exe = interop_support::build_example_with("wsmachine-tokio", "echo_server", &["http2"]);
    let server = H2EchoServer::start(&exe);
    let (addr, tls) = (server.addr.clone(), server.tls.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            // HTTP/2: two WebSockets on one connection.
            let h2 = H2Connection::connect_tls(&format!("https://{addr}"), tls.clone())
                .await
                .expect("an HTTP/2 connection (ALPN h2, extended CONNECT allowed)");
            for text in ["over h2", "again over h2"] {
                let (mut ws, resp) = h2
                    .websocket(&format!("wss://{addr}/"))
                    .await
                    .expect("a WebSocket over HTTP/2");
                assert_eq!(resp.status(), 200);
                assert!(ws.negotiated().deflate.is_some(), "compression over HTTP/2");
                let long = text.repeat(100);
                ws.send(long.clone()).await.expect("send");
                assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from(long));
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                while ws.recv().await.is_some() {}
            }
            // HTTP/1.1 on the same port.
            let (mut ws, resp) = ConnectBuilder::new(format!("wss://{addr}/"))
                .no_proxy()
                .tls(tls.clone())
                .connect()
                .await
                .expect("a WebSocket over HTTP/1.1");
            assert_eq!(resp.status, 101);
            ws.send("over http/1.1").await.expect("send");
            assert_eq!(
                ws.recv().await.unwrap().unwrap(),
                Message::from("over http/1.1")
            );
            ws.close(CloseCode::NORMAL, "").await.expect("close");
            while ws.recv().await.is_some() {}
            // The page, over TLS with ALPN http/1.1.
            let mut page_tls = (*tls).clone();
            page_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            let connector = wsmachine_tokio::tokio_rustls::TlsConnector::from(Arc::new(page_tls));
            let tcp = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
            let name = ServerName::try_from("127.0.0.1").expect("name");
            let mut stream = connector.connect(name, tcp).await.expect("tls");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut page = Vec::new();
            let _ = stream.read_to_end(&mut page).await;
            let page = String::from_utf8_lossy(&page);
            assert!(page.starts_with("HTTP/1.1 200"), "{page}");
            assert!(page.contains("new WebSocket("), "{page}");
        })
        .await
        .expect("the example answered within a minute");
    });
    drop(server);
}
