//! Client side of HTTP CONNECT (RFC 9110 §9.3.6) and SOCKS5 (RFC 1928,
//! RFC 1929) proxy handshakes, sans-IO: the adapters write what this hands
//! out and feed back what the proxy answers, then start the WebSocket (or
//! TLS) handshake on the same stream.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

/// The kind of proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// An HTTP proxy, tunnelling with `CONNECT`.
    Http,
    /// A SOCKS5 proxy; the target host name is resolved by the proxy.
    Socks5,
}

/// A proxy to connect through.
///
/// ```
/// use wsmachine::{Proxy, ProxyKind};
/// let p = Proxy::parse("socks5://user:pw@127.0.0.1:1080").unwrap();
/// assert_eq!((p.kind, p.host.as_str(), p.port), (ProxyKind::Socks5, "127.0.0.1", 1080));
/// assert_eq!(p.auth, Some(("user".into(), "pw".into())));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// HTTP CONNECT or SOCKS5.
    pub kind: ProxyKind,
    /// The proxy's host.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// User name and password (HTTP Basic or SOCKS5 user/password).
    pub auth: Option<(String, String)>,
}

/// The proxy refused or broke its protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL is not usable.
    #[error("invalid proxy URL: {0}")]
    Url(String),
    /// The HTTP proxy answered CONNECT with a non-2xx status.
    #[error("proxy answered CONNECT with status {0}")]
    Status(u16),
    /// The SOCKS5 proxy refused (reply code, RFC 1928 §6).
    #[error("SOCKS5 proxy refused: reply code {0}")]
    SocksReply(u8),
    /// The SOCKS5 proxy accepts none of our authentication methods.
    #[error("SOCKS5 proxy accepts none of our authentication methods")]
    NoAcceptableAuth,
    /// SOCKS5 user/password authentication failed.
    #[error("SOCKS5 authentication failed")]
    AuthFailed,
    /// The proxy's answer is malformed or too large.
    #[error("malformed proxy response: {0}")]
    Malformed(String),
}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port]` (default port 8080; `https://`
    /// is not supported as a proxy scheme here) or
    /// `socks5://` / `socks5h://[user:pass@]host[:port]` (default 1080).
    /// A URL without scheme is taken as HTTP.
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        let lower = url.to_ascii_lowercase();
        let (kind, rest, default_port) = if lower.starts_with("http://") {
            (ProxyKind::Http, &url[7..], 8080)
        } else if lower.starts_with("socks5://") {
            (ProxyKind::Socks5, &url[9..], 1080)
        } else if lower.starts_with("socks5h://") {
            (ProxyKind::Socks5, &url[10..], 1080)
        } else if lower.contains("://") {
            return Err(ProxyError::Url(format!(
                "unsupported proxy scheme in {url:?}"
            )));
        } else {
            (ProxyKind::Http, url, 8080)
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((percent_decode(u), percent_decode(p))), hp)
            }
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| ProxyError::Url("unclosed IPv6 literal".into()))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| ProxyError::Url(format!("bad port {p:?}")))?,
                None => default_port,
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse()
                        .map_err(|_| ProxyError::Url(format!("bad port {p:?}")))?,
                ),
                None => (hostport.to_owned(), default_port),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err(ProxyError::Url(format!("no host in {url:?}")));
        }
        Ok(Proxy {
            kind,
            host,
            port,
            auth,
        })
    }

    /// Picks the proxy for `target_host` from the conventional environment
    /// variables, whose values the caller reads (the core reads no
    /// environment): `https_proxy` for `wss://`, `http_proxy` for `ws://`,
    /// then `all_proxy`; none when `no_proxy` matches the host (`*`, exact
    /// names, or domain suffixes such as `.example.com` / `example.com`).
    pub fn from_env_values(
        secure: bool,
        target_host: &str,
        https_proxy: Option<&str>,
        http_proxy: Option<&str>,
        all_proxy: Option<&str>,
        no_proxy: Option<&str>,
    ) -> Option<Result<Proxy, ProxyError>> {
        let host = target_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        // Loopback is never sent through a proxy found in the environment
        // (as Go's ProxyFromEnvironment does): a proxy elsewhere cannot reach
        // this machine's loopback anyway. An explicit proxy still applies.
        let loopback = host == "localhost"
            || host.ends_with(".localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            return None;
        }
        if let Some(list) = no_proxy {
            for entry in list.split(',').map(|e| e.trim().to_ascii_lowercase()) {
                if entry.is_empty() {
                    continue;
                }
                let domain = entry.trim_start_matches("*.").trim_start_matches('.');
                if entry == "*" || host == domain || host.ends_with(&format!(".{domain}")) {
                    return None;
                }
            }
        }
        let chosen = if secure { https_proxy } else { http_proxy };
        chosen
            .or(all_proxy)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Proxy::parse(v.trim()))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the proxy handshake needs next.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum ProxyStep {
    /// Read more bytes from the proxy.
    NeedMore,
    /// Write these bytes to the proxy, then read more.
    Send(Bytes),
    /// The tunnel is open; these bytes already came from the target.
    Done(Bytes),
}

#[derive(Debug)]
enum Stage {
    HttpResponse,
    SocksMethod,
    SocksAuth,
    SocksReply,
    Done,
}

/// Largest proxy response head accepted.
const MAX_PROXY_RESPONSE: usize = 16 << 10;

/// A proxy handshake in progress.
///
/// ```
/// use wsmachine::{Proxy, ProxyHandshake, ProxyStep};
/// let proxy = Proxy::parse("http://127.0.0.1:3128").unwrap();
/// let (mut hs, request) = ProxyHandshake::new(&proxy, "example.com", 443);
/// assert!(request.starts_with(b"CONNECT example.com:443 HTTP/1.1\r\n"));
/// assert_eq!(hs.receive(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap(), ProxyStep::Done(Default::default()));
/// ```
#[derive(Debug)]
pub struct ProxyHandshake {
    stage: Stage,
    buf: BytesMut,
    target_host: String,
    target_port: u16,
    auth: Option<(String, String)>,
}

impl ProxyHandshake {
    /// Starts a handshake to reach `target_host:target_port`; returns it and
    /// the first bytes to write to the proxy.
    pub fn new(proxy: &Proxy, target_host: &str, target_port: u16) -> (Self, Bytes) {
        let host = target_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut hs = ProxyHandshake {
            stage: Stage::Done,
            buf: BytesMut::new(),
            target_host: host,
            target_port,
            auth: proxy.auth.clone(),
        };
        let first = match proxy.kind {
            ProxyKind::Http => {
                hs.stage = Stage::HttpResponse;
                let authority = if hs.target_host.contains(':') {
                    format!("[{}]:{}", hs.target_host, target_port)
                } else {
                    format!("{}:{}", hs.target_host, target_port)
                };
                let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
                if let Some((u, p)) = &proxy.auth {
                    let token =
                        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                    req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
                }
                req.push_str("\r\n");
                Bytes::from(req)
            }
            ProxyKind::Socks5 => {
                hs.stage = Stage::SocksMethod;
                if proxy.auth.is_some() {
                    Bytes::from_static(&[5, 2, 0x00, 0x02])
                } else {
                    Bytes::from_static(&[5, 1, 0x00])
                }
            }
        };
        (hs, first)
    }

    /// Feeds bytes read from the proxy.
    pub fn receive(&mut self, data: &[u8]) -> Result<ProxyStep, ProxyError> {
        self.buf.extend_from_slice(data);
        let step = match self.stage {
            Stage::HttpResponse => self.http_response()?,
            Stage::SocksMethod => self.socks_method()?,
            Stage::SocksAuth => self.socks_auth()?,
            Stage::SocksReply => self.socks_reply()?,
            Stage::Done => None,
        };
        if let Some(send) = step {
            return Ok(send);
        }
        if matches!(self.stage, Stage::Done) {
            return Ok(ProxyStep::Done(self.buf.split().freeze()));
        }
        if self.buf.len() > MAX_PROXY_RESPONSE {
            return Err(ProxyError::Malformed("response too large".into()));
        }
        Ok(ProxyStep::NeedMore)
    }

    fn http_response(&mut self) -> Result<Option<ProxyStep>, ProxyError> {
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = self.buf.split_to(end + 4);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(ProxyError::Malformed("bad HTTP response to CONNECT".into())),
        }
        let code = resp.code.unwrap_or(0);
        if !(200..300).contains(&code) {
            return Err(ProxyError::Status(code));
        }
        self.stage = Stage::Done;
        Ok(None)
    }

    fn socks_method(&mut self) -> Result<Option<ProxyStep>, ProxyError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let reply = self.buf.split_to(2);
        if reply[0] != 5 {
            return Err(ProxyError::Malformed(format!("SOCKS version {}", reply[0])));
        }
        match (reply[1], &self.auth) {
            (0x00, _) => {
                self.stage = Stage::SocksReply;
                Ok(Some(ProxyStep::Send(self.socks_connect())))
            }
            (0x02, Some((u, p))) => {
                if u.len() > 255 || p.len() > 255 {
                    return Err(ProxyError::Url(
                        "SOCKS5 user or password over 255 bytes".into(),
                    ));
                }
                let mut out = BytesMut::with_capacity(3 + u.len() + p.len());
                out.put_u8(1);
                out.put_u8(u.len() as u8);
                out.put_slice(u.as_bytes());
                out.put_u8(p.len() as u8);
                out.put_slice(p.as_bytes());
                self.stage = Stage::SocksAuth;
                Ok(Some(ProxyStep::Send(out.freeze())))
            }
            _ => Err(ProxyError::NoAcceptableAuth),
        }
    }

    fn socks_auth(&mut self) -> Result<Option<ProxyStep>, ProxyError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let reply = self.buf.split_to(2);
        if reply[0] != 1 {
            return Err(ProxyError::Malformed(format!(
                "SOCKS5 auth version {}",
                reply[0]
            )));
        }
        if reply[1] != 0 {
            return Err(ProxyError::AuthFailed);
        }
        self.stage = Stage::SocksReply;
        Ok(Some(ProxyStep::Send(self.socks_connect())))
    }

    fn socks_connect(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8 + self.target_host.len());
        out.put_slice(&[5, 1, 0]);
        if let Ok(v4) = self.target_host.parse::<std::net::Ipv4Addr>() {
            out.put_u8(1);
            out.put_slice(&v4.octets());
        } else if let Ok(v6) = self.target_host.parse::<std::net::Ipv6Addr>() {
            out.put_u8(4);
            out.put_slice(&v6.octets());
        } else {
            // Host names are resolved by the proxy (socks5h semantics); a
            // name over 255 bytes cannot be expressed and is truncated by
            // no one: DNS names are at most 253 bytes.
            let name = &self.target_host.as_bytes()[..self.target_host.len().min(255)];
            out.put_u8(3);
            out.put_u8(name.len() as u8);
            out.put_slice(name);
        }
        out.put_u16(self.target_port);
        out.freeze()
    }

    fn socks_reply(&mut self) -> Result<Option<ProxyStep>, ProxyError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 5 {
            return Err(ProxyError::Malformed(format!(
                "SOCKS version {}",
                self.buf[0]
            )));
        }
        if self.buf[1] != 0 {
            return Err(ProxyError::SocksReply(self.buf[1]));
        }
        let addr_len = match self.buf[3] {
            1 => 4,
            4 => 16,
            3 => 1 + self.buf[4] as usize,
            t => return Err(ProxyError::Malformed(format!("SOCKS address type {t}"))),
        };
        let total = 4 + addr_len + 2;
        if self.buf.len() < total {
            return Ok(None);
        }
        let _ = self.buf.split_to(total);
        self.stage = Stage::Done;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_urls() {
        let p = Proxy::parse("http://u%40x:p%3Aw@proxy.local:3128/").unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.local", 3128));
        assert_eq!(p.auth, Some(("u@x".into(), "p:w".into())));
        assert_eq!(Proxy::parse("proxy:8000").unwrap().port, 8000);
        assert_eq!(Proxy::parse("socks5h://[::1]").unwrap().port, 1080);
        assert!(Proxy::parse("ftp://x").is_err());
        assert!(Proxy::parse("http://:80").is_err());
        assert!(Proxy::parse("http://h:notaport").is_err());
    }

    #[test]
    fn environment_selection_and_no_proxy() {
        let pick = |secure, host, no| {
            Proxy::from_env_values(
                secure,
                host,
                Some("http://s:1"),
                Some("http://p:2"),
                Some("socks5://a:3"),
                no,
            )
            .map(|r| r.unwrap().port)
        };
        assert_eq!(pick(true, "example.com", None), Some(1));
        assert_eq!(pick(false, "example.com", None), Some(2));
        assert_eq!(
            pick(false, "example.com", Some("other.org, .example.com")),
            None
        );
        assert_eq!(pick(false, "api.example.com", Some("example.com")), None);
        assert_eq!(pick(false, "notexample.com", Some("example.com")), Some(2));
        assert_eq!(pick(false, "x", Some("*")), None);
        let all = Proxy::from_env_values(false, "h", None, None, Some("socks5://a:3"), None)
            .unwrap()
            .unwrap();
        assert_eq!(all.kind, ProxyKind::Socks5);
        assert!(Proxy::from_env_values(false, "h", None, None, None, None).is_none());
        for local in ["localhost", "127.0.0.1", "127.9.8.7", "[::1]", "::1"] {
            assert_eq!(
                pick(false, local, None),
                None,
                "{local} is never proxied from the environment"
            );
        }
    }

    #[test]
    fn http_connect_with_auth_in_pieces() {
        let proxy = Proxy::parse("http://user:pass@p:1").unwrap();
        let (mut hs, req) = ProxyHandshake::new(&proxy, "::1", 9001);
        assert_eq!(
            &req[..],
            b"CONNECT [::1]:9001 HTTP/1.1\r\nHost: [::1]:9001\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n"
        );
        let resp = b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nEARLY";
        for (i, b) in resp.iter().enumerate() {
            let step = hs.receive(&[*b]).unwrap();
            if i + 1 < resp.len() - 5 {
                assert_eq!(step, ProxyStep::NeedMore, "byte {i}");
            }
        }
        let (mut hs, _) = ProxyHandshake::new(&proxy, "h", 1);
        assert_eq!(
            hs.receive(resp).unwrap(),
            ProxyStep::Done(Bytes::from_static(b"EARLY"))
        );
        let (mut hs, _) = ProxyHandshake::new(&proxy, "h", 1);
        assert_eq!(
            hs.receive(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Err(ProxyError::Status(407))
        );
        let (mut hs, _) = ProxyHandshake::new(&proxy, "h", 1);
        assert!(hs.receive(&vec![b'a'; MAX_PROXY_RESPONSE + 1]).is_err());
    }

    #[test]
    fn socks5_with_and_without_auth() {
        let proxy = Proxy::parse("socks5://127.0.0.1:1080").unwrap();
        let (mut hs, greet) = ProxyHandshake::new(&proxy, "example.com", 443);
        assert_eq!(&greet[..], &[5, 1, 0]);
        let mut expect = vec![5, 1, 0, 3, 11];
        expect.extend_from_slice(b"example.com");
        expect.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(
            hs.receive(&[5, 0]).unwrap(),
            ProxyStep::Send(Bytes::from(expect))
        );
        assert_eq!(
            hs.receive(&[5, 0, 0, 1, 127, 0]).unwrap(),
            ProxyStep::NeedMore
        );
        assert_eq!(
            hs.receive(&[0, 1, 0x1f, 0x90]).unwrap(),
            ProxyStep::Done(Bytes::new())
        );

        let proxy = Proxy::parse("socks5://me:secret@127.0.0.1").unwrap();
        let (mut hs, greet) = ProxyHandshake::new(&proxy, "10.0.0.1", 80);
        assert_eq!(&greet[..], &[5, 2, 0, 2]);
        assert_eq!(
            hs.receive(&[5, 2]).unwrap(),
            ProxyStep::Send(Bytes::from_static(b"\x01\x02me\x06secret"))
        );
        assert_eq!(
            hs.receive(&[1, 0]).unwrap(),
            ProxyStep::Send(Bytes::from_static(&[5, 1, 0, 1, 10, 0, 0, 1, 0, 80]))
        );
        assert_eq!(
            hs.receive(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]),
            Err(ProxyError::SocksReply(5))
        );

        let (mut hs, _) = ProxyHandshake::new(&proxy, "h", 1);
        let _ = hs.receive(&[5, 2]).unwrap();
        assert_eq!(hs.receive(&[1, 1]), Err(ProxyError::AuthFailed));
        let (mut hs, _) = ProxyHandshake::new(&Proxy::parse("socks5://h").unwrap(), "h", 1);
        assert_eq!(hs.receive(&[5, 0xff]), Err(ProxyError::NoAcceptableAuth));
    }
}
