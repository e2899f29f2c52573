//! Client ↔ server over real loopback sockets (127.0.0.1 only).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsmachine_tokio::rustls;
use wsmachine_tokio::{
    accept, accept_with, CloseCode, Config, ConnectBuilder, Error, Event, Message, Negotiated,
    Reject, Role, WebSocket,
};

const LIMIT: Duration = Duration::from_secs(30);

fn plain() -> Config {
    Config::default()
}

async fn round_trips(url: String, compression: bool) {
    let (mut ws, resp) = ConnectBuilder::new(url)
        .compression(compression)
        .connect()
        .await
        .unwrap();
    assert_eq!(resp.status, 101);
    assert_eq!(ws.negotiated().deflate.is_some(), compression);
    let big_text: String = "héllo wörld ".repeat(100_000);
    let big_bin: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let msgs = vec![
        Message::from("hello"),
        Message::from(String::new()),
        Message::from(vec![0u8, 1, 2, 255]),
        Message::from(big_text),
        Message::from(big_bin),
    ];
    for m in &msgs {
        ws.send(m.clone()).await.unwrap();
        let back = ws.recv().await.unwrap().unwrap();
        assert_eq!(&back, m);
    }
    ws.close(CloseCode::NORMAL, "done").await.unwrap();
    assert_eq!(ws.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
    assert!(ws.recv().await.is_none());
    assert!(matches!(
        ws.send("late").await,
        Err(Error::Closed(wsmachine_tokio::Ended::Closed(Some(f)))) if f.code == CloseCode::NORMAL
    ));
}

#[tokio::test]
async fn text_binary_and_large_messages() {
    let addr = common::echo_server(plain(), 1).await;
    tokio::time::timeout(LIMIT, round_trips(format!("ws://{addr}/"), false))
        .await
        .unwrap();
}

#[tokio::test]
async fn with_permessage_deflate() {
    let addr = common::echo_server(Config::with_deflate(), 1).await;
    tokio::time::timeout(LIMIT, round_trips(format!("ws://{addr}/"), true))
        .await
        .unwrap();
}

#[tokio::test]
async fn stream_and_sink() {
    let addr = common::echo_server(plain(), 1).await;
    let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
        .compression(false)
        .connect()
        .await
        .unwrap();
    for i in 0..100 {
        ws.feed(Message::from(format!("m{i}"))).await.unwrap();
    }
    ws.flush().await.unwrap();
    for i in 0..100 {
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m, Message::from(format!("m{i}")));
    }
    SinkExt::close(&mut ws).await.unwrap();
    assert!(ws.next().await.is_none());
}

fn self_signed() -> (rustls::ServerConfig, rustls::ClientConfig) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, client)
}

#[tokio::test]
async fn tls_with_self_signed_certificate() {
    let (server_cfg, client_cfg) = self_signed();
    let (l, addr) = common::listener().await;
    let acceptor = wsmachine_tokio::tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = accept(tls).await.unwrap();
        while let Some(Ok(m)) = ws.recv().await {
            ws.send(m).await.unwrap();
        }
    });
    tokio::time::timeout(LIMIT, async {
        let (mut ws, _) = ConnectBuilder::new(format!("wss://localhost:{}/secure", addr.port()))
            .tls(client_cfg)
            .compression(false)
            .connect()
            .await
            .unwrap();
        ws.send("over tls").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from("over tls"));
        let big = vec![7u8; 1 << 20];
        ws.send(big.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from(big));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert!(ws.recv().await.is_none());
        server.await.unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tls_rejects_unknown_certificate() {
    let (server_cfg, _) = self_signed();
    let (l, addr) = common::listener().await;
    let acceptor = wsmachine_tokio::tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    // Default roots (webpki) do not know the self-signed certificate.
    let r = wsmachine_tokio::connect(&format!("wss://localhost:{}/", addr.port())).await;
    assert!(matches!(r, Err(Error::Tls(_))), "{r:?}");
}

#[tokio::test]
async fn split_halves_on_separate_tasks() {
    const N: usize = 2000;
    let (l, addr) = common::listener().await;
    // The server splits too: its reader task forwards to its writer task.
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let ws = accept(tcp).await.unwrap();
        let (mut rd, mut wr) = ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(16);
        let echo = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                wr.send(m).await.unwrap();
            }
        });
        while let Some(Ok(m)) = rd.recv().await {
            tx.send(m).await.unwrap();
        }
        drop(tx);
        echo.await.unwrap();
    });
    tokio::time::timeout(LIMIT, async {
        let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .compression(true)
            .connect()
            .await
            .unwrap();
        let (mut rd, mut wr) = ws.split();
        let writer = tokio::spawn(async move {
            for i in 0..N {
                let body = format!("{i}:{}", "z".repeat(i % 300));
                wr.send(body).await.unwrap();
            }
            wr
        });
        let reader = tokio::spawn(async move {
            for i in 0..N {
                let m = rd.recv().await.unwrap().unwrap();
                let Message::Text(t) = m else {
                    panic!("binary")
                };
                assert_eq!(t.split(':').next().unwrap(), i.to_string());
            }
            rd
        });
        let mut wr = writer.await.unwrap();
        let mut rd = reader.await.unwrap();
        wr.close(CloseCode::NORMAL, "").await.unwrap();
        assert!(rd.recv().await.is_none());
        assert_eq!(rd.close_frame().map(|f| f.code), Some(CloseCode::NORMAL));
        server.await.unwrap();
    })
    .await
    .unwrap();
}

/// Raises this process's soft limit on open files to at least `need` (up to
/// the hard limit), or fails saying what to raise: a test that needs more
/// descriptors than a default shell gives (1024) says so instead of failing
/// halfway with "too many open files".
fn raise_fd_limit(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct passed by pointer.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur >= need {
            return;
        }
        assert!(
            lim.rlim_max >= need,
            "this test needs {need} open files; the hard limit is {}: raise it (ulimit -Hn)",
            lim.rlim_max
        );
        lim.rlim_cur = need;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

#[tokio::test]
async fn thousand_connections() {
    const N: usize = 1000;
    // Both ends of every connection live in this process, plus the
    // runtime's and the harness's own descriptors.
    raise_fd_limit(2 * N as u64 + 256);
    let addr = common::echo_server(plain(), N).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
                .compression(false)
                .handshake_timeout(Duration::from_secs(30))
                .connect()
                .await
                .unwrap();
            ws.send(format!("hello {i}")).await.unwrap();
            let m = ws.recv().await.unwrap().unwrap();
            assert_eq!(m, Message::from(format!("hello {i}")));
            // Everyone is connected and has echoed before anyone closes.
            barrier.wait().await;
            ws.close(CloseCode::NORMAL, "").await.unwrap();
        });
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn accept_with_rejection_reaches_the_client() {
    let (l, addr) = common::listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        accept_with(tcp, Config::default(), |req| {
            assert_eq!(req.path(), "/private");
            assert_eq!(req.header("authorization"), Some("Bearer wrong"));
            Err(Reject::new(403).header("X-Why", "token").body("nope"))
        })
        .await
    });
    let r = ConnectBuilder::new(format!("ws://{addr}/private?x=1"))
        .header("Authorization", "Bearer wrong")
        .connect()
        .await;
    let err = r.unwrap_err();
    assert_eq!(err.http_status(), Some(403));
    match err {
        Error::Ws(wsmachine::ConnectionError::Handshake(wsmachine::HandshakeError::Status(
            resp,
        ))) => {
            assert_eq!(resp.headers.get("x-why"), Some("token"));
            assert_eq!(&resp.body[..], b"nope");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(server.await.unwrap(), Err(Error::Rejected)));
}

#[tokio::test]
async fn subprotocol_and_invalid_request() {
    let (l, addr) = common::listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let ws = accept_with(tcp, Config::default(), |req| {
            Ok(wsmachine::Accept::new().subprotocol(req.subprotocols()[1].clone()))
        })
        .await
        .unwrap();
        assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("b"));
        // A plain HTTP request without Upgrade gets a 400.
        let (tcp, _) = l.accept().await.unwrap();
        let _ = tcp.peek(&mut [0u8; 1]).await;
        let r = accept(tcp).await;
        assert!(matches!(r, Err(Error::Ws(_))), "{r:?}");
    });
    let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
        .subprotocol("a")
        .subprotocol("b")
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("b"));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
    server.await.unwrap();
}

#[tokio::test]
async fn byte_stream_tunnel() {
    let (l, addr) = common::listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let bs = accept(tcp).await.unwrap().into_byte_stream();
        let (mut r, mut w) = tokio::io::split(bs);
        // Echo bytes until the client closes.
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let (ws, _) = wsmachine_tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let bs = ws.into_byte_stream();
    let (mut r, mut w) = tokio::io::split(bs);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let expect = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.flush().await.unwrap();
        w
    });
    let mut back = vec![0u8; expect.len()];
    tokio::time::timeout(LIMIT, r.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert!(back == expect);
    let mut w = writer.await.unwrap();
    w.shutdown().await.unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn from_upgraded_over_a_duplex() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let mut server = WebSocket::from_upgraded(a, Role::Server, Negotiated::default(), plain());
    let mut client = WebSocket::from_upgraded(b, Role::Client, Negotiated::default(), plain());
    let s = tokio::spawn(async move {
        while let Some(Ok(m)) = server.recv().await {
            server.send(m).await.unwrap();
        }
    });
    client.send(Bytes::from_static(b"\x01\x02")).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::Binary(Bytes::from_static(b"\x01\x02"))
    );
    client.ping(b"p").await.unwrap();
    match client.recv_event().await.unwrap().unwrap() {
        Event::Pong(p) => assert_eq!(&p[..], b"p"),
        other => panic!("{other:?}"),
    }
    client.close(CloseCode::from(4000), "bye").await.unwrap();
    assert_eq!(
        client.close_frame().map(|f| f.code),
        Some(CloseCode::from(4000))
    );
    s.await.unwrap();
}
