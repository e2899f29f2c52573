//! The per-connection counters after a scripted exchange, with the exact
//! numbers the script implies: unsplit on the server, split on the client.

macro_rules! stats_tests {
    () => {
        use super::*;

        /// What the client sends: two short texts and one that is
        /// compressed (at least `min_compress_size`, 128 bytes).
        const TEXTS: [usize; 3] = [5, 6, 1000];

        #[test]
        fn counters_after_a_scripted_exchange() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let cfg = Config::with_deflate();
                    let mut ws = accept_with(
                        s,
                        Config {
                            ping_interval: None,
                            ..cfg
                        },
                        |_| Ok(Accept::new()),
                    )
                    .await
                    .expect("accept");
                    for len in TEXTS {
                        match ws.recv().await {
                            Some(Ok(Message::Text(t))) => assert_eq!(t.len(), len),
                            other => panic!("{other:?}"),
                        }
                    }
                    ws.send(Message::Text("one".into())).await.expect("send");
                    ws.send(Message::Binary(vec![1, 2, 3, 4].into()))
                        .await
                        .expect("send");
                    ws.flush().await.expect("flush");
                    // Drain to the end (the client closes). The counters are
                    // read only then: a flush also reads in the background,
                    // so a snapshot taken before the end may or may not hold
                    // the client's Close already.
                    while let Some(Ok(_)) = ws.recv().await {}
                    ws.stats()
                });
                let tcp = rt::connect(addr).await;
                let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .config(Config {
                        ping_interval: None,
                        ..Config::with_deflate()
                    })
                    .connect_on(tcp)
                    .await
                    .expect("connect");
                assert!(ws.negotiated().deflate.is_some());
                let (mut rd, mut wr) = ws.split();
                for len in TEXTS {
                    wr.send(Message::Text("z".repeat(len).into()))
                        .await
                        .expect("send");
                }
                for _ in 0..2 {
                    rd.recv().await.expect("message").expect("message");
                }
                wr.close(CloseCode::NORMAL, "").await.expect("close");
                let end = rd.recv().await;
                assert!(end.is_none(), "{end:?}");
                let (c, w) = (rd.stats(), wr.stats());
                let s = server.await;
                // Messages and application bytes, each way.
                assert_eq!((c.messages_out, c.bytes_out), (3, 5 + 6 + 1000));
                assert_eq!((s.messages_in, s.bytes_in), (3, 5 + 6 + 1000));
                assert_eq!((s.messages_out, s.bytes_out), (2, 3 + 4));
                assert_eq!((c.messages_in, c.bytes_in), (2, 3 + 4));
                // Only the 1000-byte text went compressed: a handful of
                // bytes on the wire, the same on both sides.
                assert!(
                    (1..64).contains(&c.compressed_bytes_out),
                    "{}",
                    c.compressed_bytes_out
                );
                assert_eq!(s.compressed_bytes_in, c.compressed_bytes_out);
                assert_eq!((s.compressed_bytes_out, c.compressed_bytes_in), (0, 0));
                // The wire: masked client frames (2 + 4 bytes of header,
                // all payloads under 126 bytes), bare server frames, and
                // the Close 1000 each way (a 2-byte code, no reason).
                let z = c.compressed_bytes_out;
                assert_eq!(c.wire_bytes_out, (6 + 5) + (6 + 6) + (6 + z) + (6 + 2));
                assert_eq!(s.wire_bytes_in, c.wire_bytes_out);
                assert_eq!(s.wire_bytes_out, (2 + 3) + (2 + 4) + (2 + 2));
                assert_eq!(c.wire_bytes_in, s.wire_bytes_out);
                // No keepalive, no Pings: nothing else counted.
                assert_eq!((c.keepalive_pings, c.auto_pongs, c.last_rtt), (0, 0, None));
                // The writer sees its own side only.
                assert_eq!((w.messages_out, w.bytes_out, w.messages_in), (3, 1011, 0));
            }));
        }
    };
}
