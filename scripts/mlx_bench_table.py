#!/usr/bin/env python3
"""Markdown rows from `lem-tui bench --backend mlx --json` files (issue 15's table).

    python3 scripts/mlx_bench_table.py assets/bench/mlx-h200-r2-*.json

One row per checkpoint and mode: single-stream decode against mlx-lm's stream_generate, prefill,
TTFT, the largest N's aggregate against mlx-lm's BatchGenerator and against lem-tui's own N=1,
then per checkpoint: sampled / greedy at that N and how many greedy ids equal mlx-lm's.
"""

import json
import sys
from pathlib import Path


def find(rows, n):
    return next((r for r in rows or [] if r["n"] == n), None)


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "-"


def num(v, fmt="{:.1f}"):
    return fmt.format(v) if v else "-"


def main(paths):
    print("| checkpoint | mode | single-stream decode tok/s, lem-tui / mlx-lm | ratio | prefill tok/s | TTFT ms "
          "| best-of-N aggregate tok/s, lem-tui / BatchGenerator | ratio | best-of-N / lem-tui N=1 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        name = Path(path).stem.replace("mlx-h200-r2-", "").replace("mlx-h200-", "")
        top = {}
        for m in d["modes"]:
            lem, peer = m["lem_tui"], m.get("peer") or {}
            one, big = find(lem, 1), max(lem, key=lambda r: r["n"])
            sg, bg = find(peer.get("stream_generate"), 1), find(peer.get("batch_generator"), big["n"])
            top[m["mode"]] = big["aggregate_tok_s"]
            print(f"| {name} | {m['mode']} "
                  f"| {num(one['decode_tok_s'])} / {num(sg and sg['decode_tok_s'])} | {ratio(one['decode_tok_s'], sg and sg['decode_tok_s'])} "
                  f"| {num(one['prefill_tok_s'], '{:.0f}')} / {num(sg and sg['prefill_tok_s'], '{:.0f}')} "
                  f"| {num(one['ttft_ms'])} / {num(sg and sg['ttft_ms'])} "
                  f"| N={big['n']}: {num(big['aggregate_tok_s'])} / {num(bg and bg['aggregate_tok_s'])} "
                  f"| {ratio(big['aggregate_tok_s'], bg and bg['aggregate_tok_s'])} "
                  f"| {ratio(big['aggregate_tok_s'], one['aggregate_tok_s'])} |")
        ids = d.get("greedy_ids") or {}
        eq = f"{ids.get('equal_prefix', 0)} of {len(ids.get('lem_tui') or [])}" if ids.get("peer") else "no peer ids"
        notes.append(f"{name}: sampled / greedy at the largest N {ratio(top.get('sampled'), top.get('greedy'))}; "
                     f"greedy ids equal to mlx-lm's: {eq}")
    print()
    for n in notes:
        print(f"- {n}")


if __name__ == "__main__":
    main(sys.argv[1:] or sys.exit(__doc__))
