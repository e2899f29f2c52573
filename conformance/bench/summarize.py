#!/usr/bin/env python3
"""Tables of medians and ratios from the load generator's RESULT lines.

    summarize.py echo target/bench/echo-results.txt
    summarize.py idle target/bench/idle-results.txt
"""
import statistics
import sys

PEERS = [
    "tokio-tungstenite",
    "tokio-tungstenite-send-each",
    "fastwebsockets",
    "tokio-websockets",
    "wtx",
    "raw-tcp",
]


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            if not line.startswith("RESULT "):
                continue
            d = {}
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                d[k] = v
            rows.append(d)
    return rows


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def med(rows, key):
    vals = [num(r.get(key)) for r in rows]
    vals = [v for v in vals if v == v]
    return statistics.median(vals) if vals else float("nan")


def fmt(v, digits=0):
    if v != v:
        return "–"
    return f"{v:,.{digits}f}"


def echo(path):
    rows = [r for r in parse(path) if r.get("failed") != "1"]
    failed = [r for r in parse(path) if r.get("failed") == "1"]
    scenarios, labels = [], []
    for r in rows:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
        if r["label"] not in labels:
            labels.append(r["label"])
    peers = [p for p in PEERS if p in labels]
    for sc in scenarios:
        print(f"\n### {sc} ({rows[[r['scenario'] for r in rows].index(sc)]['conns']} connections)\n")
        head = ["server", "runs", "msg/s (median)", "MB/s", "p50 µs", "p99 µs", "server CPU µs/msg"]
        head += [f"× {p}" for p in peers]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        medians = {}
        for lab in labels:
            rs = [r for r in rows if r["scenario"] == sc and r["label"] == lab]
            if rs:
                medians[lab] = med(rs, "msgs_per_s")
        for lab in labels:
            rs = [r for r in rows if r["scenario"] == sc and r["label"] == lab]
            if not rs:
                continue
            m = medians[lab]
            cells = [
                lab,
                str(len(rs)),
                fmt(m),
                fmt(med(rs, "mb_per_s"), 1),
                fmt(med(rs, "p50_us"), 0),
                fmt(med(rs, "p99_us"), 0),
                fmt(med(rs, "server_cpu_us"), 2),
            ]
            for p in peers:
                pm = medians.get(p, float("nan"))
                cells.append(fmt(m / pm, 2) if pm == pm and pm > 0 else "–")
            print("| " + " | ".join(cells) + " |")
    if failed:
        print("\nfailed runs: " + ", ".join(f"{r['label']}/{r['scenario']}#{r['round']}" for r in failed))


def idle(path):
    rows = parse(path)
    print("| server | connections | compression | RSS before (KiB) | RSS after (KiB) | KiB per connection |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        comp = "no"
        if r.get("deflate") == "true":
            comp = "negotiated, 16 B echo"
            if r.get("compressed_msg") == "true":
                comp = "negotiated, compressed 256 B echo"
        print(
            f"| {r['label']} | {r.get('idle')} | {comp} | {r.get('rss_before_kib')} | "
            f"{r.get('rss_after_kib')} | {fmt(num(r.get('kib_per_conn')), 2)} |"
        )


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("echo", "idle"):
        sys.exit(__doc__)
    {"echo": echo, "idle": idle}[sys.argv[1]](sys.argv[2])
