#!/usr/bin/env python3
"""lowbit-index against FAISS on the same vectors, in the same run.

Runs `lowbit index bench --json` and the FAISS indexes below on the same
base/query/ground-truth files and prints one table (markdown) plus JSON.
Recall R@n = share of each query's true n nearest found among its first n
results (the same definition on both sides); queries/s = median of timed
passes over all queries (k = 10) on 1 and 2 threads.

Needs: pip install faiss-cpu numpy; a release build of lowbit
(cargo build --release).

Example:
  python3 scripts/faiss_compare.py --set sift
  python3 scripts/faiss_compare.py --set minilm --json docs/faiss_minilm.json
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

try:
    import faiss
except ImportError:
    sys.exit("faiss is not installed: pip install faiss-cpu")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("LOWBIT_DATA", os.path.join(ROOT, "..", "shared", "data"))
SETS = {
    "sift": ("vectors/siftsmall/siftsmall_base.fvecs", "vectors/siftsmall/siftsmall_query.fvecs",
             "vectors/siftsmall/siftsmall_groundtruth.ivecs", "l2"),
    "minilm": ("vectors/minilm_wikitext2/minilm_wikitext2_base.fvecs",
               "vectors/minilm_wikitext2/minilm_wikitext2_query.fvecs",
               "vectors/minilm_wikitext2/minilm_wikitext2_groundtruth_ip.ivecs", "ip"),
}


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:].copy().view(dtype)


def recall(ids, gt, n):
    return float(np.mean([len(set(ids[i, :n]) & set(gt[i, :n])) / n for i in range(len(gt))]))


def qps(index, xq, threads, repeats):
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    index.search(xq, 10)
    inner = max(1, int(0.2 / max(time.perf_counter() - t, 1e-6)))
    secs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            index.search(xq, 10)
        secs.append((time.perf_counter() - t) / inner)
    return len(xq) / statistics.median(secs)


def faiss_rows(xb, xq, gt, metric, nlist, nprobes, threads, repeats):
    d = xb.shape[1]
    mt = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    flat = lambda: faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    cands = [
        ("Flat", lambda: flat(), None),
        ("SQ4 (IndexScalarQuantizer 4-bit)", lambda: faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_4bit, mt), None),
        ("SQ8", lambda: faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, mt), None),
        (f"PQ{d // 2}x8 (IndexPQ, 4 bits/dim)", lambda: faiss.IndexPQ(d, d // 2, 8, mt), None),
        (f"PQ{d // 4}x8 (IndexPQ, 2 bits/dim)", lambda: faiss.IndexPQ(d, d // 4, 8, mt), None),
        (f"IVF{nlist},Flat", lambda: faiss.IndexIVFFlat(flat(), d, nlist, mt), "ivf"),
        (f"IVF{nlist},SQ4", lambda: faiss.IndexIVFScalarQuantizer(flat(), d, nlist, faiss.ScalarQuantizer.QT_4bit, mt), "ivf"),
        (f"IVF{nlist},PQ{d // 2}x8", lambda: faiss.IndexIVFPQ(flat(), d, nlist, d // 2, 8, mt), "ivf"),
    ]
    rows = []
    faiss.omp_set_num_threads(2)
    for name, make, kind in cands:
        t = time.perf_counter()
        index = make()
        index.train(xb)
        index.add(xb)
        build = time.perf_counter() - t
        code = index.code_size if hasattr(index, "code_size") else 4 * d
        if isinstance(index, faiss.IndexFlat):
            code = 4 * d
        for np_ in (sorted({min(p, nlist) for p in nprobes}) if kind == "ivf" else [1]):
            if kind == "ivf":
                index.nprobe = np_
            faiss.omp_set_num_threads(2)
            _, i100 = index.search(xq, 100)
            _, i10 = index.search(xq, 10)
            rows.append({
                "engine": "faiss " + faiss.__version__, "spec": name, "nprobe": np_, "bytes_per_vector": int(code),
                "build_secs": build, "recall_at_1": recall(i10, gt, 1), "recall_at_10": recall(i10, gt, 10),
                "recall_at_100": recall(i100, gt, 100),
                "qps": [[t_, qps(index, xq, t_, repeats)] for t_ in threads],
            })
            print(f"  {name} nprobe {np_}: R@10 {rows[-1]['recall_at_10']:.4f}", file=sys.stderr)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=SETS, default="sift")
    ap.add_argument("--nlist", type=int, default=64)
    ap.add_argument("--nprobe", default="1,2,4,8,16,32,64,256")
    ap.add_argument("--specs", default=None, help="lowbit specs, ';'-separated")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lowbit", default=os.path.join(ROOT, "target", "release", "lowbit"))
    ap.add_argument("--json", help="also write all rows here")
    a = ap.parse_args()
    base, query, gtf, metric = (os.path.join(DATA, p) if i < 3 else p for i, p in enumerate(SETS[a.set]))
    xb, xq = read_vecs(base, np.float32), read_vecs(query, np.float32)
    gt = read_vecs(gtf, np.int32)
    nprobes = [int(x) for x in a.nprobe.split(",")]
    n = a.nlist
    specs = a.specs or (f"flat;flat,turbo4;flat,pca4;flat,turbo2;flat,pca2;ivf{n};ivf{n},turbo4;ivf{n},pca4;ivf{n},turbo2;ivf{4 * n},turbo2;"
                        f"ivf{n},turbo4,rerank=4;ivf{n},turbo2,rerank=8")
    cmd = [a.lowbit, "index", "bench", "--base", base, "--query", query, "--gt", gtf, "--metric", metric,
           "--specs", specs, "--nprobe", a.nprobe, "--threads", "1,2", "--repeats", str(a.repeats), "--json"]
    print("running:", " ".join(cmd), file=sys.stderr)
    ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["rows"]
    for r in ours:
        r["engine"] = "lowbit"
    theirs = faiss_rows(xb, xq, gt, metric, n, nprobes, [1, 2], a.repeats)
    rows = ours + theirs
    print(f"\n{a.set}: {len(xb)} base × {xb.shape[1]}, {len(xq)} queries, metric {metric}, "
          f"faiss {faiss.__version__}, k = 10 for queries/s\n")
    print("| engine | index | nprobe | bytes/vector | R@1 | R@10 | R@100 | q/s 1 thread | q/s 2 threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        q = {t: v for t, v in r["qps"]}
        print(f"| {r['engine'].split()[0]} | {r['spec']} | {r['nprobe']} | {r['bytes_per_vector']} | {r['recall_at_1']:.3f} | "
              f"{r['recall_at_10']:.3f} | {r['recall_at_100']:.3f} | {q.get(1, 0):.0f} | {q.get(2, 0):.0f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"set": a.set, "metric": metric, "faiss": faiss.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
