//! Replays a [`Trace`] against a fresh core and checks events and sent bytes.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use wsmachine::{
    Accept, CloseCode, Connection, ConnectionError, Event, MessageKind, Role, SeededMask,
};

use crate::trace::{hex, Action, Expected, Item, Kind, Payload, Trace};

/// How received chunks are fed to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Each `<` chunk in one `receive` call, as it came off the socket. Sent
    /// bytes must match at the same points of the trace.
    Whole,
    /// Each received byte in its own `receive` call. Events must match; sent
    /// bytes must match as one concatenation.
    ByteByByte,
}

/// Why a replay failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayError {
    /// Index of the trace item (0-based, in the body) where it was found.
    pub item: usize,
    /// What went wrong, readable.
    pub message: String,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at trace item {}: {}", self.item, self.message)
    }
}

impl std::error::Error for ReplayError {}

/// What a successful replay saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Received chunks fed.
    pub recv_chunks: usize,
    /// Sent chunks checked.
    pub sent_chunks: usize,
    /// Sent bytes checked.
    pub sent_bytes: usize,
    /// Events checked against `=` lines.
    pub events: usize,
}

/// Renders an event the way a `=` line would show it (payloads in full).
pub fn describe_event(ev: &Event) -> String {
    match ev {
        Event::Connected(r) => format!("connected {}", r.status),
        Event::Request(r) => format!("request {:?}", r.uri()),
        Event::Text(t) => format!("text {:?}", short(t.as_str())),
        Event::Binary(b) => format!("binary {}", short_hex(b)),
        Event::Fragment(f) => format!(
            "fragment {:?} first={} last={} {}",
            f.kind,
            f.first,
            f.last,
            short_hex(&f.data)
        ),
        Event::Ping(b) => format!("ping {}", hex(b)),
        Event::Pong(b) => format!("pong {}", hex(b)),
        Event::Close(c) => format!("close {} {:?}", u16::from(c.code), c.reason),
        Event::Error(e) => {
            let (c, n) = error_names(e);
            format!("error {c} {n} ({e})")
        }
        other => format!("{other:?}"),
    }
}

fn short(s: &str) -> String {
    if s.len() <= 80 {
        s.to_string()
    } else {
        format!(
            "{}… ({} bytes)",
            s.chars().take(60).collect::<String>(),
            s.len()
        )
    }
}

fn short_hex(b: &[u8]) -> String {
    if b.len() <= 40 {
        hex(b)
    } else {
        format!("{}… ({} bytes)", hex(&b[..32]), b.len())
    }
}

/// The `(class, variant)` pair an `= error` line names for a connection error.
pub fn error_names(e: &ConnectionError) -> (String, String) {
    fn variant(d: String) -> String {
        d.split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or_default()
            .to_string()
    }
    match e {
        ConnectionError::Protocol(p) => ("protocol".into(), variant(format!("{p:?}"))),
        ConnectionError::Handshake(h) => ("handshake".into(), variant(format!("{h:?}"))),
        ConnectionError::TimedOut(t) => ("timeout".into(), variant(format!("{t:?}"))),
        ConnectionError::Eof => ("eof".into(), String::new()),
        other => ("other".into(), variant(format!("{other:?}"))),
    }
}

/// The `=` line for an event (payloads in full or as a digest).
pub fn expected_of(ev: &Event) -> Option<Expected> {
    Some(match ev {
        Event::Connected(r) => Expected::Connected(r.status),
        Event::Request(r) => Expected::Request(r.uri().to_string()),
        Event::Text(t) => Expected::Text(Payload::of(t.as_bytes())),
        Event::Binary(b) => Expected::Binary(Payload::of(b)),
        Event::Fragment(f) => Expected::Fragment {
            kind: match f.kind {
                MessageKind::Text => Kind::Text,
                _ => Kind::Binary,
            },
            first: f.first,
            last: f.last,
            data: Payload::of(&f.data),
        },
        Event::Ping(b) => Expected::Ping(b.to_vec()),
        Event::Pong(b) => Expected::Pong(b.to_vec()),
        Event::Close(c) => Expected::Close(u16::from(c.code), c.reason.clone()),
        Event::Error(e) => {
            let (c, n) = error_names(e);
            Expected::Error(c, n)
        }
        _ => return None,
    })
}

fn matches(exp: &Expected, ev: &Event) -> bool {
    expected_of(ev).is_some_and(|actual| match (exp, &actual) {
        (Expected::Text(p), _) => matches!(ev, Event::Text(t) if p.matches(t.as_bytes())),
        (Expected::Binary(p), _) => matches!(ev, Event::Binary(b) if p.matches(b)),
        (
            Expected::Fragment {
                kind,
                first,
                last,
                data,
            },
            Expected::Fragment {
                kind: k2,
                first: f2,
                last: l2,
                ..
            },
        ) => {
            kind == k2
                && first == f2
                && last == l2
                && matches!(ev, Event::Fragment(f) if data.matches(&f.data))
        }
        (a, b) => a == b,
    })
}

/// Hex of `data` around `at`: up to 16 bytes before and after, with the byte
/// at `at` in brackets.
pub fn hex_context(data: &[u8], at: usize) -> String {
    let start = at.saturating_sub(16);
    let end = data.len().min(at.saturating_add(17));
    let mut s = String::new();
    if start > 0 {
        s.push('…');
    }
    for (i, b) in data.iter().enumerate().take(end).skip(start) {
        if i == at {
            s.push_str(&format!("[{b:02x}]"));
        } else {
            s.push_str(&format!("{b:02x}"));
        }
    }
    if at >= data.len() {
        s.push_str("[end]");
    }
    if end < data.len() {
        s.push('…');
    }
    s
}

struct SentChunk {
    item: usize,
    start: usize,
    data: Vec<u8>,
}

struct Replayer<'t> {
    trace: &'t Trace,
    feed: Feed,
    conn: Connection,
    base: Instant,
    now: Instant,
    actual: Vec<u8>,
    expected: Vec<SentChunk>,
    expected_len: usize,
    events: VecDeque<Event>,
    to_echo: VecDeque<Event>,
    stats: ReplayStats,
}

impl Replayer<'_> {
    fn drain(&mut self) {
        while let Some(b) = self.conn.poll_transmit() {
            self.actual.extend_from_slice(&b);
        }
        while let Some(ev) = self.conn.poll_event() {
            if matches!(ev, Event::Text(_) | Event::Binary(_)) {
                self.to_echo.push_back(ev.clone());
            }
            self.events.push_back(ev);
        }
    }

    /// Where the sent bytes first differ from the recorded ones: chunk
    /// index, offset in it and hex context of both.
    fn diff_message(&self, limit: usize) -> Option<String> {
        let mut expected_all = Vec::with_capacity(self.expected_len);
        for c in &self.expected {
            expected_all.extend_from_slice(&c.data);
        }
        let upto = limit.min(expected_all.len());
        let pos = (0..upto.min(self.actual.len()))
            .find(|&i| expected_all.get(i) != self.actual.get(i))
            .or_else(|| (self.actual.len() < upto).then_some(self.actual.len()))?;
        let (idx, chunk) = self
            .expected
            .iter()
            .enumerate()
            .find(|(_, c)| pos < c.start + c.data.len())?;
        let off = pos - chunk.start;
        let what = if pos >= self.actual.len() {
            format!("the core sent only {} bytes", self.actual.len())
        } else {
            "bytes differ".to_string()
        };
        Some(format!(
            "sent chunk {idx} (trace item {}, {} bytes) differs at byte offset {off} \
             (stream offset {pos}): {what}\n  expected: {}\n  actual:   {}",
            chunk.item,
            chunk.data.len(),
            hex_context(&chunk.data, off),
            hex_context(self.actual.get(chunk.start..).unwrap_or_default(), off),
        ))
    }

    fn fail<T>(&self, item: usize, message: impl Into<String>) -> Result<T, ReplayError> {
        Err(ReplayError {
            item,
            message: message.into(),
        })
    }

    /// Before an input or action: everything the core sent so far must have
    /// been recorded before this point, and every event checked.
    fn check_quiescent(&mut self, item: usize, sent_so_far: usize) -> Result<(), ReplayError> {
        self.drain();
        if self.feed == Feed::Whole && self.actual.len() > sent_so_far {
            let extra = self.actual.get(sent_so_far..).unwrap_or_default();
            return self.fail(
                item,
                format!(
                    "the core sent {} bytes the trace does not record before this point: {}",
                    extra.len(),
                    hex_context(extra, 0)
                ),
            );
        }
        if self.trace.header.events_checked {
            if let Some(ev) = self.events.front() {
                return self.fail(
                    item,
                    format!("unexpected event before this point: {}", describe_event(ev)),
                );
            }
        } else {
            self.events.clear();
        }
        Ok(())
    }

    fn act(&mut self, item: usize, a: &Action) -> Result<(), ReplayError> {
        let c = &mut self.conn;
        let r = match a {
            Action::Accept {
                compression,
                subprotocol,
            } => {
                let mut acc = Accept::new().compression(*compression);
                if let Some(p) = subprotocol {
                    acc = acc.subprotocol(p.clone());
                }
                c.accept(self.now, acc)
            }
            Action::Reject(s) => c.reject(*s, &[], b""),
            Action::SendText(t) => c.send_text(t),
            Action::SendBinary(d) => c.send_binary(d),
            Action::Echo => match self.to_echo.pop_front() {
                Some(Event::Text(t)) => c.send(t),
                Some(Event::Binary(b)) => c.send(b),
                _ => return self.fail(item, "`! echo` but no received message is left to echo"),
            },
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
            Action::Timeout(t) => {
                self.now = self.base + Duration::from_millis(*t);
                c.handle_timeout(self.now);
                Ok(())
            }
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) => self.fail(item, format!("action {a:?} failed in the core: {e}")),
        }
    }

    fn run(mut self) -> Result<ReplayStats, ReplayError> {
        let items = &self.trace.items;
        let mut sent_so_far = 0usize;
        let mut start = 0usize;
        for (i, item) in items.iter().enumerate() {
            if let Item::Sent(d) = item {
                self.expected.push(SentChunk {
                    item: i,
                    start,
                    data: d.clone(),
                });
                start += d.len();
            }
        }
        self.expected_len = start;
        for (i, item) in items.iter().enumerate() {
            match item {
                Item::Recv(d) => {
                    self.check_quiescent(i, sent_so_far)?;
                    self.stats.recv_chunks += 1;
                    match self.feed {
                        Feed::Whole => self.conn.receive(self.now, d),
                        Feed::ByteByByte => {
                            for b in d.chunks(1) {
                                self.conn.receive(self.now, b);
                                self.drain();
                            }
                        }
                    }
                    self.drain();
                }
                Item::RecvEof => {
                    self.check_quiescent(i, sent_so_far)?;
                    self.conn.receive_eof(self.now);
                    self.drain();
                }
                Item::Action(a) => {
                    // Actions are taken while events are being handled, possibly
                    // several before the driver writes: only inputs (received
                    // bytes, end of stream, timers) are synchronisation points.
                    if matches!(a, Action::Timeout(_)) {
                        self.check_quiescent(i, sent_so_far)?;
                    } else {
                        self.drain();
                    }
                    self.act(i, a)?;
                    self.drain();
                }
                Item::Sent(d) => {
                    self.drain();
                    sent_so_far += d.len();
                    self.stats.sent_chunks += 1;
                    self.stats.sent_bytes += d.len();
                    if self.feed == Feed::Whole {
                        if let Some(m) = self.diff_message(sent_so_far) {
                            return self.fail(i, m);
                        }
                    }
                }
                Item::SentEof => {
                    self.drain();
                    if self.feed == Feed::Whole && !self.conn.should_close_transport() {
                        return self.fail(
                            i,
                            format!(
                                "the recording closed the transport here but the core does not \
                                 want to yet (state {:?})",
                                self.conn.state()
                            ),
                        );
                    }
                }
                Item::Expect(e) => {
                    self.drain();
                    if !self.trace.header.events_checked {
                        continue;
                    }
                    match self.events.pop_front() {
                        Some(ev) if matches(e, &ev) => self.stats.events += 1,
                        Some(ev) => {
                            return self.fail(
                                i,
                                format!("expected event {e:?}, got {}", describe_event(&ev)),
                            )
                        }
                        None => return self.fail(i, format!("expected event {e:?}, got none")),
                    }
                }
            }
        }
        self.drain();
        if let Some(m) = self.diff_message(usize::MAX) {
            return self.fail(items.len(), m);
        }
        if self.actual.len() > self.expected_len {
            let extra = self.actual.get(self.expected_len..).unwrap_or_default();
            return self.fail(
                items.len(),
                format!(
                    "the core sent {} bytes after the end of the trace: {}",
                    extra.len(),
                    hex_context(extra, 0)
                ),
            );
        }
        if self.trace.header.events_checked {
            if let Some(ev) = self.events.front() {
                return self.fail(
                    items.len(),
                    format!("unexpected event at the end: {}", describe_event(ev)),
                );
            }
        }
        let negotiated = crate::negotiated_extensions(self.conn.negotiated());
        if self.conn.state() != wsmachine::State::Connecting
            && negotiated != self.trace.header.extensions
        {
            return self.fail(
                items.len(),
                format!(
                    "negotiated extensions differ: trace says {:?}, core says {:?}",
                    self.trace.header.extensions, negotiated
                ),
            );
        }
        Ok(self.stats)
    }
}

/// Replays `trace` against a fresh core and checks every event and sent byte.
///
/// A client trace starts `Connection::client` with the recorded request,
/// key and [`SeededMask`] seed; a server trace starts `Connection::server`
/// and accepts with the recorded `! accept` parameters. The clock is
/// virtual: it starts at an arbitrary instant and moves only at `! timeout`
/// lines.
pub fn replay(trace: &Trace, feed: Feed) -> Result<ReplayStats, ReplayError> {
    let h = &trace.header;
    let base = Instant::now();
    let config = h.config.to_config();
    let conn = match (h.role, &h.request, h.key) {
        (Role::Client, Some(req), Some(key)) => {
            Connection::client(config, req.to_request(), key, SeededMask::new(h.seed), base)
        }
        (Role::Client, _, _) => {
            return Err(ReplayError {
                item: 0,
                message: "client trace without request or key".into(),
            })
        }
        (Role::Server, _, _) => Connection::server(config, base),
    };
    Replayer {
        trace,
        feed,
        conn,
        base,
        now: base,
        actual: Vec::new(),
        expected: Vec::new(),
        expected_len: 0,
        events: VecDeque::new(),
        to_echo: VecDeque::new(),
        stats: ReplayStats::default(),
    }
    .run()
}

/// Replays whole, then byte by byte; the error says which pass failed.
pub fn replay_both(trace: &Trace) -> Result<ReplayStats, String> {
    let stats = replay(trace, Feed::Whole).map_err(|e| format!("whole replay: {e}"))?;
    replay(trace, Feed::ByteByByte).map_err(|e| format!("byte-by-byte replay: {e}"))?;
    Ok(stats)
}
