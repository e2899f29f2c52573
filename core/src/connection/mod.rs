//! The connection state machine: the opening handshake, then a
//! [`ReceiveHalf`] and a [`SendHalf`] that can be split apart.

mod link;
mod recv;
mod send;
mod stats;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use recv::{ReceiveHalf, State, KEEP_ANSWERED};
pub use send::SendHalf;
pub use stats::Stats;

use link::Link;

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::deflate::{Compressor, Decompressor};
use crate::error::{ConnectionError, HandshakeError, SendError, Timeout};
use crate::handshake::{
    accept_response, error_response, reject_response, Accept, ClientHandshake, ClientRequest,
    Negotiated, Request, ServerHandshake,
};
use crate::http::Response;
use crate::mask::MaskSource;
use crate::message::{Fragment, Message, MessageKind, Utf8Bytes};
use crate::prepared::PreparedMessage;
use crate::Role;

/// What the connection reports to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Server: a valid opening request arrived. Answer it with
    /// [`Connection::accept`] or [`Connection::reject`].
    Request(Box<Request>),
    /// Client: the server accepted; [`Connection::negotiated`] tells what was agreed.
    Connected(Box<Response>),
    /// A whole text message (or, in streaming mode, see [`Event::Fragment`]).
    Text(Utf8Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// A frame of a message, when `Config::reassemble` is off.
    Fragment(Fragment),
    /// A Ping arrived.
    ///
    /// With `Config::auto_pong` on (the default) the core has already
    /// queued its Pong (with the payload; none once our Close is queued,
    /// as the closing handshake answers it), so the event is only news.
    /// Such answered Pings, and Pongs, need nothing from the application
    /// and do not count in [`Connection::pending_events_for_read_ahead`];
    /// so that they cannot pile up meanwhile, at most 16 of them wait
    /// unread. One that arrives while 16 wait is answered all the same but
    /// not reported; reporting resumes once the application takes one of
    /// those waiting. The Pings and Pongs reported are thus the ones
    /// received, in order, less those that arrived while 16 waited.
    ///
    /// With `auto_pong` off every Ping is reported (the application
    /// answers it), and it counts against read-ahead like a message.
    /// Nothing but answered Pings and Pongs is ever left unreported.
    Ping(Bytes),
    /// A Pong arrived. Counts with the answered Pings: at most 16 of them
    /// wait unread, later ones are not reported (see [`Event::Ping`]).
    Pong(Bytes),
    /// The peer's Close frame (already echoed when the peer started the close).
    Close(CloseFrame),
    /// The connection failed. Reported once; no event follows it.
    Error(ConnectionError),
}

enum Phase {
    Client(Box<ClientHandshake>),
    Server(Box<ServerHandshake>),
    AwaitingAccept(Box<Request>),
    Open,
    Done,
}

/// A WebSocket connection, from the opening handshake to the closing one,
/// with no I/O: bytes and time go in, events and bytes come out.
///
/// Four kinds of method, as in any sans-IO engine:
/// - getters: [`state`](Connection::state), [`role`](Connection::role),
///   [`stats`](Connection::stats),
///   [`negotiated`](Connection::negotiated), [`should_close_transport`](Connection::should_close_transport);
/// - input: [`receive`](Connection::receive), [`receive_eof`](Connection::receive_eof),
///   [`handle_timeout`](Connection::handle_timeout), and
///   [`resume`](Connection::resume) while
///   [`has_pending_work`](Connection::has_pending_work) says received bytes
///   wait (a large compressed message is inflated a slice per call);
/// - commands: [`send`](Connection::send), [`send_text`](Connection::send_text),
///   [`send_prepared`](Connection::send_prepared),
///   [`send_binary`](Connection::send_binary), [`ping`](Connection::ping),
///   [`close`](Connection::close), [`accept`](Connection::accept), [`reject`](Connection::reject);
/// - output, to call in this order after every input or command:
///   [`poll_transmit`](Connection::poll_transmit) until `None` (write each
///   chunk), [`poll_event`](Connection::poll_event) until `None`, then
///   [`poll_timeout`](Connection::poll_timeout) to arm the timer; close the
///   transport when [`should_close_transport`](Connection::should_close_transport) says so.
///
/// ```
/// use std::time::Instant;
/// use wsmachine::{ClientRequest, Config, Connection, Event, SeededMask, Accept};
///
/// let now = Instant::now();
/// let mut client = Connection::client(Config::default(), ClientRequest::new("h", "/"), [1; 16], SeededMask::new([2; 32]), now);
/// let mut server = Connection::server(Config::default(), now);
/// while let Some(b) = client.poll_transmit() { server.receive(now, &b); }
/// let Some(Event::Request(_)) = server.poll_event() else { panic!() };
/// server.accept(now, Accept::new()).unwrap();
/// server.send_text("hi").unwrap();
/// while let Some(b) = server.poll_transmit() { client.receive(now, &b); }
/// assert!(matches!(client.poll_event(), Some(Event::Connected(_))));
/// assert!(matches!(client.poll_event(), Some(Event::Text(t)) if t == "hi"));
/// ```
pub struct Connection {
    role: Role,
    phase: Phase,
    rx: ReceiveHalf,
    tx: SendHalf,
    handshake_deadline: Option<Instant>,
    negotiated: Negotiated,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("negotiated", &self.negotiated)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn new(
        role: Role,
        config: Arc<Config>,
        phase: Phase,
        mask: Option<Box<dyn MaskSource>>,
        now: Instant,
    ) -> Self {
        let link = Arc::new(Link::default());
        Connection {
            role,
            handshake_deadline: now.checked_add(config.opening_handshake_timeout),
            tx: SendHalf::new(
                role,
                mask,
                link.clone(),
                // Never below the high-water mark: a sender that waited
                // there must not trip it.
                config
                    .max_pending_output
                    .map(|l| l.max(config.write_buffer_high_water)),
            ),
            rx: ReceiveHalf::new(role, config, link, now),
            phase,
            negotiated: Negotiated::default(),
        }
    }

    /// A client connection: queues the opening request at once.
    ///
    /// `key` is the 16-byte `Sec-WebSocket-Key` nonce and `mask` the source
    /// of masking keys; take both from the OS random generator (RFC 6455
    /// §4.1, §5.3), or from fixed seeds in tests.
    pub fn client(
        config: impl Into<Arc<Config>>,
        request: ClientRequest,
        key: [u8; 16],
        mask: impl MaskSource + 'static,
        now: Instant,
    ) -> Self {
        let config = config.into();
        let (hs, bytes) = ClientHandshake::new(request, key, &config);
        let mut c = Connection::new(
            Role::Client,
            config,
            Phase::Client(Box::new(hs)),
            Some(Box::new(mask)),
            now,
        );
        c.tx.queue_raw(bytes);
        c
    }

    /// A server connection waiting for the client's request.
    pub fn server(config: impl Into<Arc<Config>>, now: Instant) -> Self {
        let config = config.into();
        let hs = ServerHandshake::new(&config);
        Connection::new(Role::Server, config, Phase::Server(Box::new(hs)), None, now)
    }

    /// A connection whose handshake was done elsewhere (for example a stream
    /// upgraded by an HTTP server): open at once with `negotiated`.
    /// `mask` is needed for [`Role::Client`] only.
    ///
    /// # Panics
    ///
    /// When `role` is [`Role::Client`] and `mask` is `None`: client frames
    /// must be masked with unpredictable keys (RFC 6455 §5.3), and there is
    /// no safe default.
    pub fn upgraded(
        role: Role,
        config: impl Into<Arc<Config>>,
        negotiated: Negotiated,
        mask: Option<Box<dyn MaskSource>>,
        now: Instant,
    ) -> Self {
        assert!(
            role == Role::Server || mask.is_some(),
            "a client connection needs a MaskSource"
        );
        let mut c = Connection::new(role, config.into(), Phase::Done, mask, now);
        c.open(negotiated, now);
        c
    }

    fn open(&mut self, negotiated: Negotiated, now: Instant) {
        let (comp, decomp) = match (&negotiated.deflate, &self.rx.config().deflate) {
            (Some(params), cfg) => {
                let default = crate::deflate::DeflateConfig::default();
                let cfg = cfg.as_ref().unwrap_or(&default);
                let mut decompressor = Decompressor::new(params, self.role);
                if cfg.pools_streams() {
                    decompressor.pool_between_messages();
                }
                (
                    Some(Compressor::new(params, cfg, self.role)),
                    Some(decompressor),
                )
            }
            (None, _) => (None, None),
        };
        self.tx.set_open(comp);
        self.rx.set_open(decomp, now);
        self.negotiated = negotiated;
        self.phase = Phase::Open;
        self.handshake_deadline = None;
    }

    fn fail_handshake(&mut self, err: HandshakeError) {
        if self.role == Role::Server {
            self.tx.queue_raw(error_response(&err));
        }
        self.rx.finish();
        self.rx
            .push_event(Event::Error(ConnectionError::Handshake(err)));
        self.phase = Phase::Done;
        self.handshake_deadline = None;
    }

    /// The connection's counters: messages and bytes each way, compressed
    /// bytes, keepalive Pings and automatic Pongs, and the last keepalive
    /// round-trip time (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.tx.add_stats(self.rx.stats())
    }

    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The connection state.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Client(_) | Phase::Server(_) | Phase::AwaitingAccept(_) => State::Connecting,
            Phase::Open | Phase::Done => self.rx.state(),
        }
    }

    /// What the opening handshake agreed on (empty until it completes).
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.rx.config()
    }

    /// Whether the transport should be closed now: the connection is over and
    /// everything queued has been handed out by `poll_transmit`.
    pub fn should_close_transport(&self) -> bool {
        self.rx.is_done_with_transport() && self.pending_output() == 0
    }

    /// Feeds bytes read from the transport.
    ///
    /// After calling this, call `poll_transmit`, `poll_event` and
    /// `poll_timeout` (see the type's documentation).
    pub fn receive(&mut self, now: Instant, data: &[u8]) {
        match &mut self.phase {
            Phase::Open => self.rx.receive(now, data),
            Phase::Client(hs) => match hs.receive(data) {
                Ok(None) => {}
                Ok(Some((negotiated, response, rest))) => {
                    self.open(negotiated, now);
                    self.rx.push_event(Event::Connected(Box::new(response)));
                    self.rx.receive(now, &rest);
                }
                Err(e) => self.fail_handshake(e),
            },
            Phase::Server(hs) => match hs.receive(data) {
                Ok(None) => {}
                Ok(Some(req)) => {
                    let rest = hs.take_rest();
                    self.rx.stash(&rest);
                    let req = Box::new(req);
                    self.phase = Phase::AwaitingAccept(req.clone());
                    self.rx.push_event(Event::Request(req));
                }
                Err(e) => self.fail_handshake(e),
            },
            Phase::AwaitingAccept(_) => {
                // A client may not send frames before the 101 (RFC 6455 §4.1);
                // bound what an impatient one makes us hold.
                if self.rx.stashed() + data.len() > self.rx.config().max_handshake_size {
                    self.fail_handshake(HandshakeError::HeadTooLarge {
                        limit: self.rx.config().max_handshake_size,
                    });
                } else {
                    self.rx.stash(data);
                }
            }
            Phase::Done => {}
        }
    }

    /// Whether bytes already received wait to be processed without new
    /// input: a compressed frame is inflated at most 256 KiB per call, and
    /// the rest waits for [`resume`](Connection::resume). Check it after
    /// draining the events of every `receive` and `resume`, and call
    /// `resume` (yielding to other work in between, if there is any)
    /// until it is false; see [`ReceiveHalf::has_pending_work`].
    pub fn has_pending_work(&self) -> bool {
        matches!(self.phase, Phase::Open) && self.rx.has_pending_work()
    }

    /// Processes the next slice of what was received; see
    /// [`has_pending_work`](Connection::has_pending_work). After calling
    /// this, call `poll_transmit`, `poll_event` and `poll_timeout`, as after
    /// `receive`.
    pub fn resume(&mut self, now: Instant) {
        if let Phase::Open = self.phase {
            self.rx.resume(now);
        }
    }

    /// The transport reached end of stream.
    pub fn receive_eof(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Open | Phase::Done => self.rx.receive_eof(now),
            Phase::Client(hs) => {
                let e = hs.receive_eof();
                self.fail_handshake(e);
            }
            Phase::Server(_) | Phase::AwaitingAccept(_) => {
                self.fail_handshake(HandshakeError::Http(
                    "connection closed during the handshake".into(),
                ));
            }
        }
    }

    /// Server: accepts the pending request, queueing the 101 response.
    pub fn accept(&mut self, now: Instant, accept: Accept) -> Result<(), SendError> {
        let Phase::AwaitingAccept(req) = &self.phase else {
            return Err(if self.role == Role::Client {
                SendError::WrongRole
            } else {
                SendError::NoPendingRequest
            });
        };
        let (bytes, negotiated) = accept_response(req, &accept, self.rx.config().deflate.as_ref())?;
        self.tx.queue_raw(bytes);
        self.open(negotiated, now);
        self.rx.process(now);
        Ok(())
    }

    /// Server: rejects the pending request with an HTTP status, headers and body.
    pub fn reject(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), SendError> {
        if !matches!(self.phase, Phase::AwaitingAccept(_)) {
            return Err(SendError::NoPendingRequest);
        }
        let bytes = reject_response(status, headers, body)?;
        self.tx.queue_raw(bytes);
        self.rx.finish();
        self.phase = Phase::Done;
        self.handshake_deadline = None;
        Ok(())
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.tx.send_text(text)
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.tx.send_binary(data)
    }

    /// Sends a message (large server payloads go out without a copy).
    pub fn send(&mut self, msg: impl Into<Message>) -> Result<(), SendError> {
        self.tx.send(msg)
    }

    /// Sends a message encoded once for many connections; see
    /// [`SendHalf::send_prepared`] and [`PreparedMessage`].
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), SendError> {
        self.tx.send_prepared(msg)
    }

    /// Sends a message uncompressed even when compression was negotiated.
    pub fn send_uncompressed(&mut self, msg: impl Into<Message>) -> Result<(), SendError> {
        self.tx.send_uncompressed(msg)
    }

    /// Sends one fragment of a streamed message (see [`SendHalf::send_fragment`]).
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        last: bool,
    ) -> Result<(), SendError> {
        self.tx.send_fragment(kind, data, last)
    }

    /// Sends a Ping.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.tx.ping(payload)
    }

    /// Sends an unsolicited Pong.
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.tx.pong(payload)
    }

    /// Starts the closing handshake.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.tx.close(now, code, reason)
    }

    /// The next bytes to write, in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.tx.poll_transmit()
    }

    /// The next bytes to write, borrowed: write what the transport takes,
    /// then report it with [`Connection::advance_transmit`]. No reference
    /// counting per call, unlike `poll_transmit`; see
    /// [`SendHalf::peek_transmit`].
    ///
    /// ```
    /// # use std::time::Instant;
    /// use wsmachine::{Config, Connection, Negotiated, Role};
    /// let mut conn = Connection::upgraded(Role::Server, Config::default(), Negotiated::default(), None, Instant::now());
    /// conn.send_text("hi").unwrap();
    /// let mut wire = Vec::new();
    /// while let Some(buf) = conn.peek_transmit() {
    ///     let n = buf.len();
    ///     wire.extend_from_slice(buf);
    ///     conn.advance_transmit(n);
    /// }
    /// assert_eq!(wire, b"\x81\x02hi");
    /// ```
    #[must_use]
    pub fn peek_transmit(&mut self) -> Option<&[u8]> {
        self.tx.peek_transmit()
    }

    /// The queued output as slices for one vectored write; see
    /// [`SendHalf::peek_transmit_vectored`].
    pub fn peek_transmit_vectored<'a>(&'a mut self, bufs: &mut [std::io::IoSlice<'a>]) -> usize {
        self.tx.peek_transmit_vectored(bufs)
    }

    /// Marks the first `n` bytes of the queued output as written (what
    /// [`Connection::peek_transmit`] or
    /// [`Connection::peek_transmit_vectored`] showed).
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx.advance_transmit(n)
    }

    /// Drops every byte queued for the transport; see
    /// [`SendHalf::clear_transmit`].
    pub fn clear_transmit(&mut self) {
        self.tx.clear_transmit()
    }

    /// Bytes queued for writing and not yet handed out. Control frames the
    /// connection decided to send but has not encoded yet (a Pong, or the
    /// Close that taking a `Close` or `Error` event releases) count as at
    /// least one byte, so a loop that writes while this is non-zero sends
    /// them; `poll_transmit` encodes them.
    pub fn pending_output(&self) -> usize {
        self.tx.pending_output() + usize::from(self.tx.has_pending_replies())
    }

    /// The next event, if any.
    ///
    /// Its one effect beyond the queue: taking a [`Event::Close`] or
    /// [`Event::Error`] releases the Close frame that answers it (the echo
    /// of the peer's Close, or ours after a protocol error), held until now
    /// so that the application's answers to the events before it are sent
    /// first. After taking one, transmit: the Close is pending output.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.rx.poll_event()
    }

    /// Events waiting to be taken with `poll_event`. An adapter that reads
    /// ahead (to answer Pings while the application only sends) can bound
    /// its read-ahead with this, and should leave events in the core until
    /// the application asks: replies to a Close or a protocol error are
    /// released when their event is taken, after the application's answers
    /// to the messages before them (or by [`Connection::release_close`]
    /// when only answered Pings and Pongs come before). To bound
    /// read-ahead, [`Connection::pending_events_for_read_ahead`] leaves
    /// those out.
    pub fn pending_events(&self) -> usize {
        self.rx.pending_events()
    }

    /// Events waiting that should hold back reading ahead: all but the
    /// Pings the core has answered and the Pongs (see
    /// [`ReceiveHalf::pending_events_for_read_ahead`]).
    pub fn pending_events_for_read_ahead(&self) -> usize {
        self.rx.pending_events_for_read_ahead()
    }

    /// Queues the Close frame held back behind unread events (the echo of
    /// the peer's Close, or ours after a protocol error) when only answered
    /// Pings and Pongs come before its event; takes no event. Returns
    /// whether a Close frame was queued. See [`ReceiveHalf::release_close`].
    ///
    /// After calling this: call `poll_transmit` if it returned `true`.
    pub fn release_close(&mut self) -> bool {
        self.rx.release_close()
    }

    /// When `handle_timeout` should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            // Once done and written out, nothing is left to time.
            Phase::Open if self.rx.is_done_with_transport() && self.pending_output() == 0 => None,
            Phase::Open => self.rx.poll_timeout(),
            Phase::Done => None,
            _ => self.handshake_deadline,
        }
    }

    /// Runs due timers. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Open => {
                self.rx.handle_timeout(now);
                if self.rx.should_abandon_output() {
                    // The peer did not take our last bytes in time: drop
                    // them, so that `should_close_transport` says to close.
                    self.tx.clear_transmit();
                }
            }
            Phase::Done => {}
            _ => {
                if self.handshake_deadline.is_some_and(|d| now >= d) {
                    self.rx.finish();
                    self.rx.push_event(Event::Error(ConnectionError::TimedOut(
                        Timeout::OpeningHandshake,
                    )));
                    self.phase = Phase::Done;
                    self.handshake_deadline = None;
                }
            }
        }
    }

    /// Splits an open connection into halves that can live on separate tasks;
    /// compression keeps working on both. Returns the connection unchanged if
    /// the opening handshake has not completed.
    #[allow(clippy::result_large_err)]
    pub fn split(self) -> Result<(ReceiveHalf, SendHalf), Connection> {
        match self.phase {
            Phase::Open => Ok((self.rx, self.tx)),
            _ => Err(self),
        }
    }

    /// The halves, borrowed (to drive them separately without splitting).
    pub fn halves(&mut self) -> (&mut ReceiveHalf, &mut SendHalf) {
        (&mut self.rx, &mut self.tx)
    }
}
