//! The window of plaintext kept so that a released zlib stream can be
//! re-created mid-connection with context takeover intact.

use super::clamp_bits;
use super::pool::Taken;

/// The last `cap` bytes of one direction's plaintext: the LZ77 window a
/// fresh zlib stream is primed with after
/// [`Compressor::release`](super::Compressor::release) or
/// [`Decompressor::release`](super::Decompressor::release). A ring, so
/// recording a message costs at most two copies of at most `cap` bytes; it
/// grows to `cap` only as data comes.
#[derive(Debug, Default)]
pub(super) struct History {
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
    pub(super) fn for_window(bits: u8, no_context_takeover: bool) -> Self {
        History::new(if no_context_takeover {
            0
        } else {
            1 << clamp_bits(bits).max(9)
        })
    }

    /// Primes a new `stream` with the kept window as its dictionary.
    pub(super) fn prime<S, E: std::fmt::Debug>(
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

    /// The stream for the next message out of what the pool (or a new
    /// stream) gave: one its owner parked goes on as it was; one at its
    /// start is primed with the window (nothing without context takeover,
    /// whose history is empty).
    pub(super) fn resume<S, E: std::fmt::Debug>(
        &mut self,
        taken: Taken<S>,
        set_dictionary: impl FnOnce(&mut S, &[u8]) -> Result<u32, E>,
    ) -> S {
        match taken {
            Taken::Own(stream) => stream,
            Taken::Clean(stream) => self.prime(stream, set_dictionary),
        }
    }

    pub(super) fn push(&mut self, mut data: &[u8]) {
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
    pub(super) fn contiguous(&mut self) -> &[u8] {
        self.buf.rotate_left(self.pos);
        self.pos = 0;
        &self.buf
    }

    pub(super) fn bytes_held(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::tests::random;

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
}
