#!/usr/bin/env python3
"""The peer for `lem-tui bench`: llama-cpp-python on the same GGUF, threads and sampling,
generating a probe's N candidates one after another as LEM does (its high-level API has no `n`).

Reads a JSON job on stdin, prints one JSON object on stdout. End-of-generation tokens are
suppressed with logit_bias so every candidate runs to max_tokens, as lem-tui's bench does.
"""
import json
import sys
import time

from llama_cpp import Llama


def main() -> None:
    job = json.load(sys.stdin)
    llm = Llama(
        model_path=job["model"],
        n_threads=job["threads"],
        n_threads_batch=job["threads"],
        n_ctx=job["n_ctx"],
        chat_format=job["chat_format"],
        seed=job["seed"],
        verbose=False,
    )
    eog = [t for t in range(llm.n_vocab()) if llm._model.token_is_eog(t)] if hasattr(llm._model, "token_is_eog") else [llm.token_eos()]
    bias = {str(t): -1e9 for t in eog}
    s = job["sampling"]
    results = []
    for n in job["ns"]:
        per_probe = []
        for prompt in job["prompts"]:
            llm.reset()  # no KV reuse from the previous probe: each probe starts cold, as in lem-tui
            t0 = time.perf_counter()
            cands = []
            for i in range(n):
                start = time.perf_counter()
                first = None
                chunks = 0
                for chunk in llm.create_chat_completion(
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=s["max_tokens"],
                    temperature=s["temperature"],
                    top_p=s["top_p"],
                    top_k=s["top_k"],
                    repeat_penalty=s["repeat_penalty"],
                    seed=job["seed"] + i,
                    logit_bias=bias,
                    stream=True,
                ):
                    delta = chunk["choices"][0].get("delta", {})
                    if "content" in delta and delta["content"]:
                        chunks += 1
                        if first is None:
                            first = time.perf_counter()
                end = time.perf_counter()
                first = first or end
                cands.append({"ttft": first - start, "wall": end - start, "decode": end - first})
            wall = time.perf_counter() - t0
            per_probe.append({"wall": wall, "candidates": cands})
        results.append({"n": n, "probes": per_probe})
    json.dump({"peer": "llama-cpp-python", "version": __import__("llama_cpp").__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
