//! Across runtimes over loopback: a smol server with a tokio client, a
//! tokio server with a smol client, with and without compression; and the
//! same between async-std and tokio (module `async_std_and_tokio`). Each
//! runtime runs on its own thread with its own sockets and timers.

use std::net::SocketAddr;
use std::time::Duration;

use wsmachine::{CloseCode, Config, Message};

/// Runs `fut` on smol, failing the test if it takes longer than `secs`.
fn run<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    smol::block_on(async {
        let timeout = async {
            smol::Timer::after(Duration::from_secs(secs)).await;
            panic!("test timed out after {secs} s");
        };
        smol::future::or(fut, timeout).await
    })
}

/// A smol echo server (detached tasks); returns its address.
async fn smol_echo_server(config: Config) -> SocketAddr {
    let l = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    smol::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let config = config.clone();
            smol::spawn(async move {
                let accept = |_: &wsmachine_smol::Request| Ok(wsmachine_smol::Accept::new());
                let Ok(mut ws) = wsmachine_smol::accept_with(s, config, accept).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
    })
    .detach();
    addr
}

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
        let addr = run(5, smol_echo_server(config));
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
        run(30, async {
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

/// An async-std server with a tokio client, and back, with compression.
mod async_std_and_tokio {
    use std::time::Duration;

    use wsmachine_async_std::{accept, CloseCode, Message};

    fn messages() -> Vec<Message> {
        vec![
            Message::Text("hello".into()),
            Message::Binary(vec![0u8; 70_000].into()),
            Message::Text("κόσμε ".repeat(20_000).into()),
        ]
    }

    fn tokio_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn tokio_client_against_async_std_server() {
        let listener =
            async_std::task::block_on(async_std::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            async_std::task::block_on(async_std::future::timeout(
                Duration::from_secs(30),
                async move {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let mut ws = accept(tcp).await.unwrap();
                    assert!(
                        ws.negotiated().deflate.is_some(),
                        "deflate offered and accepted"
                    );
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                },
            ))
            .expect("server finished in time");
        });
        tokio_runtime().block_on(async {
            let (mut ws, _) = wsmachine_tokio::ConnectBuilder::new(format!("ws://{addr}/"))
                .compression(true)
                .no_proxy()
                .connect()
                .await
                .unwrap();
            for m in messages() {
                ws.send(m.clone()).await.unwrap();
                assert_eq!(ws.recv().await.unwrap().unwrap(), m);
            }
            ws.close(CloseCode::NORMAL, "done").await.unwrap();
        });
        server.join().unwrap();
    }

    #[test]
    fn async_std_client_against_tokio_server() {
        let rt = tokio_runtime();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(30), async move {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let mut ws = wsmachine_tokio::accept(tcp).await.unwrap();
                    assert!(
                        ws.negotiated().deflate.is_some(),
                        "deflate offered and accepted"
                    );
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                })
                .await
                .expect("server finished in time");
            });
        });
        async_std::task::block_on(async {
            let (mut ws, _) = wsmachine_async_std::connect(&format!("ws://{addr}/"))
                .await
                .unwrap();
            for m in messages() {
                ws.send(m.clone()).await.unwrap();
                assert_eq!(ws.recv().await.unwrap().unwrap(), m);
            }
            ws.close(CloseCode::NORMAL, "done").await.unwrap();
        });
        server.join().unwrap();
    }
}
