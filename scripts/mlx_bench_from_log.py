#!/usr/bin/env python3
"""lem-tui's half of an MLX bench whose peer did not finish, from the bench's output and log.

    python3 scripts/mlx_bench_from_log.py NAME.out NAME.log [--max-tokens 128]

`lem-tui bench --backend mlx` writes its JSON only after the peer. When the peer times out,
lem-tui's requests are all in the output ("lem-tui MODE: N=n, prompt p", in the order they ran)
and in the log (one `mlx generation` line each, with its wall). This pairs them in order and
gives each cell's aggregate as the bench computes it: N x max_tokens / mean wall per request.
"""

import argparse
import collections
import re


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("log")
    ap.add_argument("--max-tokens", type=int, default=128)
    a = ap.parse_args()
    reqs = re.findall(r"^lem-tui (greedy|sampled): N=(\d+), prompt \d+", open(a.out).read(), re.M)
    # The warm-up's requests are shorter; the measured ones run max_tokens - 1 decode steps.
    walls = re.findall(rf"mlx generation .*?steps={a.max_tokens - 1} wall_ms=(\d+)", open(a.log).read())
    if len(reqs) != len(walls):
        raise SystemExit(f"{len(reqs)} requests in {a.out} but {len(walls)} finished generations in {a.log}")
    cell = collections.defaultdict(list)
    for (mode, n), w in zip(reqs, walls):
        cell[(mode, int(n))].append(int(w) / 1000)
    agg = {k: k[1] * a.max_tokens / (sum(v) / len(v)) for k, v in cell.items()}
    for k in sorted(agg):
        print(f"{k[0]:8} N={k[1]}: {len(cell[k])} requests, aggregate {agg[k]:.1f} tok/s")
    ns = sorted({n for _, n in agg})
    for m in ("greedy", "sampled"):
        if (m, 1) in agg and (m, ns[-1]) in agg and ns[-1] > 1:
            print(f"{m}: best-of-{ns[-1]} / N=1 {agg[(m, ns[-1])] / agg[(m, 1)]:.2f}x")
    if ("sampled", ns[-1]) in agg and ("greedy", ns[-1]) in agg:
        print(f"sampled / greedy at N={ns[-1]}: {agg[('sampled', ns[-1])] / agg[('greedy', ns[-1])]:.2f}x")


if __name__ == "__main__":
    main()
