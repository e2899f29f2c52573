//! Timeouts, backpressure, cancel safety and replies, over real loopback
//! sockets (127.0.0.1 only). Every loop is bounded.

mod common;

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsmachine::{ConnectionError, Timeout};
use wsmachine_tokio::{accept, CloseCode, Config, ConnectBuilder, Error, Event, Message};

const LIMIT: Duration = Duration::from_secs(30);

fn config() -> Config {
    Config::default()
}

#[tokio::test]
async fn pong_timeout_against_a_silent_peer() {
    let (addr, peer) = common::silent_server().await;
    let cfg = Config {
        ping_interval: Some(Duration::from_millis(100)),
        pong_timeout: Duration::from_millis(200),
        ..config()
    };
    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
        .config(cfg)
        .compression(false)
        .connect()
        .await
        .unwrap();
    let start = Instant::now();
    let r = tokio::time::timeout(LIMIT, ws.recv()).await.unwrap();
    let waited = start.elapsed();
    assert!(
        matches!(
            r,
            Some(Err(Error::Ws(ConnectionError::TimedOut(Timeout::Pong))))
        ),
        "{r:?}"
    );
    // Timers never fire early; the error names which one fired and LIMIT
    // bounds the wait, so no upper bound that a loaded machine could break.
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(ws.recv().await.is_none());
    drop(ws);
    // The peer saw a keepalive Ping, then a Close (1011).
    let wire = peer.await.unwrap();
    assert_eq!(common::opcodes(&wire), vec![0x9, 0x8]);
}

#[tokio::test]
async fn close_timeout_against_a_peer_that_never_closes() {
    let (addr, peer) = common::silent_server().await;
    let cfg = Config {
        ping_interval: None,
        close_timeout: Duration::from_millis(300),
        ..config()
    };
    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
        .config(cfg)
        .compression(false)
        .connect()
        .await
        .unwrap();
    let start = Instant::now();
    let r = tokio::time::timeout(LIMIT, ws.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    let waited = start.elapsed();
    assert!(
        matches!(
            r,
            Err(Error::Ws(ConnectionError::TimedOut(
                Timeout::ClosingHandshake
            )))
        ),
        "{r:?}"
    );
    // Timers never fire early; the error names which one fired and LIMIT
    // bounds the wait, so no upper bound that a loaded machine could break.
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(ws.recv().await.is_none());
    // The transport was shut down: the peer got our Close, then EOF.
    let wire = tokio::time::timeout(LIMIT, peer).await.unwrap().unwrap();
    assert_eq!(common::opcodes(&wire), vec![0x8]);
}

#[tokio::test]
async fn slow_reader_bounds_the_senders_memory() {
    const HIGH_WATER: usize = 64 << 10;
    const MSG: usize = 16 << 10;
    const COUNT: usize = 4096; // 64 MiB in total: far more than socket buffers hold
    let (l, addr) = common::listener().await;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        // Do not read until told to.
        go_rx.await.unwrap();
        let mut n = 0;
        while let Some(Ok(_)) = ws.recv().await {
            n += 1;
            if n == COUNT {
                break;
            }
        }
        n
    });
    let cfg = Config {
        write_buffer_high_water: HIGH_WATER,
        ..config()
    };
    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
        .config(cfg)
        .compression(false)
        .connect()
        .await
        .unwrap();
    let payload = vec![0xabu8; MSG];
    let mut sent = 0;
    let mut max_pending = 0;
    // Feed (no flush) for a second: the sink must stall, not buffer 64 MiB.
    let stalled = tokio::time::timeout(Duration::from_secs(1), async {
        while sent < COUNT {
            ws.feed(Message::from(payload.clone())).await.unwrap();
            max_pending = max_pending.max(ws.pending_output());
            sent += 1;
        }
    })
    .await
    .is_err();
    assert!(
        stalled,
        "sent all {COUNT} messages to a peer that does not read"
    );
    assert!(sent < COUNT);
    // A frame header is at most 14 bytes.
    assert!(
        max_pending <= HIGH_WATER + MSG + 14,
        "pending output reached {max_pending}"
    );
    go_tx.send(()).unwrap();
    tokio::time::timeout(LIMIT, async {
        while sent < COUNT {
            ws.feed(Message::from(payload.clone())).await.unwrap();
            assert!(ws.pending_output() <= HIGH_WATER + MSG + 14);
            sent += 1;
        }
        ws.flush().await.unwrap();
        assert_eq!(server.await.unwrap(), COUNT);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn recv_is_cancel_safe_under_select() {
    const N: u32 = 20_000;
    let (l, addr) = common::listener().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        for i in 0..N {
            ws.send(Message::from(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
            if i % 64 == 0 {
                // Bursts and gaps, so `recv` is often caught waiting.
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        while let Some(Ok(_)) = ws.recv().await {}
    });
    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
        .compression(false)
        .connect()
        .await
        .unwrap();
    let mut next = 0u32;
    let mut cancelled = 0u32;
    tokio::time::timeout(LIMIT, async {
        while next < N {
            tokio::select! {
                m = ws.recv() => {
                    let Some(Ok(Message::Binary(b))) = m else { panic!("{m:?}") };
                    assert_eq!(u32::from_be_bytes(b[..].try_into().unwrap()), next, "lost or reordered");
                    next += 1;
                }
                _ = tokio::time::sleep(Duration::from_micros(50)) => cancelled += 1,
                _ = tokio::task::yield_now() => cancelled += 1,
            }
        }
    })
    .await
    .unwrap();
    println!("{cancelled} recv futures dropped mid-flight");
    assert!(cancelled >= 1000, "only {cancelled} cancellations");
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn pongs_go_out_when_the_app_only_sends() {
    let (l, addr) = common::listener().await;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        // This side never calls recv: it only sends.
        let mut i = 0u32;
        loop {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            ws.send(format!("tick {i}")).await.unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
        .compression(false)
        .connect()
        .await
        .unwrap();
    tokio::time::timeout(LIMIT, async {
        for round in 0..3u8 {
            ws.ping(&[round]).await.unwrap();
            loop {
                match ws.recv_event().await.unwrap().unwrap() {
                    Event::Pong(p) if p[..] == [round] => break,
                    Event::Text(_) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    })
    .await
    .unwrap();
    stop_tx.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn close_echo_goes_out_when_the_app_only_sends() {
    let (l, addr) = common::listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        // Send until the peer's Close stops us; never recv.
        for _ in 0..1000 {
            match ws.send("data").await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(e) => return Some(e),
            }
        }
        None
    });
    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
        .compression(false)
        .connect()
        .await
        .unwrap();
    tokio::time::timeout(LIMIT, ws.close(CloseCode::GOING_AWAY, "bye"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ws.close_frame().map(|f| f.code),
        Some(CloseCode::GOING_AWAY)
    );
    // Messages that arrived before the server's Close are still delivered.
    while let Some(m) = ws.recv().await {
        assert_eq!(m.unwrap(), Message::from("data"));
    }
    let e = server.await.unwrap();
    assert!(matches!(e, Some(Error::Closed(_))), "{e:?}");
}

#[tokio::test]
async fn protocol_error_from_peer_is_reported_not_panicked() {
    let (l, addr) = common::listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        ws.recv().await
    });
    // A raw client that sends an unmasked frame (illegal from a client).
    let mut tcp = common::raw_client(addr).await;
    tcp.write_all(b"\x81\x02hi").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    // Close 1002, then the server shut the connection.
    assert_eq!(rest[0], 0x88);
    assert_eq!(&rest[2..4], b"\x03\xea");
    let r = server.await.unwrap();
    assert!(
        matches!(r, Some(Err(Error::Ws(ConnectionError::Protocol(_))))),
        "{r:?}"
    );
}

#[tokio::test]
async fn handshake_timeout_against_a_mute_server() {
    let (l, addr) = common::listener().await;
    let peer = tokio::spawn(async move {
        // Accept TCP, never answer the upgrade request.
        let (mut tcp, _) = l.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
    });
    let start = Instant::now();
    let r = ConnectBuilder::new(format!("ws://{addr}/"))
        .handshake_timeout(Duration::from_millis(200))
        .connect()
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Ws(ConnectionError::TimedOut(
                Timeout::OpeningHandshake
            )))
        ),
        "{r:?}"
    );
    // The error names the handshake timer; the silent peer would only have
    // ended the connection later, with an EOF.
    assert!(start.elapsed() >= Duration::from_millis(200));
    drop(r);
    tokio::time::timeout(LIMIT, peer).await.unwrap().unwrap();
}

/// A peer that sends its Close and then never reads: our Close echo is
/// stuck behind output the socket will not take. The server must give up
/// after `close_timeout` (shut the transport down and end `recv`) instead
/// of holding the connection and its output for as long as the peer stays.
#[tokio::test]
async fn server_gives_up_on_a_peer_that_stops_reading_after_its_close() {
    let (l, addr) = common::listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let cfg = Config {
            ping_interval: None,
            close_timeout: Duration::from_millis(300),
            write_buffer_high_water: 64 << 20,
            ..config()
        };
        let mut ws = wsmachine_tokio::accept_with(tcp, cfg, |_| Ok(wsmachine::Accept::new()))
            .await
            .unwrap();
        // Far more than the socket buffers hold: it stays queued.
        ws.feed(Message::from(vec![7u8; 32 << 20])).await.unwrap();
        let start = Instant::now();
        let mut events = Vec::new();
        while let Some(ev) = ws.recv_event().await {
            events.push(ev.map(|e| format!("{e:?}")));
        }
        (start.elapsed(), events, ws.pending_output())
    });
    let mut tcp = common::raw_client(addr).await;
    // Close 1000, masked with a zero key; then this peer reads nothing more.
    tcp.write_all(b"\x88\x82\0\0\0\0\x03\xe8").await.unwrap();
    let (waited, events, pending) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server kept waiting on a peer that does not read")
        .unwrap();
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].as_ref().is_ok_and(|e| e.starts_with("Close")),
        "{events:?}"
    );
    // The output it gave up on is freed, not kept until the peer goes.
    assert_eq!(pending, 0);
    drop(tcp);
}
