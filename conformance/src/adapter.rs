//! Recording through the adapters' real `WebSocket` types.
//!
//! The [`driver`](crate::driver) runs the core directly; these sessions run
//! `wsmachine_tokio::WebSocket` or `wsmachine_smol::WebSocket` (which the
//! async-std adapter shares) over a [`TokioRecorder`] / [`FuturesRecorder`],
//! so the corpus also covers the adapters' handshake, write batching,
//! read-ahead and close handling against real peers. The application code
//! here records what it receives (`=` lines, from `recv_event`) and what it
//! does (`!` lines) next to the bytes the recorder wrapper tees.
//!
//! The traces are `sent: stream`: the adapter decides chunk boundaries and
//! (as a client) masks with its own random source, so replay checks the
//! events in order and the concatenated sent bytes (masking keys removed
//! for a client) instead of chunk by chunk. A client's `key:` header is
//! the `Sec-WebSocket-Key` the adapter actually sent, so the replaying
//! core's request and the server's `Sec-WebSocket-Accept` agree.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use wsmachine::{CloseCode, Config, Event, Message, Role};

use crate::driver::{today, CORPUS_SEED};
use crate::record::{FuturesRecorder, Recorder, TokioRecorder};
use crate::replay::expected_of;
use crate::trace::{
    Action, Expected, Header, Item, RequestSpec, SentCheck, Trace, TraceConfig, FORMAT_VERSION,
};

/// The adapter a session runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// `wsmachine_tokio::WebSocket` over a [`TokioRecorder`].
    Tokio,
    /// `wsmachine_smol::WebSocket` over a [`FuturesRecorder`] (the async-std
    /// adapter is the same generic code with another runtime's streams).
    Smol,
}

impl Adapter {
    /// Directory-name tag: `tokio` or `smol`.
    pub fn name(self) -> &'static str {
        match self {
            Adapter::Tokio => "tokio",
            Adapter::Smol => "smol",
        }
    }

    fn recorded_by(self) -> String {
        match self {
            Adapter::Tokio => format!(
                "wsmachine-tokio WebSocket (wsmachine-conformance {} TokioRecorder over tokio TcpStream, loopback)",
                env!("CARGO_PKG_VERSION")
            ),
            Adapter::Smol => format!(
                "wsmachine-smol WebSocket (wsmachine-conformance {} FuturesRecorder over a futures-io view of a tokio TcpStream, loopback)",
                env!("CARGO_PKG_VERSION")
            ),
        }
    }
}

/// One adapter session: who, what, and with or without permessage-deflate.
#[derive(Clone, Debug)]
pub struct AdapterSession {
    /// The adapter.
    pub adapter: Adapter,
    /// Our role.
    pub role: Role,
    /// Peer name and version, for the header.
    pub peer: String,
    /// Scenario description, for the header.
    pub scenario: String,
    /// Offer (client) or accept (server) permessage-deflate.
    pub deflate: bool,
    /// Client: the URL to open (`ws://127.0.0.1:PORT/echo`).
    pub url: String,
    /// Give up after this long.
    pub limit: Duration,
}

fn config(deflate: bool) -> Config {
    let mut c = if deflate {
        Config::with_deflate()
    } else {
        Config::default()
    };
    c.ping_interval = None;
    c
}

fn header(s: &AdapterSession, cfg: &Config, extensions: String) -> Header {
    Header {
        version: FORMAT_VERSION,
        role: s.role,
        peer: s.peer.clone(),
        scenario: s.scenario.clone(),
        recorded_by: s.adapter.recorded_by(),
        date: today(),
        // Unused for the masks (the adapter draws its own); replay masks
        // with it and compares unmasked frames.
        seed: CORPUS_SEED,
        key: None,
        request: None,
        config: TraceConfig::from_config(cfg),
        extensions,
        events_checked: true,
        sent: SentCheck::Stream,
        verdict: None,
        extra: Vec::new(),
    }
}

/// The `Sec-WebSocket-Key` nonce and the request line's target and `Host`
/// from the request the adapter sent (the first bytes written).
fn sent_request(items: &[Item]) -> Option<([u8; 16], RequestSpec)> {
    let mut head = Vec::new();
    for i in items {
        if let Item::Sent(d) = i {
            head.extend_from_slice(d);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let target = lines.next()?.split(' ').nth(1)?.to_string();
    let mut key = None;
    let mut host = None;
    for l in lines {
        let Some((n, v)) = l.split_once(':') else {
            continue;
        };
        if n.eq_ignore_ascii_case("sec-websocket-key") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()?;
            key = <[u8; 16]>::try_from(raw.as_slice()).ok();
        } else if n.eq_ignore_ascii_case("host") {
            host = Some(v.trim().to_string());
        }
    }
    Some((
        key?,
        RequestSpec {
            host: host?,
            path: target,
            ..RequestSpec::default()
        },
    ))
}

fn push_event(rec: &Recorder, ev: &Event) {
    if let Some(e) = expected_of(ev) {
        rec.push(Item::Expect(e));
    }
}

/// The client's echo script, in the trace's terms: what it sends, and
/// whether it then waits for a message (`true`) or a Pong (`false`).
fn client_script() -> Vec<(Action, bool)> {
    vec![
        (Action::SendText("hello".into()), true),
        (Action::SendBinary(vec![0, 1, 2, 255]), true),
        (Action::SendText("compressible ".repeat(40)), true),
        (Action::Ping(b"p1".to_vec()), false),
    ]
}

/// Runs one session through the adapter and returns its trace (without a
/// verdict: the caller adds the peer's). An error of the session itself
/// (the adapter failed, the peer did not answer in time) is an `Err`.
pub async fn run(stream: TcpStream, s: &AdapterSession) -> io::Result<Trace> {
    let _ = stream.set_nodelay(true);
    let rec = Recorder::new();
    let cfg = config(s.deflate);
    let fut = async {
        match (s.adapter, s.role) {
            (Adapter::Tokio, Role::Client) => {
                tokio_client(TokioRecorder::new(stream, rec.clone()), s, &cfg, &rec).await
            }
            (Adapter::Tokio, Role::Server) => {
                tokio_server(TokioRecorder::new(stream, rec.clone()), s, &cfg, &rec).await
            }
            (Adapter::Smol, Role::Client) => {
                smol_client(
                    FuturesRecorder::new(FuturesIo(stream), rec.clone()),
                    s,
                    &cfg,
                    &rec,
                )
                .await
            }
            (Adapter::Smol, Role::Server) => {
                smol_server(
                    FuturesRecorder::new(FuturesIo(stream), rec.clone()),
                    s,
                    &cfg,
                    &rec,
                )
                .await
            }
        }
    };
    let extensions = match tokio::time::timeout(s.limit, fut).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not finish within {:?}", s.scenario, s.limit),
            ))
        }
    };
    let items = rec.take();
    let mut h = header(s, &cfg, extensions);
    if s.role == Role::Client {
        let (key, req) = sent_request(&items)
            .ok_or_else(|| io::Error::other("no Sec-WebSocket-Key in the adapter's request"))?;
        h.key = Some(key);
        h.request = Some(req);
    }
    Ok(Trace { header: h, items })
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

// The two adapters have the same API over different stream traits: one
// body, instantiated per adapter.
macro_rules! adapter_sessions {
    ($client:ident, $server:ident, $krate:ident, $bound:path) => {
        pub(super) async fn $client<S: $bound>(
            stream: S,
            s: &AdapterSession,
            cfg: &Config,
            rec: &Recorder,
        ) -> io::Result<String> {
            let (mut ws, _response) = $krate::ConnectBuilder::new(s.url.clone())
                .config(cfg.clone())
                .connect_on(stream)
                .await
                .map_err(other)?;
            // The adapter took the core's `Connected` event in the handshake.
            rec.push(Item::Expect(Expected::Connected(101)));
            let extensions = crate::negotiated_extensions(ws.negotiated());
            for (action, wait_message) in client_script() {
                rec.push(Item::Action(action.clone()));
                match action {
                    Action::SendText(t) => ws.send(t).await.map_err(other)?,
                    Action::SendBinary(b) => ws.send(b).await.map_err(other)?,
                    Action::Ping(p) => ws.ping(&p).await.map_err(other)?,
                    _ => {}
                }
                loop {
                    let ev = match ws.recv_event().await {
                        Some(Ok(ev)) => ev,
                        Some(Err(e)) => return Err(other(format!("before the echo: {e}"))),
                        None => return Err(other("closed before the echo")),
                    };
                    push_event(rec, &ev);
                    let done = match ev {
                        Event::Text(_) | Event::Binary(_) => wait_message,
                        Event::Pong(_) => !wait_message,
                        _ => false,
                    };
                    if done {
                        break;
                    }
                }
            }
            rec.push(Item::Action(Action::Close(1000, "done".into())));
            ws.close(CloseCode::from(1000), "done")
                .await
                .map_err(other)?;
            drain(&mut ws, rec).await;
            Ok(extensions)
        }

        pub(super) async fn $server<S: $bound>(
            stream: S,
            s: &AdapterSession,
            cfg: &Config,
            rec: &Recorder,
        ) -> io::Result<String> {
            let deflate = s.deflate;
            let mut ws = $krate::accept_with(stream, cfg.clone(), |req| {
                rec.push(Item::Expect(Expected::Request(req.uri().to_string())));
                rec.push(Item::Action(Action::Accept {
                    compression: deflate,
                    subprotocol: None,
                }));
                Ok($krate::Accept::new().compression(deflate))
            })
            .await
            .map_err(other)?;
            let extensions = crate::negotiated_extensions(ws.negotiated());
            // Echo every message until the connection ends.
            while let Some(r) = ws.recv_event().await {
                match r {
                    Ok(ev) => {
                        push_event(rec, &ev);
                        let msg = match ev {
                            Event::Text(t) => Message::Text(t),
                            Event::Binary(b) => Message::Binary(b),
                            _ => continue,
                        };
                        rec.push(Item::Action(Action::Echo));
                        ws.send(msg).await.map_err(other)?;
                    }
                    Err($krate::Error::Ws(e)) => {
                        push_event(rec, &Event::Error(e));
                        break;
                    }
                    Err(e) => return Err(other(e)),
                }
            }
            let _ = ws.flush().await;
            Ok(extensions)
        }
    };
}

/// Records every event left after our close (the peer's Close, if the
/// adapter hands it to the application).
macro_rules! drain_fn {
    ($name:ident, $krate:ident, $bound:path) => {
        async fn $name<S: $bound>(ws: &mut $krate::WebSocket<S>, rec: &Recorder) {
            while let Some(r) = ws.recv_event().await {
                match r {
                    Ok(ev) => push_event(rec, &ev),
                    Err($krate::Error::Ws(e)) => {
                        push_event(rec, &Event::Error(e));
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    };
}

/// Stream bound of the tokio adapter.
pub trait TokioStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> TokioStream for T {}
/// Stream bound of the smol adapter.
pub trait FuturesStream: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send {}
impl<T: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send> FuturesStream for T {}

mod tokio_impl {
    use super::*;
    use wsmachine_tokio as krate;
    drain_fn!(drain, krate, TokioStream);
    adapter_sessions!(client, server, krate, TokioStream);
}

mod smol_impl {
    use super::*;
    use wsmachine_smol as krate;
    drain_fn!(drain, krate, FuturesStream);
    adapter_sessions!(client, server, krate, FuturesStream);
}

use smol_impl::{client as smol_client, server as smol_server};
use tokio_impl::{client as tokio_client, server as tokio_server};

/// A tokio stream seen through the `futures-io` traits, so the smol
/// adapter's generic code runs over a stream the tokio listener accepted
/// (smol's own reactor is not needed: the bytes and the recorder are the
/// same either way).
#[derive(Debug)]
pub struct FuturesIo<S>(pub S);

impl<S: AsyncRead + Unpin> futures_io::AsyncRead for FuturesIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> futures_io::AsyncWrite for FuturesIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
