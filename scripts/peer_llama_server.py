#!/usr/bin/env python3
"""The llama-server peer of `lem-tui bench` (issue 12): the same llama.cpp, as its own server.

For each N and each probe, asks a running llama-server for N completions of the probe: one
`/completion` request with `n_cmpl` = N (the server prefills the prompt once and copies its
state to N slots, as lem-tui copies the KV to N sequences), or with `--mode parallel` N
concurrent requests each with its own seed and `cache_prompt`. Every candidate runs to exactly
`--max-tokens` tokens (`ignore_eos`), with LEM's sampling (temperature, top_k, top_p, min_p,
repeat penalty) as lem-tui's bench uses it. The prompt is the probe in Gemma's chat template,
as lem-tui's llama backend formats it; the server reports its token count (`prompt_n`), to set
against lem-tui's `prompt_tokens`.

Figures have lem-tui's names: wall_per_probe_s, aggregate_tok_s = N*M/wall, ttft_ms and
prefill_tok_s (from the server's own `timings` of the N=1 requests). A warm-up request first.
Standard library only (the GPU machine installs nothing).

  python3 scripts/peer_llama_server.py --url http://127.0.0.1:8080 --probes assets/probes/P01-P20.json \\
      --prompts 3 --n 1,8,32 --max-tokens 256 --json server.json
"""

import argparse
import json
import sys
import threading
import time
import urllib.request

TEMPLATE = "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"


def post(url, body, timeout):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def completions(a, prompt, n, seed):
    """N completions of one prompt; returns (wall seconds, [result objects])."""
    base = {
        "prompt": TEMPLATE.format(prompt), "n_predict": a.max_tokens, "ignore_eos": True,
        "temperature": a.temperature, "top_k": a.top_k, "top_p": a.top_p, "min_p": a.min_p,
        "repeat_penalty": a.repeat_penalty, "repeat_last_n": a.repeat_last_n,
        "cache_prompt": True, "stream": False,
    }
    url = a.url.rstrip("/") + "/completion"
    t0 = time.perf_counter()
    if a.mode == "n_cmpl" and n > 1:
        out = post(url, dict(base, n_cmpl=n, seed=seed), a.timeout)
        results = out if isinstance(out, list) else [out]
    else:
        results, errors = [None] * n, []

        def one(i):
            try:
                results[i] = post(url, dict(base, seed=seed + i), a.timeout)
            except Exception as e:  # noqa: BLE001 - reported below, with the request's index
                errors.append(f"request {i}: {e}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError("; ".join(errors))
    wall = time.perf_counter() - t0
    return wall, results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--probes", required=True, help="a LEM probe file (JSON list with `prompt`)")
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--n", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.75)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--min-p", type=float, default=0.0)
    ap.add_argument("--repeat-penalty", type=float, default=1.1)
    ap.add_argument("--repeat-last-n", type=int, default=0,
                    help="penalty window (default: max tokens, i.e. every generated token, as lem-tui)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--mode", choices=["n_cmpl", "parallel"], default="n_cmpl")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", help="write the report here")
    ap.add_argument("--label", default="llama-server")
    a = ap.parse_args()
    a.repeat_last_n = a.repeat_last_n or a.max_tokens

    prompts = [p["prompt"] for p in json.load(open(a.probes))][: a.prompts]
    completions(a, prompts[0], 1, a.seed)  # warm-up (the server's first graph, CUDA graphs)
    rows = []
    for n in [int(x) for x in a.n.split(",")]:
        walls, prompt_n, ttft, prefill, tokens = [], [], [], [], []
        for p in prompts:
            wall, results = completions(a, p, n, a.seed)
            walls.append(wall)
            t = [r.get("timings", {}) for r in results]
            tokens.append(sum(x.get("predicted_n", 0) for x in t))
            prompt_n.append(max(x.get("prompt_n", 0) for x in t))
            if n == 1:
                ttft.append(t[0].get("prompt_ms", 0.0))
                prefill.append(t[0].get("prompt_per_second", 0.0))
        short = [x for x in tokens if x != n * a.max_tokens]
        if short:
            print(f"warning: N={n}: generated {tokens} tokens, expected {n * a.max_tokens} per probe",
                  file=sys.stderr)
        w = sum(walls) / len(walls)
        row = {"n": n, "wall_per_probe_s": w, "aggregate_tok_s": n * a.max_tokens / w, "walls_s": walls,
               "prompt_tokens": prompt_n, "generated_tokens": tokens}
        if ttft:
            row.update(ttft_ms=sum(ttft) / len(ttft), prefill_tok_s=sum(prefill) / len(prefill))
        rows.append(row)
        print(f"{a.label} ({a.mode}) N={n}: wall/probe {w:.3f} s, aggregate {row['aggregate_tok_s']:.0f} tok/s, "
              f"prompt tokens {prompt_n}", file=sys.stderr, flush=True)
    report = {"peer": a.label, "mode": a.mode, "url": a.url, "max_tokens": a.max_tokens,
              "sampling": {k: getattr(a, k) for k in ("temperature", "top_k", "top_p", "min_p",
                                                      "repeat_penalty", "repeat_last_n", "seed")},
              "results": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
