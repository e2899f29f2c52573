//! permessage-deflate (RFC 7692): negotiation ([`DeflateConfig`]) and the
//! per-message codec ([`Compressor`], [`Decompressor`]). By default a
//! connection borrows its zlib streams from a per-thread pool for each
//! message (`pool.rs`) instead of owning them: without context takeover a
//! reset one, with it the one it parked if still there, else a reset one
//! primed with the connection's window (`history.rs`).
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

mod compress;
mod history;
mod inflate;
mod negotiate;
mod pool;
#[cfg(test)]
mod tests;

pub use compress::Compressor;
pub(crate) use compress::SharedClass;
pub use inflate::Decompressor;
pub use negotiate::{DeflateConfig, DeflateParams};
#[cfg(test)]
pub(crate) use pool::FREE_PER_CLASS;
pub use pool::{clear_thread_pool, thread_pool_len};

/// The empty stored block a sync flush ends with (RFC 7692 §7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(8, 15)
}
