//! The `tracing` feature: a span per connection, and events for what the
//! connection does — the handshake's result, Close frames sent and
//! received with their codes, protocol errors, timeouts, keepalive Pings
//! and their round-trip time, automatic Pongs, and the totals when it ends.
//!
//! Most of those happen in the core (automatic Pongs, the Close echo,
//! keepalive Pings), which knows nothing of `tracing`: the driver learns of
//! them by comparing the core's counters ([`crate::Stats`]) before and after
//! each read and each timer, and by looking at the events it hands out. So
//! the core's per-message path is the same with and without the feature.
//!
//! Without the feature every type here is zero-sized and every function an
//! empty `#[inline]` one: nothing is left on any path.

#[cfg(feature = "tracing")]
mod imp {
    use std::net::SocketAddr;

    use tracing::field::Empty;

    use crate::{ConnectionError, Event, Negotiated, ReceiveHalf, Role, SendHalf, Stats};

    /// The connection's span, shared by its two sides.
    #[derive(Clone, Debug)]
    pub(crate) struct ConnSpan(tracing::Span);

    impl ConnSpan {
        /// The span of a connection whose opening handshake completed,
        /// with that first event in it.
        pub(crate) fn opened(role: Role, path: &str, negotiated: &Negotiated) -> Self {
            let extensions = negotiated.deflate.as_ref().map_or(String::new(), |d| {
                let mut v = String::from("permessage-deflate");
                for (on, name) in [
                    (d.server_no_context_takeover, "server_no_context_takeover"),
                    (d.client_no_context_takeover, "client_no_context_takeover"),
                ] {
                    if on {
                        v.push_str("; ");
                        v.push_str(name);
                    }
                }
                v.push_str(&format!(
                    "; server_max_window_bits={}; client_max_window_bits={}",
                    d.server_max_window_bits, d.client_max_window_bits
                ));
                v
            });
            let span = tracing::info_span!(
                "websocket",
                role = ?role,
                peer = Empty,
                path = Empty,
                subprotocol = negotiated.subprotocol.as_deref().unwrap_or(""),
                extensions = extensions.as_str(),
            );
            let span = ConnSpan(span);
            if !path.is_empty() {
                span.record_path(path);
            }
            tracing::info!(parent: &span.0, "handshake complete");
            span
        }

        /// The path without its query: a query often carries tokens,
        /// which have no place in logs.
        pub(crate) fn record_path(&self, path: &str) {
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            self.0.record("path", path);
        }

        pub(crate) fn record_peer(&self, addr: SocketAddr) {
            self.0.record("peer", tracing::field::display(addr));
        }
    }

    /// The request's path, kept through a client's handshake for the span.
    pub(crate) struct Path(String);

    impl Path {
        pub(crate) fn new(path: &str) -> Self {
            Path(path.to_owned())
        }

        pub(crate) fn as_str(&self) -> &str {
            &self.0
        }
    }

    /// A failed opening handshake (no span: there is no connection).
    pub(crate) fn handshake_failed(role: Role, error: &ConnectionError) {
        tracing::info!(role = ?role, %error, "handshake failed");
    }

    /// The receiving side: what the core's counters said last time.
    /// Boxed, as the sending side's: a `WebSocket` grows by two pointers.
    #[derive(Debug)]
    pub(crate) struct ReadTrace(Box<ReadSeen>);

    #[derive(Debug)]
    struct ReadSeen {
        span: ConnSpan,
        seen: Stats,
    }

    impl ReadTrace {
        pub(crate) fn new(span: ConnSpan) -> Self {
            ReadTrace(Box::new(ReadSeen {
                span,
                seen: Stats::default(),
            }))
        }

        pub(crate) fn span(&self) -> &ConnSpan {
            &self.0.span
        }

        /// After bytes, end of stream or a timer went into the core: what
        /// it did on its own since (keepalive Pings, automatic Pongs, a
        /// keepalive round trip).
        pub(crate) fn after_input(&mut self, rx: &ReceiveHalf) {
            let now = rx.stats();
            let span = &self.0.span.0;
            if now.keepalive_pings != self.0.seen.keepalive_pings {
                tracing::debug!(parent: span, count = now.keepalive_pings, "keepalive ping sent");
            }
            if now.auto_pongs != self.0.seen.auto_pongs {
                let pongs = now.auto_pongs.wrapping_sub(self.0.seen.auto_pongs);
                tracing::debug!(parent: span, pongs, "automatic pong sent");
            }
            if now.last_rtt != self.0.seen.last_rtt {
                if let Some(rtt) = now.last_rtt {
                    tracing::debug!(parent: span, ?rtt, "keepalive pong received");
                }
            }
            self.0.seen = now;
        }

        /// An event the core handed out.
        pub(crate) fn event(&self, ev: &Event) {
            let span = &self.0.span.0;
            match ev {
                Event::Close(f) => {
                    tracing::info!(parent: span, code = u16::from(f.code), reason = %f.reason, "close received")
                }
                Event::Error(ConnectionError::Protocol(e)) => {
                    tracing::warn!(parent: span, error = %e, code = u16::from(e.close_code()), "protocol error")
                }
                Event::Error(ConnectionError::TimedOut(t)) => {
                    tracing::warn!(parent: span, timeout = ?t, "timed out")
                }
                Event::Error(e) => tracing::info!(parent: span, error = %e, "connection failed"),
                _ => {}
            }
        }

        /// The receiving side's totals, when it goes.
        pub(crate) fn finish(&self, rx: &ReceiveHalf) {
            let s = rx.stats();
            let n = [
                s.messages_in,
                s.bytes_in,
                s.compressed_bytes_in,
                s.wire_bytes_in,
            ];
            totals(&self.0.span, "receiving", n);
        }
    }

    /// The sending side: whether its Close frame was reported.
    #[derive(Debug)]
    pub(crate) struct WriteTrace(Box<WriteSeen>);

    #[derive(Debug)]
    struct WriteSeen {
        span: ConnSpan,
        close_seen: bool,
    }

    impl WriteTrace {
        pub(crate) fn new(span: ConnSpan) -> Self {
            WriteTrace(Box::new(WriteSeen {
                span,
                close_seen: false,
            }))
        }

        /// After a write: the Close frame the core encoded (ours, the
        /// echo, or the one a failure sends), once.
        pub(crate) fn after_write(&mut self, tx: &SendHalf) {
            if self.0.close_seen {
                return;
            }
            if let Some(code) = tx.close_code_sent() {
                self.0.close_seen = true;
                tracing::info!(parent: &self.0.span.0, code = u16::from(code), "close sent");
            }
        }

        /// The sending side's totals, when it goes.
        pub(crate) fn finish(&self, tx: &SendHalf) {
            let s = tx.stats();
            let n = [
                s.messages_out,
                s.bytes_out,
                s.compressed_bytes_out,
                s.wire_bytes_out,
            ];
            totals(&self.0.span, "sending", n);
        }
    }

    /// One side's counters as it goes (see [`Stats`]): messages, payload
    /// bytes, compressed bytes, wire bytes.
    fn totals(span: &ConnSpan, side: &str, [messages, bytes, compressed, wire]: [u64; 4]) {
        tracing::info!(
            parent: &span.0,
            side,
            messages,
            bytes,
            compressed_bytes = compressed,
            wire_bytes = wire,
            "side ended"
        );
    }
}

#[cfg(not(feature = "tracing"))]
mod imp {
    use std::net::SocketAddr;

    use crate::{ConnectionError, Event, Negotiated, ReceiveHalf, Role, SendHalf};

    #[derive(Clone, Debug)]
    pub(crate) struct ConnSpan;

    impl ConnSpan {
        #[inline(always)]
        pub(crate) fn opened(_: Role, _: &str, _: &Negotiated) -> Self {
            ConnSpan
        }
        #[inline(always)]
        pub(crate) fn record_peer(&self, _: SocketAddr) {}
    }

    pub(crate) struct Path;

    impl Path {
        #[inline(always)]
        pub(crate) fn new(_: &str) -> Self {
            Path
        }
        #[inline(always)]
        pub(crate) fn as_str(&self) -> &str {
            ""
        }
    }

    #[inline(always)]
    pub(crate) fn handshake_failed(_: Role, _: &ConnectionError) {}

    #[derive(Debug)]
    pub(crate) struct ReadTrace;

    impl ReadTrace {
        #[inline(always)]
        pub(crate) fn new(_: ConnSpan) -> Self {
            ReadTrace
        }
        #[inline(always)]
        pub(crate) fn span(&self) -> &ConnSpan {
            &ConnSpan
        }
        #[inline(always)]
        pub(crate) fn after_input(&mut self, _: &ReceiveHalf) {}
        #[inline(always)]
        pub(crate) fn event(&self, _: &Event) {}
    }

    #[derive(Debug)]
    pub(crate) struct WriteTrace;

    impl WriteTrace {
        #[inline(always)]
        pub(crate) fn new(_: ConnSpan) -> Self {
            WriteTrace
        }
        #[inline(always)]
        pub(crate) fn after_write(&mut self, _: &SendHalf) {}
    }
}

pub(crate) use imp::*;
