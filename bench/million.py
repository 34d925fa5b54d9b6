"""A million images, simulated honestly (issue 19, item 4).

Builds N tiny distinct images (16x16 PNGs from 40 colour themes plus noise, a few pure-noise
outliers), stored as comic-book archives (`.cbz`, 200 pages each: 1M loose files would
cost 4 GB of 4 KB blocks on this disk), plus planted exact duplicates (1 in 100 pages
stored twice in its archive) and a sample of larger loose JPEGs
(1024x768). Then runs lamina's stages one process tree at a time, each under
`nice -n 10`, while a sampler polls /proc every 0.1 s: wall time, peak RSS and PSS of the
main process and of the whole tree (main + descendants), and the store's size after the
stage.

Stages: scan, sense-map (signals + hashes + thumbnails, the map half of `lamina sense`),
duplicates, flags, embed (the tests' tiny timm `test_vit`, 64-d, offline), clusters,
semantic_duplicates, outliers, medoids + exemplars, semantic_map and report. `scan`,
`embed`, `flags` and `report` are the CLI verbs; the others are `lamina.core.runner.run_passes`
with exactly the pass configs `lamina sense` / `lamina cluster` build, one pass per
process, so each global pass gets its own line (the CLI runs several in one process).

Usage::

    python bench/million.py build 10000            # corpus c10000 under bench/work/million
    python bench/million.py stages 10000           # every stage on it, results appended
    python bench/million.py stages 1000000 --only scan
    python bench/million.py synth 1000000 --from 50000   # see `synth` below
    python bench/million.py render                 # bench/results/million.md
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "million"
RESULTS = ROOT / "bench" / "results" / "million.md"
LOG = WORK / "results.jsonl"
PYTHON = sys.executable
SEED = 20261205
PAGES = 200  # pages per archive: a comic volume
DUP_EVERY = 100  # 1 page in 100 is also copied into another archive (an exact duplicate)
LARGE = 100  # loose 1024x768 JPEGs per corpus
THEMES = 40
MB = 1e6

# -- the corpus ----------------------------------------------------------------------------


def _png(px: np.ndarray) -> bytes:
    """A PNG of an (h, w, 3) uint8 array, written directly (zlib level 1): 5-10x faster
    than PIL for 16x16 images, and a plain valid PNG (8-bit RGB, filter 0)."""
    h, w, _ = px.shape
    raw = np.zeros((h, 1 + 3 * w), np.uint8)
    raw[:, 1:] = px.reshape(h, 3 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + chunk(b"IEND", b""))  # fmt: skip


_THEMES = np.random.default_rng([SEED, 0]).integers(0, 256, (THEMES, 2, 3))
_RAMP = np.linspace(0.0, 1.0, 16)[:, None, None]


def _pages(a: int, n: int) -> list[tuple[int, bytes]]:
    """Archive a's pages (j, PNG): distinct 16x16 images, a theme's two-colour vertical
    gradient plus noise; 1 in 500 is pure noise (an outlier)."""
    rng = np.random.default_rng([SEED, 1, a])
    js = range(a * PAGES, min((a + 1) * PAGES, n))
    t = _THEMES[np.asarray(js) % THEMES]  # (k, 2, 3)
    base = t[:, None, None, 0] * (1 - _RAMP) + t[:, None, None, 1] * _RAMP  # (k, 16, 1, 3)
    px = np.clip(base + rng.integers(-12, 13, (len(js), 16, 16, 3)), 0, 255).astype(np.uint8)
    for i, j in enumerate(js):
        if j % 500 == 499:
            px[i] = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return [(j, _png(px[i])) for i, j in enumerate(js)]


def _archive_task(args: tuple[str, int, int]) -> int:
    """Write archive `a` (pages a*PAGES .. +PAGES-1) and return its size; every
    DUP_EVERY-th page is also stored a second time under `rescan/` (an exact duplicate,
    as a re-scanned page in a volume is)."""
    root, a, n = args
    path = Path(root) / f"v{a // 100:03d}" / f"vol{a:05d}.cbz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for j, data in _pages(a, n):
            zf.writestr(f"p{j:07d}.png", data)
            if j % DUP_EVERY == 0:
                zf.writestr(f"rescan/p{j:07d}.png", data)
    return path.stat().st_size


def _large_task(args: tuple[str, int]) -> int:
    from PIL import Image

    root, i = args
    rng = np.random.default_rng([SEED, 2, i])
    small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    big = small.resize((1024, 768), Image.Resampling.BICUBIC)
    path = Path(root) / "large" / f"photo{i:04d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    big.save(path, "JPEG", quality=85)
    return path.stat().st_size


def build(n: int, workers: int = 2) -> Path:
    """Corpus `c<n>`: n distinct pages in ceil(n / PAGES) archives, n / DUP_EVERY
    planted copies, LARGE loose JPEGs. Reused when its marker says it is complete."""
    root = WORK / f"c{n}"
    marker = root / "complete.json"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    archives = (n + PAGES - 1) // PAGES
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        size = sum(
            pool.imap_unordered(_archive_task, [(str(root), a, n) for a in range(archives)], 20)
        )
        size += sum(pool.imap_unordered(_large_task, [(str(root), i) for i in range(LARGE)]))
    copies = len(range(0, n, DUP_EVERY))
    info = {"pages": n, "archives": archives, "copies": copies, "large": LARGE,
            "files": n + copies + LARGE, "bytes": size,
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    marker.write_text(json.dumps(info))
    print(json.dumps(info))
    return root


# -- measuring one stage -------------------------------------------------------------------


def _proc_kb(pid: int, path: str, key: str) -> int:
    """A `key:  N kB` line of /proc/<pid>/<path>, in bytes (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/{path}") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Stage:
    n: int  # distinct pages of the corpus
    stage: str
    images: int  # rows the stage saw (the store's images after it)
    wall_s: float
    cpu_s: float  # user + sys of the tree (wait4: the process and its reaped children)
    main_rss_mb: float
    main_pss_mb: float
    tree_rss_mb: float
    tree_pss_mb: float
    store_mb: float  # store on disk after the stage (allocated blocks)
    load: str  # load average when the stage ended
    note: str
    when: str


def store_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def measure(cmd: list[str], interval: float = 0.2) -> tuple[float, float, dict[str, int], str]:
    """Run `cmd` under `nice -n 10`, polling /proc: (wall s, cpu s, peaks, stdout)."""
    peaks = {"main_rss": 0, "main_pss": 0, "tree_rss": 0, "tree_pss": 0}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(["nice", "-n", "10", *cmd], stdout=out, stderr=err)
        ps = psutil.Process(proc.pid)  # nice execs in place: same pid
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                pids = [proc.pid] + [c.pid for c in ps.children(recursive=True)]
            except psutil.Error:
                pids = [proc.pid]
            rss = [_proc_kb(p, "status", "VmRSS:") for p in pids]
            pss = [_proc_kb(p, "smaps_rollup", "Pss:") for p in pids]
            for key, value in (("main_rss", rss[0]), ("main_pss", pss[0]),
                               ("tree_rss", sum(rss)), ("tree_pss", sum(pss))):  # fmt: skip
                peaks[key] = max(peaks[key], value)
            time.sleep(interval)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{stderr[-3000:]}")
    # Not ru_maxrss: Linux carries the forking parent's high-water mark into the child.
    return wall, usage.ru_utime + usage.ru_stime, peaks, stdout


def lamina(store: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "lamina.cli", "--store", str(store), *args]


def one_pass(store: Path, name: str) -> list[str]:
    """A command running one registered pass through the runner, with the config the CLI
    gives it (`lamina sense` / `lamina cluster`)."""
    return [PYTHON, str(Path(__file__).resolve()), "pass", str(store), name]


def _pass_main(store_path: str, name: str) -> None:
    import lamina
    from lamina.core.runner import run_passes
    from lamina.jobs.cluster import semantic_configs
    from lamina.jobs.sense import SenseConfig, sense_passes

    store = lamina.open(store_path)
    sense = dict(sense_passes(store, SenseConfig()))
    names = name.split("+")
    configs = {**sense, **semantic_configs("", 0, "kmeans")}
    result = run_passes(store, [(k, configs[k]) for k in names], command=f"bench {name}",
                        progress=False)  # fmt: skip
    print(json.dumps(result, default=str))


def tiny_model() -> str:
    """The tests' tiny timm model (random `test_vit` weights, 64-d), saved once."""
    path = WORK / "model" / "model.safetensors"
    if not path.exists():
        sys.path.insert(0, str(ROOT))
        from tests.backends.embedders.tiny_models import tiny_timm

        tiny_timm(path.parent)
    return f"timm:test_vit@{path}"


STAGES = ("scan", "sense-map", "duplicates", "flags", "embed", "clusters",
          "semantic_duplicates", "outliers", "medoids+exemplars", "semantic_map", "report")  # fmt: skip


def stage_command(stage: str, store: Path, corpus: Path) -> list[str]:
    if stage == "scan":
        return lamina(store, "scan", str(corpus), "--json")
    if stage == "sense-map":
        return one_pass(store, "signals+hashes+thumbs")
    if stage == "flags":
        return lamina(store, "flags", "--json")
    if stage == "embed":
        return lamina(store, "embed", "-m", tiny_model(), "--offline", "--device", "cpu", "--json")
    if stage == "report":
        return lamina(store, "report", "-o", str(store.parent / f"{store.name}-report"))
    return one_pass(store, stage)


def images_in(store: Path) -> int:
    import lamina

    return int(lamina.open(store).table("images").num_rows)


def run_stages(n: int, stages: list[str], note: str = "") -> list[Stage]:
    corpus = build(n)
    store = WORK / f"store{n}"
    if "scan" in stages:
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(WORK / f"store{n}-report", ignore_errors=True)
    done = []
    for stage in stages:
        wall, cpu, peaks, _out = measure(stage_command(stage, store, corpus))
        row = Stage(
            n, stage, images_in(store), round(wall, 2), round(cpu, 2),
            *(round(peaks[k] / MB, 1) for k in ("main_rss", "main_pss", "tree_rss", "tree_pss")),
            round(store_bytes(store) / MB, 1), " ".join(f"{x:.1f}" for x in os.getloadavg()),
            note, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )  # fmt: skip
        print(json.dumps(asdict(row)), flush=True)
        with LOG.open("a") as fh:
            fh.write(json.dumps(asdict(row)) + "\n")
        done.append(row)
    return done


def render() -> None:
    raise NotImplementedError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build corpus c<N>")
    b.add_argument("n", type=int)
    s = sub.add_parser("stages", help="run stages on corpus c<N>, appending to the log")
    s.add_argument("n", type=int)
    s.add_argument("--only", default=",".join(STAGES), help="comma-separated stages, in order")
    s.add_argument("--note", default="")
    p = sub.add_parser("pass", help="(internal) run one pass on a store")
    p.add_argument("store")
    p.add_argument("name")
    sub.add_parser("render", help="write bench/results/million.md from the log")
    args = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if args.cmd == "build":
        build(args.n)
    elif args.cmd == "stages":
        run_stages(args.n, args.only.split(","), args.note)
    elif args.cmd == "pass":
        _pass_main(args.store, args.name)
    elif args.cmd == "render":
        render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
