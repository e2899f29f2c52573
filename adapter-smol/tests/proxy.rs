//! `connect` through an HTTP CONNECT proxy written here (blocking threads):
//! it checks `Proxy-Authorization`, connects to the target and pipes bytes
//! both ways; a wrong password gets 407.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use wsmachine_smol::{CloseCode, ConnectBuilder, Error, Message, Proxy};

/// `user:pw` in HTTP Basic form.
const BASIC_USER_PW: &str = "Basic dXNlcjpwdw==";

/// Copies `from` to `to` until end of stream, then shuts `to`'s write side.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// An HTTP CONNECT proxy for `conns` connections requiring `BASIC_USER_PW`.
fn http_proxy(conns: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..conns {
            let (mut c, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                c.read_exact(&mut b).unwrap();
                head.push(b[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let target = head
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("CONNECT "))
                .and_then(|l| l.strip_suffix(" HTTP/1.1"))
                .expect("a CONNECT request")
                .to_owned();
            let auth_ok = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(n, v)| {
                    n.eq_ignore_ascii_case("proxy-authorization") && v.trim() == BASIC_USER_PW
                })
            });
            if !auth_ok {
                let _ = c.write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                );
                continue;
            }
            let t = TcpStream::connect(target.as_str()).unwrap();
            c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            let (c2, t2) = (c.try_clone().unwrap(), t.try_clone().unwrap());
            std::thread::spawn(move || copy(c, t));
            std::thread::spawn(move || copy(t2, c2));
        }
    });
    addr
}

#[test]
fn echo_through_http_connect_proxy_and_407() {
    util::run(10, async {
        let proxy = http_proxy(2);
        let server = util::echo_server(util::plain()).await;
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{server}/"))
            .proxy(Proxy::parse(&format!("http://user:pw@{proxy}")).unwrap())
            .connect()
            .await
            .unwrap();
        ws.send("through the proxy").await.unwrap();
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::from("through the proxy")
        );
        ws.close(CloseCode::NORMAL, "").await.unwrap();

        let e = ConnectBuilder::new(format!("ws://{server}/"))
            .proxy(Proxy::parse(&format!("http://user:wrong@{proxy}")).unwrap())
            .connect()
            .await
            .expect_err("the proxy refuses");
        match e {
            Error::Proxy(wsmachine::ProxyError::Status(status)) => assert_eq!(status, 407),
            e => panic!("{e:?}"),
        }
    });
}
