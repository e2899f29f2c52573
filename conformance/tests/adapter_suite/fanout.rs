//! One message to many connections: a `PreparedMessage` sent through
//! every surface (unsplit `send_prepared` and `try_send_prepared`, split
//! writers' too) arrives intact whatever each connection negotiated, and a
//! fan-out loop of `try_send` over split writers never waits for a peer
//! that does not read: the others get everything, the slow one reports
//! `Backpressure` and holds no more than the loop queued for it, and is
//! dropped at `Config::max_pending_output`.

/// Shrinks the receive buffer of a peer's socket (no autotuning after
/// it), so that a peer that never reads fills up after little data rather
/// than after the tens of MiB a loopback socket can take.
pub(crate) fn small_receive_buffer(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 16 << 10;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from the pointer.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_RCVBUF");
}

/// JSON-like text of `len` bytes that starts with `seed`.
pub(crate) fn json(len: usize, seed: usize) -> String {
    let mut s = format!("[{seed},");
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"u{}\",\"ok\":true}},",
            i % 13
        ));
        i += 1;
    }
    s.truncate(len);
    s
}

macro_rules! fanout_tests {
    () => {
        use super::*;
        use crate::fanout::{json, small_receive_buffer};
        use ws::{DeflateConfig, PreparedMessage, SendStatus};

        /// The messages every connection gets, in order.
        fn broadcast() -> Vec<Message> {
            vec![
                Message::Text(json(3000, 1).into()),
                Message::Binary(crate::messages::payload(100 << 10, 2).into()),
                Message::Text("hi".into()),
                Message::Binary(Vec::new().into()),
                Message::Text(json(70_000, 5).into()),
            ]
        }

        /// Six clients — compression offered or not, to a server that
        /// keeps no context (`server_no_context_takeover`) or keeps it —
        /// get the same prepared messages, sent through each surface,
        /// interleaved with ordinary sends.
        #[test]
        fn a_prepared_message_reaches_every_connection_intact() {
            rt::block_on(rt::within_a_minute(async {
                const CLIENTS: usize = 6;
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let no_context = Config {
                        deflate: Some(DeflateConfig {
                            server_no_context_takeover: true,
                            ..DeflateConfig::default()
                        }),
                        ..config()
                    };
                    let takeover = Config {
                        ping_interval: None,
                        ..Config::with_deflate()
                    };
                    let mut conns = Vec::new();
                    for i in 0..CLIENTS {
                        let s = rt::accept(&l).await;
                        let cfg = if i % 2 == 0 {
                            no_context.clone()
                        } else {
                            takeover.clone()
                        };
                        let ws = accept_with(s, cfg, |_| Ok(Accept::new()))
                            .await
                            .expect("accept");
                        conns.push(ws);
                    }
                    let msgs: Vec<PreparedMessage> =
                        broadcast().into_iter().map(PreparedMessage::new).collect();
                    let mut negotiated = Vec::new();
                    let mut tasks = Vec::new();
                    for (i, mut ws) in conns.into_iter().enumerate() {
                        negotiated.push(ws.negotiated().deflate.clone());
                        let msgs = msgs.clone();
                        tasks.push(rt::spawn(async move {
                            // Each connection through another surface.
                            match i % 3 {
                                0 => {
                                    for m in &msgs {
                                        ws.send("own").await.expect("send");
                                        ws.send_prepared(m).await.expect("send_prepared");
                                    }
                                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                                }
                                1 => {
                                    for m in &msgs {
                                        let _ = ws.try_send("own").expect("try_send");
                                        let _ = ws.try_send_prepared(m).expect("try_send_prepared");
                                    }
                                    ws.flush().await.expect("flush");
                                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                                }
                                _ => {
                                    let (mut reader, mut writer) = ws.split();
                                    let read = rt::spawn(async move {
                                        while let Some(Ok(_)) = reader.recv().await {}
                                    });
                                    for (j, m) in msgs.iter().enumerate() {
                                        writer.send("own").await.expect("send");
                                        if j % 2 == 0 {
                                            writer.send_prepared(m).await.expect("send_prepared");
                                        } else {
                                            let _ = writer.try_send_prepared(m).expect("try_send");
                                        }
                                    }
                                    writer.close(CloseCode::NORMAL, "").await.expect("close");
                                    read.await;
                                }
                            }
                        }));
                    }
                    for t in tasks {
                        t.await;
                    }
                    negotiated
                });
                let mut clients = Vec::new();
                for i in 0..CLIENTS {
                    // Clients 0, 1, 2, 3 offer compression; 4 and 5 do not.
                    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                        .no_proxy()
                        .config(config())
                        .compression(i < 4)
                        .connect_on(rt::connect(addr).await)
                        .await
                        .expect("connect");
                    clients.push(rt::spawn(async move {
                        let mut got = Vec::new();
                        while let Some(m) = ws.recv().await {
                            got.push(m.expect("message"));
                        }
                        got
                    }));
                }
                let mut expected = Vec::new();
                for m in broadcast() {
                    expected.push(Message::Text("own".into()));
                    expected.push(m);
                }
                for (i, c) in clients.into_iter().enumerate() {
                    let got = c.await;
                    assert_eq!(got.len(), expected.len(), "client {i}");
                    assert!(got == expected, "client {i}: a message differs");
                }
                let negotiated = server.await;
                // Both classes were exercised: shared compressed bytes and
                // the context-takeover fallback, and no compression.
                assert!(negotiated[0]
                    .as_ref()
                    .is_some_and(|d| d.server_no_context_takeover));
                assert!(negotiated[1]
                    .as_ref()
                    .is_some_and(|d| !d.server_no_context_takeover));
                assert!(negotiated[4].is_none() && negotiated[5].is_none());
            }))
        }

        /// A fan-out loop of `try_send_prepared` over split writers, one
        /// of whose peers never reads: the loop never waits, the readers'
        /// tasks write, the other peers get every message, and the slow
        /// one reports `Backpressure`, after which the loop stops sending
        /// to it and its pending output stays at most what was queued.
        #[test]
        fn a_fan_out_loop_never_waits_for_a_peer_that_does_not_read() {
            rt::block_on(rt::within_a_minute(async {
                const FAST: usize = 3;
                const HIGH_WATER: usize = 1 << 20;
                const MSG: usize = 8 << 10;
                const ROUNDS: usize = 1_500;
                let (l, addr) = rt::listen().await;
                // The slow peer: connects, then never reads until told to go.
                let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
                let slow = std::thread::spawn(move || {
                    let p = crate::peer::Peer::connect(addr);
                    small_receive_buffer(&p.tcp);
                    go_rx.recv().expect("the test ends");
                    crate::peer::reset(p.tcp);
                });
                let server = rt::spawn(async move {
                    let cfg = Config {
                        write_buffer_high_water: HIGH_WATER,
                        ..config()
                    };
                    let mut writers = Vec::new();
                    let mut readers = Vec::new();
                    for _ in 0..FAST + 1 {
                        let s = rt::accept(&l).await;
                        let mut fast = false;
                        let ws = accept_with(s, cfg.clone(), |req| {
                            fast = req.uri() == "/fast";
                            Ok(Accept::new())
                        })
                        .await
                        .expect("accept");
                        let (mut reader, writer) = ws.split();
                        // The reader's task is what writes `try_send`'s output.
                        readers.push(rt::spawn(async move {
                            while let Some(Ok(_)) = reader.recv().await {}
                        }));
                        writers.push((fast, writer, None::<usize>, 0usize));
                    }
                    for round in 0..ROUNDS {
                        let mut m = round.to_le_bytes().to_vec();
                        m.resize(MSG, round as u8);
                        let msg = PreparedMessage::new(m);
                        for (fast, w, stopped, queued) in &mut writers {
                            if stopped.is_some() {
                                continue;
                            }
                            match w.try_send_prepared(&msg).expect("try_send_prepared") {
                                SendStatus::Queued => *queued += msg.frame().len(),
                                SendStatus::Backpressure => {
                                    *queued += msg.frame().len();
                                    assert!(!*fast, "a peer that reads, at round {round}");
                                    *stopped = Some(round);
                                }
                                other => panic!("{other:?}"),
                            }
                            assert!(w.pending_output() <= *queued);
                        }
                        // The rate messages are published at (8 MiB/s at
                        // most): the loop itself never waits for a
                        // connection.
                        rt::sleep_a_millisecond().await;
                    }
                    let mut slow_writer = None;
                    for (fast, mut w, stopped, queued) in writers {
                        if fast {
                            assert_eq!(stopped, None);
                            w.close(CloseCode::NORMAL, "").await.expect("close");
                        } else {
                            let at = stopped.expect("the slow peer reported Backpressure");
                            let pending = w.pending_output();
                            assert!(pending <= queued, "{pending} > {queued}");
                            assert!(pending <= HIGH_WATER + MSG + 16, "{pending}");
                            slow_writer = Some((w, at));
                        }
                    }
                    (readers, slow_writer.expect("the slow peer"))
                });
                let mut clients = Vec::new();
                for _ in 0..FAST {
                    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/fast"))
                        .no_proxy()
                        .config(config())
                        .compression(false)
                        .connect_on(rt::connect(addr).await)
                        .await
                        .expect("connect");
                    clients.push(rt::spawn(async move {
                        let mut n = 0usize;
                        while let Some(m) = ws.recv().await {
                            let Message::Binary(b) = m.expect("message") else {
                                panic!("binary")
                            };
                            assert_eq!(b.len(), MSG);
                            assert_eq!(b[..8], n.to_le_bytes(), "message {n} in order");
                            n += 1;
                        }
                        n
                    }));
                }
                for c in clients {
                    assert_eq!(c.await, ROUNDS, "a peer that reads gets everything");
                }
                let (readers, (_slow_writer, at)) = server.await;
                // Not before the output passed the high-water mark.
                assert!(at * MSG > HIGH_WATER, "Backpressure at round {at}");
                go_tx.send(()).expect("the slow peer waits");
                slow.join().expect("slow peer");
                for r in readers {
                    r.await;
                }
            }))
        }
        /// `try_send` on an unsplit connection writes nothing by itself, so
        /// the output grows by exactly one frame per call: the send that
        /// finds more than `max_pending_output` waiting fails with the
        /// connection's end, the output is dropped at once, `recv` reports
        /// the cause and then `None`, and the peer sees the transport end
        /// without a Close frame.
        #[test]
        fn try_send_past_the_output_limit_ends_the_connection() {
            rt::block_on(rt::within_a_minute(async {
                const LIMIT: usize = 256 << 10;
                const MSG: usize = 8 << 10;
                let frame = MSG + 4; // 126-form header, unmasked
                let (l, addr) = rt::listen().await;
                let client = std::thread::spawn(move || {
                    let mut p = crate::peer::Peer::connect(addr);
                    p.events_until_end()
                });
                let s = rt::accept(&l).await;
                let cfg = Config {
                    max_pending_output: Some(LIMIT),
                    write_buffer_high_water: 64 << 10,
                    ..config()
                };
                let mut ws = accept_with(s, cfg, |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                let limited = ConnectionError::PendingOutputLimit;
                let mut sent = 0;
                let err = loop {
                    match ws.try_send(vec![1u8; MSG]) {
                        Ok(_) => sent += 1,
                        Err(e) => break e,
                    }
                    assert!(sent < 10_000, "the limit was never reached");
                };
                // The first send that found more than the limit waiting.
                assert_eq!(sent, LIMIT / frame + 1);
                assert!(
                    matches!(&err, Error::Closed(Ended::Failed(e)) if *e == limited),
                    "{err:?}"
                );
                assert_eq!(ws.pending_output(), 0, "the output is dropped at once");
                assert!(matches!(
                    ws.try_send("more"),
                    Err(Error::Closed(Ended::Failed(e))) if e == limited
                ));
                match ws.recv().await {
                    Some(Err(Error::Ws(e))) => assert_eq!(e, limited),
                    other => panic!("recv after the limit: {other:?}"),
                }
                assert!(ws.recv().await.is_none());
                drop(ws);
                // Nothing was written (unsplit `try_send` leaves writing to
                // the next operation): the peer meets the end of the
                // stream right after the handshake, and no Close frame.
                let events = client.join().expect("client");
                assert!(
                    matches!(&events[..], [Event::Error(ConnectionError::Eof)]),
                    "{events:?}"
                );
            }))
        }

        /// A split writer's fan-out to a peer that never reads: the loop
        /// gets `Backpressure`, then, past `max_pending_output`, the
        /// connection's end; the reader reports it and shuts the transport
        /// down, so the peer reads what was written and then the end of
        /// the stream; the output's memory is given back.
        #[test]
        fn a_split_writer_drops_a_peer_that_does_not_read_at_the_limit() {
            rt::block_on(rt::within_a_minute(async {
                const LIMIT: usize = 512 << 10;
                const HIGH_WATER: usize = 64 << 10;
                const MSG: usize = 8 << 10;
                let (l, addr) = rt::listen().await;
                let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
                let slow = std::thread::spawn(move || {
                    let mut p = crate::peer::Peer::connect(addr);
                    small_receive_buffer(&p.tcp);
                    go_rx.recv().expect("the test ends");
                    crate::peer::read_to_end(&mut p.tcp).len()
                });
                let s = rt::accept(&l).await;
                let cfg = Config {
                    max_pending_output: Some(LIMIT),
                    write_buffer_high_water: HIGH_WATER,
                    ..config()
                };
                let ws = accept_with(s, cfg, |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                let (mut reader, mut writer) = ws.split();
                let read = rt::spawn(async move {
                    let mut results = Vec::new();
                    while let Some(r) = reader.recv().await {
                        results.push(r.map(|_| ()).map_err(|e| e.to_string()));
                    }
                    results
                });
                let limited = ConnectionError::PendingOutputLimit;
                let mut backpressure = false;
                let mut rounds = 0usize;
                let err = loop {
                    match writer.try_send(vec![2u8; MSG]) {
                        Ok(SendStatus::Backpressure) => backpressure = true,
                        Ok(_) => {}
                        Err(e) => break e,
                    }
                    rounds += 1;
                    assert!(rounds < 100_000, "the limit was never reached");
                    // A publisher's pace: the reader's task writes meanwhile.
                    if rounds % 8 == 0 {
                        rt::sleep_a_millisecond().await;
                    }
                };
                assert!(backpressure, "Backpressure came first");
                assert!(
                    matches!(&err, Error::Closed(Ended::Failed(e)) if *e == limited),
                    "{err:?}"
                );
                assert_eq!(writer.pending_output(), 0, "the output is dropped at once");
                let results = read.await;
                assert_eq!(
                    results,
                    vec![Err(Error::Ws(limited.clone()).to_string())],
                    "the reader reports the cause once"
                );
                assert!(matches!(
                    writer.try_send("more"),
                    Err(Error::Closed(Ended::Failed(e))) if e == limited
                ));
                drop(writer);
                go_tx.send(()).expect("the slow peer waits");
                // What reached the peer's socket before the end, then the
                // end of the stream (the read returns): less than the
                // limit plus what the sockets hold.
                let got = slow.join().expect("slow peer");
                assert!(got < rounds * (MSG + 4), "{got}");
            }))
        }
    };
}
