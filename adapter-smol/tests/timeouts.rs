//! Keepalive and closing-handshake timeouts against peers that go silent,
//! and control replies when the application only reads or only sends.

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use util::{plain, run, RawPeer};
use wsmachine::{ConnectionError, Event, Timeout};
use wsmachine_smol::{accept_with, Accept, CloseCode, Config, ConnectBuilder, Error};

/// A raw TCP server that answers the opening handshake and then never
/// sends another byte (it keeps reading so our writes never block).
fn silent_server() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head);
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            wsmachine::accept_key(&key)
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    addr
}

#[test]
fn ping_timeout_against_silent_peer() {
    run(20, async {
        let addr = silent_server();
        let mut cfg = plain();
        cfg.ping_interval = Some(Duration::from_millis(100));
        cfg.pong_timeout = Duration::from_millis(200);
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(cfg)
            .connect()
            .await
            .unwrap();
        let start = Instant::now();
        match ws.recv().await {
            Some(Err(Error::Ws(ConnectionError::TimedOut(Timeout::Pong)))) => {}
            other => panic!("expected a pong timeout, got {other:?}"),
        }
        // Timers never fire early; the error names which one fired, and
        // `run` bounds the whole test, so no upper bound on a loaded machine.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(ws.recv().await.is_none());
    });
}

#[test]
fn close_timeout_against_peer_that_never_closes() {
    run(20, async {
        let addr = silent_server();
        let mut cfg = plain();
        cfg.close_timeout = Duration::from_millis(300);
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(cfg)
            .connect()
            .await
            .unwrap();
        let start = Instant::now();
        let res = ws.close(CloseCode::NORMAL, "").await;
        assert!(
            matches!(
                res,
                Err(Error::Ws(ConnectionError::TimedOut(
                    Timeout::ClosingHandshake
                )))
            ),
            "{res:?}"
        );
        // Timers never fire early; the error names which one fired, and
        // `run` bounds the whole test, so no upper bound on a loaded machine.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(250), "{took:?}");
        assert!(ws.recv().await.is_none());
    });
}

#[test]
fn handshake_timeout_against_silent_server() {
    run(20, async {
        let (l, addr) = util::listener().await;
        let _hold = smol::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            smol::Timer::after(Duration::from_secs(10)).await;
            drop(s);
        });
        let start = Instant::now();
        let err = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .handshake_timeout(Duration::from_millis(200))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake))
            ),
            "{err:?}"
        );
        // The error names the handshake timer (the server would only have
        // dropped the connection after 10 s, an EOF); `run` bounds the test.
        assert!(start.elapsed() >= Duration::from_millis(200));
    });
}

/// Serves one connection whose application only sends, for `secs`.
fn send_only_server(cfg: Config, count: usize) -> std::net::SocketAddr {
    let (l, addr) = smol::block_on(util::listener());
    std::thread::spawn(move || {
        smol::block_on(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut ws = accept_with(s, cfg, |_| Ok(Accept::new())).await.unwrap();
            for i in 0..count {
                if ws.send(format!("tick {i}")).await.is_err() {
                    return;
                }
                smol::Timer::after(Duration::from_millis(5)).await;
            }
        })
    });
    addr
}

#[test]
fn pongs_go_out_when_the_application_only_sends() {
    let addr = send_only_server(plain(), 400);
    let mut peer = RawPeer::connect(addr);
    let mut pongs = 0;
    let mut ticks = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Ping several times: each must be answered while the server only sends.
    for round in 0..5u8 {
        peer.conn.ping(&[round]).unwrap();
        peer.flush();
        loop {
            assert!(Instant::now() < deadline, "no pong for round {round}");
            assert!(peer.read_some(), "server closed");
            let mut got = false;
            while let Some(ev) = peer.conn.poll_event() {
                match ev {
                    Event::Pong(p) if p[..] == [round] => got = true,
                    Event::Text(_) => ticks += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            if got {
                pongs += 1;
                break;
            }
        }
    }
    assert_eq!(pongs, 5);
    assert!(ticks > 0);
}

#[test]
fn pongs_go_out_when_the_application_only_reads() {
    let (l, addr) = smol::block_on(util::listener());
    let server = std::thread::spawn(move || {
        smol::block_on(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut ws = accept_with(s, plain(), |_| Ok(Accept::new()))
                .await
                .unwrap();
            let mut n = 0;
            while let Some(m) = ws.recv().await {
                m.unwrap();
                n += 1;
            }
            n
        })
    });
    let mut peer = RawPeer::connect(addr);
    for round in 0..5u8 {
        peer.conn.ping(&[round]).unwrap();
        peer.conn.send_text("x").unwrap();
        peer.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        'wait: loop {
            assert!(Instant::now() < deadline, "no pong for round {round}");
            peer.read_some();
            while let Some(ev) = peer.conn.poll_event() {
                if matches!(ev, Event::Pong(ref p) if p[..] == [round]) {
                    break 'wait;
                }
            }
        }
    }
    peer.conn
        .close(Instant::now(), CloseCode::NORMAL, "")
        .unwrap();
    peer.flush();
    let deadline = Instant::now() + Duration::from_secs(5);
    while peer.read_some() {
        assert!(Instant::now() < deadline);
    }
    assert_eq!(server.join().unwrap(), 5);
    let _ = peer.tcp.write_all(b"");
}

/// A peer that sends its Close and then never reads: our Close echo is
/// stuck behind output the socket will not take. The server must give up
/// after `close_timeout` (shut the transport down, end `recv`, free the
/// output) instead of holding the connection for as long as the peer stays.
#[test]
fn server_gives_up_on_a_peer_that_stops_reading_after_its_close() {
    run(20, async {
        let (l, addr) = util::listener().await;
        let server = smol::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut cfg = plain();
            cfg.close_timeout = Duration::from_millis(300);
            cfg.write_buffer_high_water = 64 << 20;
            let mut ws = accept_with(s, cfg, |_| Ok(Accept::new())).await.unwrap();
            // Far more than the socket buffers hold: most of it stays queued
            // (`send` returns once the transport took what it could, or its
            // future is dropped here after it queued the message).
            let big = wsmachine::Message::from(vec![7u8; 32 << 20]);
            let sent = smol::future::or(async { Some(ws.send(big).await) }, async {
                smol::Timer::after(Duration::from_millis(200)).await;
                None
            })
            .await;
            assert!(!matches!(sent, Some(Err(_))), "{sent:?}");
            assert!(ws.pending_output() > 16 << 20, "{}", ws.pending_output());
            let start = Instant::now();
            let mut events = Vec::new();
            while let Some(ev) = ws.recv_event().await {
                events.push(ev.map(|e| format!("{e:?}")));
            }
            (start.elapsed(), events, ws.pending_output())
        });
        let peer = std::thread::spawn(move || {
            let mut p = RawPeer::connect(addr);
            p.conn.close(Instant::now(), CloseCode::NORMAL, "").unwrap();
            p.flush();
            // Holds the socket without reading until the server is done.
            p
        });
        let (waited, events, pending) = server.await;
        drop(peer.join().unwrap());
        assert!(waited >= Duration::from_millis(290), "{waited:?}");
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].as_ref().is_ok_and(|e| e.starts_with("Close")),
            "{events:?}"
        );
        assert_eq!(pending, 0);
    });
}
