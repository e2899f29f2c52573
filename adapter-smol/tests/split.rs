//! Split halves on separate threads: traffic both ways, and control replies
//! written by the reader while the writer is idle.

mod util;

use std::time::Duration;

use util::{echo_server, plain, run};
use wsmachine_smol::{CloseCode, ConnectBuilder, Message};

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
            Err(wsmachine_smol::Error::Closed)
        ));
    });
}

#[test]
fn reader_answers_keepalive_pings_while_writer_is_idle() {
    run(30, async {
        // The server pings every 50 ms and gives up after 150 ms without a
        // Pong: the client's writer sleeps far longer than that.
        let mut server_cfg = plain();
        server_cfg.ping_interval = Some(Duration::from_millis(50));
        server_cfg.pong_timeout = Duration::from_millis(150);
        let addr = echo_server(server_cfg).await;
        let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        let (mut rd, mut wr) = ws.split();
        let reader = smol::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = rd.recv().await {
                got.push(m.unwrap());
            }
            got
        });
        smol::Timer::after(Duration::from_millis(800)).await;
        wr.send("still alive").await.unwrap();
        smol::Timer::after(Duration::from_millis(100)).await;
        wr.close(CloseCode::NORMAL, "").await.unwrap();
        let got = reader.await;
        assert_eq!(got, vec![Message::from("still alive")]);
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
        std::thread::spawn(move || {
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
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
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
    });
}
