//! permessage-deflate (RFC 7692): negotiation ([`DeflateConfig`]) and the
//! per-message codec ([`Compressor`], [`Decompressor`]).
//!
//! The codec drives `zlib-rs` directly (the same implementation flate2 uses
//! here) rather than through flate2, for three reasons: flate2 does not
//! expose zlib's `memLevel`, which is half of the memory budget; flate2's
//! `Decompress::reset` re-allocates the whole state for any window other
//! than 15; and zlib-rs writes straight into uninitialised spare capacity,
//! so output lands in the caller's `BytesMut` with no intermediate copy.
//!
//! # Window bits 8
//!
//! zlib (since 1.2.9) and zlib-rs refuse a raw deflate stream with an 8-bit
//! window (`deflateInit2` returns `Z_STREAM_ERROR`; zlib-rs's `Deflate`
//! panics, flate2 asserts 9..=15), and older zlib silently used 9. We compress
//! with a 9-bit window when 8 is negotiated. That is safe because every zlib
//! match finder (zlib-rs included: `State::max_dist`) limits distances to
//! `MAX_DIST = w_size - MIN_LOOKAHEAD = 512 - 262 = 250` bytes, which fits in
//! a 256-byte window; the interop tests check this against Python's zlib
//! inflating with `wbits=-8`, at every level, on data with repeats at
//! distances 251..=512. (The alternative, stored blocks or Huffman-only
//! coding, would also be correct but would give up compression for nothing.)
//!
//! Receiving, we always inflate with a 15-bit window. Inflating with a
//! larger window than negotiated is always correct; zlib-rs allocates the
//! full 32 KiB window whatever the window bits are, so a smaller one would
//! save nothing; and it accepts the peers that treat 8 as 9 (or otherwise
//! overshoot a little) without a special case. (zlib itself only checks a
//! distance against the window when it reaches back past what the current
//! call wrote, so a window limit was never a reliable check on the peer.)

use std::mem;

use bytes::BytesMut;
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush, Status};

use crate::error::{ExtensionError, ProtocolError};
use crate::extensions::{format_extension, ExtensionOffer};
use crate::Role;

const NAME: &str = "permessage-deflate";
const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";
/// The empty stored block a sync flush ends with (RFC 7692 §7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Inflate output is produced at most this much at a time, so the
/// decompressed-size limit is checked before more memory is committed.
const INFLATE_CHUNK: usize = 64 << 10;

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
/// decompressor), which is what lets idle connections free their streams
/// (see below). A connection has one of each once compression is
/// negotiated and used; buffers for messages come on top.
///
/// | window bits | memLevel | compressor | decompressor | per connection, busy |
/// |---|---|---|---|---|
/// | 15 | 8 | 403 KiB | 78 KiB | 482 KiB |
/// | 15 | 5 | 305 KiB | 78 KiB | 384 KiB |
/// | 12 | 8 | 263 KiB | 50 KiB | 314 KiB |
/// | 12 (default) | 5 (default) | 165 KiB | 50 KiB | 216 KiB |
/// | 10 | 5 | 150 KiB | 47 KiB | 198 KiB |
/// | 9 or 8 | 1 | 135 KiB | 47 KiB | 181 KiB |
///
/// `no_context_takeover` does not reduce these: the streams are reset, not
/// freed, between messages, so that steady-state sending and receiving do not
/// allocate. What does reduce them is idleness: after
/// [`release_after_idle`](Self::release_after_idle) (1 s by default) without
/// traffic both streams are freed, and a connection keeps only each
/// direction's last window of plaintext for context takeover (`2^w` bytes
/// per direction, 4 KiB each at the default window 12; nothing without
/// context takeover). `core/tests/deflate_memory.rs` measures two connected
/// ends at about 430 KiB busy and 18 KiB idle at the defaults.
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
    /// Free both zlib streams of a connection that has neither sent nor
    /// received anything for this long (they are freed between one and two
    /// such periods after the last traffic); `None` keeps them for the
    /// connection's life.
    ///
    /// A released stream keeps only the last `2^window` bytes of its
    /// plaintext (4 KiB at window 12; nothing without context takeover),
    /// and the next message starts a fresh stream primed with them as its
    /// dictionary, so context takeover goes on as if nothing had happened
    /// (the peer sees the same protocol). An idle connection that used
    /// compression then costs a few KiB instead of ~200 KiB; waking it costs
    /// a stream allocation and a re-hash of the window (tens of µs), once
    /// per idle period. Default: 1 s.
    ///
    /// Whether the process's resident memory drops too is the allocator's
    /// business: glibc's malloc keeps freed blocks of this size in its heap
    /// once its dynamic mmap threshold has risen past them (after the first
    /// such block is freed). Servers holding many compressed connections
    /// should pin the threshold (`MALLOC_MMAP_THRESHOLD_=65536` in the
    /// environment, or `mallopt`) or use an allocator that returns memory;
    /// `conformance/bench/idle_memory.sh` measures both.
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
            release_after_idle: Some(std::time::Duration::from_secs(1)),
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

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(8, 15)
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

/// The last `cap` bytes of one direction's plaintext: the LZ77 window a
/// fresh zlib stream is primed with after [`Compressor::release`] or
/// [`Decompressor::release`]. A ring, so recording a message costs at most
/// two copies of at most `cap` bytes; it grows to `cap` only as data comes.
#[derive(Debug, Default)]
struct History {
    buf: Vec<u8>,
    cap: usize,
    /// Where the oldest byte is once `buf` is full.
    pos: usize,
}

impl History {
    fn new(cap: usize) -> Self {
        History {
            buf: Vec::new(),
            cap,
            pos: 0,
        }
    }

    /// The history a stream with a `bits` window needs: the whole window
    /// (9 bits when 8 was negotiated, see the module doc), or nothing
    /// without context takeover.
    fn for_window(bits: u8, no_context_takeover: bool) -> Self {
        History::new(if no_context_takeover {
            0
        } else {
            1 << clamp_bits(bits).max(9)
        })
    }

    /// Primes a new `stream` with the kept window as its dictionary.
    fn prime<S, E: std::fmt::Debug>(
        &mut self,
        mut stream: S,
        set_dictionary: impl FnOnce(&mut S, &[u8]) -> Result<u32, E>,
    ) -> S {
        let dict = self.contiguous();
        if !dict.is_empty() {
            // Cannot fail: a raw stream at its start takes a dictionary of
            // up to its window.
            let primed = set_dictionary(&mut stream, dict);
            debug_assert!(primed.is_ok(), "set_dictionary: {primed:?}");
        }
        stream
    }

    fn push(&mut self, mut data: &[u8]) {
        if self.cap == 0 || data.is_empty() {
            return;
        }
        if data.len() >= self.cap {
            data = &data[data.len() - self.cap..];
            self.buf.clear();
            self.pos = 0;
        }
        if self.buf.len() < self.cap {
            let n = (self.cap - self.buf.len()).min(data.len());
            if self.buf.capacity() < self.buf.len() + n {
                // Geometric growth, but never past `cap`.
                let want = (self.buf.len() * 2).max(self.buf.len() + n).min(self.cap);
                self.buf.reserve_exact(want - self.buf.len());
            }
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if data.is_empty() {
                return;
            }
        }
        // Full: overwrite the oldest bytes.
        let first = (self.cap - self.pos).min(data.len());
        self.buf[self.pos..self.pos + first].copy_from_slice(&data[..first]);
        let rest = data.len() - first;
        self.buf[..rest].copy_from_slice(&data[first..]);
        self.pos = (self.pos + data.len()) % self.cap;
    }

    /// The bytes, oldest first.
    fn contiguous(&mut self) -> &[u8] {
        self.buf.rotate_left(self.pos);
        self.pos = 0;
        &self.buf
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
    }

    fn bytes_held(&self) -> usize {
        self.buf.capacity()
    }
}

/// Compresses the messages one endpoint sends (RFC 7692 §7.2.1).
///
/// One per connection (per sending half), created from the negotiated
/// [`DeflateParams`]. Call [`compress`](Self::compress) once per frame of a
/// message; the zlib stream is kept (context takeover) or reset between
/// messages as negotiated, and not re-allocated unless
/// [`release`](Self::release) freed it.
///
/// ```
/// use bytes::BytesMut;
/// use wsmachine::{Compressor, Decompressor, DeflateConfig, DeflateParams, Role};
/// let params = DeflateParams::default();
/// let mut c = Compressor::new(&params, &DeflateConfig::default(), Role::Client);
/// let mut wire = BytesMut::new();
/// c.compress(b"Hello", true, &mut wire);
/// let mut d = Decompressor::new(&params, Role::Server);
/// let mut msg = BytesMut::new();
/// d.decompress(&wire, true, &mut msg, 1 << 20).unwrap();
/// assert_eq!(&msg[..], b"Hello");
/// ```
pub struct Compressor {
    /// Created on the first compressed message: a connection that only
    /// sends small (uncompressed) messages never pays for it.
    stream: Option<Deflate>,
    config: zlib_rs::DeflateConfig,
    no_context_takeover: bool,
    min_compress_size: usize,
    /// With context takeover: what a new stream is primed with.
    history: History,
    /// A message is in progress (its stream must not be released).
    in_message: bool,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("min_compress_size", &self.min_compress_size)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor for the messages `role` sends: its window is the smaller
    /// of the negotiated one for that direction and our configured one.
    pub fn new(p: &DeflateParams, c: &DeflateConfig, role: Role) -> Self {
        let (negotiated, ours, no_context_takeover) = match role {
            Role::Client => (
                p.client_max_window_bits,
                c.client_max_window_bits,
                p.client_no_context_takeover,
            ),
            Role::Server => (
                p.server_max_window_bits,
                c.server_max_window_bits,
                p.server_no_context_takeover,
            ),
        };
        let bits = clamp_bits(negotiated.min(ours));
        let config = zlib_rs::DeflateConfig {
            level: c.level.min(9) as i32,
            method: zlib_rs::Method::Deflated,
            // Negative: raw deflate. 8 becomes 9, see the module doc; all
            // values here are in range, so zlib-rs's init cannot fail.
            window_bits: -i32::from(bits.max(9)),
            mem_level: i32::from(c.mem_level.clamp(1, 9)),
            strategy: zlib_rs::Strategy::Default,
        };
        Compressor {
            stream: None,
            config,
            no_context_takeover,
            min_compress_size: c.min_compress_size,
            // The compressor's own window: it never reaches back further.
            history: History::for_window(bits, no_context_takeover),
            in_message: false,
        }
    }

    /// Frees the zlib stream (about 160 KiB at the default settings) if no
    /// message is in progress; the next message allocates a new one, primed
    /// with the last window of plaintext when context takeover is on, so
    /// what goes on the wire stays valid for the peer's decompressor.
    /// Returns whether a stream was freed.
    pub fn release(&mut self) -> bool {
        if self.in_message {
            return false;
        }
        self.stream.take().is_some()
    }

    /// Heap bytes held outside the zlib stream (the window kept for
    /// priming a new stream).
    pub fn history_bytes(&self) -> usize {
        self.history.bytes_held()
    }

    /// Whether the zlib stream is allocated.
    pub fn is_allocated(&self) -> bool {
        self.stream.is_some()
    }

    /// Whether a message of `len` bytes is worth compressing
    /// (`len >= min_compress_size`).
    pub fn should_compress(&self, len: usize) -> bool {
        len >= self.min_compress_size
    }

    /// Appends the compressed form of `data`, one frame of a message, to
    /// `out`. `fin` marks the message's last (or only) frame.
    ///
    /// Every frame is sync-flushed, so a receiver can inflate each fragment
    /// as it arrives (intermediate frames keep their `00 00 ff ff`, which is
    /// valid inside a message); at `fin` the `00 00 ff ff` tail is removed
    /// (RFC 7692 §7.2.1), an empty last frame becomes the single byte `00`
    /// (so an empty message is `00`, §7.2.3.6), and the context is reset if
    /// this direction has no context takeover.
    pub fn compress(&mut self, data: &[u8], fin: bool, out: &mut BytesMut) {
        let start = out.len();
        let mut input = data;
        // zlib's bound for the data plus room for the flush markers, so that
        // one call usually finishes; the loop handles the rest.
        let mut want = zlib_rs::compress_bound(input.len()) + 16;
        let config = self.config;
        let history = &mut self.history;
        let stream = self.stream.get_or_insert_with(|| {
            history.prime(Deflate::new_with_config(config), Deflate::set_dictionary)
        });
        self.history.push(data);
        self.in_message = !fin;
        loop {
            out.reserve(want);
            let spare = out.spare_capacity_mut();
            let room = spare.len();
            let (in0, out0) = (stream.total_in(), stream.total_out());
            let result = stream.compress_uninit(input, spare, DeflateFlush::SyncFlush);
            let consumed = (stream.total_in() - in0) as usize;
            let produced = (stream.total_out() - out0) as usize;
            // SAFETY: zlib-rs initialised the first `produced` bytes of the
            // spare capacity it was handed.
            unsafe { out.set_len(out.len() + produced) };
            input = &input[consumed..];
            // A sync flush is complete once zlib returns with output space
            // left and no input pending. No progress (Z_BUF_ERROR: a second
            // flush with nothing new) or a stream error (impossible with a
            // stream we own) also ends the loop rather than spinning.
            let done = input.is_empty() && produced < room;
            if done || result.is_err() || (consumed == 0 && produced == 0) {
                debug_assert!(result.is_ok(), "deflate failed: {result:?}");
                break;
            }
            want = want.max(4096);
        }
        if fin {
            if out[start..].ends_with(&TRAILER) {
                out.truncate(out.len() - TRAILER.len());
            }
            if out.len() == start {
                // Nothing to send for this frame: zlib produces nothing for a
                // flush with no new input, and the frames before it (if any)
                // each ended on a complete `00 00 ff ff`. An empty frame would
                // make the receiver's appended trailer misparse (as LEN/NLEN of
                // a block whose header it never saw), so send the header of an
                // empty stored block, `00`: with the trailer it reads
                // `00 00 00 ff ff`. For an empty message this is §7.2.3.6.
                out.extend_from_slice(&[0x00]);
            }
            if self.no_context_takeover {
                stream.reset();
            }
        }
    }
}

/// Inflates the messages the peer sends (RFC 7692 §7.2.2), with a limit on
/// each message's decompressed size checked while inflating.
///
/// One per connection (per receiving half). Call
/// [`decompress`](Self::decompress) with each frame's payload of a
/// compressed message in order; `fin` on the last.
pub struct Decompressor {
    /// Created on the first compressed message received.
    stream: Option<Inflate>,
    /// The peer resets its context after each message, so we do too.
    no_context_takeover: bool,
    /// Decompressed bytes of the message in progress.
    total: u64,
    /// The message in progress ended its deflate stream with a BFINAL block.
    ended: bool,
    /// The last (up to) four compressed bytes of the message in progress.
    tail: [u8; 4],
    /// How many bytes of `tail` are valid.
    tail_len: usize,
    /// With context takeover: the peer's window of plaintext, what a new
    /// stream is primed with after [`release`](Self::release).
    history: History,
    /// A message is in progress.
    in_message: bool,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A decompressor for what the peer of `role` sends (the other
    /// direction's parameters). It inflates with a 15-bit window whatever
    /// was negotiated (see the module doc), and resets its stream, which
    /// clears the window without re-allocating, after each message when the
    /// peer has no context takeover; a message that refers back into an
    /// earlier one then fails to inflate.
    pub fn new(p: &DeflateParams, role: Role) -> Self {
        let (no_context_takeover, bits) = match role {
            Role::Client => (p.server_no_context_takeover, p.server_max_window_bits),
            Role::Server => (p.client_no_context_takeover, p.client_max_window_bits),
        };
        Decompressor {
            stream: None,
            no_context_takeover,
            total: 0,
            ended: false,
            tail: [0; 4],
            tail_len: 0,
            // The peer may reach back a whole window of its own.
            history: History::for_window(bits, no_context_takeover),
            in_message: false,
        }
    }

    /// Frees the zlib stream (46 KiB) if no message is in progress; the
    /// next message allocates a new one, primed with the peer's last window
    /// of plaintext when it keeps its context, so its back-references still
    /// resolve. Returns whether a stream was freed.
    ///
    /// A peer that ends every message on a block boundary, as RFC 7692
    /// §7.2.1 requires, cannot tell the difference. After a message that
    /// does not (its data stops inside a block), the part-read block is
    /// forgotten along with the stream: what such a peer sends next is
    /// decoded from a clean state instead of from the middle of that block.
    pub fn release(&mut self) -> bool {
        if self.in_message {
            return false;
        }
        self.stream.take().is_some()
    }

    /// Heap bytes held outside the zlib stream (the window kept for
    /// priming a new stream).
    pub fn history_bytes(&self) -> usize {
        self.history.bytes_held()
    }

    /// Whether the zlib stream is allocated.
    pub fn is_allocated(&self) -> bool {
        self.stream.is_some()
    }

    /// Inflates `input`, one frame's payload of a compressed message, and
    /// appends the result to `out`.
    ///
    /// Fails with [`ProtocolError::MessageTooBig`] as soon as the message's
    /// decompressed size passes `limit`: output is produced at most 64 KiB
    /// at a time and `out` never grows past what `limit` allows plus one
    /// chunk, so a decompression bomb costs no more than the limit. Corrupt
    /// data fails with [`ProtocolError::Inflate`]. At `fin` (which may come
    /// with an empty `input`) the message ends: the `00 00 ff ff` trailer is
    /// fed (§7.2.2) and the size count restarts. After an error the
    /// decompressor must not be used again.
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.decompress_within(input, fin, out, limit, &mut |_| Ok(()))
    }

    /// [`decompress`](Self::decompress), asking `grant` before `out` grows:
    /// it is called with the length `out` is about to reach and fails the
    /// message when that cannot be had (the connection's memory budget), so
    /// inflating stops at the smaller of `limit` and what `grant` allows
    /// without allocating past either.
    pub(crate) fn decompress_within(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
        grant: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        self.remember_tail(input);
        self.in_message = !fin;
        let start = out.len();
        self.inflate(input, out, limit, grant)?;
        if fin {
            if self.ended {
                // The peer ended the deflate stream with a BFINAL block
                // (§7.2.3.4 allows it): there is nothing to append, and the
                // next message needs a fresh stream (below).
            } else if self.tail_len == 4 && self.tail == TRAILER {
                // The peer did not strip the flush marker: some senders (ours
                // before, python-websockets when a streamed message ends with
                // an empty frame) sync-flush every frame and end with an empty
                // one. The stream is then already on a block boundary and an
                // appended trailer would be misread as the LEN/NLEN of a stored
                // block. A compliant message never ends in `ff` (the byte before
                // a stripped marker holds the empty block's zero header bits),
                // so this cannot misfire on one.
            } else {
                self.inflate(&TRAILER, out, limit, grant)?;
            }
            if self.no_context_takeover {
                if let Some(stream) = &mut self.stream {
                    stream.reset(false);
                }
                self.history.clear();
            } else if self.ended {
                // The peer ended its deflate stream but keeps its context
                // (RFC 7692 §7.2.3.4 allows the BFINAL block, §7.2.1 the
                // takeover): its next message may refer back into this one,
                // so the new stream starts primed with the window.
                self.history.push(&out[start..]);
                if let Some(stream) = &mut self.stream {
                    stream.reset(false);
                    let dict = self.history.contiguous();
                    if !dict.is_empty() {
                        // Cannot fail: a raw stream at its start takes a
                        // dictionary of up to its window.
                        let primed = stream.set_dictionary(dict);
                        debug_assert!(primed.is_ok(), "set_dictionary: {primed:?}");
                    }
                }
            } else {
                self.history.push(&out[start..]);
            }
            self.total = 0;
            self.ended = false;
            self.tail_len = 0;
        } else if !self.no_context_takeover {
            self.history.push(&out[start..]);
        }
        Ok(())
    }

    fn remember_tail(&mut self, input: &[u8]) {
        for &b in input.iter().rev().take(4).rev() {
            if self.tail_len < 4 {
                self.tail[self.tail_len] = b;
                self.tail_len += 1;
            } else {
                self.tail.rotate_left(1);
                self.tail[3] = b;
            }
        }
    }

    fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
        limit: usize,
        grant: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        if self.ended {
            // Bytes after a BFINAL block are ignored, as zlib does: the RFC's
            // own example (§7.2.3.4, `f3 48 cd c9 c9 07 00 00`) has one.
            return Ok(());
        }
        let limit64 = limit as u64;
        let history = &mut self.history;
        let stream = self
            .stream
            .get_or_insert_with(|| history.prime(Inflate::new(false, 15), Inflate::set_dictionary));
        // Output space starts at a few times the input and doubles while
        // inflate fills it, so a short message does not pin a 64 KiB buffer
        // (found by fuzzing: streamed fragments held 128 KiB each).
        let mut step = input.len().saturating_mul(4).clamp(256, INFLATE_CHUNK);
        loop {
            // One byte more than the limit allows, so passing it is seen.
            let remaining = limit64.saturating_sub(self.total);
            let room = remaining.saturating_add(1).min(step as u64) as usize;
            let max_len = out
                .len()
                .saturating_add(usize::try_from(remaining).unwrap_or(usize::MAX))
                .saturating_add(1);
            reserve_bounded(out, room, max_len, grant)?;
            let spare = &mut out.spare_capacity_mut()[..room];
            let (in0, out0) = (stream.total_in(), stream.total_out());
            let result = stream.decompress_uninit(input, spare, InflateFlush::NoFlush);
            let consumed = (stream.total_in() - in0) as usize;
            let produced = (stream.total_out() - out0) as usize;
            // SAFETY: zlib-rs initialised the first `produced` bytes of the
            // spare capacity it was handed.
            unsafe { out.set_len(out.len() + produced) };
            input = &input[consumed..];
            self.total += produced as u64;
            if self.total > limit64 {
                return Err(ProtocolError::MessageTooBig {
                    size: self.total,
                    limit,
                });
            }
            match result {
                Err(e) => {
                    let msg = stream.error_message().unwrap_or(e.as_str());
                    return Err(ProtocolError::Inflate(msg.to_string()));
                }
                Ok(Status::StreamEnd) => {
                    self.ended = true;
                    return Ok(());
                }
                Ok(_) => {}
            }
            if produced == room {
                step = step.saturating_mul(2).min(INFLATE_CHUNK);
            }
            if produced < room {
                // Output space left over: inflate stopped for lack of input.
                if input.is_empty() {
                    return Ok(());
                }
                if consumed == 0 && produced == 0 {
                    return Err(ProtocolError::Inflate("inflate made no progress".into()));
                }
            }
        }
    }
}

/// Makes room for `additional` more bytes in `out` without letting its
/// capacity grow past `max_len` (when that is at least what is needed).
///
/// `BytesMut::reserve` doubles the capacity, which near the message limit
/// would allocate up to twice the limit; here growth is geometric too, but
/// capped at the largest length the message may reach.
///
/// `grant` is asked for the new capacity first; when it refuses, `out` is
/// left as it was.
fn reserve_bounded(
    out: &mut BytesMut,
    additional: usize,
    max_len: usize,
    grant: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
) -> Result<(), ProtocolError> {
    if out.capacity() - out.len() >= additional {
        return Ok(());
    }
    let len = out.len();
    let needed = len.saturating_add(additional);
    let target = out
        .capacity()
        .saturating_mul(2)
        .max(needed)
        .min(max_len.max(needed));
    grant(target)?;
    // Through Vec for an exact reservation; the conversions keep the
    // allocation when `out` owns it alone (otherwise its bytes are copied).
    let mut v = Vec::from(mem::take(out));
    v.reserve_exact(target - len);
    *out = BytesMut::from(bytes::Bytes::from(v));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extensions::parse_extensions;

    fn offers(s: &str) -> Vec<ExtensionOffer> {
        parse_extensions(s).unwrap()
    }

    fn one(s: &str) -> ExtensionOffer {
        offers(s).remove(0)
    }

    fn cfg15() -> DeflateConfig {
        DeflateConfig {
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            ..DeflateConfig::default()
        }
    }

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
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

    // ---- codec -----------------------------------------------

    fn compress_msg(c: &mut Compressor, msg: &[u8], pieces: usize) -> Vec<Vec<u8>> {
        // Split into `pieces` frames (the last one may be empty).
        let step = msg.len() / pieces.max(1) + 1;
        let chunks: Vec<&[u8]> = if pieces <= 1 {
            vec![msg]
        } else {
            let mut v: Vec<&[u8]> = msg.chunks(step).collect();
            v.push(&[]);
            v
        };
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut out = BytesMut::new();
                c.compress(chunk, i + 1 == n, &mut out);
                out.to_vec()
            })
            .collect()
    }

    fn text(n: usize, seed: u32) -> Vec<u8> {
        let mut s = Vec::new();
        let mut i = seed;
        while s.len() < n {
            s.extend_from_slice(
                format!(
                    "{{\"id\":{i},\"name\":\"user{}\",\"ok\":{}}}\n",
                    i % 97,
                    i % 3 == 0
                )
                .as_bytes(),
            );
            i += 1;
        }
        s.truncate(n);
        s
    }

    fn random(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect()
    }

    #[test]
    fn rfc7692_hello_vector() {
        // §7.2.3.1: "Hello" compressed is f2 48 cd c9 c9 07 00.
        let p = DeflateParams::default();
        let mut d = Decompressor::new(&p, Role::Client);
        let mut out = BytesMut::new();
        d.decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(&out[..], b"Hello");
        // And what we produce for it inflates the same way.
        let mut c = Compressor::new(&p, &cfg15(), Role::Server);
        let mut wire = BytesMut::new();
        c.compress(b"Hello", true, &mut wire);
        assert_eq!(&wire[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn rfc7692_fragmented_hello() {
        // §7.2.3.1: the same message in two frames f2 48 cd / c9 c9 07 00.
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
        let mut out = BytesMut::new();
        d.decompress(&[0xf2, 0x48, 0xcd], false, &mut out, 100)
            .unwrap();
        d.decompress(&[0xc9, 0xc9, 0x07, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn rfc7692_context_takeover_vector() {
        // §7.2.3.2: with context takeover the second "Hello" is f2 00 11 00 00.
        let p = DeflateParams::default();
        let mut c = Compressor::new(&p, &cfg15(), Role::Client);
        let mut d = Decompressor::new(&p, Role::Server);
        let mut first = BytesMut::new();
        c.compress(b"Hello", true, &mut first);
        assert_eq!(&first[..], [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut second = BytesMut::new();
        c.compress(b"Hello", true, &mut second);
        assert_eq!(&second[..], [0xf2, 0x00, 0x11, 0x00, 0x00]);
        let mut out = BytesMut::new();
        d.decompress(&first, true, &mut out, 100).unwrap();
        d.decompress(&second, true, &mut out, 100).unwrap();
        assert_eq!(&out[..], b"HelloHello");
        // The RFC's vector decodes on its own too.
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        d.decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        d.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(&out[..], b"HelloHello");
    }

    #[test]
    fn a_message_ended_by_the_trailer_as_a_final_block_resets_the_stream() {
        // `01` opens a final stored block; the appended `00 00 ff ff` is its
        // LEN/NLEN. The stream has ended: the next message needs a fresh one
        // (found by fuzzing: every later message failed with 1007).
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
        let mut out = BytesMut::new();
        d.decompress(&[0x01], true, &mut out, 100).unwrap();
        assert!(out.is_empty());
        d.decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn short_messages_do_not_hold_large_output_buffers() {
        // Each event's Bytes keeps its whole allocation alive (found by
        // fuzzing: a streamed 5-byte fragment held 128 KiB).
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
        for _ in 0..3 {
            let mut out = BytesMut::new();
            d.decompress(
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
                true,
                &mut out,
                1 << 20,
            )
            .unwrap();
            assert_eq!(&out[..], b"Hello");
            assert!(
                out.capacity() <= 1024,
                "{} bytes reserved for 5",
                out.capacity()
            );
        }
    }

    #[test]
    fn rfc7692_stored_block_and_bfinal_vectors() {
        // §7.2.3.3: "Hello" in a stored (uncompressed) block.
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
        let mut out = BytesMut::new();
        d.decompress(
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(&out[..], b"Hello");
        // §7.2.3.4: a BFINAL block ending the message (with a byte after it);
        // the next message starts a fresh stream.
        let mut out = BytesMut::new();
        d.decompress(
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(&out[..], b"Hello");
        let mut out = BytesMut::new();
        d.decompress(
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(&out[..], b"Hello");
        // Bytes after a BFINAL block, in the same frame or later ones, are ignored.
        let mut out = BytesMut::new();
        d.decompress(
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x01, 0x02],
            false,
            &mut out,
            100,
        )
        .unwrap();
        d.decompress(&[0xff; 9], true, &mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
        // §7.2.3.5: two blocks in one message.
        let mut out = BytesMut::new();
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        d.decompress(&two, true, &mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    #[test]
    fn the_window_survives_a_bfinal_block_under_context_takeover() {
        // RFC 7692 §7.2.3.4's "Hello" ended by a BFINAL block, then
        // §7.2.3.2's second message, which copies those five bytes back
        // (length 5, distance 5): the kept window must resolve it.
        for role in [Role::Client, Role::Server] {
            let mut d = Decompressor::new(&DeflateParams::default(), role);
            let mut out = BytesMut::new();
            let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
            d.decompress(&bfinal, true, &mut out, 100).unwrap();
            d.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
                .unwrap();
            assert_eq!(&out[..], b"HelloHello", "{role:?}");
            // After the stream is freed too (the idle release), and with the
            // BFINAL message split over frames.
            assert!(d.release());
            let mut out = BytesMut::new();
            d.decompress(&bfinal[..3], false, &mut out, 100).unwrap();
            d.decompress(&bfinal[3..], true, &mut out, 100).unwrap();
            assert!(d.release());
            d.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
                .unwrap();
            assert_eq!(&out[..], b"HelloHello", "{role:?} after release");
        }
        // Without context takeover the window is gone, as negotiated.
        let mut d = Decompressor::new(&params(true, true, 15, 15), Role::Client);
        let mut out = BytesMut::new();
        d.decompress(
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            true,
            &mut out,
            100,
        )
        .unwrap();
        assert!(d
            .decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
            .is_err());
    }

    #[test]
    fn a_refused_grant_stops_inflating_before_the_output_grows() {
        // 1 MiB of zeros: output is asked for a step at a time.
        let p = DeflateParams::default();
        let mut c = Compressor::new(&p, &cfg15(), Role::Client);
        let mut wire = BytesMut::new();
        c.compress(&vec![0u8; 1 << 20], true, &mut wire);
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        let mut asked = Vec::new();
        let err = d
            .decompress_within(&wire, true, &mut out, 64 << 20, &mut |n| {
                asked.push(n);
                if n > 100_000 {
                    Err(ProtocolError::MemoryBudget {
                        needed: n,
                        limit: 100_000,
                    })
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(matches!(err, ProtocolError::MemoryBudget { .. }));
        assert!(out.capacity() <= 100_000, "grew to {}", out.capacity());
        assert!(asked.windows(2).all(|w| w[0] < w[1]), "{asked:?}");
        // A grant that allows everything gives the whole message.
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        d.decompress_within(&wire, true, &mut out, 64 << 20, &mut |_| Ok(()))
            .unwrap();
        assert_eq!(out.len(), 1 << 20);
    }

    #[test]
    fn empty_message_is_a_single_zero_byte() {
        // §7.2.3.6, first message and after context takeover, and as the
        // empty last frame of a fragmented message.
        for nct in [false, true] {
            let p = params(nct, nct, 15, 15);
            let mut c = Compressor::new(&p, &cfg15(), Role::Client);
            let mut d = Decompressor::new(&p, Role::Server);
            for _ in 0..3 {
                let mut wire = BytesMut::new();
                c.compress(b"", true, &mut wire);
                assert_eq!(&wire[..], [0x00]);
                let mut out = BytesMut::new();
                d.decompress(&wire, true, &mut out, 0).unwrap();
                assert!(out.is_empty());
                let frames = compress_msg(&mut c, b"abc", 3);
                let mut out = BytesMut::new();
                for (i, f) in frames.iter().enumerate() {
                    d.decompress(f, i + 1 == frames.len(), &mut out, 3).unwrap();
                }
                assert_eq!(&out[..], b"abc");
            }
        }
    }

    #[test]
    fn fin_with_empty_input_after_frames() {
        let p = DeflateParams::default();
        let mut c = Compressor::new(&p, &cfg15(), Role::Server);
        let mut d = Decompressor::new(&p, Role::Client);
        let mut wire = BytesMut::new();
        c.compress(b"Hello", true, &mut wire);
        let mut out = BytesMut::new();
        d.decompress(&wire, false, &mut out, 10).unwrap();
        d.decompress(&[], true, &mut out, 10).unwrap();
        assert_eq!(&out[..], b"Hello");
    }

    /// Every window 8..=15 in both roles, context takeover on and off, many
    /// messages (some repeated, to exercise takeover), whole and fragmented.
    #[test]
    fn round_trip_all_windows_roles_and_takeover() {
        let msgs: Vec<Vec<u8>> = vec![
            text(5000, 1),
            text(5000, 1),
            b"".to_vec(),
            random(3000, 7),
            vec![0; 70_000],
            text(40_000, 3),
            b"x".to_vec(),
            text(300, 9),
        ];
        for bits in 8..=15u8 {
            for nct in [false, true] {
                for role in [Role::Client, Role::Server] {
                    let p = params(nct, nct, bits, bits);
                    let peer = match role {
                        Role::Client => Role::Server,
                        Role::Server => Role::Client,
                    };
                    let mut c = Compressor::new(&p, &cfg15(), role);
                    let mut d = Decompressor::new(&p, peer);
                    for (i, m) in msgs.iter().enumerate() {
                        let pieces = [1, 3, 7][i % 3];
                        let frames = compress_msg(&mut c, m, pieces);
                        let mut out = BytesMut::new();
                        for (j, f) in frames.iter().enumerate() {
                            d.decompress(f, j + 1 == frames.len(), &mut out, m.len())
                                .unwrap();
                        }
                        assert!(out[..] == m[..], "bits {bits} nct {nct} {role:?} msg {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn history_keeps_the_last_window_of_bytes() {
        for cap in [1usize, 7, 512, 4096] {
            let mut h = History::new(cap);
            let mut all = Vec::new();
            for step in 0..200usize {
                let n = [0, 1, 3, cap / 2, cap, cap + 5, 3 * cap][step % 7];
                let piece = random(n, (cap + step) as u64);
                h.push(&piece);
                all.extend_from_slice(&piece);
                let want = &all[all.len().saturating_sub(cap)..];
                assert_eq!(h.contiguous(), want, "cap {cap} step {step}");
                assert!(h.bytes_held() <= cap, "cap {cap}: {} held", h.bytes_held());
            }
        }
    }

    /// Messages that each refer back into the ones before (same records,
    /// new ids), so a stream without the right window would mis-inflate.
    fn related_messages() -> Vec<Vec<u8>> {
        (0..8).map(|i| text(700 + 300 * i, 40 + i as u32)).collect()
    }

    #[test]
    fn released_streams_resume_with_their_window_for_every_setting() {
        for bits in 8..=15u8 {
            for nct in [false, true] {
                for role in [Role::Client, Role::Server] {
                    let p = params(nct, nct, bits, bits);
                    let peer = match role {
                        Role::Client => Role::Server,
                        Role::Server => Role::Client,
                    };
                    let cfg = DeflateConfig {
                        server_max_window_bits: bits,
                        client_max_window_bits: bits,
                        ..cfg15()
                    };
                    // A continuous pair as the reference, and a pair that
                    // releases both streams between messages.
                    let mut c_ref = Compressor::new(&p, &cfg, role);
                    let mut c = Compressor::new(&p, &cfg, role);
                    let mut d = Decompressor::new(&p, peer);
                    for (i, m) in related_messages().iter().enumerate() {
                        let pieces = [1, 3][i % 2];
                        let reference = compress_msg(&mut c_ref, m, pieces).concat();
                        let frames = compress_msg(&mut c, m, pieces);
                        let mut out = BytesMut::new();
                        for (j, f) in frames.iter().enumerate() {
                            d.decompress(f, j + 1 == frames.len(), &mut out, m.len())
                                .unwrap();
                        }
                        let ctx = format!("bits {bits} nct {nct} {role:?} msg {i}");
                        assert!(out[..] == m[..], "{ctx}");
                        // A primed stream finds the same back-references:
                        // within a few bytes of the continuous stream (block
                        // boundaries may differ), and far below a cold start.
                        let wire = frames.concat().len();
                        assert!(
                            wire <= reference.len() + 16,
                            "{ctx}: {wire} vs {}",
                            reference.len()
                        );
                        assert!(c.release(), "{ctx}: compressor stream freed");
                        assert!(d.release(), "{ctx}: decompressor stream freed");
                        assert!(!c.is_allocated() && !d.is_allocated());
                    }
                }
            }
        }
    }

    #[test]
    fn a_released_compressor_still_uses_context_takeover() {
        let p = params(false, false, 12, 12);
        let cfg = DeflateConfig::default();
        let m = text(2000, 5);
        let mut c = Compressor::new(&p, &cfg, Role::Server);
        let cold = compress_msg(&mut c, &m, 1).concat();
        assert!(c.release());
        let warm = compress_msg(&mut c, &m, 1).concat();
        assert!(
            warm.len() < cold.len() / 4,
            "after release: {} bytes, cold {} bytes",
            warm.len(),
            cold.len()
        );
        // The window kept is the compressor's own: 2^12 bytes at most.
        assert!(c.history_bytes() <= 4096, "{}", c.history_bytes());
    }

    #[test]
    fn streams_are_not_released_mid_message() {
        let p = params(false, false, 15, 15);
        let mut c = Compressor::new(&p, &cfg15(), Role::Client);
        let mut d = Decompressor::new(&p, Role::Server);
        let m = text(3000, 2);
        let mut wire = BytesMut::new();
        c.compress(&m[..1000], false, &mut wire);
        assert!(!c.release(), "compressor freed in the middle of a message");
        let first = wire.split().freeze();
        c.compress(&m[1000..], true, &mut wire);
        let mut out = BytesMut::new();
        d.decompress(&first, false, &mut out, m.len()).unwrap();
        assert!(
            !d.release(),
            "decompressor freed in the middle of a message"
        );
        d.decompress(&wire, true, &mut out, m.len()).unwrap();
        assert_eq!(&out[..], &m[..]);
        assert!(c.release() && d.release());
    }

    #[test]
    fn no_context_takeover_keeps_no_history() {
        let p = params(true, true, 15, 15);
        let mut c = Compressor::new(&p, &cfg15(), Role::Client);
        let mut d = Decompressor::new(&p, Role::Server);
        for i in 0..3 {
            let m = text(5000, i);
            let frames = compress_msg(&mut c, &m, 1);
            let mut out = BytesMut::new();
            d.decompress(&frames[0], true, &mut out, m.len()).unwrap();
            assert_eq!(&out[..], &m[..]);
            assert!(c.release() && d.release());
        }
        assert_eq!((c.history_bytes(), d.history_bytes()), (0, 0));
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages() {
        let m = text(2000, 5);
        for (nct, smaller) in [(false, true), (true, false)] {
            let p = params(nct, nct, 15, 15);
            let mut c = Compressor::new(&p, &cfg15(), Role::Client);
            let first = compress_msg(&mut c, &m, 1).concat();
            let second = compress_msg(&mut c, &m, 1).concat();
            assert_eq!(second.len() < first.len() / 4, smaller, "nct {nct}");
        }
    }

    #[test]
    fn window_8_output_inflates_with_an_8_bit_window() {
        // Repeats at distance 300: reachable by a 9-bit window, not by 8.
        let block = random(300, 11);
        let data: Vec<u8> = block.iter().cycle().take(30_000).copied().collect();
        for level in 0..=9 {
            let cfg = DeflateConfig { level, ..cfg15() };
            let p = params(false, false, 8, 8);
            let mut c = Compressor::new(&p, &cfg, Role::Server);
            for _ in 0..2 {
                let mut wire = BytesMut::new();
                c.compress(&data, true, &mut wire);
                // zlib-rs inflating with a true 8-bit window.
                wire.extend_from_slice(&TRAILER);
                let mut inf = Inflate::new(false, 8);
                let mut out = vec![0; data.len() + 10];
                let r = inf.decompress(&wire, &mut out, InflateFlush::SyncFlush);
                assert!(r.is_ok(), "level {level}: {r:?}");
                assert_eq!(inf.total_out() as usize, data.len());
                assert!(out[..data.len()] == data[..]);
            }
        }
    }

    #[test]
    fn level_and_mem_level_are_clamped() {
        let cfg = DeflateConfig {
            level: 99,
            mem_level: 0,
            client_max_window_bits: 0,
            ..cfg15()
        };
        let p = DeflateParams::default();
        let mut c = Compressor::new(&p, &cfg, Role::Client);
        let mut wire = BytesMut::new();
        c.compress(b"Hello Hello Hello", true, &mut wire);
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        d.decompress(&wire, true, &mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello Hello Hello");
        let cfg = DeflateConfig {
            mem_level: 200,
            ..cfg
        };
        let _ = Compressor::new(&params(false, false, 0, 200), &cfg, Role::Server);
        let _ = Decompressor::new(&params(false, false, 0, 200), Role::Server);
    }

    #[test]
    fn should_compress_uses_threshold() {
        let cfg = DeflateConfig {
            min_compress_size: 64,
            ..DeflateConfig::default()
        };
        let c = Compressor::new(&DeflateParams::default(), &cfg, Role::Client);
        assert!(!c.should_compress(63));
        assert!(c.should_compress(64));
        let c = Compressor::new(
            &DeflateParams::default(),
            &DeflateConfig::default(),
            Role::Client,
        );
        assert!(!c.should_compress(127), "default threshold is 128 bytes");
        assert!(c.should_compress(128));
    }

    #[test]
    fn limit_is_exact() {
        let p = DeflateParams::default();
        let m = text(100_000, 2);
        let mut c = Compressor::new(&p, &cfg15(), Role::Client);
        let wire = compress_msg(&mut c, &m, 1).concat();
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        d.decompress(&wire, true, &mut out, m.len()).unwrap();
        assert_eq!(out.len(), m.len());
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        let r = d.decompress(&wire, true, &mut out, m.len() - 1);
        assert_eq!(
            r,
            Err(ProtocolError::MessageTooBig {
                size: m.len() as u64,
                limit: m.len() - 1
            })
        );
        assert!(out.capacity() <= m.len(), "capacity {}", out.capacity());
    }

    #[test]
    fn limit_counts_across_frames_and_resets_per_message() {
        let p = DeflateParams::default();
        let mut c = Compressor::new(&p, &cfg15(), Role::Client);
        let mut d = Decompressor::new(&p, Role::Server);
        for _ in 0..3 {
            let frames = compress_msg(&mut c, &[b'a'; 1000], 4);
            let mut out = BytesMut::new();
            for (i, f) in frames.iter().enumerate() {
                d.decompress(f, i + 1 == frames.len(), &mut out, 1000)
                    .unwrap();
            }
        }
        let frames = compress_msg(&mut c, &[b'a'; 1001], 4);
        let mut out = BytesMut::new();
        let mut err = None;
        for (i, f) in frames.iter().enumerate() {
            if let Err(e) = d.decompress(f, i + 1 == frames.len(), &mut out, 1000) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(
            err,
            Some(ProtocolError::MessageTooBig {
                size: 1001,
                limit: 1000
            })
        );
    }

    #[test]
    fn corrupt_data_is_an_inflate_error() {
        let p = DeflateParams::default();
        for bad in [
            &[0xff, 0xff, 0xff, 0xff][..],       // reserved block type 3
            &[0x00, 0x05, 0x00, 0x00, 0x00][..], // stored LEN/NLEN mismatch
            &[0xf2, 0x00, 0x11, 0x00, 0x00][..], // distance beyond an empty window
        ] {
            let mut d = Decompressor::new(&p, Role::Client);
            let mut out = BytesMut::new();
            let r = d.decompress(bad, true, &mut out, 1 << 20);
            assert!(
                matches!(r, Err(ProtocolError::Inflate(_))),
                "{bad:02x?}: {r:?}"
            );
        }
    }

    #[test]
    fn reference_into_previous_message_fails_without_takeover() {
        // A peer that agreed to no context takeover but refers back into its
        // previous message anyway.
        let block = random(5000, 3);
        let mut c = Compressor::new(&DeflateParams::default(), &cfg15(), Role::Client);
        let first = compress_msg(&mut c, &block, 1).concat();
        let second = compress_msg(&mut c, &block, 1).concat();
        assert!(second.len() < 100);
        for (nct, ok) in [(false, true), (true, false)] {
            let mut d = Decompressor::new(&params(false, nct, 15, 15), Role::Server);
            let mut out = BytesMut::new();
            d.decompress(&first, true, &mut out, 1 << 20).unwrap();
            let mut out = BytesMut::new();
            let r = d.decompress(&second, true, &mut out, 1 << 20);
            assert_eq!(r.is_ok(), ok, "{r:?}");
            if !ok {
                assert!(matches!(r, Err(ProtocolError::Inflate(_))), "{r:?}");
            }
        }
    }

    #[test]
    fn peer_using_9_bits_after_agreeing_to_8_is_accepted() {
        // Data a 9-bit compressor may produce (distance 400) inflates.
        let block = random(400, 5);
        let data: Vec<u8> = block.iter().cycle().take(4000).copied().collect();
        let mut c = Compressor::new(&params(false, false, 15, 9), &cfg15(), Role::Client);
        let wire = compress_msg(&mut c, &data, 1).concat();
        let mut d = Decompressor::new(&params(false, false, 15, 8), Role::Server);
        let mut out = BytesMut::new();
        d.decompress(&wire, true, &mut out, 1 << 20).unwrap();
        assert!(out[..] == data[..]);
    }

    #[test]
    fn unstripped_flush_marker_and_empty_last_frame() {
        // A sender that keeps `00 00 ff ff` on every frame and ends with an
        // empty one (python-websockets streaming), then a normal message.
        let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
        let mut out = BytesMut::new();
        d.decompress(
            &[
                0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff,
            ],
            false,
            &mut out,
            100,
        )
        .unwrap();
        d.decompress(&[], true, &mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
        let mut out = BytesMut::new();
        d.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
            .unwrap();
        assert_eq!(&out[..], b"Hello");
        // The same marker split across frames.
        let mut out = BytesMut::new();
        d.decompress(
            &[0xf2, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00],
            false,
            &mut out,
            100,
        )
        .unwrap();
        d.decompress(&[0xff], false, &mut out, 100).unwrap();
        d.decompress(&[0xff], true, &mut out, 100).unwrap();
        assert_eq!(&out[..], b"Hello");
        let mut out = BytesMut::new();
        d.decompress(&[0x00], true, &mut out, 100).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn compressor_never_sends_an_empty_last_frame() {
        let p = DeflateParams::default();
        let mut c = Compressor::new(&p, &cfg15(), Role::Client);
        let mut out = BytesMut::new();
        c.compress(b"ab", false, &mut out);
        assert!(out.ends_with(&TRAILER));
        let mut last = BytesMut::new();
        c.compress(b"", true, &mut last);
        assert_eq!(&last[..], [0x00]);
    }

    #[test]
    fn hostile_input_never_panics() {
        let p = params(false, false, 9, 9);
        for (n, seed) in (0..2000).zip(1u64..) {
            let input = random(n % 97, seed);
            let mut d = Decompressor::new(&p, Role::Server);
            let mut out = BytesMut::new();
            let _ = d.decompress(&input, n % 2 == 0, &mut out, 1000);
            let _ = d.decompress(&input, true, &mut out, 1000);
            assert!(out.len() <= 1001 + 1000);
        }
    }

    #[test]
    fn appends_to_existing_and_shared_buffers() {
        let p = DeflateParams::default();
        let mut c = Compressor::new(&p, &cfg15(), Role::Client);
        let mut wire = BytesMut::from(&b"hdr"[..]);
        c.compress(b"Hello", true, &mut wire);
        assert_eq!(&wire[..3], b"hdr");
        let mut d = Decompressor::new(&p, Role::Server);
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(b"0123456789");
        let frozen = buf.split_to(4).freeze(); // buf now shares its allocation
        d.decompress(&wire[3..], true, &mut buf, 200_000).unwrap();
        assert_eq!(&buf[..], b"456789Hello");
        assert_eq!(&frozen[..], b"0123");
    }

    #[test]
    fn reserve_bounded_caps_growth() {
        let mut b = BytesMut::with_capacity(1000);
        b.extend_from_slice(&[1; 1000]);
        reserve_bounded(&mut b, 10, 1500, &mut |_| Ok(())).unwrap();
        assert!(
            b.capacity() >= 1010 && b.capacity() <= 1500,
            "{}",
            b.capacity()
        );
        assert_eq!(&b[..], &[1; 1000][..]);
        let mut b = BytesMut::new();
        reserve_bounded(&mut b, 100, 50, &mut |_| Ok(())).unwrap();
        assert!(b.capacity() >= 100);
    }
}
