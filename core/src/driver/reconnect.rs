//! A client that reconnects by policy: [`ReconnectPolicy`] (exponential
//! backoff with full jitter) and [`Reconnect`], the loop around
//! [`ConnectBuilder::connect`] that hands out each new connection.
//!
//! The loop's shape and what retries are documented on [`Reconnect`].

use std::future::poll_fn;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use super::handshake::ConnectBuilder;
use super::{Connector, Ended, Error, Runtime, Timer, WebSocket};
use crate::{CloseCode, CloseFrame, ConnectionError, HandshakeError, ProxyError, Response};

/// When and how often [`Reconnect`] tries again: exponential backoff with
/// full jitter (the `k`-th retry since the last established connection,
/// `k` from 0, waits a uniformly random time in
/// `[0, min(max_delay, initial_delay × 2^k)]`), optionally up to a number
/// of attempts in a row.
///
/// Defaults: initial delay 1 s, maximum 60 s, no attempt limit.
///
/// ```
/// use std::time::Duration;
/// use wsmachine::driver::ReconnectPolicy;
/// let p = ReconnectPolicy::new()
///     .initial_delay(Duration::from_millis(10))
///     .max_delay(Duration::from_millis(50))
///     .max_attempts(5);
/// // The random source is an argument: the sequence is a pure function.
/// assert_eq!(p.delay(0, 0), Duration::ZERO);
/// assert_eq!(p.delay(2, 1 << 63), Duration::from_millis(20)); // half of 10 ms × 2²
/// assert!(p.delay(30, u64::MAX) <= Duration::from_millis(50));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    initial: Duration,
    max: Duration,
    max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ReconnectPolicy {
    /// Initial delay 1 s, maximum 60 s, no attempt limit.
    pub fn new() -> Self {
        ReconnectPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_attempts: None,
        }
    }

    /// The upper bound of the first retry's delay (doubled at each retry
    /// in a row).
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// The upper bound of every delay, `Retry-After` included.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// Gives up after `attempts` failed connection attempts in a row (the
    /// count restarts at each established connection); at least 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// The delay before the `retry`-th retry in a row (from 0), given a
    /// uniformly random `random`: `cap × random / 2^64` with
    /// `cap = min(max_delay, initial_delay × 2^retry)` ("full jitter").
    pub fn delay(&self, retry: u32, random: u64) -> Duration {
        // Below 2^64 ns (584 years), so the product fits in a u128.
        let cap = self.cap(retry).as_nanos().min(u128::from(u64::MAX));
        let nanos = (cap * u128::from(random)) >> 64;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// `min(max_delay, initial_delay × 2^retry)`: the bound of
    /// [`delay`](Self::delay).
    pub fn cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Whether a failed connection attempt is worth another (see
    /// [`Reconnect`]'s table).
    pub fn retries(&self, error: &Error) -> bool {
        match error {
            Error::Io(_) | Error::Ws(ConnectionError::TimedOut(_)) => true,
            Error::Ws(ConnectionError::Handshake(HandshakeError::Status(r))) => {
                matches!(r.status, 408 | 429 | 500..=599)
            }
            Error::Ws(ConnectionError::Eof) => true,
            // rustls reports its own failures (an unknown certificate, a
            // protocol mismatch) as `InvalidData`, an empty system store is
            // `NotFound`: neither changes by trying again. The socket's
            // failures under TLS do.
            Error::Tls(e) => {
                use std::io::ErrorKind::*;
                matches!(
                    e.kind(),
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut
                )
            }
            // The proxy could not reach the server (502, 503, 504; SOCKS5:
            // general failure, network or host unreachable, refused, TTL
            // expired).
            Error::Proxy(ProxyError::Status(status)) => (500..=599).contains(status),
            Error::Proxy(ProxyError::SocksReply(code)) => matches!(code, 1 | 3 | 4 | 5 | 6),
            _ => false,
        }
    }

    /// The server's `Retry-After` (delta-seconds only) on a refused
    /// handshake, capped at the maximum delay.
    fn retry_after(&self, error: &Error) -> Option<Duration> {
        let Error::Ws(ConnectionError::Handshake(HandshakeError::Status(r))) = error else {
            return None;
        };
        let secs: u64 = r.headers.get("retry-after")?.trim().parse().ok()?;
        Some(Duration::from_secs(secs).min(self.max))
    }
}

/// How an established connection ended, as the application saw it: what
/// it hands to [`Reconnect::report`], and what [`Reconnect::previous`]
/// gives back.
#[derive(Debug)]
#[non_exhaustive]
pub enum Disconnect {
    /// We ended it (our `close` returned, or the application is done):
    /// the loop ends.
    Local,
    /// The peer closed with a closing handshake; its Close frame
    /// ([`WebSocket::close_frame`]), `None` without a code.
    Peer(Option<CloseFrame>),
    /// The connection failed: what `recv` or `send` returned (an I/O
    /// error, a vanished peer, a timeout, a protocol error).
    Failed(Error),
}

impl From<Error> for Disconnect {
    /// A completed closing handshake (`Error::Closed(Ended::Closed(..))`)
    /// is [`Disconnect::Peer`]; everything else is [`Disconnect::Failed`].
    fn from(e: Error) -> Self {
        match e {
            Error::Closed(Ended::Closed(frame)) => Disconnect::Peer(frame),
            e => Disconnect::Failed(e),
        }
    }
}

impl Disconnect {
    /// Whether [`Reconnect`] connects again after this (see
    /// [`Reconnect`]).
    pub fn retries(&self) -> bool {
        match self {
            Disconnect::Local => false,
            Disconnect::Peer(None) => true,
            Disconnect::Peer(Some(f)) => close_code_retries(f.code),
            Disconnect::Failed(e) => match e {
                Error::Io(_) | Error::Tls(_) => true,
                Error::Ws(ConnectionError::Protocol(p)) => close_code_retries(p.close_code()),
                Error::Ws(_) => true,
                Error::Closed(Ended::Failed(ConnectionError::Protocol(p))) => {
                    close_code_retries(p.close_code())
                }
                Error::Closed(Ended::Closed(Some(f))) => close_code_retries(f.code),
                Error::Closed(_) => true,
                _ => false,
            },
        }
    }
}

/// Close codes after which another connection may fare better.
fn close_code_retries(code: CloseCode) -> bool {
    matches!(u16::from(code), 1000 | 1001 | 1005 | 1006 | 1011..=1014)
}

/// A client connection that is opened again by [`ReconnectPolicy`] each
/// time it ends. From [`ConnectBuilder::reconnect`]; adapters name it
/// `wsmachine_tokio::Reconnect`. Works with everything the builder does:
/// TLS, proxies, headers.
///
/// # Shape
///
/// ```text
/// let mut conns = ConnectBuilder::new("wss://example.com/feed").reconnect(ReconnectPolicy::new());
/// while let Some(conn) = conns.next().await {
///     let (mut ws, _response) = conn?;          // Err: retrying has stopped, this is why
///     let end = loop {
///         match ws.recv().await {
///             Some(Ok(msg)) => handle(msg),
///             Some(Err(e)) => break Disconnect::from(e),             // dropped: retry
///             None => break Disconnect::Peer(ws.close_frame().cloned()), // the peer closed
///         }
///     };
///     conns.report(end);                        // Disconnect::Local ends the loop
/// }
/// ```
///
/// This is python-websockets' `async for ws in connect(uri)` with one step
/// made explicit: the application owns each [`WebSocket`] outright (it may
/// split it, move the halves to tasks, turn it into a byte stream), so the
/// loop cannot watch it end; the application says how it ended with
/// [`report`](Reconnect::report), and [`previous`](Reconnect::previous)
/// gives that reason back next to the new connection. An `async fn next`
/// rather than a `Stream`: the report between two items needs `&mut` access
/// to the loop, which a `Stream` consumed by combinators would hide. A
/// `next` without a report means "reconnect" (the reason is then unknown).
///
/// # What retries
///
/// Connecting ([`ReconnectPolicy::retries`]):
///
/// | failure | retried |
/// |---|---|
/// | I/O: refused, reset, unreachable, DNS | yes |
/// | the handshake deadline (`TimedOut`) | yes |
/// | HTTP 5xx, 408, 429 (`Retry-After` in seconds raises the delay, up to the maximum) | yes |
/// | any other HTTP status (401, 403, 404, 3xx…) | no |
/// | TLS: certificate or protocol failure (rustls' `InvalidData`), an empty system store | no |
/// | TLS: the socket reset, aborted or ended mid-handshake | yes |
/// | the proxy's 5xx to `CONNECT` (it could not reach the server) | yes |
/// | any other proxy refusal, an invalid handshake response, a bad URL | no |
///
/// An established connection ([`Disconnect::retries`]): our own close
/// ([`Disconnect::Local`]) ends the loop; the peer's Close with 1000, 1001
/// (going away), 1011, 1012 (service restart), 1013 (try again later), 1014
/// or no code, a vanished peer (1006), an I/O error or a timeout
/// reconnects; 1002, 1003, 1007–1010 and the application codes 3000–4999
/// (a protocol or policy problem that another attempt would repeat) end it,
/// and so does [`Error::Send`] (the application's misuse).
/// The peer's 1000 retries because a client that uses this loop wants to
/// stay connected; an application for which the server's 1000 means "done"
/// reports [`Disconnect::Local`].
///
/// # Delays
///
/// The first attempt is immediate; every other waits
/// [`ReconnectPolicy::delay`] drawn with [`Runtime::fill_random`] and slept
/// on the runtime's [`Timer`]. The run of retries (and the attempt limit)
/// restarts at each established connection, so the first retry after a
/// drop waits at most the initial delay: a server that accepts and drops
/// at once is retried at most about twice per initial delay, on average.
pub struct Reconnect<C: Connector> {
    builder: ConnectBuilder<C>,
    policy: ReconnectPolicy,
    /// Retries since the last established connection (or the start).
    retry: u32,
    /// Failed attempts in a row.
    failures: u32,
    /// Whether the next attempt is a retry (anything but the very first).
    retrying: bool,
    /// Whether the last `next` gave a connection (the next call starts a
    /// new run of retries).
    connected: bool,
    /// Whether `report` was called since the last connection was given.
    reported: bool,
    /// The delay's end, once drawn: kept here so that a `next` dropped
    /// while waiting does not wait again from the start.
    wake_at: Option<Instant>,
    /// A floor for the next delay (`Retry-After`).
    at_least: Duration,
    last_delay: Option<Duration>,
    previous: Option<Disconnect>,
    done: bool,
}

impl<C: Connector> std::fmt::Debug for Reconnect<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnect")
            .field("builder", &self.builder)
            .field("policy", &self.policy)
            .field("retry", &self.retry)
            .field("previous", &self.previous)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<C: Connector> ConnectBuilder<C> {
    /// Turns this builder into a loop that connects, and connects again by
    /// `policy` whenever the connection ends or an attempt fails (see
    /// [`Reconnect`]).
    pub fn reconnect(self, policy: ReconnectPolicy) -> Reconnect<C> {
        Reconnect {
            builder: self,
            policy,
            retry: 0,
            failures: 0,
            retrying: false,
            connected: false,
            reported: false,
            wake_at: None,
            at_least: Duration::ZERO,
            last_delay: None,
            previous: None,
            done: false,
        }
    }
}

impl<C: Connector> Reconnect<C> {
    /// The next connection: waits the policy's delay (none before the
    /// first attempt), connects, and retries failed attempts that
    /// [`ReconnectPolicy::retries`] allows, until one succeeds.
    ///
    /// `Some(Ok(..))` is a new connection; `Some(Err(e))` is the failure
    /// after which retrying stopped (not retryable, or the attempt limit);
    /// `None` after that, or once the application reported a
    /// [`Disconnect`] that does not retry.
    ///
    /// Cancel-safe: a delay already waited is not waited again; an attempt
    /// in flight is abandoned and the next call starts a new one.
    pub async fn next(
        &mut self,
    ) -> Option<Result<(WebSocket<C::Stream, C::Runtime>, Response), Error>> {
        if std::mem::take(&mut self.connected) {
            self.retry = 0;
            self.failures = 0;
            if !std::mem::take(&mut self.reported) {
                // Not reported: the reason is unknown, not the one before.
                self.previous = None;
            }
        }
        loop {
            if self.done {
                return None;
            }
            if self.retrying {
                self.wait().await;
            }
            // Set once the attempt has an outcome: one abandoned mid-way
            // (this future dropped) is neither a failure nor a reason to
            // draw another delay.
            match self.builder.connect_ref().await {
                Ok(conn) => {
                    self.retrying = true;
                    self.connected = true;
                    return Some(Ok(conn));
                }
                Err(e) => {
                    self.retrying = true;
                    self.failures += 1;
                    let limit = self.policy.max_attempts.is_some_and(|m| self.failures >= m);
                    if limit || !self.policy.retries(&e) {
                        self.done = true;
                        return Some(Err(e));
                    }
                    self.at_least = self.policy.retry_after(&e).unwrap_or_default();
                }
            }
        }
    }

    /// Sleeps until the drawn delay's end, drawing it first.
    async fn wait(&mut self) {
        let wake_at = *self.wake_at.get_or_insert_with(|| {
            let mut random = [0u8; 8];
            <C::Runtime as Runtime>::fill_random(&mut random);
            let delay = self
                .policy
                .delay(self.retry, u64::from_le_bytes(random))
                .max(std::mem::take(&mut self.at_least));
            self.retry = self.retry.saturating_add(1);
            self.last_delay = Some(delay);
            let now = <C::Runtime as Runtime>::now();
            // A delay too long for the clock (`max_delay(Duration::MAX)`
            // and a huge `Retry-After`): as long as it can be.
            now.checked_add(delay)
                .unwrap_or_else(|| now + Duration::from_secs(u64::from(u32::MAX)))
        });
        let mut timer = <C::Runtime as Runtime>::timer();
        timer.reset(wake_at);
        // Never earlier than drawn, whatever the timer's granularity.
        poll_fn(|cx| loop {
            ready!(timer.poll_elapsed(cx));
            if <C::Runtime as Runtime>::now() >= wake_at {
                return Poll::Ready(());
            }
            timer.reset(wake_at);
        })
        .await;
        self.wake_at = None;
    }

    /// Says how the connection [`next`](Self::next) gave last ended:
    /// [`Disconnect::Local`], or one for which [`Disconnect::retries`] is
    /// false, makes the next `next` return `None`. Kept for
    /// [`previous`](Self::previous).
    pub fn report(&mut self, end: impl Into<Disconnect>) {
        let end = end.into();
        if !end.retries() {
            self.done = true;
        }
        self.previous = Some(end);
        self.reported = true;
    }

    /// Why the connection before the current one ended, as reported
    /// (`None` when it was not).
    pub fn previous(&self) -> Option<&Disconnect> {
        self.previous.as_ref()
    }

    /// The delay waited before the latest attempt (`None` before any retry):
    /// for logs, and for tests that check delays against the policy.
    pub fn last_delay(&self) -> Option<Duration> {
        self.last_delay
    }

    /// The retries (delays waited) in the current run: since the connection
    /// before the latest one ended, or since the start. After `next` gave a
    /// connection, how many it took (0: the first attempt succeeded).
    pub fn retries(&self) -> u32 {
        self.retry
    }

    /// The policy in use.
    pub fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy::new()
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(100))
    }

    #[test]
    fn caps_double_up_to_the_maximum() {
        let caps: Vec<u128> = (0..7).map(|k| policy().cap(k).as_millis()).collect();
        assert_eq!(caps, [10, 20, 40, 80, 100, 100, 100]);
        assert_eq!(policy().cap(u32::MAX), Duration::from_millis(100));
        let huge = ReconnectPolicy::new().max_delay(Duration::MAX);
        assert_eq!(
            huge.cap(200),
            Duration::from_secs(1).saturating_mul(1 << 31)
        );
    }

    #[test]
    fn full_jitter_spans_zero_to_the_cap() {
        let p = policy();
        for k in 0..10 {
            assert_eq!(p.delay(k, 0), Duration::ZERO);
            let top = p.delay(k, u64::MAX);
            assert!(top < p.cap(k) && p.cap(k) - top < Duration::from_nanos(2));
            assert_eq!(p.delay(k, 1 << 63), p.cap(k) / 2);
        }
    }

    /// Caps beyond 2^64 ns (about 584 years) do not overflow the jitter
    /// arithmetic: the delay saturates at the largest one it can draw.
    #[test]
    fn an_unbounded_maximum_does_not_overflow() {
        let p = ReconnectPolicy::new()
            .initial_delay(Duration::from_secs(3600))
            .max_delay(Duration::MAX);
        assert!(p.cap(40) > Duration::from_nanos(u64::MAX));
        assert_eq!(p.delay(40, u64::MAX), Duration::from_nanos(u64::MAX - 1));
        assert_eq!(p.delay(40, 0), Duration::ZERO);
        let huge = status(503, Some("18446744073709551615"));
        assert_eq!(p.retry_after(&huge), Some(Duration::from_secs(u64::MAX)));
    }

    /// An injected random source (xorshift64): reproducible.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn a_seeded_sequence_is_reproducible_and_within_its_bounds() {
        let p = policy();
        let run = |seed| {
            let mut random = xorshift(seed);
            (0..20).map(|k| p.delay(k, random())).collect::<Vec<_>>()
        };
        let delays = run(0x9e37_79b9_7f4a_7c15);
        assert_eq!(delays, run(0x9e37_79b9_7f4a_7c15));
        for (k, d) in delays.iter().enumerate() {
            assert!(*d <= p.cap(k as u32), "retry {k}: {d:?}");
        }
        // Jittered: not every delay sits at its cap.
        assert!(delays
            .iter()
            .enumerate()
            .any(|(k, d)| *d < p.cap(k as u32) / 2));
    }

    fn status(code: u16, retry_after: Option<&str>) -> Error {
        let mut headers = crate::http::Headers::new();
        if let Some(v) = retry_after {
            headers.push("Retry-After", v.as_bytes());
        }
        Error::Ws(ConnectionError::Handshake(HandshakeError::Status(
            Box::new(Response {
                status: code,
                reason: String::new(),
                headers,
                body: bytes::Bytes::new(),
            }),
        )))
    }

    #[test]
    fn which_connect_failures_retry() {
        let p = policy();
        let io = |k| Error::Io(std::io::Error::from(k));
        assert!(p.retries(&io(std::io::ErrorKind::ConnectionRefused)));
        assert!(p.retries(&Error::Ws(ConnectionError::TimedOut(
            crate::Timeout::OpeningHandshake
        ))));
        for code in [500, 502, 503, 429, 408] {
            assert!(p.retries(&status(code, None)), "{code}");
        }
        for code in [400, 401, 403, 404, 301] {
            assert!(!p.retries(&status(code, None)), "{code}");
        }
        let cert = Error::Tls(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "unknown issuer",
        ));
        assert!(!p.retries(&cert));
        assert!(p.retries(&Error::Tls(std::io::ErrorKind::ConnectionReset.into())));
        assert!(!p.retries(&Error::Tls(std::io::ErrorKind::NotFound.into())));
        assert!(p.retries(&Error::Proxy(ProxyError::Status(502))));
        assert!(!p.retries(&Error::Proxy(ProxyError::Status(407))));
        // SOCKS5: the server behind the proxy is down or unreachable...
        for code in [1, 3, 4, 5, 6] {
            assert!(
                p.retries(&Error::Proxy(ProxyError::SocksReply(code))),
                "{code}"
            );
        }
        // ...but not allowed, or a request the proxy does not support.
        for code in [2, 7, 8] {
            assert!(
                !p.retries(&Error::Proxy(ProxyError::SocksReply(code))),
                "{code}"
            );
        }
        assert_eq!(p.retry_after(&status(503, Some("0"))), Some(Duration::ZERO));
        assert_eq!(
            p.retry_after(&status(503, Some("3600"))),
            Some(Duration::from_millis(100))
        );
        assert_eq!(p.retry_after(&status(503, Some("Wed, 21 Oct 2015"))), None);
    }

    #[test]
    fn which_disconnects_retry() {
        let peer = |c: u16| Disconnect::Peer(Some(CloseFrame::new(CloseCode::from(c), "")));
        for c in [1000, 1001, 1011, 1012, 1013, 1014] {
            assert!(peer(c).retries(), "{c}");
        }
        for c in [1002, 1003, 1007, 1008, 1009, 1010, 3000, 4000] {
            assert!(!peer(c).retries(), "{c}");
        }
        assert!(Disconnect::Peer(None).retries());
        assert!(!Disconnect::Local.retries());
        assert!(Disconnect::from(Error::Ws(ConnectionError::Eof)).retries());
        let closed = Disconnect::from(Error::Closed(Ended::Closed(None)));
        assert!(matches!(closed, Disconnect::Peer(None)));
    }
}
