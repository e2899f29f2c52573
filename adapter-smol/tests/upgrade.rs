//! The byte-stream view, streams upgraded elsewhere (`from_upgraded`,
//! `connect_on`), and `accept_with` rejections.

mod util;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use util::{plain, run};
use wsmachine::{accept_response, ConnectionError, HandshakeError, ServerHandshake};
use wsmachine_smol::{
    accept_with, Accept, CloseCode, ConnectBuilder, Error, Message, Reject, Role, WebSocket,
};

#[test]
fn byte_stream_round_trip() {
    run(30, async {
        let (l, addr) = util::listener().await;
        let server = smol::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let ws = accept_with(s, plain(), |_| Ok(Accept::new()))
                .await
                .unwrap();
            let mut bs = ws.into_byte_stream();
            let mut buf = vec![0u8; 10_000];
            let mut total = 0;
            loop {
                let n = bs.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += n;
                bs.write_all(&buf[..n]).await.unwrap();
            }
            total
        });
        let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        let mut bs = ws.into_byte_stream();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut back = vec![0u8; data.len()];
        for (chunk, out) in data.chunks(30_000).zip(back.chunks_mut(30_000)) {
            bs.write_all(chunk).await.unwrap();
            bs.read_exact(out).await.unwrap();
        }
        assert_eq!(back, data);
        bs.close().await.unwrap();
        assert_eq!(server.await, data.len());
    });
}

#[test]
fn from_upgraded_and_connect_on() {
    run(30, async {
        let (l, addr) = util::listener().await;
        let server = smol::spawn(async move {
            // Play the HTTP server: parse the request and answer it with the
            // core's handshake helpers, then hand the stream over.
            let (mut s, _) = l.accept().await.unwrap();
            let mut hs = ServerHandshake::new(&plain());
            let mut buf = [0u8; 1024];
            let req = loop {
                let n = s.read(&mut buf).await.unwrap();
                if let Some(req) = hs.receive(&buf[..n]).unwrap() {
                    break req;
                }
            };
            let (resp, negotiated) = accept_response(&req, &Accept::new(), None).unwrap();
            s.write_all(&resp).await.unwrap();
            let mut ws = WebSocket::from_upgraded(s, Role::Server, negotiated, plain());
            let m = ws.recv().await.unwrap().unwrap();
            ws.send(m).await.unwrap();
            assert!(ws.recv().await.is_none());
        });
        let tcp = smol::net::TcpStream::connect(addr).await.unwrap();
        let (mut ws, resp) = ConnectBuilder::new(format!("ws://{addr}/up"))
            .config(plain())
            .connect_on(tcp)
            .await
            .unwrap();
        assert_eq!(resp.status, 101);
        ws.send("through").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from("through"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        server.await;
    });
}

#[test]
fn accept_with_rejects_and_selects_subprotocol() {
    run(30, async {
        let (l, addr) = util::listener().await;
        let server = smol::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (s, _) = l.accept().await.unwrap();
                let r = accept_with(s, plain(), |req| {
                    if req.path() != "/chat" {
                        return Err(Reject::new(404).body("no such room"));
                    }
                    assert_eq!(req.header("authorization"), Some("Bearer x"));
                    Ok(Accept::new().subprotocol("v2"))
                })
                .await;
                if let Ok(mut ws) = r {
                    assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("v2"));
                    while ws.recv().await.is_some() {}
                    results.push(true);
                } else {
                    assert!(matches!(r, Err(Error::Rejected)));
                    results.push(false);
                }
            }
            results
        });
        let err = ConnectBuilder::new(format!("ws://{addr}/nope"))
            .config(plain())
            .connect()
            .await
            .unwrap_err();
        match err {
            Error::Ws(ConnectionError::Handshake(HandshakeError::Status(resp))) => {
                assert_eq!(resp.status, 404);
                assert_eq!(&resp.body[..], b"no such room");
            }
            other => panic!("{other:?}"),
        }
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/chat"))
            .config(plain())
            .header("Authorization", "Bearer x")
            .subprotocol("v1")
            .subprotocol("v2")
            .connect()
            .await
            .unwrap();
        assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("v2"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert_eq!(server.await, vec![false, true]);
    });
}
