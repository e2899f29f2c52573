//! Across runtimes over loopback: a smol server with a tokio client, and a
//! tokio server with a smol client, with and without compression. Each
//! runtime runs on its own thread with its own sockets and timers.

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use wsmachine::{CloseCode, Config, Message};

/// What both sides exchange: sizes around the length encodings, and a
/// large compressible text.
fn messages() -> Vec<Message> {
    let mut m: Vec<Message> = [0usize, 1, 125, 126, 65535, 65536, 1 << 20]
        .iter()
        .map(|&n| Message::Binary((0..n).map(|i| (i * 7) as u8).collect::<Vec<u8>>().into()))
        .collect();
    m.push(Message::Text("κόσμε ".repeat(20_000).into()));
    m
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A tokio echo server on its own thread; returns its address.
fn tokio_echo_server(config: Config) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio_runtime().block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            // One connection, bounded in time: the thread always ends.
            let serve = async {
                let (tcp, _) = l.accept().await.unwrap();
                let accept = |_: &wsmachine_tokio::Request| Ok(wsmachine_tokio::Accept::new());
                let Ok(mut ws) = wsmachine_tokio::accept_with(tcp, config, accept).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(30), serve).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

#[test]
fn tokio_client_against_smol_server() {
    for deflate in [true, false] {
        let config = if deflate {
            Config::with_deflate()
        } else {
            Config::default()
        };
        let addr = util::run(5, util::echo_server(config));
        let url = format!("ws://{addr}/");
        tokio_runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(30), async {
                let (mut ws, _) = wsmachine_tokio::ConnectBuilder::new(&url)
                    .compression(deflate)
                    .no_proxy()
                    .connect()
                    .await
                    .unwrap();
                assert_eq!(ws.negotiated().deflate.is_some(), deflate);
                for m in messages() {
                    ws.send(m.clone()).await.unwrap();
                    assert_eq!(ws.recv().await.unwrap().unwrap(), m);
                }
                ws.close(CloseCode::NORMAL, "done").await.unwrap();
            })
            .await
            .expect("tokio client finished in time");
        });
    }
}

#[test]
fn smol_client_against_tokio_server() {
    for deflate in [true, false] {
        let config = if deflate {
            Config::with_deflate()
        } else {
            Config::default()
        };
        let addr = tokio_echo_server(config);
        let url = format!("ws://{addr}/");
        util::run(30, async {
            let (mut ws, _) = wsmachine_smol::ConnectBuilder::new(&url)
                .compression(deflate)
                .no_proxy()
                .connect()
                .await
                .unwrap();
            assert_eq!(ws.negotiated().deflate.is_some(), deflate);
            for m in messages() {
                ws.send(m.clone()).await.unwrap();
                assert_eq!(ws.recv().await.unwrap().unwrap(), m);
            }
            ws.close(CloseCode::NORMAL, "done").await.unwrap();
        });
    }
}
