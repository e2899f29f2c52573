//! The receiving half's deadlines: the closing handshake, the client's
//! linger, keepalive Ping/Pong and the idle release of the zlib streams.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ReceiveHalf;
use crate::close::{CloseCode, CloseFrame};
use crate::connection::link::Reply;
use crate::connection::Event;
use crate::error::{ConnectionError, Timeout};

/// Which timer `next_deadline` found.
#[derive(Clone, Copy, Debug)]
enum Due {
    /// Our Close was not answered in time.
    ClosingHandshake,
    /// Both Closes were exchanged; a client gives the server time to close TCP.
    Linger,
    /// A failure's Close still waits for the application to take the Error.
    FailedLinger,
    /// The connection is done; our last bytes get `close_timeout` to leave.
    GiveUp,
    /// Time for a keepalive Ping.
    Ping,
    /// The keepalive Ping was not answered.
    Pong,
    /// No message either way for `DeflateConfig::release_after_idle`: free
    /// the zlib streams.
    ReleaseDeflate,
}

/// `t + d`, or `None` when that is past what `Instant` can hold (a
/// `Duration::MAX` timeout means "never").
fn after(t: Instant, d: Duration) -> Option<Instant> {
    t.checked_add(d)
}

impl ReceiveHalf {
    /// When [`ReceiveHalf::handle_timeout`] should be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|(t, _)| t)
    }

    /// The one timer that matters in the current state: `poll_timeout` and
    /// `handle_timeout` both read it, so they cannot disagree (a deadline
    /// that `handle_timeout` ignores would make a driver spin).
    fn next_deadline(&self) -> Option<(Instant, Due)> {
        if !self.open {
            return None;
        }
        if self.is_done_with_transport() {
            return self.give_up_deadline().map(|d| (d, Due::GiveUp));
        }
        if self.failed {
            // A protocol error whose Close waits for the application to take
            // the Error event: bound the wait.
            let t = self.closing.as_ref()?.failed_at?;
            return after(t, self.config.close_timeout).map(|d| (d, Due::FailedLinger));
        }
        let close_timeout = self.config.close_timeout;
        match (self.link.close_sent_at(), self.close_received_at()) {
            (Some(s), None) => after(s, close_timeout).map(|d| (d, Due::ClosingHandshake)),
            (Some(s), Some(r)) => after(s.max(r), close_timeout).map(|d| (d, Due::Linger)),
            (None, Some(_)) => None,
            (None, None) => {
                // Keepalive (see `Config::ping_interval`): a Ping
                // `ping_interval` after the last one whatever the traffic,
                // one at a time, each with its own Pong deadline. Received
                // data postpones neither: it shows that the peer writes,
                // only the Pong that it reads.
                let keepalive = self.config.ping_interval.and_then(|iv| {
                    if self.ping_outstanding {
                        after(self.last_ping, self.config.pong_timeout).map(|d| (d, Due::Pong))
                    } else {
                        after(self.last_ping, iv).map(|d| (d, Due::Ping))
                    }
                });
                match (keepalive, self.deflate_deadline()) {
                    (Some(k), Some(r)) => Some(if r.0 < k.0 { r } else { k }),
                    (k, r) => k.or(r),
                }
            }
        }
    }

    /// When to free idle zlib streams: `release_after_idle` after the last
    /// traffic. Once released, armed again only by new traffic (bytes
    /// received, or a message sent, which the sending half notes in the
    /// link), so an idle connection does not wake up for nothing.
    fn deflate_deadline(&self) -> Option<(Instant, Due)> {
        let inflate = self.inflate.as_ref()?;
        let idle = inflate.idle?;
        let armed = match inflate.released_at {
            None => true,
            Some(at) => inflate.last_rx > at || self.link.sent_since_check(),
        };
        if !armed {
            return None;
        }
        after(inflate.last_rx.max(inflate.mark), idle).map(|d| (d, Due::ReleaseDeflate))
    }

    /// Runs the timers that are due at `now`. Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((deadline, due)) = self.next_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        match due {
            Due::ClosingHandshake => {
                self.events
                    .push_back(Event::Error(ConnectionError::TimedOut(
                        Timeout::ClosingHandshake,
                    )));
                self.failed = true;
                self.set_transport_done_at(Some(now));
            }
            // The client waited for the server to close TCP (RFC 6455 §7.1.1).
            Due::Linger => self.set_transport_done_at(Some(now)),
            Due::GiveUp => self.closing_mut().gave_up = true,
            Due::FailedLinger => {
                // The application never took the Error event: send the Close
                // anyway, as taking it would have.
                self.release_deferred_close();
                self.set_transport_done_at(Some(now));
            }
            Due::Ping => {
                self.ping_count = self.ping_count.wrapping_add(1);
                let payload = Bytes::copy_from_slice(&self.ping_count.to_be_bytes());
                self.link.take_app_ping();
                self.link.push(Reply::Ping(payload));
                self.ping_outstanding = true;
                self.last_ping = now;
            }
            Due::ReleaseDeflate => {
                let busy = self.link.take_sent();
                let Some(inflate) = &mut self.inflate else {
                    return;
                };
                if busy {
                    // The sending half was busy meanwhile: wait a full
                    // period from now.
                    inflate.mark = now;
                    inflate.released_at = None;
                } else {
                    inflate.codec.release();
                    if self.current.kind.is_none() {
                        // The inflate output buffer kept for the next
                        // message goes with the stream: an idle connection
                        // keeps nothing sized by its last message.
                        self.current.data = bytes::BytesMut::new();
                    }
                    self.link.push(Reply::ReleaseCompressor);
                    inflate.released_at = Some(now);
                }
            }
            Due::Pong => {
                // Nothing more is processed: the message in progress (a
                // frame paused mid-inflate included) goes now, with its
                // reservation; frames already whole are reported first.
                self.materialize();
                self.drop_message_in_progress();
                self.events
                    .push_back(Event::Error(ConnectionError::TimedOut(Timeout::Pong)));
                self.link.push(Reply::Close(
                    CloseFrame::new(CloseCode::INTERNAL_ERROR, "keepalive ping timeout"),
                    now,
                ));
                self.failed = true;
                self.set_transport_done_at(Some(now));
            }
        }
    }
}
