//! How a connection ends, and the one error for "the connection is over":
//! `close` on an unsplit WebSocket, `close` on a split writer, and a peer
//! that vanishes without a Close (its stream ends, or it resets).
//!
//! The peers here are the core's `Connection` on a plain thread
//! ([`crate::peer::Peer`]): each sends exactly the frames the test names,
//! whatever the adapter does.

/// Sends small texts on `$ws` (pausing now and then, so that the
/// runtime's I/O driver runs) until a send fails; gives that error.
macro_rules! send_until_error {
    ($ws:expr) => {{
        let mut sent = 0u32;
        loop {
            match $ws.send("x").await {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            if sent % 16 == 0 {
                rt::sleep_a_millisecond().await;
            }
        }
    }};
}

macro_rules! closing_tests {
    () => {
        use super::*;
        use crate::peer::{self, Peer};
        use std::net::SocketAddr;
        use std::time::Instant;

        /// A peer server that, as soon as the handshake is done, sends
        /// `messages` texts and its own Close (`code`, "peer") in one go,
        /// then reads until the end; gives every event it saw.
        fn closing_peer(
            messages: usize,
            code: u16,
        ) -> (SocketAddr, std::thread::JoinHandle<Vec<wsmachine::Event>>) {
            let (l, addr) = peer::listen();
            let peer = std::thread::spawn(move || {
                let mut p = Peer::accept(&l);
                for i in 0..messages {
                    p.conn.send(format!("m{i}")).expect("send");
                }
                p.conn
                    .close(Instant::now(), wsmachine::CloseCode::from(code), "peer")
                    .expect("close");
                p.flush();
                p.events_until_end()
            });
            (addr, peer)
        }

        /// The peer saw our Close, code 1000 with `reason`, and nothing else
        /// but it.
        fn saw_our_close(events: &[wsmachine::Event], reason: &str) {
            match events {
                [wsmachine::Event::Close(f)] => {
                    assert_eq!((f.code, f.reason.as_str()), (CloseCode::NORMAL, reason))
                }
                other => panic!("the peer saw {other:?}"),
            }
        }

        #[test]
        fn close_discards_what_arrives_meanwhile_and_ends_with_the_peers_close() {
            rt::block_on(rt::within_a_minute(async {
                let (addr, peer) = closing_peer(3, 4001);
                let mut ws = plain_client(addr).await;
                // Nothing was received before: the peer's three messages
                // arrive while closing, and are discarded.
                ws.close(CloseCode::NORMAL, "client").await.expect("close");
                let next = ws.recv().await;
                assert!(next.is_none(), "after close: {next:?}");
                let frame = ws.close_frame().cloned().expect("the peer's Close");
                assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::from(4001), "peer"));
                match ws.send("late").await {
                    Err(Error::Closed(Ended::Closed(Some(f)))) => assert_eq!(f, frame),
                    other => panic!("send after close: {other:?}"),
                }
                // Dropped first: on async-std, only dropping the socket ends
                // the stream (see `the_server_ends_the_tcp_stream_after_the_closing_handshake`).
                drop(ws);
                saw_our_close(&peer.join().expect("peer"), "client");
            }));
        }

        #[test]
        fn split_writer_close_returns_once_written_and_the_reader_reads_to_the_peers_close() {
            rt::block_on(rt::within_a_minute(async {
                let (addr, peer) = closing_peer(3, 4002);
                let (mut rd, mut wr) = plain_client(addr).await.split();
                // The reader is not polled: the writer's close must not
                // wait for the peer's answer, only for its Close to be written.
                wr.close(CloseCode::NORMAL, "client").await.expect("close");
                for i in 0..3 {
                    match rd.recv().await {
                        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("m{i}")),
                        other => panic!("message {i}: {other:?}"),
                    }
                }
                let next = rd.recv().await;
                assert!(next.is_none(), "after the peer's Close: {next:?}");
                let frame = rd.close_frame().expect("the peer's Close");
                assert_eq!((frame.code, frame.reason.as_str()), (CloseCode::from(4002), "peer"));
                match wr.send("late").await {
                    Err(Error::Closed(_)) => {}
                    other => panic!("send after close: {other:?}"),
                }
                drop((rd, wr));
                saw_our_close(&peer.join().expect("peer"), "client");
            }));
        }

        #[test]
        fn a_peer_whose_stream_ends_without_a_close_fails_every_send_with_closed_eof() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                // The peer ends its stream (FIN) without a Close, and keeps
                // reading: our writes never fail, only reading sees the end.
                let peer = std::thread::spawn(move || {
                    let mut p = Peer::connect(addr);
                    p.tcp.shutdown(std::net::Shutdown::Write).expect("shutdown");
                    peer::read_to_end(&mut p.tcp).len()
                });
                let s = rt::accept(&l).await;
                let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                let eof = || Error::Closed(Ended::Failed(ConnectionError::Eof));
                let first = send_until_error!(ws);
                assert_eq!(first.to_string(), eof().to_string(), "{first:?}");
                assert!(matches!(first, Error::Closed(Ended::Failed(ConnectionError::Eof))));
                // The same error for every later send, and recv reports the cause.
                let again = ws.send("x").await;
                assert!(matches!(again, Err(Error::Closed(Ended::Failed(ConnectionError::Eof)))), "{again:?}");
                let cause = ws.recv().await;
                assert!(matches!(cause, Some(Err(Error::Ws(ConnectionError::Eof)))), "{cause:?}");
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
                let again = ws.send("x").await;
                assert!(matches!(again, Err(Error::Closed(Ended::Failed(ConnectionError::Eof)))), "{again:?}");
                drop(ws);
                peer.join().expect("peer");
            }));
        }

        #[test]
        fn a_peer_that_resets_fails_the_send_that_meets_it_then_every_send_with_closed_io() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                // The peer vanishes: its socket closes with a reset (linger
                // 0), no FIN, no Close.
                let peer = std::thread::spawn(move || {
                    let p = Peer::connect(addr);
                    peer::reset(p.tcp);
                });
                let s = rt::accept(&l).await;
                let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                peer.join().expect("peer");
                // The operation that meets the reset (reading or writing)
                // reports it as it is; every later one as `Closed(Io(kind))`.
                let kind = match send_until_error!(ws) {
                    Error::Io(e) => e.kind(),
                    other => panic!("the first error: {other:?}"),
                };
                assert!(
                    matches!(kind, std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
                    "{kind:?}"
                );
                let again = ws.send("x").await;
                assert!(matches!(&again, Err(Error::Closed(Ended::Io(k))) if *k == kind), "{again:?}");
                let again = ws.send("x").await;
                assert!(matches!(&again, Err(Error::Closed(Ended::Io(k))) if *k == kind), "{again:?}");
            }));
        }

        #[test]
        fn after_a_reset_met_by_send_recv_reports_the_cause() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let peer = std::thread::spawn(move || {
                    let p = Peer::connect(addr);
                    peer::reset(p.tcp);
                });
                let s = rt::accept(&l).await;
                let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                peer.join().expect("peer");
                let kind = match send_until_error!(ws) {
                    Error::Io(e) => e.kind(),
                    other => panic!("the first error: {other:?}"),
                };
                match ws.recv().await {
                    Some(Err(Error::Io(e))) => assert_eq!(e.kind(), kind),
                    Some(Err(Error::Closed(Ended::Io(k)))) => assert_eq!(k, kind),
                    other => panic!("recv after the reset: {other:?}"),
                }
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
            }));
        }
        #[test]
        fn the_server_ends_the_tcp_stream_after_the_closing_handshake() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                // The peer client closes, then reads until the server ends
                // the TCP stream (RFC 6455 7.1.1: the server closes first).
                let peer = std::thread::spawn(move || {
                    let mut p = Peer::connect(addr);
                    p.conn
                        .close(Instant::now(), wsmachine::CloseCode::NORMAL, "client")
                        .expect("close");
                    p.events_until_end()
                });
                let s = rt::accept(&l).await;
                let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
                // Still held here: the stream must end without the drop.
                let events = peer.join().expect("peer");
                match &events[..] {
                    [wsmachine::Event::Close(f)] => assert_eq!(f.code, CloseCode::NORMAL),
                    other => panic!("the peer saw {other:?}"),
                }
                drop(ws);
            }));
        }
    };
}
