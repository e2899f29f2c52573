//! Payload masking (RFC 6455 §5.3) and the injected source of masking keys.

use bytes::BytesMut;

/// A source of 32-bit masking keys for client frames.
///
/// RFC 6455 §5.3 requires keys from a strong source of entropy. The core never
/// reads the OS random generator itself (it does no I/O): adapters pass a source
/// seeded from the OS, tests and trace replay pass [`SeededMask`] so output is
/// reproducible byte for byte.
pub trait MaskSource: Send {
    /// Returns the masking key for the next frame.
    fn next_mask(&mut self) -> [u8; 4];
}

impl MaskSource for Box<dyn MaskSource> {
    fn next_mask(&mut self) -> [u8; 4] {
        (**self).next_mask()
    }
}

/// A deterministic, seedable key stream (xoshiro256**).
///
/// Seed it from the OS (`getrandom`) in production; with a fixed seed it makes
/// tests and trace replays reproducible.
///
/// ```
/// use wsmachine::{MaskSource, SeededMask};
/// let mut a = SeededMask::new([7; 32]);
/// let mut b = SeededMask::new([7; 32]);
/// assert_eq!(a.next_mask(), b.next_mask());
/// ```
#[derive(Clone, Debug)]
pub struct SeededMask {
    s: [u64; 4],
    spare: Option<[u8; 4]>,
}

impl SeededMask {
    /// Creates a key stream from a 32-byte seed.
    pub fn new(seed: [u8; 32]) -> Self {
        let mut s = [0u64; 4];
        for (i, chunk) in seed.chunks_exact(8).enumerate() {
            s[i] = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        }
        if s == [0; 4] {
            // xoshiro's one fixed point: an all-zero state would yield only zeros.
            s = [
                0x9E37_79B9_7F4A_7C15,
                0xBF58_476D_1CE4_E5B9,
                0x94D0_49BB_1331_11EB,
                1,
            ];
        }
        SeededMask { s, spare: None }
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Fills `dst` with bytes from the stream (for example a `Sec-WebSocket-Key`).
    pub fn fill(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

impl MaskSource for SeededMask {
    fn next_mask(&mut self) -> [u8; 4] {
        if let Some(m) = self.spare.take() {
            return m;
        }
        let v = self.next_u64().to_le_bytes();
        self.spare = Some([v[4], v[5], v[6], v[7]]);
        [v[0], v[1], v[2], v[3]]
    }
}

/// Masking keys drawn from an entropy function (typically the OS random
/// generator, supplied by an adapter), fetched 1 KiB at a time so a frame
/// costs no system call.
///
/// ```
/// use wsmachine::{EntropyMask, MaskSource};
/// // An adapter passes e.g. `|buf| getrandom::fill(buf).expect("OS RNG")`.
/// let mut m = EntropyMask::new(|buf: &mut [u8]| buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8));
/// assert_eq!(m.next_mask(), [0, 1, 2, 3]);
/// assert_eq!(m.next_mask(), [4, 5, 6, 7]);
/// ```
pub struct EntropyMask<F> {
    fill: F,
    buf: Box<[u8; 1024]>,
    pos: usize,
}

impl<F: FnMut(&mut [u8])> EntropyMask<F> {
    /// Wraps an entropy function that fills a buffer with random bytes.
    pub fn new(fill: F) -> Self {
        EntropyMask {
            fill,
            buf: Box::new([0; 1024]),
            pos: 1024,
        }
    }
}

impl<F> std::fmt::Debug for EntropyMask<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntropyMask").finish_non_exhaustive()
    }
}

impl<F: FnMut(&mut [u8]) + Send> MaskSource for EntropyMask<F> {
    fn next_mask(&mut self) -> [u8; 4] {
        if self.pos + 4 > self.buf.len() {
            (self.fill)(&mut self.buf[..]);
            self.pos = 0;
        }
        let m = [
            self.buf[self.pos],
            self.buf[self.pos + 1],
            self.buf[self.pos + 2],
            self.buf[self.pos + 3],
        ];
        self.pos += 4;
        m
    }
}

/// XORs `buf` with `mask`, starting at byte `offset` of the mask (so a payload
/// can be unmasked in pieces).
///
/// Works a machine word at a time after aligning the buffer; the byte loop runs
/// only on the unaligned head and the tail (at most 7 bytes each).
///
/// ```
/// let mut data = *b"Hello";
/// wsmachine::apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mask = rotate(mask, offset);
    // SAFETY: u64 has no invalid bit patterns and align_to_mut only yields
    // properly aligned, in-bounds middle slices.
    let (head, mid, tail) = unsafe { buf.align_to_mut::<u64>() };
    for (i, b) in head.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    // The words start `head.len()` bytes into the key; they are a multiple
    // of 4 bytes long, so the tail starts at the same key position.
    let m = rotate(mask, head.len());
    // Both halves hold the key in memory order, whatever the endianness.
    let m32 = u32::from_ne_bytes(m) as u64;
    let wide = m32 | (m32 << 32);
    for w in mid.iter_mut() {
        *w ^= wide;
    }
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// Appends `src` to `dst` XORed with `mask` from key byte `offset`:
/// [`apply_mask`] fused with the copy into the input buffer, so received
/// payload bytes are written once instead of copied and then rewritten.
pub(crate) fn extend_masked(dst: &mut BytesMut, src: &[u8], mask: [u8; 4], offset: usize) {
    let m = rotate(mask, offset);
    // Both halves hold the key in memory order; words are a multiple of 4
    // bytes long, so every word starts at the same key position.
    let m32 = u32::from_ne_bytes(m) as u64;
    let wide = m32 | (m32 << 32);
    dst.reserve(src.len());
    let out = dst.spare_capacity_mut()[..src.len()]
        .as_mut_ptr()
        .cast::<u8>();
    // Four words per step: few enough iterations to stay quick even
    // unoptimised, and the compiler turns each step into vector operations.
    let mut lanes = src.chunks_exact(32);
    for (k, l) in (&mut lanes).enumerate() {
        let l: &[u8; 32] = l.try_into().expect("32 bytes");
        let x = [
            u64::from_ne_bytes([l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]]) ^ wide,
            u64::from_ne_bytes([l[8], l[9], l[10], l[11], l[12], l[13], l[14], l[15]]) ^ wide,
            u64::from_ne_bytes([l[16], l[17], l[18], l[19], l[20], l[21], l[22], l[23]]) ^ wide,
            u64::from_ne_bytes([l[24], l[25], l[26], l[27], l[28], l[29], l[30], l[31]]) ^ wide,
        ];
        // SAFETY: `out` points at `src.len()` bytes of spare capacity and
        // lane `k` ends at byte `32 * k + 32 <= src.len()`.
        unsafe { out.add(32 * k).cast::<[u64; 4]>().write_unaligned(x) };
    }
    let done = src.len() - lanes.remainder().len();
    for (k, b) in lanes.remainder().iter().enumerate() {
        // SAFETY: as above, `done + k < src.len()`.
        unsafe { out.add(done + k).write(b ^ m[k & 3]) };
    }
    let len = dst.len() + src.len();
    // SAFETY: `reserve` made room for `src.len()` more bytes, and the loops
    // above initialised exactly those.
    unsafe { dst.set_len(len) };
}

/// [`apply_mask`] from key offset 0 for short payloads (a small frame's,
/// at most 125 bytes): eight bytes at a time through unaligned loads, with
/// none of the alignment set-up that pays off only on long buffers.
#[inline]
pub(crate) fn apply_mask_short(buf: &mut [u8], mask: [u8; 4]) {
    let m32 = u32::from_ne_bytes(mask) as u64;
    let wide = m32 | (m32 << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let w = u64::from_ne_bytes((&*c).try_into().expect("8 bytes")) ^ wide;
        c.copy_from_slice(&w.to_ne_bytes());
    }
    // The chunks were a multiple of 4 bytes: the rest starts at key byte 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// The key as seen from byte `by` onwards: `[k1, k2, k3, k0]` for `by = 1`.
#[inline]
fn rotate(mask: [u8; 4], by: usize) -> [u8; 4] {
    u32::from_le_bytes(mask)
        .rotate_right(((by & 3) * 8) as u32)
        .to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) & 3];
        }
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&data, b"\x7f\x9f\x4d\x51\x58");
    }

    #[test]
    fn word_path_matches_byte_path_for_every_alignment_length_and_offset() {
        let mask = [0xa1, 0x02, 0xf3, 0x44];
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..100 {
                for off in 0..4 {
                    let mut a = src.clone();
                    let mut b = src.clone();
                    apply_mask(&mut a[start..start + len], mask, off);
                    naive(&mut b[start..start + len], mask, off);
                    assert_eq!(a, b, "start {start} len {len} off {off}");
                }
            }
        }
    }

    #[test]
    fn extend_masked_matches_copy_then_mask() {
        let mask = [0x5a, 0x01, 0xee, 0x73];
        let src: Vec<u8> = (0..300u32).map(|i| (i * 11 + 1) as u8).collect();
        for len in [0, 1, 3, 4, 31, 32, 33, 64, 100, 300] {
            for off in 0..4 {
                for prefix in [0, 5] {
                    let mut dst = BytesMut::from(&src[..prefix]);
                    extend_masked(&mut dst, &src[..len], mask, off);
                    let mut want = src[..prefix].to_vec();
                    let mut tail = src[..len].to_vec();
                    naive(&mut tail, mask, off);
                    want.extend(tail);
                    assert_eq!(&dst[..], &want[..], "len {len} off {off} prefix {prefix}");
                }
            }
        }
    }

    #[test]
    fn short_path_matches_byte_path() {
        let mask = [0xa1, 0x02, 0xf3, 0x44];
        let src: Vec<u8> = (0..140u32).map(|i| (i * 13 + 5) as u8).collect();
        for start in 0..8 {
            for len in 0..=126 {
                let mut a = src.clone();
                let mut b = src.clone();
                apply_mask_short(&mut a[start..start + len], mask);
                naive(&mut b[start..start + len], mask, 0);
                assert_eq!(a, b, "start {start} len {len}");
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let mask = [1, 2, 3, 4];
        let mut whole: Vec<u8> = (0..77).collect();
        let mut parts = whole.clone();
        apply_mask(&mut whole, mask, 0);
        apply_mask(&mut parts[..13], mask, 0);
        apply_mask(&mut parts[13..50], mask, 13);
        apply_mask(&mut parts[50..], mask, 50);
        assert_eq!(whole, parts);
    }

    #[test]
    fn entropy_mask_refills_once_per_256_keys() {
        let mut calls = 0;
        let mut counter = 0u8;
        let mut m = EntropyMask::new(|buf: &mut [u8]| {
            calls += 1;
            for b in buf.iter_mut() {
                counter = counter.wrapping_add(1);
                *b = counter;
            }
        });
        let keys: Vec<_> = (0..257).map(|_| m.next_mask()).collect();
        drop(m);
        assert_eq!(calls, 2);
        assert_eq!(keys[0], [1, 2, 3, 4]);
        assert_eq!(
            keys[256],
            [1, 2, 3, 4],
            "second 1 KiB refill starts over at counter 1025 = 1 mod 256"
        );
    }

    #[test]
    fn seeded_mask_is_deterministic_and_varies() {
        let mut a = SeededMask::new([1; 32]);
        let mut b = SeededMask::new([1; 32]);
        let ka: Vec<_> = (0..8).map(|_| a.next_mask()).collect();
        let kb: Vec<_> = (0..8).map(|_| b.next_mask()).collect();
        assert_eq!(ka, kb);
        assert!(ka.windows(2).any(|w| w[0] != w[1]));
        let mut z = SeededMask::new([0; 32]);
        assert_ne!(z.next_mask(), [0; 4]);
    }
}
