//! `connect` reads the proxy from the process environment for real: with
//! `HTTP_PROXY` set, a connection to a host that is not loopback goes
//! through that proxy; `NO_PROXY` naming the host, or `no_proxy()` on the
//! builder, goes direct.
//!
//! The host is `*.invalid` (RFC 6761: never resolves), so a connection that
//! skipped the proxy cannot succeed by reaching it directly, and one that
//! used the proxy can only succeed through it: the test proxy connects every
//! CONNECT to the loopback echo server. One test in its own binary, because
//! it changes the process environment.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wsmachine_tokio::{Config, ConnectBuilder, Error, Message};

/// An HTTP CONNECT proxy that sends every tunnel to `target` and counts
/// the CONNECT requests it saw, by host.
async fn redirecting_proxy(target: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    let (l, addr) = common::listener().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let head = common::read_head(&mut c).await;
                let line = head.lines().next().unwrap_or_default().to_owned();
                assert!(
                    line.starts_with("CONNECT wsmachine-env.invalid:"),
                    "unexpected request: {line}"
                );
                count.fetch_add(1, Ordering::SeqCst);
                let mut t = TcpStream::connect(target).await.unwrap();
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut c, &mut t).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[test]
fn connect_uses_the_proxy_the_environment_names() {
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        std::env::remove_var(var);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let echo = common::echo_server(Config::default(), 1).await;
        let (proxy, seen) = redirecting_proxy(echo).await;
        let url = format!("ws://wsmachine-env.invalid:{}/", echo.port());

        // No proxy in the environment: the name does not resolve.
        let direct = ConnectBuilder::new(url.clone()).connect().await;
        assert!(matches!(direct, Err(Error::Io(_))), "{direct:?}");

        // The runtime's threads read no environment variable meanwhile;
        // only `connect` below reads these.
        std::env::set_var("HTTP_PROXY", &proxy);
        let (mut ws, _) = ConnectBuilder::new(url.clone())
            .connect()
            .await
            .expect("through the proxy from HTTP_PROXY");
        ws.send("via env").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from("via env"));
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        // The builder's no_proxy() overrides the environment.
        let r = ConnectBuilder::new(url.clone()).no_proxy().connect().await;
        assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
        // So does NO_PROXY naming the host's domain.
        std::env::set_var("NO_PROXY", "example.com,.invalid");
        let r = ConnectBuilder::new(url.clone()).connect().await;
        assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "neither went through it");
    });
}
