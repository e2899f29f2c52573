//! An echo server over TLS (`wss://`): `wss_echo_server CERT.pem KEY.pem
//! [ADDR]`, the certificate chain and private key in PEM. The README's
//! "A wss server with a certificate".

use std::sync::Arc;

use wsmachine_tokio::rustls::pki_types::pem::PemObject;
use wsmachine_tokio::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wsmachine_tokio::{rustls, tokio_rustls::TlsAcceptor};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (cert, key) = (
        args.next().ok_or("CERT.pem")?,
        args.next().ok_or("KEY.pem")?,
    );
    let addr = args.next().unwrap_or("127.0.0.1:9443".into());
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let tls = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on wss://{addr}");
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let tls = tls.clone();
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else {
                return;
            };
            let Ok(mut ws) = wsmachine_tokio::accept(stream).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.recv().await {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}
