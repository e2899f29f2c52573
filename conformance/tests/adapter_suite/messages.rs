//! Messages both ways over loopback TCP: every frame-length class, with and
//! without compression, pipelined, through the `Stream`/`Sink` interfaces
//! and split halves on separate tasks, and the server's Close echoed.

/// Lengths around every frame-header size boundary (7/16/64-bit), plus
/// large messages that take many reads and writes.
pub(crate) const SIZES: &[usize] = &[
    0,
    1,
    125,
    126,
    127,
    65_535,
    65_536,
    65_537,
    1 << 20,
    8 << 20,
];

/// `len` bytes of a pattern that depends on `seed`.
pub(crate) fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Text and binary messages of every size in [`SIZES`] echoed by a server
/// with `$server_config`, from a client offering compression or not
/// (`$compression`); then the closing handshake and the error after it.
macro_rules! echo_every_size {
    ($server_config:expr, $compression:expr) => {
        rt::block_on(rt::within_a_minute(async {
            use crate::messages::{payload, SIZES};
            let addr = echo_server($server_config).await;
            let (mut ws, resp) = ConnectBuilder::new(format!("ws://{addr}/echo"))
                .no_proxy()
                .config(config())
                .compression($compression)
                .connect()
                .await
                .expect("connect");
            assert_eq!(resp.status, 101);
            assert_eq!(ws.negotiated().deflate.is_some(), $compression);
            for (i, &len) in SIZES.iter().enumerate() {
                let bin = payload(len, i as u8);
                ws.send(bin.clone()).await.expect("send");
                let text: String = "κόσμε ".repeat(len / 12 + 1);
                ws.send(text.clone()).await.expect("send");
                match ws.recv().await {
                    Some(Ok(Message::Binary(b))) => assert!(b[..] == bin[..], "binary of {len}"),
                    other => panic!("binary of {len}: {other:?}"),
                }
                match ws.recv().await {
                    Some(Ok(Message::Text(t))) => assert!(t.as_str() == text, "text for {len}"),
                    other => panic!("text for {len}: {other:?}"),
                }
            }
            ws.close(CloseCode::NORMAL, "done").await.expect("close");
            assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
            let end = ws.recv().await;
            assert!(end.is_none(), "{end:?}");
            match ws.send("late").await {
                Err(Error::Closed(Ended::Closed(Some(f)))) => assert_eq!(f.code, CloseCode::NORMAL),
                other => panic!("send after close: {other:?}"),
            }
        }))
    };
}

macro_rules! messages_tests {
    () => {
        use super::*;
        use futures_util::{SinkExt, StreamExt};

        #[test]
        fn echo_of_every_size_class() {
            echo_every_size!(config(), false);
        }

        #[test]
        fn echo_of_every_size_class_with_permessage_deflate() {
            echo_every_size!(Config { ping_interval: None, ..Config::with_deflate() }, true);
        }

        #[test]
        fn permessage_deflate_by_default_both_ways() {
            rt::block_on(rt::within_a_minute(async {
                use crate::messages::payload;
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    // `accept` uses Config::with_deflate().
                    let mut ws = ws::accept(s).await.expect("accept");
                    let deflate = ws.negotiated().deflate.is_some();
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                    deflate
                });
                // `connect` offers permessage-deflate by default.
                let (mut ws, resp) = ws::connect(&format!("ws://{addr}/")).await.expect("connect");
                assert!(resp
                    .headers
                    .get("sec-websocket-extensions")
                    .is_some_and(|v| v.starts_with("permessage-deflate")));
                for len in [0usize, 10, 5_000, 1 << 20] {
                    let text = "abc ".repeat(len / 4);
                    ws.send(text.clone()).await.expect("send");
                    assert_eq!(ws.recv().await.expect("echo").expect("echo"), Message::from(text));
                    let bin = payload(len, 9);
                    ws.send(bin.clone()).await.expect("send");
                    assert_eq!(ws.recv().await.expect("echo").expect("echo"), Message::from(bin));
                }
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                assert!(server.await, "the server negotiated no compression");
            }));
        }

        #[test]
        fn many_small_messages_pipelined_through_split_halves() {
            rt::block_on(rt::within_a_minute(async {
                const N: usize = 20_000;
                let addr = echo_server(config()).await;
                let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .connect()
                    .await
                    .expect("connect");
                let (mut rd, mut wr) = ws.split();
                let writer = rt::spawn(async move {
                    for i in 0..N {
                        wr.feed(Message::from(format!("m{i}"))).await.expect("feed");
                    }
                    SinkExt::flush(&mut wr).await.expect("flush");
                    wr
                });
                for i in 0..N {
                    let m = rd.next().await.expect("echo").expect("echo");
                    assert_eq!(m, Message::from(format!("m{i}")));
                }
                let mut wr = writer.await;
                wr.close(CloseCode::NORMAL, "").await.expect("close");
                let end = rd.next().await;
                assert!(end.is_none(), "{end:?}");
            }));
        }

        #[test]
        fn split_halves_on_separate_tasks() {
            rt::block_on(rt::within_a_minute(async {
                const N: usize = 2_000;
                let addr = echo_server(config()).await;
                let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .connect()
                    .await
                    .expect("connect");
                let (mut rd, mut wr) = ws.split();
                // Mixed sizes, so that some messages take several writes.
                let msg = |i: usize| {
                    if i % 100 == 0 {
                        Message::from(vec![i as u8; 300_000])
                    } else {
                        Message::from(format!("{i}:{}", "z".repeat(i % 300)))
                    }
                };
                let writer = rt::spawn(async move {
                    for i in 0..N {
                        wr.send(msg(i)).await.expect("send");
                    }
                    wr
                });
                let reader = rt::spawn(async move {
                    for i in 0..N {
                        let m = rd.recv().await.expect("echo").expect("echo");
                        assert!(m == msg(i), "message {i}");
                    }
                    rd
                });
                let mut wr = writer.await;
                let mut rd = reader.await;
                // Closed once every echo is back: the server stops echoing
                // as soon as our Close reaches it.
                wr.close(CloseCode::NORMAL, "bye").await.expect("close");
                let end = rd.recv().await;
                assert!(end.is_none(), "{end:?}");
                assert_eq!(rd.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
                // The writer knows the connection is over, and why.
                match wr.send("late").await {
                    Err(Error::Closed(_)) => {}
                    other => panic!("send after close: {other:?}"),
                }
            }));
        }

        #[test]
        fn sink_and_stream_interfaces() {
            rt::block_on(rt::within_a_minute(async {
                let addr = echo_server(config()).await;
                let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .connect()
                    .await
                    .expect("connect");
                ws.send_all(&mut futures_util::stream::iter(
                    (0..100).map(|i| Ok(Message::from(vec![i as u8; i]))),
                ))
                .await
                .expect("send_all");
                for i in 0..100 {
                    assert_eq!(
                        ws.next().await.expect("echo").expect("echo"),
                        Message::from(vec![i as u8; i])
                    );
                }
                SinkExt::close(&mut ws).await.expect("close");
                let end = ws.next().await;
                assert!(end.is_none(), "{end:?}");
                assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
            }));
        }

        #[test]
        fn a_server_initiated_close_is_echoed() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    ws.send("bye").await.expect("send");
                    ws.close(CloseCode::GOING_AWAY, "going").await
                });
                let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .connect()
                    .await
                    .expect("connect");
                assert_eq!(ws.recv().await.expect("bye").expect("bye"), Message::from("bye"));
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
                assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode::GOING_AWAY));
                server.await.expect("the server's close completes");
                // Using a finished connection is an error, closing it again is not.
                match ws.send("late").await {
                    Err(Error::Closed(Ended::Closed(Some(f)))) => {
                        assert_eq!(f.code, CloseCode::GOING_AWAY)
                    }
                    other => panic!("send after close: {other:?}"),
                }
                ws.close(CloseCode::NORMAL, "").await.expect("close again");
            }));
        }

        /// A thousand connections open at once, each echoing once, then all
        /// closed: every one completes its handshake, its echo and its
        /// closing handshake.
        #[test]
        fn a_thousand_connections_at_once() {
            const N: usize = 1000;
            // Both ends of every connection live in this process, and the
            // three runtimes' copies of this test may run at once.
            crate::raise_fd_limit(6 * N as u64 + 1024);
            rt::block_on(rt::within_a_minute(async {
                let addr = echo_server(config()).await;
                let tasks: Vec<_> = (0..N)
                    .map(|i| {
                        rt::spawn(async move {
                            let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                                .no_proxy()
                                .config(config())
                                .compression(false)
                                .connect()
                                .await
                                .expect("connect");
                            ws.send(format!("hello {i}")).await.expect("send");
                            let m = ws.recv().await;
                            assert!(matches!(&m, Some(Ok(Message::Text(t))) if *t == *format!("hello {i}")), "{m:?}");
                            ws
                        })
                    })
                    .collect();
                // Every connection is open and has echoed before any closes.
                let mut open = Vec::with_capacity(N);
                for t in tasks {
                    open.push(t.await);
                }
                let closing: Vec<_> = open
                    .into_iter()
                    .map(|mut ws| rt::spawn(async move { ws.close(CloseCode::NORMAL, "").await }))
                    .collect();
                for c in closing {
                    c.await.expect("close");
                }
            }));
        }
    };
}
