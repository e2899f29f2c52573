//! The sending side's codec (RFC 7692 §7.2.1).

use bytes::BytesMut;
use zlib_rs::{Deflate, DeflateFlush};

use super::history::History;
use super::pool::{self, Tag, Taken};
use super::{clamp_bits, DeflateConfig, DeflateParams, TRAILER};
use crate::Role;

/// Compresses the messages one endpoint sends (RFC 7692 §7.2.1).
///
/// One per connection (per sending half), created from the negotiated
/// [`DeflateParams`]. Call [`compress`](Self::compress) once per frame of a
/// message. With context takeover the zlib stream is the connection's own,
/// kept between messages and not re-allocated unless
/// [`release`](Self::release) freed it. Without it, the stream is borrowed
/// from the thread's pool for the message and given back at its end (see
/// `deflate/pool.rs`): such a compressor holds no zlib memory between
/// messages.
///
/// ```
/// use bytes::BytesMut;
/// use wsmachine::internals::{Compressor, Decompressor};
/// use wsmachine::{DeflateConfig, DeflateParams, Role};
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
    /// With context takeover: created on the first compressed message (a
    /// connection that only sends small, uncompressed messages never pays
    /// for it). Without: a pooled stream, held while a message is in
    /// progress only.
    stream: Option<Deflate>,
    config: zlib_rs::DeflateConfig,
    no_context_takeover: bool,
    min_compress_size: usize,
    /// With context takeover: what a new stream is primed with.
    history: History,
    /// A message is in progress (its stream must not be released).
    in_message: bool,
    /// The stream comes from the thread's pool for each message and goes
    /// back at its end: always without context takeover, and with it when
    /// `release_after_idle` is zero (the stream is then primed with
    /// `history` on the way out of the pool).
    pooled: bool,
    /// With context takeover and `pooled`: the name under which the stream
    /// is parked between messages, so that the next message continues it
    /// when no other connection of the thread took it meanwhile (then it is
    /// primed from `history` instead). 0 otherwise.
    owner: pool::Owner,
    /// The tag of our last parking (see `pool::Tag`).
    tag: Tag,
}

/// What determines a compressor's output when it carries no context
/// between messages (see [`Compressor::shared_class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SharedClass {
    level: i32,
    window_bits: i32,
    mem_level: i32,
}

impl SharedClass {
    pub(super) fn zlib_config(self) -> zlib_rs::DeflateConfig {
        zlib_rs::DeflateConfig {
            level: self.level,
            method: zlib_rs::Method::Deflated,
            window_bits: self.window_bits,
            mem_level: self.mem_level,
            strategy: zlib_rs::Strategy::Default,
        }
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // A message cut short (the connection dropped mid-fragment) gives
        // its pooled stream back for the next one; a stream parked for us
        // is reset for anyone.
        self.give_back(false);
        pool::disown_deflate(self.class(), self.owner);
    }
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
        let pooled_with_context = c.pools_streams();
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
            pooled: no_context_takeover || pooled_with_context,
            owner: if pooled_with_context && !no_context_takeover {
                pool::new_owner()
            } else {
                0
            },
            tag: Tag::CLEAN,
        }
    }

    /// Frees the zlib stream (about 160 KiB at the default settings) if no
    /// message is in progress; the next message allocates a new one, primed
    /// with the last window of plaintext when context takeover is on, so
    /// what goes on the wire stays valid for the peer's decompressor.
    /// Returns whether a stream was freed. Without context takeover there
    /// is none to free between messages: it went back to the thread's pool.
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

    /// The class of compressors whose output for a message does not depend
    /// on what was sent before (no context takeover in this direction):
    /// two compressors of one class produce the same bytes for the same
    /// message, so one compressed encoding serves them all. `None` with
    /// context takeover.
    pub(crate) fn shared_class(&self) -> Option<SharedClass> {
        self.no_context_takeover.then(|| self.class())
    }

    fn class(&self) -> SharedClass {
        SharedClass {
            level: self.config.level,
            window_bits: self.config.window_bits,
            mem_level: self.config.mem_level,
        }
    }

    /// Ends the message in progress without its last frame (our Close went
    /// out in the middle of it, so no more of it will be sent): a pooled
    /// stream goes back to the pool now rather than when the connection is
    /// dropped. With context takeover nothing changes.
    pub(crate) fn abandon(&mut self) {
        if self.pooled {
            self.give_back(false);
            self.in_message = false;
        }
    }

    /// Whether each message's stream comes from the thread's pool: the
    /// compressor holds no zlib memory between messages.
    pub(crate) fn is_pooled(&self) -> bool {
        self.pooled
    }

    /// Gives a pooled stream back: parked for this compressor to go on
    /// with (`keep`, at the end of a message with context takeover), or
    /// reset.
    fn give_back(&mut self, keep: bool) {
        if self.pooled {
            if let Some(stream) = self.stream.take() {
                self.tag = if keep && self.owner != 0 {
                    self.tag.next(self.owner)
                } else {
                    Tag::CLEAN
                };
                pool::give_back_deflate(self.class(), stream, self.tag);
            }
        }
    }

    /// Compresses `data` as one whole message the way every compressor of
    /// `class` would, with a stream from the thread's pool.
    pub(crate) fn compress_standalone(class: SharedClass, data: &[u8], out: &mut BytesMut) {
        let mut c = Compressor {
            stream: None,
            config: class.zlib_config(),
            no_context_takeover: true,
            min_compress_size: 0,
            history: History::default(),
            in_message: false,
            pooled: true,
            owner: 0,
            tag: Tag::CLEAN,
        };
        c.compress(data, true, out);
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
        let (config, class) = (self.config, self.class());
        let history = &mut self.history;
        let (pooled, tag) = (self.pooled, self.tag);
        let stream = self.stream.get_or_insert_with(|| {
            let taken = if pooled {
                pool::take_deflate(class, tag)
            } else {
                Taken::Clean(Deflate::new_with_config(config))
            };
            history.resume(taken, Deflate::set_dictionary)
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
            // Reset on its way back to the pool: the next message, this
            // connection's or another's, starts from an empty window (or,
            // with context takeover, parked for this connection to go on
            // with, or primed from its history if another took it).
            self.give_back(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use zlib_rs::{Inflate, InflateFlush};

    use super::*;
    use crate::deflate::tests::{cfg15, compress_msg, params, random, text};
    use crate::deflate::Decompressor;

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
    fn a_released_compressor_still_uses_context_takeover() {
        let p = params(false, false, 12, 12);
        let cfg = DeflateConfig {
            server_max_window_bits: 12,
            ..cfg15()
        };
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
}
