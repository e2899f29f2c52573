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
                    let mut events = Vec::new();
                    while let Some(ev) = p.next_event() {
                        events.push(ev);
                    }
                    events
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
    };
}
