//! Replays a [`Trace`] against a fresh core and checks events and sent bytes.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use wsmachine::{
    Accept, CloseCode, Connection, ConnectionError, Event, MessageKind, Role, SeededMask,
};

use crate::trace::{hex, Action, Expected, Item, Kind, Payload, SentCheck, Trace};

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
    fn stream(&self) -> bool {
        self.trace.header.sent == SentCheck::Stream
    }

    fn drain(&mut self) {
        loop {
            while let Some(b) = self.conn.poll_transmit() {
                self.actual.extend_from_slice(&b);
            }
            // An adapter hands events to the application one `recv` at a time,
            // and the core answers the peer's Close only once its event is
            // taken: a stream trace takes each event at its `=` line, as the
            // application did, so the Close answer lands where it did live.
            if !self.stream() {
                while self.take_event() {}
            }
            // A large compressed message is inflated a slice per call; the
            // driver resumes before it reads again.
            if !self.conn.has_pending_work() {
                break;
            }
            self.conn.resume(self.now);
        }
    }

    /// Moves one event from the core to the queue checked by `=` lines.
    fn take_event(&mut self) -> bool {
        let Some(ev) = self.conn.poll_event() else {
            return false;
        };
        if matches!(ev, Event::Text(_) | Event::Binary(_)) {
            self.to_echo.push_back(ev.clone());
        }
        self.events.push_back(ev);
        while let Some(b) = self.conn.poll_transmit() {
            self.actual.extend_from_slice(&b);
        }
        true
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
        if self.stream() {
            // Adapter chunking and read-ahead: no synchronisation points.
            return Ok(());
        }
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
                    if self.feed == Feed::Whole && !self.stream() {
                        if let Some(m) = self.diff_message(sent_so_far) {
                            return self.fail(i, m);
                        }
                    }
                }
                Item::SentEof => {
                    self.drain();
                    if self.feed == Feed::Whole
                        && !self.stream()
                        && !self.conn.should_close_transport()
                    {
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
                    if self.events.is_empty() {
                        self.take_event();
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
        if self.stream() {
            while self.take_event() {}
            let mut expected = Vec::with_capacity(self.expected_len);
            for c in &self.expected {
                expected.extend_from_slice(&c.data);
            }
            if let Some(m) = stream_diff(self.trace.header.role, &expected, &self.actual) {
                return self.fail(items.len(), m);
            }
        } else if let Some(m) = self.diff_message(usize::MAX) {
            return self.fail(items.len(), m);
        }
        if !self.stream() && self.actual.len() > self.expected_len {
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
        let closed_last = items
            .iter()
            .rev()
            .find(|i| matches!(i, Item::Action(_) | Item::Expect(_)))
            .is_some_and(|i| matches!(i, Item::Action(Action::Close(..))));
        if self.stream() && closed_last {
            // An adapter's `close()` completes the closing handshake itself
            // and need not hand the peer's Close to the application after it
            // (wsmachine-smol does not, wsmachine-tokio does): the answer to
            // our own Close, last, is not an event the trace must show.
            if self.events.len() == 1 && matches!(self.events.front(), Some(Event::Close(_))) {
                self.events.clear();
            }
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

/// The frames of a client's sent stream with their masking keys zeroed and
/// payloads unmasked (the HTTP head before them as it is), so that two
/// streams that differ only in masking keys compare equal.
fn unmasked(stream: &[u8]) -> Vec<u8> {
    let body = stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(stream.len(), |p| p + 4);
    let mut out = stream.get(..body).unwrap_or_default().to_vec();
    let mut rest = stream.get(body..).unwrap_or_default();
    while rest.len() >= 2 {
        let (b1, len7) = (rest[1], usize::from(rest[1] & 0x7f));
        let (ext, len) = match len7 {
            126 if rest.len() >= 4 => (2, usize::from(u16::from_be_bytes([rest[2], rest[3]]))),
            127 if rest.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[2..10]);
                (
                    8,
                    usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX),
                )
            }
            126 | 127 => break,
            n => (0, n),
        };
        let masked = b1 & 0x80 != 0;
        let head: usize = 2 + ext + if masked { 4 } else { 0 };
        let Some(payload) = head.checked_add(len).and_then(|end| rest.get(head..end)) else {
            break;
        };
        out.extend_from_slice(&rest[..2 + ext]);
        if masked {
            let key = [rest[2 + ext], rest[3 + ext], rest[4 + ext], rest[5 + ext]];
            out.extend_from_slice(&[0; 4]);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        rest = &rest[head + len..];
    }
    // A truncated last frame is compared as it is.
    out.extend_from_slice(rest);
    out
}

/// A stream trace's sent-bytes check: the concatenations must be equal,
/// after [`unmasked`] for a client (an adapter masks with its own random
/// source, the replaying core with the trace's seed).
fn stream_diff(role: Role, expected: &[u8], actual: &[u8]) -> Option<String> {
    let (e, a) = match role {
        Role::Client => (unmasked(expected), unmasked(actual)),
        Role::Server => (expected.to_vec(), actual.to_vec()),
    };
    if e == a {
        return None;
    }
    let pos = e
        .iter()
        .zip(a.iter())
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    Some(format!(
        "the concatenated sent bytes{} differ at stream offset {pos} (recorded {} bytes, core {} bytes)\n  expected: {}\n  actual:   {}",
        if role == Role::Client { ", masking keys removed," } else { "" },
        e.len(),
        a.len(),
        hex_context(&e, pos),
        hex_context(&a, pos),
    ))
}

/// Checks that the trace records the peer's verdict and that it is `ok`:
/// a session the peer rejected, or whose verdict was never collected, is
/// no evidence of conformance, however well it replays.
pub fn check_verdict(trace: &Trace) -> Result<(), String> {
    match &trace.header.verdict {
        Some(v) if v.ok => Ok(()),
        Some(v) => Err(format!("the peer rejected this session: verdict: {v}")),
        None => Err("the trace has no `verdict:` line (the peer's conclusion)".into()),
    }
}

/// Checks the verdict ([`check_verdict`]), then replays whole, then byte by
/// byte; the error says which check failed.
pub fn replay_both(trace: &Trace) -> Result<ReplayStats, String> {
    check_verdict(trace)?;
    let stats = replay(trace, Feed::Whole).map_err(|e| format!("whole replay: {e}"))?;
    replay(trace, Feed::ByteByByte).map_err(|e| format!("byte-by-byte replay: {e}"))?;
    Ok(stats)
}
