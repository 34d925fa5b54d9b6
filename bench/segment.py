"""Segment benchmark: `lamina segment` (the classical backends) and `lamina motifs` on a
corpus of real package-shipped photos, timed as a user runs them, with peak memory.

The corpus (bench/work/segment/corpus-<n>/) is `n` JPEGs of 256-640 px cut from
`lamina.sample.package_photos()` (random crops, resizes and flips, fixed seed). Each side
runs in its own process on its own store, after one `lamina scan` (not timed):

* `segment <method>`: `lamina --store S segment --segmenter classical:<method>`, for
  felzenszwalb (the default), slic and otsu side by side: images/s, segments/s, peak RSS
  of the whole process tree (psutil, 20 ms polling);
* `motifs`: `lamina motifs` on the first `--motifs-n` images after the default
  segmentation (EfficientNet-Lite0 on the crops, k-means): segments/s;
* `sam-tiny` (with --sam): the SAM path with a tiny random model (tests/backends/
  segmenters/tiny_sam.py, 8x8 prompts) on the first 20 images: the pipeline's own cost,
  not SAM's (real weights are ~100-2500x the compute; fill in on a GPU).

Usage::

    .venv/bin/python bench/segment.py                # 300 images; writes results/segment.md
    .venv/bin/python bench/segment.py --n 1000 --sam
    .venv/bin/python bench/segment.py --n 40 --out /tmp/segment.md   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "segment"
RESULTS = ROOT / "bench" / "results" / "segment.md"


def build_corpus(n: int) -> Path:
    """`n` JPEGs from the package photos (made once per n)."""
    from lamina.sample import package_photos

    folder = WORK / f"corpus-{n}"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    photos = [np.asarray(Image.fromarray(a).convert("RGB")) for a in package_photos().values()]
    for i in range(n):
        a = photos[i % len(photos)]
        h, w = a.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1)), int(w * rng.uniform(0.6, 1))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        im = Image.fromarray(a[y : y + ch, x : x + cw])
        side = int(rng.integers(256, 641))
        im.thumbnail((side, side)) if max(im.size) > side else None
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im.save(folder / f"{i:05d}.jpg", quality=int(rng.integers(75, 95)))
    return folder


def timed(cmd: list[str]) -> tuple[float, float, dict[str, Any]]:
    """Wall seconds, peak RSS (MiB) of the process tree, and the JSON it printed."""
    start = time.monotonic()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                procs = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    seconds = time.monotonic() - start
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return seconds, peak / 2**20, json.loads(out)


def lamina(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lamina.cli", "--store", str(store), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--sam", action="store_true", help="also the SAM path, tiny model")
    parser.add_argument("--motifs-n", type=int, default=40, help="images for the motifs run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    corpus = build_corpus(args.n)
    runs = WORK / "stores"
    shutil.rmtree(runs, ignore_errors=True)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = []
    for method in ("felzenszwalb", "slic", "otsu"):
        store = runs / method
        subprocess.run(lamina(store, "scan", str(corpus), "--json"), check=True,
                       capture_output=True)  # fmt: skip
        seconds, peak, out = timed(
            lamina(store, "segment", "--segmenter", f"classical:{method}", "--workers",
                   str(args.workers), "--json")
        )  # fmt: skip
        rows.append((f"segment classical:{method}", args.n, out["segments"], seconds, peak))
    if args.motifs_n:
        # Motifs embed every segment's crop: on a subset, segmented by the default first.
        subset = WORK / f"corpus-motifs-{args.motifs_n}"
        shutil.rmtree(subset, ignore_errors=True)
        subset.mkdir()
        for f in sorted(corpus.glob("*.jpg"))[: args.motifs_n]:
            shutil.copy(f, subset / f.name)
        store = runs / "motifs"
        for step in (["scan", str(subset)], ["segment", "--workers", str(args.workers)]):
            subprocess.run(lamina(store, *step, "--json"), check=True, capture_output=True)
        seconds, peak, out = timed(
            lamina(store, "motifs", "--workers", str(args.workers), "--json")
        )
        rows.append(("motifs (default embedder)", args.motifs_n, out["segments"], seconds, peak))
    if args.sam:
        sys.path.insert(0, str(ROOT))
        from tests.backends.segmenters.tiny_sam import save_tiny_sam

        tiny = save_tiny_sam(WORK / "tiny-sam")
        small = WORK / "corpus-sam"
        shutil.rmtree(small, ignore_errors=True)
        small.mkdir()
        for f in sorted(corpus.glob("*.jpg"))[:20]:
            shutil.copy(f, small / f.name)
        store = runs / "sam"
        subprocess.run(lamina(store, "scan", str(small), "--json"), check=True,
                       capture_output=True)  # fmt: skip
        seconds, peak, out = timed(
            lamina(store, "segment", "--segmenter", f"sam:{tiny}", "--options",
                   "points_per_side=8&pred_iou_thresh=-100&stability_thresh=0",
                   "--workers", str(args.workers), "--json")
        )  # fmt: skip
        rows.append(("segment sam:<tiny random>", 20, out["segments"], seconds, peak))
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "unknown",
    )  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()  # fmt: skip
    lines = [
        "# Segment benchmark",
        "",
        f"Date: {date.today().isoformat()}. Machine: {len(os.sched_getaffinity(0))} cores "
        f"({cpu}), Python {platform.python_version()}, lamina {commit}. Load average "
        f"before: {load_before}, after: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(the cores are shared: figures are noisy; compare the rows, run in one go).",
        "",
        f"Command: `.venv/bin/python bench/segment.py {' '.join(sys.argv[1:])}`. Corpus: "
        f"{args.n} JPEGs of 256-640 px from the package photos; {args.workers} workers.",
        "",
        "| run | images | segments | seconds | images/s | segments/s | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, segs, seconds, peak in rows:
        lines.append(
            f"| {name} | {n} | {segs} | {seconds:.1f} | {n / seconds:.2f} | "
            f"{segs / seconds:.1f} | {peak:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
