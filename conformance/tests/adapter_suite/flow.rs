//! How output flows: an echo loop answers a pipelined burst with one write
//! (`recv` → `send`, `forward`, split halves), a reader that does not read
//! slows the sender down (`send` waits past the high-water mark), and the
//! answers to the messages before the peer's Close (or a protocol error)
//! go out before our Close.

/// A masked client frame (FIN set) with extra RSV bits `rsv` (0x20 = RSV2).
pub(crate) fn client_frame(opcode: u8, rsv: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x80 | rsv | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// The (opcode, payload) of every unmasked server frame in `wire`.
pub(crate) fn server_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while wire.len() >= 2 {
        assert_eq!(wire[1] & 0x80, 0, "server frames are not masked");
        let len = (wire[1] & 0x7f) as usize;
        assert!(len < 126, "short frames only in this test");
        let (head, rest) = wire.split_at(2);
        out.push((head[0] & 0x0f, rest[..len].to_vec()));
        wire = &rest[len..];
    }
    out
}

/// How the server under test echoes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Echo {
    /// `while let Some(m) = ws.recv().await { ws.send(m).await }`
    RecvSend,
    /// `stream.forward(sink)` over the WebSocket's `Stream` and `Sink`
    /// (split by `futures`' `StreamExt::split`).
    Forward,
    /// `reader.forward(writer)` over `split()` halves.
    SplitForward,
}

/// Sends 16 messages in one write to a server echoing them `$how`, and
/// gives the number of writes the server made for the echoes. The burst is
/// one 300-byte write on loopback, so it arrives in one read.
macro_rules! echo_writes {
    ($how:expr) => {{
        use crate::flow::Echo;
        use futures_util::StreamExt;
        let (l, addr) = rt::listen().await;
        let writes = crate::WriteCount::default();
        let counted = writes.clone();
        let how = $how;
        let server = rt::spawn(async move {
            let s = rt::accept(&l).await;
            let mut ws = accept_with(rt::Counting(s, counted), config(), |_| Ok(Accept::new()))
                .await
                .expect("accept");
            match how {
                Echo::RecvSend => {
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                }
                Echo::Forward => {
                    let (sink, stream) = StreamExt::split(ws);
                    let _ = stream.forward(sink).await;
                }
                Echo::SplitForward => {
                    let (reader, mut writer) = ws.split();
                    let _ = reader.forward(&mut writer).await;
                }
            }
        });
        let (before_tx, before_rx) = std::sync::mpsc::channel();
        let peer = std::thread::spawn(move || {
            let mut p = crate::peer::Peer::connect(addr);
            // The 101 was the server's last write before the burst.
            before_rx.recv().expect("the count before");
            for i in 0..16 {
                p.conn.send(format!("message {i}")).expect("send");
            }
            // All 16 frames leave in one write.
            p.flush();
            let mut got = Vec::new();
            while got.len() < 16 {
                match p.next_event() {
                    Some(wsmachine::Event::Text(t)) => got.push(t.to_string()),
                    other => panic!("after {} echoes: {other:?}", got.len()),
                }
            }
            got
        });
        // Wait for the handshake's writes to be done: the 101 is written
        // before `accept_with` returns, which the peer's connect waited for.
        let before = loop {
            let n = writes.get();
            if n > 0 {
                break n;
            }
            rt::sleep_a_millisecond().await;
        };
        before_tx.send(()).expect("the peer waits");
        // When the peer gives up, whether the server wrote anything after
        // the 101 tells a server that never answered from a lost write.
        let got = peer.join().unwrap_or_else(|_| {
            panic!(
                "the peer got no echo: the server made {} writes, {before} before the burst",
                writes.get()
            )
        });
        let expected: Vec<String> = (0..16).map(|i| format!("message {i}")).collect();
        assert_eq!(got, expected);
        let n = writes.get() - before;
        server.await;
        n
    }};
}

/// Runs an echo application (recv → send until `recv` says the connection
/// is over) on one connection while a raw client sends `$frames` in ONE
/// write after the handshake; gives the frames the client received.
macro_rules! echo_app_answers {
    ($frames:expr) => {{
        let frames: Vec<u8> = $frames;
        let (l, addr) = rt::listen().await;
        let client = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut tcp = crate::peer::tcp(addr);
            tcp.write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .expect("write");
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut b).expect("the response");
                head.push(b[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101"));
            tcp.write_all(&frames).expect("write");
            crate::peer::read_to_end(&mut tcp)
        });
        let s = rt::accept(&l).await;
        let mut ws = ws::accept(s).await.expect("accept");
        while let Some(r) = ws.recv().await {
            if let Ok(m) = r {
                ws.send(m).await.expect("echo");
            }
        }
        drop(ws);
        crate::flow::server_frames(&client.join().expect("client"))
    }};
}

macro_rules! flow_tests {
    () => {
        use super::*;
        use crate::flow::client_frame;

        #[test]
        fn a_recv_send_loop_echoes_a_burst_in_one_write() {
            rt::block_on(rt::within_a_minute(async {
                assert_eq!(echo_writes!(Echo::RecvSend), 1);
            }));
        }

        #[test]
        fn forward_echoes_a_burst_in_one_write() {
            rt::block_on(rt::within_a_minute(async {
                assert_eq!(echo_writes!(Echo::Forward), 1);
            }));
        }

        #[test]
        fn split_halves_echo_a_burst_in_one_write() {
            rt::block_on(rt::within_a_minute(async {
                assert_eq!(echo_writes!(Echo::SplitForward), 1);
            }));
        }

        #[test]
        fn the_echo_goes_out_before_the_close_echo() {
            rt::block_on(rt::within_a_minute(async {
                let mut wire = client_frame(0x1, 0, b"hello");
                wire.extend(client_frame(0x8, 0, &1000u16.to_be_bytes()));
                assert_eq!(
                    echo_app_answers!(wire),
                    vec![
                        (0x1, b"hello".to_vec()),
                        (0x8, 1000u16.to_be_bytes().to_vec())
                    ]
                );
            }));
        }

        #[test]
        fn the_echo_goes_out_before_the_close_for_a_protocol_error() {
            rt::block_on(rt::within_a_minute(async {
                let mut wire = client_frame(0x1, 0, b"hello");
                wire.extend(client_frame(0x1, 0x20, b"bad")); // RSV2: no extension grants it
                let frames = echo_app_answers!(wire);
                assert_eq!(frames.len(), 2, "{frames:?}");
                assert_eq!(frames[0], (0x1, b"hello".to_vec()));
                assert_eq!(frames[1].0, 0x8);
                assert_eq!(frames[1].1[..2], 1002u16.to_be_bytes());
            }));
        }

        /// A reader that does not read slows the sender down: `send` waits
        /// once the pending output passes `write_buffer_high_water`, so
        /// memory stays bounded; nothing is lost once the reader catches up.
        #[test]
        fn a_slow_reader_bounds_the_senders_memory() {
            rt::block_on(rt::within_a_minute(async {
                const HIGH_WATER: usize = 256 << 10;
                const MSG: usize = 64 << 10;
                // 128 MiB in total: far more than loopback socket buffers
                // hold, so the loop below must wait before reaching it.
                const MAX_MESSAGES: usize = 2_048;
                let (l, addr) = rt::listen().await;
                // The server says when its `send` has waited; the client
                // reads only then.
                let (stalled_tx, stalled) = futures_channel::oneshot::channel::<()>();
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let cfg = Config {
                        write_buffer_high_water: HIGH_WATER,
                        ..config()
                    };
                    let mut ws = accept_with(s, cfg, |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    let msg = Message::from(vec![7u8; MSG]);
                    let mut sent = 0;
                    // A send still waiting after 10,000 polls counts as
                    // waiting (an early verdict only makes the client
                    // read earlier: the counts below still hold).
                    while sent < MAX_MESSAGES {
                        match race(ws.send(msg.clone()), 10_000).await {
                            Some(r) => {
                                r.expect("send");
                                sent += 1;
                                assert!(
                                    ws.pending_output() <= HIGH_WATER + MSG + 16,
                                    "{}",
                                    ws.pending_output()
                                );
                            }
                            None => break,
                        }
                    }
                    assert!(
                        sent < MAX_MESSAGES,
                        "send never waited: {sent} messages queued"
                    );
                    stalled_tx.send(()).expect("the client waits");
                    assert!(ws.pending_output() <= HIGH_WATER + MSG + 16);
                    // Tell the client how many to expect, then let it drain.
                    ws.send(format!("sent {sent}")).await.expect("send");
                    let r = ws.close(CloseCode::NORMAL, "").await;
                    (sent, r)
                });
                let mut ws = plain_client(addr).await;
                // Do not read until the server has stalled.
                stalled.await.expect("the server stalls");
                let mut count = 0;
                let expected = loop {
                    match ws.recv().await.expect("message").expect("message") {
                        Message::Binary(b) => {
                            assert_eq!(b.len(), MSG);
                            count += 1;
                        }
                        Message::Text(t) => {
                            break t.as_str()["sent ".len()..]
                                .parse::<usize>()
                                .expect("a count")
                        }
                    }
                };
                assert_eq!(count, expected);
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
                let (sent, r) = server.await;
                r.expect("the server's close");
                assert_eq!(sent, expected);
            }));
        }
    };
}
