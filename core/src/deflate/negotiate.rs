//! Negotiating permessage-deflate (RFC 7692 §7): the client's offer, the
//! server's choice among offers, and the client's check of the response.

use std::mem;

use super::clamp_bits;
use crate::error::ExtensionError;
use crate::extensions::{format_extension, ExtensionOffer};

const NAME: &str = "permessage-deflate";
const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// permessage-deflate settings: the client's offer, or the server's policy.
///
/// One value serves both roles; each field says what it means in each.
/// The defaults are chosen for a server holding many connections (as
/// python-websockets does: window 12, memLevel 5) and for a client whose
/// offer every server understands: `permessage-deflate;
/// client_max_window_bits`.
///
/// | field | default | client | server |
/// |---|---|---|---|
/// | `server_no_context_takeover` | `false` | ask the server to reset its context after each message | always reset ours (and say so) |
/// | `client_no_context_takeover` | `false` | promise to reset ours | demand that the client resets its context |
/// | `server_max_window_bits` | 12 | asked of the server only if `request_server_max_window_bits` | the largest window our compressor uses, announced in the response |
/// | `client_max_window_bits` | 12 | the largest window our compressor uses (a local choice: the offer always carries a bare `client_max_window_bits`) | the largest window we let the client use, when it offered `client_max_window_bits` |
/// | `request_server_max_window_bits` | `false` | put `server_max_window_bits` in the offer (with a fallback offer without it) | unused |
/// | `level` | 6 | compression level 0–9 | same |
/// | `mem_level` | 5 | zlib memLevel 1–9 of the compressor | same |
/// | `min_compress_size` | 128 | messages shorter than this are sent uncompressed (tiny messages rarely shrink, and a connection that only sends them never allocates a compressor) | same |
///
/// Window values outside 8–15, levels over 9 and memLevels outside 1–9 are
/// clamped into range. A server cannot limit the window of a client that did
/// not offer `client_max_window_bits` (RFC 7692 §7.1.2.2): it still accepts
/// (compression is worth more than the memory) and inflates with up to 15
/// bits for that connection, as python-websockets does by default.
///
/// # Memory per connection
///
/// Measured with a counting allocator (`core/tests/deflate_memory.rs`, which
/// prints this table), zlib-rs 0.6 on x86-64. The compressor holds `4·2^w`
/// bytes of window and chain, a hash table of fixed size (128 KiB: unlike C
/// zlib, zlib-rs does not scale it with memLevel, so C zlib's 64 KiB at 12/5
/// is not reachable) and `7·2^(memLevel+6)` bytes of symbol buffers. The
/// decompressor's stream is 46 KiB whatever the window: zlib-rs always
/// allocates a 32 KiB window. With context takeover each side also keeps a
/// copy of its last `2^w` bytes of plaintext (the peer's `w` for the
/// decompressor), which is what lets a connection go on without its
/// streams (see below).
///
/// | window bits | memLevel | compressor | decompressor | both streams |
/// |---|---|---|---|---|
/// | 15 | 8 | 403 KiB | 78 KiB | 482 KiB |
/// | 15 | 5 | 305 KiB | 78 KiB | 384 KiB |
/// | 12 | 8 | 263 KiB | 50 KiB | 314 KiB |
/// | 12 (default) | 5 (default) | 165 KiB | 50 KiB | 216 KiB |
/// | 10 | 5 | 150 KiB | 47 KiB | 198 KiB |
/// | 9 or 8 | 1 | 135 KiB | 47 KiB | 181 KiB |
///
/// That is what a zlib stream costs, not what a connection keeps: by
/// default no connection keeps one between messages. Each message takes a
/// stream from a per-thread pool and gives it back at its end (a message
/// in pieces holds it until its last piece). Without context takeover in a
/// direction, the stream comes back reset and serves any connection of the
/// thread. With context takeover the connection keeps its last window of
/// plaintext (`2^w` bytes per direction, the peer's `w` for what it
/// receives: 4 KiB each at the default window 12), and its stream is
/// parked in the pool for it: if the connection's next message comes
/// before the thread needed that stream for another connection, it goes on
/// with it as if it were its own; otherwise it takes another, reset and
/// primed with the window as its dictionary, which the peer cannot tell
/// apart (RFC 7692 §7.2.3's context takeover, with the same window). The
/// pool parks at most 4 streams of each class per thread and frees the
/// rest, so a thread keeps about 0.8 MiB at the defaults however many
/// connections it serves. Set [`release_after_idle`](Self::release_after_idle)
/// to a non-zero period for streams a connection keeps as its own.
///
/// # Presets
///
/// Three useful points, measured on a deterministic mix of JSON chat
/// messages and market-data batches of 100 B to 4 KiB (log-uniform
/// sizes, median ~640 B): 50 server connections, each sending 40 messages
/// to a client that offers the defaults (as browsers do) and receiving them
/// back. "compressed / plain" is what the servers sent on the wire over
/// the plain size (messages under `min_compress_size` go uncompressed);
/// "busy" is the heap a server connection holds right after the traffic,
/// everything counted (struct, buffers, windows), "idle" after
/// `release_after_idle`; "per thread" is the pool of streams, paid once
/// per thread that sends or receives compressed messages. zlib-rs 0.6,
/// x86-64, reproduced by
/// `cargo test -p wsmachine --release --test deflate_presets -- --nocapture`.
///
/// | preset | compressed / plain | per connection, busy | per connection, idle | per thread | when to use |
/// |---|---|---|---|---|---|
/// | [`shared()`](Self::shared) | 0.338 | 1.4 KiB | 1.4 KiB | 209 KiB | fan-out, CPU first: each message compressed on its own, so a [`PreparedMessage`](crate::PreparedMessage) is compressed once for every connection, and no window is kept or primed |
/// | [`small_windows()`](Self::small_windows) | 0.312 | 3.3 KiB | 3.3 KiB | 784 KiB | many mostly idle connections of small, repetitive messages: context takeover over a 1 KiB window |
/// | [`default()`](Self::default) | 0.285 | 9.3 KiB | 9.3 KiB | 832 KiB | the best ratio of the three: context takeover over a 4 KiB window |
/// | `default()` with `release_after_idle` of 1 s | 0.285 | 232 KiB | 12 KiB | — | a few busy connections per thread, each with streams of its own |
/// | no compression | 1 | 11.5 KiB | 11.5 KiB | — | already-compressed or tiny payloads |
///
/// The price of the pooled streams with context takeover is a priming
/// when a connection's stream was taken by another one: re-hashing its
/// window (about 16 instructions a byte, 4 KiB at the default) before the
/// message. On the mix above, where 50 connections take turns on one
/// thread and every message is primed, it costs no more CPU than 50
/// connections with streams of their own (whose 230 KiB each fall out of
/// the cache between their messages); a connection alone on its thread
/// never primes. A connection whose decompressor or compressor is pooled
/// also keeps no buffer between messages: its input, output and inflate
/// output buffers go as soon as they are drained (an allocation more per
/// read and per message, small beside inflating and deflating), and the
/// buffer a message is compressed into is the thread's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Client: ask the server not to keep its context; server: demand it.
    pub server_no_context_takeover: bool,
    /// Client: promise not to keep our context; server: demand it of the client.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server may use (8–15). Client: requested only
    /// when [`request_server_max_window_bits`](Self::request_server_max_window_bits)
    /// is set. Server: our compressor's window.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window the client may use (8–15). Client: our
    /// compressor's window. Server: the limit put on clients that offer
    /// `client_max_window_bits`.
    pub client_max_window_bits: u8,
    /// Compression level 0–9.
    pub level: u32,
    /// zlib memLevel 1–9 for the compressor.
    pub mem_level: u8,
    /// Messages shorter than this are sent uncompressed.
    pub min_compress_size: usize,
    /// Client only: ask the server to keep its window to
    /// `server_max_window_bits`. The offer is then
    /// `permessage-deflate; server_max_window_bits=N; client_max_window_bits,
    /// permessage-deflate; client_max_window_bits`: the second offer is the
    /// RFC 7692 §7.1.3 fallback for servers that do not support the
    /// parameter, so compression is still negotiated (with a larger server
    /// window) rather than lost.
    pub request_server_max_window_bits: bool,
    /// Zero (the default): a connection keeps no zlib stream between
    /// messages; each message takes one from the thread's pool (see
    /// [Memory per connection](Self#memory-per-connection)).
    ///
    /// Non-zero: the connection's streams are its own, kept while it is
    /// busy and freed once it has neither sent nor received anything for
    /// this long (between one and two such periods after the last
    /// traffic), along with the buffers kept for the next compressed
    /// message (its compressed payload, its inflate output); `None` keeps
    /// them for the connection's life. A released stream keeps only the
    /// last `2^window` bytes of its plaintext (4 KiB at window 12; nothing
    /// without context takeover), and the next message starts a fresh
    /// stream primed with them as its dictionary, so context takeover goes
    /// on as if nothing had happened (the peer sees the same protocol).
    /// Waking costs a stream allocation and a re-hash of the window (tens
    /// of µs), once per idle period.
    ///
    /// Whether the process's resident memory drops when streams are freed
    /// is the allocator's business: glibc's malloc keeps freed blocks of
    /// this size in its heap once its dynamic mmap threshold has risen past
    /// them (after the first such block is freed). Servers holding many
    /// connections with streams of their own should pin the threshold
    /// (`MALLOC_MMAP_THRESHOLD_=65536` in the environment, or `mallopt`) or
    /// use an allocator that returns memory; `conformance/bench/idle_memory.sh`
    /// measures both. The default's pooled streams are not freed, so they
    /// do not depend on it.
    pub release_after_idle: Option<std::time::Duration>,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 12,
            client_max_window_bits: 12,
            level: 6,
            mem_level: 5,
            min_compress_size: 128,
            request_server_max_window_bits: false,
            release_after_idle: Some(std::time::Duration::ZERO),
        }
    }
}

impl DeflateConfig {
    /// `release_after_idle` of zero: every message takes its streams from
    /// the thread's pool.
    pub(crate) fn pools_streams(&self) -> bool {
        self.release_after_idle == Some(std::time::Duration::ZERO)
    }

    /// When a connection's own streams are freed for idleness: never when
    /// they come from the pool.
    pub(crate) fn idle_release(&self) -> Option<std::time::Duration> {
        self.release_after_idle.filter(|idle| !idle.is_zero())
    }

    /// No context takeover either way, so both directions use the
    /// thread's shared streams: no zlib memory per connection (see
    /// [Presets](Self#presets)). The defaults otherwise (window 12,
    /// memLevel 5): on this mix a larger window or memLevel compresses no
    /// better, as each message starts from an empty window, and would make
    /// the per-thread compressor larger (594 KiB at 15/8).
    ///
    /// A server demands `client_no_context_takeover` of every client (RFC
    /// 7692 §7.1.1.2 lets it, whether offered or not), so that what clients
    /// send is inflated by the shared decompressor too; a client offers
    /// both parameters, and fails the handshake of a server that does not
    /// grant `server_no_context_takeover` (§7.1.1.1).
    ///
    /// ```
    /// use wsmachine::{parse_extensions, DeflateConfig};
    /// let browser = parse_extensions("permessage-deflate; client_max_window_bits").unwrap();
    /// let (params, response) = DeflateConfig::shared().negotiate(&browser).unwrap();
    /// assert!(params.server_no_context_takeover && params.client_no_context_takeover);
    /// assert_eq!(
    ///     response,
    ///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
    ///      server_max_window_bits=12; client_max_window_bits=12"
    /// );
    /// ```
    pub fn shared() -> Self {
        DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        }
    }

    /// Context takeover both ways with 1 KiB windows (10 bits) and memLevel
    /// 5: a connection keeps 1 KiB of history per direction between
    /// messages, and priming a stream re-hashes 1 KiB rather than 4 (see
    /// [Presets](Self#presets)). Going lower does not pay: memLevel 1 (at
    /// window 9 or 10) compresses the mix worse than
    /// [`shared`](Self::shared) does.
    ///
    /// ```
    /// use wsmachine::{parse_extensions, DeflateConfig};
    /// let browser = parse_extensions("permessage-deflate; client_max_window_bits").unwrap();
    /// let (_, response) = DeflateConfig::small_windows().negotiate(&browser).unwrap();
    /// assert_eq!(response, "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10");
    /// ```
    pub fn small_windows() -> Self {
        DeflateConfig {
            server_max_window_bits: 10,
            client_max_window_bits: 10,
            ..DeflateConfig::default()
        }
    }
}

/// The negotiated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window size (8–15).
    pub server_max_window_bits: u8,
    /// The client's LZ77 window size (8–15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// What a bare `permessage-deflate` negotiates: context takeover and
    /// 15-bit windows both ways.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The permessage-deflate parameters of one offer or response, validated
/// for syntax (RFC 7692 §7: no unknown or duplicate parameter, values legal).
#[derive(Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

impl Params {
    fn parse(ext: &ExtensionOffer, response: bool) -> Result<Params, ExtensionError> {
        let mut p = Params::default();
        let mut seen = [false; 4];
        for (name, value) in &ext.params {
            let (i, canonical) = match name.to_ascii_lowercase().as_str() {
                SERVER_NO_CONTEXT_TAKEOVER => (0, SERVER_NO_CONTEXT_TAKEOVER),
                CLIENT_NO_CONTEXT_TAKEOVER => (1, CLIENT_NO_CONTEXT_TAKEOVER),
                SERVER_MAX_WINDOW_BITS => (2, SERVER_MAX_WINDOW_BITS),
                CLIENT_MAX_WINDOW_BITS => (3, CLIENT_MAX_WINDOW_BITS),
                _ => return Err(ExtensionError::UnknownParameter(name.clone())),
            };
            if mem::replace(&mut seen[i], true) {
                return Err(ExtensionError::DuplicateParameter(name.clone()));
            }
            let invalid = |v: &str| ExtensionError::InvalidValue {
                name: name.clone(),
                value: v.to_string(),
            };
            match (canonical, value) {
                // §7.1.1.1, §7.1.1.2: these parameters have no value.
                (SERVER_NO_CONTEXT_TAKEOVER | CLIENT_NO_CONTEXT_TAKEOVER, Some(v)) => {
                    return Err(invalid(v))
                }
                (SERVER_NO_CONTEXT_TAKEOVER, None) => p.server_no_context_takeover = true,
                (CLIENT_NO_CONTEXT_TAKEOVER, None) => p.client_no_context_takeover = true,
                // §7.1.2.1: server_max_window_bits always has a value. §7.1.2.2:
                // client_max_window_bits may come bare in an offer, never in a response.
                (SERVER_MAX_WINDOW_BITS, None) => return Err(invalid("")),
                (CLIENT_MAX_WINDOW_BITS, None) if response => return Err(invalid("")),
                (CLIENT_MAX_WINDOW_BITS, None) => p.client_max_window_bits = Some(None),
                // Only the window parameters with a value are left.
                (_, v) => {
                    let v = v.as_deref().unwrap_or_default();
                    let bits = parse_window_bits(v).ok_or_else(|| invalid(v))?;
                    if i == 2 {
                        p.server_max_window_bits = Some(bits);
                    } else {
                        p.client_max_window_bits = Some(Some(bits));
                    }
                }
            }
        }
        Ok(p)
    }
}

/// RFC 7692 §7.1.2: "a decimal integer value without leading zeroes between
/// 8 to 15, inclusive".
fn parse_window_bits(v: &str) -> Option<u8> {
    match v.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

impl DeflateConfig {
    /// Client: the `Sec-WebSocket-Extensions` value to offer.
    ///
    /// `client_max_window_bits` is always offered without a value: it tells
    /// the server we support the parameter in its response, and is what
    /// browsers send. Our own window limit needs no negotiation (using a
    /// smaller window than allowed is always legal), so it is applied locally
    /// rather than offered as a hint.
    ///
    /// ```
    /// use wsmachine::DeflateConfig;
    /// assert_eq!(DeflateConfig::default().offer_header(), "permessage-deflate; client_max_window_bits");
    /// ```
    pub fn offer_header(&self) -> String {
        let mut base = String::from(NAME);
        if self.server_no_context_takeover {
            base.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            base.push_str("; client_no_context_takeover");
        }
        let cmwb = "; client_max_window_bits";
        if self.request_server_max_window_bits {
            format!(
                "{base}; server_max_window_bits={}{cmwb}, {base}{cmwb}",
                clamp_bits(self.server_max_window_bits)
            )
        } else {
            base + cmwb
        }
    }

    /// Server: the first acceptable offer's parameters and the response element; `None` declines.
    ///
    /// Offers of other extensions are skipped; a permessage-deflate offer
    /// with an unknown or duplicate parameter or an illegal value is declined
    /// and the next one is tried (RFC 7692 §7). The response carries
    /// `server_max_window_bits` whenever our window is below 15 (§7.1.2.1
    /// allows it even when not requested, and it lets the client allocate
    /// less), and `client_max_window_bits` only when the client offered it
    /// (§7.1.2.2).
    ///
    /// ```
    /// use wsmachine::{parse_extensions, DeflateConfig};
    /// let offers = parse_extensions("permessage-deflate; client_max_window_bits").unwrap();
    /// let (params, response) = DeflateConfig::default().negotiate(&offers).unwrap();
    /// assert_eq!(response, "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12");
    /// assert_eq!(params.client_max_window_bits, 12);
    /// ```
    pub fn negotiate(&self, offers: &[ExtensionOffer]) -> Option<(DeflateParams, String)> {
        offers
            .iter()
            .filter(|o| o.name.eq_ignore_ascii_case(NAME))
            .find_map(|o| self.accept_offer(o).ok())
    }

    /// Server: accepts one permessage-deflate offer, or says why it is declined.
    fn accept_offer(
        &self,
        offer: &ExtensionOffer,
    ) -> Result<(DeflateParams, String), ExtensionError> {
        let p = Params::parse(offer, false)?;
        // §7.1.1.1: accepting an offer with server_no_context_takeover means
        // including it; we may also include it on our own.
        let server_nct = p.server_no_context_takeover || self.server_no_context_takeover;
        // §7.1.1.2: we may include client_no_context_takeover whether offered or not;
        // echoing the client's own promise keeps the params truthful.
        let client_nct = p.client_no_context_takeover || self.client_no_context_takeover;
        let server_bits = p
            .server_max_window_bits
            .unwrap_or(15)
            .min(clamp_bits(self.server_max_window_bits));
        let client_bits = match p.client_max_window_bits {
            // Not offered: we may not limit the client (§7.1.2.2).
            None => 15,
            Some(v) => v.unwrap_or(15).min(clamp_bits(self.client_max_window_bits)),
        };
        let mut response = ExtensionOffer {
            name: NAME.into(),
            params: Vec::new(),
        };
        let mut add = |name: &str, value: Option<u8>| {
            response
                .params
                .push((name.into(), value.map(|v| v.to_string())))
        };
        if server_nct {
            add(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if client_nct {
            add(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if p.server_max_window_bits.is_some() || server_bits < 15 {
            add(SERVER_MAX_WINDOW_BITS, Some(server_bits));
        }
        if p.client_max_window_bits.is_some() && client_bits < 15 {
            add(CLIENT_MAX_WINDOW_BITS, Some(client_bits));
        }
        let params = DeflateParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        };
        Ok((params, format_extension(&response)))
    }

    /// Client: validates the server's accepted `permessage-deflate` element.
    ///
    /// Fails on anything RFC 7692 §7 tells the client to fail on: an unknown
    /// or duplicate parameter, an illegal value (including a bare
    /// `client_max_window_bits`, which needs a value in a response), or a
    /// response that accepts none of our offers (`server_no_context_takeover`
    /// was requested but is missing, `server_max_window_bits` above what was
    /// requested with no fallback offer). `server_no_context_takeover`,
    /// `client_no_context_takeover` and `server_max_window_bits` may appear
    /// unrequested (§7.1.1.1, §7.1.1.2, §7.1.2.1); `client_max_window_bits`
    /// may appear because we always offer it.
    ///
    /// ```
    /// use wsmachine::{parse_extensions, DeflateConfig};
    /// let resp = parse_extensions("permessage-deflate; server_max_window_bits=10").unwrap();
    /// let params = DeflateConfig::default().check_response(&resp[0]).unwrap();
    /// assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (10, 15));
    /// ```
    pub fn check_response(
        &self,
        accepted: &ExtensionOffer,
    ) -> Result<DeflateParams, ExtensionError> {
        if !accepted.name.eq_ignore_ascii_case(NAME) {
            return Err(ExtensionError::UnofferedExtension(accepted.name.clone()));
        }
        let p = Params::parse(accepted, true)?;
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            // Every offer we made requested it (§7.1.1.1).
            return Err(ExtensionError::Malformed(
                "response omits server_no_context_takeover, which every offer requested".into(),
            ));
        }
        // With request_server_max_window_bits, the fallback offer accepts any
        // server window; a request without fallback is never made. Still, a
        // value above the request means the fallback offer was chosen, which
        // is fine, so there is nothing further to check for it here.
        let server_bits = p.server_max_window_bits.unwrap_or(15);
        let client_bits = p.client_max_window_bits.flatten().unwrap_or(15);
        Ok(DeflateParams {
            server_no_context_takeover: p.server_no_context_takeover,
            // We promised it in the offer, so we keep it even if not echoed.
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::tests::{cfg15, params};
    use crate::extensions::parse_extensions;

    fn offers(s: &str) -> Vec<ExtensionOffer> {
        parse_extensions(s).unwrap()
    }

    fn one(s: &str) -> ExtensionOffer {
        offers(s).remove(0)
    }

    // ---- offer_header -------------------------------------------------

    #[test]
    fn default_offer_is_plain() {
        assert_eq!(
            DeflateConfig::default().offer_header(),
            "permessage-deflate; client_max_window_bits"
        );
    }

    #[test]
    fn offer_with_no_context_takeover_and_window_request_has_fallback() {
        let c = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            request_server_max_window_bits: true,
            ..DeflateConfig::default()
        };
        let h = c.offer_header();
        assert_eq!(
            h,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits, \
             permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
        );
        // Both offers parse and are accepted by a default server.
        let o = offers(&h);
        assert_eq!(o.len(), 2);
        let (p, _) = DeflateConfig::default().negotiate(&o).unwrap();
        assert_eq!(p, params(true, true, 10, 12));
    }

    #[test]
    fn offer_clamps_out_of_range_window() {
        let c = DeflateConfig {
            server_max_window_bits: 3,
            request_server_max_window_bits: true,
            ..DeflateConfig::default()
        };
        assert!(c.offer_header().contains("server_max_window_bits=8;"));
    }

    // ---- negotiate (server) -----------------------------------------------

    #[test]
    fn server_accepts_plain_offer() {
        let (p, r) = cfg15().negotiate(&offers("permessage-deflate")).unwrap();
        assert_eq!(p, params(false, false, 15, 15));
        assert_eq!(r, "permessage-deflate");
    }

    #[test]
    fn default_server_limits_both_windows_when_it_can() {
        let d = DeflateConfig::default();
        let (p, r) = d
            .negotiate(&offers("permessage-deflate; client_max_window_bits"))
            .unwrap();
        assert_eq!(p, params(false, false, 12, 12));
        assert_eq!(
            r,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        );
        // Without client_max_window_bits in the offer the client cannot be limited:
        // accepted with 15 (§7.1.2.2 forbids the parameter in the response).
        let (p, r) = d.negotiate(&offers("permessage-deflate")).unwrap();
        assert_eq!(p, params(false, false, 12, 15));
        assert_eq!(r, "permessage-deflate; server_max_window_bits=12");
    }

    #[test]
    fn server_max_window_bits_takes_the_smaller() {
        let (p, r) = cfg15()
            .negotiate(&offers("permessage-deflate; server_max_window_bits=10"))
            .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=10");
        let (p, r) = DeflateConfig::default()
            .negotiate(&offers("permessage-deflate; server_max_window_bits=14"))
            .unwrap();
        assert_eq!(p.server_max_window_bits, 12);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=12");
        // Offered 15 explicitly: the response must carry it (accepting means including).
        let (_, r) = cfg15()
            .negotiate(&offers("permessage-deflate; server_max_window_bits=15"))
            .unwrap();
        assert_eq!(r, "permessage-deflate; server_max_window_bits=15");
    }

    #[test]
    fn window_bits_8_is_accepted() {
        let (p, r) = cfg15()
            .negotiate(&offers(
                "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
            ))
            .unwrap();
        assert_eq!(p, params(false, false, 8, 8));
        assert_eq!(
            r,
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8"
        );
    }

    #[test]
    fn client_max_window_bits_with_and_without_value() {
        let (p, r) = cfg15()
            .negotiate(&offers("permessage-deflate; client_max_window_bits"))
            .unwrap();
        assert_eq!(p.client_max_window_bits, 15);
        assert_eq!(r, "permessage-deflate");
        let (p, r) = cfg15()
            .negotiate(&offers("permessage-deflate; client_max_window_bits=9"))
            .unwrap();
        assert_eq!(p.client_max_window_bits, 9);
        assert_eq!(r, "permessage-deflate; client_max_window_bits=9");
        let (p, _) = DeflateConfig::default()
            .negotiate(&offers("permessage-deflate; client_max_window_bits=13"))
            .unwrap();
        assert_eq!(p.client_max_window_bits, 12);
    }

    #[test]
    fn no_context_takeover_requested_and_demanded() {
        let (p, r) = cfg15()
            .negotiate(&offers("permessage-deflate; server_no_context_takeover"))
            .unwrap();
        assert_eq!(p, params(true, false, 15, 15));
        assert_eq!(r, "permessage-deflate; server_no_context_takeover");
        let (p, r) = cfg15()
            .negotiate(&offers("permessage-deflate; client_no_context_takeover"))
            .unwrap();
        assert_eq!(p, params(false, true, 15, 15));
        assert_eq!(r, "permessage-deflate; client_no_context_takeover");
        let demanding = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..cfg15()
        };
        let (p, r) = demanding.negotiate(&offers("permessage-deflate")).unwrap();
        assert_eq!(p, params(true, true, 15, 15));
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn all_parameters_at_once() {
        let (p, r) = cfg15()
            .negotiate(&offers(
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
                 client_max_window_bits=11; server_max_window_bits=9",
            ))
            .unwrap();
        assert_eq!(p, params(true, true, 9, 11));
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=11"
        );
    }

    #[test]
    fn invalid_offers_are_declined() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; foo=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_max_window_bits=-9",
            "permessage-deflate; server_max_window_bits=9.0",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=255",
            "permessage-deflate; client_max_window_bits=x",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(cfg15().negotiate(&offers(bad)), None, "{bad}");
        }
    }

    #[test]
    fn quoted_values_are_accepted() {
        let (p, _) = cfg15()
            .negotiate(&offers(
                r#"permessage-deflate; server_max_window_bits="10""#,
            ))
            .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
    }

    #[test]
    fn names_are_case_insensitive() {
        let (p, _) = cfg15()
            .negotiate(&offers("Permessage-Deflate; Server_No_Context_Takeover"))
            .unwrap();
        assert!(p.server_no_context_takeover);
    }

    #[test]
    fn first_acceptable_offer_wins() {
        // The first is declined (unknown parameter), other extensions are skipped.
        let (p, r) = cfg15()
            .negotiate(&offers(
                "x-foo, permessage-deflate; bogus, permessage-deflate; server_max_window_bits=10, \
                 permessage-deflate",
            ))
            .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
        assert_eq!(r, "permessage-deflate; server_max_window_bits=10");
        // RFC 7692 §7.1.3's example with a fallback: the first is accepted.
        let (p, _) = cfg15()
            .negotiate(&offers(
                "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
                 permessage-deflate; client_max_window_bits",
            ))
            .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
    }

    #[test]
    fn no_permessage_deflate_offer_declines() {
        assert_eq!(cfg15().negotiate(&offers("x-foo; a=1, x-bar")), None);
        assert_eq!(cfg15().negotiate(&[]), None);
    }

    #[test]
    fn server_response_passes_our_client_check() {
        // Every response our server writes is accepted by our client, with the same params.
        for offer_cfg in [
            DeflateConfig::default(),
            DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..DeflateConfig::default()
            },
            DeflateConfig {
                server_max_window_bits: 9,
                request_server_max_window_bits: true,
                ..DeflateConfig::default()
            },
        ] {
            for server in [DeflateConfig::default(), cfg15()] {
                let (sp, resp) = server
                    .negotiate(&offers(&offer_cfg.offer_header()))
                    .unwrap();
                let cp = offer_cfg.check_response(&one(&resp)).unwrap();
                assert_eq!(sp, cp, "{resp}");
            }
        }
    }

    #[test]
    fn rfc7692_7_1_1_2_server_adds_client_no_context_takeover_unoffered() {
        // A server that demands it puts it in the response whatever the
        // client offered, and every client offer we make accepts that.
        let demanding = DeflateConfig {
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        for server in [demanding, DeflateConfig::shared()] {
            for client in [
                DeflateConfig::default(),
                DeflateConfig::small_windows(),
                DeflateConfig {
                    request_server_max_window_bits: true,
                    ..DeflateConfig::default()
                },
            ] {
                let offer = client.offer_header();
                assert!(!offer.contains(CLIENT_NO_CONTEXT_TAKEOVER), "{offer}");
                let (sp, resp) = server.negotiate(&offers(&offer)).unwrap();
                assert!(sp.client_no_context_takeover, "{offer}");
                assert!(resp.contains("; client_no_context_takeover"), "{resp}");
                let cp = client.check_response(&one(&resp)).unwrap();
                assert_eq!(sp, cp, "{resp}");
            }
        }
        // A bare offer (no client_max_window_bits) too.
        let (p, r) = DeflateConfig::shared()
            .negotiate(&offers("permessage-deflate"))
            .unwrap();
        assert_eq!(p, params(true, true, 12, 15));
        assert_eq!(
            r,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12"
        );
    }

    #[test]
    fn presets() {
        let shared = DeflateConfig::shared();
        assert!(shared.server_no_context_takeover && shared.client_no_context_takeover);
        assert_eq!(
            shared.offer_header(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             client_max_window_bits"
        );
        // A client with the shared preset fails a server that keeps its context.
        assert!(shared.check_response(&one("permessage-deflate")).is_err());
        let small = DeflateConfig::small_windows();
        assert!(!small.server_no_context_takeover && !small.client_no_context_takeover);
        assert_eq!(
            (small.server_max_window_bits, small.client_max_window_bits),
            (10, 10)
        );
    }

    // ---- check_response (client) -----------------------------------------------

    #[test]
    fn client_accepts_legal_responses() {
        let d = DeflateConfig::default();
        assert_eq!(
            d.check_response(&one("permessage-deflate")).unwrap(),
            params(false, false, 15, 15)
        );
        assert_eq!(
            d.check_response(&one(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=8; client_max_window_bits=9"
            ))
            .unwrap(),
            params(true, true, 8, 9)
        );
        // Case-insensitive.
        assert_eq!(
            d.check_response(&one("PerMessage-Deflate; Client_Max_Window_Bits=10"))
                .unwrap(),
            params(false, false, 15, 10)
        );
    }

    #[test]
    fn client_keeps_its_promise_of_no_context_takeover() {
        let c = DeflateConfig {
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        assert!(
            c.check_response(&one("permessage-deflate"))
                .unwrap()
                .client_no_context_takeover
        );
    }

    #[test]
    fn client_requires_requested_server_no_context_takeover() {
        let c = DeflateConfig {
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        assert!(matches!(
            c.check_response(&one("permessage-deflate")),
            Err(ExtensionError::Malformed(_))
        ));
        assert!(c
            .check_response(&one("permessage-deflate; server_no_context_takeover"))
            .is_ok());
    }

    #[test]
    fn client_with_fallback_accepts_larger_server_window() {
        let c = DeflateConfig {
            server_max_window_bits: 10,
            request_server_max_window_bits: true,
            ..DeflateConfig::default()
        };
        assert_eq!(
            c.check_response(&one("permessage-deflate"))
                .unwrap()
                .server_max_window_bits,
            15
        );
        assert_eq!(
            c.check_response(&one("permessage-deflate; server_max_window_bits=9"))
                .unwrap()
                .server_max_window_bits,
            9
        );
    }

    #[test]
    fn client_rejects_bad_responses_precisely() {
        let d = DeflateConfig::default();
        let check = |s: &str| d.check_response(&one(s));
        assert_eq!(
            check("x-foo"),
            Err(ExtensionError::UnofferedExtension("x-foo".into()))
        );
        assert_eq!(
            check("permessage-deflate; foo"),
            Err(ExtensionError::UnknownParameter("foo".into()))
        );
        assert_eq!(
            check("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
            Err(ExtensionError::DuplicateParameter(
                "server_no_context_takeover".into()
            ))
        );
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"),
            Err(ExtensionError::DuplicateParameter(
                "server_max_window_bits".into()
            ))
        );
        let invalid = |name: &str, value: &str| ExtensionError::InvalidValue {
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(
            check("permessage-deflate; client_max_window_bits"),
            Err(invalid("client_max_window_bits", ""))
        );
        assert_eq!(
            check("permessage-deflate; server_max_window_bits"),
            Err(invalid("server_max_window_bits", ""))
        );
        assert_eq!(
            check("permessage-deflate; server_max_window_bits=16"),
            Err(invalid("server_max_window_bits", "16"))
        );
        assert_eq!(
            check("permessage-deflate; client_max_window_bits=7"),
            Err(invalid("client_max_window_bits", "7"))
        );
        assert_eq!(
            check("permessage-deflate; client_max_window_bits=010"),
            Err(invalid("client_max_window_bits", "010"))
        );
        assert_eq!(
            check("permessage-deflate; client_no_context_takeover=1"),
            Err(invalid("client_no_context_takeover", "1"))
        );
    }

    #[test]
    fn window_bits_values() {
        for v in 8..=15u8 {
            assert_eq!(parse_window_bits(&v.to_string()), Some(v));
        }
        for v in ["", "0", "7", "16", "08", "+9", "9 ", "1a", "100", "٩"] {
            assert_eq!(parse_window_bits(v), None, "{v:?}");
        }
    }
}
