"""gpu-siamese search beside FAISS in the same run: a checkpoint's embeddings of the Fashion-MNIST test
images (queries) and training images (gallery), searched for their k nearest by `gpu-siamese search`
(exact, on the GPU adapter) and by faiss-cpu's IndexFlatL2 (exact, BLAS on the CPU). Prints both times,
how often the two agree, and precision@1; then the test set against itself with each query left out
(whose precision@1 `evaluate` reports as retrieval), and a gallery of a million embeddings made by
repeating the training ones with a little noise, searched by a sample of queries.

    bench/.venv/bin/python bench/search_faiss.py --checkpoint RUN/best.safetensors [--k 10]
        [--data /usr/share/datasets/fashion-mnist] [--million-queries 1000] [--out bench/results/search]

gpu-siamese is the release build (cargo build --release first); faiss-cpu is in bench/.venv
(bench/compare.sh installs it).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(command):
    print("$ " + " ".join(command), file=sys.stderr)
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout


def search(binary, checkpoint, queries, gallery, k, out, extra=()):
    """gpu-siamese search's neighbours and summary (its own time on the GPU, without embedding)."""
    result = os.path.join(out, "search.json")
    run([binary, "search", queries, "--gallery", gallery, "--checkpoint", checkpoint, "--k", str(k), "--json", result, "--show", "0", *extra])
    with open(result) as f:
        found = json.load(f)
    return found["summary"], found["results"]


def rows_of(results, index):
    """Each query's neighbours as gallery row numbers (from their sources)."""
    return [[index[m["gallery"]] for m in r["matches"]] for r in results]


def write_embeddings(path, vectors, sources, labels):
    np.save(path, vectors.astype("float32"))
    with open(path[:-4] + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "source", "label"])
        for i, (s, l) in enumerate(zip(sources, labels)):
            w.writerow([i, s, l])


def read_index(path):
    with open(path[:-4] + ".csv") as f:
        rows = list(csv.reader(f))[1:]
    return [r[1] for r in rows], [r[2] for r in rows]


def faiss_search(gallery, queries, k):
    import faiss

    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    start = time.perf_counter()
    distances, rows = index.search(queries, k)
    return time.perf_counter() - start, rows, distances


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpu-siamese"))
    parser.add_argument("--million-queries", type=int, default=1000)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "search"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import faiss

    faiss_threads = faiss.omp_get_max_threads()
    train, test = os.path.join(args.out, "train.npy"), os.path.join(args.out, "test.npy")
    for split, path in [("train", train), ("t10k", test)]:
        if not os.path.exists(path):
            run([args.binary, "embed", "--checkpoint", args.checkpoint, "--images", args.data, "--split", split, "--out", path])
    gallery, queries = np.load(train), np.load(test)
    g_sources, g_labels = read_index(train)
    q_sources, q_labels = read_index(test)
    g_index = {s: i for i, s in enumerate(g_sources)}
    k = args.k

    print(f"{len(queries)} queries, {len(gallery)} gallery embeddings of {gallery.shape[1]} values, k = {k}")
    summary, results = search(args.binary, args.checkpoint, test, train, k, args.out)
    ours = rows_of(results, g_index)
    f_seconds, f_rows, _ = faiss_search(gallery, queries, k)
    same_lists = sum(list(a) == list(b) for a, b in zip(ours, f_rows)) / len(ours)
    same_first = sum(a[0] == b[0] for a, b in zip(ours, f_rows)) / len(ours)
    p1_faiss = sum(g_labels[r[0]] == l for r, l in zip(f_rows, q_labels)) / len(q_labels)
    print(f"gpu-siamese search: {summary['seconds']:.3f} s   faiss IndexFlatL2 ({faiss_threads} threads): {f_seconds:.3f} s   ratio {summary['seconds'] / f_seconds:.2f}x")
    print(f"identical neighbour lists: {same_lists:.4f}, identical nearest: {same_first:.4f}")
    print(f"precision@1: gpu-siamese {summary['precision_at_1']:.4f}, faiss {p1_faiss:.4f}")

    # The test set against itself, each query left out: evaluate's retrieval precision@1.
    self_summary, _ = search(args.binary, args.checkpoint, test, test, 1, args.out, ["--skip-self"])
    print(f"test against itself, each query left out: precision@1 {self_summary['precision_at_1']:.4f} ({self_summary['seconds']:.3f} s)")

    # A million gallery embeddings: the training ones repeated, each copy jittered a little.
    rng = np.random.default_rng(0)
    copies = -(-1_000_000 // len(gallery))
    million = np.concatenate([gallery + rng.normal(0, 0.01, gallery.shape).astype("float32") for _ in range(copies)])[:1_000_000]
    sources = [f"{s}~{c}" for c in range(copies) for s in g_sources][:1_000_000]
    labels = (g_labels * copies)[:1_000_000]
    big = os.path.join(args.out, "million.npy")
    write_embeddings(big, million, sources, labels)
    sample = os.path.join(args.out, "sample.npy")
    write_embeddings(sample, queries[: args.million_queries], q_sources[: args.million_queries], q_labels[: args.million_queries])
    big_summary, _ = search(args.binary, args.checkpoint, sample, big, k, args.out)
    f_big, _, _ = faiss_search(million, queries[: args.million_queries], k)
    n = big_summary["queries"]
    print(
        f"1,000,000 gallery embeddings ({million.nbytes / 2**20:.0f} MiB), {n} queries: gpu-siamese {big_summary['seconds']:.2f} s "
        f"({1e3 * big_summary['seconds'] / n:.2f} ms a query), faiss {f_big:.2f} s ({1e3 * f_big / n:.2f} ms a query)"
    )


if __name__ == "__main__":
    main()
