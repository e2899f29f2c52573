//! Client ↔ server over loopback TCP: messages of every size class, both
//! directions, the Stream/Sink interfaces, and the closing handshake.

mod util;

use futures_util::{SinkExt, StreamExt};
use util::{echo_server, plain, run};
use wsmachine_smol::{CloseCode, ConnectBuilder, Message};

/// Lengths around every frame-header size boundary (7/16/64-bit), plus
/// large messages that take many reads and writes.
const SIZES: &[usize] = &[
    0,
    1,
    125,
    126,
    127,
    65_535,
    65_536,
    65_537,
    1 << 20,
    8 << 20,
];

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn echo_text_and_binary_of_many_sizes() {
    run(60, async {
        let addr = echo_server(plain()).await;
        let (mut ws, resp) = ConnectBuilder::new(format!("ws://{addr}/echo"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        assert_eq!(resp.status, 101);
        for (i, &len) in SIZES.iter().enumerate() {
            let bin = payload(len, i as u8);
            ws.send(bin.clone()).await.unwrap();
            let text: String = "κόσμε ".repeat(len / 12 + 1)[..].to_owned();
            ws.send(text.clone()).await.unwrap();
            match ws.recv().await.unwrap().unwrap() {
                Message::Binary(b) => assert_eq!(&b[..], &bin[..], "binary of {len}"),
                other => panic!("expected binary, got {other:?}"),
            }
            match ws.recv().await.unwrap().unwrap() {
                Message::Text(t) => assert_eq!(t.as_str(), text, "text for {len}"),
                other => panic!("expected text, got {other:?}"),
            }
        }
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        assert!(ws.recv().await.is_none());
        let cf = ws.close_frame().expect("server's close frame");
        assert_eq!(cf.code, CloseCode::NORMAL);
    });
}

#[test]
fn many_small_messages_pipelined() {
    run(60, async {
        let addr = echo_server(plain()).await;
        let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        let (mut rd, mut wr) = ws.split();
        const N: usize = 20_000;
        let writer = smol::spawn(async move {
            for i in 0..N {
                wr.feed(Message::from(format!("m{i}"))).await.unwrap();
            }
            wr.flush().await.unwrap();
            wr
        });
        for i in 0..N {
            let m = rd.next().await.unwrap().unwrap();
            assert_eq!(m, Message::from(format!("m{i}")));
        }
        let mut wr = writer.await;
        let closer = smol::spawn(async move { wr.close(CloseCode::NORMAL, "").await });
        assert!(rd.next().await.is_none());
        closer.await.unwrap();
    });
}

#[test]
fn sink_and_stream_interfaces() {
    run(20, async {
        let addr = echo_server(plain()).await;
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        ws.send_all(&mut futures_util::stream::iter(
            (0..100).map(|i| Ok(Message::from(vec![i as u8; i]))),
        ))
        .await
        .unwrap();
        for i in 0..100 {
            assert_eq!(
                ws.next().await.unwrap().unwrap(),
                Message::from(vec![i as u8; i])
            );
        }
        SinkExt::close(&mut ws).await.unwrap();
        assert!(ws.next().await.is_none());
    });
}

#[test]
fn server_initiated_close_is_echoed() {
    run(20, async {
        let (l, addr) = util::listener().await;
        let server = smol::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut ws =
                wsmachine_smol::accept_with(s, plain(), |_| Ok(wsmachine_smol::Accept::new()))
                    .await
                    .unwrap();
            ws.send("bye").await.unwrap();
            ws.close(CloseCode::GOING_AWAY, "going").await
        });
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from("bye"));
        assert!(ws.recv().await.is_none());
        assert_eq!(ws.close_frame().unwrap().code, CloseCode::GOING_AWAY);
        server.await.unwrap();
        // Using a finished connection is an error, closing it again is not.
        assert!(matches!(
            ws.send("late").await,
            Err(wsmachine_smol::Error::Closed(wsmachine_smol::Ended::Closed(Some(f))))
                if f.code == CloseCode::GOING_AWAY
        ));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    });
}

#[test]
fn permessage_deflate_by_default_both_ways() {
    run(30, async {
        let (l, addr) = util::listener().await;
        let server = smol::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            // `accept` uses Config::with_deflate().
            let mut ws = wsmachine_smol::accept(s).await.unwrap();
            assert!(ws.negotiated().deflate.is_some());
            util::echo(&mut ws).await;
        });
        // `connect` offers permessage-deflate by default.
        let (mut ws, resp) = wsmachine_smol::connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        assert!(resp
            .headers
            .get("sec-websocket-extensions")
            .is_some_and(|v| v.starts_with("permessage-deflate")));
        for len in [0usize, 10, 5_000, 1 << 20] {
            let text = "abc ".repeat(len / 4);
            ws.send(text.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from(text));
            let bin = payload(len, 9);
            ws.send(bin.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from(bin));
        }
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        server.await;
    });
}
