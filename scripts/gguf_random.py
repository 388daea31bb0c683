#!/usr/bin/env python3
"""A GGUF with a real model's architecture, tokenizer and tensor types, and random weights.

Throughput does not depend on trained values, so a model too large to carry to the GPU machine
(no internet there, 64 MiB carried) can be rebuilt there from a compact description:

  describe REAL.gguf DIR   (here; needs the `gguf` package) writes into DIR
                           header.bin.xz  the file's bytes up to the tensor data, verbatim:
                                          every metadata key (tokenizer vocabulary included)
                                          and every tensor's name, shape, type and offset
                           tensors.json   the same tensor table, for `build`
                           hparams.json   the architecture's numbers, for a peer that builds
                                          the same model in another framework
  build DIR OUT.gguf       (there; needs numpy only) writes the header back and fills each
                           tensor with random blocks of its own quantisation type, with
                           scales chosen so every weight is finite and small (|w| < ~0.1) and
                           every norm is ~1, so activations and logits stay finite.

  derive DIR SIZE VARIANT OUT   (there or here; standard library only) writes a description
                           of another Gemma 3 size (1b, 4b, 12b, 27b: the text architectures
                           of google/gemma-3-*-it, the numbers of scripts/mlx_random_checkpoint.py)
                           from DIR's (the 270M's): the same tokenizer and metadata, the size's
                           gemma3.* keys, its tensor table with shapes from the architecture and
                           types from llama.cpp's recipe for VARIANT (q4_k_m or bf16), offsets
                           aligned as llama.cpp writes them; `build` then fills it.

The result loads in llama.cpp exactly like the real file (same types, same sizes, same
offsets) and decodes at the same speed; its text is noise.
"""

import argparse
import json
import lzma
import sys
from pathlib import Path

# ggml type id -> (name, bytes per block, elements per block, [(byte offset of an f16 scale, value)])
TYPES = {
    0: ("F32", 4, 1, None),
    1: ("F16", 2, 1, None),
    2: ("Q4_0", 18, 32, [(0, 4e-3)]),
    3: ("Q4_1", 20, 32, [(0, 4e-3), (2, -3e-2)]),
    6: ("Q5_0", 22, 32, [(0, 3e-3)]),
    7: ("Q5_1", 24, 32, [(0, 3e-3), (2, -5e-2)]),
    8: ("Q8_0", 34, 32, [(0, 3e-4)]),
    10: ("Q2_K", 84, 256, [(80, 2e-4), (82, 2e-4)]),
    11: ("Q3_K", 110, 256, [(108, 2e-4)]),
    12: ("Q4_K", 144, 256, [(0, 1e-4), (2, 1e-4)]),
    13: ("Q5_K", 176, 256, [(0, 5e-5), (2, 1e-4)]),
    14: ("Q6_K", 210, 256, [(208, 1e-5)]),
    30: ("BF16", 2, 1, None),
}


def describe(real: Path, out: Path) -> None:
    import gguf  # the `gguf` package (pip install gguf)

    r = gguf.GGUFReader(str(real))
    out.mkdir(parents=True, exist_ok=True)
    with open(real, "rb") as f:
        header = f.read(r.data_offset)
    (out / "header.bin.xz").write_bytes(lzma.compress(header, preset=9 | lzma.PRESET_EXTREME))
    tensors = [
        {"name": t.name, "type": int(t.tensor_type), "shape": [int(x) for x in t.shape],
         "offset": int(t.data_offset), "bytes": int(t.n_bytes)}
        for t in r.tensors
    ]
    for t in tensors:
        if t["type"] not in TYPES:
            sys.exit(f"{t['name']}: ggml type {t['type']} is not handled here; add it to TYPES")
    size = real.stat().st_size
    (out / "tensors.json").write_text(json.dumps({"size": size, "data_offset": r.data_offset, "tensors": tensors}))

    def val(key):
        f = r.fields.get(key)
        return None if f is None else f.contents()

    arch = val("general.architecture")
    hp = {k: val(f"{arch}.{k}") for k in (
        "context_length", "embedding_length", "block_count", "feed_forward_length",
        "attention.head_count", "attention.head_count_kv", "attention.key_length",
        "attention.value_length", "attention.layer_norm_rms_epsilon", "rope.freq_base",
        "attention.sliding_window", "final_logit_softcapping", "attn_logit_softcapping")}
    hp.update({
        "architecture": arch,
        "name": val("general.name"),
        "file_type": val("general.file_type"),
        "vocab_size": len(r.fields["tokenizer.ggml.tokens"].data),
        "bos_token_id": val("tokenizer.ggml.bos_token_id"),
        "eos_token_id": val("tokenizer.ggml.eos_token_id"),
        "tied_embeddings": not any(t["name"] == "output.weight" for t in tensors),
        "source": real.name,
        "source_bytes": size,
    })
    (out / "hparams.json").write_text(json.dumps(hp, indent=1))
    print(f"{real.name}: header {len(header)} bytes, {len(tensors)} tensors -> {out}")


# The text architectures of google/gemma-3-{1b,4b,12b,27b}-it, as in scripts/mlx_random_checkpoint.py.
# The tokenizer stays the 270M's (262144 tokens; the 4B-27B add 64 image tokens that text never uses).
SIZES = {
    # The 270M itself, so that its bf16 variant can be derived from its own description.
    "270m": dict(embd=640, ffn=2048, layers=18, heads=4, kv=1, head=256, window=512, ctx=32768, scale=None),
    "1b": dict(embd=1152, ffn=6912, layers=26, heads=4, kv=1, head=256, window=512, ctx=32768, scale=None),
    "4b": dict(embd=2560, ffn=10240, layers=34, heads=8, kv=4, head=256, window=1024, ctx=131072, scale=8.0),
    "12b": dict(embd=3840, ffn=15360, layers=48, heads=16, kv=8, head=256, window=1024, ctx=131072, scale=8.0),
    "27b": dict(embd=5376, ffn=21504, layers=62, heads=32, kv=16, head=128, window=1024, ctx=131072, scale=8.0),
}
TYPE_ID = {v[0]: k for k, v in TYPES.items()}
FILE_TYPE = {"q4_k_m": 15, "bf16": 32}  # llama_ftype: MOSTLY_Q4_K_M, MOSTLY_BF16
ALIGN = 32  # general.alignment's default


def _gguf_header(buf: bytes):
    """(version, [(key, value type, raw value bytes)], tensor count, header end of the KV section)."""
    import struct

    pos = 4
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, pos)
    pos += 20
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(vt, p):
        if vt in fixed:
            return p + fixed[vt]
        if vt == 8:
            (n,) = struct.unpack_from("<Q", buf, p)
            return p + 8 + n
        if vt == 9:
            et, n = struct.unpack_from("<IQ", buf, p)
            p += 12
            if et in fixed:
                return p + n * fixed[et]
            for _ in range(n):
                p = skip(et, p)
            return p
        raise ValueError(f"GGUF value type {vt} at byte {p}")

    kvs = []
    for _ in range(n_kv):
        (n,) = struct.unpack_from("<Q", buf, pos)
        key = buf[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        (vt,) = struct.unpack_from("<I", buf, pos)
        end = skip(vt, pos + 4)
        kvs.append((key, vt, buf[pos + 4:end]))
        pos = end
    return version, kvs, n_tensors


def _use_more_bits(i: int, n: int) -> bool:
    # llama.cpp's llama_tensor_get_type: Q4_K_M gives these layers' attn_v and ffn_down Q6_K.
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _q4_k_m(kind: str, layer: int, n_layer: int, ncols: int) -> str:
    t = "Q4_K"
    if kind == "token_embd":  # tied: quantised as the output tensor
        t = "Q6_K"
    elif kind in ("attn_v", "ffn_down") and _use_more_bits(layer, n_layer):
        t = "Q6_K"
    if ncols % 256:  # k-quants need rows of whole 256-blocks; llama.cpp falls back
        t = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}[t]
    return t


def derive(desc: Path, size: str, variant: str, out: Path) -> None:
    import lzma as _lzma
    import struct

    a = SIZES[size]
    header = _lzma.decompress((desc / "header.bin.xz").read_bytes())
    version, kvs, _ = _gguf_header(header)
    u32 = lambda v: (4, struct.pack("<I", v))  # noqa: E731
    f32 = lambda v: (6, struct.pack("<f", v))  # noqa: E731
    s = lambda v: (8, struct.pack("<Q", len(v.encode())) + v.encode())  # noqa: E731
    set_ = {
        "general.name": s(f"Gemma 3 {size} (random weights)"),
        "general.size_label": s(size.upper()),
        "general.file_type": u32(FILE_TYPE[variant]),
        "gemma3.context_length": u32(a["ctx"]),
        "gemma3.embedding_length": u32(a["embd"]),
        "gemma3.block_count": u32(a["layers"]),
        "gemma3.feed_forward_length": u32(a["ffn"]),
        "gemma3.attention.head_count": u32(a["heads"]),
        "gemma3.attention.head_count_kv": u32(a["kv"]),
        "gemma3.attention.key_length": u32(a["head"]),
        "gemma3.attention.value_length": u32(a["head"]),
        "gemma3.attention.sliding_window": u32(a["window"]),
        "gemma3.rope.freq_base": f32(1000000.0),
    }
    if a["scale"]:
        set_["gemma3.rope.scaling.type"] = s("linear")
        set_["gemma3.rope.scaling.factor"] = f32(a["scale"])
    if variant == "bf16":
        set_.pop("general.file_type")
    kept = [(k, vt, raw) for k, vt, raw in kvs if k not in set_
            and not (variant == "bf16" and k in ("general.quantization_version", "general.file_type"))]
    new_kvs = kept + [(k, vt, raw) for k, (vt, raw) in set_.items()]
    if variant == "bf16":
        new_kvs.append(("general.file_type", *u32(FILE_TYPE["bf16"])))

    e, f, h, q, kv = a["embd"], a["ffn"], a["head"], a["heads"], a["kv"]
    vocab = 262144
    tensors = []  # (name, [ne0, ne1...], type name)

    def add(name, shape, kind, layer=-1):
        if len(shape) == 1:
            t = "F32"
        elif variant == "bf16":
            t = "BF16"
        else:
            t = _q4_k_m(kind, layer, a["layers"], shape[0])
        tensors.append((name, shape, t))

    add("token_embd.weight", [e, vocab], "token_embd")
    for i in range(a["layers"]):
        b = f"blk.{i}."
        add(b + "attn_norm.weight", [e], "norm")
        add(b + "attn_q.weight", [e, q * h], "attn_q", i)
        add(b + "attn_k.weight", [e, kv * h], "attn_k", i)
        add(b + "attn_v.weight", [e, kv * h], "attn_v", i)
        add(b + "attn_q_norm.weight", [h], "norm")
        add(b + "attn_k_norm.weight", [h], "norm")
        add(b + "attn_output.weight", [q * h, e], "attn_output", i)
        add(b + "post_attention_norm.weight", [e], "norm")
        add(b + "ffn_norm.weight", [e], "norm")
        add(b + "ffn_gate.weight", [e, f], "ffn_gate", i)
        add(b + "ffn_up.weight", [e, f], "ffn_up", i)
        add(b + "ffn_down.weight", [f, e], "ffn_down", i)
        add(b + "post_ffw_norm.weight", [e], "norm")
    add("output_norm.weight", [e], "norm")

    def nbytes(shape, t):
        _, bsize, belems, _ = TYPES[TYPE_ID[t]]
        n = 1
        for d in shape:
            n *= d
        assert n % belems == 0, (shape, t)
        return n // belems * bsize

    hdr = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(new_kvs)))
    for k, vt, raw in new_kvs:
        hdr += struct.pack("<Q", len(k.encode())) + k.encode() + struct.pack("<I", vt) + raw
    table, off = [], 0
    for name, shape, t in tensors:
        hdr += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(shape))
        hdr += struct.pack(f"<{len(shape)}Q", *shape) + struct.pack("<IQ", TYPE_ID[t], off)
        n = nbytes(shape, t)
        table.append({"name": name, "type": TYPE_ID[t], "shape": shape, "offset": off, "bytes": n})
        off = (off + n + ALIGN - 1) // ALIGN * ALIGN
    hdr += bytes(-len(hdr) % ALIGN)
    data_offset = len(hdr)
    for t in table:
        t["offset"] += data_offset
    size_bytes = data_offset + off
    out.mkdir(parents=True, exist_ok=True)
    (out / "header.bin.xz").write_bytes(_lzma.compress(bytes(hdr), preset=6))
    (out / "tensors.json").write_text(json.dumps({"size": size_bytes, "data_offset": data_offset, "tensors": table}))
    hp = json.loads((desc / "hparams.json").read_text())
    hp.update({
        "context_length": a["ctx"], "embedding_length": e, "block_count": a["layers"],
        "feed_forward_length": f, "attention.head_count": q, "attention.head_count_kv": kv,
        "attention.key_length": h, "attention.value_length": h, "attention.sliding_window": a["window"],
        "rope.freq_base": 1000000.0, "rope.scaling.factor": a["scale"], "name": f"Gemma 3 {size} (random)",
        "file_type": FILE_TYPE[variant], "source": f"derived from {hp.get('source')}: {size} {variant}",
        "source_bytes": size_bytes,
        # Gemma 3 27B scales attention by 1/sqrt(embd/heads) = 1/sqrt(168), not 1/sqrt(head_dim).
        "query_pre_attn_scalar": e // q if size == "27b" else h,
    })
    (out / "hparams.json").write_text(json.dumps(hp, indent=1))
    print(f"{size} {variant}: {len(tensors)} tensors, {size_bytes / 2**30:.2f} GiB -> {out}")


def build(desc: Path, out: Path, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    table = json.loads((desc / "tensors.json").read_text())
    header = lzma.decompress((desc / "header.bin.xz").read_bytes())
    assert header[:4] == b"GGUF" and len(header) == table["data_offset"]

    def fill(name, n_blocks, bsize, scales):
        if name == "F32":
            # Only norms are F32 in these files; llama.cpp's Gemma converter stores 1 + w.
            return (1.0 + 0.01 * rng.standard_normal(n_blocks)).astype("<f4")
        if name == "F16":
            return (0.02 * rng.standard_normal(n_blocks)).astype("<f2")
        if name == "BF16":
            a = (0.02 * rng.standard_normal(n_blocks)).astype("<f4").view("<u4") >> 16
            return a.astype("<u2")
        a = np.frombuffer(rng.bytes(n_blocks * bsize), dtype=np.uint8).reshape(n_blocks, bsize).copy()
        for off, v in scales:
            # A positive scale, jittered ±25%, as f16: finite for every block.
            s = (abs(v) * (0.75 + 0.5 * rng.random(n_blocks))).astype("<f2")
            a[:, off:off + 2] = s.view(np.uint8).reshape(n_blocks, 2)
        return a

    # Tensors larger than POOL bytes repeat one random pool of their type from a random block
    # (speed does not depend on the values, and a 27B bf16 file is 54 GB to write on the GPU box).
    POOL = 64 << 20
    pools = {}
    with open(out, "wb") as f:
        f.write(header)
        for t in sorted(table["tensors"], key=lambda t: t["offset"]):
            name, bsize, belems, scales = TYPES[t["type"]]
            n_blocks, rem = divmod(t["bytes"], bsize)
            assert rem == 0, t
            f.seek(t["offset"])
            if t["bytes"] <= POOL:
                f.write(fill(name, n_blocks, bsize, scales).tobytes())
                continue
            if name not in pools:
                pools[name] = memoryview(fill(name, POOL // bsize, bsize, scales).tobytes())
            pool = pools[name]
            left = t["bytes"]
            start = int(rng.integers(0, len(pool) // bsize)) * bsize
            while left:
                chunk = pool[start:start + left]
                f.write(chunk)
                left -= len(chunk)
                start = 0
        f.truncate(table["size"])
    print(f"wrote {out} ({table['size']} bytes, {len(table['tensors'])} random tensors, seed {seed})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("describe")
    d.add_argument("gguf", type=Path)
    d.add_argument("out", type=Path)
    b = sub.add_parser("build")
    b.add_argument("desc", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--seed", type=int, default=0)
    v = sub.add_parser("derive")
    v.add_argument("desc", type=Path)
    v.add_argument("size", choices=sorted(SIZES))
    v.add_argument("variant", choices=sorted(FILE_TYPE))
    v.add_argument("out", type=Path)
    a = ap.parse_args()
    if a.cmd == "describe":
        describe(a.gguf, a.out)
    elif a.cmd == "derive":
        derive(a.desc, a.size, a.variant, a.out)
    else:
        build(a.desc, a.out, a.seed)


if __name__ == "__main__":
    main()
