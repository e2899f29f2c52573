//! The Tokio `pubsub` example (`adapter-tokio/examples/pubsub.rs`), built
//! with `cargo build -p wsmachine-tokio --example pubsub` and run as a
//! process on a free loopback port, against real clients: ours with
//! permessage-deflate (so the example's shared compressed encoding is
//! decoded) and `tokio-tungstenite` without, publishing and subscribing
//! with the example's text protocol.
//!
//! Every step waits for an answer that says it happened: a command for its
//! `ok` (the example answers after applying it), a publish for its `ok pub
//! TOPIC N` (N counts the subscribers it reached), a dropped subscriber for
//! the publish that no longer counts it and the example's `dropped ADDR`
//! line. Nothing sleeps; a step that never comes fails after [`STEP`].

mod interop_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use futures_util::{SinkExt, StreamExt};
use interop_support::{Peer, STEP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use wsmachine_tokio::{ConnectBuilder, MaybeTlsStream, Message, WebSocket};

/// Builds the example once per test binary and returns its path.
fn example() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| interop_support::build_example("wsmachine-tokio", "pubsub"))
        .clone()
}

/// Starts the example on a free port (killed by PID when the guard drops).
fn start() -> (Peer, SocketAddr) {
    let mut server = Peer::spawn("pubsub example", Command::new(example()).arg("127.0.0.1:0"))
        .expect("start the pubsub example");
    let addr = server.wait_listening(STEP).expect("pubsub example ready");
    (server, addr)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// A subscriber or publisher: our client or `tokio-tungstenite`.
enum Client {
    Ours(Box<WebSocket<MaybeTlsStream>>),
    Tungstenite(
        Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>,
    ),
}

impl Client {
    /// Our client, offering permessage-deflate: the example accepts it
    /// with `server_no_context_takeover`.
    async fn ours(addr: SocketAddr) -> Client {
        let (ws, _) = within(
            "connect",
            ConnectBuilder::new(format!("ws://{addr}/"))
                .compression(true)
                .connect(),
        )
        .await
        .expect("connect");
        let deflate = ws.negotiated().deflate.expect("compression negotiated");
        assert!(deflate.server_no_context_takeover, "{deflate:?}");
        Client::Ours(Box::new(ws))
    }

    async fn tungstenite(addr: SocketAddr) -> Client {
        let (ws, _) = within(
            "connect",
            tokio_tungstenite::connect_async(format!("ws://{addr}/")),
        )
        .await
        .expect("connect");
        Client::Tungstenite(Box::new(ws))
    }

    async fn send(&mut self, text: String) {
        match self {
            Client::Ours(ws) => within("send", WebSocket::send(ws, text))
                .await
                .expect("send"),
            Client::Tungstenite(ws) => within("send", ws.send(tungstenite::Message::text(text)))
                .await
                .expect("send"),
        }
    }

    /// The next message, which must be text.
    async fn recv(&mut self) -> String {
        match self {
            Client::Ours(ws) => match within("recv", ws.recv()).await {
                Some(Ok(Message::Text(t))) => t.to_string(),
                other => panic!("expected a text message, got {other:?}"),
            },
            Client::Tungstenite(ws) => match within("recv", ws.next()).await {
                Some(Ok(tungstenite::Message::Text(t))) => t.to_string(),
                other => panic!("expected a text message, got {other:?}"),
            },
        }
    }

    /// Sends a command and checks the answer, which the example sends
    /// once the command has taken effect.
    async fn request(&mut self, cmd: &str, answer: &str) {
        self.send(cmd.to_owned()).await;
        assert_eq!(self.recv().await, answer, "answer to {cmd:?}");
    }

    /// Publishes and returns how many subscribers the example reached.
    async fn publish(&mut self, topic: &str, payload: &str) -> usize {
        self.send(format!("pub {topic} {payload}")).await;
        let answer = self.recv().await;
        answer
            .strip_prefix(&format!("ok pub {topic} "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("answer to a publish: {answer:?}"))
    }
}

/// A compressible payload of about `len` bytes that names `i`.
fn payload(i: usize, len: usize) -> String {
    let mut s = format!("{i}");
    while s.len() < len {
        s.push_str(&format!(
            " {{\"seq\":{i},\"user\":\"u{}\",\"ok\":true}}",
            s.len() % 7
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_every_publish_of_their_topic_in_order() {
    let (_server, addr) = start();
    let mut news_ours = Client::ours(addr).await;
    let mut news_tung = Client::tungstenite(addr).await;
    let mut sport = Client::ours(addr).await;
    let mut publisher = Client::tungstenite(addr).await;
    news_ours.request("sub news", "ok sub news").await;
    news_tung.request("sub news", "ok sub news").await;
    sport.request("sub sport", "ok sub sport").await;

    let (mut news, mut sports) = (Vec::new(), Vec::new());
    // Sizes around the compression threshold (128) and above it; about
    // 100 KiB in all, far under what would make the example drop anyone.
    for i in 0..120 {
        let p = payload(i, (i * 37) % 1500);
        if i % 3 == 0 {
            assert_eq!(publisher.publish("sport", &p).await, 1, "publish {i}");
            sports.push(format!("msg sport {p}"));
        } else {
            assert_eq!(publisher.publish("news", &p).await, 2, "publish {i}");
            news.push(format!("msg news {p}"));
        }
    }
    // A topic nobody follows reaches nobody.
    assert_eq!(publisher.publish("weather", "rain").await, 0);
    // The last message of each topic: had anything else been queued for a
    // subscriber, it would arrive before this one.
    for (topic, list) in [("news", &mut news), ("sport", &mut sports)] {
        publisher.publish(topic, "end").await;
        list.push(format!("msg {topic} end"));
    }
    for (name, client, want) in [
        ("ours on news", &mut news_ours, &news),
        ("tungstenite on news", &mut news_tung, &news),
        ("ours on sport", &mut sport, &sports),
    ] {
        for (i, w) in want.iter().enumerate() {
            let got = client.recv().await;
            assert!(
                &got == w,
                "{name}: message {i}: got {:?}, want {:?}",
                &got[..got.len().min(60)],
                &w[..w.len().min(60)]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let (_server, addr) = start();
    let mut a = Client::ours(addr).await;
    let mut b = Client::tungstenite(addr).await;
    let mut publisher = Client::ours(addr).await;
    a.request("sub t", "ok sub t").await;
    b.request("sub t", "ok sub t").await;
    assert_eq!(publisher.publish("t", "one").await, 2);
    assert_eq!(a.recv().await, "msg t one");
    assert_eq!(b.recv().await, "msg t one");

    a.request("unsub t", "ok unsub t").await;
    assert_eq!(publisher.publish("t", "two").await, 1, "only b is left");
    assert_eq!(b.recv().await, "msg t two");
    // What `a` gets next is this marker, not "two".
    a.request("sub u", "ok sub u").await;
    assert_eq!(publisher.publish("u", "marker").await, 1);
    assert_eq!(a.recv().await, "msg u marker");

    // Subscribing again resumes delivery; a publisher that subscribes gets
    // its own message before the answer.
    a.request("sub t", "ok sub t").await;
    publisher.request("sub t", "ok sub t").await;
    publisher.send("pub t three".into()).await;
    assert_eq!(publisher.recv().await, "msg t three");
    assert_eq!(publisher.recv().await, "ok pub t 3");
    assert_eq!(a.recv().await, "msg t three");
    assert_eq!(b.recv().await, "msg t three");
    a.request(
        "bogus",
        "error expected `sub TOPIC`, `unsub TOPIC` or `pub TOPIC PAYLOAD`",
    )
    .await;
}

/// A client that completes the opening handshake, subscribes to `topic`,
/// and then reads nothing until the test says so; its receive buffer is
/// small, so what the server sends it piles up in the server.
struct Stalled {
    tcp: TcpStream,
    local: SocketAddr,
}

impl Stalled {
    async fn subscribe(addr: SocketAddr, topic: &str) -> Stalled {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let mut tcp = within("connect", sock.connect(addr))
            .await
            .expect("connect");
        let local = tcp.local_addr().expect("local address");
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        // The response head, byte by byte so nothing after it is taken.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(within("response", tcp.read_u8()).await.expect("read"));
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        // `sub TOPIC`, masked (RFC 6455 §5.3); short enough for a 7-bit length.
        let cmd = format!("sub {topic}");
        let key = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81, 0x80 | cmd.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(cmd.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
        tcp.write_all(&frame).await.expect("write");
        let want = format!("ok sub {topic}");
        let mut answer = vec![0; 2 + want.len()];
        within("answer", tcp.read_exact(&mut answer))
            .await
            .expect("read");
        assert_eq!(answer[..2], [0x81, want.len() as u8]);
        assert_eq!(&answer[2..], want.as_bytes());
        Stalled { tcp, local }
    }

    /// Reads everything until the server's end of the connection (end of
    /// stream or reset).
    async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = vec![0; 64 << 10];
        loop {
            match within("end of the dropped connection", self.tcp.read(&mut buf)).await {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
                Err(e) => panic!("reading the dropped connection: {e}"),
            }
        }
    }
}

/// The unmasked text frames at the start of `wire`, in order; a frame cut
/// off at the end is left out.
fn text_frames(mut wire: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while wire.len() >= 2 {
        assert_eq!(wire[0], 0x81, "a whole unfragmented text frame");
        let (len, head) = match wire[1] {
            n @ 0..=125 => (n as usize, 2),
            126 if wire.len() >= 4 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            126 => break,
            other => panic!("unexpected length byte {other}"),
        };
        if wire.len() < head + len {
            break;
        }
        out.push(String::from_utf8(wire[head..head + len].to_vec()).expect("UTF-8"));
        wire = &wire[head + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_dropped_and_the_others_get_everything() {
    let (mut server, addr) = start();
    let mut slow = Stalled::subscribe(addr, "t").await;
    let mut fast_ours = Client::ours(addr).await;
    let mut fast_tung = Client::tungstenite(addr).await;
    let mut publisher = Client::ours(addr).await;
    fast_ours.request("sub t", "ok sub t").await;
    fast_tung.request("sub t", "ok sub t").await;

    // 32 KiB publishes, one at a time: each is read by both fast
    // subscribers before the next, so only the stalled one falls behind.
    // It holds the example's limit (1 MiB) plus what the kernel buffers:
    // a few dozen publishes; 1000 (32 MiB) means it is never dropped.
    let mut sent = Vec::new();
    let mut dropped_at = None;
    for i in 0..1000 {
        let p = payload(i, 32 << 10);
        let reached = publisher.publish("t", &p).await;
        let msg = format!("msg t {p}");
        assert!(fast_ours.recv().await == msg, "ours: publish {i}");
        assert!(fast_tung.recv().await == msg, "tungstenite: publish {i}");
        sent.push(msg);
        match reached {
            3 => {}
            2 => {
                dropped_at = Some(i);
                break;
            }
            n => panic!("publish {i} reached {n} subscribers"),
        }
    }
    let dropped_at = dropped_at.expect("the stalled subscriber was never dropped");
    let line = tokio::task::block_in_place(|| {
        server.wait_for(STEP, "`dropped` line", |l| {
            l.starts_with(&format!("dropped {}: ", slow.local))
                .then(|| l.to_owned())
        })
    })
    .expect("the example says whom it dropped");
    println!("{line} (at publish {dropped_at})");

    // The others go on receiving everything.
    for i in 0..20 {
        let p = payload(1000 + i, 1000);
        assert_eq!(publisher.publish("t", &p).await, 2, "after the drop");
        let msg = format!("msg t {p}");
        assert!(fast_ours.recv().await == msg);
        assert!(fast_tung.recv().await == msg);
    }
    // The stalled connection is closed: it reaches its end once read, and
    // holds a prefix of what was published, the rest having been dropped.
    let wire = slow.read_to_end().await;
    let got = text_frames(&wire);
    assert!(
        got.len() < dropped_at,
        "the stalled subscriber got {} of {} publishes: its unsent output was not dropped",
        got.len(),
        dropped_at + 1
    );
    for (i, g) in got.iter().enumerate() {
        assert!(g == &sent[i], "stalled subscriber: message {i} differs");
    }
}
