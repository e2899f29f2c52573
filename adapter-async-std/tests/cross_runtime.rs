//! Across runtimes over loopback: an async-std server with a tokio client,
//! and a tokio server with an async-std client, with compression.

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
