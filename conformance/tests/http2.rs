//! WebSockets over HTTP/2 (RFC 8441), our client against our server on
//! loopback (the tokio adapter's `http2` feature): a hundred WebSockets on
//! one connection with text, binary and compressed messages interleaved;
//! one stream reset without disturbing the others; a reader that stops
//! reading on one stream without stalling the others; HTTP/1.1 upgrades
//! and extended CONNECT answered on one port; the core's refusals on the
//! wire; a server that does not allow extended CONNECT; and, over
//! HTTP/1.1 through hyper, a frame still leaving in one write.
//!
//! Nothing here waits on a clock: every step waits for the event it needs
//! (an echo, the server's report of how a WebSocket ended), and `HANG`
//! only turns a hang into a failure.

// Its certificate only; its tests are adapter_suite's.
#[allow(unused_macros)]
#[path = "adapter_suite/tls.rs"]
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsmachine_tokio::h2::{client_builder, server_builder, H2Connection};
use wsmachine_tokio::hyper::{Upgraded, WebSocketUpgrade};
use wsmachine_tokio::rustls::{ClientConfig, ServerConfig};
use wsmachine_tokio::tokio_rustls::TlsAcceptor;
use wsmachine_tokio::{
    CloseCode, Config, ConnectBuilder, ConnectionError, Error, HandshakeError, Message, Role,
    WebSocket,
};

/// Only catches a hang; every test here takes well under a second.
const HANG: Duration = Duration::from_secs(60);

/// The client's HTTP/2 stream window in the flow-control test, and what
/// the flooding route sends before it says it is flooding.
const STREAM_WINDOW: u32 = 64 * 1024;

/// How a server-side WebSocket ended, as its handler reports it.
#[derive(Debug)]
struct Seen {
    /// Path and query of the request.
    target: String,
    http2: bool,
    /// `clean` after a closing handshake; otherwise what ended it (or
    /// `flooding`, the flood route's report that it has started).
    end: String,
}

type Body = Full<Bytes>;

async fn route(
    mut req: hyper::Request<Incoming>,
    seen: mpsc::UnboundedSender<Seen>,
) -> Result<hyper::Response<Body>, Infallible> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let ws = match WebSocketUpgrade::from_request(&mut req) {
        Ok(ws) => ws,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    let http2 = ws.is_http2();
    let path = req.uri().path().to_owned();
    let ws = match path.as_str() {
        "/only" => ws.protocols(["only"]),
        // Sends wait once 16 KiB are unsent, so what the flood has sent is
        // close to what HTTP/2 has taken.
        "/flood" => ws.config(Config {
            write_buffer_high_water: 16 * 1024,
            ..Config::default()
        }),
        _ => ws,
    };
    Ok(ws.on_upgrade(move |mut ws| async move {
        let end = if path == "/flood" {
            flood(&mut ws, &seen, &target).await
        } else {
            echo(&mut ws).await
        };
        let _ = seen.send(Seen { target, http2, end });
    }))
}

async fn echo(ws: &mut WebSocket<Upgraded>) -> String {
    loop {
        match ws.recv().await {
            Some(Ok(msg)) => {
                if let Err(e) = ws.send(msg).await {
                    return format!("send: {e}");
                }
            }
            Some(Err(e)) => return format!("recv: {e}"),
            None if ws.close_frame().is_some() => return "clean".into(),
            None => return "ended without a Close".into(),
        }
    }
}

/// Numbered 16 KiB binary messages until the connection ends; reports
/// `flooding` once a stream window's worth has been sent.
async fn flood(
    ws: &mut WebSocket<Upgraded>,
    seen: &mpsc::UnboundedSender<Seen>,
    target: &str,
) -> String {
    let mut sent = 0usize;
    for n in 0u64.. {
        if let Err(e) = ws.send(flood_message(n)).await {
            return format!("send: {e}");
        }
        sent += 16 * 1024;
        if sent == STREAM_WINDOW as usize {
            let _ = seen.send(Seen {
                target: target.to_owned(),
                http2: true,
                end: "flooding".into(),
            });
        }
    }
    unreachable!()
}

fn flood_message(n: u64) -> Vec<u8> {
    let mut m = vec![(n % 251) as u8; 16 * 1024];
    m[..8].copy_from_slice(&n.to_be_bytes());
    m
}

struct Server {
    addr: SocketAddr,
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    /// How many TCP connections the server has accepted.
    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The next two reports are of `/echo?h1` over HTTP/1.1 and
    /// `/echo?h2` over HTTP/2, both closed cleanly.
    async fn saw_h1_and_h2(&mut self) {
        let mut seen = [self.next().await, self.next().await];
        seen.sort_by(|a, b| a.target.cmp(&b.target));
        let got = seen
            .each_ref()
            .map(|s| (s.target.as_str(), s.http2, s.end.as_str()));
        assert_eq!(
            got,
            [("/echo?h1", false, "clean"), ("/echo?h2", true, "clean")]
        );
    }

    /// The next report of a server-side WebSocket.
    async fn next(&mut self) -> Seen {
        self.seen.recv().await.expect("the server runs")
    }
}

/// Serves `route` on a free loopback port: with `serve_connection` when
/// `builder` is `None`, else with that builder (HTTP/1.1 and HTTP/2).
async fn start(builder: Option<auto::Builder<TokioExecutor>>) -> Server {
    start_with(builder, None).await
}

/// [`start`], over TLS when `tls` is given.
async fn start_with(
    builder: Option<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (tx, seen) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let builder = builder.map(Arc::new);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            let (builder, tls) = (builder.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(tcp).await {
                            serve(stream, builder, tx).await;
                        }
                    }
                    None => serve(tcp, builder, tx).await,
                }
            });
        }
    });
    Server {
        addr,
        accepted,
        seen,
    }
}

async fn serve<S>(
    io: S,
    builder: Option<Arc<auto::Builder<TokioExecutor>>>,
    tx: mpsc::UnboundedSender<Seen>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| route(req, tx.clone()));
    let _ = match builder {
        Some(b) => {
            b.serve_connection_with_upgrades(TokioIo::new(io), service)
                .await
        }
        None => wsmachine_tokio::serve_connection(io, service).await,
    };
}

/// Runs a test's body; only a hang makes it fail here.
async fn guard(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(HANG, body).await.expect("hang");
}

/// A server as `start(None)` makes it, and an HTTP/2 connection to it.
async fn start_with_client() -> (Server, H2Connection) {
    let server = start(None).await;
    let h2 = h2_client(server.addr).await;
    (server, h2)
}

/// A WebSocket on `h2` to `/echo?{i}`.
async fn open_echo(h2: &H2Connection, addr: SocketAddr, i: usize) -> WebSocket<Upgraded> {
    let url = format!("ws://{addr}/echo?{i}");
    h2.websocket(&url).await.expect("WebSocket over HTTP/2").0
}

/// Sends `text` and checks that it comes back.
async fn echoed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
    text: &'static str,
) {
    ws.send(text).await.expect("send");
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::from(text));
}

async fn h2_client(addr: SocketAddr) -> H2Connection {
    H2Connection::connect(&format!("http://{addr}"))
        .await
        .expect("HTTP/2 connection")
}

/// Message `round` of WebSocket `i`: text on even rounds, binary on odd
/// ones, both compressible.
fn message(i: usize, round: usize) -> Message {
    if round % 2 == 0 {
        Message::from(format!("{i}/{round} ") + &"text ".repeat(200))
    } else {
        let mut b = vec![(i % 256) as u8; 4096];
        b[0] = round as u8;
        Message::from(b)
    }
}

// On two worker threads: the client's wait for the server's SETTINGS is
// told across tasks that may run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_websockets_on_one_connection() {
    guard(async {
        let (mut server, h2) = start_with_client().await;
        let mut sockets = Vec::new();
        for i in 0..100 {
            // Every other one compressed.
            let request = ConnectBuilder::new(format!("ws://{}/echo?{i}", server.addr))
                .compression(i % 2 == 0);
            let (ws, response) = h2.open(request).await.expect("WebSocket over HTTP/2");
            assert_eq!(response.status(), 200);
            assert_eq!(ws.negotiated().deflate.is_some(), i % 2 == 0, "{i}");
            sockets.push(ws);
        }
        // Each round puts a message on every stream before reading any
        // echo, so all hundred are in flight at once.
        for round in 0..4 {
            for (i, ws) in sockets.iter_mut().enumerate() {
                ws.send(message(i, round)).await.expect("send");
            }
            for (i, ws) in sockets.iter_mut().enumerate() {
                let echoed = ws.recv().await.expect("an echo").expect("an echo");
                assert_eq!(echoed, message(i, round), "socket {i} round {round}");
            }
        }
        for ws in &mut sockets {
            ws.close(CloseCode::NORMAL, "")
                .await
                .expect("closing handshake");
        }
        let mut targets = Vec::new();
        for _ in 0..100 {
            let seen = server.next().await;
            assert!(seen.http2, "{seen:?}");
            assert_eq!(seen.end, "clean", "{seen:?}");
            targets.push(seen.target);
        }
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), 100);
        assert_eq!(server.connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_reset_stream_leaves_the_others_alone() {
    guard(async {
        let (mut server, h2) = start_with_client().await;
        // Three, and one more once one of them is reset.
        let mut sockets = Vec::with_capacity(4);
        for i in 0..3 {
            let mut ws = open_echo(&h2, server.addr, i).await;
            echoed(&mut ws, "before").await;
            sockets.push(ws);
        }
        // Dropped without a Close: hyper ends the stream and resets it
        // (RST_STREAM CANCEL once neither half is held).
        drop(sockets.remove(1));
        let seen = server.next().await;
        assert_eq!(seen.target, "/echo?1");
        assert_ne!(seen.end, "clean", "{seen:?}");
        // The other streams and the connection carry on.
        for ws in &mut sockets {
            echoed(ws, "after").await;
        }
        let mut late = open_echo(&h2, server.addr, 3).await;
        echoed(&mut late, "late").await;
        sockets.push(late);
        for ws in &mut sockets {
            ws.close(CloseCode::NORMAL, "")
                .await
                .expect("closing handshake");
        }
        for _ in 0..3 {
            let seen = server.next().await;
            assert_eq!(seen.end, "clean", "{seen:?}");
        }
        assert_eq!(server.connections(), 1);
    })
    .await;
}

/// A reader that stops reading holds at most its stream's window of the
/// connection's: with a 64 KiB stream window in a 1 MiB connection window
/// (hyper's adaptive window off, as by default), 2 MiB echo on another
/// stream of the same connection, more than the whole connection window,
/// goes through whatever the order of frames. With the two windows equal,
/// the stalled stream would take the whole connection window and the echo
/// would hang (the test then fails at `HANG`).
#[tokio::test]
async fn a_stalled_reader_does_not_stall_the_other_streams() {
    guard(async {
        let mut server = start(None).await;
        let mut builder = client_builder();
        builder
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(16 * STREAM_WINDOW);
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        let h2 = H2Connection::handshake_with(&builder, tcp, false)
            .await
            .expect("HTTP/2 connection");
        let (mut stalled, _) = h2
            .open(ConnectBuilder::new(format!("ws://{}/flood", server.addr)).compression(false))
            .await
            .expect("flood");
        let seen = server.next().await;
        assert_eq!(seen.end, "flooding", "{seen:?}");
        // Nothing reads `stalled` while 2 MiB go through another stream.
        let (mut echo, _) = h2
            .open(ConnectBuilder::new(format!("ws://{}/echo", server.addr)).compression(false))
            .await
            .expect("echo");
        for n in 0..128u8 {
            let msg = Message::from(vec![n; 16 * 1024]);
            echo.send(msg.clone()).await.expect("send");
            assert_eq!(echo.recv().await.unwrap().unwrap(), msg);
        }
        echo.close(CloseCode::NORMAL, "").await.expect("close");
        // The stalled stream resumes where it stopped, in order, past
        // its window.
        for n in 0..(4 * STREAM_WINDOW as u64 / (16 * 1024)) {
            match stalled.recv().await {
                Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &flood_message(n)[..]),
                other => panic!("flood message {n}: {other:?}"),
            }
        }
        stalled.close(CloseCode::NORMAL, "").await.expect("close");
        let mut ends = Vec::new();
        for _ in 0..2 {
            let seen = server.next().await;
            ends.push((seen.target, seen.end));
        }
        ends.sort();
        assert_eq!(ends[0], ("/echo".to_owned(), "clean".to_owned()));
        assert_eq!(ends[1].0, "/flood");
    })
    .await;
}

/// One compressed echo and a clean close, over either transport.
async fn same_route<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
) {
    assert!(ws.negotiated().deflate.is_some());
    echoed(ws, "same route").await;
    ws.close(CloseCode::NORMAL, "").await.expect("close");
}

#[tokio::test]
async fn one_port_answers_http1_upgrades_and_http2_extended_connect() {
    guard(async {
        let mut server = start(None).await;
        let (mut h1, response) = wsmachine_tokio::connect(&format!("ws://{}/echo?h1", server.addr))
            .await
            .expect("HTTP/1.1 upgrade");
        assert_eq!(response.status, 101);
        let h2 = h2_client(server.addr).await;
        let (mut over_h2, _) = h2
            .websocket(&format!("ws://{}/echo?h2", server.addr))
            .await
            .expect("HTTP/2 extended CONNECT");
        same_route(&mut h1).await;
        same_route(&mut over_h2).await;
        server.saw_h1_and_h2().await;
        assert_eq!(server.connections(), 2);
    })
    .await;
}

/// An extended CONNECT to `/echo`, with the version and `:protocol` given.
fn connect_request(
    addr: SocketAddr,
    version: Option<&str>,
    protocol: Option<&'static str>,
) -> hyper::Request<Empty<Bytes>> {
    let mut builder = hyper::Request::connect(format!("http://{addr}/echo"));
    if let Some(v) = version {
        builder = builder.header("sec-websocket-version", v);
    }
    let mut req = builder.body(Empty::new()).expect("request");
    if let Some(p) = protocol {
        req.extensions_mut().insert(Protocol::from_static(p));
    }
    req
}

#[tokio::test]
async fn refusals_on_the_wire() {
    guard(async {
        let mut server = start(None).await;
        let addr = server.addr;
        // A bare HTTP/2 client, to send what ours never would.
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (mut raw, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("HTTP/2");
        tokio::spawn(conn);
        let cases = [
            (None, Some("websocket"), 426),
            (Some("8"), Some("websocket"), 426),
            (Some("13"), Some("webtransport"), 400),
        ];
        for (version, protocol, status) in cases {
            let resp = raw
                .send_request(connect_request(addr, version, protocol))
                .await
                .expect("an answer");
            assert_eq!(resp.status(), status, "{version:?} {protocol:?}");
            if status == 426 {
                assert_eq!(resp.headers()["sec-websocket-version"], "13");
            }
            // The refusal ends the stream only.
            assert!(resp.headers().get("connection").is_none());
        }
        let get = hyper::Request::get(format!("http://{addr}/echo"))
            .header("sec-websocket-version", "13")
            .body(Empty::new())
            .expect("request");
        let resp = raw.send_request(get).await.expect("an answer");
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "CONNECT");
        // The same connection still opens a WebSocket.
        let mut resp = raw
            .send_request(connect_request(addr, Some("13"), Some("websocket")))
            .await
            .expect("an answer");
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("sec-websocket-accept").is_none());
        let upgraded = hyper::upgrade::on(&mut resp).await.expect("the stream");
        let mut ws = WebSocket::from_upgraded(
            Upgraded::new(upgraded),
            Role::Client,
            Default::default(),
            Config::default(),
        );
        echoed(&mut ws, "raw").await;
        ws.close(CloseCode::NORMAL, "").await.expect("close");
        assert_eq!(server.next().await.end, "clean");

        // A subprotocol the route does not speak: 400 to our client.
        let h2 = h2_client(addr).await;
        let err = h2
            .open(ConnectBuilder::new(format!("ws://{addr}/only")).subprotocol("other"))
            .await
            .expect_err("refused");
        assert_eq!(err.http_status(), Some(400), "{err}");
        let (ws, _) = h2
            .open(ConnectBuilder::new(format!("ws://{addr}/only")).subprotocol("only"))
            .await
            .expect("accepted");
        assert_eq!(ws.negotiated().subprotocol.as_deref(), Some("only"));

        // Over HTTP/1.1 the same refusal closes the connection.
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(
            b"GET /echo HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .await
        .expect("write");
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    })
    .await;
}

// On two worker threads: the client's wait for the server's SETTINGS is
// told across tasks that may run in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_extended_connect_is_refused_before_any_request() {
    guard(async {
        // hyper's HTTP/2 server as it comes: no SETTINGS_ENABLE_CONNECT_PROTOCOL.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let service = service_fn(move |_req: hyper::Request<Incoming>| {
                count.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(hyper::Response::new(Body::default())) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let err = H2Connection::handshake(tcp, false)
            .await
            .expect_err("no extended CONNECT");
        assert!(
            matches!(
                err,
                Error::Ws(ConnectionError::Handshake(
                    HandshakeError::ExtendedConnectDisabled
                ))
            ),
            "{err}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 0);
        // And a server that allows it is accepted.
        let server = start(Some(server_builder())).await;
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        H2Connection::handshake(tcp, false)
            .await
            .expect("extended CONNECT allowed");
    })
    .await;
}

/// adapter_suite's certificate for 127.0.0.1, the server offering ALPN
/// `h2` and `http/1.1`.
fn self_signed() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (server, client) = tls::self_signed();
    let mut server = (*server).clone();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (Arc::new(server), client)
}

#[tokio::test]
async fn tls_answers_http2_by_alpn_and_http1_on_one_port() {
    guard(async {
        let (server_tls, client_tls) = self_signed();
        let mut server = start_with(None, Some(TlsAcceptor::from(server_tls))).await;
        let port = server.addr.port();
        let h2 =
            H2Connection::connect_tls(&format!("https://127.0.0.1:{port}"), client_tls.clone())
                .await
                .expect("HTTP/2 over TLS");
        let (mut over_h2, _) = h2
            .websocket(&format!("wss://127.0.0.1:{port}/echo?h2"))
            .await
            .expect("wss over HTTP/2");
        same_route(&mut over_h2).await;
        // The adapter's own client config says `http/1.1` by ALPN; this one
        // says nothing, and the server tells the versions apart anyway.
        let (mut h1, response) = ConnectBuilder::new(format!("wss://127.0.0.1:{port}/echo?h1"))
            .tls(client_tls)
            .no_proxy()
            .connect()
            .await
            .expect("wss over HTTP/1.1");
        assert_eq!(response.status, 101);
        same_route(&mut h1).await;
        server.saw_h1_and_h2().await;
    })
    .await;
}

/// Split halves on two tasks, Stream and Sink, control frames, keepalive
/// and the byte stream: the WebSocket over an HTTP/2 stream is the same
/// type.
#[tokio::test]
async fn the_same_surface_over_http2() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt as _;
    use wsmachine_tokio::Event;

    guard(async {
        let (mut server, h2) = start_with_client().await;
        let (mut reader, mut writer) = open_echo(&h2, server.addr, 0).await.split();
        let writing = tokio::spawn(async move {
            for n in 0..50 {
                writer.send(format!("{n}")).await.expect("send");
            }
            writer
        });
        for n in 0..50 {
            let msg = reader.recv().await.expect("an echo").expect("an echo");
            assert_eq!(msg, Message::from(format!("{n}")));
        }
        // After the echoes: the server answers a Ping as soon as it reads
        // it, ahead of echoes of messages read with it, and `recv`
        // passes over a Pong.
        let mut writer = writing.await.expect("writer task");
        writer.ping(b"are you there").await.expect("ping");
        match reader
            .recv_event()
            .await
            .expect("an event")
            .expect("an event")
        {
            Event::Pong(p) => assert_eq!(&p[..], b"are you there"),
            other => panic!("{other:?}"),
        }
        writer.close(CloseCode::NORMAL, "").await.expect("close");
        assert!(reader.recv().await.is_none());

        // Keepalive: the core's timer sends a Ping, the server's Pong comes
        // back on the stream.
        let config = Config {
            ping_interval: Some(Duration::from_millis(10)),
            ..Config::default()
        };
        let url = format!("ws://{}/echo?keepalive", server.addr);
        let (mut kept, _) = h2
            .open(ConnectBuilder::new(url).config(config))
            .await
            .expect("keepalive");
        match kept
            .recv_event()
            .await
            .expect("an event")
            .expect("an event")
        {
            Event::Pong(_) => {}
            other => panic!("{other:?}"),
        }
        kept.close(CloseCode::NORMAL, "").await.expect("close");

        let mut ws = open_echo(&h2, server.addr, 1).await;
        SinkExt::send(&mut ws, Message::from("sink"))
            .await
            .expect("sink");
        let echoed = StreamExt::next(&mut ws)
            .await
            .expect("stream")
            .expect("stream");
        assert_eq!(echoed, Message::from("sink"));

        let mut bytes = ws.into_byte_stream();
        bytes.write_all(b"tunnelled").await.expect("write");
        let mut back = [0; 9];
        bytes.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"tunnelled");
        bytes.shutdown().await.expect("close 1000");
        for _ in 0..3 {
            let seen = server.next().await;
            assert_eq!(seen.end, "clean", "{seen:?}");
        }
    })
    .await;
}

/// An axum route that takes any method (`any`, so that CONNECT reaches it)
/// answers both versions with the same extractor, behind `axum::serve`
/// (which allows extended CONNECT).
#[tokio::test]
async fn an_axum_route_takes_websockets_over_http2() {
    use axum::{response::Response, routing::any, Router};

    async fn version(ws: wsmachine_tokio::axum::WebSocketUpgrade) -> Response {
        let said = if ws.is_http2() { "HTTP/2" } else { "HTTP/1.1" };
        ws.on_upgrade(move |mut ws| async move {
            if ws.send(said).await.is_ok() {
                let _ = echo(&mut ws).await;
            }
        })
    }

    guard(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = Router::new().route("/ws", any(version));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("ws://{addr}/ws");
        let (mut over_h2, _) = h2_client(addr).await.websocket(&url).await.expect("h2");
        let (mut h1, _) = wsmachine_tokio::connect(&url).await.expect("h1");
        assert_eq!(
            over_h2.recv().await.unwrap().unwrap(),
            Message::from("HTTP/2")
        );
        assert_eq!(h1.recv().await.unwrap().unwrap(), Message::from("HTTP/1.1"));
        same_route(&mut over_h2).await;
        same_route(&mut h1).await;
    })
    .await;
}

/// A transport that counts the writes that took bytes.
struct CountWrites<S> {
    io: S,
    writes: Arc<AtomicUsize>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountWrites<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountWrites<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Over an HTTP/1.1 upgrade through hyper, a frame's header and its
/// (uncopied, 8 KiB) payload still leave in one write: `Upgraded` passes
/// the driver's vectored write down to the socket.
#[tokio::test]
async fn an_upgraded_http1_stream_writes_a_frame_in_one_write() {
    guard(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let writes = Arc::new(AtomicUsize::new(0));
        let counted = writes.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let io = CountWrites {
                io: tcp,
                writes: counted.clone(),
            };
            let (delta_tx, delta) = tokio::sync::oneshot::channel();
            let delta_tx = Arc::new(std::sync::Mutex::new(Some(delta_tx)));
            let service = service_fn(move |mut req: hyper::Request<Incoming>| {
                let (counted, delta_tx) = (counted.clone(), delta_tx.clone());
                async move {
                    let ws = WebSocketUpgrade::from_request(&mut req).expect("upgrade");
                    Ok::<_, Infallible>(ws.compression(false).on_upgrade::<_, _, Body>(
                        move |mut ws| async move {
                            // The 101 is out before the upgrade resolves.
                            let before = counted.load(Ordering::SeqCst);
                            ws.send(Message::Binary(vec![7; 8192].into()))
                                .await
                                .expect("send");
                            ws.flush().await.expect("flush");
                            let n = counted.load(Ordering::SeqCst) - before;
                            if let Some(tx) = delta_tx.lock().expect("lock").take() {
                                let _ = tx.send(n);
                            }
                            while ws.recv().await.is_some() {}
                        },
                    ))
                }
            });
            let _ = wsmachine_tokio::serve_connection(io, service).await;
            delta.await.expect("the callback ran")
        });
        let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/"))
            .compression(false)
            .no_proxy()
            .connect()
            .await
            .expect("connect");
        match ws.recv().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), 8192),
            other => panic!("{other:?}"),
        }
        ws.close(CloseCode::NORMAL, "").await.expect("close");
        while ws.recv().await.is_some() {}
        assert_eq!(server.await.expect("server"), 1, "writes for one frame");
    })
    .await;
}
