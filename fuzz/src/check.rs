//! The invariant harness around a [`Connection`]: after every input or
//! command, drain `poll_transmit` (decoding our own frames) and `poll_event`,
//! and check what the connection did against the contract.
//!
//! Checked after every step:
//! - our own output is well-formed: masked iff we are the client, control
//!   frames short and unfragmented, RSV1 only on the first frame of a data
//!   message and only with compression, fragments in order, a Close payload
//!   with a sendable code and UTF-8 reason, and nothing at all after our Close;
//! - events respect the configured limits (message, fragment, control sizes);
//! - no event follows `Event::Error` or `Event::Close`, and `Error` comes once;
//! - a protocol error is followed on the wire by one Close frame carrying the
//!   error's close code; after an error the only output allowed is a Close;
//! - a received Close is answered (our Close is on the wire by the end of the
//!   step), and with auto-pong a Ping is answered with its payload: the Pongs
//!   on the wire are exactly the Pings reported when fewer than
//!   `KEEP_ANSWERED` answered events (answered Pings, Pongs) were reported,
//!   and start with them otherwise;
//! - at most `KEEP_ANSWERED` answered events wait unread, and
//!   `pending_events_for_read_ahead` counts the others;
//! - on every other step `release_close` is called before the events are
//!   taken: when it releases a Close, only answered events come before the
//!   Close or Error event, and our Close is on the wire;
//! - the state only moves forward (Connecting → Open → Closing → Closed) and
//!   is Closed after an error;
//! - everything queued is handed out (`pending_output() == 0` after draining).

use std::time::Instant;

use wsmachine::internals::{FrameHeader, KEEP_ANSWERED, RSV1};
use wsmachine::{
    apply_mask, CloseCode, Connection, ConnectionError, Event, MessageKind, OpCode, Role, State,
};

/// A frame we sent, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireFrame {
    pub(crate) fin: bool,
    pub(crate) rsv: u8,
    pub(crate) opcode: OpCode,
    pub(crate) payload: Vec<u8>,
}

/// Decodes and checks the bytes a connection sends.
#[derive(Debug)]
pub(crate) struct OwnWire {
    role: Role,
    buf: Vec<u8>,
    /// An HTTP head comes first (the handshake): bytes until the blank line.
    pub(crate) http: bool,
    /// The last complete HTTP head seen.
    pub(crate) head: Option<Vec<u8>>,
    /// Stop decoding (the handshake failed: an HTTP error response, no frames).
    pub(crate) stopped: bool,
    pub(crate) compression: bool,
    pub(crate) close_sent: bool,
    in_message: bool,
}

impl OwnWire {
    pub(crate) fn new(role: Role, http: bool) -> Self {
        OwnWire {
            role,
            buf: Vec::new(),
            http,
            head: None,
            stopped: false,
            compression: false,
            close_sent: false,
            in_message: false,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8], frames: &mut Vec<WireFrame>) {
        if self.stopped {
            return;
        }
        self.buf.extend_from_slice(chunk);
        if self.http {
            let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head: Vec<u8> = self.buf.drain(..i + 4).collect();
            self.http = false;
            // A server's error response (400, 426, …) ends the connection: no frames follow.
            if head.starts_with(b"HTTP/") && !head.starts_with(b"HTTP/1.1 101 ") {
                self.stopped = true;
                self.buf.clear();
            }
            self.head = Some(head);
            if self.stopped {
                return;
            }
        }
        loop {
            let (h, n) = match FrameHeader::decode(&self.buf) {
                Ok(Some(x)) => x,
                Ok(None) => return,
                Err(e) => panic!("we sent an undecodable frame header: {e}"),
            };
            let len = usize::try_from(h.payload_len).expect("payload fits in memory");
            if self.buf.len() < n + len {
                return;
            }
            let mut payload: Vec<u8> = self.buf[n..n + len].to_vec();
            self.buf.drain(..n + len);
            match (self.role, h.mask) {
                (Role::Client, Some(m)) => apply_mask(&mut payload, m, 0),
                (Role::Client, None) => panic!("client sent an unmasked frame"),
                (Role::Server, Some(_)) => panic!("server sent a masked frame"),
                (Role::Server, None) => {}
            }
            assert!(
                !self.close_sent,
                "frame {:?} sent after our Close",
                h.opcode
            );
            assert_eq!(h.rsv & !RSV1, 0, "reserved bits {:#b} sent", h.rsv);
            if h.opcode.is_control() {
                assert!(h.fin && len <= 125 && h.rsv == 0, "bad control frame {h:?}");
            } else {
                let first = h.opcode != OpCode::Continuation;
                assert_eq!(
                    first, !self.in_message,
                    "data frame {:?} out of sequence",
                    h.opcode
                );
                if h.rsv & RSV1 != 0 {
                    assert!(first && self.compression, "RSV1 on {h:?}");
                }
                self.in_message = !h.fin;
            }
            if h.opcode == OpCode::Close {
                check_close_payload(&payload);
                self.close_sent = true;
            }
            frames.push(WireFrame {
                fin: h.fin,
                rsv: h.rsv,
                opcode: h.opcode,
                payload,
            });
        }
    }
}

/// A Close payload must be empty or a sendable code with a UTF-8 reason.
pub(crate) fn check_close_payload(payload: &[u8]) {
    assert_ne!(payload.len(), 1, "Close payload of one byte");
    if payload.len() >= 2 {
        let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
        assert!(code.is_sendable(), "Close with unsendable code {code}");
        assert!(
            std::str::from_utf8(&payload[2..]).is_ok(),
            "Close reason is not UTF-8"
        );
    }
}

fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

fn rank(s: State) -> u8 {
    match s {
        State::Connecting => 0,
        State::Open => 1,
        State::Closing => 2,
        State::Closed => 3,
    }
}

/// The limits events are checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_frame_size: usize,
    pub(crate) max_message_size: usize,
    pub(crate) auto_pong: bool,
}

/// What one step produced.
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// The bytes sent, as handed out by `poll_transmit`.
    pub(crate) bytes: Vec<u8>,
    pub(crate) frames: Vec<WireFrame>,
    pub(crate) events: Vec<Event>,
}

/// A connection under observation.
pub(crate) struct Checked {
    pub(crate) conn: Connection,
    pub(crate) wire: OwnWire,
    limits: Limits,
    state: State,
    error: Option<ConnectionError>,
    close_event: bool,
    /// Streaming mode: kind and size so far of the message in progress.
    fragment: Option<(MessageKind, usize)>,
    /// Pongs the application queued since the last step (see `pong`).
    app_pongs: Vec<Vec<u8>>,
    /// Steps taken (`release_close` is tried on odd ones).
    steps: u64,
    /// Some step reported `KEEP_ANSWERED` answered events: later ones may
    /// have gone unreported.
    pub(crate) capped: bool,
}

/// Whether `ev` is an answered event: a Pong, or a Ping the core answered.
pub(crate) fn is_answered(ev: &Event, auto_pong: bool) -> bool {
    matches!(ev, Event::Pong(_)) || (auto_pong && matches!(ev, Event::Ping(_)))
}

impl Checked {
    pub(crate) fn new(conn: Connection, limits: Limits, http: bool) -> Self {
        let role = conn.role();
        let state = conn.state();
        let mut wire = OwnWire::new(role, http);
        wire.compression = conn.negotiated().deflate.is_some();
        Checked {
            conn,
            wire,
            limits,
            state,
            error: None,
            close_event: false,
            fragment: None,
            app_pongs: Vec::new(),
            steps: 0,
            capped: false,
        }
    }

    /// `Connection::pong`, noting the payload so the step tells it from
    /// the core's answers.
    pub(crate) fn pong(&mut self, payload: &[u8]) {
        if self.conn.pong(payload).is_ok() {
            self.app_pongs.push(payload.to_vec());
        }
    }

    pub(crate) fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Drains output and events after an input or command, and checks them.
    pub(crate) fn step(&mut self) -> Step {
        let close_sent_before = self.wire.close_sent;
        let error_before = self.error.is_some();
        let mut step = Step::default();
        self.steps += 1;
        let pending = self.conn.pending_events();
        let counted = self.conn.pending_events_for_read_ahead();
        assert!(
            counted <= pending && pending - counted <= KEEP_ANSWERED,
            "{pending} events waiting, {counted} counted for read-ahead"
        );
        // A driver whose application only sends releases the Close held
        // behind answered events; half the steps do too, the others leave
        // it to taking the Close or Error event.
        let released = self.steps % 2 == 1 && self.conn.release_close();
        if released {
            assert_eq!(counted, 1, "Close released behind {counted} events");
            assert!(!self.conn.release_close(), "Close released twice");
        }
        // The adapter loop: transmit, then events, until both are empty
        // (taking an event can release output, e.g. the Close echo).
        loop {
            while let Some(chunk) = self.conn.poll_transmit() {
                self.wire.push(&chunk, &mut step.frames);
                step.bytes.extend_from_slice(&chunk);
            }
            assert_eq!(self.conn.pending_output(), 0, "output left after draining");
            // The negotiation is known once the handshake completes.
            if !self.wire.compression && self.conn.negotiated().deflate.is_some() {
                self.wire.compression = true;
            }
            let before = step.events.len();
            while let Some(ev) = self.conn.poll_event() {
                self.check_event(&ev);
                step.events.push(ev);
            }
            if step.events.len() == before {
                break;
            }
        }
        assert_eq!(self.conn.pending_events(), 0);
        assert_eq!(self.conn.pending_events_for_read_ahead(), 0);
        if released {
            let (last, ahead) = step.events.split_last().expect("a Close or Error event");
            assert!(
                matches!(last, Event::Close(_) | Event::Error(_)),
                "released the Close behind {last:?}"
            );
            assert!(
                ahead.iter().all(|e| is_answered(e, self.limits.auto_pong)),
                "released the Close behind {ahead:?}"
            );
            assert!(
                step.frames.last().map(|f| f.opcode) == Some(OpCode::Close),
                "release_close sent no Close"
            );
        }
        if error_before {
            for f in &step.frames {
                assert_eq!(
                    f.opcode,
                    OpCode::Close,
                    "{:?} frame sent after Event::Error",
                    f.opcode
                );
            }
        } else if let Some(err) = &self.error {
            self.check_error_step(err, &step, close_sent_before);
        }
        if self.close_event {
            assert!(
                self.wire.close_sent || self.wire.stopped,
                "peer's Close not answered"
            );
        }
        self.check_pongs(&step, close_sent_before);
        let state = self.conn.state();
        assert!(
            rank(state) >= rank(self.state),
            "state went back from {:?} to {state:?}",
            self.state
        );
        self.state = state;
        if self.error.is_some() {
            assert_eq!(state, State::Closed, "state after Event::Error");
            assert!(
                self.conn.should_close_transport(),
                "transport kept after Event::Error"
            );
        }
        step
    }

    /// The answered events of a step, and the Pongs on the wire against
    /// the Pings reported (RFC 6455 §5.5.2, §5.5.3).
    fn check_pongs(&mut self, step: &Step, close_sent_before: bool) {
        let answered = step
            .events
            .iter()
            .filter(|e| is_answered(e, self.limits.auto_pong))
            .count();
        assert!(
            answered <= KEEP_ANSWERED,
            "{answered} answered events in one step"
        );
        self.capped |= answered == KEEP_ANSWERED;
        let mut pongs: Vec<&[u8]> = step
            .frames
            .iter()
            .filter(|f| f.opcode == OpCode::Pong)
            .map(|f| &f.payload[..])
            .collect();
        // The application's own Pongs (none after our Close).
        for p in std::mem::take(&mut self.app_pongs) {
            if let Some(i) = pongs.iter().position(|q| *q == &p[..]) {
                pongs.remove(i);
            } else {
                assert!(
                    close_sent_before || self.wire.stopped,
                    "Pong {p:?} not sent"
                );
            }
        }
        if !self.limits.auto_pong || close_sent_before {
            // No Pong from the core (none after our Close, RFC 6455 §5.5.1).
            assert!(pongs.is_empty(), "{} Pongs not asked for", pongs.len());
            return;
        }
        let pings: Vec<&[u8]> = step
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Ping(p) => Some(&p[..]),
                _ => None,
            })
            .collect();
        // At most 16 Pongs wait; more Pings in one read are answered by
        // the first 15 and the latest (RFC 6455 §5.5.3).
        assert!(pongs.len() <= 16, "{} Pongs in one step", pongs.len());
        if answered < KEEP_ANSWERED {
            // Every Ping of the step was reported, so each is answered with
            // its payload, in order, and nothing else is.
            assert_eq!(pongs, pings, "Pings not answered with their payload");
        } else {
            // Later ones may be unreported: the reported Pings are the
            // first received, answered first.
            let n = pings.len().min(15);
            assert!(
                pongs.len() >= pings.len() && pongs[..n] == pings[..n],
                "Pings {pings:?} answered by {pongs:?}"
            );
        }
    }

    fn check_error_step(&self, err: &ConnectionError, step: &Step, close_sent_before: bool) {
        let wants_close = matches!(
            err,
            ConnectionError::Protocol(_) | ConnectionError::TimedOut(wsmachine::Timeout::Pong)
        );
        if !wants_close || close_sent_before {
            return;
        }
        let last = step
            .frames
            .last()
            .unwrap_or_else(|| panic!("no Close frame after {err}"));
        assert_eq!(
            last.opcode,
            OpCode::Close,
            "last frame after {err} is not a Close"
        );
        let sent = close_code(&last.payload).expect("error Close has a code");
        let code = u16::from(err.close_code());
        if CloseCode::from(code).is_sendable() {
            assert_eq!(sent, code, "Close code for {err}");
        }
    }

    fn check_event(&mut self, ev: &Event) {
        assert!(self.error.is_none(), "event {ev:?} after Event::Error");
        assert!(!self.close_event, "event {ev:?} after Event::Close");
        let l = self.limits;
        match ev {
            Event::Request(_) => assert_eq!(self.conn.role(), Role::Server),
            Event::Connected(r) => {
                assert_eq!(self.conn.role(), Role::Client);
                assert_eq!(r.status, 101);
            }
            Event::Text(t) => {
                assert!(
                    self.fragment.is_none(),
                    "whole message inside a fragmented one"
                );
                assert!(t.len() <= l.max_message_size, "text of {} bytes", t.len());
                assert!(std::str::from_utf8(t.as_bytes()).is_ok());
            }
            Event::Binary(b) => {
                assert!(
                    self.fragment.is_none(),
                    "whole message inside a fragmented one"
                );
                assert!(b.len() <= l.max_message_size, "binary of {} bytes", b.len());
            }
            Event::Fragment(f) => {
                let size = match (self.fragment, f.first) {
                    (None, true) => f.data.len(),
                    (Some((kind, so_far)), false) => {
                        assert_eq!(kind, f.kind, "fragment kind changed");
                        so_far + f.data.len()
                    }
                    (cur, first) => panic!("fragment first={first} while in message {cur:?}"),
                };
                assert!(
                    size <= l.max_message_size.max(l.max_frame_size),
                    "streamed message of {size} bytes"
                );
                self.fragment = (!f.last).then_some((f.kind, size));
            }
            Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
            Event::Close(f) => {
                assert!(
                    f.code.is_sendable() || f.code == CloseCode::NO_STATUS,
                    "Close event with code {}",
                    f.code
                );
                assert!(f.reason.len() <= 123);
                self.close_event = true;
            }
            Event::Error(e) => self.error = Some(e.clone()),
            other => panic!("unexpected event {other:?}"),
        }
    }
}

/// A fixed instant for a run (targets advance it by durations).
pub(crate) fn epoch() -> Instant {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}
