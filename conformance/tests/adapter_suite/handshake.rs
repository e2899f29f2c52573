//! The opening handshake's failures, on both sides: a server that never
//! answers, a callback whose `Accept` cannot be honoured, and plain HTTP
//! requests answered with a page or refused.

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
    };
}
