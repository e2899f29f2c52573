//! The byte-stream view (`into_byte_stream`).

macro_rules! streams_tests {
    () => {
        use super::*;
        use crate::peer::Peer;
        use std::time::Instant;
        use wsmachine::MessageKind;

        #[test]
        fn byte_stream_without_reassembly_yields_the_fragments_payload() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                // A fragmented message, a Ping between its fragments, a
                // whole one, then the Close.
                let peer = std::thread::spawn(move || {
                    let mut p = Peer::connect(addr);
                    p.conn
                        .send_fragment(MessageKind::Binary, b"hello ", false)
                        .expect("fragment");
                    p.conn.ping(b"p").expect("ping");
                    p.conn
                        .send_fragment(MessageKind::Binary, b"fragmented ", false)
                        .expect("fragment");
                    p.conn
                        .send_fragment(MessageKind::Binary, b"world", true)
                        .expect("fragment");
                    p.conn.send("!").expect("send");
                    p.conn
                        .close(Instant::now(), wsmachine::CloseCode::NORMAL, "")
                        .expect("close");
                    p.flush();
                    p.events_until_end()
                });
                let s = rt::accept(&l).await;
                let cfg = Config {
                    reassemble: false,
                    ..config()
                };
                let ws = accept_with(s, cfg, |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                let mut bytes = ws.into_byte_stream();
                let mut got = Vec::new();
                let mut buf = [0u8; 4];
                loop {
                    match rt::read(&mut bytes, &mut buf).await {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) => panic!("after {got:?}: {e}"),
                    }
                }
                assert_eq!(String::from_utf8_lossy(&got), "hello fragmented world!");
                drop(bytes);
                let events = peer.join().expect("peer");
                match &events[..] {
                    [wsmachine::Event::Pong(p), wsmachine::Event::Close(f)] => {
                        assert_eq!(&p[..], b"p");
                        assert_eq!(f.code, CloseCode::NORMAL);
                    }
                    other => panic!("the peer saw {other:?}"),
                }
            }));
        }

        #[test]
        fn byte_stream_round_trip() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                // Echoes the bytes back, until the end; gives their count.
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let ws = accept_with(s, config(), |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    let mut bs = ws.into_byte_stream();
                    let mut buf = vec![0u8; 10_000];
                    let mut total = 0;
                    loop {
                        let n = rt::read(&mut bs, &mut buf).await.expect("read");
                        if n == 0 {
                            break;
                        }
                        total += n;
                        rt::write_all(&mut bs, &buf[..n]).await.expect("write");
                    }
                    total
                });
                let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .connect()
                    .await
                    .expect("connect");
                let mut bs = ws.into_byte_stream();
                let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
                let mut back = vec![0u8; data.len()];
                for (chunk, out) in data.chunks(100_000).zip(back.chunks_mut(100_000)) {
                    rt::write_all(&mut bs, chunk).await.expect("write");
                    rt::read_exact(&mut bs, out).await.expect("read");
                }
                assert!(back == data, "the bytes came back different");
                // Closing the stream runs the closing handshake: the end of
                // the stream on both sides.
                rt::shutdown(&mut bs).await.expect("shutdown");
                let mut rest = [0u8; 16];
                assert_eq!(rt::read(&mut bs, &mut rest).await.expect("read"), 0);
                assert_eq!(server.await, data.len());
            }));
        }

        /// The byte stream's read and write halves polled from two tasks at
        /// once (both sides of an unsplit WebSocket waiting together: the
        /// wake-ups of both must get through).
        #[test]
        fn byte_stream_halves_on_two_tasks() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let ws = accept_with(s, config(), |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    let (mut r, mut w) = rt::split_io(ws.into_byte_stream());
                    // Echoes bytes until the client closes.
                    let mut buf = vec![0u8; 50_000];
                    loop {
                        match rt::read(&mut r, &mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => rt::write_all(&mut w, &buf[..n]).await.expect("echo"),
                        }
                    }
                });
                let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .connect()
                    .await
                    .expect("connect");
                let (mut r, mut w) = rt::split_io(ws.into_byte_stream());
                let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
                let expect = data.clone();
                let writer = rt::spawn(async move {
                    rt::write_all(&mut w, &data).await.expect("write");
                    w
                });
                let reader = rt::spawn(async move {
                    let mut back = vec![0u8; expect.len()];
                    rt::read_exact(&mut r, &mut back).await.expect("read");
                    assert!(back == expect, "the bytes came back different");
                    r
                });
                let mut w = writer.await;
                let mut r = reader.await;
                rt::shutdown(&mut w).await.expect("shutdown");
                let mut rest = [0u8; 16];
                assert_eq!(rt::read(&mut r, &mut rest).await.expect("read"), 0);
                server.await;
            }));
        }
    };
}
