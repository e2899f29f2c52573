#!/usr/bin/env python3
"""Tables of medians and ratios from the load generator's RESULT lines.

    summarize.py echo target/bench/echo-results.txt
    summarize.py idle target/bench/idle-results.txt
    summarize.py fanout target/bench/fanout-results.txt
    summarize.py deflate-echo target/bench/deflate-echo-results.txt
    summarize.py memory target/bench/memory-results.txt
"""
import statistics
import sys

PEERS = [
    "uws",
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
        # Issue 18: server CPU per message against uWebSockets' (below 1: less).
        if "uws" in labels:
            head.append("CPU ÷ uws")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        medians, cpu = {}, {}
        for lab in labels:
            rs = [r for r in rows if r["scenario"] == sc and r["label"] == lab]
            if rs:
                medians[lab] = med(rs, "msgs_per_s")
                cpu[lab] = med(rs, "server_cpu_us")
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
            if "uws" in labels:
                cells.append(ratio(cpu[lab], cpu.get("uws", float("nan"))))
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


def ratio(a, b, digits=2):
    return fmt(a / b, digits) if a == a and b == b and b > 0 else "–"


def fanout(path):
    """Server CPU per delivered message, by connection count; ratios are
    this row's CPU divided by the reference's (below 1: less CPU)."""
    all_rows = parse(path)
    rows = [r for r in all_rows if r.get("ok") == "1"]
    failed = [r for r in all_rows if r.get("ok") != "1"]
    labels = []
    for r in rows:
        if r["label"] not in labels:
            labels.append(r["label"])
    for n in sorted({int(r["conns"]) for r in rows}):
        at = [r for r in rows if int(r["conns"]) == n]
        msgs = sorted({r["messages"] for r in at})
        print(f"\n### {n:,} connections ({'/'.join(msgs)} messages each)\n")
        head = ["server", "runs", "server CPU µs/msg (stat)", "(schedstat)", "wire B/msg",
                "× tokio-tungstenite", "× raw-tcp", "× raw-tcp-batched", "× wsmachine+deflate"]
        print("| " + " | ".join(head) + " |")
        print("|---|" + "---:|" * (len(head) - 1))
        m = {}
        for lab in labels:
            rs = [r for r in at if r["label"] == lab]
            if rs:
                m[lab] = med(rs, "server_cpu_us")
        for lab in labels:
            rs = [r for r in at if r["label"] == lab]
            if not rs:
                continue
            comp = lab.endswith("+deflate") or lab.endswith("+shared")
            cells = [
                lab,
                str(len(rs)),
                fmt(m[lab], 3),
                fmt(med(rs, "server_cpu_ns_us"), 3),
                fmt(med(rs, "wire_bytes_per_msg"), 0),
                "–" if comp else ratio(m[lab], m.get("tokio-tungstenite", float("nan"))),
                "–" if comp else ratio(m[lab], m.get("raw-tcp", float("nan"))),
                "–" if comp else ratio(m[lab], m.get("raw-tcp-batched", float("nan"))),
                ratio(m[lab], m.get("wsmachine+deflate", float("nan"))) if comp else "–",
            ]
            print("| " + " | ".join(cells) + " |")
    if failed:
        print("\nfailed runs: " + ", ".join(f"{r['label']}/{r.get('conns')}#{r.get('rep')}" for r in failed))


def deflate_echo(path):
    """loadgen --deflate runs: medians and ratios to the peers."""
    rows = [r for r in parse(path) if r.get("failed") != "1"]
    labels = []
    for r in rows:
        if r["label"] not in labels:
            labels.append(r["label"])
    m = {lab: (med([r for r in rows if r["label"] == lab], "msgs_per_s"),
               med([r for r in rows if r["label"] == lab], "server_cpu_us")) for lab in labels}
    peers = [p for p in ("wtx+deflate", "node-ws+deflate") if p in m]
    head = ["server", "runs", "msg/s (median)", "server CPU µs/msg", "echoes compressed %", "p50 µs"]
    for p in peers:
        head += [f"msg/s × {p}", f"CPU × {p}"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for lab in labels:
        rs = [r for r in rows if r["label"] == lab]
        cells = [lab, str(len(rs)), fmt(m[lab][0]), fmt(m[lab][1], 2),
                 fmt(med(rs, "compressed_pct"), 1), fmt(med(rs, "p50_us"), 0)]
        for p in peers:
            cells += [ratio(m[lab][0], m[p][0]), ratio(m[lab][1], m[p][1])]
        print("| " + " | ".join(cells) + " |")


def memory(path):
    """loadgen --idle runs: KiB per connection right after the traffic and
    after the hold, medians by label."""
    rows = [r for r in parse(path) if r.get("failed") != "1"]
    labels = []
    for r in rows:
        if r["label"] not in labels:
            labels.append(r["label"])
    print("| server preset | runs | connections | KiB/conn right after traffic | KiB/conn after idle hold |")
    print("|---|---:|---:|---:|---:|")
    for lab in labels:
        rs = [r for r in rows if r["label"] == lab]
        print(f"| {lab} | {len(rs)} | {rs[0].get('idle')} | "
              f"{fmt(med(rs, 'kib_per_conn_traffic'), 1)} | {fmt(med(rs, 'kib_per_conn'), 1)} |")


if __name__ == "__main__":
    modes = {"echo": echo, "idle": idle, "fanout": fanout, "deflate-echo": deflate_echo,
             "memory": memory}
    if len(sys.argv) != 3 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    modes[sys.argv[1]](sys.argv[2])
