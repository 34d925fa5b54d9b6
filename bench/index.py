"""Vector index benchmark: exact search, FAISS (Flat, HNSW, IVF) and usearch side by side.

On N x D synthetic vectors drawn from a clustered Gaussian mixture (L2-normalised and
rounded through float16, as the embed layer stores them; uniform random vectors in high
dimensions have no neighbourhood structure and make every ANN index look bad), every
candidate is built and queried in its own subprocess so that its peak RSS
(``ru_maxrss``) is its own:

* **build**: load the vectors (float32 in RAM, as ``load_embeddings`` hands them over),
  build, save to disk. Cut at ``--build-timeout`` (600 s, the target) and recorded as cut.
* **serve**: load the saved index (what every ``lamina similar`` call does), sweep the
  search knob (``nprobe`` / ``efSearch`` / ``expansion_search``) with all queries in one
  batch, recall@10 against exact search; at the first knob value reaching the target
  recall, time single queries one at a time (median, p95) and the batch per query.

Then lamina's own path at N: a store with one embed layer of N vectors, ``build_index`` in
a fresh process (time, peak RSS) and ``similar`` in another (first call, cold process),
and (``--crossover``) exact search against lamina's IVF at N = 10k .. 300k. ``--real`` runs
the candidates on real embeddings instead: the sample photos embedded by ``lamina embed``
(EfficientNet-Lite0), written to bench/results/index-real.md.

Usage::

    .venv/bin/python bench/index.py --crossover   # 1M x 512; writes bench/results/index-1m.md
    .venv/bin/python bench/index.py --n 100000 --out bench/work/index/100k.md   # a quick look
    .venv/bin/python bench/index.py --only faiss-ivf-flat,usearch-f16           # some candidates
    .venv/bin/python bench/index.py --crossover           # also exact vs IVF for N = 10k..300k
    .venv/bin/python bench/index.py --real                # real embeddings of the sample photos

Data and indexes go to bench/work/index/ (git-ignored); the synthetic data is reused when
its marker matches (N, D, seed, generator version).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "index"
RESULTS = ROOT / "bench" / "results" / "index.md"
MARKER = "@@RESULT@@ "
GEN_VERSION = 1
K = 10
N_QUERIES = 1000
TARGET_RECALL = 0.95
TARGET_BUILD_S = 600.0
TARGET_RSS_GB = 4.0
GB = 1e9

# name -> (library, description, knob, sweep values). Knob values are tried in order until
# recall@10 reaches the target (plus one more, to show the slope).
CANDIDATES: dict[str, tuple[str, str, str, list[int]]] = {
    "numpy-exact": ("numpy", "float32 matrix, one matmul per query batch", "-", [0]),
    "faiss-flat": ("faiss", "IndexFlatIP (exact, BLAS)", "-", [0]),
    "faiss-hnsw32": (
        "faiss",
        "IndexHNSWFlat M=32, efConstruction=40",
        "efSearch",
        [16, 32, 64, 128, 256, 512],
    ),
    "faiss-ivf-flat": (
        "faiss",
        "IVF{nlist},Flat (k-means on 64 x nlist points)",
        "nprobe",
        [1, 2, 4, 8, 16, 32, 64, 128],
    ),
    "faiss-ivf-fp16": (
        "faiss",
        "IVF{nlist},SQfp16 (float16, the embed layer's own precision)",
        "nprobe",
        [1, 2, 4, 8, 16, 32, 64, 128],
    ),
    "faiss-ivf-sq8": (
        "faiss",
        "IVF{nlist},SQ8 (8-bit scalar quantizer)",
        "nprobe",
        [1, 2, 4, 8, 16, 32, 64, 128],
    ),
    "usearch-f16": (
        "usearch",
        "HNSW, f16, connectivity=16, expansion_add=128",
        "expansion_search",
        [16, 32, 64, 128, 256, 512],
    ),
    "usearch-i8": (
        "usearch",
        "HNSW, i8 (cos), connectivity=16, expansion_add=128",
        "expansion_search",
        [16, 32, 64, 128, 256, 512],
    ),
}


def _nlist(n: int) -> int:
    """IVF lists: about sqrt(N), a power of two (1024 at 1M)."""
    return max(16, 2 ** round(math.log2(math.sqrt(n))))


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def _threads() -> int:
    return len(os.sched_getaffinity(0))


# -- data --------------------------------------------------------------------------------------


def generate(n: int, dim: int, seed: int, folder: Path) -> None:
    """Clustered unit vectors: a Gaussian mixture with Zipf-sized components of varied
    spread around a shared offset (real embeddings are anisotropic and clumpy), rounded
    through float16 like the embed layer; 1,000 held-out queries from the same mixture;
    exact top-10 ground truth."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_comp = max(10, n // 500)
    centers = rng.standard_normal((n_comp, dim)).astype(np.float32)
    centers += 0.8 * rng.standard_normal(dim).astype(np.float32)  # the shared offset
    spread = rng.uniform(0.6, 1.4, n_comp).astype(np.float32)
    weights = 1.0 / np.arange(1, n_comp + 1) ** 0.7
    weights /= weights.sum()

    def draw(m: int) -> np.ndarray:
        comp = rng.choice(n_comp, size=m, p=weights)
        x = centers[comp] + spread[comp, None] * rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x = x.astype(np.float16).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    base = np.lib.format.open_memmap(folder / "base.npy", "w+", np.float32, (n, dim))
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        base[start:stop] = draw(stop - start)
    base.flush()
    queries = draw(N_QUERIES)
    np.save(folder / "queries.npy", queries)
    np.save(folder / "gt.npy", exact_topk(np.asarray(base), queries, K))


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k by inner product, blockwise so memory stays small."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(base), 100_000):
        block = np.ascontiguousarray(base[start : start + 100_000])
        s = queries @ block.T
        s_all = np.concatenate([best_s, s], axis=1)
        i_all = np.concatenate(
            [best_i, np.arange(start, start + len(block))[None].repeat(len(queries), 0)], axis=1
        )
        top = np.argpartition(-s_all, k, axis=1)[:, :k]
        best_s = np.take_along_axis(s_all, top, 1)
        best_i = np.take_along_axis(i_all, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(
        len(set(f[:K].tolist()) & set(t[:K].tolist())) for f, t in zip(found, truth, strict=True)
    )
    return hits / (len(truth) * K)


# -- candidates (run in the child) ---------------------------------------------------------------


class Cut(Exception):
    """A graph build whose insertion rate says it cannot finish within the budget."""


def _add_in_chunks(add: Any, x: np.ndarray, budget: float) -> None:
    """Add in chunks of 50k; stop early when the rate so far projects past the budget (a
    graph index only slows as it grows, so the projection is a lower bound)."""
    t0 = time.perf_counter()
    for start in range(0, len(x), 50_000):
        add(start, x[start : start + 50_000])
        done = min(len(x), start + 50_000)
        elapsed = time.perf_counter() - t0
        projected = elapsed / done * len(x)
        if done < len(x) and projected > budget:
            raise Cut(
                f"cut after {elapsed:.0f} s at {done:,} vectors: projected >= {projected:.0f} s"
            )


def build(name: str, x: np.ndarray, path: Path, budget: float) -> None:
    n, dim = x.shape
    if name == "numpy-exact":
        with open(path, "wb") as fh:
            np.save(fh, x)
        return
    if name.startswith("faiss"):
        import faiss

        if name == "faiss-flat":
            index = faiss.IndexFlatIP(dim)
        elif name == "faiss-hnsw32":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            _add_in_chunks(lambda _s, c: index.add(c), x, budget)
            faiss.write_index(index, str(path))
            return
        else:
            kind = {"faiss-ivf-flat": "Flat", "faiss-ivf-fp16": "SQfp16"}.get(name, "SQ8")
            nlist = _nlist(n)
            index = faiss.index_factory(dim, f"IVF{nlist},{kind}", faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
            index.train(x[np.sort(sample)])
        index.add(x)
        faiss.write_index(index, str(path))
        return
    from usearch.index import Index

    dtype, metric = ("f16", "ip") if name == "usearch-f16" else ("i8", "cos")
    index = Index(ndim=dim, metric=metric, dtype=dtype, connectivity=16, expansion_add=128)
    _add_in_chunks(
        lambda s, c: index.add(
            np.arange(s, s + len(c), dtype=np.uint64), c, threads=_threads(), log=False
        ),
        x,
        budget,
    )
    index.save(str(path))


def load(name: str, path: Path) -> Any:
    if name == "numpy-exact":
        with open(path, "rb") as fh:
            return np.load(fh)
    if name.startswith("faiss"):
        import faiss

        return faiss.read_index(str(path))
    from usearch.index import Index

    return Index.restore(str(path))


def set_knob(name: str, index: Any, value: int) -> None:
    if name == "faiss-hnsw32":
        index.hnsw.efSearch = value
    elif name.startswith("faiss-ivf"):
        index.nprobe = value
    elif name.startswith("usearch"):
        index.expansion_search = value


def search(name: str, index: Any, q: np.ndarray, k: int) -> np.ndarray:
    if name == "numpy-exact":
        out = []
        for start in range(0, len(q), 32):  # 32 x 1M scores at a time: memory stays small
            s = q[start : start + 32] @ index.T
            top = np.argpartition(-s, k, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(s, top, 1), axis=1)
            out.append(np.take_along_axis(top, order, 1))
        return np.concatenate(out)
    if name.startswith("faiss"):
        return index.search(q, k)[1]
    m = index.search(q, k, threads=_threads())
    return np.asarray(m.keys).reshape(len(q), k).astype(np.int64)


def child_build(name: str, data: Path, path: Path, budget: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    x = np.load(data / "base.npy")  # in RAM, like the Embeddings load_embeddings returns
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        build(name, x, path, budget)
    except Cut as cut:
        return {"error": str(cut), "peak_rss_gb": _peak_rss_gb()}
    t_build = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {
        "load_s": t_load,
        "build_s": t_build,
        "peak_rss_gb": _peak_rss_gb(),
        "disk_gb": size / GB,
    }


def child_serve(name: str, data: Path, path: Path) -> dict[str, Any]:
    queries = np.load(data / "queries.npy")
    truth = np.load(data / "gt.npy")
    base_rss = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    index = load(name, path)
    load_s = time.perf_counter() - t0
    loaded_rss = psutil.Process().memory_info().rss - base_rss
    sweep = []
    chosen: dict[str, Any] | None = None
    for value in CANDIDATES[name][3]:
        set_knob(name, index, value)
        t0 = time.perf_counter()
        found = search(name, index, queries, K)
        batch_s = time.perf_counter() - t0
        rec = recall_at_k(found, truth)
        sweep.append(
            {"knob": value, "recall": rec, "batch_ms_per_query": batch_s * 1e3 / len(queries)}
        )
        if chosen is not None:
            break  # one past the target, to show the slope
        if rec >= TARGET_RECALL:
            chosen = sweep[-1]
    if chosen is None:
        chosen = sweep[-1]
    set_knob(name, index, chosen["knob"])
    single = []
    started = time.perf_counter()
    for i in range(min(200, len(queries))):  # one query at a time, as `lamina similar` asks
        t0 = time.perf_counter()
        search(name, index, queries[i : i + 1], K)
        single.append(time.perf_counter() - t0)
        if time.perf_counter() - started > 20 and i >= 20:
            break
    single.sort()
    return {
        "load_s": load_s,
        "loaded_rss_gb": loaded_rss / GB,
        "sweep": sweep,
        "knob": chosen["knob"],
        "recall": chosen["recall"],
        "batch_ms_per_query": chosen["batch_ms_per_query"],
        "single_ms_median": statistics.median(single) * 1e3,
        "single_ms_p95": single[int(0.95 * (len(single) - 1))] * 1e3,
        "single_n": len(single),
        "peak_rss_gb": _peak_rss_gb(),
    }


# -- lamina's own path (children) -----------------------------------------------------------------


def child_lamina_store(data: Path, store_path: Path) -> dict[str, Any]:
    """Write the base vectors as one embed layer (float16, as the embed pass does)."""
    import pyarrow as pa

    from lamina.core.store import Store, atomic_write_parquet
    from lamina.core.vectors import EMBED_PASS, embed_schema, vectors_to_arrow

    base = np.load(data / "base.npy", mmap_mode="r")
    store = Store.open(store_path, create=True)
    dim = base.shape[1]
    for part, start in enumerate(range(0, len(base), 100_000)):
        x = np.asarray(base[start : start + 100_000])
        ids = [f"{i:032x}" for i in range(start, start + len(x))]
        table = pa.table(
            {
                "image_id": ids,
                "model": ["synthetic:gmm"] * len(x),
                "vector": vectors_to_arrow(x),
                "error": pa.nulls(len(x), pa.string()),
            },
            schema=embed_schema(dim),
        )
        folder = store.layer_dir(EMBED_PASS, "1-bench")
        atomic_write_parquet(folder / f"part-{part:05d}.parquet", table)
    return {"peak_rss_gb": _peak_rss_gb()}


def child_lamina_build(store_path: Path) -> dict[str, Any]:
    from lamina.core.store import Store
    from lamina.index import build_index

    t0 = time.perf_counter()
    info = build_index(Store.open(store_path))
    return {"build_s": time.perf_counter() - t0, "peak_rss_gb": _peak_rss_gb(), "info": info}


def child_lamina_query(store_path: Path, data: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    from lamina.core.store import Store
    from lamina.index import open_index, similar

    store = Store.open(store_path)
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = similar(store, f"{12345:032x}", k=K)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(20):
        similar(store, f"{(i * 7919) % len(open_index(store)):032x}", k=K)
    t_next = (time.perf_counter() - t0) / 20
    # Recall of the index lamina built, on the held-out queries (row i is image id i).
    index = open_index(store)
    queries, truth = np.load(data / "queries.npy"), np.load(data / "gt.npy")
    t0 = time.perf_counter()
    rows = index.search(queries, K)[1]
    batch_ms = (time.perf_counter() - t0) * 1e3 / len(queries)
    single = []
    for i in range(200):
        t0 = time.perf_counter()
        index.search(queries[i], K)
        single.append(time.perf_counter() - t0)
    return {
        "import_s": t_import,
        "first_similar_s": t_first,
        "next_similar_s": t_next,
        "first_hit_is_query": first[0].image_id == f"{12345:032x}",
        "kind": index.kind,
        "params": index.meta["params"],
        "recall_at_10": recall_at_k(rows, truth),
        "batch_ms_per_query": batch_ms,
        "single_ms_median": statistics.median(single) * 1e3,
        "peak_rss_gb": _peak_rss_gb(),
    }


def child_crossover(n: int, data: Path) -> dict[str, Any]:
    """At N (the first N base vectors): exact single-query latency, and lamina's IVF build
    time, calibrated nprobe, single-query latency and recall on held-out queries."""
    import tempfile

    import faiss

    from lamina.index.vectors import _write_ivf

    x = np.array(np.load(data / "base.npy", mmap_mode="r")[:n])
    q = np.load(data / "queries.npy")[:200]
    truth = exact_topk(x, q, K)
    exact = []
    for i in range(50):
        t0 = time.perf_counter()
        s = x @ q[i]
        np.argpartition(-s, K)[:K]
        exact.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        params = _write_ivf(Path(tmp), x)
        build_s = time.perf_counter() - t0
        index = faiss.read_index(str(Path(tmp) / "index.faiss"))
    index.nprobe = params["nprobe"]
    ivf = []
    for i in range(200):
        t0 = time.perf_counter()
        index.search(q[i : i + 1], K)
        ivf.append(time.perf_counter() - t0)
    return {
        "n": n,
        "exact_single_ms": statistics.median(exact) * 1e3,
        "ivf_build_s": build_s,
        "ivf_nlist": params["nlist"],
        "ivf_nprobe": params["nprobe"],
        "ivf_single_ms": statistics.median(ivf) * 1e3,
        "ivf_recall": recall_at_k(index.search(q, K)[1], truth),
    }


# -- the parent ----------------------------------------------------------------------------------


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"cut at {timeout:.0f} s", "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            out = json.loads(line[len(MARKER) :])
            out["wall_s"] = wall
            return out
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": " / ".join(tail) or f"exit {proc.returncode}", "wall_s": wall}


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    import faiss
    import usearch

    return {
        "nproc": str(_threads()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "usearch": usearch.__version__,
        "commit": commit,
    }


def ensure_data(n: int, dim: int, seed: int) -> Path:
    folder = WORK / f"data-{n}x{dim}-s{seed}"
    marker = folder / "marker.json"
    want = {"n": n, "dim": dim, "seed": seed, "version": GEN_VERSION}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    print(f"generating {n:,} x {dim} clustered vectors and exact ground truth ...", flush=True)
    t0 = time.perf_counter()
    out = run_child(["gen", str(n), str(dim), str(seed), str(folder)], timeout=3600)
    if "error" in out:
        raise SystemExit(f"data generation failed: {out['error']}")
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    marker.write_text(json.dumps(want))
    return folder


def ensure_real_data() -> tuple[Path, dict[str, Any]]:
    """Real embeddings: the sample collection (`python -m lamina.sample`) scanned and
    embedded with the default offline model (EfficientNet-Lite0, 1280-d) through the CLI;
    every 10th image held out as a query, exact ground truth over the rest."""
    folder = WORK / "real"
    collection, store = folder / "collection", folder / "store"
    lamina = [str(ROOT / ".venv" / "bin" / "lamina"), "--store", str(store), "-q"]
    timings: dict[str, Any] = {}
    if not collection.is_dir():
        subprocess.run([sys.executable, "-m", "lamina.sample", str(collection)], check=True)
    for verb in (["scan", str(collection)], ["embed"]):
        t0 = time.perf_counter()
        subprocess.run([*lamina, *verb], check=True, capture_output=True)
        timings[f"lamina {verb[0]} s"] = round(time.perf_counter() - t0, 1)
    out = run_child(["real-export", str(store), str(folder / "data")], 600)
    if "error" in out:
        raise SystemExit(f"exporting the real embeddings failed: {out['error']}")
    return folder / "data", {**timings, **out}


def child_real_export(store_path: Path, data: Path) -> dict[str, Any]:
    from lamina.core.store import Store
    from lamina.core.vectors import load_embeddings

    emb = load_embeddings(Store.open(store_path))
    held = np.zeros(len(emb), bool)
    held[::10] = True
    data.mkdir(parents=True, exist_ok=True)
    base, queries = emb.vectors[~held], emb.vectors[held]
    np.save(data / "base.npy", base)
    np.save(data / "queries.npy", queries)
    np.save(data / "gt.npy", exact_topk(base, queries, K))
    return {"model": emb.model, "vectors": len(emb), "dim": emb.dim, "queries": int(held.sum())}


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    lamina: dict[str, Any] | None,
    crossover: list[dict[str, Any]],
    info: dict[str, Any],
) -> str:
    m = info["machine"]
    lines = [
        f"# Vector index benchmark ({args.n:,} x {args.dim})",
        "",
        f"Date {date.today().isoformat()}; {m['nproc']} cores ({m['cpu']}), {m['ram']} RAM, "
        f"{m['os']}, Python {m['python']}, numpy {m['numpy']}, faiss-cpu {m['faiss']}, "
        f"usearch {m['usearch']}; lamina {m['commit']}; load average before/after "
        f"{info['load'][0]:.2f}/{info['load'][1]:.2f}.",
        "",
        f"Command: `{info['command']}`",
        "",
        (
            f"Data: real embeddings of the sample collection (`python -m lamina.sample`): "
            f"`lamina scan` ({info['real']['lamina scan s']} s) and `lamina embed` "
            f"({info['real']['lamina embed s']} s), model {info['real']['model']}, "
            f"{info['real']['vectors']} vectors; every 10th image held out as a query, "
            f"{args.n:,} x {args.dim} indexed, exact top-{K} ground truth."
            if "real" in info
            else f"Data: {args.n:,} x {args.dim} float32 unit vectors from a Gaussian mixture "
            f"of {max(10, args.n // 500):,} Zipf-sized components (float16-rounded), "
            f"{N_QUERIES} held-out queries from the same mixture, exact top-{K} ground truth."
        ),
        f"Targets: build < {TARGET_BUILD_S:.0f} s, recall@{K} >= {TARGET_RECALL}, "
        f"peak RSS < {TARGET_RSS_GB:.0f} GB (decimal), each candidate in its own process.",
        "",
        "| candidate | build s | build peak RSS GB | on disk GB | load s | knob | recall@10 "
        "| single ms (median / p95) | batch ms/query | serve peak RSS GB | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    exact = results.get("faiss-flat", {}).get("serve") or results.get("numpy-exact", {}).get(
        "serve"
    )
    for name, r in results.items():
        b, s = r.get("build", {}), r.get("serve", {})
        knob = CANDIDATES[name][2]
        if "error" in b or "error" in s:
            err = b.get("error") or s.get("error")
            lines.append(
                f"| {name} | {_fmt(b.get('build_s'), '.0f') if 'error' not in b else err}"
                f" | | | | | | | | | **MISS** ({err}) |"
            )
            continue
        ok = (
            b["build_s"] < TARGET_BUILD_S
            and s["recall"] >= TARGET_RECALL
            and max(b["peak_rss_gb"], s["peak_rss_gb"]) < TARGET_RSS_GB
        )
        lines.append(
            f"| {name} | {b['build_s']:.1f} | {b['peak_rss_gb']:.2f} | {b['disk_gb']:.2f} | "
            f"{s['load_s']:.2f} | {knob}={s['knob']} | {s['recall']:.3f} | "
            f"{s['single_ms_median']:.2f} / {s['single_ms_p95']:.2f} | "
            f"{s['batch_ms_per_query']:.3f} | {s['peak_rss_gb']:.2f} | "
            f"{'PASS' if ok else '**MISS**'} |"
        )
    if exact:
        lines += [
            "",
            "Single-query speed-up over exact search (faiss Flat) at the chosen knob:",
            "",
        ]
        for name, r in results.items():
            s = r.get("serve", {})
            if "single_ms_median" in s:
                lines.append(
                    f"- {name}: {exact['single_ms_median'] / s['single_ms_median']:.1f}x "
                    f"single, {exact['batch_ms_per_query'] / s['batch_ms_per_query']:.1f}"
                    "x batched"
                )
    lines += ["", "Recall / batched latency sweeps:", ""]
    for name, r in results.items():
        s = r.get("serve", {})
        if "sweep" in s and CANDIDATES[name][2] != "-":
            pts = ", ".join(
                f"{p['knob']}: {p['recall']:.3f} @ {p['batch_ms_per_query']:.3f} ms"
                for p in s["sweep"]
            )
            lines.append(
                f"- {name} ({CANDIDATES[name][1].format(nlist=_nlist(args.n))}; "
                f"{CANDIDATES[name][2]}): {pts}"
            )
    if lamina:
        lines += ["", "## lamina's own path", ""]
        for key, val in lamina.items():
            lines.append(f"- {key}: `{json.dumps(val, default=str)}`")
    if crossover:
        lines += [
            "",
            "## Where exact search stops paying (one query at a time)",
            "",
            "| N | exact ms | lamina IVF build s | nlist / nprobe | IVF ms | IVF recall@10 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['n']:,} | {c['exact_single_ms']:.2f} | {c['ivf_build_s']:.1f} | "
            f"{c['ivf_nlist']} / {c['ivf_nprobe']} | {c['ivf_single_ms']:.2f} | "
            f"{c['ivf_recall']:.3f} |"
            if "error" not in c
            else f"| ? | {c['error']} | | | | |"
            for c in crossover
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="comma-separated candidates")
    parser.add_argument("--build-timeout", type=float, default=TARGET_BUILD_S)
    parser.add_argument("--no-lamina", action="store_true", help="skip lamina's own path")
    parser.add_argument(
        "--crossover", action="store_true", help="also time exact search for N = 10k .. 1M"
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="real embeddings of the sample photos instead of synthetic vectors",
    )
    parser.add_argument("--out", type=Path, default=None, help="report path")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        stage, *rest = args.child
        if stage == "gen":
            generate(int(rest[0]), int(rest[1]), int(rest[2]), Path(rest[3]))
            out: dict[str, Any] = {}
        elif stage == "build":
            out = child_build(rest[0], Path(rest[1]), Path(rest[2]), float(rest[3]))
        elif stage == "serve":
            out = child_serve(rest[0], Path(rest[1]), Path(rest[2]))
        elif stage == "lamina-store":
            out = child_lamina_store(Path(rest[0]), Path(rest[1]))
        elif stage == "lamina-build":
            out = child_lamina_build(Path(rest[0]))
        elif stage == "lamina-query":
            out = child_lamina_query(Path(rest[0]), Path(rest[1]))
        elif stage == "real-export":
            out = child_real_export(Path(rest[0]), Path(rest[1]))
        elif stage == "crossover":
            out = child_crossover(int(rest[0]), Path(rest[1]))
        else:
            raise SystemExit(f"unknown stage {stage}")
        print(MARKER + json.dumps(out, default=str), flush=True)
        return 0

    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    unknown = set(names) - set(CANDIDATES)
    if unknown:
        parser.error(f"unknown candidates: {', '.join(sorted(unknown))}")
    info: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(
            [".venv/bin/python", "bench/index.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    load_before = psutil.getloadavg()[0]
    if args.real:
        data, info["real"] = ensure_real_data()
        args.n, args.dim = np.load(data / "base.npy", mmap_mode="r").shape
        args.no_lamina, args.crossover = True, False
    else:
        data = ensure_data(args.n, args.dim, args.seed)
    idx_dir = WORK / "idx" / ("real" if args.real else f"{args.n}x{args.dim}")
    idx_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        path = idx_dir / name
        print(f"{name}: build ...", flush=True)
        b = run_child(
            ["build", name, str(data), str(path), str(args.build_timeout)], args.build_timeout + 120
        )
        print(f"  {json.dumps(b)}", flush=True)
        s: dict[str, Any] = (
            {"error": "not built"}
            if "error" in b
            else run_child(["serve", name, str(data), str(path)], 1800)
        )
        if "error" not in b:
            print(f"  serve {json.dumps({k: v for k, v in s.items() if k != 'sweep'})}", flush=True)
        results[name] = {"build": b, "serve": s}
        for p in idx_dir.glob(name + "*"):
            p.unlink()  # the next candidate gets the disk (and the page cache) back
    lamina = None
    if not args.no_lamina:
        store = WORK / "store" / f"{args.n}x{args.dim}"
        shutil.rmtree(store, ignore_errors=True)
        lamina = {"write layer": run_child(["lamina-store", str(data), str(store)], 1800)}
        print(f"lamina: {lamina}", flush=True)
        lamina["build_index"] = run_child(["lamina-build", str(store)], 1800)
        print(f"  {lamina['build_index']}", flush=True)
        lamina["similar (fresh process)"] = run_child(["lamina-query", str(store), str(data)], 600)
        print(f"  {lamina['similar (fresh process)']}", flush=True)
    crossover = []
    if args.crossover:
        for n in (10_000, 30_000, 50_000, 100_000, 300_000):
            if n >= args.n:
                break
            crossover.append(run_child(["crossover", str(n), str(data)], 600))
            print(f"crossover {crossover[-1]}", flush=True)
    info["load"] = (load_before, psutil.getloadavg()[0])
    text = report(args, results, lamina, crossover, info)
    if args.real:
        out_path = args.out or RESULTS.with_name("index-real.md")
    else:
        out_path = args.out or (
            RESULTS.with_name("index-1m.md")
            if args.n == 1_000_000 and not args.only
            else WORK / f"index-{args.n}.md"
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    (WORK / f"index-{args.n}x{args.dim}.json").write_text(
        json.dumps(
            {"results": results, "lamina": lamina, "crossover": crossover, "info": info},
            indent=1,
            default=str,
        )
    )
    print(text)
    print(f"written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
