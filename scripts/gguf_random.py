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


def build(desc: Path, out: Path, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    table = json.loads((desc / "tensors.json").read_text())
    header = lzma.decompress((desc / "header.bin.xz").read_bytes())
    assert header[:4] == b"GGUF" and len(header) == table["data_offset"]
    with open(out, "wb") as f:
        f.write(header)
        for t in sorted(table["tensors"], key=lambda t: t["offset"]):
            name, bsize, belems, scales = TYPES[t["type"]]
            n_blocks, rem = divmod(t["bytes"], bsize)
            assert rem == 0, t
            if name == "F32":
                # Only norms are F32 in these files; llama.cpp's Gemma converter stores 1 + w.
                a = (1.0 + 0.01 * rng.standard_normal(n_blocks)).astype("<f4")
            elif name in ("F16", "BF16"):
                a = (0.02 * rng.standard_normal(n_blocks)).astype("<f2")
                if name == "BF16":
                    a = (0.02 * rng.standard_normal(n_blocks)).astype("<f4").view("<u4") >> 16
                    a = a.astype("<u2")
            else:
                a = np.frombuffer(rng.bytes(t["bytes"]), dtype=np.uint8).reshape(n_blocks, bsize).copy()
                for off, v in scales:
                    # A positive scale, jittered ±25%, as f16: finite for every block.
                    s = (abs(v) * (0.75 + 0.5 * rng.random(n_blocks))).astype("<f2")
                    a[:, off:off + 2] = s.view(np.uint8).reshape(n_blocks, 2)
            f.seek(t["offset"])
            f.write(a.tobytes())
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
    a = ap.parse_args()
    if a.cmd == "describe":
        describe(a.gguf, a.out)
    else:
        build(a.desc, a.out, a.seed)


if __name__ == "__main__":
    main()
