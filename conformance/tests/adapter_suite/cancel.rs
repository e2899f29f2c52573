//! What the adapters document as cancel-safe: `recv`, `recv_event`, the
//! split reader's `recv`, `flush`, `close` resumed after its future was
//! dropped, and reads of the byte stream. Messages are 64–128 KiB, so that
//! a cancellation lands mid-frame, and each operation is cancelled
//! thousands of times; nothing may be lost, duplicated or reordered.

macro_rules! cancel_tests {
    () => {
        use super::*;

        /// A server that receives binary messages until the end, checking
        /// each in order; gives how many it got.
        async fn receiver() -> (std::net::SocketAddr, impl std::future::Future<Output = usize>) {
            let (l, addr) = rt::listen().await;
            let server = rt::spawn(async move {
                let s = rt::accept(&l).await;
                let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                let mut got = 0;
                while let Some(m) = ws.recv().await {
                    match m.expect("message") {
                        Message::Binary(b) => {
                            check(got, &b);
                            got += 1;
                        }
                        other => panic!("after {got} messages: {other:?}"),
                    }
                }
                got
            });
            (addr, server)
        }

        #[test]
        fn recv_cancelled_mid_frame_loses_nothing() {
            rt::block_on(async {
                let mut ws = client(sender().await).await;
                let (got, cancelled) = drain_messages!(ws.recv(), Message);
                assert_eq!(got, MESSAGES);
                assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
                assert_eq!(ws.close_frame().map(|f| f.reason.to_string()), Some("done".into()));
            });
        }

        #[test]
        fn recv_event_cancelled_mid_frame_loses_nothing() {
            rt::block_on(async {
                let mut ws = client(sender().await).await;
                let (mut got, mut cancelled, mut closed) = (0, 0, false);
                loop {
                    match race(ws.recv_event(), polls(cancelled)).await {
                        None => cancelled += 1,
                        Some(Some(Ok(Event::Binary(b)))) => {
                            check(got, &b);
                            got += 1;
                        }
                        Some(Some(Ok(Event::Close(f)))) => {
                            assert!(!closed, "two Close events");
                            assert_eq!(got, MESSAGES, "the Close came early");
                            assert_eq!(f.reason.as_str(), "done");
                            closed = true;
                        }
                        Some(None) => break,
                        Some(other) => panic!("after {got} messages: {other:?}"),
                    }
                }
                assert!(closed && got == MESSAGES, "{got} messages, closed: {closed}");
                assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
            });
        }

        #[test]
        fn split_reader_recv_cancelled_mid_frame_loses_nothing() {
            rt::block_on(async {
                let (mut rd, _wr) = client(sender().await).await.split();
                let (got, cancelled) = drain_messages!(rd.recv(), Message);
                assert_eq!(got, MESSAGES);
                assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
            });
        }

        #[test]
        fn close_resumed_after_being_dropped_completes_once() {
            rt::block_on(async {
                // The server echoes, then answers our Close; it reports
                // every event it saw.
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    let mut seen = Vec::new();
                    while let Some(ev) = ws.recv_event().await {
                        let ev = ev.expect("event");
                        if let Event::Binary(b) = &ev {
                            ws.send(Message::Binary(b.clone())).await.expect("echo");
                        }
                        seen.push(ev);
                    }
                    seen
                });
                let mut ws = client(addr).await;
                // A large message still in flight both ways when close starts.
                ws.send(Message::Binary(message(7).into())).await.expect("send");
                let mut cancelled = 0;
                let result = loop {
                    match race(ws.close(CloseCode::NORMAL, "bye"), polls(cancelled)).await {
                        None => cancelled += 1,
                        Some(r) => break r,
                    }
                };
                result.expect("close completes");
                // The echo arrived while closing: tokio keeps it for
                // recv, smol and async-std drop it (one of the copies'
                // differences the one driver settles). Either way it
                // comes at most once and intact, then the end.
                let mut after = 0;
                while let Some(m) = ws.recv().await {
                    assert!(matches!(&m, Ok(Message::Binary(b)) if b[..] == message(7)[..]), "{m:?}");
                    after += 1;
                }
                assert!(after <= 1, "{after} messages after close");
                let seen = server.await;
                let closes = seen.iter().filter(|e| matches!(e, Event::Close(_))).count();
                assert_eq!(closes, 1, "{seen:?}");
                assert!(matches!(&seen[0], Event::Binary(b) if b[..] == message(7)[..]));
            });
        }

        #[test]
        fn flush_cancelled_mid_write_loses_nothing() {
            rt::block_on(async {
                let (addr, server) = receiver().await;
                // Everything queued first (the `Sink` writes only on
                // flush below its high-water mark), then one flush,
                // cancelled again and again until it completes.
                let cfg = Config {
                    write_buffer_high_water: 64 << 20,
                    ..config()
                };
                let mut ws = client_with(addr, cfg).await;
                for i in 0..MESSAGES {
                    futures_util::SinkExt::feed(&mut ws, Message::Binary(message(i).into()))
                        .await
                        .expect("feed");
                }
                let mut cancelled = 0;
                loop {
                    match race(ws.flush(), polls(cancelled)).await {
                        None => cancelled += 1,
                        Some(r) => break r.expect("flush"),
                    }
                }
                assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                assert_eq!(server.await, MESSAGES);
            });
        }

        #[test]
        fn byte_stream_read_cancelled_mid_frame_loses_nothing() {
            rt::block_on(async {
                let ws = client(sender().await).await;
                let mut bytes = ws.into_byte_stream();
                let want: Vec<u8> = (0..MESSAGES).flat_map(message).collect();
                let mut got = Vec::with_capacity(want.len());
                let mut buf = vec![0u8; 20_000];
                let mut cancelled = 0;
                loop {
                    match race(rt::read(&mut bytes, &mut buf), polls(cancelled)).await {
                        None => cancelled += 1,
                        Some(Ok(0)) => break,
                        Some(Ok(n)) => got.extend_from_slice(&buf[..n]),
                        Some(Err(e)) => panic!("after {} bytes: {e}", got.len()),
                    }
                }
                assert_eq!(got.len(), want.len());
                assert!(got == want, "the stream's bytes differ");
                assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
            });
        }
        #[test]
        fn split_writer_send_cancelled_mid_write_loses_nothing() {
            rt::block_on(async {
                let (addr, server) = receiver().await;
                // Below one message: every send after the first waits for
                // the one before to be mostly written, 4 KiB per poll.
                let cfg = Config {
                    write_buffer_high_water: 16 << 10,
                    ..config()
                };
                let (mut rd, mut wr) = client_with(addr, cfg).await.split();
                let mut cancelled = 0;
                for i in 0..MESSAGES {
                    loop {
                        match race(wr.send(Message::Binary(message(i).into())), polls(cancelled)).await {
                            None => cancelled += 1,
                            Some(r) => break r.expect("send"),
                        }
                    }
                }
                assert!(cancelled >= MESSAGES - 1, "only {cancelled} cancellations");
                wr.close(CloseCode::NORMAL, "").await.expect("close");
                let end = rd.recv().await;
                assert!(end.is_none(), "{end:?}");
                assert_eq!(server.await, MESSAGES);
            });
        }

        #[test]
        fn split_writer_flush_cancelled_mid_write_loses_nothing() {
            rt::block_on(async {
                let (addr, server) = receiver().await;
                // Everything queued first (the `Sink` only queues below its
                // high-water mark), then one flush, cancelled again and
                // again until it completes.
                let cfg = Config {
                    write_buffer_high_water: 64 << 20,
                    ..config()
                };
                let (mut rd, mut wr) = client_with(addr, cfg).await.split();
                for i in 0..MESSAGES {
                    futures_util::SinkExt::feed(&mut wr, Message::Binary(message(i).into()))
                        .await
                        .expect("feed");
                }
                let mut cancelled = 0;
                loop {
                    match race(wr.flush(), polls(cancelled)).await {
                        None => cancelled += 1,
                        Some(r) => break r.expect("flush"),
                    }
                }
                assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
                wr.close(CloseCode::NORMAL, "").await.expect("close");
                let end = rd.recv().await;
                assert!(end.is_none(), "{end:?}");
                assert_eq!(server.await, MESSAGES);
            });
        }
    };
}
