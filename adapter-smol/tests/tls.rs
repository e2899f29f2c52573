//! wss:// with a self-signed certificate: server-side TLS through
//! futures-rustls, client through `ConnectBuilder::tls`.

mod util;

use std::sync::Arc;

use util::{echo, plain, run};
use wsmachine_smol::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wsmachine_smol::rustls::{crypto::ring, ClientConfig, RootCertStore, ServerConfig};
use wsmachine_smol::{
    accept_with, futures_rustls::TlsAcceptor, Accept, CloseCode, ConnectBuilder, Message,
};

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

#[test]
fn wss_echo_with_self_signed_certificate() {
    run(30, async {
        let (server_cfg, client_cfg) = configs();
        let (l, addr) = util::listener().await;
        let server = smol::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let tls = TlsAcceptor::from(server_cfg).accept(tcp).await.unwrap();
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
        for len in [0usize, 10, 70_000, 2 << 20] {
            let m = Message::from(vec![0x5a; len]);
            ws.send(m.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap().unwrap(), m);
        }
        ws.send("over tls").await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from("over tls"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        assert!(ws.recv().await.is_none());
        server.await;
    });
}

#[test]
fn wss_rejects_unknown_certificate() {
    run(30, async {
        let (server_cfg, _) = configs();
        let (l, addr) = util::listener().await;
        let _server = smol::spawn(async move {
            let (tcp, _) = l.accept().await.unwrap();
            let _ = TlsAcceptor::from(server_cfg).accept(tcp).await;
        });
        // Default roots (webpki) do not know our self-signed certificate.
        let err = ConnectBuilder::new(format!("wss://127.0.0.1:{}/", addr.port()))
            .config(plain())
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, wsmachine_smol::Error::Tls(_)), "{err:?}");
    });
}
