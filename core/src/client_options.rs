//! What every runtime adapter's `connect` / `accept_with` needs and that is
//! not runtime-specific: the options of a client connection (URL, headers,
//! subprotocols, compression, limits, proxy) turned into a
//! [`ClientRequest`] and a [`Config`], the choice of a proxy from the
//! environment, and the [`Reject`] answer of a server callback.
//!
//! The adapters wrap [`ConnectOptions`] in their own `ConnectBuilder` (which
//! adds the runtime's TCP and TLS types) and re-export [`Reject`] and
//! [`Compression`], so the three adapters cannot drift apart on how a URL
//! and a builder become a request. Like the rest of the core this does no
//! I/O: the environment is read through a lookup function the adapter
//! passes in.

use std::time::Duration;

use crate::config::Config;
use crate::deflate::DeflateConfig;
use crate::error::UrlError;
use crate::handshake::{ClientRequest, WsUrl};
use crate::proxy::{Proxy, ProxyError};

/// An HTTP answer without upgrading (an `accept_with` callback's `Err`):
/// the status, extra headers and body sent back instead of `101 Switching
/// Protocols`, after which the connection is closed.
///
/// It declines a WebSocket request (`Reject::new(403)`), or answers a plain
/// HTTP request that a server with [`Config::answer_plain_http`] hands to
/// its callback ([`crate::Request::is_websocket_upgrade`] is `false`):
/// [`Reject::page`] for a 200 with a body, `Reject::new(404)` for the rest.
/// `Content-Length` and `Connection: close` are added; the status is one of
/// 200–599. The adapters' `accept_with` then returns their `Rejected` error,
/// whatever the status.
///
/// ```
/// use wsmachine::Reject;
/// let r = Reject::new(403).header("X-Reason", "banned").body("go away");
/// assert_eq!((r.status, r.body.as_slice()), (403, &b"go away"[..]));
/// let page = Reject::page("text/html; charset=utf-8", "<h1>hello</h1>");
/// assert_eq!(page.status, 200);
/// assert_eq!(page.headers, [("Content-Type".to_string(), "text/html; charset=utf-8".to_string())]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status (200–599, not 101).
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body (`Content-Length` is added).
    pub body: Vec<u8>,
}

impl Reject {
    /// A rejection with `status`, no extra headers and an empty body.
    pub fn new(status: u16) -> Self {
        Reject {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `200 OK` with a `Content-Type` and a body: a page served in place
    /// of a WebSocket, for a plain HTTP request (see
    /// [`Config::answer_plain_http`]).
    pub fn page(content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Reject::new(200)
            .header("Content-Type", content_type)
            .body(body)
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// Whether and how a client offers permessage-deflate: `true` (default
/// parameters), `false`, or a [`DeflateConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compression(pub Option<DeflateConfig>);

impl From<bool> for Compression {
    fn from(on: bool) -> Self {
        Compression(on.then(DeflateConfig::default))
    }
}

impl From<DeflateConfig> for Compression {
    fn from(cfg: DeflateConfig) -> Self {
        Compression(Some(cfg))
    }
}

impl From<Option<DeflateConfig>> for Compression {
    fn from(cfg: Option<DeflateConfig>) -> Self {
        Compression(cfg)
    }
}

/// Which proxy a client connection goes through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// The one the environment names (see [`proxy_from_env`]); the default.
    #[default]
    FromEnv,
    /// None: connect directly whatever the environment says.
    Direct,
    /// This one.
    Via(Proxy),
}

/// Picks the proxy for a connection to `target_host` from the conventional
/// environment variables, read through `lookup` (for example
/// `|name| std::env::var(name).ok()`; the core itself reads no environment).
///
/// `https_proxy` is used for `wss://`, `http_proxy` for `ws://`, then
/// `all_proxy`; `no_proxy` lists hosts to reach directly. Each name is looked
/// up in lower case first, then in upper case (`HTTPS_PROXY`, …), as curl
/// and most tools do. Empty values count as unset.
///
/// ```
/// use wsmachine::{proxy_from_env, ProxyKind};
/// let env = |name: &str| (name == "ALL_PROXY").then(|| "socks5://127.0.0.1:1080".to_string());
/// let p = proxy_from_env(true, "example.com", env).unwrap().unwrap();
/// assert_eq!(p.kind, ProxyKind::Socks5);
/// ```
pub fn proxy_from_env(
    secure: bool,
    target_host: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Option<Result<Proxy, ProxyError>> {
    let var = |lower: &str| {
        lookup(lower)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| lookup(&lower.to_ascii_uppercase()))
            .filter(|v| !v.trim().is_empty())
    };
    let (https, http, all, no) = (
        var("https_proxy"),
        var("http_proxy"),
        var("all_proxy"),
        var("no_proxy"),
    );
    Proxy::from_env_values(
        secure,
        target_host,
        https.as_deref(),
        http.as_deref(),
        all.as_deref(),
        no.as_deref(),
    )
}

/// The options of a client connection, independent of the runtime: what an
/// adapter's `ConnectBuilder` collects before it opens TCP.
///
/// ```
/// use wsmachine::internals::ConnectOptions;
/// use wsmachine::ProxyKind;
/// let opts = ConnectOptions::new("ws://example.com/chat?room=1")
///     .header("Authorization", "Bearer t")
///     .subprotocol("chat.v1")
///     .compression(false);
/// let p = opts.prepare().unwrap();
/// assert_eq!((p.url.host.as_str(), p.url.port, p.url.path.as_str()), ("example.com", 80, "/chat?room=1"));
/// assert!(p.config.deflate.is_none());
/// // The environment is read through a lookup function.
/// let env = |name: &str| (name == "http_proxy").then(|| "http://127.0.0.1:3128".to_string());
/// assert_eq!(opts.proxy_for(&p.url, env).unwrap().unwrap().kind, ProxyKind::Http);
/// ```
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    url: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    origin: Option<String>,
    compression: Compression,
    config: Config,
    handshake_timeout: Option<Duration>,
    proxy: ProxySetting,
}

/// A [`ConnectOptions`] checked and turned into what the connection needs.
#[derive(Clone, Debug)]
pub struct PreparedConnect {
    /// The parsed URL: where to connect, whether to use TLS.
    pub url: WsUrl,
    /// The opening request.
    pub request: ClientRequest,
    /// The connection's configuration, compression and handshake timeout
    /// applied.
    pub config: Config,
    /// Bound on the whole opening: TCP, proxy, TLS and WebSocket handshake.
    pub timeout: Duration,
}

impl ConnectOptions {
    /// Options for `url` (`ws://` or `wss://`) with [`Config::with_deflate`]
    /// and the proxy taken from the environment.
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            origin: None,
            compression: Compression::from(true),
            config: Config::default(),
            handshake_timeout: None,
            proxy: ProxySetting::FromEnv,
        }
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a request header (`Authorization`, `Cookie`, …).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol; call again for more, in order of preference.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Whether to offer permessage-deflate (default: offered, with
    /// [`DeflateConfig::default`]). Compression is chosen here only: the
    /// `deflate` field of a [`config`](Self::config) is ignored, so that
    /// passing `Config { .., ..Config::default() }` for its limits never
    /// turns compression off as a side effect.
    pub fn compression(mut self, compression: impl Into<Compression>) -> Self {
        self.compression = compression.into();
        self
    }

    /// Limits, keepalive and timeouts.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Bound on the whole opening (default: `Config::opening_handshake_timeout`).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// Connects through `proxy` (HTTP CONNECT or SOCKS5), ignoring the environment.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = ProxySetting::Via(proxy);
        self
    }

    /// Connects directly, ignoring the proxy environment variables.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// The proxy setting.
    pub fn proxy_setting(&self) -> &ProxySetting {
        &self.proxy
    }

    /// Parses the URL and builds the request and configuration.
    pub fn prepare(&self) -> Result<PreparedConnect, UrlError> {
        let url = WsUrl::parse(&self.url)?;
        let mut request = ClientRequest::from_url(&url);
        if let Some(o) = &self.origin {
            request = request.origin(o.clone());
        }
        for p in &self.subprotocols {
            request = request.subprotocol(p.clone());
        }
        for (n, v) in &self.headers {
            request = request.header(n.clone(), v.clone());
        }
        request.validate().map_err(UrlError::Request)?;
        let mut config = self.config.clone();
        config.deflate = self.compression.0.clone();
        let timeout = self
            .handshake_timeout
            .unwrap_or(config.opening_handshake_timeout);
        config.opening_handshake_timeout = timeout;
        Ok(PreparedConnect {
            url,
            request,
            config,
            timeout,
        })
    }

    /// The proxy to use for `url`: the explicit one, none, or the one the
    /// environment (read through `lookup`, see [`proxy_from_env`]) names.
    pub fn proxy_for(
        &self,
        url: &WsUrl,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, ProxyError> {
        match &self.proxy {
            ProxySetting::Direct => Ok(None),
            ProxySetting::Via(p) => Ok(Some(p.clone())),
            ProxySetting::FromEnv => proxy_from_env(url.secure, &url.host, lookup).transpose(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProxyKind;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn env_lower_case_wins_and_upper_case_is_read() {
        let e = env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
        ]);
        assert_eq!(
            proxy_from_env(true, "h", &e).unwrap().unwrap().host,
            "lower"
        );
        let e = env(&[("HTTPS_PROXY", "http://upper:1"), ("https_proxy", " ")]);
        assert_eq!(
            proxy_from_env(true, "h", &e).unwrap().unwrap().host,
            "upper"
        );
    }

    #[test]
    fn env_scheme_selection_and_no_proxy() {
        let e = env(&[
            ("HTTP_PROXY", "http://plain:1"),
            ("HTTPS_PROXY", "http://tls:2"),
            ("ALL_PROXY", "socks5://all:3"),
            ("NO_PROXY", "localhost,.internal"),
        ]);
        assert_eq!(
            proxy_from_env(false, "a.com", &e).unwrap().unwrap().host,
            "plain"
        );
        assert_eq!(
            proxy_from_env(true, "a.com", &e).unwrap().unwrap().host,
            "tls"
        );
        assert!(proxy_from_env(true, "x.internal", &e).is_none());
        assert!(proxy_from_env(false, "localhost", &e).is_none());
        let e = env(&[("all_proxy", "socks5://all:3")]);
        let p = proxy_from_env(false, "a.com", &e).unwrap().unwrap();
        assert_eq!((p.kind, p.port), (ProxyKind::Socks5, 3));
        assert!(proxy_from_env(false, "a.com", env(&[])).is_none());
    }

    #[test]
    fn options_select_proxy() {
        let url = WsUrl::parse("wss://a.com/").unwrap();
        let e = env(&[("HTTPS_PROXY", "http://p:1")]);
        let o = ConnectOptions::new("wss://a.com/");
        assert_eq!(o.proxy_for(&url, &e).unwrap().unwrap().host, "p");
        assert!(o.clone().no_proxy().proxy_for(&url, &e).unwrap().is_none());
        let explicit = Proxy::parse("socks5://q:2").unwrap();
        let got = o.proxy(explicit.clone()).proxy_for(&url, &e).unwrap();
        assert_eq!(got, Some(explicit));
        let bad = env(&[("https_proxy", "ftp://x")]);
        assert!(ConnectOptions::new("wss://a.com/")
            .proxy_for(&url, bad)
            .is_err());
    }

    #[test]
    fn prepare_applies_compression_and_timeout() {
        let p = ConnectOptions::new("wss://a.com:8443/x")
            .compression(false)
            .handshake_timeout(Duration::from_secs(3))
            .prepare()
            .unwrap();
        assert!(p.url.secure && p.url.port == 8443);
        assert!(p.config.deflate.is_none());
        assert_eq!(p.config.opening_handshake_timeout, Duration::from_secs(3));
        assert_eq!(p.timeout, Duration::from_secs(3));
        assert!(matches!(
            ConnectOptions::new("ftp://a").prepare(),
            Err(UrlError::Scheme(_))
        ));
    }

    #[test]
    fn a_config_without_deflate_keeps_compression_offered() {
        let limits = Config {
            max_message_size: 1 << 20,
            ..Config::default()
        };
        assert!(limits.deflate.is_none());
        let p = ConnectOptions::new("ws://a/")
            .config(limits)
            .prepare()
            .unwrap();
        assert_eq!(p.config.deflate, Some(DeflateConfig::default()));
        assert_eq!(p.config.max_message_size, 1 << 20);
        let off = ConnectOptions::new("ws://a/")
            .compression(false)
            .config(Config::with_deflate())
            .prepare()
            .unwrap();
        assert!(off.config.deflate.is_none());
    }
}
