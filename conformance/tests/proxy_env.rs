//! `connect` reads the proxy from the process environment for real: with
//! `HTTP_PROXY` set, a connection to a host that is not loopback goes
//! through that proxy; `NO_PROXY` naming the host, or `no_proxy()` on the
//! builder, goes direct.
//!
//! The host is `*.invalid` (RFC 6761: never resolves), so a connection that
//! skipped the proxy cannot succeed by reaching it directly, and one that
//! used the proxy can only succeed through it: the test proxy connects every
//! CONNECT to the loopback echo server. One test in its own binary, because
//! it changes the process environment; it runs the same scenario on each
//! runtime in turn (tokio, smol, async-std), against an echo server on plain
//! threads (the core's `Connection`).

#[allow(dead_code)]
#[path = "adapter_suite/peer.rs"]
mod peer;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wsmachine::Event;

/// An echo server on plain threads: every connection echoes its messages
/// until the closing handshake.
fn echo_server() -> SocketAddr {
    let (l, addr) = peer::listen();
    std::thread::spawn(move || loop {
        let mut p = peer::Peer::accept(&l);
        std::thread::spawn(move || {
            while let Some(ev) = p.next_event() {
                match ev {
                    Event::Text(t) => p.conn.send(wsmachine::Message::Text(t)).expect("echo"),
                    Event::Binary(b) => p.conn.send(wsmachine::Message::Binary(b)).expect("echo"),
                    _ => {}
                }
            }
        });
    });
    addr
}

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

/// The scenario, with `$ws`'s `ConnectBuilder`, on its runtime (`$block_on`).
macro_rules! scenario {
    ($ws:ident, $block_on:expr) => {{
        use $ws::{ConnectBuilder, Error, Message};
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
        let echo = echo_server();
        let (proxy, seen) = redirecting_proxy(echo);
        let url = format!("ws://wsmachine-env.invalid:{}/", echo.port());
        $block_on(async {
            // No proxy in the environment: the name does not resolve.
            let direct = ConnectBuilder::new(url.clone()).connect().await.map(|_| ());
            assert!(matches!(direct, Err(Error::Io(_))), "{direct:?}");

            // Only `connect` below reads these; no other thread reads the
            // environment meanwhile.
            std::env::set_var("HTTP_PROXY", &proxy);
            let (mut ws, _) = ConnectBuilder::new(url.clone())
                .connect()
                .await
                .expect("through the proxy from HTTP_PROXY");
            ws.send("via env").await.expect("send");
            assert_eq!(
                ws.recv().await.expect("echo").expect("echo"),
                Message::from("via env")
            );
            assert_eq!(seen.load(Ordering::SeqCst), 1);

            // The builder's no_proxy() overrides the environment.
            let r = ConnectBuilder::new(url.clone())
                .no_proxy()
                .connect()
                .await
                .map(|_| ());
            assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
            // So does NO_PROXY naming the host's domain.
            std::env::set_var("NO_PROXY", "example.com,.invalid");
            let r = ConnectBuilder::new(url.clone()).connect().await.map(|_| ());
            assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
            assert_eq!(seen.load(Ordering::SeqCst), 1, "neither went through it");
        });
    }};
}

fn tokio_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), f).await })
        .expect("within a minute")
}

fn smol_block_on<F: std::future::Future>(f: F) -> F::Output {
    smol::block_on(smol::future::or(f, async {
        smol::Timer::after(Duration::from_secs(60)).await;
        panic!("did not finish within a minute")
    }))
}

fn async_std_block_on<F: std::future::Future>(f: F) -> F::Output {
    async_std::task::block_on(async_std::future::timeout(Duration::from_secs(60), f))
        .expect("within a minute")
}

#[test]
fn connect_uses_the_proxy_the_environment_names() {
    scenario!(wsmachine_tokio, tokio_block_on);
    scenario!(wsmachine_smol, smol_block_on);
    scenario!(wsmachine_async_std, async_std_block_on);
}
