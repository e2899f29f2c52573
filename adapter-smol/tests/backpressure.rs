//! A reader that does not read slows the sender down: `send` waits once
//! the pending output passes `Config::write_buffer_high_water`, so memory
//! stays bounded; nothing is lost once the reader catches up.

mod util;

use std::time::Duration;

use futures_lite::future;
use util::{plain, run};
use wsmachine_smol::{accept_with, Accept, CloseCode, ConnectBuilder, Message};

const HIGH_WATER: usize = 256 << 10;
const MSG: usize = 64 << 10;
/// 128 MiB in total: far more than loopback socket buffers hold, so the
/// loop below must block before reaching it.
const MAX_MESSAGES: usize = 2_048;

#[test]
fn slow_reader_bounds_sender_memory() {
    run(60, async {
        let (l, addr) = util::listener().await;
        // The server says when its `send` has waited; the client reads only
        // then (a sleep on the client's side raced a slow server).
        let (stalled_tx, stalled) = smol::channel::bounded::<()>(1);
        let server = smol::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut cfg = plain();
            cfg.write_buffer_high_water = HIGH_WATER;
            let mut ws = accept_with(s, cfg, |_| Ok(Accept::new())).await.unwrap();
            let msg = Message::from(vec![7u8; MSG]);
            let mut sent = 0;
            let mut blocked = false;
            while sent < MAX_MESSAGES {
                let send = async { Some(ws.send(msg.clone()).await) };
                let stall = async {
                    smol::Timer::after(Duration::from_millis(300)).await;
                    None
                };
                match future::or(send, stall).await {
                    Some(r) => {
                        r.unwrap();
                        sent += 1;
                        assert!(
                            ws.pending_output() <= HIGH_WATER + MSG + 16,
                            "{}",
                            ws.pending_output()
                        );
                    }
                    None => {
                        blocked = true;
                        break;
                    }
                }
            }
            assert!(blocked, "send never waited: {sent} messages queued");
            stalled_tx.send(()).await.unwrap();
            assert!(ws.pending_output() <= HIGH_WATER + MSG + 16);
            // Tell the client how many to expect, then let it drain.
            ws.send(format!("sent {sent}")).await.unwrap();
            let r = ws.close(CloseCode::NORMAL, "").await;
            (sent, r)
        });
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        // Do not read until the server has stalled.
        stalled.recv().await.unwrap();
        let mut count = 0;
        let expected = loop {
            match ws.recv().await.unwrap().unwrap() {
                Message::Binary(b) => {
                    assert_eq!(b.len(), MSG);
                    count += 1;
                }
                Message::Text(t) => break t.as_str()["sent ".len()..].parse::<usize>().unwrap(),
            }
        };
        assert_eq!(count, expected);
        assert!(ws.recv().await.is_none());
        let (sent, r) = server.await;
        r.unwrap();
        assert_eq!(sent, expected);
        assert!(sent < MAX_MESSAGES);
    });
}
