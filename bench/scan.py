"""Scan benchmark: lamina's scan against the physical limit measured in the same run.

What it measures (see bench/README.md for how to read it):

* **Throughput** on two corpora, on a warm page cache: 10,000 small distinct JPEGs
  (256-512 px) and ~30 large JPEGs (12-24 MP). The *physical limit* ("raw") is a plain
  loop that opens, reads (1 MiB blocks) and SHA-256-hashes the same files on all cores
  (a fork `multiprocessing.Pool`, `os.cpu_count()` workers, chunks of paths). lamina is
  the real CLI (`lamina --store X scan SRC`) in a subprocess with a fresh store, so its
  interpreter start, imports, worker spawn, walk and commit all count. Each side runs once
  to warm, then raw / lamina alternate `--reps` times; the medians and their ratio
  (lamina rate / raw rate) are reported. An in-process `scan()` (fresh interpreter, timer
  started after the imports) is also timed, split into walk / probe / commit.
* **Peak RSS** of the CLI scan on 10k / 30k / 100k tiny PNGs, polling with psutil every
  20 ms the RSS of the main process and of the whole process tree (workers included).

Generated corpora live in bench/work/ (git-ignored) and are reused when their marker says
they have the right count. The result table is printed and written to
bench/results/scan.md (the --quick smoke run writes bench/work/quick/scan.md instead).

Usage::

    .venv/bin/python bench/scan.py            # full run, < 10 min on 2 cores
    .venv/bin/python bench/scan.py --quick    # smoke run, < 1 min
    .venv/bin/python bench/scan.py --profile  # where probe_file's time goes (cProfile)
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import multiprocessing
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results" / "scan.md"

GEN_VERSION = 1  # bump when the generators change: corpora on disk are then rebuilt
SEED = 20261122
BLOCK = 1 << 20  # the raw loop's read size, the same as lamina's
MB = 1e6  # throughput and RSS are in decimal megabytes

TARGET_RATIO = 0.80
# Issue 14: the end-to-end ratio on the small JPEGs (fixed costs included) is held to 50 %.
TARGET_RATIO_BY = {"small JPEGs": 0.50}
TARGET_RSS_MB = 500.0
TARGET_RSS_GROWTH = 0.10  # "flat": main-process peak at the largest count within 10 % of smallest


@dataclass(frozen=True)
class Plan:
    """The sizes of one benchmark run."""

    name: str
    small: int  # small JPEGs
    large: int  # large JPEGs
    large_mp: tuple[float, float]  # megapixel range of the large JPEGs
    tiny: tuple[int, ...]  # cumulative tiny-file counts for the RSS runs
    reps: int
    work: Path
    out: Path


FULL = Plan("full", 10_000, 30, (12.0, 24.0), (10_000, 30_000, 100_000), 3, WORK, RESULTS)
QUICK = Plan(
    "quick", 500, 3, (12.0, 13.0), (1_000, 3_000, 10_000), 1, WORK / "quick",
    WORK / "quick" / "scan.md",
)  # fmt: skip


# -- corpora ---------------------------------------------------------------------------------

_PHOTOS: list[np.ndarray] = []  # set in the parent before the generator pool forks


def _rgb8(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64) / max(float(a.max()), 1e-9), 0, 1) * 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def load_photos() -> list[np.ndarray]:
    """Real photos as HxWx3 uint8 arrays: lamina.sample's, else skimage.data's."""
    try:
        from lamina.sample import package_photos

        photos = list(package_photos().values())
    except (ImportError, AttributeError):
        import skimage.data

        names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
                 "immunohistochemistry", "brick", "grass", "gravel", "camera", "moon", "horse",
                 "coins", "clock", "cell")  # fmt: skip
        photos = [_rgb8(np.asarray(getattr(skimage.data, n)())) for n in names]
    return [p for p in photos if min(p.shape[:2]) >= 64]


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _small_task(args: tuple[str, int, int]) -> int:
    """Write small JPEGs start..stop-1: random crop, resize to 256-512 px, flip, quality."""
    from PIL import Image

    root, start, stop = args
    written = 0
    for i in range(start, stop):
        rng = np.random.default_rng([SEED, 1, i])
        photo = _PHOTOS[int(rng.integers(len(_PHOTOS)))]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        side = int(rng.integers(256, 513))
        scale = side / max(ch, cw)
        im = Image.fromarray(photo[y : y + ch, x : x + cw]).resize(
            (max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.BILINEAR
        )
        pixels = np.asarray(im)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        path = Path(root) / f"a{i // 1000:02d}" / f"b{i // 100 % 10}" / f"img_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _jpeg(np.ascontiguousarray(pixels), int(rng.integers(70, 96)))
        path.write_bytes(data)
        written += len(data)
    return written


def _large_task(args: tuple[str, int, float, float]) -> int:
    """Write one large JPEG: a real photo upscaled to lo-hi MP plus light noise."""
    from PIL import Image

    root, i, lo, hi = args
    rng = np.random.default_rng([SEED, 2, i])
    big = [p for p in _PHOTOS if min(p.shape[:2]) >= 400] or _PHOTOS
    photo = big[int(rng.integers(len(big)))]
    aspect = float(rng.choice([4 / 3, 3 / 2, 16 / 9]))
    h, w = photo.shape[:2]
    ch, cw = (h, min(w, int(h * aspect))) if w / h >= aspect else (min(h, int(w / aspect)), w)
    y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    pixels_wanted = rng.uniform(lo, hi) * 1e6
    height = int((pixels_wanted / aspect) ** 0.5)
    width = int(height * aspect)
    im = Image.fromarray(photo[y : y + ch, x : x + cw]).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(im).astype(np.int16)
    amp = int(rng.integers(10, 17))
    pixels += rng.integers(-amp, amp + 1, pixels.shape, dtype=np.int16)
    data = _jpeg(np.clip(pixels, 0, 255).astype(np.uint8), int(rng.integers(94, 98)))
    path = Path(root) / f"set{i % 3}" / f"big_{i:03d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def _tiny_task(args: tuple[str, int, int, int]) -> int:
    """Write distinct 16x16 noise PNGs start..stop-1 of one part, 500 to a folder."""
    from PIL import Image

    root, part, start, stop = args
    rng = np.random.default_rng([SEED, 3, part, start])
    written = 0
    for j in range(start, stop):
        path = Path(root) / f"d{j // 500:03d}" / f"t{j:06d}.png"
        if j % 500 == 0 or j == start:
            path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
        path.write_bytes(buf.getvalue())
        written += len(buf.getvalue())
    return written


def count_files(root: Path) -> tuple[int, int]:
    """(files, bytes) under root."""
    files = size = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    files += 1
                    size += entry.stat(follow_symlinks=False).st_size
    return files, size


def _ranges(n: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, step):
        yield start, min(n, start + step)


def ensure_corpus(
    root: Path,
    expected: int,
    params: dict[str, Any],
    tasks: Sequence[tuple[Any, ...]],
    fn: Callable[[Any], int],
) -> tuple[int, int]:
    """Reuse `root` if its marker and file count match, else (re)build it; (files, bytes)."""
    # The marker lives outside the corpus, which lamina scans whole.
    marker = WORK / "markers" / (str(root.relative_to(WORK)).replace(os.sep, "-") + ".json")
    marker.parent.mkdir(parents=True, exist_ok=True)
    want = {"version": GEN_VERSION, "count": expected, "params": params}
    if marker.exists() and root.is_dir():
        have = json.loads(marker.read_text())
        if {k: have.get(k) for k in want} == json.loads(json.dumps(want)):
            files, size = count_files(root)
            if files == expected:
                print(f"  reusing {root.relative_to(ROOT)} ({files:,} files, {size / MB:,.0f} MB)")
                return files, size
    shutil.rmtree(root, ignore_errors=True)
    marker.unlink(missing_ok=True)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    if not _PHOTOS:
        _PHOTOS.extend(load_photos())
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        size = sum(pool.imap_unordered(fn, tasks))
    files, _ = count_files(root)
    if files != expected:
        raise RuntimeError(f"{root}: wrote {files} files, expected {expected}")
    marker.write_text(json.dumps({**want, "bytes": size}, indent=1))
    print(
        f"  built {root.relative_to(ROOT)}: {files:,} files, {size / MB:,.0f} MB "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return files, size


def build_corpora(plan: Plan) -> dict[str, Any]:
    """Every corpus of the plan: {'small': Path, 'large': Path, 'tiny': [(n, [Path...])]}."""
    plan.work.mkdir(parents=True, exist_ok=True)
    small = plan.work / "small"
    ensure_corpus(
        small,
        plan.small,
        {},
        [(str(small), a, b) for a, b in _ranges(plan.small, 250)],
        _small_task,
    )
    large = plan.work / "large"
    lo, hi = plan.large_mp
    ensure_corpus(
        large,
        plan.large,
        {"mp": [lo, hi]},
        [(str(large), i, lo, hi) for i in range(plan.large)],
        _large_task,
    )
    # Tiny files: parts p1, p2, ... whose cumulative counts are plan.tiny, so the 10k / 30k
    # runs scan subsets of the 100k tree and the largest run scans the whole tree as one source.
    tiny = plan.work / "tiny"
    parts: list[Path] = []
    runs: list[tuple[int, list[Path]]] = []
    previous = 0
    for k, total in enumerate(plan.tiny, start=1):
        part = tiny / f"p{k}"
        n = total - previous
        ensure_corpus(
            part, n, {"part": k}, [(str(part), k, a, b) for a, b in _ranges(n, 1000)], _tiny_task
        )
        parts.append(part)
        runs.append((total, list(parts)))
        previous = total
    runs[-1] = (plan.tiny[-1], [tiny])
    return {"small": small, "large": large, "tiny": runs}


def list_paths(root: Path) -> list[str]:
    """Every file under root, sorted (lamina probes in sorted path order too)."""
    out: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        out.extend(os.path.join(folder, f) for f in files)
    return sorted(out)


# -- the physical limit ----------------------------------------------------------------------


def hash_paths(paths: list[str]) -> tuple[int, int]:
    """Open, read in 1 MiB blocks and SHA-256 every file; (files, bytes)."""
    total = 0
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                digest.update(block)
                total += len(block)
        digest.hexdigest()
    return len(paths), total


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's children and their descendants that
    have been waited for: a process tree's whole CPU time, which other work on the machine
    changes far less than its wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


LAST_CPU: dict[str, float] = {}  # the CPU seconds of the last raw / lamina run


def raw_read_hash(paths: list[str], workers: int) -> tuple[float, int]:
    """Seconds to read and hash every path on `workers` processes (pool start included);
    its CPU seconds (pool and this process) go to LAST_CPU["raw"]."""
    step = max(1, min(256, len(paths) // (workers * 16)))
    chunks = [paths[i : i + step] for i in range(0, len(paths), step)]
    cpu0 = children_cpu() + time.process_time()
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        done = list(pool.imap_unordered(hash_paths, chunks))
        pool.close()
        pool.join()  # reaped, so that their CPU time is counted
    seconds = time.perf_counter() - t0
    LAST_CPU["raw"] = children_cpu() + time.process_time() - cpu0
    files = sum(n for n, _ in done)
    if files != len(paths):
        raise RuntimeError(f"raw loop hashed {files} of {len(paths)} files")
    return seconds, sum(b for _, b in done)


# -- lamina ----------------------------------------------------------------------------------


def lamina_command() -> list[str]:
    """The `lamina` command of the lamina this interpreter imports (`python -m lamina.cli`:
    the same entry as the console script, without depending on how the venv's script was
    generated, and it honours PYTHONPATH, so a worktree's tree can be measured)."""
    return [sys.executable, "-m", "lamina.cli"]


def _fresh(store: Path) -> Path:
    shutil.rmtree(store, ignore_errors=True)
    return store


def lamina_cli(sources: Sequence[Path], store: Path) -> tuple[float, dict[str, Any]]:
    """Wall seconds of `lamina --store STORE scan SOURCES --json` with a fresh store."""
    cmd = [*lamina_command(), "--store", str(_fresh(store)), "scan", *map(str, sources), "--json"]
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.perf_counter() - t0
    LAST_CPU["lamina"] = children_cpu() - cpu0  # the CLI and its workers
    shutil.rmtree(store, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout)


# Runs `scan()` in a fresh interpreter: the clock starts after the imports, and the walk,
# the probe map pass (worker spawn included) and the commit are timed by wrapping them.
INPROC = r"""
import json, sys, time
import lamina.jobs.scan as m
from lamina.core.store import Store
spent = {}
def timed(name, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
    return wrapper
steps = (("walk", "spill_listing"), ("probe", "run_map_pass_batches"), ("commit", "commit_scan"))
for name, attr in steps:
    if hasattr(m, attr):
        setattr(m, attr, timed(name, getattr(m, attr)))
t = time.perf_counter()
summary = m.scan_sources(Store.open(sys.argv[1], create=True), sys.argv[2:], progress=False)
spent["total"] = time.perf_counter() - t
print(json.dumps({"spent": spent, "files": summary["files"]}))
"""


def lamina_inproc(sources: Sequence[Path], store: Path) -> dict[str, float]:
    """{'total': s, 'walk': s, 'probe': s, 'commit': s} of an in-process scan()."""
    cmd = [sys.executable, "-c", INPROC, str(_fresh(store)), *map(str, sources)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    shutil.rmtree(store, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"in-process scan exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["spent"]


@dataclass
class Peak:
    files: int
    sources: list[str]
    seconds: float
    main_mb: float
    tree_mb: float
    hwm_mb: float  # kernel high-water mark of the largest single process (wait4 ru_maxrss)
    samples: int
    main_pss_mb: float = float("nan")  # peak PSS of the main process (shared pages split)


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


def _pss(proc: psutil.Process) -> int:
    """Proportional set size (shared pages split between the processes mapping them)."""
    try:
        return int(getattr(proc.memory_full_info(), "pss", 0))
    except (psutil.Error, OSError):
        return 0


def peak_rss(sources: Sequence[Path], store: Path, interval: float = 0.02) -> Peak:
    """Run the CLI scan, polling the RSS of the main process and of its whole tree."""
    cmd = [*lamina_command(), "--store", str(_fresh(store)), "scan", *map(str, sources), "--json"]
    main = tree = pss = 0
    samples = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        ps = psutil.Process(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            m = _rss(ps)
            try:
                children = ps.children(recursive=True)
            except psutil.Error:
                children = []
            main, tree = max(main, m), max(tree, m + sum(_rss(c) for c in children))
            pss = max(pss, _pss(ps))
            samples += 1
            time.sleep(interval)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    shutil.rmtree(store, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    files = int(json.loads(stdout)["files"])
    return Peak(
        files,
        [str(Path(s).relative_to(ROOT)) for s in sources],
        seconds,
        main / MB,
        tree / MB,
        usage.ru_maxrss * 1024 / MB,
        samples,
        pss / MB,
    )


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Throughput:
    corpus: str
    files: int
    size: int
    judged: bool = True  # False: shown for information, not held to the target
    raw: list[float] = field(default_factory=list)
    cli: list[float] = field(default_factory=list)
    inproc: list[dict[str, float]] = field(default_factory=list)
    raw_cpu: list[float] = field(default_factory=list)  # CPU s of every process, each rep
    cli_cpu: list[float] = field(default_factory=list)

    @property
    def target(self) -> float:
        return TARGET_RATIO_BY.get(self.corpus, TARGET_RATIO)

    @property
    def raw_s(self) -> float:
        return statistics.median(self.raw)

    @property
    def cli_s(self) -> float:
        return statistics.median(self.cli)

    @property
    def ratio(self) -> float:
        """lamina's rate over raw's: a ratio of the medians."""
        return self.raw_s / self.cli_s

    @property
    def cpu_ratio(self) -> float:
        """raw's CPU seconds over lamina's (medians): the wall ratio both would reach on
        cores that nothing else uses, were both CPU-bound."""
        return statistics.median(self.raw_cpu) / statistics.median(self.cli_cpu)

    def inproc_part(self, name: str) -> float:
        return statistics.median(r.get(name, float("nan")) for r in self.inproc)


def measure_throughput(
    corpus: str, root: Path, reps: int, workers: int, stores: Path, *, judged: bool = True
) -> Throughput:
    paths = list_paths(root)
    size = sum(os.path.getsize(p) for p in paths)
    result = Throughput(corpus, len(paths), size, judged)
    store = stores / corpus
    print(f"  {corpus}: {len(paths):,} files, {size / MB:,.0f} MB; warming", flush=True)
    raw_read_hash(paths, workers)
    _, summary = lamina_cli([root], store)
    if summary["files"] != len(paths) or summary["status"].get("ok") != len(paths):
        print(f"  warning: lamina saw {summary['status']} for {len(paths)} files")
    if summary.get("new_images") != len(paths):
        print(f"  warning: {summary.get('new_images')} distinct images of {len(paths)} files")
    for rep in range(reps):
        seconds, _ = raw_read_hash(paths, workers)
        result.raw.append(seconds)
        result.raw_cpu.append(LAST_CPU["raw"])
        seconds, _ = lamina_cli([root], store)
        result.cli.append(seconds)
        result.cli_cpu.append(LAST_CPU["lamina"])
        result.inproc.append(lamina_inproc([root], store))
        print(
            f"    rep {rep + 1}: raw {result.raw[-1]:.2f} s, lamina CLI {result.cli[-1]:.2f} s, "
            f"scan() {result.inproc[-1]['total']:.2f} s",
            flush=True,
        )
    return result


@dataclass
class Steady:
    """Per-file cost on one core, warm cache: what a scan would approach on an endless
    collection of such files, once the fixed costs no longer count."""

    corpus: str
    files: int
    size: int
    raw_s: float  # plain open + read + SHA-256 of every sampled file, one process
    probe_s: float  # lamina's ScanPass.process over the same files (hash, header, Arrow rows)

    @property
    def raw_us(self) -> float:
        return self.raw_s / self.files * 1e6

    @property
    def probe_us(self) -> float:
        return self.probe_s / self.files * 1e6

    @property
    def ratio(self) -> float:
        return self.raw_s / self.probe_s


def steady_state(corpus: str, root: Path, limit: int, reps: int) -> Steady:
    """Median of `reps` interleaved timings of raw and of lamina's probe, one process."""
    import pyarrow as pa

    from lamina.passes.scan import ScanPass

    paths = list_paths(root)[:limit]
    size = sum(os.path.getsize(p) for p in paths)
    rels = [os.path.relpath(p, root) for p in paths]
    batches = [
        pa.table(
            {
                "file_key": [str(i) for i in range(a, b)],
                "abs_path": paths[a:b],
                "rel_path": rels[a:b],
            }
        )
        for a, b in _ranges(len(paths), 1024)  # lamina's chunks
    ]
    scan_pass = ScanPass()
    hash_paths(paths)  # warm the page cache and lamina's imports / plugin registry
    for batch in batches:
        scan_pass.process(batch)
    raw, probe = [], []
    for _ in range(max(3, reps)):
        t0 = time.perf_counter()
        hash_paths(paths)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for batch in batches:
            scan_pass.process(batch)
        probe.append(time.perf_counter() - t0)
    return Steady(corpus, len(paths), size, statistics.median(raw), statistics.median(probe))


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 1
    return {
        "nproc": str(nproc),
        "cpu_count": str(os.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "commit": commit,
    }


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def _rate(files: int, size: int, seconds: float) -> str:
    return f"{files / seconds:,.0f} | {size / MB / seconds:,.0f}"


def render(
    plan: Plan,
    info: dict[str, str],
    command: str,
    tps: list[Throughput],
    peaks: list[Peak],
    load: tuple[float, float],
    steady: list[Steady],
) -> str:
    lines = [
        "# Scan benchmark",
        "",
        f"- Date: {date.today().isoformat()}",
        f"- Machine: {info['nproc']} cores (`nproc`; os.cpu_count() {info['cpu_count']}), "
        f"{info['cpu']}, {info['ram']} RAM, {info['os']}",
        f"- Python {info['python']}, lamina commit `{info['commit']}` (plus any uncommitted "
        "changes in the working tree)",
        f"- Command: `{command}` ({plan.name} plan, {plan.reps} measured rep(s) after one warm-up)",
        f"- Load average (1 min) before / after the run: {load[0]:.2f} / {load[1]:.2f} on "
        f"{info['nproc']} cores (other work on the machine shows up in every figure)",
        "- Units: MB = 10^6 bytes. Rates use the median wall time; ratio = lamina rate / raw "
        "rate (= raw median time / lamina median time).",
        "",
        "## Throughput against the physical limit (warm page cache)",
        "",
        "raw = plain read + SHA-256 loop on all cores (fork Pool, chunks of paths, 1 MiB reads)."
        " lamina = `lamina --store X scan SRC --json` in a subprocess, fresh store each time"
        " (interpreter start, imports, worker spawn, walk, probe and commit included).",
        "",
        "| corpus | files | MB | raw files/s | raw MB/s | lamina files/s | lamina MB/s "
        "| lamina/raw | target | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    for t in tps:
        lines.append(
            f"| {t.corpus} | {t.files:,} | {t.size / MB:,.0f} | {_rate(t.files, t.size, t.raw_s)} "
            f"| {_rate(t.files, t.size, t.cli_s)} | {t.ratio:.0%} "
            + (
                f"| ≥ {t.target:.0%} | {_verdict(t.ratio >= t.target)} |"
                if t.judged
                else "| — | info |"
            )
        )
    lines += [
        "",
        "Wall times (s) of every measured rep:",
        "",
        "| corpus | raw | lamina CLI | in-process scan() |",
        "|---|---|---|---|",
    ]
    for t in tps:
        cells = [t.raw, t.cli, [r["total"] for r in t.inproc]]
        lines.append(
            f"| {t.corpus} | " + " | ".join(", ".join(f"{s:.2f}" for s in c) for c in cells) + " |"
        )
    lines += [
        "",
        "CPU seconds (user + system, every process of each side: raw's pool, lamina's CLI "
        "and its workers) of every measured rep. Other work on the machine moves CPU time "
        "far less than wall time: raw CPU / lamina CPU is the ratio both sides would reach "
        "on cores of their own, were both CPU-bound.",
        "",
        "| corpus | raw CPU s | lamina CPU s | raw/lamina CPU |",
        "|---|---|---|--:|",
    ]
    for t in tps:
        lines.append(
            f"| {t.corpus} | {', '.join(f'{s:.2f}' for s in t.raw_cpu)} "
            f"| {', '.join(f'{s:.2f}' for s in t.cli_cpu)} | {t.cpu_ratio:.0%} |"
        )
    lines += [
        "",
        "### Where lamina's time goes (medians, s)",
        "",
        "CLI overhead = CLI wall time − in-process `scan()` (interpreter start, imports, store "
        "creation, summary). `scan()` runs in a fresh interpreter with the clock started after "
        "the imports; walk includes starting any worker processes (the scan starts them "
        "while it walks); probe = the map pass (waiting for workers still starting included).",
        "",
        "| corpus | raw | lamina CLI | CLI overhead | scan() | walk | probe | commit "
        "| scan() files/s | scan()/raw |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for t in tps:
        total = t.inproc_part("total")
        lines.append(
            f"| {t.corpus} | {t.raw_s:.2f} | {t.cli_s:.2f} | {t.cli_s - total:.2f} | {total:.2f} "
            f"| {t.inproc_part('walk'):.2f} | {t.inproc_part('probe'):.2f} "
            f"| {t.inproc_part('commit'):.2f} | {t.files / total:,.0f} | {t.raw_s / total:.0%} |"
        )
    tiny = [t for t in tps if t.corpus.startswith("tiny PNGs")]
    if len(tiny) >= 2 and tiny[-1].files > tiny[0].files:
        small, big = tiny[0], tiny[-1]
        extra = big.files - small.files
        d_raw, d_cli = big.raw_s - small.raw_s, big.cli_s - small.cli_s
        lines += [
            "",
            f"Marginal rate, tiny PNGs {small.files:,} → {big.files:,} files (the "
            f"{extra:,} extra files only, so fixed costs cancel out): raw "
            f"{extra / d_raw:,.0f} files/s, lamina {extra / d_cli:,.0f} files/s, "
            f"ratio {d_raw / d_cli:.0%}.",
        ]
    lines += [
        "",
        "### Steady state: per-file cost on one core (warm cache)",
        "",
        "raw = open, read (1 MiB blocks) and SHA-256; lamina = `ScanPass.process` over the same "
        "files in chunks of 1,024 (open, read, hash, sniff, truncation check, header, the "
        "Arrow rows), both in one process. raw/lamina here is the ratio a scan approaches "
        "on an endless collection of such files, when its fixed costs no longer count and "
        "both sides use every core alike.",
        "",
        "| corpus | files | MB | raw µs/file | lamina µs/file | raw MB/s | lamina MB/s "
        "| raw/lamina |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for st in steady:
        lines.append(
            f"| {st.corpus} | {st.files:,} | {st.size / MB:,.0f} | {st.raw_us:,.0f} "
            f"| {st.probe_us:,.0f} | {st.size / MB / st.raw_s:,.0f} "
            f"| {st.size / MB / st.probe_s:,.0f} | {st.ratio:.0%} |"
        )
    steady_by = {st.corpus: st for st in steady}
    why = []
    for t in tps:
        if not t.judged or t.ratio >= t.target:
            continue
        total = t.inproc_part("total")
        start_up = t.cli_s - total
        fixed = start_up + t.inproc_part("walk") + t.inproc_part("commit")
        st = steady_by.get(t.corpus)
        text = (
            f"- **{t.corpus}**: raw reads and hashes the whole corpus in {t.raw_s:.2f} s. "
            f"lamina's costs that do not depend on the bytes, start-up and imports "
            f"{start_up:.2f} s + walk {t.inproc_part('walk'):.2f} s + commit "
            f"{t.inproc_part('commit'):.2f} s = {fixed:.2f} s, are already "
            f"{fixed / t.raw_s:.1f}x the whole raw run; {t.target:.0%} "
            f"needs lamina ≤ {t.raw_s / t.target:.2f} s end to end. "
        )
        if st is not None:
            text += (
                f"Per file on one core, lamina's probe costs {st.probe_us:,.0f} µs against "
                f"raw's {st.raw_us:,.0f} µs ({st.probe_us / st.raw_us:.1f}x: the header "
                f"parse, the Python around each file and the Arrow row), so even with no "
                f"fixed cost the ratio would tend to {st.ratio:.0%}."
            )
        why.append(text)
    if why:
        lines += ["", "### Why the throughput target is missed", "", *why]
    lines += [
        "",
        "## Peak RSS of the CLI scan",
        "",
        "Polled with psutil every 20 ms: main = the `lamina` process; tree = the sum over it and "
        "all its descendants (worker processes, multiprocessing helpers). Summed RSS counts "
        "shared library pages once per process, so the tree figure is an upper bound. "
        "high-water = the kernel's peak RSS of the largest single process in the tree "
        "(`wait4` ru_maxrss), which no poll can miss. main PSS = the main process's "
        "proportional set size (shared pages split between the processes that map them), "
        "polled likewise.",
        "",
        "| files | sources | wall s | files/s | main peak MB | main PSS MB | tree peak MB "
        "| high-water MB |",
        "|--:|---|--:|--:|--:|--:|--:|--:|",
    ]
    for p in peaks:
        lines.append(
            f"| {p.files:,} | {' '.join(p.sources)} | {p.seconds:.1f} | {p.files / p.seconds:,.0f} "
            f"| {p.main_mb:.0f} | {p.main_pss_mb:.0f} | {p.tree_mb:.0f} | {p.hwm_mb:.0f} |"
        )
    first, last = peaks[0], peaks[-1]
    growth = last.main_mb / first.main_mb - 1
    extra = max(1, last.files - first.files)
    per_file = (last.main_mb - first.main_mb) * MB / extra
    per_file_pss = (last.main_pss_mb - first.main_pss_mb) * MB / extra
    lines += [
        "",
        f"Main-process growth from {first.files:,} to {last.files:,} files: "
        f"{last.main_mb - first.main_mb:+.0f} MB RSS ({growth:+.0%}), "
        f"{per_file / 1e3:.2f} KB RSS and {per_file_pss / 1e3:.2f} KB PSS per extra file "
        f"(extrapolated: {first.main_mb + per_file * (1e6 - first.files) / MB:,.0f}"
        " MB RSS at 1,000,000 files).",
    ]
    if len(peaks) > 2:  # past the first size: whether the growth levels off
        mid = peaks[-2]
        extra_mid = max(1, last.files - mid.files)
        lines += [
            "",
            f"From {mid.files:,} to {last.files:,} files: "
            f"{(last.main_mb - mid.main_mb) * MB / extra_mid / 1e3:.2f} KB RSS and "
            f"{(last.main_pss_mb - mid.main_pss_mb) * MB / extra_mid / 1e3:.2f} KB PSS per "
            f"extra file ({last.main_mb / mid.main_mb - 1:+.0%} main RSS).",
        ]
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | result |",
        "|---|---|:-:|",
    ]
    for t in (t for t in tps if t.judged):
        lines.append(
            f"| scan ≥ {t.target:.0%} of raw read+hash rate, {t.corpus} | {t.ratio:.0%} "
            f"| {_verdict(t.ratio >= t.target)} |"
        )
    rss_ok = last.tree_mb < TARGET_RSS_MB
    flat_ok = growth <= TARGET_RSS_GROWTH
    lines += [
        f"| peak RSS < {TARGET_RSS_MB:.0f} MB at {last.files:,} files (whole process tree) "
        f"| {last.tree_mb:.0f} MB (main process {last.main_mb:.0f} MB) | {_verdict(rss_ok)} |",
        f"| RSS not growing with the count (main-process peak at {last.files:,} within "
        f"{TARGET_RSS_GROWTH:.0%} of {first.files:,}) | {growth:+.0%} | {_verdict(flat_ok)} |",
        "",
    ]
    missed = [f"{t.corpus} ({t.target:.0%})" for t in tps if t.judged and t.ratio < t.target]
    notes = []
    if missed:
        notes.append(f"lamina misses the throughput target on: {', '.join(missed)}.")
    if not rss_ok:
        notes.append(f"peak RSS exceeds {TARGET_RSS_MB:.0f} MB at {last.files:,} files.")
    if not flat_ok:
        notes.append("peak RSS grows with the file count.")
    lines.append("**Verdict: " + (" ".join(notes) if notes else "every target is met.") + "**")
    lines.append("")
    if plan.name == "quick":
        lines += [
            "_A --quick smoke run: the corpora are too small for the targets to mean much._",
            "",
        ]
    return "\n".join(lines)


# -- profile ---------------------------------------------------------------------------------


def profile(plan: Plan, n: int = 2000) -> str:
    """cProfile of lamina.core.images.probe_file over n small files, one process."""
    from lamina.core.images import probe_file

    small = plan.work / "small"
    paths = list_paths(small)[:n]
    rels = [os.path.relpath(p, small) for p in paths]
    for p in paths:  # warm the cache and the plugin registry
        Path(p).read_bytes()
    probe_file(paths[0], rels[0])
    t0 = time.perf_counter()
    hash_paths(paths)
    raw = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p, r in zip(paths, rels, strict=True):
        probe_file(p, r)
    probed = time.perf_counter() - t0
    prof = cProfile.Profile()
    prof.enable()
    for p, r in zip(paths, rels, strict=True):
        probe_file(p, r)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(25)
    starts = {}
    for label, code in (
        ("python -c pass", "pass"),
        ("import lamina.passes.scan", "import lamina.passes.scan"),
        (
            "+ runner, PIL plugins, pillow_heif",
            "import lamina.passes.scan, lamina.core.runner; "
            "from lamina.core.images import _init_plugins; _init_plugins()",
        ),
    ):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - t0)
        starts[label] = statistics.median(times)
    t0 = time.perf_counter()
    subprocess.run([*lamina_command(), "--help"], check=True, capture_output=True)
    starts["lamina --help"] = time.perf_counter() - t0
    main = _profile_main(small)
    head = [
        f"{n} small files, one process, warm cache:",
        f"  raw read+sha256: {raw / n * 1e6:7.0f} µs/file",
        f"  probe_file:      {probed / n * 1e6:7.0f} µs/file "
        f"({probed / raw:.1f}x raw; header work ≈ {(probed - raw) / n * 1e6:.0f} µs/file)",
        "Interpreter start + imports (fresh process, median of 3):",
        *(f"  {k}: {v:.2f} s" for k, v in starts.items()),
        "",
    ]
    return "\n".join(head) + buf.getvalue() + main


# cProfile of the main process of a whole scan (default workers: they are forked, so the
# main process's profile is the walk, the wait on the workers and the commit).
MAIN_PROFILE = r"""
import cProfile, io, pstats, sys
import lamina.jobs.scan as m
from lamina.core.store import Store
store = Store.open(sys.argv[1], create=True)
prof = cProfile.Profile()
prof.enable()
m.scan_sources(store, sys.argv[2:], progress=False)
prof.disable()
buf = io.StringIO()
stats = pstats.Stats(prof, stream=buf).strip_dirs()
stats.sort_stats("tottime").print_stats(15)
stats.sort_stats("cumulative").print_stats(25)
print(buf.getvalue())
"""


def _profile_main(root: Path) -> str:
    """The main process of a whole scan of `root` under cProfile, in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", MAIN_PROFILE, str(Path(tmp) / "store"), str(root)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    return f"\nThe main process of a whole scan of {root.name} (cProfile):\n" + done.stdout


# -- main ------------------------------------------------------------------------------------


def only(what: str, plan: Plan, corpora: dict[str, Any], workers: int, stores: Path) -> int:
    """`--only`: one measure, printed (nothing written)."""
    if what == "small":
        t = measure_throughput("small JPEGs", corpora["small"], plan.reps, workers, stores)
        print(
            f"small JPEGs: raw {t.raw_s:.2f} s, lamina CLI {t.cli_s:.2f} s, ratio {t.ratio:.0%} "
            f"(CPU s: raw {statistics.median(t.raw_cpu):.2f}, lamina "
            f"{statistics.median(t.cli_cpu):.2f}, ratio {t.cpu_ratio:.0%}); "
            f"scan() {t.inproc_part('total'):.2f} s = walk {t.inproc_part('walk'):.2f} + "
            f"probe {t.inproc_part('probe'):.2f} + commit {t.inproc_part('commit'):.2f}"
        )
    else:
        runs = corpora["tiny"]  # 10k, 30k and 100k: flat means no growth past the first
        peaks = [peak_rss(sources, stores / f"tiny-{n}") for n, sources in runs]
        for p in peaks:
            print(
                f"{p.files:,} files: {p.seconds:.1f} s, main RSS {p.main_mb:.0f} MB, "
                f"main PSS {p.main_pss_mb:.0f} MB, tree {p.tree_mb:.0f} MB, "
                f"high-water {p.hwm_mb:.0f} MB"
            )
        for a, b in ((peaks[0], peaks[-1]), (peaks[1], peaks[-1])):
            extra = b.files - a.files
            print(
                f"{a.files:,} -> {b.files:,}, per extra file: "
                f"{(b.main_mb - a.main_mb) * MB / extra / 1e3:.2f} KB RSS, "
                f"{(b.main_pss_mb - a.main_pss_mb) * MB / extra / 1e3:.2f} KB PSS "
                f"({b.main_mb / a.main_mb - 1:+.0%} main RSS)"
            )
    shutil.rmtree(stores, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 1 min)")
    parser.add_argument("--reps", type=int, default=None, help="measured reps (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the markdown")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile probe_file over 2,000 small files (builds the small corpus)",
    )
    parser.add_argument(
        "--only",
        choices=("small", "memory"),
        help="a quick look while working, printed and not written: the small-JPEG "
        "throughput only, or the peak memory at 10k and 100k tiny files only",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.reps is not None or args.out is not None:
        plan = replace(plan, reps=args.reps or plan.reps, out=args.out or plan.out)
    t_start = time.perf_counter()
    load_before = psutil.getloadavg()[0]
    python = Path(sys.executable)
    shown = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    command = " ".join([str(shown), "bench/scan.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"corpora in {plan.work.relative_to(ROOT)}:", flush=True)
    corpora = build_corpora(plan)
    if args.profile:
        text = profile(plan)
        (plan.work / "profile-scan.txt").write_text(text)
        print(text)
        return 0
    workers = os.cpu_count() or 1
    stores = plan.work / "stores"
    stores.mkdir(parents=True, exist_ok=True)
    if args.only:
        return only(args.only, plan, corpora, workers, stores)
    print(f"throughput ({workers} workers for raw, lamina's default for lamina):", flush=True)
    tps = [
        measure_throughput("small JPEGs", corpora["small"], plan.reps, workers, stores),
        measure_throughput("large JPEGs", corpora["large"], plan.reps, workers, stores),
        # Not target corpora: how far fixed costs amortise over 10x more files, and the
        # marginal rate between the two (fixed costs cancel out).
        *(
            measure_throughput(
                f"tiny PNGs {n // 1000}k", sources[0], plan.reps, workers, stores, judged=False
            )
            for n, sources in (corpora["tiny"][0], corpora["tiny"][-1])
        ),
    ]
    print("steady state (one process, per file):", flush=True)
    steady = [
        steady_state("small JPEGs", corpora["small"], 2000, plan.reps),
        steady_state("large JPEGs", corpora["large"], 10, plan.reps),
        steady_state("tiny PNGs", corpora["tiny"][-1][1][0], 5000, plan.reps),
    ]
    for st in steady:
        print(
            f"  {st.corpus}: raw {st.raw_us:,.0f} µs/file, lamina {st.probe_us:,.0f} µs/file",
            flush=True,
        )
    print("peak RSS:", flush=True)
    peaks = []
    for n, sources in corpora["tiny"]:
        peak = peak_rss(sources, stores / f"tiny-{n}")
        if peak.files != n:
            print(f"  warning: lamina saw {peak.files} files, expected {n}")
        print(
            f"  {n:,} files: {peak.seconds:.1f} s, main {peak.main_mb:.0f} MB, "
            f"tree {peak.tree_mb:.0f} MB ({peak.samples} samples)",
            flush=True,
        )
        peaks.append(peak)
    shutil.rmtree(stores, ignore_errors=True)
    load = (load_before, psutil.getloadavg()[0])
    text = render(plan, machine(), command, tps, peaks, load, steady)
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    plan.out.write_text(text)
    print()
    print(text)
    shown_out = plan.out.relative_to(ROOT) if plan.out.is_relative_to(ROOT) else plan.out
    print(f"written to {shown_out} in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
