#!/usr/bin/env python3
"""The GPU peer of `lem-tui bench`: PyTorch + transformers `generate(num_return_sequences=N)`.

Builds the same architecture as the GGUF that lem-tui loads (from the `hparams.json` that
`scripts/gguf_random.py describe` writes) with random weights (throughput does not depend on
trained values), on the GPU in bf16, and does lem-tui's work: for each N and each probe, one
prompt of the same length in tokens (read from lem-tui's bench JSON), N candidates of exactly
M new tokens (min_new_tokens = max_new_tokens, so end-of-sequence never stops one early), with
the same sampling settings. HF expands the prompt to N rows and decodes them as one batch.

Timing: CUDA is synchronised around each `generate`; a warm-up call per N comes first. TTFT is
a separate `generate(max_new_tokens=1)` of the same N (prefill of the N rows + one sample).
Figures have lem-tui's names: wall_per_probe_s, aggregate_tok_s = N*M/wall, decode_tok_s =
(M-1)/(wall - ttft) per candidate, ttft_ms, prefill_tok_s = prompt tokens / ttft.

Differences that remain: transformers' repetition_penalty also counts the prompt's tokens
(lem-tui's only the response's), and its weights are bf16 where lem-tui's are Q4_K_M.

  python3 scripts/peer_transformers.py --hparams DIR/hparams.json --lem-json lem.json \\
      --n 1,8,32 --max-tokens 256 --json peer.json
"""

import argparse
import json
import sys
import time


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def gemma3_config(hp, transformers):
    kw = dict(
        vocab_size=hp["vocab_size"],
        hidden_size=hp["embedding_length"],
        intermediate_size=hp["feed_forward_length"],
        num_hidden_layers=hp["block_count"],
        num_attention_heads=hp["attention.head_count"],
        num_key_value_heads=hp["attention.head_count_kv"],
        head_dim=hp["attention.key_length"],
        max_position_embeddings=hp["context_length"],
        rms_norm_eps=hp["attention.layer_norm_rms_epsilon"],
        sliding_window=hp["attention.sliding_window"],
        # llama.cpp's gemma3: attention scale 1/sqrt(head_dim), local RoPE base 10000, one
        # global layer in six; the GGUF stores the global base.
        query_pre_attn_scalar=hp.get("query_pre_attn_scalar") or hp["attention.key_length"],
        final_logit_softcapping=hp.get("final_logit_softcapping"),
        attn_logit_softcapping=hp.get("attn_logit_softcapping"),
        tie_word_embeddings=hp.get("tied_embeddings", True),
        hidden_activation="gelu_pytorch_tanh",
        bos_token_id=hp.get("bos_token_id", 2),
        eos_token_id=hp.get("eos_token_id", 1),
        pad_token_id=0,
    )
    rope = {
        "full_attention": {"rope_type": "default", "rope_theta": hp["rope.freq_base"]}
        if not hp.get("rope.scaling.factor") else
        {"rope_type": "linear", "factor": hp["rope.scaling.factor"], "rope_theta": hp["rope.freq_base"]},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    }
    try:
        return transformers.Gemma3TextConfig(rope_parameters=rope, **kw)
    except TypeError:  # transformers 4.x
        return transformers.Gemma3TextConfig(rope_theta=hp["rope.freq_base"], rope_local_base_freq=10000.0, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hparams", required=True)
    ap.add_argument("--lem-json", help="lem-tui bench JSON: prompt lengths (lem_tui[0].prompt_tokens)")
    ap.add_argument("--prompt-tokens", default="", help="comma-separated prompt lengths (else from --lem-json)")
    ap.add_argument("--n", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.75)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--repeat-penalty", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager)")
    ap.add_argument("--cache", default="", help="cache_implementation (e.g. static: transformers then "
                    "compiles the decoding step with torch.compile); default: the library's dynamic cache")
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop starting new N after this long")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    t0 = time.time()

    import torch
    import transformers

    hp = json.load(open(a.hparams))
    if a.prompt_tokens:
        prompt_lens = [int(x) for x in a.prompt_tokens.split(",")]
    else:
        lem = json.load(open(a.lem_json))
        prompt_lens = lem["lem_tui"][0]["prompt_tokens"]
    ns = [int(x) for x in a.n.split(",")]
    m = a.max_tokens
    dev = torch.device("cuda")
    torch.manual_seed(a.seed)
    cfg = gemma3_config(hp, transformers)
    try:
        cfg._attn_implementation = a.attn
    except Exception as e:  # noqa: BLE001 - the library's default then
        log(f"peer: attn_implementation {a.attn} not set: {e!r}")
    dtype = getattr(torch, a.dtype)
    with dev:
        model = transformers.Gemma3ForCausalLM(cfg).to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    log(f"peer: Gemma3ForCausalLM {params / 1e6:.1f}M parameters, {a.dtype}, {a.attn}, on {torch.cuda.get_device_name()}")
    gen = transformers.GenerationConfig(
        do_sample=True, temperature=a.temperature, top_p=a.top_p, top_k=a.top_k,
        repetition_penalty=a.repeat_penalty, eos_token_id=cfg.eos_token_id, pad_token_id=0,
        bos_token_id=cfg.bos_token_id,
    )
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    prompts = [torch.randint(1000, hp["vocab_size"] - 1000, (1, n), generator=g).to(dev) for n in prompt_lens]

    extra = {"cache_implementation": a.cache} if a.cache else {}

    def run(ids, n, new):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen,
                num_return_sequences=n, max_new_tokens=new, min_new_tokens=new, **extra,
            )
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
        assert tuple(out.shape) == (n, ids.shape[1] + new), (tuple(out.shape), n, ids.shape[1], new)
        return wall

    results = []

    def write():
        report = {
            "name": "transformers generate",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gpu": torch.cuda.get_device_name(),
            "dtype": a.dtype,
            "attn_implementation": a.attn,
            "cache_implementation": a.cache or "default (dynamic)",
            "parameters": params,
            "max_tokens": m,
            "prompt_tokens": prompt_lens,
            "sampling": {"temperature": a.temperature, "top_p": a.top_p, "top_k": a.top_k,
                         "repetition_penalty": a.repeat_penalty, "seed": a.seed},
            "config": cfg.to_dict(),
            "figures": results,
            "seconds": time.time() - t0,
        }
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)

    for n in ns:
        if time.time() - t0 > a.budget_s:
            log(f"peer: out of time before N={n}")
            break
        try:
            # Warm-up: kernels, allocator, cache shapes for this N. A static cache is compiled
            # for its full length (prompt + M), so that shape is the one to warm up (give every
            # prompt the same length then, or each one compiles again).
            run(prompts[0], n, m if a.cache else 16)
            probes = []
            for ids in prompts:
                ttft = run(ids, n, 1)
                wall = run(ids, n, m)
                probes.append({"prompt_tokens": ids.shape[1], "ttft": ttft, "wall": wall})
        except Exception as e:  # keep the other N's figures
            log(f"peer: N={n} failed: {e!r}")
            results.append({"n": n, "error": repr(e)})
            write()
            continue
        k = len(probes)
        wall = sum(p["wall"] for p in probes) / k
        ttft = sum(p["ttft"] for p in probes) / k
        f = {
            "n": n,
            "wall_per_probe_s": wall,
            "aggregate_tok_s": n * m / wall,
            "decode_tok_s": sum((m - 1) / max(p["wall"] - p["ttft"], 1e-9) for p in probes) / k,
            "ttft_ms": ttft * 1e3,
            "prefill_tok_s": sum(p["prompt_tokens"] / p["ttft"] for p in probes) / k,
            "probes": probes,
        }
        log(f"peer: N={n:>3} wall/probe {wall:7.3f} s  aggregate {f['aggregate_tok_s']:9.1f} tok/s  "
            f"per-candidate {f['decode_tok_s']:7.1f} tok/s  TTFT {f['ttft_ms']:7.1f} ms")
        results.append(f)
        write()
    write()


if __name__ == "__main__":
    main()
