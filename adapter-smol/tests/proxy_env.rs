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

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use util::{echo_server, plain, run};
use wsmachine_smol::{ConnectBuilder, Error, Message};

/// An HTTP CONNECT proxy (blocking threads) that sends every tunnel to
/// `target` and counts the CONNECT requests it saw.
fn redirecting_proxy(target: SocketAddr) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                c.read_exact(&mut b).unwrap();
                head.push(b[0]);
            }
            let head = String::from_utf8(head).unwrap();
            assert!(
                head.starts_with("CONNECT wsmachine-env.invalid:"),
                "unexpected request: {head}"
            );
            count.fetch_add(1, Ordering::SeqCst);
            let t = TcpStream::connect(target).unwrap();
            c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            let (c2, t2) = (c.try_clone().unwrap(), t.try_clone().unwrap());
            std::thread::spawn(move || copy(c, t));
            std::thread::spawn(move || copy(t2, c2));
        }
    });
    (format!("http://{addr}"), seen)
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
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
    run(30, async {
        let echo = echo_server(plain()).await;
        let (proxy, seen) = redirecting_proxy(echo);
        let url = format!("ws://wsmachine-env.invalid:{}/", echo.port());

        // No proxy in the environment: the name does not resolve.
        let direct = ConnectBuilder::new(url.clone()).connect().await;
        assert!(matches!(direct, Err(Error::Io(_))), "{direct:?}");

        // Only `connect` below reads these; no other thread reads the
        // environment meanwhile.
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
