//! Helpers shared by the integration tests: loopback echo servers, a
//! deadline for every test, and a blocking peer driven by the bare core.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smol::net::TcpListener;
use wsmachine::{ClientRequest, Connection, Event, SeededMask};
use wsmachine_smol::{accept_with, Accept, Config, WebSocket};

/// Runs `fut` on smol, failing the test if it takes longer than `secs`.
pub fn run<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    smol::block_on(async {
        let timeout = async {
            smol::Timer::after(Duration::from_secs(secs)).await;
            panic!("test timed out after {secs} s");
        };
        smol::future::or(fut, timeout).await
    })
}

/// A loopback listener.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Accepts connections and echoes every message until the client closes.
pub async fn echo_server(config: Config) -> SocketAddr {
    let (l, addr) = listener().await;
    smol::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let config = config.clone();
            smol::spawn(async move {
                let Ok(mut ws) = accept_with(s, config, |_| Ok(Accept::new())).await else {
                    return;
                };
                echo(&mut ws).await;
            })
            .detach();
        }
    })
    .detach();
    addr
}

pub async fn echo<S>(ws: &mut WebSocket<S>)
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
{
    while let Some(m) = ws.recv().await {
        let m = match m {
            Ok(m) => m,
            Err(_) => break,
        };
        // The peer's Close is answered only after `recv` handed out every
        // message before it, so each can still be echoed.
        if ws.send(m).await.is_err() {
            break;
        }
    }
}

/// A config with no compression and fast timers for tests.
pub fn plain() -> Config {
    // The default has no permessage-deflate; `accept` would use with_deflate().
    Config::default()
}

/// A blocking client peer driven directly by the core over std TCP, for
/// tests that need a peer that misbehaves or whose frames we inspect.
pub struct RawPeer {
    pub tcp: std::net::TcpStream,
    pub conn: Connection,
}

impl RawPeer {
    /// Connects and completes the client handshake.
    pub fn connect(addr: SocketAddr) -> RawPeer {
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let conn = Connection::client(
            plain(),
            ClientRequest::new(addr.to_string(), "/"),
            [7; 16],
            SeededMask::new([3; 32]),
            Instant::now(),
        );
        let mut p = RawPeer { tcp, conn };
        p.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            p.read_some();
            match p.conn.poll_event() {
                Some(Event::Connected(_)) => return p,
                Some(e) => panic!("unexpected {e:?}"),
                None => assert!(Instant::now() < deadline, "handshake timed out"),
            }
        }
    }

    pub fn flush(&mut self) {
        while let Some(b) = self.conn.poll_transmit() {
            self.tcp.write_all(&b).unwrap();
        }
    }

    /// One read (up to the 50 ms read timeout). Returns false on EOF.
    pub fn read_some(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        match self.tcp.read(&mut buf) {
            Ok(0) => {
                self.conn.receive_eof(Instant::now());
                false
            }
            Ok(n) => {
                self.conn.receive(Instant::now(), &buf[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}
