"""What a PCA-reduced working copy of the vectors costs in accuracy (issue 19, item 3).

The global embedding passes work on a PCA-reduced copy when the float32 vectors would
exceed `vector_mb` (1M x 1280-d -> 240-d). This compares, on a store's real embeddings,
the full vectors with reduced copies of several widths, through the same functions the
passes use:

- kNN recall@10: the share of each image's 10 exact nearest neighbours (full vectors)
  that the reduced copy's exact 10 nearest also holds;
- k-means agreement: adjusted Rand index of `kmeans_labels` on the reduced copy against
  the full vectors (same k, same seed), next to the full vectors' ARI across two seeds
  (how much k-means disagrees with itself);
- semantic duplicates: recall and precision of the pairs above cosine 0.90 (every pair,
  no clustering) against the full vectors';
- outliers: overlap of the top-50 by mean distance to the 10 nearest.

Usage::

    python bench/pca_accuracy.py STORE [--model M] [--dims 256,128,64]

Prints a markdown table (append it to bench/results/pca_accuracy.md with the machine and
command).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from sklearn.metrics import adjusted_rand_score

import lamina
from lamina.analysis.space import kmeans_labels, knn
from lamina.core.vectors import load_embeddings

K_NN = 10
TOP = 50
THRESHOLD = 0.90


def _pairs(v: np.ndarray) -> set[tuple[int, int]]:
    sims = v @ v.T
    a, b = np.nonzero(np.triu(sims > THRESHOLD, 1))
    return set(zip(a.tolist(), b.tolist(), strict=True))


def _top_outliers(sims: np.ndarray) -> set[int]:
    return set(np.argsort(-(1 - sims).mean(axis=1))[:TOP].tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("--model", default=None)
    ap.add_argument("--dims", default="256,128,64")
    args = ap.parse_args()
    store = lamina.open(args.store)
    full = load_embeddings(store, args.model)
    n, dim = full.vectors.shape
    k = max(2, round(math.sqrt(n / 2)))
    sims_f, idx_f = knn(full.vectors, K_NN, exact_max=n)
    pairs_f = _pairs(full.vectors)
    top_f = _top_outliers(sims_f)
    labels_f, _ = kmeans_labels(full.vectors, k, 0)
    labels_f1, _ = kmeans_labels(full.vectors, k, 1)
    print(f"model {full.model}, {n} vectors of {dim}-d, k-means k = {k}")
    print(f"full vectors, k-means seed 0 vs 1: ARI {adjusted_rand_score(labels_f, labels_f1):.3f}")
    print(f"pairs with cosine > {THRESHOLD} among full vectors: {len(pairs_f)}\n")
    print(
        "| dims | load s | kNN recall@10 | k-means ARI vs full | dup-pair recall | "
        "dup-pair precision | top-50 outlier overlap |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for d in [int(x) for x in args.dims.split(",")]:
        t = time.process_time()
        red = load_embeddings(store, full.model, dims=d)
        load_s = time.process_time() - t
        assert red.dim == d and list(red.ids) == list(full.ids), (red.dim, d)
        sims_r, idx_r = knn(red.vectors, K_NN, exact_max=n)
        recall = np.mean([len(set(a) & set(b)) / K_NN for a, b in zip(idx_f, idx_r, strict=True)])
        labels_r, _ = kmeans_labels(red.vectors, k, 0)
        pairs_r = _pairs(red.vectors)
        hit = len(pairs_f & pairs_r)
        prec = hit / len(pairs_r) if pairs_r else float("nan")
        rec = hit / len(pairs_f) if pairs_f else float("nan")
        overlap = len(top_f & _top_outliers(sims_r)) / TOP
        print(
            f"| {d} | {load_s:.1f} | {recall:.3f} | {adjusted_rand_score(labels_f, labels_r):.3f} "
            f"| {rec:.3f} | {prec:.3f} | {overlap:.2f} |"
        )


if __name__ == "__main__":
    main()
