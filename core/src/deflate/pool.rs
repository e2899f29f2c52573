//! zlib streams shared by the connections of a thread, for the directions
//! that carry no context between messages.
//!
//! Without context takeover (RFC 7692 §7.1.1) nothing a stream holds after
//! a message is of use to the next one, so a stream need not belong to a
//! connection: [`Compressor`](super::Compressor) and
//! [`Decompressor`](super::Decompressor) take one from their thread's free
//! list when a message starts and give it back, reset, when it ends. A whole
//! message is compressed in one call, so a thread sending whole messages
//! needs one compressor per class however many connections it serves; a
//! message sent or received in pieces holds its stream until its last
//! piece, its failure, or the drop of its codec.
//!
//! A stream is reset before it joins a list, so what it serves next starts
//! from an empty window: a decompressor then fails a distance that reaches
//! back past the start of the message (another connection's data), exactly
//! as a connection's own reset stream does, and a compressor's output
//! never refers to another connection's data.
//!
//! Per thread rather than behind a lock: nothing is shared on the message
//! path, and a stream's 46–400 KiB stay in the cache of the thread that
//! keeps using them. A stream given back on another thread than the one it
//! came from (a connection moved mid-message) joins that thread's list.
//! The lists are bounded ([`FREE_PER_CLASS`] streams of each class, at
//! most [`CLASSES`] classes); a stream that does not fit is freed.

use std::cell::RefCell;

use zlib_rs::{Deflate, Inflate};

use super::compress::SharedClass;

/// Streams of one class kept free on a thread. One is enough for whole
/// messages; the others serve messages in pieces that overlap.
pub(crate) const FREE_PER_CLASS: usize = 4;

/// Compressor classes a thread keeps free streams for: a server has one
/// per distinct (level, window, memLevel) its connections negotiated,
/// nearly always one or two.
pub(crate) const CLASSES: usize = 8;

/// The window every decompressor inflates with (see the module doc of
/// `deflate`): `Inflate::reset` also returns a stream to it, so all
/// pooled decompressors are of this one class.
pub(super) const INFLATE_BITS: u8 = 15;

struct FreeList<K, S> {
    classes: Vec<(K, Vec<S>)>,
}

impl<K: Copy + PartialEq, S> FreeList<K, S> {
    const fn new() -> Self {
        FreeList {
            classes: Vec::new(),
        }
    }

    fn take(&mut self, key: K) -> Option<S> {
        self.classes.iter_mut().find(|(k, _)| *k == key)?.1.pop()
    }

    /// Keeps `stream` if there is room for it; otherwise hands it back, to
    /// be freed once the list is no longer borrowed.
    fn put(&mut self, key: K, stream: S) -> Option<S> {
        if let Some((_, list)) = self.classes.iter_mut().find(|(k, _)| *k == key) {
            if list.len() >= FREE_PER_CLASS {
                return Some(stream);
            }
            list.push(stream);
            return None;
        }
        if self.classes.len() >= CLASSES {
            // Room is made only from a class that has nothing waiting, so a
            // server with many classes does not keep freeing and
            // re-allocating the streams of the ones it uses.
            let empty = self.classes.iter().position(|(_, l)| l.is_empty());
            match empty {
                Some(i) => drop(self.classes.swap_remove(i)),
                None => return Some(stream),
            }
        }
        let mut list = Vec::with_capacity(FREE_PER_CLASS);
        list.push(stream);
        self.classes.push((key, list));
        None
    }

    fn len(&self) -> usize {
        self.classes.iter().map(|(_, l)| l.len()).sum()
    }
}

thread_local! {
    static DEFLATE: RefCell<FreeList<SharedClass, Deflate>> = const { RefCell::new(FreeList::new()) };
    static INFLATE: RefCell<FreeList<u8, Inflate>> = const { RefCell::new(FreeList::new()) };
}

/// A compressor of `class` at the start of a stream: a free one of this
/// thread's, or a new one.
pub(super) fn take_deflate(class: SharedClass) -> Deflate {
    // `try_with`: while the thread exits its list may already be gone.
    let free = DEFLATE.try_with(|l| l.borrow_mut().take(class));
    free.ok()
        .flatten()
        .unwrap_or_else(|| Deflate::new_with_config(class.zlib_config()))
}

/// Resets `stream` and keeps it for the next message of `class` on this
/// thread, or frees it when the list is full.
pub(super) fn give_back_deflate(class: SharedClass, mut stream: Deflate) {
    stream.reset();
    let excess = DEFLATE.try_with(move |l| l.borrow_mut().put(class, stream));
    drop(excess);
}

/// A decompressor at the start of a stream, with a window of
/// [`INFLATE_BITS`].
pub(super) fn take_inflate() -> Inflate {
    let free = INFLATE.try_with(|l| l.borrow_mut().take(INFLATE_BITS));
    free.ok()
        .flatten()
        .unwrap_or_else(|| Inflate::new(false, INFLATE_BITS))
}

/// Resets `stream` (whatever state a message or an error left it in) and
/// keeps it for the next message on this thread, or frees it.
pub(super) fn give_back_inflate(mut stream: Inflate) {
    stream.reset(false);
    let excess = INFLATE.try_with(move |l| l.borrow_mut().put(INFLATE_BITS, stream));
    drop(excess);
}

/// How many shared zlib streams wait in the calling thread's free lists:
/// `(compressors, decompressors)`.
pub fn thread_pool_len() -> (usize, usize) {
    let d = DEFLATE.try_with(|l| l.borrow().len()).unwrap_or(0);
    let i = INFLATE.try_with(|l| l.borrow().len()).unwrap_or(0);
    (d, i)
}

/// Frees every shared zlib stream waiting in the calling thread's free
/// lists (streams held by messages in progress are not affected): for a
/// thread that will not compress again for a long while. The next message
/// allocates a new stream.
pub fn clear_thread_pool() {
    let d = DEFLATE.try_with(|l| std::mem::replace(&mut *l.borrow_mut(), FreeList::new()));
    let i = INFLATE.try_with(|l| std::mem::replace(&mut *l.borrow_mut(), FreeList::new()));
    drop((d, i));
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::deflate::tests::{params, random, text};
    use crate::deflate::{Compressor, Decompressor, DeflateConfig, TRAILER};
    use crate::error::ProtocolError;
    use crate::Role;

    /// A message of the test mix: JSON-like text or random bytes, 100 B to
    /// about 6 KiB, different for every `seed`.
    fn message(seed: u64) -> Vec<u8> {
        let n = 100 + (seed.wrapping_mul(2_654_435_761) % 6000) as usize;
        if seed % 5 == 4 {
            random(n, seed)
        } else {
            text(n, seed as u32)
        }
    }

    /// Inflates one whole message with flate2 on a fresh stream: the
    /// reference that each message stands on its own.
    fn flate2_inflate(wire: &[u8]) -> Vec<u8> {
        let mut input = wire.to_vec();
        input.extend_from_slice(&TRAILER);
        let mut d = flate2::Decompress::new(false);
        let mut out = Vec::with_capacity(1 << 16);
        let status = d
            .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
            .expect("flate2 inflates every message on its own");
        assert_eq!(status, flate2::Status::Ok);
        assert_eq!(d.total_in() as usize, input.len());
        out
    }

    /// The compressor side of `conns` server connections without context
    /// takeover, each message in `pieces` frames: the frames of every
    /// connection's message `k` are produced a piece at a time, in turn, so
    /// the connections hold pool streams at the same time.
    fn send_interleaved(
        comps: &mut [Compressor],
        first: u64,
        pieces: usize,
    ) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        let msgs: Vec<Vec<u8>> = (0..comps.len() as u64)
            .map(|i| message(first + i))
            .collect();
        let mut frames = vec![Vec::new(); comps.len()];
        for piece in 0..pieces {
            for (i, c) in comps.iter_mut().enumerate() {
                let m = &msgs[i];
                let step = m.len().div_ceil(pieces);
                let chunk = &m[(piece * step).min(m.len())..((piece + 1) * step).min(m.len())];
                let mut out = BytesMut::new();
                c.compress(chunk, piece + 1 == pieces, &mut out);
                frames[i].push(out.to_vec());
            }
        }
        msgs.into_iter().zip(frames).collect()
    }

    fn shared_params() -> crate::deflate::DeflateParams {
        params(true, true, 12, 12)
    }

    #[test]
    fn shared_compressor_output_decodes_interleaved_across_connections() {
        clear_thread_pool();
        let p = shared_params();
        let cfg = DeflateConfig::shared();
        let mut comps: Vec<Compressor> = (0..20)
            .map(|_| Compressor::new(&p, &cfg, Role::Server))
            .collect();
        let mut decomps: Vec<Decompressor> = (0..20)
            .map(|_| Decompressor::new(&p, Role::Client))
            .collect();
        for round in 0..6u64 {
            let pieces = [1, 3, 2][round as usize % 3];
            let sent = send_interleaved(&mut comps, round * 100, pieces);
            for ((m, frames), d) in sent.iter().zip(&mut decomps) {
                // Each message inflates on its own (flate2, fresh stream)...
                assert!(flate2_inflate(&frames.concat()) == m[..], "round {round}");
                // ...and through the connection's own decompressor.
                let mut out = BytesMut::new();
                for (j, f) in frames.iter().enumerate() {
                    d.decompress(f, j + 1 == frames.len(), &mut out, 1 << 20)
                        .unwrap();
                }
                assert!(out[..] == m[..], "round {round}");
            }
            // Whole messages share one stream; pieces of 20 messages in
            // flight needed 20, of which the pool kept its bound. (The
            // receiving side took one message at a time: one stream.)
            let want = if round == 0 { 1 } else { FREE_PER_CLASS };
            assert_eq!(thread_pool_len(), (want, 1), "round {round}");
            assert!(comps.iter().all(|c| !c.is_allocated()));
        }
        // The same bytes as a compressor of its own would produce: the
        // pooled stream carries nothing over from other connections.
        let m = message(7);
        let mut own = BytesMut::new();
        Compressor::new(&p, &cfg, Role::Server).compress(&m, true, &mut own);
        let mut pooled = BytesMut::new();
        comps[3].compress(&m, true, &mut pooled);
        assert_eq!(own, pooled);
    }

    #[test]
    fn shared_compressors_work_across_threads() {
        let p = shared_params();
        let cfg = DeflateConfig::shared();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let (p, cfg) = (p, cfg.clone());
                    s.spawn(move || {
                        let mut comps: Vec<Compressor> = (0..8)
                            .map(|_| Compressor::new(&p, &cfg, Role::Server))
                            .collect();
                        let mut checked = 0;
                        for round in 0..4 {
                            let sent = send_interleaved(
                                &mut comps,
                                t * 1000 + round * 10,
                                1 + round as usize % 2,
                            );
                            for (m, frames) in &sent {
                                assert!(flate2_inflate(&frames.concat()) == m[..]);
                                checked += 1;
                            }
                        }
                        // Half-sent messages, finished on another thread.
                        let firsts: Vec<BytesMut> = comps
                            .iter_mut()
                            .enumerate()
                            .map(|(i, c)| {
                                let mut out = BytesMut::new();
                                c.compress(&message(t * 77 + i as u64)[..50], false, &mut out);
                                out
                            })
                            .collect();
                        (comps, firsts, checked)
                    })
                })
                .collect();
            let mut moved = Vec::new();
            for h in handles {
                let (comps, firsts, checked) = h.join().unwrap();
                assert_eq!(checked, 8 * 4);
                moved.push((comps, firsts));
            }
            // Each set of compressors finishes its messages on another
            // thread, where the streams go back, and goes on sending there.
            for (t, (mut comps, firsts)) in moved.into_iter().enumerate() {
                s.spawn(move || {
                    for (i, (c, mut wire)) in comps.iter_mut().zip(firsts).enumerate() {
                        let m = message(t as u64 * 77 + i as u64);
                        c.compress(&m[50..], true, &mut wire);
                        assert!(flate2_inflate(&wire) == m[..]);
                        assert!(!c.is_allocated());
                        let next = message(999 + i as u64);
                        let mut wire = BytesMut::new();
                        c.compress(&next, true, &mut wire);
                        assert!(flate2_inflate(&wire) == next[..]);
                    }
                    assert_eq!(thread_pool_len().0, FREE_PER_CLASS);
                });
            }
        });
    }

    /// Compressed messages from `n` peers without context takeover, each
    /// in 1..=3 frames.
    fn peer_messages(n: usize, first: u64) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
        let p = shared_params();
        let cfg = DeflateConfig::shared();
        let mut comps: Vec<Compressor> = (0..n)
            .map(|_| Compressor::new(&p, &cfg, Role::Client))
            .collect();
        let mut all = Vec::new();
        for pieces in [1, 3, 2] {
            all.extend(send_interleaved(
                &mut comps,
                first + all.len() as u64,
                pieces,
            ));
        }
        all
    }

    #[test]
    fn pooled_decompressor_with_messages_split_and_interleaved() {
        clear_thread_pool();
        let p = shared_params();
        let conns = 12;
        let msgs = peer_messages(conns, 500);
        let mut decomps: Vec<Decompressor> = (0..conns)
            .map(|_| Decompressor::new(&p, Role::Server))
            .collect();
        let mut outs = vec![BytesMut::new(); msgs.len()];
        // Every frame is fed in pieces of 7 bytes (a receive call each),
        // one piece per connection in turn: all twelve hold a stream.
        let mut cursor = vec![(0usize, 0usize); msgs.len()];
        for batch in msgs.chunks(conns).enumerate().map(|(b, _)| b) {
            loop {
                let mut progressed = false;
                for (i, d) in decomps.iter_mut().enumerate() {
                    let k = batch * conns + i;
                    let (frame, at) = &mut cursor[k];
                    let frames = &msgs[k].1;
                    if *frame == frames.len() {
                        continue;
                    }
                    progressed = true;
                    let f = &frames[*frame];
                    let end = (*at + 7).min(f.len());
                    let last = end == f.len();
                    let fin = last && *frame + 1 == frames.len();
                    // A frame is one `decompress` call; its pieces are
                    // concatenated first, as the connection does.
                    if last {
                        d.decompress(f, fin, &mut outs[k], 1 << 20).unwrap();
                        *frame += 1;
                        *at = 0;
                    } else {
                        *at = end;
                    }
                }
                if !progressed {
                    break;
                }
            }
        }
        for (k, (m, _)) in msgs.iter().enumerate() {
            assert!(outs[k][..] == m[..], "message {k}");
        }
        assert!(decomps.iter().all(|d| !d.is_allocated()));
        assert_eq!(thread_pool_len().1, FREE_PER_CLASS);
    }

    #[test]
    fn a_failed_or_dropped_message_returns_its_stream() {
        clear_thread_pool();
        let p = shared_params();
        let msgs = peer_messages(3, 40);
        let (m, frames) = msgs
            .iter()
            .find(|(_, f)| f.len() == 3)
            .expect("a message in three frames");
        // Failure mid-message: corrupt second frame.
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        d.decompress(&frames[0], false, &mut out, 1 << 20).unwrap();
        assert!(d.is_allocated());
        assert_eq!(thread_pool_len().1, 0);
        let r = d.decompress(&[0xff, 0xff, 0xff, 0xff], false, &mut out, 1 << 20);
        assert!(matches!(r, Err(ProtocolError::Inflate(_))), "{r:?}");
        assert!(!d.is_allocated(), "kept its stream after failing");
        assert_eq!(thread_pool_len().1, 1);
        // Too big mid-message: the same.
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        d.decompress(&frames[0], false, &mut out, 1 << 20).unwrap();
        let r = d.decompress(&frames[1], false, &mut out, 10);
        assert!(
            matches!(r, Err(ProtocolError::MessageTooBig { .. })),
            "{r:?}"
        );
        assert!(!d.is_allocated());
        // Dropped mid-message (the connection went away).
        let mut d = Decompressor::new(&p, Role::Server);
        d.decompress(&frames[0], false, &mut BytesMut::new(), 1 << 20)
            .unwrap();
        assert_eq!(thread_pool_len().1, 0);
        drop(d);
        assert_eq!(thread_pool_len().1, 1);
        // Abandoned mid-message (a Close or the end of the transport).
        let mut d = Decompressor::new(&p, Role::Server);
        d.decompress(&frames[0], false, &mut BytesMut::new(), 1 << 20)
            .unwrap();
        d.abandon();
        assert!(!d.is_allocated());
        assert_eq!(thread_pool_len().1, 1);
        // The returned stream, whatever state it was left in, serves the
        // next message of any connection from a clean start.
        let mut d = Decompressor::new(&p, Role::Server);
        let mut out = BytesMut::new();
        for (j, f) in frames.iter().enumerate() {
            d.decompress(f, j == 2, &mut out, 1 << 20).unwrap();
        }
        assert!(out[..] == m[..]);
        // A dropped compressor mid-message gives its stream back too.
        let free = thread_pool_len().0;
        let mut c = Compressor::new(&p, &DeflateConfig::shared(), Role::Client);
        c.compress(&m[..10], false, &mut BytesMut::new());
        assert_eq!(thread_pool_len().0, free - 1);
        drop(c);
        assert_eq!(thread_pool_len().0, free);
    }

    #[test]
    fn a_pooled_stream_keeps_nothing_of_its_last_user() {
        // Connection A inflates a message; connection B's peer sends one
        // that refers back into it (a compressor with context takeover,
        // second message). On B's pooled stream, the one A just gave back,
        // it must fail as it would on a fresh stream, not decode A's bytes.
        clear_thread_pool();
        let block = random(3000, 9);
        let mut takeover = Compressor::new(
            &params(false, false, 15, 15),
            &DeflateConfig::default(),
            Role::Client,
        );
        let mut first = BytesMut::new();
        takeover.compress(&block, true, &mut first);
        let mut second = BytesMut::new();
        takeover.compress(&block, true, &mut second);
        assert!(second.len() < 100, "refers back: {} bytes", second.len());
        let p = shared_params();
        let mut a = Decompressor::new(&p, Role::Server);
        a.decompress(&first, true, &mut BytesMut::new(), 1 << 20)
            .unwrap();
        assert_eq!(thread_pool_len().1, 1);
        let mut b = Decompressor::new(&p, Role::Server);
        let r = b.decompress(&second, true, &mut BytesMut::new(), 1 << 20);
        assert!(matches!(r, Err(ProtocolError::Inflate(_))), "{r:?}");
        assert_eq!(thread_pool_len().1, 1, "the one stream went back");
    }

    #[test]
    fn clearing_the_pool_frees_its_streams() {
        let p = shared_params();
        let mut c = Compressor::new(&p, &DeflateConfig::shared(), Role::Server);
        c.compress(&message(1), true, &mut BytesMut::new());
        let mut d = Decompressor::new(&p, Role::Client);
        let mut wire = BytesMut::new();
        c.compress(&message(2), true, &mut wire);
        d.decompress(&wire, true, &mut BytesMut::new(), 1 << 20)
            .unwrap();
        assert_eq!(thread_pool_len(), (1, 1));
        clear_thread_pool();
        assert_eq!(thread_pool_len(), (0, 0));
    }

    #[test]
    fn free_lists_are_bounded_per_class_and_in_classes() {
        let mut l: FreeList<u32, u64> = FreeList::new();
        for i in 0..10 {
            let refused = l.put(1, i);
            assert_eq!(refused.is_some(), i >= FREE_PER_CLASS as u64, "{i}");
        }
        assert_eq!(l.len(), FREE_PER_CLASS);
        // New classes up to the bound; then only in place of an empty one.
        for k in 2..=CLASSES as u32 {
            assert_eq!(l.put(k, 0), None);
        }
        assert_eq!(l.put(100, 7), Some(7));
        assert_eq!(l.take(2), Some(0));
        assert_eq!(l.put(100, 7), None);
        assert_eq!(l.classes.len(), CLASSES);
        assert_eq!(l.take(100), Some(7));
        assert_eq!(l.take(2), None);
        assert_eq!(l.take(1), Some(FREE_PER_CLASS as u64 - 1));
    }
}
