//! `connect` through an HTTP CONNECT proxy and a SOCKS5 proxy, both written
//! here: they check the request (and credentials), connect to the target
//! and pipe bytes both ways.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsmachine_tokio::{Config, ConnectBuilder, Error, Message, Proxy};

const LIMIT: Duration = Duration::from_secs(10);

/// `user:pw` in HTTP Basic form.
const BASIC_USER_PW: &str = "Basic dXNlcjpwdw==";

/// Pipes bytes between the client and the target until either side ends.
async fn pipe(mut a: TcpStream, mut b: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

/// An HTTP CONNECT proxy for `conns` connections; with `auth`, requires
/// `Proxy-Authorization: <auth>` and answers 407 otherwise.
async fn http_proxy(auth: Option<&'static str>, conns: usize) -> SocketAddr {
    let (l, addr) = common::listener().await;
    tokio::spawn(async move {
        for _ in 0..conns {
            let (mut c, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let head = common::read_head(&mut c).await;
                let mut lines = head.lines();
                let target = lines
                    .next()
                    .and_then(|l| l.strip_prefix("CONNECT "))
                    .and_then(|l| l.strip_suffix(" HTTP/1.1"))
                    .expect("a CONNECT request")
                    .to_owned();
                let given = lines.find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("proxy-authorization")
                        .then(|| v.trim().to_owned())
                });
                if let Some(want) = auth {
                    if given.as_deref() != Some(want) {
                        let _ = c
                            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        return;
                    }
                }
                let t = TcpStream::connect(target.as_str()).await.unwrap();
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                pipe(c, t).await;
            });
        }
    });
    addr
}

/// A SOCKS5 proxy (RFC 1928) for `conns` connections; with `auth`, requires
/// user/password authentication (RFC 1929) with these credentials.
async fn socks5_proxy(auth: Option<(&'static str, &'static str)>, conns: usize) -> SocketAddr {
    let (l, addr) = common::listener().await;
    tokio::spawn(async move {
        for _ in 0..conns {
            let (mut c, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut hello = [0u8; 2];
                c.read_exact(&mut hello).await.unwrap();
                assert_eq!(hello[0], 5);
                let mut methods = vec![0u8; hello[1] as usize];
                c.read_exact(&mut methods).await.unwrap();
                if let Some((user, pass)) = auth {
                    assert!(methods.contains(&2), "user/password offered");
                    c.write_all(&[5, 2]).await.unwrap();
                    let mut v = [0u8; 2];
                    c.read_exact(&mut v).await.unwrap();
                    let mut u = vec![0u8; v[1] as usize];
                    c.read_exact(&mut u).await.unwrap();
                    let plen = c.read_u8().await.unwrap();
                    let mut p = vec![0u8; plen as usize];
                    c.read_exact(&mut p).await.unwrap();
                    if u != user.as_bytes() || p != pass.as_bytes() {
                        let _ = c.write_all(&[1, 1]).await;
                        return;
                    }
                    c.write_all(&[1, 0]).await.unwrap();
                } else {
                    assert!(methods.contains(&0), "no-auth offered");
                    c.write_all(&[5, 0]).await.unwrap();
                }
                let mut req = [0u8; 4];
                c.read_exact(&mut req).await.unwrap();
                assert_eq!(req[..3], [5, 1, 0], "CONNECT command");
                let host = match req[3] {
                    1 => {
                        let mut a = [0u8; 4];
                        c.read_exact(&mut a).await.unwrap();
                        std::net::Ipv4Addr::from(a).to_string()
                    }
                    3 => {
                        let n = c.read_u8().await.unwrap();
                        let mut name = vec![0u8; n as usize];
                        c.read_exact(&mut name).await.unwrap();
                        String::from_utf8(name).unwrap()
                    }
                    t => panic!("address type {t}"),
                };
                let port = c.read_u16().await.unwrap();
                let t = TcpStream::connect((host.as_str(), port)).await.unwrap();
                c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
                    .await
                    .unwrap();
                pipe(c, t).await;
            });
        }
    });
    addr
}

/// Connects to an echo server through `proxy` and checks one round trip.
async fn echo_through(proxy: Proxy) {
    let server = common::echo_server(Config::default(), 1).await;
    let (mut ws, _) = tokio::time::timeout(
        LIMIT,
        ConnectBuilder::new(format!("ws://{server}/"))
            .proxy(proxy)
            .connect(),
    )
    .await
    .unwrap()
    .unwrap();
    ws.send("through the proxy").await.unwrap();
    let m = tokio::time::timeout(LIMIT, ws.recv()).await.unwrap();
    assert_eq!(m.unwrap().unwrap(), Message::from("through the proxy"));
    ws.close(wsmachine_tokio::CloseCode::NORMAL, "")
        .await
        .unwrap();
}

async fn connect_err(proxy: Proxy) -> Error {
    tokio::time::timeout(
        LIMIT,
        ConnectBuilder::new("ws://127.0.0.1:9/")
            .proxy(proxy)
            .connect(),
    )
    .await
    .unwrap()
    .expect_err("the proxy refuses")
}

#[tokio::test]
async fn http_connect_proxy() {
    let p = http_proxy(None, 1).await;
    echo_through(Proxy::parse(&format!("http://{p}")).unwrap()).await;
}

#[tokio::test]
async fn http_connect_proxy_with_credentials() {
    let p = http_proxy(Some(BASIC_USER_PW), 1).await;
    echo_through(Proxy::parse(&format!("http://user:pw@{p}")).unwrap()).await;
}

#[tokio::test]
async fn http_proxy_407_is_a_proxy_error_with_the_status() {
    let p = http_proxy(Some(BASIC_USER_PW), 2).await;
    for url in [format!("http://{p}"), format!("http://user:wrong@{p}")] {
        match connect_err(Proxy::parse(&url).unwrap()).await {
            Error::Proxy(wsmachine::ProxyError::Status(status)) => assert_eq!(status, 407),
            e => panic!("{e:?}"),
        }
    }
}

#[tokio::test]
async fn socks5_proxy_without_auth() {
    let p = socks5_proxy(None, 1).await;
    echo_through(Proxy::parse(&format!("socks5://{p}")).unwrap()).await;
}

#[tokio::test]
async fn socks5_proxy_with_user_and_password() {
    let p = socks5_proxy(Some(("user", "pw")), 1).await;
    echo_through(Proxy::parse(&format!("socks5://user:pw@{p}")).unwrap()).await;
}

#[tokio::test]
async fn socks5_wrong_password_is_a_proxy_error() {
    let p = socks5_proxy(Some(("user", "pw")), 1).await;
    let e = connect_err(Proxy::parse(&format!("socks5://user:nope@{p}")).unwrap()).await;
    assert!(matches!(e, Error::Proxy(_)), "{e:?}");
}

#[tokio::test]
async fn proxy_from_environment_values() {
    // The environment is read through a lookup function: no process-wide
    // variables are touched by this test.
    let p = socks5_proxy(None, 1).await;
    let all = format!("socks5://{p}");
    let env = |name: &str| match name {
        "ALL_PROXY" => Some(all.clone()),
        "no_proxy" => Some("example.com".to_owned()),
        _ => None,
    };
    assert!(wsmachine::proxy_from_env(false, "www.example.com", env).is_none());
    // Loopback never goes through a proxy named by the environment.
    assert!(wsmachine::proxy_from_env(false, "127.0.0.1", env).is_none());
    let chosen = wsmachine::proxy_from_env(false, "ws.test", env)
        .unwrap()
        .unwrap();
    echo_through(chosen).await;
}
