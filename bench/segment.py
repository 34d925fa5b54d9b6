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
* `huge` (with --huge-mp N): one N-MP image, `lamina segment` as a user runs it (default
  --tile-over 90: streamed into 1024-px tiles and a 2048-px overview, each tile
  segmented): twice, a mostly uniform PNG (a decompression bomb: a few MB on disk) and a
  JPEG mosaic of the package photos (real content in every tile); tiles, segments/s and
  the tree's peak RSS, against the image's size as RGB;
* `sam-tiny` (with --sam): the SAM path with a tiny random model (tests/backends/
  segmenters/tiny_sam.py, 8x8 prompts) on the first 20 images: the pipeline's own cost,
  not SAM's (real weights are ~100-2500x the compute; fill in on a GPU).

Usage::

    .venv/bin/python bench/segment.py                # 300 images; its block of results/segment.md
    .venv/bin/python bench/segment.py --n 1000 --sam
    .venv/bin/python bench/segment.py --n 40 --out /tmp/segment.md   # a quick check
    nice -n 10 .venv/bin/python bench/segment.py --n 1000 --methods felzenszwalb \
        --motifs-n 0 --huge-mp 200 --sam          # the issue's 1,000 images and 200 MP
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


def build_huge(megapixels: float, kind: str) -> Path:
    """A `megapixels` MP square image, streamed to disk by libvips (never whole in this
    process either): `png`, mostly uniform with a few solid boxes (a bomb: MBs on disk,
    hundreds of MB of pixels), or `jpeg`, a mosaic of the package photos at 512 px."""
    import pyvips

    from lamina.sample import package_photos

    side = round((megapixels * 1e6) ** 0.5)
    path = WORK / f"huge-{kind}-{megapixels:g}mp" / f"huge.{'png' if kind == 'png' else 'jpg'}"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        im = pyvips.Image.black(side, side, bands=3).new_from_image([90, 120, 90]).cast("uchar")
        rng = np.random.default_rng(1)
        for _ in range(40):
            w, h = (int(v) for v in rng.integers(side // 60, side // 12, 2))
            x, y = (int(v) for v in rng.integers(0, side - max(w, h), 2))
            colour = [int(c) for c in rng.integers(0, 256, 3)]
            im = im.draw_rect(colour, x, y, w, h, fill=True)
        im.pngsave(str(path), compression=6)
        return path
    cells = []
    for a in package_photos().values():
        im = Image.fromarray(a).convert("RGB").resize((512, 512))
        cells.append(pyvips.Image.new_from_array(np.asarray(im)).copy(interpretation="srgb"))
    across = -(-side // 512)
    tiles = [cells[i % len(cells)] for i in range(across * across)]
    mosaic = pyvips.Image.arrayjoin(tiles, across=across).crop(0, 0, side, side)
    mosaic.jpegsave(str(path), Q=90)
    return path


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
    parser.add_argument("--methods", default="felzenszwalb,slic,otsu",
                        help="classical methods to time on the corpus")  # fmt: skip
    parser.add_argument("--huge-mp", type=float, default=0,
                        help="also one image this many MP (0: none)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    corpus = build_corpus(args.n)
    runs = WORK / "stores"
    shutil.rmtree(runs, ignore_errors=True)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = []
    huge_notes = []
    for kind in ("png", "jpeg") if args.huge_mp else ():
        image = build_huge(args.huge_mp, kind)
        store = runs / f"huge-{kind}"
        subprocess.run(lamina(store, "scan", str(image.parent), "--json"), check=True,
                       capture_output=True)  # fmt: skip
        seconds, peak, out = timed(
            lamina(store, "segment", "--workers", str(args.workers), "--json")
        )
        n_tiles = len(list((store / "cache" / "tiles").rglob("x*-y*.jpg")))
        label = "uniform PNG bomb" if kind == "png" else "JPEG photo mosaic"
        rows.append((f"segment {args.huge_mp:g} MP {label} ({n_tiles} tiles)", 1,
                     out["segments"], seconds, peak))  # fmt: skip
        huge_notes.append(
            f"{label}: {image.stat().st_size / 2**20:.1f} MiB on disk, "
            f"{args.huge_mp * 1e6 * 3 / 2**20:.0f} MiB as RGB, tiled: {out['tiled']}"
        )
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
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
        "## The latest `bench/segment.py` run",
        "",
        f"Date: {date.today().isoformat()}. Machine: {len(os.sched_getaffinity(0))} cores "
        f"({cpu}), Python {platform.python_version()}, lamina {commit}. Load average "
        f"before: {load_before}, after: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(the cores are shared: figures are noisy; compare the rows, run in one go).",
        "",
        f"Command: `.venv/bin/python bench/segment.py {' '.join(sys.argv[1:])}`. Corpus: "
        f"{args.n} JPEGs of 256-640 px from the package photos; {args.workers} workers.",
        *([f"Huge images: {'; '.join(huge_notes)}."] if huge_notes else []),
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
    old = args.out.read_text() if args.out.exists() else "# Segment benchmark\n"
    args.out.write_text(replace_block(old, text))


BEGIN, END = "<!-- bench/segment.py: begin -->", "<!-- bench/segment.py: end -->"


def replace_block(document: str, block: str) -> str:
    """`document` with the text between its BEGIN and END markers replaced by `block`, or
    the marked block appended: the hand-written sections of the results file are kept.

    Example:
        >>> replace_block("# T\\n\\nnotes\\n", "new\\n").count("notes")
        1
    """
    marked = f"{BEGIN}\n{block}{END}\n"
    if BEGIN in document and END in document.split(BEGIN, 1)[1]:
        head, rest = document.split(BEGIN, 1)
        return head + marked + rest.split(END, 1)[1].lstrip("\n")
    return document.rstrip("\n") + "\n\n" + marked


if __name__ == "__main__":
    main()
