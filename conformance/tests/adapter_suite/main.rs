//! The adapter suite: each behaviour of the adapters written once and run
//! against every runtime — tokio, smol and async-std — each on its own
//! executor and its own sockets, with the same test names and count.
//!
//! The tests are written once, one macro per concern, one file each:
//! `cancel` (cancel safety), `control` (Pings answered whatever the
//! application does), `closing` (how a connection ends, and its one error),
//! `messages`, `flow` (batching, backpressure, close ordering), `fanout`
//! (prepared messages to many connections, sends that never wait), `timeouts`,
//! `streams` (the byte-stream view), `stats` (the per-connection
//! counters), `handshake`, `tls`, `proxies` and `reconnect` (the
//! reconnecting client against a flapping server) —
//! against the surface every adapter offers (`accept_with`,
//! `ConnectBuilder`, `WebSocket::{send, recv, recv_event, close, split}`).
//! `suite!` expands every concern for each runtime, and a small module per
//! runtime (`runtimes`) says how to run a future, listen, accept, spawn,
//! read a byte stream and accept TLS there. The peers that are not an
//! adapter (`peer`: the core's `Connection` on blocking std sockets, or raw
//! bytes; the proxies) run on plain threads, the same for every runtime.
//!
//! Tests across runtimes and the one that changes the process environment
//! live in their own binaries (`cross_runtime.rs`, `proxy_env.rs`).

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

#[macro_use]
mod cancel;
#[macro_use]
mod closing;
#[macro_use]
mod control;
#[macro_use]
mod handshake;
#[macro_use]
mod messages;
#[macro_use]
mod timeouts;
#[macro_use]
mod fanout;
#[macro_use]
mod flow;
#[macro_use]
mod tls;
#[macro_use]
mod proxies;
#[macro_use]
mod reconnect;
#[macro_use]
mod stats;
#[macro_use]
mod streams;

mod peer;

/// Every concern's tests, for the runtime `$rt` and its adapter crate `$ws`.
macro_rules! suite {
    ($rt:ident, $ws:ident) => {
        mod $rt {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use crate::runtimes::$rt as rt;
            #[allow(unused_imports)]
            use $ws as ws;
            #[allow(unused_imports)]
            use $ws::{
                accept_with, Accept, CloseCode, Config, ConnectBuilder, ConnectionError, Ended,
                Error, Event, Message, Reject, SendError, Timeout,
            };

            /// The suite's configuration: no keepalive, so that no Ping
            /// the test did not ask for is sent.
            /// No keepalive, and an opening-handshake deadline that only
            /// catches a hang: on a loaded machine a heavy test can hold
            /// smol's one global executor thread for seconds, and a
            /// handshake stalled meanwhile must not fail by the default
            /// 10 s (tests of that deadline set their own).
            fn config() -> Config {
                Config {
                    ping_interval: None,
                    opening_handshake_timeout: std::time::Duration::from_secs(60),
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

            /// Accepts connections with `config` and echoes every message of
            /// each until its end.
            async fn echo_server(config: Config) -> std::net::SocketAddr {
                let (l, addr) = rt::listen().await;
                let _detached = rt::spawn(async move {
                    loop {
                        let s = rt::accept(&l).await;
                        let config = config.clone();
                        let _detached = rt::spawn(async move {
                            let Ok(mut ws) = accept_with(s, config, |_| Ok(Accept::new())).await
                            else {
                                return;
                            };
                            // The peer's Close is answered only after `recv`
                            // handed out every message before it.
                            while let Some(Ok(m)) = ws.recv().await {
                                if ws.send(m).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                });
                addr
            }

            /// A client whose transport moves at most 4 KiB per read or write
            /// and is not ready on every other poll: a 64 KiB message takes
            /// at least 16 reads (or writes) and 16 `Pending`s, so with a
            /// budget of at most 8 polls every message sees cancellations,
            /// whatever the machine's speed.
            async fn client(addr: std::net::SocketAddr) -> ws::WebSocket<rt::Choppy> {
                client_with(addr, config()).await
            }

            async fn client_with(
                addr: std::net::SocketAddr,
                config: Config,
            ) -> ws::WebSocket<rt::Choppy> {
                let tcp = rt::connect(addr).await;
                ConnectBuilder::new(format!("ws://{addr}/"))
                    .config(config)
                    .connect_on(rt::Choppy::new(tcp))
                    .await
                    .expect("connect")
                    .0
            }

            /// A client over the runtime's TCP, no keepalive.
            async fn plain_client(addr: std::net::SocketAddr) -> ws::WebSocket<rt::Tcp> {
                ConnectBuilder::new(format!("ws://{addr}/"))
                    .config(config())
                    .connect_on(rt::connect(addr).await)
                    .await
                    .expect("connect")
                    .0
            }

            mod cancel {
                cancel_tests!();
            }
            mod closing {
                closing_tests!();
            }
            mod control {
                control_tests!();
            }
            mod messages {
                messages_tests!();
            }
            mod timeouts {
                timeouts_tests!();
            }
            mod flow {
                flow_tests!();
            }
            mod fanout {
                fanout_tests!();
            }
            mod tls {
                tls_tests!();
            }
            mod proxy {
                proxy_tests!();
            }
            mod reconnect {
                reconnect_tests!();
            }
            mod handshake {
                handshake_tests!();
            }
            mod streams {
                streams_tests!();
            }
            mod stats {
                stats_tests!();
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

/// Raises this process's soft limit on open files to at least `need` (up to
/// the hard limit), or fails saying what to raise: a test that needs more
/// descriptors than a default shell gives (1024) says so instead of failing
/// halfway with "too many open files".
fn raise_fd_limit(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed by pointer.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur >= need {
            return;
        }
        assert!(
            lim.rlim_max >= need,
            "this test needs {need} open files; the hard limit is {}: raise it (ulimit -Hn)",
            lim.rlim_max
        );
        lim.rlim_cur = need;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

/// A shared count of write calls (see each runtime's `Counting`).
#[derive(Debug, Clone, Default)]
struct WriteCount(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl WriteCount {
    fn count(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
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
    #[allow(unused_imports)]
    use super::WriteCount;

    /// `listen`, `accept` and `connect` over a runtime's `$net` module (the
    /// three have the same shape).
    macro_rules! loopback_tcp {
        ($net:path) => {
            use $net as net;

            /// The runtime's TCP stream.
            pub(crate) type Tcp = net::TcpStream;

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

            pub(crate) async fn read_exact<R: futures_io::AsyncRead + Unpin>(
                r: &mut R,
                buf: &mut [u8],
            ) -> io::Result<()> {
                futures_util::AsyncReadExt::read_exact(r, buf).await
            }

            pub(crate) async fn write_all<W: futures_io::AsyncWrite + Unpin>(
                w: &mut W,
                buf: &[u8],
            ) -> io::Result<()> {
                futures_util::AsyncWriteExt::write_all(w, buf).await
            }

            /// The read and write halves of `s`, for two tasks.
            pub(crate) fn split_io<S: futures_io::AsyncRead + futures_io::AsyncWrite>(
                s: S,
            ) -> (
                futures_util::io::ReadHalf<S>,
                futures_util::io::WriteHalf<S>,
            ) {
                futures_util::AsyncReadExt::split(s)
            }

            /// Closes the write side (`poll_close`).
            pub(crate) async fn shutdown<W: futures_io::AsyncWrite + Unpin>(
                w: &mut W,
            ) -> io::Result<()> {
                futures_util::AsyncWriteExt::close(w).await
            }

            /// The runtime's TCP stream, counting the write calls made on it.
            #[derive(Debug)]
            pub(crate) struct Counting(pub(crate) $stream, pub(crate) super::WriteCount);

            impl futures_io::AsyncRead for Counting {
                fn poll_read(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: &mut [u8],
                ) -> Poll<io::Result<usize>> {
                    Pin::new(&mut self.0).poll_read(cx, buf)
                }
            }

            impl futures_io::AsyncWrite for Counting {
                fn poll_write(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: &[u8],
                ) -> Poll<io::Result<usize>> {
                    self.1.count();
                    Pin::new(&mut self.0).poll_write(cx, buf)
                }
                fn poll_write_vectored(
                    mut self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    bufs: &[io::IoSlice<'_>],
                ) -> Poll<io::Result<usize>> {
                    self.1.count();
                    Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
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

            /// The server side of TLS over `tcp`.
            pub(crate) async fn tls_accept(
                tcp: $stream,
                cfg: std::sync::Arc<wsmachine_smol::rustls::ServerConfig>,
            ) -> wsmachine_smol::futures_rustls::server::TlsStream<$stream> {
                wsmachine_smol::futures_rustls::TlsAcceptor::from(cfg)
                    .accept(tcp)
                    .await
                    .expect("TLS accept")
            }

            /// The server side of TLS over `tcp`, for a client that refuses it.
            pub(crate) async fn tls_accept_fails(
                tcp: $stream,
                cfg: std::sync::Arc<wsmachine_smol::rustls::ServerConfig>,
            ) {
                let r = wsmachine_smol::futures_rustls::TlsAcceptor::from(cfg)
                    .accept(tcp)
                    .await;
                assert!(r.is_err(), "the client refused the certificate");
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

        /// The runtime's TCP stream, counting the write calls made on it.
        #[derive(Debug)]
        pub(crate) struct Counting(
            pub(crate) ::tokio::net::TcpStream,
            pub(crate) super::WriteCount,
        );

        impl ::tokio::io::AsyncRead for Counting {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }

        impl ::tokio::io::AsyncWrite for Counting {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.1.count();
                Pin::new(&mut self.0).poll_write(cx, buf)
            }
            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.1.count();
                Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                self.0.is_write_vectored()
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

        /// The server side of TLS over `tcp`.
        pub(crate) async fn tls_accept(
            tcp: ::tokio::net::TcpStream,
            cfg: std::sync::Arc<wsmachine_tokio::rustls::ServerConfig>,
        ) -> wsmachine_tokio::tokio_rustls::server::TlsStream<::tokio::net::TcpStream> {
            wsmachine_tokio::tokio_rustls::TlsAcceptor::from(cfg)
                .accept(tcp)
                .await
                .expect("TLS accept")
        }

        /// The server side of TLS over `tcp`, for a client that refuses it.
        pub(crate) async fn tls_accept_fails(
            tcp: ::tokio::net::TcpStream,
            cfg: std::sync::Arc<wsmachine_tokio::rustls::ServerConfig>,
        ) {
            let r = wsmachine_tokio::tokio_rustls::TlsAcceptor::from(cfg)
                .accept(tcp)
                .await;
            assert!(r.is_err(), "the client refused the certificate");
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

        pub(crate) async fn read_exact<R: ::tokio::io::AsyncRead + Unpin>(
            r: &mut R,
            buf: &mut [u8],
        ) -> std::io::Result<()> {
            ::tokio::io::AsyncReadExt::read_exact(r, buf)
                .await
                .map(|_| ())
        }

        pub(crate) async fn write_all<W: ::tokio::io::AsyncWrite + Unpin>(
            w: &mut W,
            buf: &[u8],
        ) -> std::io::Result<()> {
            ::tokio::io::AsyncWriteExt::write_all(w, buf).await
        }

        /// The read and write halves of `s`, for two tasks.
        pub(crate) fn split_io<S: ::tokio::io::AsyncRead + ::tokio::io::AsyncWrite>(
            s: S,
        ) -> (::tokio::io::ReadHalf<S>, ::tokio::io::WriteHalf<S>) {
            ::tokio::io::split(s)
        }

        /// Closes the write side (`poll_shutdown`).
        pub(crate) async fn shutdown<W: ::tokio::io::AsyncWrite + Unpin>(
            w: &mut W,
        ) -> std::io::Result<()> {
            ::tokio::io::AsyncWriteExt::shutdown(w).await
        }
    }

    pub(crate) mod smol {
        use super::*;

        pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
            ::smol::block_on(f)
        }

        loopback_tcp!(::smol::net);

        choppy_futures_io!(::smol::net::TcpStream);

        /// The suite's executor: four threads. smol's global executor has
        /// one (`SMOL_THREADS`), which one test's heavy task (a 16 MiB
        /// compressed echo in a debug build) can hold for seconds on a
        /// loaded machine while another test's server task waits. Several
        /// threads also run a split connection's halves truly in parallel,
        /// as applications' executors do (a lost wake-up between them was
        /// found that way: `core/tests/driver_wakeups.rs`).
        fn executor() -> &'static ::smol::Executor<'static> {
            static EX: std::sync::OnceLock<&'static ::smol::Executor<'static>> =
                std::sync::OnceLock::new();
            EX.get_or_init(|| {
                let ex: &'static ::smol::Executor<'static> =
                    Box::leak(Box::new(::smol::Executor::new()));
                for _ in 0..4 {
                    // Detached: they serve every test until the process ends.
                    std::thread::spawn(move || {
                        ::smol::block_on(ex.run(::smol::future::pending::<()>()))
                    });
                }
                ex
            })
        }

        /// Detached (dropping a smol `Task` cancels it); the output comes
        /// back through a channel.
        pub(crate) fn spawn<T: Send + 'static>(
            f: impl Future<Output = T> + Send + 'static,
        ) -> impl Future<Output = T> {
            let (tx, rx) = ::smol::channel::bounded(1);
            executor()
                .spawn(async move {
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
