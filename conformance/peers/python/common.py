"""Shared helpers for the interop peer scripts.

Output protocol (read by conformance/tests/interop_support): one record per
line, `TAG key=value key=value ...`, every value percent-encoded
(urllib.parse.quote with safe=""), so values may hold spaces or any byte.
"""

import random
import sys
import urllib.parse

# Message sizes every echo scenario covers: empty, one byte, the largest
# 7-bit length, the smallest 16-bit length, a 64-bit length, and 1 MiB.
SIZES = [0, 1, 125, 126, 65536, 1 << 20]

TEXT_PATTERN = "wsmachine interop, the quick brown fox jumps over the lazy dog. "
UNICODE_TEXT = "héllo wörld ✓ 日本語 🦀"


def text_payload(n):
    """n bytes of ASCII text (compressible)."""
    reps = n // len(TEXT_PATTERN) + 1
    return (TEXT_PATTERN * reps)[:n]


def binary_payload(n):
    """n pseudo-random bytes (incompressible), reproducible per size."""
    return random.Random(n).randbytes(n)


def record(tag, **fields):
    parts = [tag]
    for k, v in fields.items():
        parts.append(f"{k}={urllib.parse.quote(str(v), safe='')}")
    print(" ".join(parts), flush=True)


def result(key, value):
    record("result", **{key: value})


def describe_mismatch(sent, got):
    if type(sent) is not type(got):
        return f"type {type(got).__name__} instead of {type(sent).__name__}"
    if len(sent) != len(got):
        return f"length {len(got)} instead of {len(sent)}"
    for i, (a, b) in enumerate(zip(sent, got)):
        if a != b:
            return f"differs at index {i}"
    return "equal"


def fatal(msg):
    record("error", message=msg)
    sys.exit(1)
