//! wss:// with a self-signed certificate: the server side through the
//! runtime's rustls acceptor (`rt::tls_accept`), the client through
//! `ConnectBuilder::tls`; and the default roots, and the system's
//! (`TlsRoots::Native`), refusing it.

use std::sync::Arc;

use wsmachine_tokio::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wsmachine_tokio::rustls::{crypto::ring, ClientConfig, RootCertStore, ServerConfig};

/// A server config with a certificate for 127.0.0.1, and a client config
/// that trusts only it.
pub(crate) fn self_signed() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("rcgen");
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("cert");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

macro_rules! tls_tests {
    () => {
        use super::*;

        #[test]
        fn wss_echo_with_a_self_signed_certificate() {
            rt::block_on(rt::within_a_minute(async {
                let (server_cfg, client_cfg) = crate::tls::self_signed();
                let (l, addr) = rt::listen().await;
                let server = rt::spawn(async move {
                    let tcp = rt::accept(&l).await;
                    let tls = rt::tls_accept(tcp, server_cfg).await;
                    let mut ws = accept_with(tls, config(), |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                });
                let (mut ws, _) =
                    ConnectBuilder::new(format!("wss://127.0.0.1:{}/secure", addr.port()))
                        .no_proxy()
                        .config(config())
                        .tls(client_cfg)
                        .connect()
                        .await
                        .expect("connect");
                for len in [0usize, 10, 70_000, 2 << 20] {
                    let m = Message::from(vec![0x5a; len]);
                    ws.send(m.clone()).await.expect("send");
                    assert!(
                        ws.recv().await.expect("echo").expect("echo") == m,
                        "{len} bytes"
                    );
                }
                ws.send("over tls").await.expect("send");
                assert_eq!(
                    ws.recv().await.expect("echo").expect("echo"),
                    Message::from("over tls")
                );
                ws.close(CloseCode::NORMAL, "").await.expect("close");
                let end = ws.recv().await;
                assert!(end.is_none(), "{end:?}");
                server.await;
            }));
        }

        /// A TLS server with the self-signed certificate, for one client
        /// that must refuse it.
        async fn refusing_tls_server() -> std::net::SocketAddr {
            let (server_cfg, _) = crate::tls::self_signed();
            let (l, addr) = rt::listen().await;
            let _detached = rt::spawn(async move {
                let tcp = rt::accept(&l).await;
                rt::tls_accept_fails(tcp, server_cfg).await
            });
            addr
        }

        #[test]
        fn wss_rejects_an_unknown_certificate() {
            rt::block_on(rt::within_a_minute(async {
                let addr = refusing_tls_server().await;
                // The default roots (webpki) do not know our certificate.
                let r = ws::connect(&format!("wss://127.0.0.1:{}/", addr.port()))
                    .await
                    .map(|_| ());
                assert!(matches!(r, Err(Error::Tls(_))), "{r:?}");
            }));
        }

        #[test]
        fn native_roots_load_from_the_system_store() {
            // No network: only the store is read. This machine has one
            // (Debian's ca-certificates); without one the documented error
            // is `Tls` with kind `NotFound`, never an empty trust list.
            match ws::tls_config(ws::TlsRoots::Native) {
                Ok(cfg) => assert_eq!(cfg.alpn_protocols, [b"http/1.1".to_vec()]),
                Err(Error::Tls(e))
                    if e.kind() == std::io::ErrorKind::NotFound
                        && !std::path::Path::new("/etc/ssl/certs").exists() => {}
                Err(e) => panic!("the system store at /etc/ssl/certs did not load: {e:?}"),
            }
        }

        #[test]
        fn native_roots_refuse_an_unknown_certificate_and_it_is_not_retried() {
            rt::block_on(rt::within_a_minute(async {
                let addr = refusing_tls_server().await;
                let r = ConnectBuilder::new(format!("wss://127.0.0.1:{}/", addr.port()))
                    .no_proxy()
                    .config(config())
                    .roots(ws::TlsRoots::Native)
                    .connect()
                    .await
                    .map(|_| ());
                // rustls' verdict (unknown issuer) comes as InvalidData.
                match &r {
                    Err(e @ Error::Tls(io)) if io.kind() == std::io::ErrorKind::InvalidData => {
                        assert!(!ws::ReconnectPolicy::new().retries(e), "{e:?}");
                    }
                    other => panic!("{other:?}"),
                }
            }));
        }
    };
}
