//! Helpers for the async-std integration tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_std::net::TcpListener;
use wsmachine_async_std::{accept_with, Accept, Config, WebSocket};

/// Runs `fut` on async-std, failing the test if it takes longer than `secs`.
pub fn run<T>(secs: u64, fut: impl Future<Output = T>) -> T {
    async_std::task::block_on(async {
        async_std::future::timeout(Duration::from_secs(secs), fut)
            .await
            .unwrap_or_else(|_| panic!("test timed out after {secs} s"))
    })
}

pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Default limits, no compression.
pub fn plain() -> Config {
    // The default has no permessage-deflate; `accept` would use with_deflate().
    Config::default()
}

pub async fn echo<S>(ws: &mut WebSocket<S>)
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
{
    while let Some(Ok(m)) = ws.recv().await {
        // Fails once the peer's Close arrived; keep receiving to finish.
        let _ = ws.send(m).await;
    }
}

/// Accepts connections with `config` and echoes every message.
pub async fn echo_server(config: Config) -> SocketAddr {
    let (l, addr) = listener().await;
    async_std::task::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let config = config.clone();
            async_std::task::spawn(async move {
                if let Ok(mut ws) = accept_with(s, config, |_| Ok(Accept::new())).await {
                    echo(&mut ws).await;
                }
            });
        }
    });
    addr
}
