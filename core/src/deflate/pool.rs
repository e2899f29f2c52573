//! zlib streams shared by the connections of a thread.
//!
//! A stream need not belong to a connection. Without context takeover
//! (RFC 7692 §7.1.1) nothing a stream holds after a message is of use to
//! the next one: [`Compressor`](super::Compressor) and
//! [`Decompressor`](super::Decompressor) take one from their thread's free
//! list when a message starts and give it back, reset, when it ends. With
//! context takeover and `DeflateConfig::release_after_idle` of zero (the
//! default), they do the same but park the stream under their own [`Tag`]
//! and keep the window of plaintext it would need: the next message goes
//! on with the parked stream if it is still there, untouched, or takes a
//! reset one and primes it with the window. A whole message is compressed
//! in one call, so a thread sending whole messages needs one compressor
//! per class however many connections it serves; a message sent or
//! received in pieces holds its stream until its last piece, its failure,
//! or the drop of its codec.
//!
//! A stream is reset before anyone but the codec that parked it takes it,
//! so what it serves next starts from an empty window (or the window it is
//! primed with): a decompressor then fails a distance that reaches back
//! past what its own connection sent, exactly as a connection's own reset
//! stream does, and a compressor's output never refers to another
//! connection's data.
//!
//! Per thread rather than behind a lock: nothing is shared on the message
//! path, and a stream's 46–400 KiB stay in the cache of the thread that
//! keeps using them. A stream given back on another thread than the one it
//! came from (a connection moved mid-message) joins that thread's list; the
//! one its codec parked on the thread it left is out of date from its next
//! message on, and is never continued (see [`Tag`]). The lists are bounded
//! ([`FREE_PER_CLASS`] streams of each class, at most [`CLASSES`]
//! classes); parking one more frees the least recently parked.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use zlib_rs::{Deflate, Inflate};

use super::compress::SharedClass;

/// Streams of one class kept free on a thread. One is enough for whole
/// messages without context takeover; the others serve messages in pieces
/// that overlap, and let a few connections with context takeover go on
/// with their streams without priming.
pub(crate) const FREE_PER_CLASS: usize = 4;

/// Compressor classes a thread keeps free streams for: a server has one
/// per distinct (level, window, memLevel) its connections negotiated,
/// nearly always one or two.
pub(crate) const CLASSES: usize = 8;

/// The window every decompressor inflates with (see the module doc of
/// `deflate`): `Inflate::reset` also returns a stream to it, so all
/// pooled decompressors are of this one class.
pub(super) const INFLATE_BITS: u8 = 15;

/// Who may continue a parked stream without resetting it: the codec
/// (with context takeover) that gave it back, named by [`new_owner`]; 0 for
/// a stream that was reset and serves anyone.
pub(super) type Owner = u64;

/// A parked stream's owner and which of its parkings this is: a codec
/// continues only the stream it parked last. One it parked on another
/// thread before (it has sent or received on a stream primed elsewhere
/// since) is out of date, and is reset like anyone's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tag {
    pub(super) owner: Owner,
    pub(super) parking: u64,
}

impl Tag {
    /// The tag of a stream that was reset.
    pub(super) const CLEAN: Tag = Tag {
        owner: 0,
        parking: 0,
    };

    /// The tag for `owner`'s next parking.
    pub(super) fn next(self, owner: Owner) -> Tag {
        Tag {
            owner,
            parking: self.parking.wrapping_add(1),
        }
    }
}

/// A fresh owner name, never 0 and never given twice in the process.
pub(super) fn new_owner() -> Owner {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A zlib stream that can be returned to its initial state.
pub(super) trait Reset {
    fn reset_stream(&mut self);
}

impl Reset for Deflate {
    fn reset_stream(&mut self) {
        self.reset();
    }
}

impl Reset for Inflate {
    fn reset_stream(&mut self) {
        self.reset(false);
    }
}

/// How a stream came out of a free list.
pub(super) enum Taken<S> {
    /// The one its owner parked, untouched since: it goes on where the
    /// owner's last message ended.
    Own(S),
    /// At its initial state (reset): to be primed with the owner's window.
    Clean(S),
}

struct Parked<S> {
    stream: S,
    tag: Tag,
}

struct FreeList<K, S> {
    /// Per class, the parked streams, least recently parked first.
    classes: Vec<(K, Vec<Parked<S>>)>,
}

impl<K: Copy + PartialEq, S: Reset> FreeList<K, S> {
    const fn new() -> Self {
        FreeList {
            classes: Vec::new(),
        }
    }

    /// The stream parked under `tag` if it is still here; else a reset one; else,
    /// when the list is full, the least recently parked one, reset (its
    /// owner primes a new one from its window when it comes back). `None`
    /// while there is room for one more: a new stream is allocated, so up
    /// to [`FREE_PER_CLASS`] owners on a thread keep theirs.
    fn take(&mut self, key: K, tag: Tag) -> Option<Taken<S>> {
        let list = &mut self.classes.iter_mut().find(|(k, _)| *k == key)?.1;
        if tag != Tag::CLEAN {
            if let Some(i) = list.iter().position(|p| p.tag == tag) {
                return Some(Taken::Own(list.remove(i).stream));
            }
        }
        if let Some(i) = list.iter().rposition(|p| p.tag == Tag::CLEAN) {
            return Some(Taken::Clean(list.remove(i).stream));
        }
        if list.len() < FREE_PER_CLASS {
            return None;
        }
        let mut stream = list.remove(0).stream;
        stream.reset_stream();
        Some(Taken::Clean(stream))
    }

    /// Parks `stream` under `tag` ([`Tag::CLEAN`]: it was reset). A full
    /// list makes room by handing back its least recently parked stream, to
    /// be freed once the list is no longer borrowed.
    fn put(&mut self, key: K, stream: S, tag: Tag) -> Option<S> {
        let parked = Parked { stream, tag };
        if let Some((_, list)) = self.classes.iter_mut().find(|(k, _)| *k == key) {
            let evicted = (list.len() >= FREE_PER_CLASS).then(|| list.remove(0).stream);
            list.push(parked);
            return evicted;
        }
        if self.classes.len() >= CLASSES {
            // Room is made only from a class that has nothing waiting, so a
            // server with many classes does not keep freeing and
            // re-allocating the streams of the ones it uses.
            let empty = self.classes.iter().position(|(_, l)| l.is_empty());
            match empty {
                Some(i) => drop(self.classes.swap_remove(i)),
                None => return Some(parked.stream),
            }
        }
        let mut list = Vec::with_capacity(FREE_PER_CLASS);
        list.push(parked);
        self.classes.push((key, list));
        None
    }

    fn disown(&mut self, key: K, owner: Owner) {
        if owner == 0 {
            return;
        }
        if let Some((_, list)) = self.classes.iter_mut().find(|(k, _)| *k == key) {
            for p in list.iter_mut().filter(|p| p.tag.owner == owner) {
                p.stream.reset_stream();
                p.tag = Tag::CLEAN;
            }
        }
    }

    fn len(&self) -> usize {
        self.classes.iter().map(|(_, l)| l.len()).sum()
    }
}

thread_local! {
    static DEFLATE: RefCell<FreeList<SharedClass, Deflate>> = const { RefCell::new(FreeList::new()) };
    static INFLATE: RefCell<FreeList<u8, Inflate>> = const { RefCell::new(FreeList::new()) };
}

/// A compressor of `class`: the one parked under `tag` on this thread, or
/// one at the start of a stream, a free one of this thread's or a new one.
pub(super) fn take_deflate(class: SharedClass, tag: Tag) -> Taken<Deflate> {
    // `try_with`: while the thread exits its list may already be gone.
    let free = DEFLATE.try_with(|l| l.borrow_mut().take(class, tag));
    free.ok()
        .flatten()
        .unwrap_or_else(|| Taken::Clean(Deflate::new_with_config(class.zlib_config())))
}

/// Keeps `stream` for the next message of `class` on this thread: parked
/// under `tag` for its owner to go on with, or ([`Tag::CLEAN`]) reset for
/// anyone. A full list frees its least recently parked stream.
pub(super) fn give_back_deflate(class: SharedClass, mut stream: Deflate, tag: Tag) {
    if tag == Tag::CLEAN {
        stream.reset();
    }
    let excess = DEFLATE.try_with(move |l| l.borrow_mut().put(class, stream, tag));
    drop(excess);
}

/// A decompressor with a window of [`INFLATE_BITS`]: the one parked under
/// `tag` on this thread, or one at the start of a stream.
pub(super) fn take_inflate(tag: Tag) -> Taken<Inflate> {
    let free = INFLATE.try_with(|l| l.borrow_mut().take(INFLATE_BITS, tag));
    free.ok()
        .flatten()
        .unwrap_or_else(|| Taken::Clean(Inflate::new(false, INFLATE_BITS)))
}

/// Keeps `stream` for the next message on this thread: parked under `tag`
/// for its owner to go on with, or ([`Tag::CLEAN`]) reset, whatever state
/// a message or an error left it in, for anyone.
pub(super) fn give_back_inflate(mut stream: Inflate, tag: Tag) {
    if tag == Tag::CLEAN {
        stream.reset(false);
    }
    let excess = INFLATE.try_with(move |l| l.borrow_mut().put(INFLATE_BITS, stream, tag));
    drop(excess);
}

/// A codec with context takeover goes away: the stream it parked on this
/// thread, if any, is reset now (its window of the connection's data goes
/// with it) and serves anyone.
pub(super) fn disown_deflate(class: SharedClass, owner: Owner) {
    let _ = DEFLATE.try_with(|l| l.borrow_mut().disown(class, owner));
}

/// [`disown_deflate`] for a decompressor.
pub(super) fn disown_inflate(owner: Owner) {
    let _ = INFLATE.try_with(|l| l.borrow_mut().disown(INFLATE_BITS, owner));
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

    /// A stand-in stream: which one it is, and how often it was reset.
    #[derive(Debug, PartialEq)]
    struct Fake(u32, u32);

    impl Reset for Fake {
        fn reset_stream(&mut self) {
            self.1 += 1;
        }
    }

    fn own(t: Option<Taken<Fake>>) -> Option<Fake> {
        match t {
            Some(Taken::Own(f)) => Some(f),
            _ => None,
        }
    }

    fn clean(t: Option<Taken<Fake>>) -> Option<Fake> {
        match t {
            Some(Taken::Clean(f)) => Some(f),
            _ => None,
        }
    }

    #[test]
    fn free_lists_are_bounded_per_class_and_in_classes() {
        let mut l: FreeList<u32, Fake> = FreeList::new();
        for i in 0..10 {
            // Full: the least recently parked stream makes room.
            let evicted = l.put(1, Fake(i, 0), Tag::CLEAN);
            let want = (i >= FREE_PER_CLASS as u32).then(|| Fake(i - FREE_PER_CLASS as u32, 0));
            assert_eq!(evicted, want, "{i}");
        }
        assert_eq!(l.len(), FREE_PER_CLASS);
        // New classes up to the bound; then only in place of an empty one.
        for k in 2..=CLASSES as u32 {
            assert_eq!(l.put(k, Fake(0, 0), Tag::CLEAN), None);
        }
        assert_eq!(l.put(100, Fake(7, 0), Tag::CLEAN), Some(Fake(7, 0)));
        assert_eq!(clean(l.take(2, Tag::CLEAN)), Some(Fake(0, 0)));
        assert_eq!(l.put(100, Fake(7, 0), Tag::CLEAN), None);
        assert_eq!(l.classes.len(), CLASSES);
        assert_eq!(clean(l.take(100, Tag::CLEAN)), Some(Fake(7, 0)));
        assert!(l.take(2, Tag::CLEAN).is_none());
        assert_eq!(clean(l.take(1, Tag::CLEAN)), Some(Fake(9, 0)));
    }

    fn tag(owner: Owner, parking: u64) -> Tag {
        Tag { owner, parking }
    }

    #[test]
    fn a_parked_stream_goes_on_for_its_owner_and_is_reset_for_anyone_else() {
        let mut l: FreeList<u32, Fake> = FreeList::new();
        l.put(1, Fake(1, 0), tag(11, 1));
        l.put(1, Fake(2, 0), tag(22, 1));
        // Its owner gets it back untouched, whoever parked after it.
        assert_eq!(own(l.take(1, tag(11, 1))), Some(Fake(1, 0)));
        // Another owner, with room left for a stream of its own: none of
        // the parked ones is taken from its owner (a new one is made).
        assert!(l.take(1, tag(33, 1)).is_none());
        // A reset stream is preferred to someone else's.
        l.put(1, Fake(3, 1), Tag::CLEAN);
        assert_eq!(clean(l.take(1, tag(33, 1))), Some(Fake(3, 1)));
        // Full of other owners' streams: the least recently parked one is
        // reset and handed over; its owner then finds nothing of its own.
        for (f, o) in [(4, 44), (5, 55), (6, 66)] {
            l.put(1, Fake(f, 0), tag(o, 1));
        }
        assert_eq!(l.len(), FREE_PER_CLASS);
        assert_eq!(clean(l.take(1, tag(77, 1))), Some(Fake(2, 1)));
        assert!(own(l.take(1, tag(22, 1))).is_none());
        // A departed owner's stream is reset in place and serves anyone.
        l.disown(1, 55);
        assert_eq!(clean(l.take(1, Tag::CLEAN)), Some(Fake(5, 1)));
        assert_eq!(own(l.take(1, tag(66, 1))), Some(Fake(6, 0)));
    }

    #[test]
    fn an_owner_goes_on_only_with_the_stream_it_parked_last() {
        // Owner 11 parked here at its first message, then went on
        // elsewhere (another thread) and is now at its third parking:
        // the stream here lacks what it sent meanwhile.
        let mut l: FreeList<u32, Fake> = FreeList::new();
        l.put(1, Fake(1, 0), tag(11, 1));
        assert!(own(l.take(1, tag(11, 3))).is_none());
        l.put(1, Fake(2, 0), tag(11, 3));
        assert_eq!(own(l.take(1, tag(11, 3))), Some(Fake(2, 0)));
        // Disowning resets every stream the owner left.
        l.put(1, Fake(3, 0), tag(11, 4));
        l.disown(1, 11);
        assert_eq!(clean(l.take(1, Tag::CLEAN)), Some(Fake(3, 1)));
        assert_eq!(clean(l.take(1, Tag::CLEAN)), Some(Fake(1, 1)));
        assert_eq!(Tag::CLEAN.next(11), tag(11, 1));
        assert_eq!(tag(11, 1).next(11), tag(11, 2));
    }
}
