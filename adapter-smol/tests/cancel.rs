//! `recv` raced against a timer thousands of times: every cancelled
//! future must leave the connection exactly where it was.

mod util;

use std::time::Duration;

use futures_lite::future;
use futures_util::FutureExt;
use util::{plain, run};
use wsmachine_smol::{accept_with, Accept, CloseCode, ConnectBuilder, Message};

const N: u32 = 5_000;

fn message(i: u32) -> Message {
    // Every 50th message is large enough to span many reads, so some
    // cancellations land in the middle of a frame.
    if i % 50 == 0 {
        let mut v = vec![(i % 251) as u8; 150_000];
        v[..4].copy_from_slice(&i.to_be_bytes());
        Message::from(v)
    } else {
        Message::from(format!("{i}"))
    }
}

fn check(i: u32, m: &Message) {
    match m {
        Message::Binary(b) => {
            assert_eq!(b.len(), 150_000);
            assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()), i);
        }
        Message::Text(t) => assert_eq!(t.as_str(), i.to_string()),
    }
}

#[test]
fn recv_is_cancel_safe() {
    run(120, async {
        let (l, addr) = util::listener().await;
        let server = smol::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut ws = accept_with(s, plain(), |_| Ok(Accept::new()))
                .await
                .unwrap();
            for i in 0..N {
                ws.send(message(i)).await.unwrap();
                if i % 3 == 0 {
                    // Uneven pacing: bursts and gaps.
                    smol::Timer::after(Duration::from_micros(200)).await;
                }
            }
            ws.close(CloseCode::NORMAL, "").await
        });
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        let mut next = 0u32;
        let mut cancelled = 0u32;
        let mut round = 0u64;
        loop {
            round += 1;
            // Alternate the two racing styles; the delays vary from 0 to
            // ~300 µs so the timer wins often.
            let delay = Duration::from_micros((round * 37) % 300);
            let outcome = if round % 2 == 0 {
                let recv = async { Some(ws.recv().await) };
                let timer = async {
                    smol::Timer::after(delay).await;
                    None
                };
                future::or(recv, timer).await
            } else {
                let mut recv = Box::pin(ws.recv().fuse());
                let mut timer = smol::Timer::after(delay).fuse();
                futures_util::select! {
                    m = recv => Some(m),
                    _ = timer => None,
                }
            };
            match outcome {
                None => cancelled += 1,
                Some(None) => break,
                Some(Some(m)) => {
                    check(next, &m.unwrap());
                    next += 1;
                }
            }
            assert!(round < 10_000_000, "runaway loop");
        }
        assert_eq!(next, N, "messages lost");
        assert!(
            cancelled > 500,
            "only {cancelled} cancellations: the race did not happen"
        );
        server.await.unwrap();
    });
}
