#!/usr/bin/env python3
"""Markdown tables from criterion's saved estimates (target/criterion), one
row per benchmark input, the median throughput of each function and the
ratio of the first function to the others (wsmachine / tungstenite,
deflate / plain, apply_mask / memcpy).

    cargo bench -p wsmachine --bench frames
    python3 conformance/bench/criterion_table.py [target/criterion] [GROUP_PREFIX...]
"""
import json
import os
import sys


def load(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        if "benchmark.json" not in files or not dirpath.endswith("/new"):
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            b = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            e = json.load(f)
        ns = e["median"]["point_estimate"]
        tp = b.get("throughput") or {}
        if "Bytes" in tp:
            value, unit = tp["Bytes"] / ns, "GB/s"  # bytes/ns = GB/s (10^9)
        elif "BytesDecimal" in tp:
            value, unit = tp["BytesDecimal"] / ns, "GB/s"
        elif "Elements" in tp:
            value, unit = tp["Elements"] / ns * 1e3, "M/s"
        else:
            value, unit = 1e9 / ns, "iter/s"
        out.setdefault(b["group_id"], {}).setdefault(b.get("value_str") or "", {})[
            b["function_id"]
        ] = (value, unit)
    return out


def sort_key(v):
    head = v.split("/")[-1].split("B")[0]
    return (v.split("/")[0] if "/" in v else "", int(head) if head.isdigit() else 0, v)


def main():
    args = sys.argv[1:]
    root = args.pop(0) if args and os.path.isdir(args[0]) else "target/criterion"
    data = load(root)
    for group in sorted(data):
        if args and not any(group.startswith(p) for p in args):
            continue
        rows = data[group]
        funcs = []
        for r in rows.values():
            for fn in r:
                if fn not in funcs:
                    funcs.append(fn)
        funcs.sort(key=lambda f: (f not in ("wsmachine", "deflate", "apply_mask"), f))
        print(f"\n#### {group}\n")
        unit = next(iter(next(iter(rows.values())).values()))[1]
        head = ["input"] + [f"{f} ({unit})" for f in funcs]
        head += [f"{funcs[0]} / {f}" for f in funcs[1:]]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for value in sorted(rows, key=sort_key):
            r = rows[value]
            cells = [value]
            for f in funcs:
                cells.append(f"{r[f][0]:.3g}" if f in r else "–")
            for f in funcs[1:]:
                if f in r and funcs[0] in r:
                    cells.append(f"{r[funcs[0]][0] / r[f][0]:.2f}×")
                else:
                    cells.append("–")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
