#!/usr/bin/env python3
"""Throughput by message size (pipelined echo, window 16) from echo.sh's
results: payload MB/s and messages/s per server, medians over the rounds.

    target/bench-venv/bin/python conformance/bench/plot.py \
        target/bench/echo-results.txt BENCHMARKS-echo.png

Needs matplotlib: python3 -m venv target/bench-venv &&
target/bench-venv/bin/pip install matplotlib
"""
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from summarize import num, parse  # noqa: E402

STYLE = {
    "wsmachine-tokio": ("tab:blue", "-", "o"),
    "wsmachine-smol": ("tab:cyan", "-", "o"),
    "wsmachine-async-std": ("tab:purple", "-", "o"),
    "wsmachine-tokio-forward": ("tab:blue", ":", "s"),
    "wsmachine-core": ("navy", "--", "D"),
    "tokio-tungstenite": ("tab:orange", "-", "^"),
    "tokio-tungstenite-send-each": ("tab:orange", ":", "^"),
    "fastwebsockets": ("tab:red", "-", "v"),
    "tokio-websockets": ("tab:green", "-", "<"),
    "wtx": ("tab:brown", "-", ">"),
    "raw-tcp": ("black", "--", "x"),
}


def main(src, dst):
    rows = [r for r in parse(src) if r.get("failed") != "1" and r.get("window") == "16"]
    labels = []
    for r in rows:
        if r["label"] not in labels:
            labels.append(r["label"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    for lab in labels:
        by_size = {}
        for r in rows:
            if r["label"] == lab:
                by_size.setdefault(int(r["size"]), []).append(r)
        sizes = sorted(by_size)
        mbs = [statistics.median(num(r["mb_per_s"]) for r in by_size[s]) for s in sizes]
        mps = [statistics.median(num(r["msgs_per_s"]) for r in by_size[s]) for s in sizes]
        color, ls, marker = STYLE.get(lab, (None, "-", "."))
        ax1.plot(sizes, mbs, ls, marker=marker, color=color, label=lab)
        ax2.plot(sizes, mps, ls, marker=marker, color=color, label=lab)
    for ax, title in ((ax1, "payload MB/s (one direction)"), (ax2, "messages/s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(
        "Echo over loopback: 64 connections, 16 messages in flight each, 2-core VM "
        "(medians; dashed: raw TCP echo and wsmachine core-only driver)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
