//! The receiving side's codec (RFC 7692 §7.2.2), with the decompressed
//! size bounded while inflating.

use std::mem;

use bytes::BytesMut;
use zlib_rs::{Inflate, InflateFlush, Status};

use super::history::History;
use super::pool::{self, Tag, Taken};
use super::{DeflateParams, TRAILER};
use crate::error::ProtocolError;
use crate::Role;

/// Inflate output is produced at most this much at a time, so the
/// decompressed-size limit is checked before more memory is committed.
const INFLATE_CHUNK: usize = 64 << 10;

/// Inflates the messages the peer sends (RFC 7692 §7.2.2), with a limit on
/// each message's decompressed size checked while inflating.
///
/// One per connection (per receiving half). Call
/// [`decompress`](Self::decompress) with each frame's payload of a
/// compressed message in order; `fin` on the last. When the peer keeps its
/// context the zlib stream is the connection's own; when it does not, the
/// stream is borrowed from the thread's pool for each message (see
/// `deflate/pool.rs`) and given back when the message ends or fails, so
/// the decompressor holds no zlib memory between messages.
pub struct Decompressor {
    /// With context takeover: created on the first compressed message
    /// received. Without: a pooled stream, held while a message is in
    /// progress only.
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
    /// The frame in progress was paused by [`decompress_slice`]'s quantum:
    /// the output step its inflate loop had reached, so the loop resumes
    /// exactly where it stopped (the same reservations and the same output
    /// whatever the quantum).
    ///
    /// [`decompress_slice`]: Self::decompress_slice
    paused: Option<usize>,
    /// The stream comes from the thread's pool for each message and goes
    /// back at its end: always when the peer keeps no context, and with
    /// context takeover after [`pool_between_messages`](Self::pool_between_messages)
    /// (primed with `history` on the way out of the pool).
    pooled: bool,
    /// With context takeover and `pooled`: the name under which the stream
    /// is parked between messages (see `Compressor`'s); 0 otherwise.
    owner: pool::Owner,
    /// The tag of our last parking (see `pool::Tag`).
    tag: Tag,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // A message cut short (the connection dropped mid-fragment) gives
        // its pooled stream back for the next one; a stream parked for us
        // is reset for anyone.
        self.give_back(false);
        pool::disown_inflate(self.owner);
    }
}

impl Decompressor {
    /// A decompressor for what the peer of `role` sends (the other
    /// direction's parameters). It inflates with a 15-bit window whatever
    /// was negotiated (see the module doc). When the peer has no context
    /// takeover each message starts on a reset stream, whose window is
    /// empty: a message that refers back into an earlier one (its own
    /// connection's or, through the pool, another's) fails to inflate.
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
            paused: None,
            pooled: no_context_takeover,
            owner: 0,
            tag: Tag::CLEAN,
        }
    }

    /// With context takeover too, takes the stream from the thread's pool
    /// for each message and gives it back at the message's end, keeping
    /// only the peer's last window of plaintext in between
    /// (`DeflateConfig::release_after_idle` of zero).
    pub(crate) fn pool_between_messages(&mut self) {
        self.pooled = true;
        if !self.no_context_takeover && self.owner == 0 {
            self.owner = pool::new_owner();
        }
        if !self.in_message {
            self.give_back(false);
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

    /// Ends the message in progress without its last frame (the
    /// connection failed, the peer closed or the transport ended in the
    /// middle of it): a pooled stream goes back to the pool now rather than
    /// when the connection is dropped, and the size count restarts.
    pub(crate) fn abandon(&mut self) {
        self.give_back(false);
        self.in_message = false;
        self.paused = None;
        self.total = 0;
        self.ended = false;
        self.tail_len = 0;
    }

    /// Gives a pooled stream back: parked for this decompressor to go on
    /// with (`keep`, after a message that ended on a block boundary with
    /// context takeover), or reset.
    fn give_back(&mut self, keep: bool) {
        if !self.pooled {
            return;
        }
        if let Some(stream) = self.stream.take() {
            self.tag = if keep && self.owner != 0 {
                self.tag.next(self.owner)
            } else {
                Tag::CLEAN
            };
            pool::give_back_inflate(stream, self.tag);
        }
    }

    /// Whether each message starts on a stream of the thread's pool: the
    /// connection holds no zlib memory between messages.
    pub(crate) fn is_pooled(&self) -> bool {
        self.pooled
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
        let mut input = input;
        while let Some(consumed) =
            self.decompress_slice(input, fin, out, limit, grant, &mut 0, usize::MAX)?
        {
            input = &input[consumed..];
        }
        Ok(())
    }

    /// [`decompress_within`](Self::decompress_within), as long as the
    /// caller's output for this turn, `spent` (which it adds to), stays
    /// within `quantum`: an inflate step (up to 64 KiB of output) that
    /// would pass it is not started, unless nothing was produced yet this
    /// turn (so each turn makes progress). `Ok(None)`: the frame is done.
    /// `Ok(Some(n))`: paused after consuming `n` bytes of `input` (maybe
    /// none); call again, in a later turn, with `&input[n..]` and the same
    /// `fin` (the rest may be empty: zlib may still hold output) before
    /// anything else. The slices together give the same output,
    /// reservations and errors as one call, whatever the quantum.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decompress_slice(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
        grant: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
        spent: &mut usize,
        quantum: usize,
    ) -> Result<Option<usize>, ProtocolError> {
        let result = self.decompress_frame(input, fin, out, limit, grant, spent, quantum);
        if result.is_err() && self.pooled {
            // The message is over: its pooled stream goes back (reset, so
            // whatever state the error left it in is gone).
            self.abandon();
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn decompress_frame(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
        grant: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
        spent: &mut usize,
        quantum: usize,
    ) -> Result<Option<usize>, ProtocolError> {
        let resumed = self.paused.take();
        if resumed.is_none() {
            self.remember_tail(input);
        }
        // Until the frame is done: a paused message keeps its stream (the
        // idle release must not take it).
        self.in_message = true;
        let start = out.len();
        let step = resumed.unwrap_or_else(|| first_step(input.len()));
        if let Some((consumed, step)) =
            self.inflate(input, out, limit, grant, step, spent, quantum)?
        {
            self.paused = Some(step);
            if !self.no_context_takeover {
                self.history.push(&out[start..]);
            }
            return Ok(Some(consumed));
        }
        self.in_message = !fin;
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
                // Not sliced: four bytes inflate to a few KiB at most.
                let step = first_step(TRAILER.len());
                self.inflate(&TRAILER, out, limit, grant, step, spent, usize::MAX)?;
            }
            if self.no_context_takeover {
                // Reset on its way back to the pool: the next message, this
                // connection's or another's, starts from an empty window.
                self.give_back(false);
            } else if self.pooled {
                // Parked for the next message to go on with, unless the
                // stream ended with a BFINAL block: then reset, and the
                // next message's stream is primed with the window.
                self.history.push(&out[start..]);
                self.give_back(!self.ended);
            } else if self.ended {
                // The peer ended its deflate stream but keeps its context
                // (RFC 7692 §7.2.3.4 allows the BFINAL block, §7.2.1 the
                // takeover): its next message may refer back into this one,
                // so the new stream starts primed with the window.
                self.history.push(&out[start..]);
                if let Some(mut stream) = self.stream.take() {
                    stream.reset(false);
                    self.stream = Some(self.history.prime(stream, Inflate::set_dictionary));
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
        Ok(None)
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

    /// Inflates `input` into `out`, `step` bytes of output space at a
    /// time (doubling while inflate fills it), adding what it produces to
    /// `spent`. Returns `Some((consumed, step))` when the next step would
    /// take `spent` past `quantum` (see `decompress_slice`): the input
    /// consumed, and the step to resume with.
    #[allow(clippy::too_many_arguments)]
    fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
        limit: usize,
        grant: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
        mut step: usize,
        spent: &mut usize,
        quantum: usize,
    ) -> Result<Option<(usize, usize)>, ProtocolError> {
        if self.ended {
            // Bytes after a BFINAL block are ignored, as zlib does: the RFC's
            // own example (§7.2.3.4, `f3 48 cd c9 c9 07 00 00`) has one.
            return Ok(None);
        }
        let given = input.len();
        // Counted in a local (written back on every way out): the loop
        // then keeps it in a register.
        let mut used = *spent;
        let limit64 = limit as u64;
        let history = &mut self.history;
        let (pooled, tag) = (self.pooled, self.tag);
        let stream = self.stream.get_or_insert_with(|| {
            let taken = if pooled {
                pool::take_inflate(tag)
            } else {
                Taken::Clean(Inflate::new(false, pool::INFLATE_BITS))
            };
            history.resume(taken, Inflate::set_dictionary)
        });
        loop {
            // One byte more than the limit allows, so passing it is seen.
            let remaining = limit64.saturating_sub(self.total);
            let room = remaining.saturating_add(1).min(step as u64) as usize;
            if used > 0 && used.saturating_add(room) > quantum {
                // Decided before the step, from the step alone, so the
                // steps are the same whatever the quantum.
                *spent = used;
                return Ok(Some((given - input.len(), step)));
            }
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
            used += produced;
            *spent = used;
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
                    return Ok(None);
                }
                Ok(_) => {}
            }
            if produced == room {
                step = step.saturating_mul(2).min(INFLATE_CHUNK);
            }
            if produced < room {
                // Output space left over: inflate stopped for lack of input.
                if input.is_empty() {
                    return Ok(None);
                }
                if consumed == 0 && produced == 0 {
                    return Err(ProtocolError::Inflate("inflate made no progress".into()));
                }
            }
        }
    }
}

/// The first step of output space for `input_len` bytes of input: a few
/// times the input, so a short message does not pin a 64 KiB buffer (found
/// by fuzzing: streamed fragments held 128 KiB each); it doubles while
/// inflate fills it.
fn first_step(input_len: usize) -> usize {
    input_len.saturating_mul(4).clamp(256, INFLATE_CHUNK)
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
    use crate::deflate::tests::{cfg15, compress_msg, params, random, text};
    use crate::deflate::Compressor;

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
