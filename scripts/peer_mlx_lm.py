#!/usr/bin/env python3
"""The mlx-lm peer for `lem-tui bench` on an MLX checkpoint: same folder, prompts, N, sampling.

Reads a JSON job on stdin, prints one JSON object on stdout (progress goes to stderr):

  job:  {"model": DIR, "prompts": [str], "ns": [int], "max_tokens": int, "seed": int,
         "greedy": bool, "sampling": {"temperature", "top_k", "top_p", "min_p", "repeat_penalty"},
         "ignore_eos": true, "ids_tokens": 64}
  out:  {"name": "mlx-lm", "version", "mlx", "device",
         "modes": {"stream_generate": [Figures], "batch_generator": [Figures]},
         "greedy_ids": [the first ids_tokens greedy token ids for prompt 0]}
  Figures: {"n", "wall_per_probe_s", "aggregate_tok_s", "decode_tok_s", "ttft_ms",
            "prefill_tok_s", "prompt_tokens": [per prompt], "walls_s": [per prompt]}

Modes, each over every prompt (chat template applied, as lem-tui does) and every N:
  stream_generate  mlx-lm's `stream_generate`, the N candidates one after another (as LEM runs
                   them), candidate i seeded with seed + i (only the Ns in $PEER_STREAM_NS
                   when it is set).
  batch_generator  mlx-lm's `BatchGenerator` with the prompt inserted N times: one batched
                   decode, one sampler call per step for all rows (seeded once per probe).

`greedy` picks argmax with no logits processors; otherwise mlx-lm's own sampler
(`make_sampler`: top-p, min-p, top-k, temperature) and repeat penalty (`make_logits_processors`,
over the last max_tokens tokens). With `ignore_eos` the end tokens' logits are set to -inf, so
every candidate runs to max_tokens, as lem-tui's bench does.

Figures: wall_per_probe_s, the mean over prompts of the wall time to produce all N candidates
of a probe; aggregate_tok_s = N * max_tokens / wall_per_probe_s; decode_tok_s, each candidate's
(tokens - 1) / (time from its first token to its last), averaged; ttft_ms, from the request to
the first token, averaged over candidates (batch: the first token of the batch); prefill_tok_s,
prompt tokens / time to the first token (batch: all N copies of the prompt count).

Each mode and N is warmed up first (a few tokens): MLX compiles its GPU kernels on first use.
"""

import json
import os
import sys
import time

import mlx.core as mx
import mlx_lm
from mlx_lm import load, stream_generate
from mlx_lm.generate import BatchGenerator, generate_step
from mlx_lm.sample_utils import make_logits_processors, make_sampler

WARMUP_TOKENS = 4


def log(msg: str) -> None:
    print(f"[peer_mlx_lm] {msg}", file=sys.stderr, flush=True)


def eos_suppressor(eos_ids):
    mask = {}

    def processor(tokens, logits):
        v = logits.shape[-1]
        if v not in mask:
            m = mx.zeros((v,), dtype=logits.dtype)
            ids = mx.array(sorted(i for i in eos_ids if i < v))
            mask[v] = m.at[ids].add(-mx.inf) if ids.size else m
        return logits + mask[v]

    return processor


def make_chain(job, tokenizer):
    """(sampler, logits_processors) for the job: greedy, or mlx-lm's sampling chain."""
    procs = [eos_suppressor(tokenizer.eos_token_ids)] if job.get("ignore_eos", True) else []
    if job["greedy"]:
        return make_sampler(temp=0.0), procs
    s = job["sampling"]
    sampler = make_sampler(
        temp=float(s["temperature"]),
        top_p=float(s.get("top_p", 0.0) or 0.0),
        min_p=float(s.get("min_p", 0.0) or 0.0),
        top_k=int(s.get("top_k", 0) or 0),
    )
    rp = float(s.get("repeat_penalty", 1.0) or 1.0)
    if rp != 1.0:
        procs = make_logits_processors(repetition_penalty=rp, repetition_context_size=job["max_tokens"]) + procs
    return sampler, procs


def one_stream(model, tokenizer, ids, max_tokens, sampler, procs, seed):
    """One candidate through stream_generate: (ttft_s, wall_s, decode_tok_s, tokens)."""
    mx.random.seed(seed)
    start = time.perf_counter()
    first = None
    n = 0
    for r in stream_generate(model, tokenizer, ids, max_tokens=max_tokens, sampler=sampler, logits_processors=procs):
        n = r.generation_tokens
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    first = first or end
    decode = (n - 1) / (end - first) if n > 1 and end > first else 0.0
    return first - start, end - start, decode, n


def stream_ns(job):
    """The Ns stream_generate runs: the job's, or only those in PEER_STREAM_NS (e.g. `1`: N
    candidates one after another take N times one candidate's time, which a short GPU lease
    need not spend on the large checkpoints)."""
    only = [int(x) for x in os.environ.get("PEER_STREAM_NS", "").split(",") if x.strip()]
    return [n for n in job["ns"] if not only or n in only]


def stream_mode(model, tokenizer, prompts, job, sampler, procs):
    out = []
    for n in stream_ns(job):
        walls, ttfts, decodes, prefills, tokens = [], [], [], [], 0
        for ids in prompts:
            t0 = time.perf_counter()
            for i in range(n):
                ttft, _, decode, k = one_stream(model, tokenizer, ids, job["max_tokens"], sampler, procs, job["seed"] + i)
                ttfts.append(ttft)
                decodes.append(decode)
                prefills.append(len(ids) / ttft)
                tokens += k
            walls.append(time.perf_counter() - t0)
        out.append(figures(n, walls, ttfts, decodes, prefills, tokens, prompts))
        log(f"stream_generate N={n}: {out[-1]['aggregate_tok_s']:.1f} tok/s aggregate, {out[-1]['decode_tok_s']:.1f} decode")
    return out


def one_batch(model, ids, n, max_tokens, sampler, procs, seed, eos_ids):
    """N copies of a prompt through BatchGenerator: (ttft_s, wall_s, decode_tok_s, tokens, prompt_tps)."""
    mx.random.seed(seed)
    gen = BatchGenerator(
        model,
        max_tokens=max_tokens,
        stop_tokens=None if eos_ids is None else [[t] for t in eos_ids],
        sampler=sampler,
        logits_processors=procs,
        completion_batch_size=max(n, 32),
        prefill_batch_size=n,
    )
    try:
        start = time.perf_counter()
        uids = gen.insert([ids] * n, [max_tokens] * n)
        first = None
        counts = dict.fromkeys(uids, 0)
        while responses := gen.next_generated():
            if first is None:
                first = time.perf_counter()
            for r in responses:
                counts[r.uid] += 1
        end = time.perf_counter()
    finally:
        gen.close()
    first = first or end
    steps = max(counts.values())
    decode = (steps - 1) / (end - first) if steps > 1 and end > first else 0.0
    return first - start, end - start, decode, sum(counts.values()), n * len(ids) / (first - start)


def batch_mode(model, tokenizer, prompts, job, sampler, procs):
    eos = None if job.get("ignore_eos", True) else sorted(tokenizer.eos_token_ids)
    out = []
    for n in job["ns"]:
        walls, ttfts, decodes, prefills, tokens = [], [], [], [], 0
        for ids in prompts:
            ttft, wall, decode, k, prefill = one_batch(model, ids, n, job["max_tokens"], sampler, procs, job["seed"], eos)
            walls.append(wall)
            ttfts.append(ttft)
            decodes.append(decode)
            prefills.append(prefill)
            tokens += k
        out.append(figures(n, walls, ttfts, decodes, prefills, tokens, prompts))
        log(f"batch_generator N={n}: {out[-1]['aggregate_tok_s']:.1f} tok/s aggregate, {out[-1]['decode_tok_s']:.1f} decode")
    return out


def figures(n, walls, ttfts, decodes, prefills, tokens, prompts):
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    wall = mean(walls)
    return {
        "n": n,
        "wall_per_probe_s": wall,
        # Tokens actually produced (N * max_tokens when end tokens are suppressed).
        "aggregate_tok_s": tokens / sum(walls) if walls else 0.0,
        "decode_tok_s": mean(decodes),
        "ttft_ms": 1000 * mean(ttfts),
        "prefill_tok_s": mean(prefills),
        "prompt_tokens": [len(p) for p in prompts],
        "walls_s": walls,
        "tokens": tokens,
    }


def main() -> None:
    job = json.load(sys.stdin)
    for k in ("model", "prompts", "ns", "max_tokens", "seed", "greedy"):
        if k not in job:
            sys.exit(f"peer_mlx_lm: the job has no `{k}`")
    if not job["greedy"] and "sampling" not in job:
        sys.exit("peer_mlx_lm: a sampled job needs `sampling`")
    log(f"loading {job['model']} on {mx.default_device()}")
    model, tokenizer = load(job["model"])
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
        for p in job["prompts"]
    ]
    prompts = [list(p["input_ids"]) if isinstance(p, dict) else list(p) for p in prompts]
    sampler, procs = make_chain(job, tokenizer)

    # Warm-up, untimed: the greedy ids (also the first use of the kernels), then each N batched.
    greedy_sampler, greedy_procs = make_chain(dict(job, greedy=True), tokenizer)
    ids_tokens = int(job.get("ids_tokens", 64))
    t = time.perf_counter()
    greedy_ids = []
    if ids_tokens > 0:
        greedy_ids = [
            int(tok)
            for tok, _ in generate_step(
                mx.array(prompts[0]), model, max_tokens=ids_tokens, sampler=greedy_sampler, logits_processors=greedy_procs
            )
        ]
    one_stream(model, tokenizer, prompts[0], WARMUP_TOKENS, sampler, procs, job["seed"])
    eos = None if job.get("ignore_eos", True) else sorted(tokenizer.eos_token_ids)
    for n in job["ns"]:
        one_batch(model, prompts[0], n, WARMUP_TOKENS, sampler, procs, job["seed"], eos)
    log(f"warm-up {time.perf_counter() - t:.1f}s; prompts {[len(p) for p in prompts]} tokens")

    modes = {}
    for name, run in (("stream_generate", stream_mode), ("batch_generator", batch_mode)):
        if name in job.get("skip_modes", []):
            continue
        modes[name] = run(model, tokenizer, prompts, job, sampler, procs)
    info = mx.device_info() if hasattr(mx, "device_info") else {}
    json.dump(
        {
            "name": "mlx-lm",
            "version": mlx_lm.__version__,
            "mlx": mx.__version__,
            "device": f"{mx.default_device()} {info.get('device_name', '')}".strip(),
            "modes": modes,
            "greedy_ids": greedy_ids,
            "peak_memory_bytes": mx.get_peak_memory(),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
