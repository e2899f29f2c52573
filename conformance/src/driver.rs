//! A small recording driver over the core: a tokio stream, a
//! [`wsmachine::Connection`] with a [`SeededMask`], and a [`Script`] that
//! decides what the application does. Every read, write, event and action
//! goes into the trace, so the session replays byte for byte.
//!
//! This is a test tool, not an adapter: it writes each `poll_transmit`
//! chunk with `write_all`, has no backpressure and keeps the whole session
//! in memory (unless the recorder is disabled, as for Autobahn runs).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wsmachine::{
    Accept, CloseCode, Config, Connection, Event, MessageKind, Role, SeededMask, SendError,
};

use crate::record::{Recorder, TokioRecorder};
use crate::replay::expected_of;
use crate::trace::{Action, Header, Item, Kind, RequestSpec, Trace, TraceConfig, FORMAT_VERSION};

/// The corpus's `SeededMask` seed: 32 arbitrary bytes. (A byte-repeated
/// seed such as `[0x5e; 32]` makes xoshiro256** emit structured keys such as
/// `4b4b4b4b` for its first outputs: `SeededMask::new` does not scramble its seed.)
pub const CORPUS_SEED: [u8; 32] = [
    0x3a, 0x91, 0x0c, 0xe7, 0x52, 0x1f, 0xb8, 0x64, 0xd9, 0x2e, 0x87, 0x40, 0xf5, 0x6b, 0x13, 0xac,
    0x7e, 0x08, 0xc1, 0x95, 0x4d, 0xe2, 0x36, 0x5a, 0x9f, 0x21, 0xbb, 0x70, 0x0e, 0xd4, 0x68, 0x83,
];

/// What to record and how to start the connection.
#[derive(Clone, Debug)]
pub struct Session {
    /// Role of our endpoint.
    pub role: Role,
    /// Core configuration.
    pub config: Config,
    /// [`SeededMask`] seed.
    pub seed: [u8; 32],
    /// Client: `Sec-WebSocket-Key` nonce.
    pub key: [u8; 16],
    /// Client: the request.
    pub request: RequestSpec,
    /// Server: accept compression when offered.
    pub accept_compression: bool,
    /// Server: subprotocol to choose.
    pub accept_subprotocol: Option<String>,
    /// Peer name and version, for the header.
    pub peer: String,
    /// Scenario description, for the header.
    pub scenario: String,
    /// How it was recorded, for the header.
    pub recorded_by: String,
    /// Give up after this long.
    pub limit: Duration,
}

impl Session {
    /// A session with fixed seeds, default config and a 10 s limit.
    pub fn new(role: Role, peer: &str, scenario: &str) -> Self {
        Session {
            role,
            config: Config::default(),
            seed: CORPUS_SEED,
            key: *b"wsmachine-trace!",
            request: RequestSpec {
                host: "127.0.0.1".into(),
                path: "/".into(),
                ..RequestSpec::default()
            },
            accept_compression: true,
            accept_subprotocol: None,
            peer: peer.into(),
            scenario: scenario.into(),
            recorded_by: format!(
                "wsmachine-conformance {} recording driver (tokio TcpStream, loopback)",
                env!("CARGO_PKG_VERSION")
            ),
            limit: Duration::from_secs(10),
        }
    }
}

/// The application side of a recorded session.
pub trait Script: Send {
    /// The connection opened (client: after `Connected`; server: after accepting).
    fn on_open(&mut self, ctl: &mut Ctl<'_>);
    /// An event arrived (already recorded).
    fn on_event(&mut self, ev: &Event, ctl: &mut Ctl<'_>);
}

/// Lets a [`Script`] act on the connection; every accepted action is recorded.
pub struct Ctl<'a> {
    conn: &'a mut Connection,
    rec: &'a Recorder,
    now: Instant,
    /// Set by a script to stop reading and end the session (after flushing).
    pub stop: bool,
}

impl Ctl<'_> {
    fn run(&mut self, a: Action) -> Result<(), SendError> {
        let c = &mut *self.conn;
        let r = match &a {
            Action::SendText(t) => c.send_text(t),
            Action::SendBinary(d) => c.send_binary(d),
            Action::Fragment { kind, last, data } => c.send_fragment(
                match kind {
                    Kind::Text => MessageKind::Text,
                    Kind::Binary => MessageKind::Binary,
                },
                data,
                *last,
            ),
            Action::Ping(d) => c.ping(d),
            Action::Pong(d) => c.pong(d),
            Action::Close(code, reason) => c.close(self.now, CloseCode::from(*code), reason),
            Action::Accept { .. } | Action::Reject(_) | Action::Echo | Action::Timeout(_) => Ok(()),
        };
        if r.is_ok() {
            self.rec.push(Item::Action(a));
        }
        r
    }

    /// Performs `a` (send, fragment, ping, pong, close).
    pub fn act(&mut self, a: Action) -> Result<(), SendError> {
        self.run(a)
    }

    /// Sends a received message back.
    pub fn echo(&mut self, ev: &Event) -> Result<(), SendError> {
        let r = match ev {
            Event::Text(t) => self.conn.send(t.clone()),
            Event::Binary(b) => self.conn.send(b.clone()),
            _ => return Ok(()),
        };
        if r.is_ok() {
            self.rec.push(Item::Action(Action::Echo));
        }
        r
    }

    /// The connection (read-only).
    pub fn connection(&self) -> &Connection {
        self.conn
    }
}

/// Echoes every message.
#[derive(Debug, Default)]
pub struct EchoScript;

impl Script for EchoScript {
    fn on_open(&mut self, _: &mut Ctl<'_>) {}
    fn on_event(&mut self, ev: &Event, ctl: &mut Ctl<'_>) {
        let _ = ctl.echo(ev);
    }
}

/// One step of a [`Steps`] script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Do this.
    Do(Action),
    /// Wait for this many text/binary messages.
    Messages(usize),
    /// Wait for a Pong.
    Pong,
    /// Echo the next `n` messages as they arrive (and wait for them).
    Echo(usize),
}

/// A linear script: do, wait, do… Messages that arrive while no step waits
/// for them are just recorded.
#[derive(Clone, Debug)]
pub struct Steps {
    steps: VecDeque<Step>,
    /// Text messages received, in order (for callers that need the content).
    pub texts: Vec<String>,
}

impl Steps {
    /// A script of these steps.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Steps {
            steps: steps.into_iter().collect(),
            texts: Vec::new(),
        }
    }

    fn advance(&mut self, ctl: &mut Ctl<'_>) {
        while let Some(Step::Do(a)) = self.steps.front() {
            let a = a.clone();
            self.steps.pop_front();
            let _ = ctl.act(a);
        }
    }
}

impl Script for Steps {
    fn on_open(&mut self, ctl: &mut Ctl<'_>) {
        self.advance(ctl);
    }

    fn on_event(&mut self, ev: &Event, ctl: &mut Ctl<'_>) {
        if let Event::Text(t) = ev {
            self.texts.push(t.as_str().to_string());
        }
        let is_msg = matches!(ev, Event::Text(_) | Event::Binary(_));
        match self.steps.front_mut() {
            Some(Step::Messages(n)) if is_msg => {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.steps.pop_front();
                }
            }
            Some(Step::Echo(n)) if is_msg => {
                let _ = ctl.echo(ev);
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.steps.pop_front();
                }
            }
            Some(Step::Pong) if matches!(ev, Event::Pong(_)) => {
                self.steps.pop_front();
            }
            _ => return,
        }
        self.advance(ctl);
    }
}

fn millis_since(start: Instant, now: Instant) -> u64 {
    // Rounded up: a replayed timer must not fire earlier than it did live.
    u64::try_from(
        now.saturating_duration_since(start)
            .as_micros()
            .div_ceil(1000),
    )
    .unwrap_or(u64::MAX)
}

/// `YYYY-MM-DD` of today (UTC).
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Runs one session over `stream` and returns its trace (items are empty
/// when `rec` is disabled).
pub async fn run<S>(
    stream: S,
    session: &Session,
    script: &mut dyn Script,
    rec: Recorder,
) -> io::Result<Trace>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = TokioRecorder::new(stream, rec.clone());
    let start = Instant::now();
    let mut conn = match session.role {
        Role::Client => Connection::client(
            session.config.clone(),
            session.request.to_request(),
            session.key,
            SeededMask::new(session.seed),
            start,
        ),
        Role::Server => Connection::server(session.config.clone(), start),
    };
    let deadline = tokio::time::Instant::from_std(start + session.limit);
    let mut buf = vec![0u8; 64 * 1024];
    let mut eof = false;
    let mut stop = false;
    let mut write_failed = false;
    loop {
        loop {
            let mut progressed = false;
            while let Some(b) = conn.poll_transmit() {
                if stream.write_all(&b).await.is_err() {
                    // The peer is gone (reset, broken pipe): the session ends here.
                    write_failed = true;
                    break;
                }
                progressed = true;
            }
            if write_failed {
                break;
            }
            while let Some(ev) = conn.poll_event() {
                progressed = true;
                if rec.is_enabled() {
                    if let Some(e) = expected_of(&ev) {
                        rec.push(Item::Expect(e));
                    }
                }
                let now = Instant::now();
                let mut ctl = Ctl {
                    conn: &mut conn,
                    rec: &rec,
                    now,
                    stop: false,
                };
                match &ev {
                    Event::Request(_) => {
                        let mut acc = Accept::new().compression(session.accept_compression);
                        if let Some(p) = &session.accept_subprotocol {
                            acc = acc.subprotocol(p.clone());
                        }
                        if ctl.conn.accept(now, acc).is_ok() {
                            rec.push(Item::Action(Action::Accept {
                                compression: session.accept_compression,
                                subprotocol: session.accept_subprotocol.clone(),
                            }));
                            script.on_open(&mut ctl);
                        }
                    }
                    Event::Connected(_) => script.on_open(&mut ctl),
                    _ => script.on_event(&ev, &mut ctl),
                }
                stop |= ctl.stop;
            }
            if !progressed {
                break;
            }
        }
        if conn.should_close_transport() {
            let _ = stream.shutdown().await;
            break;
        }
        if eof || stop || write_failed {
            break;
        }
        let timer = conn.poll_timeout();
        tokio::select! {
            r = stream.read(&mut buf) => {
                // A reset counts as end of stream (recorded as `< eof`).
                let n = r.unwrap_or_else(|_| {
                    rec.push(Item::RecvEof);
                    0
                });
                let now = Instant::now();
                if n == 0 {
                    eof = true;
                    conn.receive_eof(now);
                } else {
                    conn.receive(now, buf.get(..n).unwrap_or_default());
                    // What a large compressed message left: no yield
                    // needed here, one connection per process.
                    while conn.has_pending_work() {
                        conn.resume(now);
                    }
                }
            }
            _ = sleep_until(timer) => {
                let now = Instant::now();
                rec.push(Item::Action(Action::Timeout(millis_since(start, now))));
                conn.handle_timeout(now);
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, format!(
                    "session {:?} with {} did not finish within {:?}", session.scenario, session.peer, session.limit)));
            }
        }
    }
    let h = Header {
        version: FORMAT_VERSION,
        role: session.role,
        peer: session.peer.clone(),
        scenario: session.scenario.clone(),
        recorded_by: session.recorded_by.clone(),
        date: today(),
        seed: session.seed,
        key: (session.role == Role::Client).then_some(session.key),
        request: (session.role == Role::Client).then(|| session.request.clone()),
        config: TraceConfig::from_config(&session.config),
        extensions: crate::negotiated_extensions(conn.negotiated()),
        events_checked: true,
        sent: crate::trace::SentCheck::Exact,
        // The recorder fills it in once the peer has concluded.
        verdict: None,
        extra: Vec::new(),
    };
    Ok(Trace {
        header: h,
        items: rec.take(),
    })
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
