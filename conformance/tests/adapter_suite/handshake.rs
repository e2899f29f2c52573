//! The opening handshake's failures, on both sides: a server that never
//! answers, a callback whose `Accept` cannot be honoured, and plain HTTP
//! requests answered with a page or refused; and `accept_with_async`, whose
//! callback awaits a key service, within the handshake deadline.

macro_rules! handshake_tests {
    () => {
        use super::*;
        use crate::peer;
        use std::io::Write;

        #[test]
        fn connect_times_out_against_a_server_that_never_answers() {
            rt::block_on(rt::within_a_minute(async {
                // Accepts, reads the request, never answers: holds the
                // connection until the client gives up.
                let (l, addr) = peer::listen();
                let mute = std::thread::spawn(move || {
                    let mut s = peer::accept_tcp(&l);
                    peer::read_to_end(&mut s)
                });
                let r = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .handshake_timeout(std::time::Duration::from_millis(200))
                    .connect()
                    .await
                    .map(|_| ());
                match r {
                    Err(Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake))) => {}
                    other => panic!("connect: {other:?}"),
                }
                let request = mute.join().expect("mute server");
                assert!(request.starts_with(b"GET / HTTP/1.1\r\n"), "{request:?}");
            }));
        }

        #[test]
        fn accepting_a_subprotocol_the_client_did_not_offer_fails_both_sides() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    accept_with(s, config(), |_| Ok(Accept::new().subprotocol("chat.v2")))
                        .await
                        .map(|_| ())
                });
                let err = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .subprotocol("chat.v1")
                    .connect()
                    .await
                    .map(|_| ())
                    .expect_err("the server cannot accept");
                assert_eq!(err.http_status(), Some(500), "{err:?}");
                match server.await {
                    Err(Error::Send(SendError::InvalidAccept(_))) => {}
                    other => panic!("accept_with: {other:?}"),
                }
            }));
        }

        /// `Duration::MAX` means "no deadline" for the opening handshake,
        /// on both sides: the deadline that cannot be represented is none
        /// (adding it to the clock used to panic in every accept).
        #[test]
        fn an_unbounded_handshake_timeout_means_no_deadline() {
            rt::block_on(rt::within_a_minute(async {
                let unbounded = Config {
                    opening_handshake_timeout: std::time::Duration::MAX,
                    ..config()
                };
                let (l, addr) = rt::listen().await;
                let server_config = unbounded.clone();
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let mut ws = accept_with(s, server_config, |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    let m = ws.recv().await.expect("a message").expect("a message");
                    ws.send(m).await.expect("echo");
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                });
                let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(unbounded)
                    .handshake_timeout(std::time::Duration::MAX)
                    .connect()
                    .await
                    .expect("connect");
                ws.send("hello").await.expect("send");
                let echo = ws.recv().await.expect("the echo").expect("the echo");
                assert_eq!(echo, Message::from("hello"));
                assert!(ws.recv().await.is_none(), "the server's close");
                server.await;
            }));
        }

        /// A plain `GET /` (no upgrade) on a raw socket against
        /// `accept_with` with `answer_plain_http` and `callback`: the raw
        /// response, and what `accept_with` returned.
        async fn plain_get<F>(callback: F) -> (String, Result<(), Error>)
        where
            F: FnOnce(&ws::Request) -> Result<Accept, Reject>,
        {
            let (l, addr) = rt::listen().await;
            let raw = std::thread::spawn(move || {
                let mut s = peer::tcp(addr);
                s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    .expect("write");
                String::from_utf8(peer::read_to_end(&mut s)).expect("an ASCII response")
            });
            let s = rt::accept(&l).await;
            let cfg = Config {
                answer_plain_http: true,
                ..config()
            };
            let r = accept_with(s, cfg, callback).await.map(|_| ());
            (raw.join().expect("raw client"), r)
        }

        #[test]
        fn a_plain_http_request_gets_the_callbacks_page() {
            rt::block_on(rt::within_a_minute(async {
                let (response, r) = plain_get(|req| {
                    assert!(!req.is_websocket_upgrade());
                    Err(Reject::page("text/plain", "hi"))
                })
                .await;
                assert!(response.starts_with("HTTP/1.1 200"), "{response}");
                assert!(response.ends_with("\r\n\r\nhi"), "{response}");
                assert!(matches!(r, Err(Error::Rejected)), "{r:?}");
            }));
        }

        #[test]
        fn a_plain_http_request_the_callback_accepts_gets_a_400() {
            rt::block_on(rt::within_a_minute(async {
                let (response, r) = plain_get(|_| Ok(Accept::new())).await;
                assert!(response.starts_with("HTTP/1.1 400"), "{response}");
                assert!(
                    matches!(r, Err(Error::Send(SendError::NotAnUpgrade))),
                    "{r:?}"
                );
            }));
        }

        #[test]
        fn a_rejection_reaches_the_client_with_its_status_headers_and_body() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    accept_with(s, config(), |req| {
                        assert_eq!(req.path(), "/private");
                        assert_eq!(req.header("authorization"), Some("Bearer wrong"));
                        Err(Reject::new(403).header("X-Why", "token").body("nope"))
                    })
                    .await
                    .map(|_| ())
                });
                let err = ConnectBuilder::new(format!("ws://{addr}/private?x=1"))
                    .no_proxy()
                    .config(config())
                    .header("Authorization", "Bearer wrong")
                    .connect()
                    .await
                    .map(|_| ())
                    .expect_err("rejected");
                assert_eq!(err.http_status(), Some(403));
                match err {
                    Error::Ws(ConnectionError::Handshake(ws::HandshakeError::Status(resp))) => {
                        assert_eq!(resp.headers.get("x-why"), Some("token"));
                        assert_eq!(&resp.body[..], b"nope");
                    }
                    other => panic!("{other:?}"),
                }
                let r = server.await;
                assert!(matches!(r, Err(Error::Rejected)), "{r:?}");
            }));
        }

        #[test]
        fn the_callback_chooses_among_the_offered_subprotocols() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let mut ws = accept_with(s, config(), |req| {
                        assert_eq!(req.subprotocols(), ["a", "b"]);
                        Ok(Accept::new().subprotocol(req.subprotocols()[1].clone()))
                    })
                    .await
                    .expect("accept");
                    let chosen = ws.negotiated().subprotocol.clone();
                    while ws.recv().await.is_some() {}
                    chosen
                });
                let (mut ws, resp) = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .subprotocol("a")
                    .subprotocol("b")
                    .connect()
                    .await
                    .expect("connect");
                assert_eq!(resp.headers.get("sec-websocket-protocol"), Some("b"));
                assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("b"));
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                assert_eq!(server.await.as_deref(), Some("b"));
            }));
        }

        #[test]
        fn a_plain_http_request_gets_a_400_by_default() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let raw = std::thread::spawn(move || {
                    let mut s = peer::tcp(addr);
                    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                        .expect("write");
                    String::from_utf8(peer::read_to_end(&mut s)).expect("an ASCII response")
                });
                let s = rt::accept(&l).await;
                let r = ws::accept(s).await.map(|_| ());
                assert!(
                    matches!(r, Err(Error::Ws(ConnectionError::Handshake(_)))),
                    "{r:?}"
                );
                let resp = raw.join().expect("raw client");
                assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
            }));
        }

        #[test]
        fn from_upgraded_after_an_http_server_answered_and_connect_on() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    // Play the HTTP server: parse the request and answer it
                    // with the core's handshake helpers, then hand the
                    // stream over.
                    let mut s = rt::accept(&l).await;
                    let mut hs = wsmachine::ServerHandshake::new(&config());
                    let mut buf = [0u8; 1024];
                    let req = loop {
                        let n = rt::read(&mut s, &mut buf).await.expect("read");
                        assert!(n > 0, "the client left");
                        if let Some(req) = hs.receive(&buf[..n]).expect("a valid request") {
                            break req;
                        }
                    };
                    assert_eq!(req.path(), "/up");
                    let (resp, negotiated) =
                        wsmachine::accept_response(&req, &Accept::new(), None).expect("accept");
                    rt::write_all(&mut s, &resp).await.expect("write");
                    let mut ws =
                        ws::WebSocket::from_upgraded(s, ws::Role::Server, negotiated, config());
                    let m = ws.recv().await.expect("message").expect("message");
                    ws.send(m).await.expect("echo");
                    ws.recv().await.is_none()
                });
                let (mut ws, resp) = ConnectBuilder::new(format!("ws://{addr}/up"))
                    .config(config())
                    .connect_on(rt::connect(addr).await)
                    .await
                    .expect("connect_on");
                assert_eq!(resp.status, 101);
                ws.send("through").await.expect("send");
                assert_eq!(
                    ws.recv().await.expect("echo").expect("echo"),
                    Message::from("through")
                );
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                assert!(server.await, "the server's recv ends after the Close");
            }));
        }

        #[test]
        fn from_upgraded_on_both_ends() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let mut server = ws::WebSocket::from_upgraded(
                        s,
                        ws::Role::Server,
                        ws::Negotiated::default(),
                        config(),
                    );
                    while let Some(Ok(m)) = server.recv().await {
                        server.send(m).await.expect("echo");
                    }
                    server.close_frame().map(|f| f.code)
                });
                let mut client = ws::WebSocket::from_upgraded(
                    rt::connect(addr).await,
                    ws::Role::Client,
                    ws::Negotiated::default(),
                    config(),
                );
                client.send(vec![1u8, 2]).await.expect("send");
                assert_eq!(
                    client.recv().await.expect("echo").expect("echo"),
                    Message::from(vec![1u8, 2])
                );
                client.ping(b"p").await.expect("ping");
                match client.recv_event().await {
                    Some(Ok(Event::Pong(p))) => assert_eq!(&p[..], b"p"),
                    other => panic!("{other:?}"),
                }
                client
                    .close(CloseCode::from(4000), "bye")
                    .await
                    .expect("close");
                assert_eq!(
                    client.close_frame().map(|f| f.code),
                    Some(CloseCode::from(4000))
                );
                assert_eq!(server.await, Some(CloseCode::from(4000)));
            }));
        }

        /// A key service on its own task: answers each token sent to it
        /// (`good` is valid) through the oneshot that came with it.
        fn key_service() -> futures_channel::mpsc::UnboundedSender<(
            String,
            futures_channel::oneshot::Sender<bool>,
        )> {
            use futures_util::StreamExt;
            let (tx, mut rx) = futures_channel::mpsc::unbounded::<(
                String,
                futures_channel::oneshot::Sender<bool>,
            )>();
            let _detached = rt::spawn(async move {
                while let Some((token, answer)) = rx.next().await {
                    let _ = answer.send(token == "Bearer good");
                }
            });
            tx
        }

        #[test]
        fn an_async_callback_accepts_one_token_and_rejects_another_with_401() {
            rt::block_on(rt::within_a_minute(async {
                let keys = key_service();
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let mut outcomes = Vec::new();
                    for _ in 0..2 {
                        let s = rt::accept(&l).await;
                        let keys = keys.clone();
                        let r = ws::accept_with_async(s, config(), |req| async move {
                            let token = req.header("authorization").unwrap_or("").to_owned();
                            let (answer, verdict) = futures_channel::oneshot::channel();
                            keys.unbounded_send((token, answer)).expect("key service");
                            if verdict.await == Ok(true) {
                                Ok(Accept::new())
                            } else {
                                Err(Reject::new(401).header("WWW-Authenticate", "Bearer"))
                            }
                        })
                        .await;
                        match r {
                            Ok(mut ws) => {
                                while let Some(Ok(m)) = ws.recv().await {
                                    if ws.send(m).await.is_err() {
                                        break;
                                    }
                                }
                                outcomes.push(true);
                            }
                            Err(Error::Rejected) => outcomes.push(false),
                            Err(e) => panic!("accept_with_async: {e:?}"),
                        }
                    }
                    outcomes
                });
                let connect = |token: &'static str| {
                    ConnectBuilder::new(format!("ws://{addr}/"))
                        .no_proxy()
                        .config(config())
                        .header("Authorization", token)
                        .connect()
                };
                let (mut ws, _) = connect("Bearer good").await.expect("accepted");
                ws.send("in").await.expect("send");
                assert_eq!(
                    ws.recv().await.expect("echo").expect("echo"),
                    Message::from("in")
                );
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                let err = connect("Bearer bad").await.map(|_| ()).expect_err("rejected");
                assert_eq!(err.http_status(), Some(401), "{err:?}");
                assert_eq!(server.await, [true, false]);
            }));
        }

        #[test]
        fn an_async_callback_that_never_decides_hits_the_handshake_deadline() {
            rt::block_on(rt::within_a_minute(async {
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let cfg = Config {
                        opening_handshake_timeout: std::time::Duration::from_millis(100),
                        ..config()
                    };
                    ws::accept_with_async(s, cfg, |_| std::future::pending())
                        .await
                        .map(|_| ())
                });
                let err = ConnectBuilder::new(format!("ws://{addr}/"))
                    .no_proxy()
                    .config(config())
                    .connect()
                    .await
                    .map(|_| ())
                    .expect_err("no answer in time");
                // The server could not decide: 503, which a reconnecting
                // client retries.
                assert_eq!(err.http_status(), Some(503), "{err:?}");
                match server.await {
                    Err(Error::Ws(ConnectionError::TimedOut(Timeout::OpeningHandshake))) => {}
                    other => panic!("accept_with_async: {other:?}"),
                }
            }));
        }
    };
}
