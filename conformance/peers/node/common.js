'use strict';
// Shared helpers for the Node `ws` interop peers.
//
// Output protocol (read by conformance/tests/interop_support): one record
// per line, `TAG key=value key=value ...`, every value percent-encoded with
// encodeURIComponent.

// Empty, one byte, the largest 7-bit length, the smallest 16-bit length,
// a 64-bit length, and 1 MiB.
const SIZES = [0, 1, 125, 126, 65536, 1 << 20];
const TEXT_PATTERN = 'wsmachine interop, the quick brown fox jumps over the lazy dog. ';
const UNICODE_TEXT = 'héllo wörld ✓ 日本語 🦀';

function textPayload(n) {
  return TEXT_PATTERN.repeat(Math.floor(n / TEXT_PATTERN.length) + 1).slice(0, n);
}

// n pseudo-random bytes (xorshift32 seeded by n): incompressible, reproducible.
function binaryPayload(n) {
  const out = Buffer.alloc(n);
  let x = (n * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function record(tag, fields) {
  const parts = [tag];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(`${k}=${encodeURIComponent(String(v))}`);
  }
  process.stdout.write(parts.join(' ') + '\n');
}

function result(key, value) {
  record('result', { [key]: value });
}

module.exports = { SIZES, UNICODE_TEXT, textPayload, binaryPayload, record, result };
