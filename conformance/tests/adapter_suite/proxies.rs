//! An HTTP CONNECT proxy and a SOCKS5 proxy, written here on plain threads
//! (the same for every runtime): they check the request (and credentials),
//! connect to the target and pipe bytes both ways.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::peer;

/// `user:pw` in HTTP Basic form.
pub(crate) const BASIC_USER_PW: &str = "Basic dXNlcjpwdw==";

/// Pipes bytes between the client and the target until either side ends.
fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    let (mut a, mut b) = (a, b);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a2);
    let _ = a2.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

fn read_head(c: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).expect("the request head");
        head.push(b[0]);
    }
    String::from_utf8(head).expect("ASCII")
}

/// Serves `conns` connections, each on its own thread, with `serve`.
fn serve(
    conns: usize,
    serve: fn(TcpStream, Option<(&'static str, &'static str)>),
    auth: Option<(&'static str, &'static str)>,
) -> SocketAddr {
    let (l, addr) = peer::listen();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let c = peer::accept_tcp(&l);
            std::thread::spawn(move || serve(c, auth));
        }
    });
    addr
}

/// An HTTP CONNECT proxy for `conns` connections; with `auth`, requires
/// `Proxy-Authorization: <auth.1>` and answers 407 otherwise.
pub(crate) fn http_proxy(auth: Option<&'static str>, conns: usize) -> SocketAddr {
    serve(conns, http_connect, auth.map(|a| ("", a)))
}

fn http_connect(mut c: TcpStream, auth: Option<(&'static str, &'static str)>) {
    let head = read_head(&mut c);
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
    if let Some((_, want)) = auth {
        if given.as_deref() != Some(want) {
            let _ = c.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    }
    let t = TcpStream::connect(target.as_str()).expect("the target");
    c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .expect("write");
    pipe(c, t);
}

/// A SOCKS5 proxy (RFC 1928) for `conns` connections; with `auth`, requires
/// user/password authentication (RFC 1929) with these credentials.
pub(crate) fn socks5_proxy(auth: Option<(&'static str, &'static str)>, conns: usize) -> SocketAddr {
    serve(conns, socks5, auth)
}

fn read_n(c: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    c.read_exact(&mut v).expect("read");
    v
}

fn socks5(mut c: TcpStream, auth: Option<(&'static str, &'static str)>) {
    let hello = read_n(&mut c, 2);
    assert_eq!(hello[0], 5);
    let methods = read_n(&mut c, hello[1] as usize);
    if let Some((user, pass)) = auth {
        assert!(methods.contains(&2), "user/password offered");
        c.write_all(&[5, 2]).expect("write");
        let v = read_n(&mut c, 2);
        let u = read_n(&mut c, v[1] as usize);
        let plen = read_n(&mut c, 1)[0];
        let p = read_n(&mut c, plen as usize);
        if u != user.as_bytes() || p != pass.as_bytes() {
            let _ = c.write_all(&[1, 1]);
            return;
        }
        c.write_all(&[1, 0]).expect("write");
    } else {
        assert!(methods.contains(&0), "no-auth offered");
        c.write_all(&[5, 0]).expect("write");
    }
    let req = read_n(&mut c, 4);
    assert_eq!(req[..3], [5, 1, 0], "CONNECT command");
    let host = match req[3] {
        1 => {
            let a = read_n(&mut c, 4);
            std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
        }
        3 => {
            let n = read_n(&mut c, 1)[0];
            String::from_utf8(read_n(&mut c, n as usize)).expect("a host name")
        }
        t => panic!("address type {t}"),
    };
    let port = read_n(&mut c, 2);
    let port = u16::from_be_bytes([port[0], port[1]]);
    let t = TcpStream::connect((host.as_str(), port)).expect("the target");
    c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
        .expect("write");
    pipe(c, t);
}

/// Connects to an echo server through `$proxy` and checks one round trip.
macro_rules! echo_through {
    ($proxy:expr) => {{
        let server = echo_server(config()).await;
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{server}/"))
            .proxy($proxy)
            .config(config())
            .connect()
            .await
            .expect("connect through the proxy");
        ws.send("through the proxy").await.expect("send");
        let m = ws.recv().await;
        assert!(matches!(&m, Some(Ok(Message::Text(t))) if t.as_str() == "through the proxy"), "{m:?}");
        ws.close(CloseCode::NORMAL, "").await.expect("close");
    }};
}

/// The error of a connection through `$proxy` that refuses it.
macro_rules! connect_err {
    ($proxy:expr) => {
        ConnectBuilder::new("ws://127.0.0.1:9/")
            .proxy($proxy)
            .connect()
            .await
            .map(|_| ())
            .expect_err("the proxy refuses")
    };
}

macro_rules! proxy_tests {
    () => {
        use super::*;
        use crate::proxies::{http_proxy, socks5_proxy, BASIC_USER_PW};
        use ws::Proxy;

        #[test]
        fn through_an_http_connect_proxy() {
            rt::block_on(rt::within_a_minute(async {
                let p = http_proxy(None, 1);
                echo_through!(Proxy::parse(&format!("http://{p}")).expect("url"));
            }));
        }

        #[test]
        fn through_an_http_connect_proxy_with_credentials() {
            rt::block_on(rt::within_a_minute(async {
                let p = http_proxy(Some(BASIC_USER_PW), 1);
                echo_through!(Proxy::parse(&format!("http://user:pw@{p}")).expect("url"));
            }));
        }

        #[test]
        fn an_http_proxys_407_is_a_proxy_error_with_the_status() {
            rt::block_on(rt::within_a_minute(async {
                let p = http_proxy(Some(BASIC_USER_PW), 2);
                for url in [format!("http://{p}"), format!("http://user:wrong@{p}")] {
                    match connect_err!(Proxy::parse(&url).expect("url")) {
                        Error::Proxy(wsmachine::ProxyError::Status(status)) => {
                            assert_eq!(status, 407)
                        }
                        e => panic!("{e:?}"),
                    }
                }
            }));
        }

        #[test]
        fn through_a_socks5_proxy_without_auth() {
            rt::block_on(rt::within_a_minute(async {
                let p = socks5_proxy(None, 1);
                echo_through!(Proxy::parse(&format!("socks5://{p}")).expect("url"));
            }));
        }

        #[test]
        fn through_a_socks5_proxy_with_user_and_password() {
            rt::block_on(rt::within_a_minute(async {
                let p = socks5_proxy(Some(("user", "pw")), 1);
                echo_through!(Proxy::parse(&format!("socks5://user:pw@{p}")).expect("url"));
            }));
        }

        #[test]
        fn a_wrong_socks5_password_is_a_proxy_error() {
            rt::block_on(rt::within_a_minute(async {
                let p = socks5_proxy(Some(("user", "pw")), 1);
                let e =
                    connect_err!(Proxy::parse(&format!("socks5://user:nope@{p}")).expect("url"));
                assert!(matches!(e, Error::Proxy(_)), "{e:?}");
            }));
        }

        #[test]
        fn through_the_proxy_the_environment_values_name() {
            rt::block_on(rt::within_a_minute(async {
                // The environment is read through a lookup function: no
                // process-wide variables are touched by this test.
                let p = socks5_proxy(None, 1);
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
                    .expect("a proxy")
                    .expect("a valid proxy");
                echo_through!(chosen);
            }));
        }
    };
}
