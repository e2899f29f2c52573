//! Split halves on separate threads: traffic both ways, and control replies
//! written by the reader while the writer is idle.

mod util;

use std::time::Duration;

use util::{echo_server, listener, plain, run};
use wsmachine_smol::{accept_with, Accept, CloseCode, ConnectBuilder, Event, Message};

#[test]
fn halves_on_separate_threads() {
    run(30, async {
        let addr = echo_server(plain()).await;
        let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        let (mut rd, mut wr) = ws.split();
        const N: usize = 2_000;
        let (all_in_tx, all_in) = smol::channel::bounded::<()>(1);
        let reader = std::thread::spawn(move || {
            smol::block_on(async move {
                let mut got = Vec::new();
                while let Some(m) = rd.recv().await {
                    got.push(m.unwrap());
                    if got.len() == N {
                        all_in_tx.send(()).await.unwrap();
                    }
                }
                (got, rd.close_frame().cloned())
            })
        });
        for i in 0..N {
            // Mix sizes so some messages take several writes.
            let m = if i % 100 == 0 {
                Message::from(vec![i as u8; 300_000])
            } else {
                Message::from(format!("msg {i}"))
            };
            wr.send(m).await.unwrap();
        }
        // Close only once every echo is back: the server stops echoing
        // as soon as our Close reaches it.
        all_in.recv().await.unwrap();
        wr.close(CloseCode::NORMAL, "bye").await.unwrap();
        let (got, close) = reader.join().unwrap();
        assert_eq!(got.len(), N);
        for (i, m) in got.iter().enumerate() {
            if i % 100 == 0 {
                assert_eq!(m.payload().len(), 300_000);
            } else {
                assert_eq!(*m, Message::from(format!("msg {i}")));
            }
        }
        assert_eq!(close.unwrap().code, CloseCode::NORMAL);
        // The writer knows the connection is over.
        assert!(matches!(
            wr.send("late").await,
            Err(wsmachine_smol::Error::Closed(wsmachine_smol::Ended::Closed(Some(f))))
                if f.code == CloseCode::NORMAL
        ));
    });
}

#[test]
fn reader_answers_keepalive_pings_while_writer_is_idle() {
    run(30, async {
        // The server pings every 20 ms and counts the Pongs it gets; the
        // client's writer never does anything, so only its reader can be
        // answering. No deadline decides the outcome: the server waits for
        // three Pongs (the pong timeout is far away), then says so and closes.
        let (l, addr) = listener().await;
        let server = smol::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut cfg = plain();
            cfg.ping_interval = Some(Duration::from_millis(20));
            cfg.pong_timeout = Duration::from_secs(60);
            let mut ws = accept_with(s, cfg, |_| Ok(Accept::new())).await.unwrap();
            let mut pongs = 0;
            while pongs < 3 {
                match ws.recv_event().await {
                    Some(Ok(Event::Pong(_))) => pongs += 1,
                    other => panic!("expected Pongs, got {other:?}"),
                }
            }
            ws.send("three pongs").await.unwrap();
            ws.close(CloseCode::NORMAL, "").await.unwrap();
        });
        let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        let (mut rd, _wr) = ws.split();
        let mut got = Vec::new();
        while let Some(m) = rd.recv().await {
            got.push(m.unwrap());
        }
        assert_eq!(got, vec![Message::from("three pongs")]);
        server.await;
    });
}

#[test]
fn reader_sends_keepalive_pings_and_times_out() {
    run(30, async {
        // Our own keepalive runs in the reader: a server that stops
        // answering (its application never reads, but its core still
        // answers while it sends... so use a raw silent peer instead).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            write!(s, "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", wsmachine::accept_key(key.trim())).unwrap();
            // Everything the client sends from here on: its keepalive Ping,
            // then the Close of its pong timeout.
            let mut frames = Vec::new();
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                frames.extend_from_slice(&buf[..n]);
            }
            frames
        });
        let mut cfg = plain();
        cfg.ping_interval = Some(Duration::from_millis(50));
        cfg.pong_timeout = Duration::from_millis(100);
        let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(cfg)
            .connect()
            .await
            .unwrap();
        let (mut rd, _wr) = ws.split();
        let res = rd.recv().await;
        assert!(
            matches!(
                res,
                Some(Err(wsmachine_smol::Error::Ws(
                    wsmachine::ConnectionError::TimedOut(wsmachine::Timeout::Pong)
                )))
            ),
            "{res:?}"
        );
        assert!(rd.recv().await.is_none());
        drop((rd, _wr));
        // The timeout followed a Ping on the wire: a masked Ping frame (the
        // keepalive's 4-byte counter), then our Close 1011.
        let wire = peer.join().unwrap();
        assert!(wire.len() >= 10, "{wire:02x?}");
        assert_eq!(&wire[..2], &[0x89, 0x84], "a Ping first: {wire:02x?}");
        assert_eq!(
            &wire[10..12],
            &[0x88, 0x80 | 24],
            "then the Close: {wire:02x?}"
        );
    });
}
