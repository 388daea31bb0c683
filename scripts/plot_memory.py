#!/usr/bin/env python3
"""MLX memory per probe over a long distill, without and with a cache limit, as one PNG.

    python3 scripts/plot_memory.py RES/memory-nolimit.jsonl RES/memory-limit.jsonl \
        --out assets/bench/mlx-memory-h200.png [--title TEXT] [--summary FILE.json]

Each input is `lem-tui distill --headless --memory-log FILE`: one JSON line per decided probe,
{"seq", "probe", "t_s", "rss", "mlx": {"active", "cache", "peak", ...}, "kv", "limits":
{"cache_bytes", "memory_bytes"}} (scripts/mlx-cuda memory writes both runs). A panel per run:
MLX active, cache (after the probe and, where logged, `cache_high`, its highest reading during
the probe) and peak (reset per probe) in GiB against the probe number, the cache limit dashed, and, where `RUN-smi.csv` sits beside the JSONL (nvidia-smi's
`pid, used_memory` MiB every 0.5 s), the driver's figure for the process at the probe's time.

Printed (and written with --summary) per run: the highest cache reading, whether it stayed under
the limit, and how far peak moved from probe 10 to the last (the issue's 5 % bound).
Needs matplotlib (`python3 -m pip install matplotlib`); it runs here, not on the GPU machine.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

GIB = 1 << 30


def read_run(path: Path) -> dict:
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"plot_memory: {path}:{i}: not JSON ({e})")
        if not isinstance(r.get("mlx"), dict):
            sys.exit(f"plot_memory: {path}:{i}: field `mlx` is missing or null (not an MLX run?)")
        for k in ("active", "cache", "peak"):
            if not isinstance(r["mlx"].get(k), (int, float)):
                sys.exit(f"plot_memory: {path}:{i}: field `mlx.{k}` is missing")
        rows.append(r)
    if not rows:
        sys.exit(f"plot_memory: {path}: no readings")
    limit = (rows[0].get("limits") or {}).get("cache_bytes") or 0
    return {"path": path, "rows": rows, "cache_limit": limit, "smi": read_smi(path)}


def read_smi(path: Path):
    """nvidia-smi samples beside the JSONL, as (seconds since the first sample, GiB)."""
    smi = path.with_name(path.stem + "-smi.csv")
    if not smi.exists():
        return None
    mib = []
    with smi.open() as f:
        for row in csv.reader(f):
            try:
                mib.append(float(row[1]))
            except (IndexError, ValueError):
                continue
    # Sampled every 0.5 s from before lem-tui started: only the process's footprint matters.
    return [(0.5 * i, m / 1024) for i, m in enumerate(mib)] or None


def label(run: dict) -> str:
    lim = run["cache_limit"]
    return f"cache_limit {lim / GIB:g} GiB" if lim else "no cache limit"


def summary(run: dict) -> dict:
    rows = run["rows"]
    # The backend may hand the cache back after each probe; its highest reading within the probe
    # (`cache_high`) is the one a limit has to bound.
    cache = [max(r["mlx"]["cache"], r["mlx"].get("cache_high", 0)) for r in rows]
    peaks = [r["mlx"]["peak"] for r in rows[9:]]
    out = {
        "run": str(run["path"]),
        "probes": len(rows),
        "cache_limit_bytes": run["cache_limit"],
        "max_cache_bytes": max(cache),
        "max_active_bytes": max(r["mlx"]["active"] for r in rows),
        "max_peak_bytes": max(r["mlx"]["peak"] for r in rows),
    }
    if run["cache_limit"]:
        out["cache_within_limit"] = max(cache) <= run["cache_limit"]
    if peaks:
        lo, hi = min(peaks), max(peaks)
        out["peak_spread_from_probe_10"] = (hi - lo) / hi if hi else 0.0
    if run["smi"]:
        out["max_driver_gib"] = max(g for _, g in run["smi"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="memory-log JSONL files, one per run")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--title", default="MLX memory per probe")
    ap.add_argument("--summary", type=Path, help="also write the per-run summary as JSON")
    args = ap.parse_args()
    runs = [read_run(p) for p in args.runs]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 4.2), sharey=True, squeeze=False)
    top = 0.0
    for ax, run in zip(axes[0], runs):
        rows = run["rows"]
        x = [r.get("seq", i + 1) for i, r in enumerate(rows)]
        series = [("active", "MLX active", "tab:blue"), ("cache", "MLX cache (after the probe)", "tab:orange")]
        if all("cache_high" in r["mlx"] for r in rows):
            series.append(("cache_high", "MLX cache (highest in the probe)", "tab:brown"))
        series.append(("peak", "MLX peak", "tab:red"))
        for key, name, colour in series:
            y = [r["mlx"][key] / GIB for r in rows]
            top = max(top, *y)
            ax.plot(x, y, label=name, color=colour, linewidth=1.6, marker="." if len(x) < 120 else None)
        if run["cache_limit"]:
            top = max(top, run["cache_limit"] / GIB)
            ax.axhline(run["cache_limit"] / GIB, color="tab:orange", linestyle="--", linewidth=1, label="cache limit")
        if run["smi"] and all("t_s" in r for r in rows):
            # The driver's reading nearest each probe's time (the sampler started with lem-tui).
            smi = run["smi"]
            y = [min(smi, key=lambda s: abs(s[0] - r["t_s"]))[1] for r in rows]
            top = max(top, *y)
            ax.plot(x, y, label="process (nvidia-smi)", color="tab:gray", linewidth=1, linestyle=":")
        ax.set_title(label(run))
        ax.set_xlabel("probe")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[0][0].set_ylabel("GiB")
    axes[0][0].set_ylim(0, top * 1.1 + 0.1)
    fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)

    sums = [summary(r) for r in runs]
    for s in sums:
        print(json.dumps(s))
    if args.summary:
        args.summary.write_text(json.dumps(sums, indent=2) + "\n")
    print(f"plot_memory: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
