//! Helpers shared by the loopback tests: an echo server and a raw peer.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsmachine_tokio::{accept_with, Accept, Config};

/// Binds 127.0.0.1 on a free port.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// An echo server accepting `limit` connections with `config`; the task ends
/// after the last one.
pub async fn echo_server(config: Config, limit: usize) -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..limit {
            let (tcp, _) = l.accept().await.unwrap();
            let config = config.clone();
            tasks.spawn(async move {
                let Ok(mut ws) = accept_with(tcp, config, |_| Ok(Accept::new())).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    addr
}

/// A raw TCP peer that completes the server handshake by hand and then
/// never sends anything; it keeps reading and returns every byte it got
/// (until EOF) through the returned handle.
pub async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let (l, addr) = listener().await;
    let h = tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        let head = read_head(&mut tcp).await;
        let key = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| v.trim().to_owned())
            })
            .unwrap();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            wsmachine::accept_key(&key)
        );
        tcp.write_all(resp.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let _ = tcp.read_to_end(&mut got).await;
        got
    });
    (addr, h)
}

/// A raw TCP client that has completed the opening handshake by hand (the
/// server answered 101); what it sends next is up to the test.
pub async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// Reads an HTTP head byte by byte (test helper: no read-ahead).
pub async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tcp.read_u8().await.unwrap();
        head.push(b);
    }
    String::from_utf8(head).unwrap()
}

/// Opcodes of the unmasked-or-masked frames in `wire` (client frames are masked).
pub fn opcodes(mut wire: &[u8]) -> Vec<u8> {
    let mut ops = Vec::new();
    while wire.len() >= 2 {
        let op = wire[0] & 0x0f;
        let masked = wire[1] & 0x80 != 0;
        let (len, mut hl) = match wire[1] & 0x7f {
            126 if wire.len() >= 4 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 if wire.len() >= 10 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        if masked {
            hl += 4;
        }
        if wire.len() < hl + len {
            break;
        }
        ops.push(op);
        wire = &wire[hl + len..];
    }
    ops
}
