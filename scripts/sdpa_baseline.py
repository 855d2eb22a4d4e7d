#!/usr/bin/env python3
"""torch SDPA fp16 decode attention: the baseline of `lowbit bench attention --device cuda`.

One decode step (1 query token) of grouped-query attention, Llama-3-8B shape
(32 query heads, 8 KV heads, head dim 128), for each batch and context:
F.scaled_dot_product_attention(q, k, v, enable_gqa=True) in fp16, timed with
CUDA events (10 warm-up calls, then the median of --launches calls), rotating
over enough K/V copies to exceed the L2 cache. Writes JSON rows
{batch, ctx, micros, gbps} (bytes read: K, V and q).

  python3 scripts/sdpa_baseline.py --json sdpa.json
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--ctx", default="4096,32768,131072")
    ap.add_argument("--launches", type=int, default=60)
    ap.add_argument("--json")
    a = ap.parse_args()
    dev = torch.device("cuda")
    H, KVH, D = 32, 8, 128
    rows = []
    for b in [int(x) for x in a.batch.split(",")]:
        for t in [int(x) for x in a.ctx.split(",")]:
            kv_bytes = 2 * b * KVH * t * D * 2
            copies = max(1, min(16, (512 << 20) // kv_bytes + 1))
            g = torch.Generator(device=dev).manual_seed(0)
            q = torch.randn(b, H, 1, D, device=dev, dtype=torch.float16, generator=g)
            ks = [torch.randn(b, KVH, t, D, device=dev, dtype=torch.float16, generator=g) for _ in range(copies)]
            vs = [torch.randn(b, KVH, t, D, device=dev, dtype=torch.float16, generator=g) for _ in range(copies)]
            for i in range(10):
                F.scaled_dot_product_attention(q, ks[i % copies], vs[i % copies], enable_gqa=True)
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(a.launches)]
            for i, (e0, e1) in enumerate(ev):
                e0.record()
                F.scaled_dot_product_attention(q, ks[i % copies], vs[i % copies], enable_gqa=True)
                e1.record()
            torch.cuda.synchronize()
            us = statistics.median(e0.elapsed_time(e1) * 1e3 for e0, e1 in ev)
            nbytes = kv_bytes + q.numel() * 2
            rows.append({"batch": b, "ctx": t, "micros": us, "gbps": nbytes / us / 1e3})
            print(f"sdpa fp16 batch {b} ctx {t}: {us:.1f} µs, {nbytes / us / 1e3:.0f} GB/s")
            del ks, vs
            torch.cuda.empty_cache()
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
