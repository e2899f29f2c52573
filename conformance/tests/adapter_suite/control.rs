//! Control frames answered whatever the application does: a client that
//! only sends, or only receives, answers every Ping and echoes the Close.

macro_rules! control_tests {
    () => {
        use super::*;

        #[test]
        fn a_send_only_client_answers_every_ping_and_echoes_the_close_behind_them() {
            // Bounded: the failure this guards against is a hang.
            rt::block_on(rt::within_a_minute(async {
                const PINGS: usize = 1000;
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    // One Ping at a time, each sent once the one before
                    // was answered (a burst may be answered by one Pong,
                    // RFC 6455 5.5.3): every one must be answered.
                    let mut messages = 0;
                    for i in 0..PINGS as u32 {
                        ws.ping(&i.to_be_bytes()).await.expect("ping");
                        loop {
                            match ws.recv_event().await {
                                Some(Ok(Event::Pong(p))) if p[..] == i.to_be_bytes() => break,
                                Some(Ok(Event::Text(_))) => messages += 1,
                                other => panic!("waiting for Pong {i}: {other:?}"),
                            }
                        }
                    }
                    // Then a Ping with the Close right behind it: the
                    // client must echo the Close without ever reading.
                    ws.ping(b"last").await.expect("ping");
                    let closed = ws.close(CloseCode::NORMAL, "bye").await;
                    (PINGS, messages, closed)
                });
                // The application only sends, until the connection is over.
                let mut ws = client(addr).await;
                let mut sent = 0usize;
                while ws
                    .send(Message::Text(format!("msg {sent}").into()))
                    .await
                    .is_ok()
                {
                    sent += 1;
                    if sent % 64 == 0 {
                        // A steady sender, not a flood: a send into a
                        // writable socket never waits, and a loop that
                        // never waits starves the runtime (on tokio the
                        // I/O driver and the minute's deadline).
                        rt::sleep_a_millisecond().await;
                    }
                }
                let (pongs, messages, closed) = server.await;
                assert_eq!(pongs, PINGS);
                assert!(messages > 0 && messages <= sent, "{messages} of {sent}");
                closed.expect("the server's close completes: our Close echo arrived");
            }));
        }

        #[test]
        fn a_read_only_client_answers_every_ping_and_echoes_the_close_behind_them() {
            read_only_client_answers_pings!(plain_client);
        }

        #[test]
        fn a_read_only_client_answers_every_ping_over_a_transport_whose_writes_pend() {
            read_only_client_answers_pings!(client);
        }
    };
}

/// The server pings a client that only calls `recv` (made by `$client`)
/// 1,000 times, one Ping at a time, then sends a Ping with its Close right
/// behind it: every Ping must be answered, and the Close echoed.
macro_rules! read_only_client_answers_pings {
    ($client:ident) => {
        // Bounded: the failure this guards against is a hang.
        rt::block_on(rt::within_a_minute(async {
            const PINGS: u32 = 1000;
            let (l, addr) = rt::listen().await;
            let server = rt::spawn(async move {
                let s = rt::accept(&l).await;
                let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                // Each Ping sent once the one before was answered (a burst
                // may be answered by one Pong, RFC 6455 5.5.3): every one
                // must be answered, by payload.
                for i in 0..PINGS {
                    ws.ping(&i.to_be_bytes()).await.expect("ping");
                    match ws.recv_event().await {
                        Some(Ok(Event::Pong(p))) if p[..] == i.to_be_bytes() => {}
                        other => panic!("waiting for Pong {i}: {other:?}"),
                    }
                }
                ws.ping(b"last").await.expect("ping");
                ws.close(CloseCode::NORMAL, "bye").await
            });
            // The application only receives, until the connection is over.
            let mut ws = $client(addr).await;
            let end = ws.recv().await;
            assert!(end.is_none(), "the server sent no message: {end:?}");
            server
                .await
                .expect("the server's close completes: our Close echo arrived");
            let frame = ws.close_frame().expect("the server's Close");
            assert_eq!(
                (frame.code, frame.reason.as_str()),
                (CloseCode::NORMAL, "bye")
            );
        }))
    };
}
