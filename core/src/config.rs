//! Limits, timers and behaviour switches, with defaults safe for a server on
//! the open internet.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::budget::MemoryBudget;
use crate::deflate::DeflateConfig;

/// Connection configuration.
///
/// | field | default | why |
/// |---|---|---|
/// | `max_frame_size` | 16 MiB | one frame's payload, checked from the header before any byte is buffered |
/// | `max_message_size` | 64 MiB | a whole message after decompression, checked while inflating |
/// | `max_fragments` | 131 072 | frames per message; bounds per-message work |
/// | `max_handshake_size` | 16 KiB | bytes of the HTTP head |
/// | `max_headers` | 64 | header lines in the HTTP head |
/// | `answer_plain_http` | `false` | server: hand a plain HTTP `GET` (no WebSocket asked for) to the application instead of refusing it with 400 |
/// | `reassemble` | `true` | deliver whole messages; `false` streams fragments as [`crate::Event::Fragment`] |
/// | `auto_pong` | `true` | answer every Ping with a Pong |
/// | `ping_interval` | 30 s | a keepalive Ping this long after the previous one, whatever the traffic (`None`: no keepalive) |
/// | `pong_timeout` | 30 s | fail the connection (1011) when a keepalive Ping's Pong has not come this long after it was sent, even while data arrives |
/// | `opening_handshake_timeout` | 10 s | fail a handshake that does not complete |
/// | `close_timeout` | 5 s | bound on waiting for the peer's Close, and for a client, on waiting for the server to close TCP (counted from when the last Close was sent or received; an echo the application releases late by taking its event late counts from the peer's Close) |
/// | `write_buffer_high_water` | 1 MiB | adapters wait before queueing more when unsent output is above it |
/// | `max_pending_output` | 16 MiB | a send that finds more unsent than this ends the connection: the peer does not read (only sends that never wait get there) |
/// | `deflate` | `None` | permessage-deflate offer (client) or policy (server) |
/// | `memory_budget` | [`MemoryBudget::process_default`]: 256 MiB per process | bytes that unfinished incoming messages and their inflate output may hold over all connections sharing it; past a free 16 KiB per connection, a message reserves before it grows, and one that cannot fails its connection with 1013 |
///
/// Why these limits. A server on the open internet meets peers that send
/// as much as they are allowed to and then wait, so each limit is a cost
/// an attacker can impose per connection, and the budget is the cost they
/// can impose on the process:
///
/// | | wsmachine | python-websockets | tungstenite | uWebSockets |
/// |---|---|---|---|---|
/// | message | 64 MiB | 1 MiB | 64 MiB | 16 KiB (`maxPayloadLength`) |
/// | frame | 16 MiB | = message | 16 MiB | = message |
/// | all connections together | 256 MiB | none | none | none |
///
/// The message limit stays at tungstenite's 64 MiB so that applications
/// moving large messages keep working (the Autobahn suite sends 16 MiB
/// ones); the process budget is what keeps 200 connections each holding an
/// unfinished 48 MiB compressed message from taking 9 GiB: the first five
/// get their memory, the rest are closed with 1013 while small messages
/// keep flowing for every connection. Lower `max_message_size` to
/// python-websockets' 1 MiB where messages are known to be small.
///
/// ```
/// use wsmachine::Config;
/// let cfg = Config { max_message_size: 1 << 20, ..Config::default() };
/// assert_eq!(cfg.max_frame_size, 16 << 20);
/// ```
///
/// Connections take it as `impl Into<Arc<Config>>`: pass a `Config` (one
/// copy per connection, on the heap), or clone one `Arc<Config>` into
/// every connection a server accepts, so that they share it (8 bytes each
/// instead of about 180).
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest accepted frame payload, in bytes.
    pub max_frame_size: usize,
    /// Largest accepted message, in bytes, after decompression.
    pub max_message_size: usize,
    /// Largest number of frames in one message.
    pub max_fragments: usize,
    /// Largest HTTP head of the opening handshake, in bytes.
    pub max_handshake_size: usize,
    /// Largest number of header lines in the opening handshake.
    pub max_headers: usize,
    /// Server: return a well-formed HTTP/1.1 `GET` that asks for no
    /// WebSocket (no `Upgrade: websocket`, no `Sec-WebSocket-*` field) as a
    /// [`crate::Request`] with [`crate::Request::is_websocket_upgrade`]
    /// `false`, for the application to answer with an HTTP response (an
    /// adapter's `accept_with` callback returning a `Reject`: a page, a
    /// redirect, a 404), instead of refusing it with 400 itself.
    ///
    /// Off by default, so an application that accepts every request never
    /// meets one it cannot accept. When on, the whole head is read by the
    /// handshake, under its size limits and `opening_handshake_timeout`,
    /// and every rule of [`crate::ServerHandshake`] but the WebSocket ones
    /// still applies. Accepting such a request fails with
    /// [`crate::SendError::NotAnUpgrade`]. Ignored by clients.
    pub answer_plain_http: bool,
    /// Reassemble fragmented messages (`true`) or deliver fragments as they come.
    pub reassemble: bool,
    /// Answer Pings automatically.
    pub auto_pong: bool,
    /// Keepalive: send a Ping this long after the connection opened, then
    /// this long after each previous keepalive Ping, whether or not data
    /// flows; `None`: no keepalive.
    ///
    /// One keepalive Ping is outstanding at a time (RFC 6455 §5.5.3 lets a
    /// peer answer only the most recent Ping): while one waits for its
    /// Pong, the next is not sent; when the Pong comes later than the
    /// interval, the next Ping follows at once. Its payload is a 4-byte
    /// counter, and only a Pong carrying the outstanding Ping's payload
    /// answers it: unsolicited Pongs and Pongs to the application's own
    /// Pings change nothing. The time from the Ping to its Pong is
    /// [`crate::Stats::last_rtt`].
    ///
    /// Why on the interval and not only when the connection is idle: a
    /// Pong proves that the peer *reads* what we send, which incoming data
    /// does not (a peer whose reading side is stuck can go on writing),
    /// and it gives a round-trip time at a steady period on busy
    /// connections too, where monitoring wants it most. The cost is one
    /// 6-byte frame (10 from a client) per interval each way; the deadline
    /// does not move with every read, so a driver re-arms no timer per read.
    /// python-websockets' keepalive makes the same choice.
    pub ping_interval: Option<Duration>,
    /// Fail the connection when a keepalive Ping has not been answered
    /// this long after it was sent: a deadline per Ping, which data from
    /// the peer does not postpone. The answer is the Pong carrying the
    /// Ping's payload, or — as a peer may answer only the most recent Ping
    /// (RFC 6455 §5.5.3) — any Pong once the application has sent a Ping
    /// of its own after the keepalive Ping. The connection then reports
    /// [`crate::ConnectionError::TimedOut`]`(`[`crate::Timeout::Pong`]`)`,
    /// sends a Close with 1011 ("keepalive ping timeout") and is done with
    /// its transport.
    pub pong_timeout: Duration,
    /// Fail the opening handshake when it takes longer than this.
    pub opening_handshake_timeout: Duration,
    /// Bound on the closing handshake.
    pub close_timeout: Duration,
    /// Unsent output above which adapters make senders wait.
    pub write_buffer_high_water: usize,
    /// Unsent output past which the peer is judged not to read: a send
    /// (data or control) that finds more than this waiting fails with
    /// [`crate::SendError::PendingOutputLimit`], the queued output is
    /// dropped and the connection ends without a Close frame (see
    /// [`crate::ConnectionError::PendingOutputLimit`]). `None`: no limit.
    ///
    /// Senders that wait (an adapter's `send().await`, `Sink`, the byte
    /// stream) never reach it: they wait at `write_buffer_high_water`, and
    /// a limit below that mark counts as the mark itself.
    /// Sends that never wait (`try_send`, `try_send_prepared`, or a sans-IO
    /// driver's own loop) do: a fan-out that queues to every subscriber
    /// without waiting for any is bounded by it, and a subscriber that
    /// stopped reading is dropped at the first send past it, its memory
    /// given back at once. The check comes before the message is queued,
    /// so one message larger than the limit still goes to a peer that
    /// keeps up.
    ///
    /// Why a failure and not a dropped message (uWebSockets' `DROPPED`):
    /// a subscriber that silently misses a message cannot tell; one whose
    /// connection ends can reconnect and resynchronise. Why no Close
    /// frame (1008 or 1013): a peer that does not read would not read it
    /// either, and keeping the output until it did is the memory the limit
    /// exists to free. The peer sees the transport close (1006), which a
    /// reconnecting client treats as retryable, as it would 1013.
    ///
    /// Default 16 MiB: sixteen times the high-water mark, so a burst that
    /// a reading peer drains is never mistaken for a peer that does not
    /// read.
    pub max_pending_output: Option<usize>,
    /// permessage-deflate offer (client) or acceptance policy (server).
    pub deflate: Option<DeflateConfig>,
    /// The budget shared by connections for their unfinished incoming
    /// messages (`None`: only the per-message limits bound them).
    pub memory_budget: Option<MemoryBudget>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 131_072,
            max_handshake_size: 16 << 10,
            max_headers: 64,
            answer_plain_http: false,
            reassemble: true,
            auto_pong: true,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(30),
            opening_handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_buffer_high_water: 1 << 20,
            max_pending_output: Some(16 << 20),
            deflate: None,
            memory_budget: Some(MemoryBudget::process_default()),
        }
    }
}

impl Config {
    /// The default configuration with permessage-deflate offered (client) or
    /// accepted (server) with [`DeflateConfig::default`].
    pub fn with_deflate() -> Self {
        Config {
            deflate: Some(DeflateConfig::default()),
            ..Config::default()
        }
    }

    /// [`Config::with_deflate`], one instance per process: what the
    /// adapters' `accept` gives each connection, so that connections
    /// accepted with the defaults share one copy.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use wsmachine::Config;
    /// assert!(Arc::ptr_eq(&Config::shared_with_deflate(), &Config::shared_with_deflate()));
    /// ```
    pub fn shared_with_deflate() -> Arc<Config> {
        static SHARED: OnceLock<Arc<Config>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(Config::with_deflate()))
            .clone()
    }
}
