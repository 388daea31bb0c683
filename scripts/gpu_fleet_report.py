#!/usr/bin/env python3
"""Tables for assets/bench/h200-gemma3-sizes.md from scripts/gpu-fleet's results folder.

  python3 scripts/gpu_fleet_report.py RESULTS_DIR [--json OUT.json]

Per model and N: lem-tui, llama-server (the same llama.cpp) and transformers static+compile
aggregate tok/s and wall per probe, with lem-tui's ratio to each; then the fleet runs. --json
gathers every figure into one file.
"""

import argparse
import json
from pathlib import Path


def load(p):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("res", type=Path)
    ap.add_argument("--json")
    a = ap.parse_args()
    res = a.res
    models = []
    for f in sorted(res.glob("lem-*.json")):
        parts = f.stem.split("-")
        if len(parts) == 3:
            models.append((parts[1], parts[2]))
    order = {"270m": 0, "1b": 1, "4b": 2, "12b": 3, "27b": 4}
    models.sort(key=lambda m: (order.get(m[0], 9), m[1]))
    out = {"models": {}, "fleet": {}}
    print("| model | N | lem-tui tok/s | llama-server tok/s | ratio | transformers static+compile tok/s | ratio |"
          " lem-tui wall/probe s | GPU-sampling build tok/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, variant in models:
        lem = load(res / f"lem-{size}-{variant}.json")
        srv = load(res / f"server-{size}-{variant}.json")
        peer = load(res / f"peer-{size}.json")
        gpu = [load(p) for p in sorted(res.glob(f"lem-{size}-{variant}-*.json"))]
        out["models"][f"{size}-{variant}"] = {"lem_tui": lem, "llama_server": srv, "transformers": peer,
                                             "other_builds": gpu}
        if not lem:
            continue
        for row in lem["lem_tui"]:
            n = row["n"]
            s = next((r for r in (srv or {}).get("results", []) if r["n"] == n), None)
            p = next((r for r in (peer or {}).get("figures", []) if r.get("n") == n and "aggregate_tok_s" in r), None)
            g = [next((r for r in (x or {}).get("lem_tui", []) if r["n"] == n), None) for x in gpu]
            g = [x for x in g if x]

            def ratio(other):
                return f"{row['aggregate_tok_s'] / other['aggregate_tok_s']:.2f}×" if other else "-"

            peer_cell = f"{p['aggregate_tok_s']:.0f}" if p else "-"  # the peer is bf16 for both rows
            print(f"| {size} {variant} | {n} | {row['aggregate_tok_s']:.0f} | "
                  f"{s['aggregate_tok_s']:.0f} | {ratio(s)} | " if s else
                  f"| {size} {variant} | {n} | {row['aggregate_tok_s']:.0f} | - | - | ", end="")
            print(f"{peer_cell} | {ratio(p)} | {row['wall_per_probe_s']:.3f} | "
                  + (", ".join(f"{x['aggregate_tok_s']:.0f}" for x in g) or "-") + " |")
    for f in sorted(res.glob("fleet*.json")):
        r = load(f)
        if not r:
            continue
        out["fleet"][f.stem] = r
        print(f"\n{f.stem}: GPUs {r.get('gpus')}, {r.get('slots')} slots per server\n")
        print("| run | servers | probes | best-of | tokens/cand | wall s | tokens | aggregate tok/s |"
              " client CPU µs/token | shares | exit |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
        rows = list(r.get("runs", []))
        if r.get("kill_one"):
            rows.append(r["kill_one"])
        for x in rows:
            shares = " / ".join(f"{e['share']:.2f}" for e in x["endpoints"])
            print(f"| {x['label']} | {x['servers']} | {x['probes']} | {x['runs']} | {x['max_tokens']} | "
                  f"{x['wall_s']:.1f} | {x['tokens']} | {x['aggregate_tok_s']:.0f} | "
                  f"{(x['client_cpu_us_per_token'] or 0):.1f} | {shares} | {x['exit']} |")
        if r.get("kill_one"):
            print(f"\nkill-one check: {json.dumps(r['kill_one'].get('check'))}; killed {r['kill_one'].get('killed')}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
