//! The reconnecting client (`ConnectBuilder::reconnect`): against a server
//! that drops it at random points (a bounded number of times, in four
//! ways, with refused attempts between), it receives every message sent
//! after each reconnect, and its delays follow the policy; a 403 stops it
//! after one attempt, refused attempts stop at the attempt limit, and a
//! wss:// connection through an HTTP proxy is opened again after 1013.
//!
//! Timing is checked from recorded instants and only from below (a retry
//! never starts before its drawn delay has passed); the drawn delays are
//! checked against the policy's bounds exactly.

use std::time::{Duration, Instant};

/// How the flapping server ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A closing handshake with 1012 Service Restart.
    Restart,
    /// A closing handshake with 1001 Going Away.
    GoingAway,
    /// The TCP connection ends without a Close frame (1006).
    Vanish,
    /// The TCP connection is reset (messages in flight may be lost: the
    /// client asks again from the first it lacks).
    Reset,
}

/// What the flapping server does with each connection attempt, drawn
/// from `seed`: `drops` connections that end after 1–5 messages, each
/// after 0–2 attempts answered 503, then one that sends the rest.
pub(crate) fn schedule(seed: u64, drops: usize) -> Vec<(usize, Option<Ending>)> {
    let mut x = seed | 1;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n) as usize
    };
    let mut plan = Vec::new();
    for _ in 0..drops {
        for _ in 0..next(3) {
            plan.push((0, None)); // answered 503
        }
        let how = [
            Ending::Restart,
            Ending::GoingAway,
            Ending::Vanish,
            Ending::Reset,
        ][next(4)];
        plan.push((1 + next(5), Some(how)));
    }
    plan.push((usize::MAX, None)); // the rest
    plan
}

/// A seed for this run (printed with every failure).
pub(crate) fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// One attempt as the server saw it: when it accepted the TCP
/// connection, and whether it refused the handshake.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub(crate) at: Instant,
    pub(crate) refused: bool,
}

pub(crate) const TOTAL: usize = 40;

pub(crate) fn policy_bounds() -> (Duration, Duration) {
    (Duration::from_millis(2), Duration::from_millis(20))
}

macro_rules! reconnect_tests {
    () => {
        use super::*;
        use crate::reconnect::{policy_bounds, schedule, seed, Attempt, Ending, TOTAL};
        use std::time::Instant;
        use ws::{Disconnect, ReconnectPolicy};

        fn policy() -> ReconnectPolicy {
            let (initial, max) = policy_bounds();
            ReconnectPolicy::new()
                .initial_delay(initial)
                .max_delay(max)
                .max_attempts(10)
        }

        /// Serves `plan` one attempt at a time: an attempt marked 503 is
        /// refused; the others read the client's `from N`, send the text
        /// messages `N`, `N+1`… (up to `TOTAL`) and end as planned. Gives
        /// every attempt once the last connection ends.
        async fn flapping_server(
            plan: Vec<(usize, Option<Ending>)>,
        ) -> (std::net::SocketAddr, impl std::future::Future<Output = Vec<Attempt>>) {
            let (l, addr) = rt::listen().await;
            let server = rt::spawn(async move {
                let mut attempts = Vec::new();
                for (count, how) in plan {
                    let s = rt::accept(&l).await;
                    let at = Instant::now();
                    let refused = count == 0;
                    attempts.push(Attempt { at, refused });
                    if refused {
                        let r = accept_with(s, config(), |_| Err(Reject::new(503))).await;
                        assert!(matches!(r, Err(Error::Rejected)), "{r:?}");
                        continue;
                    }
                    let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    let from: usize = match ws.recv().await {
                        Some(Ok(Message::Text(t))) => {
                            t.strip_prefix("from ").expect("from N").parse().expect("N")
                        }
                        other => panic!("the client's first message: {other:?}"),
                    };
                    for i in from..TOTAL.min(from.saturating_add(count)) {
                        ws.send(i.to_string()).await.expect("send");
                    }
                    match how {
                        Some(Ending::Restart) => {
                            let _ = ws.close(CloseCode::from(1012), "restart").await;
                        }
                        Some(Ending::GoingAway) => {
                            let _ = ws.close(CloseCode::GOING_AWAY, "bye").await;
                        }
                        Some(Ending::Vanish) => {
                            ws.flush().await.expect("flush");
                            drop(ws);
                        }
                        Some(Ending::Reset) => {
                            crate::peer::abort_on_close(ws.get_ref());
                            drop(ws);
                        }
                        None => while ws.recv().await.is_some() {},
                    }
                }
                attempts
            });
            (addr, server)
        }

        #[test]
        fn a_flapping_server_loses_no_message_and_delays_follow_the_policy() {
            rt::block_on(rt::within_a_minute(async {
                let seed = seed();
                let plan = schedule(seed, 5);
                let (addr, server) = flapping_server(plan.clone()).await;
                let mut conns = ConnectBuilder::new(format!("ws://{addr}/feed"))
                    .no_proxy()
                    .config(config())
                    .reconnect(policy());
                let mut got = 0usize;
                // Per connection: (when the previous one ended, retries,
                // the last delay drawn).
                let mut connections = Vec::new();
                let mut ended: Option<Instant> = None;
                while let Some(conn) = conns.next().await {
                    let (mut ws, _) =
                        conn.unwrap_or_else(|e| panic!("seed {seed}: gave up after {got}: {e}"));
                    connections.push((ended, conns.retries(), conns.last_delay()));
                    let end = if let Err(e) = ws.send(format!("from {got}")).await {
                        Disconnect::from(e)
                    } else {
                        loop {
                            match ws.recv().await {
                                Some(Ok(Message::Text(t))) => {
                                    assert_eq!(t.parse::<usize>().ok(), Some(got), "seed {seed}");
                                    got += 1;
                                    if got == TOTAL {
                                        ws.close(CloseCode::NORMAL, "").await.expect("close");
                                        break Disconnect::Local;
                                    }
                                }
                                Some(Ok(other)) => panic!("seed {seed}: {other:?}"),
                                Some(Err(e)) => break Disconnect::from(e),
                                None => break Disconnect::Peer(ws.close_frame().cloned()),
                            }
                        }
                    };
                    ended = Some(Instant::now());
                    conns.report(end);
                }
                assert_eq!(got, TOTAL, "seed {seed}: every message, once, in order");
                let attempts = server.await;
                assert_eq!(attempts.len(), plan.len(), "seed {seed}");
                // The client's n-th connection is the server's n-th accepted
                // attempt; the refused ones before it are its failed retries.
                let mut refused_before = 0;
                let mut accepted = attempts.iter().filter_map(|a| {
                    if a.refused {
                        refused_before += 1;
                        return None;
                    }
                    Some((a.at, std::mem::take(&mut refused_before)))
                });
                let p = policy();
                for (n, (ended, retries, delay)) in connections.into_iter().enumerate() {
                    let (accepted_at, refused) = accepted.next().expect("an accepted attempt");
                    // One retry per refused attempt, and one for the drop.
                    let dropped = usize::from(ended.is_some());
                    assert_eq!(retries as usize, refused + dropped, "seed {seed}: connection {n}");
                    let Some(ended) = ended else { continue };
                    let delay = delay.expect("a retry waited");
                    assert!(delay <= p.cap(retries - 1), "seed {seed}: {delay:?}");
                    assert!(
                        accepted_at.duration_since(ended) >= delay,
                        "seed {seed}: connection {n} came {:?} after the drop, before its delay {delay:?}",
                        accepted_at.duration_since(ended)
                    );
                }
                assert!(
                    matches!(conns.previous(), Some(Disconnect::Local)),
                    "{:?}",
                    conns.previous()
                );
            }));
        }

        /// `next` can run on a multi-threaded executor's task.
        #[allow(dead_code)]
        fn next_is_send(conns: &mut ws::Reconnect) -> impl Send + '_ {
            conns.next()
        }

        #[test]
        fn a_403_ends_the_loop_after_one_attempt() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let seen = count.clone();
                let _detached = rt::spawn(async move {
                    loop {
                        let s = rt::accept(&l).await;
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = accept_with(s, config(), |_| Err(Reject::new(403))).await;
                    }
                });
                let mut conns = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .reconnect(policy());
                match conns.next().await {
                    Some(Err(e)) => assert_eq!(e.http_status(), Some(403), "{e:?}"),
                    other => panic!("{:?}", other.map(|r| r.map(|_| ()))),
                }
                assert!(conns.next().await.is_none());
                assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
                assert_eq!(conns.last_delay(), None, "no retry was waited");
            }));
        }

        #[test]
        fn refused_connections_stop_at_the_attempt_limit() {
            rt::block_on(rt::within_a_minute(async {
                // A port nobody listens on any more.
                let addr = {
                    let (l, addr) = rt::listen().await;
                    drop(l);
                    addr
                };
                let p = policy().max_attempts(3);
                let mut conns = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .reconnect(p.clone());
                let started = Instant::now();
                match conns.next().await {
                    Some(Err(Error::Io(e))) => {
                        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused)
                    }
                    other => panic!("{:?}", other.map(|r| r.map(|_| ()))),
                }
                assert!(conns.next().await.is_none());
                // Three attempts: two retries, each within its cap.
                assert_eq!(conns.retries(), 2);
                let last = conns.last_delay().expect("a retry waited");
                assert!(last <= p.cap(1), "{last:?}");
                assert!(started.elapsed() >= last);
            }));
        }

        #[test]
        fn reconnects_over_tls_through_a_proxy_and_tells_why_the_previous_connection_ended() {
            rt::block_on(rt::within_a_minute(async {
                let (server_cfg, client_cfg) = crate::tls::self_signed();
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    // The first connection is ended with 1013 Try Again
                    // Later, the second one echoes until the client's Close.
                    for first in [true, false] {
                        let tls = rt::tls_accept(rt::accept(&l).await, server_cfg.clone()).await;
                        let mut ws = accept_with(tls, config(), |_| Ok(Accept::new()))
                            .await
                            .expect("accept");
                        if first {
                            let _ = ws.close(CloseCode::TRY_AGAIN_LATER, "busy").await;
                            continue;
                        }
                        while let Some(Ok(m)) = ws.recv().await {
                            if ws.send(m).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                // Each attempt tunnels through the proxy (two connections).
                let proxy = crate::proxies::http_proxy(None, 2);
                let mut conns = ConnectBuilder::new(format!("wss://127.0.0.1:{}/", addr.port()))
                    .proxy(ws::Proxy::parse(&format!("http://{proxy}")).expect("proxy url"))
                    .config(config())
                    .tls(client_cfg)
                    .reconnect(policy());
                let (mut ws, _) = conns.next().await.expect("a connection").expect("connect");
                assert!(ws.recv().await.is_none(), "the server closes");
                conns.report(Disconnect::Peer(ws.close_frame().cloned()));
                let (mut ws, _) = conns.next().await.expect("again").expect("reconnect");
                match conns.previous() {
                    Some(Disconnect::Peer(Some(f))) => {
                        assert_eq!(f.code, CloseCode::TRY_AGAIN_LATER)
                    }
                    other => panic!("{other:?}"),
                }
                ws.send("again").await.expect("send");
                assert_eq!(
                    ws.recv().await.expect("echo").expect("echo"),
                    Message::from("again")
                );
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                conns.report(Disconnect::Local);
                assert!(conns.next().await.is_none());
                server.await;
            }));
        }
    };
}
