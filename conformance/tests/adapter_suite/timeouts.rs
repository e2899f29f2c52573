//! Keepalive and closing-handshake timeouts against peers that go silent
//! (or, for the Pong, that keep sending and never answer the Ping), on an
//! unsplit WebSocket and on a split reader, and a server that gives
//! up on a peer that stops reading after its Close. The error names the
//! timer that fired; nothing measures how long it took.

macro_rules! timeouts_tests {
    () => {
        use super::*;
        use crate::peer::{self, Peer};
        use std::time::{Duration, Instant};

        /// A client of `peer` (one of `peer`'s raw servers).
        async fn client_of(
            cfg: Config,
            (addr, peer): (std::net::SocketAddr, std::thread::JoinHandle<Vec<u8>>),
        ) -> (ws::WebSocket<rt::Tcp>, std::thread::JoinHandle<Vec<u8>>) {
            let ws = ConnectBuilder::new(format!("ws://{addr}/"))
                .config(cfg)
                .connect_on(rt::connect(addr).await)
                .await
                .expect("connect")
                .0;
            (ws, peer)
        }

        async fn silent_client(
            cfg: Config,
        ) -> (ws::WebSocket<rt::Tcp>, std::thread::JoinHandle<Vec<u8>>) {
            client_of(cfg, peer::silent_server()).await
        }

        /// Keepalive every 100 ms, each Ping answered within 200 ms.
        fn keepalive() -> Config {
            Config {
                ping_interval: Some(Duration::from_millis(100)),
                pong_timeout: Duration::from_millis(200),
                ..config()
            }
        }

        #[test]
        fn pong_timeout_against_a_silent_peer() {
            rt::block_on(rt::within_a_minute(async {
                let (mut ws, peer) = silent_client(keepalive()).await;
                let r = ws.recv().await;
                assert!(
                    matches!(
                        r,
                        Some(Err(Error::Ws(ConnectionError::TimedOut(Timeout::Pong))))
                    ),
                    "{r:?}"
                );
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
                drop(ws);
                // On the wire: the keepalive Ping (masked, a 4-byte
                // counter), then our Close 1011.
                let wire = peer.join().expect("peer");
                assert!(wire.len() >= 12, "{wire:02x?}");
                assert_eq!(&wire[..2], &[0x89, 0x84], "a Ping first: {wire:02x?}");
                assert_eq!(wire[10], 0x88, "then the Close: {wire:02x?}");
            }));
        }

        #[test]
        fn pong_timeout_against_a_peer_that_keeps_sending() {
            // Data from the peer does not postpone the Pong's deadline:
            // only the Pong answers the Ping.
            rt::block_on(rt::within_a_minute(async {
                let (mut ws, peer) = client_of(keepalive(), peer::chatty_server()).await;
                let mut ticks = 0;
                let r = loop {
                    match ws.recv().await {
                        Some(Ok(Message::Text(t))) if t == "tick" => ticks += 1,
                        other => break other,
                    }
                };
                assert!(
                    matches!(
                        r,
                        Some(Err(Error::Ws(ConnectionError::TimedOut(Timeout::Pong))))
                    ),
                    "after {ticks} ticks: {r:?}"
                );
                // Ticks kept coming while the Ping waited (every 10 ms for
                // 300 ms; a loaded machine may deliver fewer).
                assert!(ticks >= 2, "{ticks} ticks");
                let stats = ws.stats();
                assert_eq!((stats.keepalive_pings, stats.last_rtt), (1, None));
                drop(ws);
                let wire = peer.join().expect("peer");
                assert_eq!(&wire[..2], &[0x89, 0x84], "a Ping first: {wire:02x?}");
                assert_eq!(wire[10], 0x88, "then the Close: {wire:02x?}");
                // 1011, masked with the key at 12..16.
                let code = [wire[16] ^ wire[12], wire[17] ^ wire[13]];
                assert_eq!(u16::from_be_bytes(code), 1011, "{wire:02x?}");
            }));
        }

        #[test]
        fn split_reader_sends_keepalive_pings_and_times_out() {
            rt::block_on(rt::within_a_minute(async {
                let cfg = Config {
                    ping_interval: Some(Duration::from_millis(50)),
                    pong_timeout: Duration::from_millis(100),
                    ..config()
                };
                let (ws, peer) = silent_client(cfg).await;
                // Our keepalive runs in the reader; the writer stays idle.
                let (mut rd, wr) = ws.split();
                let r = rd.recv().await;
                assert!(
                    matches!(
                        r,
                        Some(Err(Error::Ws(ConnectionError::TimedOut(Timeout::Pong))))
                    ),
                    "{r:?}"
                );
                let end = rd.recv().await;
                assert!(end.is_none(), "{end:?}");
                drop((rd, wr));
                let wire = peer.join().expect("peer");
                assert!(wire.len() >= 12, "{wire:02x?}");
                assert_eq!(&wire[..2], &[0x89, 0x84], "a Ping first: {wire:02x?}");
                assert_eq!(
                    &wire[10..12],
                    &[0x88, 0x80 | 24],
                    "then the Close 1011: {wire:02x?}"
                );
            }));
        }

        #[test]
        fn close_timeout_against_a_peer_that_never_closes() {
            rt::block_on(rt::within_a_minute(async {
                let cfg = Config {
                    close_timeout: Duration::from_millis(300),
                    ..config()
                };
                let (mut ws, peer) = silent_client(cfg).await;
                let r = ws.close(CloseCode::NORMAL, "").await;
                assert!(
                    matches!(
                        r,
                        Err(Error::Ws(ConnectionError::TimedOut(
                            Timeout::ClosingHandshake
                        )))
                    ),
                    "{r:?}"
                );
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
                drop(ws);
                let wire = peer.join().expect("peer");
                assert_eq!(wire.first(), Some(&0x88), "our Close: {wire:02x?}");
            }));
        }

        #[test]
        fn split_reader_answers_keepalive_pings_while_the_writer_is_idle() {
            rt::block_on(rt::within_a_minute(async {
                // The server pings every 20 ms and waits for three Pongs (its
                // pong timeout is far away); the client's writer never does
                // anything, so only its reader can be answering.
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let cfg = Config {
                        ping_interval: Some(Duration::from_millis(20)),
                        pong_timeout: Duration::from_secs(60),
                        ..config()
                    };
                    let mut ws = accept_with(s, cfg, |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    let mut pongs = 0;
                    while pongs < 3 {
                        match ws.recv_event().await {
                            Some(Ok(Event::Pong(_))) => pongs += 1,
                            other => panic!("expected Pongs, got {other:?}"),
                        }
                    }
                    ws.send("three pongs").await.expect("send");
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                });
                let (mut rd, _wr) = plain_client(addr).await.split();
                let mut got = Vec::new();
                while let Some(m) = rd.recv().await {
                    got.push(m.expect("message"));
                }
                assert_eq!(got, vec![Message::from("three pongs")]);
                server.await;
            }));
        }

        /// A peer that sends its Close and then never reads: our Close echo
        /// is stuck behind output the socket will not take. The server must
        /// give up after `close_timeout` (shut the transport down, end
        /// `recv`, free the output) instead of holding the connection for as
        /// long as the peer stays.
        #[test]
        fn a_server_gives_up_on_a_peer_that_stops_reading_after_its_close() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let (done_tx, done) = std::sync::mpsc::channel::<()>();
                let peer = std::thread::spawn(move || {
                    let mut p = Peer::connect(addr);
                    p.conn
                        .close(Instant::now(), wsmachine::CloseCode::NORMAL, "")
                        .expect("close");
                    p.flush();
                    // Holds the socket without reading until the server is done.
                    let _ = done.recv();
                });
                let s = rt::accept(&l).await;
                let cfg = Config {
                    close_timeout: Duration::from_millis(300),
                    write_buffer_high_water: 64 << 20,
                    ..config()
                };
                let mut ws = accept_with(s, cfg, |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                // Far more than the socket buffers hold: most of it stays
                // queued (the send is cancelled once it queued the message
                // and wrote what the transport took).
                let big = Message::from(vec![7u8; 32 << 20]);
                let sent = race(ws.send(big), 1_000).await;
                assert!(!matches!(sent, Some(Err(_))), "{sent:?}");
                assert!(ws.pending_output() > 16 << 20, "{}", ws.pending_output());
                let mut events = Vec::new();
                while let Some(ev) = ws.recv_event().await {
                    events.push(ev);
                }
                assert!(matches!(&events[..], [Ok(Event::Close(_))]), "{events:?}");
                assert_eq!(ws.pending_output(), 0);
                done_tx.send(()).expect("the peer waits");
                peer.join().expect("peer");
            }));
        }

        #[test]
        fn a_protocol_error_from_the_peer_is_reported_and_answered_with_1002() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                // A raw client that sends an unmasked frame (illegal from a client).
                let raw = std::thread::spawn(move || {
                    use std::io::Write;
                    let mut p = Peer::connect(addr);
                    p.tcp.write_all(b"\x81\x02hi").expect("write");
                    peer::read_to_end(&mut p.tcp)
                });
                let s = rt::accept(&l).await;
                let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                let r = ws.recv().await;
                assert!(
                    matches!(r, Some(Err(Error::Ws(ConnectionError::Protocol(_))))),
                    "{r:?}"
                );
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
                drop(ws);
                let rest = raw.join().expect("raw client");
                // Close 1002, then the server shut the connection.
                assert!(rest.len() >= 4, "{rest:02x?}");
                assert_eq!(rest[0], 0x88);
                assert_eq!(&rest[2..4], b"\x03\xea");
            }));
        }
    };
}
