//! The async-std glue over real loopback sockets: an echo round trip (with
//! and without compression), split halves on separate tasks, and wss://
//! with a self-signed certificate.

mod util;

use std::sync::Arc;

use util::{echo, echo_server, plain, run};
use wsmachine_async_std::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wsmachine_async_std::rustls::{crypto::ring, ClientConfig, RootCertStore, ServerConfig};
use wsmachine_async_std::{
    accept_with, futures_rustls::TlsAcceptor, Accept, CloseCode, Config, ConnectBuilder, Message,
};

#[test]
fn echo_round_trip() {
    run(30, async {
        let addr = echo_server(plain()).await;
        let (mut ws, resp) = wsmachine_async_std::ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        assert_eq!(resp.status, 101);
        for len in [0usize, 125, 126, 65_536, 1 << 20] {
            let m = Message::from(vec![len as u8; len]);
            ws.send(m.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap().unwrap(), m);
        }
        ws.send("text").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from("text"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert!(ws.recv().await.is_none());
        assert_eq!(ws.close_frame().unwrap().code, CloseCode::NORMAL);
    });
}

#[test]
fn echo_round_trip_with_compression() {
    run(30, async {
        let addr = echo_server(Config::with_deflate()).await;
        let (mut ws, _) = wsmachine_async_std::connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        assert!(
            ws.negotiated().deflate.is_some(),
            "deflate was offered and accepted"
        );
        let text = "compressible ".repeat(10_000);
        ws.send(text.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from(text));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    });
}

#[test]
fn split_halves_on_separate_tasks() {
    run(30, async {
        let addr = echo_server(plain()).await;
        let (ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .config(plain())
            .connect()
            .await
            .unwrap();
        let (mut rd, mut wr) = ws.split();
        const N: usize = 1_000;
        let (all_in_tx, all_in) = async_std::channel::bounded::<()>(1);
        let reader = async_std::task::spawn(async move {
            let mut n = 0;
            while let Some(m) = rd.recv().await {
                assert_eq!(m.unwrap(), Message::from(format!("m{n}")));
                n += 1;
                if n == N {
                    all_in_tx.send(()).await.unwrap();
                }
            }
            n
        });
        for i in 0..N {
            wr.send(format!("m{i}")).await.unwrap();
        }
        // Close once every echo is back (the server stops echoing as soon
        // as our Close reaches it).
        all_in.recv().await.unwrap();
        wr.close(CloseCode::NORMAL, "").await.unwrap();
        assert_eq!(reader.await, N);
    });
}

#[test]
fn wss_with_self_signed_certificate() {
    run(30, async {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let provider = Arc::new(ring::default_provider());
        let server_cfg = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let (l, addr) = util::listener().await;
        let server = async_std::task::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let tls = TlsAcceptor::from(Arc::new(server_cfg))
                .accept(tcp)
                .await
                .unwrap();
            let mut ws = accept_with(tls, plain(), |_| Ok(Accept::new()))
                .await
                .unwrap();
            echo(&mut ws).await;
        });
        let (mut ws, _) = ConnectBuilder::new(format!("wss://127.0.0.1:{}/", addr.port()))
            .config(plain())
            .tls(client_cfg)
            .connect()
            .await
            .unwrap();
        ws.send("secret").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from("secret"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        server.await;
    });
}
