//! The adapter suite: each behaviour of the adapters written once and run
//! against every runtime — tokio, smol and async-std — each on its own
//! executor and its own sockets, with the same test names and count.
//!
//! The tests are written once in `suite!` against the surface every adapter
//! offers (`accept_with`, `ConnectBuilder`, `WebSocket::{send, recv,
//! recv_event, close, split}`); a small module per runtime says how to run
//! a future, listen, accept, spawn and read a byte stream there.
//!
//! First, what the adapters document as cancel-safe: `recv`, `recv_event`,
//! the split reader's `recv`, `flush`, `close` resumed after its future was
//! dropped, and reads of the byte stream. Messages are 64–128 KiB, so that a
//! cancellation lands mid-frame, and each operation is cancelled thousands
//! of times; nothing may be lost, duplicated or reordered.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

/// Ready after `n` polls that each return `Pending` (waking itself at
/// once): raced against an operation, it cancels that operation after a
/// set number of polls, with no clock involved.
struct Countdown(u32);

impl Future for Countdown {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs `op` until it completes or `Countdown(polls)` does first; `None`
/// when it was cancelled (its future dropped).
async fn race<T>(op: impl Future<Output = T>, polls: u32) -> Option<T> {
    let op = pin!(op);
    let cd = pin!(Countdown(polls));
    match futures_util::future::select(op, cd).await {
        futures_util::future::Either::Left((v, _)) => Some(v),
        futures_util::future::Either::Right(((), _)) => None,
    }
}

const MESSAGES: usize = 300;

/// Message `i`: its index, then a byte pattern, 64–128 KiB long.
fn message(i: usize) -> Vec<u8> {
    let len = (64 << 10) + (i * 7919) % (64 << 10);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(i as u32).to_le_bytes());
    m.extend((4..len).map(|j| (i * 31 + j) as u8));
    m
}

fn check(i: usize, got: &[u8]) {
    let want = message(i);
    assert_eq!(got.len(), want.len(), "message {i}: length");
    assert!(got == want, "message {i}: content differs");
}

/// The poll budget before each cancellation: varied, so cancellations land
/// at many points of a frame.
fn polls(n: usize) -> u32 {
    [0, 1, 2, 3, 5, 8][n % 6]
}

/// Receives with `$next` (a `recv` call) raced against the countdown until
/// the end, checking each binary message in order; gives the count of
/// messages and of cancellations.
macro_rules! drain_messages {
    ($next:expr, $msg:ident) => {{
        let (mut got, mut cancelled) = (0, 0);
        loop {
            match race($next, polls(cancelled)).await {
                None => cancelled += 1,
                Some(Some(Ok($msg::Binary(b)))) => {
                    check(got, &b);
                    got += 1;
                }
                Some(None) => break,
                Some(other) => panic!("after {got} messages: {other:?}"),
            }
        }
        (got, cancelled)
    }};
}

macro_rules! suite {
    ($rt:ident, $ws:ident) => {
        mod $rt {
            use super::*;
            use crate::runtimes::$rt as rt;
            use $ws::{accept_with, Accept, CloseCode, Config, ConnectBuilder, Event, Message};

            fn config() -> Config {
                Config {
                    ping_interval: None,
                    ..Config::default()
                }
            }

            /// A server that sends `MESSAGES` binary messages, then closes.
            async fn sender() -> std::net::SocketAddr {
                let (l, addr) = rt::listen().await;
                // Detached: the client's end of stream is what the test waits for.
                let _detached = rt::spawn(async move {
                    let s = rt::accept(&l).await;
                    let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                        .await
                        .expect("accept");
                    for i in 0..MESSAGES {
                        ws.send(Message::Binary(message(i).into()))
                            .await
                            .expect("send");
                    }
                    ws.close(CloseCode::NORMAL, "done").await.expect("close");
                });
                addr
            }

            /// A client whose transport moves at most 4 KiB per read or write
            /// and is not ready on every other poll: a 64 KiB message takes
            /// at least 16 reads (or writes) and 16 `Pending`s, so with a
            /// budget of at most 8 polls every message sees cancellations,
            /// whatever the machine's speed.
            async fn client(addr: std::net::SocketAddr) -> $ws::WebSocket<rt::Choppy> {
                client_with(addr, config()).await
            }

            async fn client_with(
                addr: std::net::SocketAddr,
                config: Config,
            ) -> $ws::WebSocket<rt::Choppy> {
                let tcp = rt::connect(addr).await;
                ConnectBuilder::new(format!("ws://{addr}/"))
                    .config(config)
                    .connect_on(rt::Choppy::new(tcp))
                    .await
                    .expect("connect")
                    .0
            }

            #[test]
            fn recv_cancelled_mid_frame_loses_nothing() {
                rt::block_on(async {
                    let mut ws = client(sender().await).await;
                    let (got, cancelled) = drain_messages!(ws.recv(), Message);
                    assert_eq!(got, MESSAGES);
                    assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
                    assert_eq!(ws.close_frame().map(|f| f.reason.to_string()), Some("done".into()));
                });
            }

            #[test]
            fn recv_event_cancelled_mid_frame_loses_nothing() {
                rt::block_on(async {
                    let mut ws = client(sender().await).await;
                    let (mut got, mut cancelled, mut closed) = (0, 0, false);
                    loop {
                        match race(ws.recv_event(), polls(cancelled)).await {
                            None => cancelled += 1,
                            Some(Some(Ok(Event::Binary(b)))) => {
                                check(got, &b);
                                got += 1;
                            }
                            Some(Some(Ok(Event::Close(f)))) => {
                                assert!(!closed, "two Close events");
                                assert_eq!(got, MESSAGES, "the Close came early");
                                assert_eq!(f.reason.as_str(), "done");
                                closed = true;
                            }
                            Some(None) => break,
                            Some(other) => panic!("after {got} messages: {other:?}"),
                        }
                    }
                    assert!(closed && got == MESSAGES, "{got} messages, closed: {closed}");
                    assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
                });
            }

            #[test]
            fn split_reader_recv_cancelled_mid_frame_loses_nothing() {
                rt::block_on(async {
                    let (mut rd, _wr) = client(sender().await).await.split();
                    let (got, cancelled) = drain_messages!(rd.recv(), Message);
                    assert_eq!(got, MESSAGES);
                    assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
                });
            }

            #[test]
            fn close_resumed_after_being_dropped_completes_once() {
                rt::block_on(async {
                    // The server echoes, then answers our Close; it reports
                    // every event it saw.
                    let (l, addr) = rt::listen().await;
                    let server = rt::spawn(async move {
                        let s = rt::accept(&l).await;
                        let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                            .await
                            .expect("accept");
                        let mut seen = Vec::new();
                        while let Some(ev) = ws.recv_event().await {
                            let ev = ev.expect("event");
                            if let Event::Binary(b) = &ev {
                                ws.send(Message::Binary(b.clone())).await.expect("echo");
                            }
                            seen.push(ev);
                        }
                        seen
                    });
                    let mut ws = client(addr).await;
                    // A large message still in flight both ways when close starts.
                    ws.send(Message::Binary(message(7).into())).await.expect("send");
                    let mut cancelled = 0;
                    let result = loop {
                        match race(ws.close(CloseCode::NORMAL, "bye"), polls(cancelled)).await {
                            None => cancelled += 1,
                            Some(r) => break r,
                        }
                    };
                    result.expect("close completes");
                    // The echo arrived while closing: tokio keeps it for
                    // recv, smol and async-std drop it (one of the copies'
                    // differences the one driver settles). Either way it
                    // comes at most once and intact, then the end.
                    let mut after = 0;
                    while let Some(m) = ws.recv().await {
                        assert!(matches!(&m, Ok(Message::Binary(b)) if b[..] == message(7)[..]), "{m:?}");
                        after += 1;
                    }
                    assert!(after <= 1, "{after} messages after close");
                    let seen = server.await;
                    let closes = seen.iter().filter(|e| matches!(e, Event::Close(_))).count();
                    assert_eq!(closes, 1, "{seen:?}");
                    assert!(matches!(&seen[0], Event::Binary(b) if b[..] == message(7)[..]));
                });
            }

            #[test]
            fn flush_cancelled_mid_write_loses_nothing() {
                rt::block_on(async {
                    let (l, addr) = rt::listen().await;
                    let server = rt::spawn(async move {
                        let s = rt::accept(&l).await;
                        let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                            .await
                            .expect("accept");
                        let mut got = 0;
                        while let Some(m) = ws.recv().await {
                            match m.expect("message") {
                                Message::Binary(b) => {
                                    check(got, &b);
                                    got += 1;
                                }
                                other => panic!("after {got} messages: {other:?}"),
                            }
                        }
                        got
                    });
                    // Everything queued first (the `Sink` writes only on
                    // flush below its high-water mark), then one flush,
                    // cancelled again and again until it completes.
                    let cfg = Config {
                        write_buffer_high_water: 64 << 20,
                        ..config()
                    };
                    let mut ws = client_with(addr, cfg).await;
                    for i in 0..MESSAGES {
                        futures_util::SinkExt::feed(&mut ws, Message::Binary(message(i).into()))
                            .await
                            .expect("feed");
                    }
                    let mut cancelled = 0;
                    loop {
                        match race(ws.flush(), polls(cancelled)).await {
                            None => cancelled += 1,
                            Some(r) => break r.expect("flush"),
                        }
                    }
                    assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
                    ws.close(CloseCode::NORMAL, "").await.expect("close");
                    assert_eq!(server.await, MESSAGES);
                });
            }

            #[test]
            fn a_send_only_client_answers_every_ping_and_echoes_the_close_behind_them() {
                // Bounded: the failure this guards against is a hang.
                rt::block_on(rt::within_a_minute(async {
                    const PINGS: usize = 1000;
                    let (l, addr) = rt::listen().await;
                    let server = rt::spawn(async move {
                        let s = rt::accept(&l).await;
                        let mut ws = accept_with(s, config(), |_| Ok(Accept::new()))
                            .await
                            .expect("accept");
                        // One Ping at a time, each sent once the one before
                        // was answered (a burst may be answered by one Pong,
                        // RFC 6455 5.5.3): every one must be answered.
                        let mut messages = 0;
                        for i in 0..PINGS as u32 {
                            ws.ping(&i.to_be_bytes()).await.expect("ping");
                            loop {
                                match ws.recv_event().await {
                                    Some(Ok(Event::Pong(p))) if p[..] == i.to_be_bytes() => break,
                                    Some(Ok(Event::Text(_))) => messages += 1,
                                    other => panic!("waiting for Pong {i}: {other:?}"),
                                }
                            }
                        }
                        // Then a Ping with the Close right behind it: the
                        // client must echo the Close without ever reading.
                        ws.ping(b"last").await.expect("ping");
                        let closed = ws.close(CloseCode::NORMAL, "bye").await;
                        (PINGS, messages, closed)
                    });
                    // The application only sends, until the connection is over.
                    let mut ws = client(addr).await;
                    let mut sent = 0usize;
                    while ws.send(Message::Text(format!("msg {sent}").into())).await.is_ok() {
                        sent += 1;
                        if sent % 64 == 0 {
                            // A steady sender, not a flood: a send into a
                            // writable socket never waits, and a loop that
                            // never waits starves the runtime (on tokio the
                            // I/O driver and the minute's deadline).
                            rt::sleep_a_millisecond().await;
                        }
                    }
                    let (pongs, messages, closed) = server.await;
                    assert_eq!(pongs, PINGS);
                    assert!(messages > 0 && messages <= sent, "{messages} of {sent}");
                    closed.expect("the server's close completes: our Close echo arrived");
                }));
            }

            #[test]
            fn byte_stream_read_cancelled_mid_frame_loses_nothing() {
                rt::block_on(async {
                    let ws = client(sender().await).await;
                    let mut bytes = ws.into_byte_stream();
                    let want: Vec<u8> = (0..MESSAGES).flat_map(message).collect();
                    let mut got = Vec::with_capacity(want.len());
                    let mut buf = vec![0u8; 20_000];
                    let mut cancelled = 0;
                    loop {
                        match race(rt::read(&mut bytes, &mut buf), polls(cancelled)).await {
                            None => cancelled += 1,
                            Some(Ok(0)) => break,
                            Some(Ok(n)) => got.extend_from_slice(&buf[..n]),
                            Some(Err(e)) => panic!("after {} bytes: {e}", got.len()),
                        }
                    }
                    assert_eq!(got.len(), want.len());
                    assert!(got == want, "the stream's bytes differ");
                    assert!(cancelled >= MESSAGES, "only {cancelled} cancellations");
                });
            }
        }
    };
}

suite!(tokio, wsmachine_tokio);
suite!(smol, wsmachine_smol);
suite!(async_std, wsmachine_async_std);

/// Alternates: every other read or write poll is `Pending` (waking itself
/// at once), and a ready read or write moves at most 4 KiB.
#[derive(Debug, Default)]
struct Chop {
    skip_read: bool,
    skip_write: bool,
}

impl Chop {
    const MAX_READ: usize = 4 << 10;
    const MAX_WRITE: usize = 4 << 10;

    /// Whether this read poll is one to refuse.
    fn refuse(&mut self, cx: &mut Context<'_>) -> bool {
        Self::flip(&mut self.skip_read, cx)
    }

    /// Whether this write poll is one to refuse.
    fn refuse_write(&mut self, cx: &mut Context<'_>) -> bool {
        Self::flip(&mut self.skip_write, cx)
    }

    fn flip(skip: &mut bool, cx: &mut Context<'_>) -> bool {
        *skip = !*skip;
        if *skip {
            cx.waker().wake_by_ref();
        }
        *skip
    }
}

/// How each runtime runs a future, listens, connects, accepts, spawns and
/// reads, and its choppy transport.
mod runtimes {
    use std::future::Future;
    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::Chop;

    /// `listen`, `accept` and `connect` over a runtime's `$net` module (the
    /// three have the same shape).
    macro_rules! loopback_tcp {
        ($net:path) => {
            use $net as net;

            pub(crate) async fn listen() -> (net::TcpListener, SocketAddr) {
                let l = net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let a = l.local_addr().expect("addr");
                (l, a)
            }

            /// With `TCP_NODELAY`, as servers should: a lone control frame
            /// must not wait for the peer's delayed ACK.
            pub(crate) async fn accept(l: &net::TcpListener) -> net::TcpStream {
                let s = l.accept().await.expect("accept").0;
                s.set_nodelay(true).expect("nodelay");
                s
            }

            pub(crate) async fn connect(a: SocketAddr) -> net::TcpStream {
                let s = net::TcpStream::connect(a).await.expect("connect");
                s.set_nodelay(true).expect("nodelay");
                s
            }
        };
    }

    /// A choppy `futures-io` stream over `$stream`, and `read` for it.
    macro_rules! choppy_futures_io {
        ($stream:ty) => {
            /// See [`Chop`].
            #[derive(Debug)]
            pub(crate) struct Choppy(pub(crate) $stream, Chop);

            impl Choppy {
                pub(crate) fn new(s: $stream) -> Self {
                    Choppy(s, Chop::default())
                }
            }

            pub(crate) async fn read<R: futures_io::AsyncRead + Unpin>(
                r: &mut R,
                buf: &mut [u8],
            ) -> io::Result<usize> {
                futures_util::AsyncReadExt::read(r, buf).await
            }

            impl futures_io::AsyncRead for Choppy {
                fn poll_read(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: &mut [u8],
                ) -> Poll<io::Result<usize>> {
                    let this = &mut *self;
                    if this.1.refuse(cx) {
                        return Poll::Pending;
                    }
                    let n = buf.len().min(Chop::MAX_READ);
                    Pin::new(&mut this.0).poll_read(cx, &mut buf[..n])
                }
            }

            impl futures_io::AsyncWrite for Choppy {
                fn poll_write(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: &[u8],
                ) -> Poll<io::Result<usize>> {
                    let this = &mut *self;
                    if this.1.refuse_write(cx) {
                        return Poll::Pending;
                    }
                    let n = buf.len().min(Chop::MAX_WRITE);
                    Pin::new(&mut this.0).poll_write(cx, &buf[..n])
                }
                fn poll_flush(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                ) -> Poll<io::Result<()>> {
                    Pin::new(&mut self.0).poll_flush(cx)
                }
                fn poll_close(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                ) -> Poll<io::Result<()>> {
                    Pin::new(&mut self.0).poll_close(cx)
                }
            }
        };
    }

    pub(crate) mod tokio {
        use super::*;

        pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
            ::tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f)
        }

        loopback_tcp!(::tokio::net);

        /// See [`Chop`].
        #[derive(Debug)]
        pub(crate) struct Choppy(::tokio::net::TcpStream, Chop);

        impl Choppy {
            pub(crate) fn new(s: ::tokio::net::TcpStream) -> Self {
                Choppy(s, Chop::default())
            }
        }

        impl ::tokio::io::AsyncRead for Choppy {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let this = &mut *self;
                if this.1.refuse(cx) {
                    return Poll::Pending;
                }
                let n = buf.remaining().min(Chop::MAX_READ);
                let mut part = buf.take(n);
                let r = Pin::new(&mut this.0).poll_read(cx, &mut part);
                let filled = part.filled().len();
                // SAFETY: `part` wrote `filled` initialised bytes into `buf`'s
                // unfilled region.
                unsafe { buf.assume_init(filled) };
                buf.advance(filled);
                r
            }
        }

        impl ::tokio::io::AsyncWrite for Choppy {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let this = &mut *self;
                if this.1.refuse_write(cx) {
                    return Poll::Pending;
                }
                let n = buf.len().min(Chop::MAX_WRITE);
                Pin::new(&mut this.0).poll_write(cx, &buf[..n])
            }
            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_flush(cx)
            }
            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_shutdown(cx)
            }
        }

        /// Spawns `f`; the returned future gives its output (a panic in it
        /// fails the test).
        pub(crate) fn spawn<T: Send + 'static>(
            f: impl Future<Output = T> + Send + 'static,
        ) -> impl Future<Output = T> {
            let h = ::tokio::spawn(f);
            async move { h.await.expect("task panicked") }
        }

        pub(crate) async fn sleep_a_millisecond() {
            ::tokio::time::sleep(std::time::Duration::from_millis(1)).await
        }

        /// `f`, or a panic after a minute (a hang fails instead of stalling).
        pub(crate) async fn within_a_minute<T>(f: impl Future<Output = T>) -> T {
            ::tokio::time::timeout(std::time::Duration::from_secs(60), f)
                .await
                .expect("did not finish within a minute")
        }

        pub(crate) async fn read<R: ::tokio::io::AsyncRead + Unpin>(
            r: &mut R,
            buf: &mut [u8],
        ) -> std::io::Result<usize> {
            ::tokio::io::AsyncReadExt::read(r, buf).await
        }
    }

    pub(crate) mod smol {
        use super::*;

        pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
            ::smol::block_on(f)
        }

        loopback_tcp!(::smol::net);

        choppy_futures_io!(::smol::net::TcpStream);

        /// Detached (dropping a smol `Task` cancels it); the output comes
        /// back through a channel.
        pub(crate) fn spawn<T: Send + 'static>(
            f: impl Future<Output = T> + Send + 'static,
        ) -> impl Future<Output = T> {
            let (tx, rx) = ::smol::channel::bounded(1);
            ::smol::spawn(async move {
                let _ = tx.send(f.await).await;
            })
            .detach();
            async move { rx.recv().await.expect("task panicked") }
        }

        pub(crate) async fn sleep_a_millisecond() {
            ::smol::Timer::after(std::time::Duration::from_millis(1)).await;
        }

        /// `f`, or a panic after a minute (a hang fails instead of stalling).
        pub(crate) async fn within_a_minute<T>(f: impl Future<Output = T>) -> T {
            ::smol::future::or(f, async {
                ::smol::Timer::after(std::time::Duration::from_secs(60)).await;
                panic!("did not finish within a minute")
            })
            .await
        }
    }

    pub(crate) mod async_std {
        use super::*;

        pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
            ::async_std::task::block_on(f)
        }

        loopback_tcp!(::async_std::net);

        choppy_futures_io!(::async_std::net::TcpStream);

        pub(crate) fn spawn<T: Send + 'static>(
            f: impl Future<Output = T> + Send + 'static,
        ) -> impl Future<Output = T> {
            ::async_std::task::spawn(f)
        }

        pub(crate) async fn sleep_a_millisecond() {
            ::async_std::task::sleep(std::time::Duration::from_millis(1)).await
        }

        /// `f`, or a panic after a minute (a hang fails instead of stalling).
        pub(crate) async fn within_a_minute<T>(f: impl Future<Output = T>) -> T {
            ::async_std::future::timeout(std::time::Duration::from_secs(60), f)
                .await
                .expect("did not finish within a minute")
        }
    }
}
