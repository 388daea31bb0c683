#!/usr/bin/env python3
"""How fast logits rows come back from the GPU: pinned device-to-host copies of Gemma 3's rows
(262,144 f32 each), 8 and 32 rows at a time, from one stream and from 4 streams at once (the
copies lem-tui's host sampler waits for each step, one lane or four). Writes JSON to argv[1]."""
import json
import sys
import time

import torch

VOCAB = 262144
out = {"device": torch.cuda.get_device_name(0), "figures": []}


def measure(rows, streams, reps=50):
    srcs = [torch.randn(rows, VOCAB, device="cuda") for _ in range(streams)]
    dsts = [torch.empty(rows, VOCAB, pin_memory=True) for _ in range(streams)]
    ss = [torch.cuda.Stream() for _ in range(streams)]
    for _ in range(3):
        for s, a, b in zip(ss, srcs, dsts):
            with torch.cuda.stream(s):
                b.copy_(a, non_blocking=True)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        for s, a, b in zip(ss, srcs, dsts):
            with torch.cuda.stream(s):
                b.copy_(a, non_blocking=True)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / reps
    nbytes = rows * VOCAB * 4 * streams
    f = {"rows_per_copy": rows, "streams": streams, "bytes_per_round": nbytes,
         "ms_per_round": dt * 1e3, "gb_s": nbytes / dt / 1e9,
         "tokens_per_s_bound": rows * streams / dt}
    print(f, flush=True)
    out["figures"].append(f)


for rows, streams in [(1, 1), (8, 1), (32, 1), (8, 4), (32, 4)]:
    measure(rows, streams)
json.dump(out, open(sys.argv[1], "w"), indent=1)
