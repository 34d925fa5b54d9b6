"""Per-page costs of the map stages on comic-page-sized JPEGs, and what the Ray executor
adds over the local one, for docs/scale.md.

Pages: package-shipped photos (`lamina.sample.package_photos()`) cropped to a page's
aspect and resized to 1988 x 3056 px (a common scan size of a comic page), JPEG q90.
Each measurement runs the passes as `lamina sense` / `lamina embed` do, in one process
(`workers=1`, so the figure is one core's time per page) after a warm-up run on other
pages (imports and model loads excluded). Then sense runs on the same pages with the
local executor (2 workers) and with the Ray executor on a local Ray (2 CPUs) side by
side, and the Ray start and a round trip of tiny tasks are timed.

Run: `python bench/scale.py --pages 48` (writes bench/results/scale.md; ~5 min here).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import lamina.catalog  # noqa: F401 - registers the passes
from lamina.core.ledger import Run
from lamina.core.runner import image_inputs, run_map_passes
from lamina.core.store import Store
from lamina.executors.local import LocalExecutor
from lamina.executors.ray import RayExecutor
from lamina.jobs.scan import ScanConfig, scan
from lamina.passes.thumbs import thumbs_config
from lamina.sample import package_photos

PAGE = (1988, 3056)  # width, height
SENSE = [("signals", None), ("hashes", None)]  # + thumbs (needs the store)


def make_pages(folder: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    photos = list(package_photos().values())
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = photos[int(rng.integers(len(photos)))]
        h, w = a.shape[:2]
        cw = min(w, int(h * PAGE[0] / PAGE[1]))
        x = int(rng.integers(0, w - cw + 1))
        img = Image.fromarray(np.ascontiguousarray(a[:, x : x + cw])).resize(PAGE)
        img.save(folder / f"p{i:04d}.jpg", quality=90)


def timed_passes(store: Store, passes: list, executor: object) -> tuple[float, float]:
    """(wall s, CPU s of this process: every thread, no child) of one run of `passes`."""
    from lamina.core.passes import get_pass

    instances = [get_pass(n, c) for n, c in passes]
    for i in instances:
        i.describe()
    with store.write_lock("bench"), Run(store, "bench", {}) as run:
        inputs = image_inputs(store)
        t0, c0 = time.perf_counter(), time.process_time()
        run_map_passes(store, instances, inputs, run, progress=False, executor=executor)  # type: ignore[arg-type]
        return time.perf_counter() - t0, time.process_time() - c0


def fresh_store(root: Path, name: str, pages: Path) -> Store:
    store = Store.open(root / name, create=True)
    scan(store, ScanConfig(sources=(str(pages),), progress=False))
    return store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=48)
    parser.add_argument("--out", default="bench/results/scale.md")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lamina-scale-"))
    lines: list[str] = []
    try:
        make_pages(root / "warm", 8, 1)
        make_pages(root / "pages", args.pages, 2)
        mb = sum(p.stat().st_size for p in (root / "pages").iterdir()) / 1e6
        load0 = os.getloadavg()
        one = LocalExecutor(1)
        # Warm-up: imports, the model's load (once per process).
        warm = fresh_store(root, "warm-store", root / "warm")
        timed_passes(warm, [*SENSE, ("thumbs", thumbs_config(warm))], one)
        timed_passes(warm, [("embed", {"model": "default", "offline": True})], one)
        s1 = fresh_store(root, "one", root / "pages")
        sense1, sense1_cpu = timed_passes(s1, [*SENSE, ("thumbs", thumbs_config(s1))], one)
        embed1, embed1_cpu = timed_passes(
            s1, [("embed", {"model": "default", "offline": True})], one
        )
        # Side by side: local pool of 2 against a local Ray of 2 CPUs (both cold).
        s2 = fresh_store(root, "local2", root / "pages")
        local2, _ = timed_passes(s2, [*SENSE, ("thumbs", thumbs_config(s2))], LocalExecutor(2))
        s3 = fresh_store(root, "ray2", root / "pages")
        t0 = time.perf_counter()
        ray = RayExecutor(local_cpus=2)
        ray.start()
        ray_start = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            list(ray.imap_unordered(abs, range(200), cpus=0.5))
            tiny = (time.perf_counter() - t0) / 200
            ray2, _ = timed_passes(s3, [*SENSE, ("thumbs", thumbs_config(s3))], ray)
        finally:
            ray.close()
        load1 = os.getloadavg()
        n = args.pages
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        lines += [
            "# Per-page costs at comic-page size, and the Ray executor's overhead",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
            f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"lamina commit `{commit}`",
            f"- Command: `python bench/scale.py --pages {n}`",
            f"- Load average (1 min) before / after: {load0[0]:.1f} / {load1[0]:.1f} on "
            f"{os.cpu_count()} cores (a shared machine: absolute times are noisy)",
            f"- Pages: {n} JPEGs of {PAGE[0]} x {PAGE[1]} px, q90, {mb / n:.2f} MB each on "
            "average (package-shipped photos cropped and resized)",
            "",
            "CPU = this process's user + sys time, all its threads (what a page costs a core,"
            " whatever the load); wall = elapsed.",
            "",
            "| what | wall s | wall per page | CPU per page |",
            "|---|--:|--:|--:|",
            f"| sense map passes (signals, hashes, thumbs; one decode), 1 process | "
            f"{sense1:.1f} | {1000 * sense1 / n:.0f} ms | {1000 * sense1_cpu / n:.0f} ms |",
            f"| embed (EfficientNet-Lite0, CPU), 1 process, model loaded | {embed1:.1f} | "
            f"{1000 * embed1 / n:.0f} ms | {1000 * embed1_cpu / n:.0f} ms |",
            f"| sense map passes, local executor, 2 workers (pool start included) | "
            f"{local2:.1f} | {1000 * local2 / n:.0f} ms | - |",
            f"| sense map passes, Ray executor, local Ray of 2 CPUs (already started) | "
            f"{ray2:.1f} | {1000 * ray2 / n:.0f} ms | - |",
            "",
            "- Starting the local Ray (`ray.init`, 2 CPUs, 200 MB object store): "
            f"{ray_start:.1f} s",
            f"- A tiny Ray task's round trip (200 tasks, at most 8 in flight): "
            f"{1000 * tiny:.1f} ms each",
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        Path(args.out).write_text(text)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
