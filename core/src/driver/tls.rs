//! The TLS client configuration every adapter's connector uses (feature
//! `rustls`): which roots, the provider, the protocol versions and ALPN,
//! decided once here rather than in each adapter.

use std::io;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};

use super::{Error, TlsRoots};

/// The rustls client configuration for `roots`: the `ring` provider (passed
/// explicitly, so another crate enabling aws-lc-rs changes nothing), TLS
/// 1.2 and 1.3, ALPN `http/1.1` (RFC 6455 §4.1; RFC 8441 is h2). Built
/// once per process for each choice.
///
/// [`TlsRoots::Native`] reads the operating system's store
/// (`rustls-native-certs`) on first use; a store without one usable
/// certificate is [`Error::Tls`] with kind `NotFound` (tried again on the
/// next call), never a configuration that trusts nothing.
pub fn tls_client_config(roots: TlsRoots) -> Result<Arc<ClientConfig>, Error> {
    static WEBPKI: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static NATIVE: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    match roots {
        TlsRoots::WebPki => Ok(WEBPKI
            .get_or_init(|| {
                client_config(RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                })
            })
            .clone()),
        TlsRoots::Native => {
            if let Some(config) = NATIVE.get() {
                return Ok(config.clone());
            }
            let loaded = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                return Err(Error::Tls(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no root certificate in the system store ({:?})",
                        loaded.errors
                    ),
                )));
            }
            Ok(NATIVE.get_or_init(|| client_config(store)).clone())
        }
    }
}

fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
