//! A connection's counters: always on, a few integer adds per message.

use std::time::Duration;

/// What a connection has moved so far, and the round-trip time its last
/// keepalive Ping measured. Always kept (no feature needed): a handful of
/// integer adds per message.
///
/// Two views of the bytes:
/// - `bytes_*` count the payload of data messages as the application sees
///   it: what it passed to a send, what a `Text`/`Binary` event (or the
///   fragments of one message) carried, after decompression;
/// - `wire_bytes_*` count what crossed the transport once the connection
///   was open: frame headers, masks, control frames and compressed
///   payloads included (not the HTTP handshake). `wire_bytes_out` counts
///   what was handed to the transport (returned by `poll_transmit`, or
///   reported written with `advance_transmit`); what is still queued is
///   [`Connection::pending_output`](crate::Connection::pending_output).
///
/// `compressed_bytes_*` are the wire payload bytes of the messages that
/// were compressed (RFC 7692), so that `bytes_*` over them is the
/// compression ratio when every message is compressed.
///
/// Received messages count when their last frame has been parsed and
/// checked (before the application takes their event); sent ones when
/// they are queued, a fragmented one at its last fragment.
///
/// ```
/// # use std::time::Instant;
/// use wsmachine::{Config, Connection, Negotiated, Role};
/// let mut conn = Connection::upgraded(Role::Server, Config::default(), Negotiated::default(), None, Instant::now());
/// conn.send_text("hello").unwrap();
/// while conn.poll_transmit().is_some() {}
/// let stats = conn.stats();
/// assert_eq!((stats.messages_out, stats.bytes_out, stats.wire_bytes_out), (1, 5, 7));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Data messages received.
    pub messages_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
    /// Payload bytes of the data messages received, after decompression.
    pub bytes_in: u64,
    /// Payload bytes of the data messages sent, before compression.
    pub bytes_out: u64,
    /// Wire payload bytes of the compressed messages received.
    pub compressed_bytes_in: u64,
    /// Wire payload bytes of the compressed messages sent.
    pub compressed_bytes_out: u64,
    /// Bytes received once the connection was open.
    pub wire_bytes_in: u64,
    /// Bytes of frames handed to the transport.
    pub wire_bytes_out: u64,
    /// Keepalive Pings the core sent (`Config::ping_interval`).
    pub keepalive_pings: u64,
    /// Pongs the core queued in answer to the peer's Pings
    /// (`Config::auto_pong`).
    pub auto_pongs: u64,
    /// The round-trip time of the last keepalive Ping that was answered:
    /// from the `now` the core sent it at to the `now` its Pong was
    /// received at, to the microsecond. `None` until one is.
    pub last_rtt: Option<Duration>,
}

/// What the receiving half counts (the fields of [`Stats`] it fills):
/// kept apart from the sending half's so that neither carries the other's
/// fields, and small (an idle connection holds them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecvCounters {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) wire_bytes: u64,
    /// Wrapping: a Ping flood must not make a counter panic. (The
    /// keepalive Pings are the receiving half's Ping counter.)
    pub(crate) auto_pongs: u32,
    /// The last keepalive round trip in microseconds, `u32::MAX` for none
    /// yet (4 bytes, not an `Option<Duration>`'s 16: every connection
    /// holds it; longer round trips, over 71 minutes, are clamped).
    pub(crate) rtt_micros: u32,
}

impl Default for RecvCounters {
    fn default() -> Self {
        RecvCounters {
            messages: 0,
            bytes: 0,
            wire_bytes: 0,
            auto_pongs: 0,
            rtt_micros: u32::MAX,
        }
    }
}

impl RecvCounters {
    pub(crate) fn set_rtt(&mut self, rtt: Duration) {
        self.rtt_micros = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX - 1);
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        (self.rtt_micros != u32::MAX).then(|| Duration::from_micros(self.rtt_micros.into()))
    }
}

/// What the sending half counts. `messages` and `bytes` are not side by
/// side: adjacent, the two adds of every send are merged into vector
/// instructions that cost three times as many (`repr(C)` keeps the order).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(crate) struct SendCounters {
    pub(crate) messages: u64,
    pub(crate) compressed_bytes: u64,
    pub(crate) bytes: u64,
    /// Bytes handed to the transport, the HTTP handshake's included (the
    /// sending half knows how many those are).
    pub(crate) written: u64,
}

impl SendCounters {
    /// `stats` (a receiving half's) with the sending fields filled in;
    /// `raw` is the HTTP handshake's bytes among those written.
    pub(crate) fn add_to(&self, stats: Stats, raw: u32) -> Stats {
        Stats {
            messages_out: self.messages,
            bytes_out: self.bytes,
            compressed_bytes_out: self.compressed_bytes,
            // The handshake's bytes go out first: what was written past
            // them is frames.
            wire_bytes_out: self.written.saturating_sub(raw.into()),
            ..stats
        }
    }
}
