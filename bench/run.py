"""Benchmark of the main job, `lamina run`: wall time and peak RSS per stage at N images.

For each N the script builds (once, then reuses) a collection of N image files made from
the real photos that ship in Python packages (`lamina.sample.package_photos()`), then runs
each stage as its own process on one fresh store, in order:

    lamina --store S run SRC --labels L --stages scan --json
    lamina --store S run SRC --labels L --stages sense --json
    ... embed, cluster, tag, export, report

so that each stage's time and memory are its own, and last a second full
``lamina --store S run SRC --labels L --json`` over the unchanged store, which should
recompute nothing. Each process is timed from its start to its exit (interpreter start and
imports included) while psutil samples, every 50 ms, the RSS of the process and of the
sum over it and all its descendants (the worker processes). The time lamina itself reports
for the stage (its clock around the stage, after the imports) is listed beside it.

Collection (`/tmp/lamina-bench-run/<N>/photos`, fixed seed, reused while its marker
matches): N image files in a tree of year / event folders, ~40 to a folder. 91 % are
photos: a random 50-100 % crop of a package photo, maybe mirrored, resized to 0.3-2 MP
(log-uniform), brightness x0.8-1.25, light sensor-like noise (so they do not compress
away), JPEG q75-95 (a few PNG and WebP). The rest: 3 % exact byte copies in a `backup/`
tree, 3 % near duplicates (the same crop at 30-90 % of the pixels, another quality and
brightness), 1 % thumbnails of 30-120 px, 1 % very dark shots, 1 % broken image files
(truncated, zero-byte, garbage), 2 % more non-image files on top (notes, JSON, sidecars,
Thumbs.db).
Labels for the tag stage: `/tmp/lamina-bench-run/labels.txt` (10 labels).

Usage::

    .venv/bin/python bench/run.py --n 1000 --n 10000        # -> bench/results/run.md (~12 min)
    .venv/bin/python bench/run.py --n 200 --out /tmp/run-200.md   # a quick look
    .venv/bin/python bench/run.py --n 1000 --stages scan,sense --workers 2
    .venv/bin/python bench/run.py --n 1000 --build-only      # just the collection
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path("/tmp/lamina-bench-run")
RESULTS = ROOT / "bench" / "results" / "run.md"
PYTHON = sys.executable
GEN_VERSION = 1
SEED = 20261203
MB = 1e6
POLL_S = 0.05
STAGES = ("scan", "sense", "embed", "cluster", "tag", "export", "report")
HEAVY = ("scan", "sense", "embed", "tag")  # per-image stages: images/s is reported for them
LABELS = (
    "cat", "cup of coffee", "rocket", "astronaut", "motorcycle", "flower", "coins",
    "moon", "brick wall", "person",
)  # fmt: skip
# Photos too small or too synthetic to pass for a camera's: left out of the collection.
LEFT_OUT = ("microaneurysms", "present_icon", "mpl_logo", "colorwheel", "logo")
NOISE_SIDE = 2048  # the noise bank; also the longest side a photo gets
NOTES = (
    "Notes for %s\n\nTaken %s.\n",
    '{"album": "%s", "created": "%s", "shared": false}\n',
)


# -- collection ------------------------------------------------------------------------------


@dataclass
class Spec:
    """One file of the collection: a pure function of these fields (so copies are exact)."""

    path: str
    kind: str  # photo | copy | near | tiny | dark | broken | junk
    photo: str = ""
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # top, left, h, w fractions
    flip: bool = False
    mp: float = 1.0  # megapixels of the result
    gain: float = 1.0  # brightness
    noise: int = 0  # noise-bank offset seed
    fmt: str = "JPEG"
    quality: int = 90
    damage: str = ""  # broken: truncated | empty | garbage; junk: its kind


def plan_collection(n: int, photos: list[str]) -> list[Spec]:
    """The N image files (plus 2 % non-image files) of the collection, deterministically.

    Example:
        >>> len(plan_collection(100, ["chelsea", "coffee"])) >= 100
        True
    """
    rng = np.random.default_rng([SEED, n])
    specs: list[Spec] = []
    originals: list[Spec] = []
    counters = {"IMG_": 0, "DSC_": 0, "PXL_": 0}
    events = ("birthday", "trip", "garden", "hike", "museum", "beach", "family", "work")

    def folder(i: int) -> str:
        f = i // 40
        year = 2014 + f % 11
        month = 1 + (f * 7) % 12
        sub = "/edited" if f % 9 == 4 else ""  # a few deeper folders
        return f"{year}/{year}-{month:02d} {events[f % len(events)]} {f}{sub}"

    def name(ext: str) -> str:
        prefix = list(counters)[int(rng.integers(0, len(counters)))]
        counters[prefix] += 1
        return f"{prefix}{counters[prefix]:05d}.{ext}"

    def new_photo(path_of: str, kind: str = "photo") -> Spec:
        h = float(rng.uniform(0.5, 1.0))
        w = float(rng.uniform(0.5, 1.0))
        fmt = str(rng.choice(["JPEG", "PNG", "WEBP"], p=[0.94, 0.03, 0.03]))
        ext = {"JPEG": str(rng.choice(["jpg", "JPG", "jpeg"], p=[0.7, 0.25, 0.05]))}.get(
            fmt, fmt.lower()
        )
        return Spec(
            path=f"{path_of}/{name(ext)}",
            kind=kind,
            photo=str(rng.choice(photos)),
            crop=(float(rng.uniform(0, 1 - h)), float(rng.uniform(0, 1 - w)), h, w),
            flip=bool(rng.random() < 0.5),
            mp=float(math.exp(rng.uniform(math.log(0.3), math.log(2.0)))),
            gain=float(rng.uniform(0.8, 1.25)),
            noise=int(rng.integers(0, 2**31)),
            fmt=fmt,
            quality=int(rng.integers(75, 96)),
        )

    for i in range(n):
        where = folder(i)
        r = rng.random()
        if r < 0.03 and originals:  # an exact byte copy, kept in a backup tree
            base = originals[int(rng.integers(0, len(originals)))]
            specs.append(Spec(**{**base.__dict__, "path": f"backup/{base.path}", "kind": "copy"}))
        elif r < 0.06 and originals:  # the same shot saved again: other size / quality / light
            base = originals[int(rng.integers(0, len(originals)))]
            stem = base.path.rsplit(".", 1)[0].rsplit("/", 1)[1]
            specs.append(
                Spec(
                    **{
                        **base.__dict__,
                        "path": f"{where}/{stem}-{int(rng.integers(1, 9))}.jpg",
                        "kind": "near",
                        "fmt": "JPEG",
                        "mp": base.mp * float(rng.uniform(0.3, 0.9)),
                        "gain": base.gain * float(rng.uniform(0.95, 1.08)),
                        "quality": int(rng.integers(60, 90)),
                    }
                )
            )
        elif r < 0.07:
            specs.append(new_photo(where, "tiny"))
            specs[-1].mp = float(rng.uniform(0.001, 0.008))  # about 30-120 px a side
        elif r < 0.08:
            specs.append(new_photo(where, "dark"))
            specs[-1].gain = float(rng.uniform(0.05, 0.15))
        elif r < 0.09:
            damage = str(rng.choice(["truncated", "truncated", "empty", "garbage"]))
            spec = new_photo(where, "broken")
            spec.damage = damage
            spec.noise = int(rng.integers(0, 2**31))
            specs.append(spec)
        else:
            specs.append(new_photo(where))
            originals.append(specs[-1])
    for j in range(max(1, n // 50)):  # non-image files that live among photos
        where = folder(int(rng.integers(0, n)))
        kind = str(rng.choice(["txt", "json", "xmp", "db"]))
        file = {"txt": f"notes-{j}.txt", "json": f"album-{j}.json", "db": "Thumbs.db"}.get(
            kind, f"IMG_{j:05d}.xmp"
        )
        specs.append(Spec(path=f"{where}/{file}", kind="junk", damage=kind, noise=j))
    seen: set[str] = set()
    for spec in specs:  # the name counters can repeat a name in a folder: make it unique
        while spec.path.lower() in seen:
            stem, ext = spec.path.rsplit(".", 1)
            spec.path = f"{stem}_1.{ext}"
        seen.add(spec.path.lower())
    return specs


_PHOTOS: dict[str, np.ndarray] = {}
_NOISE: np.ndarray | None = None


def _worker_init() -> None:
    global _NOISE
    from lamina.sample import package_photos

    _PHOTOS.update(package_photos())
    # Light sensor-like noise (sigma 3), drawn once and cut at random offsets: upscaled
    # package photos would otherwise compress to a fraction of a camera file's size.
    rng = np.random.default_rng([SEED, 1])
    _NOISE = rng.normal(0, 3, (NOISE_SIDE, NOISE_SIDE, 3)).round().astype(np.int16)


def render_file(spec: Spec) -> bytes:
    """The bytes of one file (call `_worker_init` first in this process)."""
    from PIL import Image

    if spec.kind == "junk":
        now = f"2024-0{1 + spec.noise % 9}-1{spec.noise % 10}"
        if spec.damage == "txt":
            return (NOTES[0] % (spec.path, now)).encode()
        if spec.damage == "json":
            return (NOTES[1] % (spec.path, now)).encode()
        if spec.damage == "xmp":
            return (
                b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='
                b'"http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>\n'
            )
        return np.random.default_rng([SEED, 2, spec.noise]).bytes(4096 + spec.noise % 8192)
    if spec.kind == "broken" and spec.damage == "empty":
        return b""
    if spec.kind == "broken" and spec.damage == "garbage":
        return np.random.default_rng([SEED, 3, spec.noise]).bytes(20_000 + spec.noise % 50_000)
    src = _PHOTOS[spec.photo]
    h, w = src.shape[:2]
    top, left, ch, cw = spec.crop
    y0, x0 = int(top * h), int(left * w)
    y1, x1 = max(y0 + 8, int((top + ch) * h)), max(x0 + 8, int((left + cw) * w))
    im = Image.fromarray(np.ascontiguousarray(src[y0:y1, x0:x1]))
    if spec.flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = math.sqrt(spec.mp * 1e6 / (im.width * im.height))
    scale = min(scale, NOISE_SIDE / max(im.size))
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im = im.resize(size, Image.Resampling.BICUBIC)
    a = np.asarray(im).astype(np.int16)
    if spec.gain != 1.0:
        a = (a * spec.gain).astype(np.int16)
    if min(size) >= 64:
        assert _NOISE is not None
        rng = np.random.default_rng([SEED, 4, spec.noise])
        oy = int(rng.integers(0, NOISE_SIDE - size[1] + 1))
        ox = int(rng.integers(0, NOISE_SIDE - size[0] + 1))
        a = a + _NOISE[oy : oy + size[1], ox : ox + size[0]]
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    params: dict[str, Any] = {"quality": spec.quality} if spec.fmt in ("JPEG", "WEBP") else {}
    im.save(buf, format=spec.fmt, **params)
    data = buf.getvalue()
    if spec.kind == "broken":  # truncated: the first 30-70 % of the file
        keep = 0.3 + 0.4 * (spec.noise % 1000) / 1000
        data = data[: int(len(data) * keep)]
    return data


def _write(job: tuple[str, Spec]) -> int:
    root, spec = job
    path = Path(root) / spec.path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = render_file(spec)
    path.write_bytes(data)
    return len(data)


def build_collection(n: int, cache: Path = CACHE, workers: int | None = None) -> Path:
    """The collection of `n` image files under `cache/<n>/photos`, built once and reused.

    Example:
        >>> build_collection(200)  # doctest: +SKIP
        PosixPath('/tmp/lamina-bench-run/200/photos')
    """
    from lamina.sample import package_photos

    base = cache / str(n)
    photos_dir = base / "photos"
    marker = base / "marker.json"
    want = {"version": GEN_VERSION, "seed": SEED, "n": n}
    if marker.is_file():
        have = json.loads(marker.read_text())
        if {k: have.get(k) for k in want} == want:
            return photos_dir
    shutil.rmtree(base, ignore_errors=True)
    photos_dir.mkdir(parents=True)
    names = sorted(k for k in package_photos() if k not in LEFT_OUT)
    specs = plan_collection(n, names)
    t0 = time.perf_counter()
    jobs = [(str(photos_dir), s) for s in specs]
    procs = workers or os.cpu_count() or 1
    with multiprocessing.get_context("fork").Pool(procs, initializer=_worker_init) as pool:
        sizes = pool.map(_write, jobs, chunksize=16)
    kinds: dict[str, int] = {}
    for s in specs:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    info = {
        **want,
        "files": len(specs),
        "bytes": sum(sizes),
        "kinds": kinds,
        "folders": len({s.path.rsplit("/", 1)[0] for s in specs}),
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    marker.write_text(json.dumps(info, indent=1))
    return photos_dir


def write_labels(cache: Path = CACHE) -> Path:
    path = cache / "labels.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# lamina run benchmark labels\n" + "\n".join(LABELS) + "\n"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Measured:
    """One timed subprocess: wall seconds, peak RSS of its process tree, its output."""

    cmd: list[str]
    rc: int
    seconds: float
    tree_mb: float  # peak of the summed RSS of the process and all its descendants
    main_mb: float  # peak RSS of the process itself
    hwm_mb: float  # kernel high-water mark of the largest waited-for process (ru_maxrss)
    procs: int  # most processes seen at once in the tree
    stdout: str
    stderr: str


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run cmd, polling the RSS of it and its descendants every POLL_S seconds."""
    main = tree = procs = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
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
            main = max(main, m)
            tree = max(tree, m + sum(_rss(c) for c in children))
            procs = max(procs, 1 + len(children))
            time.sleep(POLL_S)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return Measured(
        cmd,
        os.waitstatus_to_exitcode(status),
        seconds,
        tree / MB,
        main / MB,
        usage.ru_maxrss * 1024 / MB,
        procs,
        stdout,
        stderr,
    )


def lamina_command() -> list[str]:
    """`lamina` as a subprocess: `python -m lamina.cli`, or, while the `run` verb is not yet
    imported by `lamina/cli/__init__.py`, the same group with `lamina.cli.run` imported."""
    probe = subprocess.run(
        [PYTHON, "-c", "from lamina.cli import main; print('run' in main.commands)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if probe.stdout.strip() == "True":
        return [PYTHON, "-m", "lamina.cli"]
    code = "import lamina.cli.run; from lamina.cli import main; main(prog_name='lamina')"
    return [PYTHON, "-c", code]


@dataclass
class Step:
    """One `lamina run` process: a stage on its own, or the whole second run."""

    name: str
    m: Measured
    summary: dict[str, Any] | None = None
    error: str = ""

    @property
    def stage(self) -> dict[str, Any]:
        return ((self.summary or {}).get("stages") or {}).get(self.name, {})


@dataclass
class Result:
    n: int
    collection: dict[str, Any]
    counts: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    rerun: Step | None = None
    command: str = ""


def _summary(stdout: str) -> dict[str, Any] | None:
    i = stdout.find("{")
    if i < 0:
        return None
    try:
        return json.loads(stdout[i:])
    except json.JSONDecodeError:
        return None


def _error_line(m: Measured) -> str:
    lines = [ln.strip() for ln in m.stderr.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else f"exit code {m.rc}"


def store_counts(store: Path) -> dict[str, Any]:
    """Files by status and distinct images in the store (after the scan)."""
    from lamina.core.store import Store

    s = Store.open(store)
    rows = s.sql("select status, count(*) as n from files group by 1 order by 1").to_pylist()
    status = {r["status"]: r["n"] for r in rows}
    images = s.sql("select count(*) as n from images").to_pylist()[0]["n"]
    return {"files": sum(status.values()), "status": status, "images": images}


def bench_n(
    n: int, stages: list[str], workers: int | None, lamina: list[str], echo: bool = True
) -> Result:
    src = build_collection(n)
    labels = write_labels()
    collection = json.loads((src.parent / "marker.json").read_text())
    store = src.parent / "store"
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    tail = ["--labels", str(labels), "--json"]
    if workers:
        tail += ["--workers", str(workers)]
    base = [*lamina, "--store", str(store), "run", str(src)]
    result = Result(n, collection, {})
    result.command = (
        f"lamina --store {CACHE}/<N>/store run {CACHE}/<N>/photos --labels {labels} --json"
        + (f" --workers {workers}" if workers else "")
        + " --stages <stage>"
    )
    for stage in stages:
        m = measure([*base, *tail, "--stages", stage], env)
        step = Step(stage, m, _summary(m.stdout))
        if m.rc not in (0, 1) or step.summary is None:
            step.error = _error_line(m)
        result.steps.append(step)
        if stage == "scan" and not step.error:
            result.counts = store_counts(store)
        if echo:
            state = step.error or step.stage.get("message", "")
            print(
                f"  N={n} {stage:8s} {m.seconds:7.1f} s  tree {m.tree_mb:6.0f} MB  {state}",
                flush=True,
            )
    m = measure([*base, *tail, "--stages", ",".join(stages)], env)
    result.rerun = Step("rerun", m, _summary(m.stdout))
    if m.rc not in (0, 1) or result.rerun.summary is None:
        result.rerun.error = _error_line(m)
    if echo:
        up = (result.rerun.summary or {}).get("up_to_date")
        print(f"  N={n} rerun    {m.seconds:7.1f} s  up_to_date={up}", flush=True)
    return result


# -- report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "src"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "src"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": f"{mem_kb / 2**20:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "commit": (commit or "unknown")
        + (" (with the working tree's changes)" if dirty or untracked else ""),
    }


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _rate(images: int, seconds: float | None) -> str:
    return f"{images / seconds:,.1f}" if seconds else "-"


def render_n(r: Result) -> list[str]:
    c = r.collection
    images = r.counts.get("images", 0)
    status = ", ".join(f"{k} {v:,}" for k, v in r.counts.get("status", {}).items())
    lines = [
        f"## N = {r.n:,}",
        "",
        f"Collection: {c['files']:,} files ({c['bytes'] / MB:,.0f} MB) in {c['folders']} "
        f"folders; kinds: {', '.join(f'{k} {v}' for k, v in sorted(c['kinds'].items()))}. "
        f"After the scan: {r.counts.get('files', 0):,} files ({status or '-'}), "
        f"{images:,} distinct images.",
        "",
        "| stage | wall s | lamina's stage s | images/s (wall) | peak RSS tree MB "
        "| peak RSS main MB | largest process MB | processes | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    total = 0.0
    peak = 0.0
    for s in r.steps:
        m = s.m
        total += m.seconds
        peak = max(peak, m.tree_mb)
        inner = s.stage.get("seconds")
        rate = _rate(images, m.seconds) if s.name in HEAVY and not s.error else "-"
        what = (
            f"**failed**: `{s.error}`"
            if s.error
            else str(s.stage.get("message", "")).replace("|", "/")[:160]
        )
        lines.append(
            f"| {s.name} | {m.seconds:,.1f} | {inner if inner is not None else '-'} | {rate} "
            f"| {m.tree_mb:,.0f} | {m.main_mb:,.0f} | {m.hwm_mb:,.0f} | {m.procs} | {what} |"
        )
    lines.append(f"| **all stages** | **{total:,.1f}** | | | **{peak:,.0f}** | | | | |")
    if r.rerun:
        m = r.rerun.m
        up = (r.rerun.summary or {}).get("up_to_date")
        what = (
            f"**failed**: `{r.rerun.error}`"
            if r.rerun.error
            else ("nothing recomputed (up_to_date)" if up else "**recomputed something**")
        )
        inner = sum(
            v.get("seconds", 0) for v in ((r.rerun.summary or {}).get("stages") or {}).values()
        )
        lines.append(
            f"| second full run, unchanged store | {m.seconds:,.1f} | {inner:.1f} | - "
            f"| {m.tree_mb:,.0f} | {m.main_mb:,.0f} | {m.hwm_mb:,.0f} | {m.procs} | {what} |"
        )
    lines += ["", *notes(r), ""]
    return lines


def rerun_note(r: Result) -> list[str]:
    """Where the second run's time went, stage by stage, and which stages did work."""
    stages = ((r.rerun.summary or {}).get("stages") or {}) if r.rerun else {}
    if not stages:
        return []
    order = [s for s in STAGES if s in stages]
    each = ", ".join(f"{s} {stages[s].get('seconds', 0):.1f}" for s in order)
    worked = [s for s in order if stages[s].get("worked")]
    return [
        f"- Second run, lamina's time per stage (s): {each}. Stages that reported work: "
        f"{', '.join(worked) or 'none'}."
    ]


def notes(r: Result) -> list[str]:
    """Which stage dominates, from the figures themselves."""
    ok = [s for s in r.steps if not s.error]
    failed = [s.name for s in r.steps if s.error]
    out: list[str] = []
    if ok:
        total = sum(s.m.seconds for s in ok)
        ranked = sorted(ok, key=lambda s: -s.m.seconds)
        share = ", ".join(f"{s.name} {100 * s.m.seconds / total:.0f} %" for s in ranked[:4])
        out.append(f"- Share of the measured stages' wall time: {share}.")
        big = max(ok, key=lambda s: s.m.tree_mb)
        out.append(
            f"- Largest memory: {big.name}, {big.m.tree_mb:,.0f} MB summed over "
            f"{big.m.procs} processes (largest single process {big.m.hwm_mb:,.0f} MB)."
        )
    out += rerun_note(r)
    if failed:
        out.append(f"- Not measured (the stage failed or is not built yet): {', '.join(failed)}.")
    return out


STAGE_NOTES = """\
## Why the stages cost what they do

- **embed** runs EfficientNet-Lite0 on every image (one worker process per core, one
  torch thread each): a forward pass is ~45-60 ms an image on one core against ~10 ms for
  the reduced decode and resize, so the stage is bound by the model and grows linearly
  with the images, after a fixed ~3-5 s to start the workers and load torch and the
  weights in each (see `bench/results/embed.md`).
- **tag** with the offline tagger runs the `classify` pass: the same network again, this
  time with its classifier, over every image (the stored embeddings are normalised pooled
  features and cannot give the logits), so it costs about what embed costs; then the main
  process embeds the labels and ImageNet's 1000 class names with all-MiniLM-L6-v2 and
  scores every image (hence its ~1.2 GB main-process RSS).
- **sense** decodes each image once at a reduced JPEG scale and computes the signals,
  perceptual hashes and a 512 px thumbnail from that decode; duplicates and flags then run
  over the tables. Cheaper per image than a forward pass.
- **scan** reads and hashes every byte and reads headers: per-file costs, fast.
- **cluster** (k-means, outliers, semantic duplicates, the 2-D map) has a large fixed
  cost: importing UMAP and its first fit, which JIT-compiles numba code, take ~8-10 s in
  every fresh process here (a first 200-point fit: ~8 s; a second 2,000-point fit in the
  same process: ~4 s), so at 1,000 images it is mostly that; at 10,000 the fits themselves
  grow. **export** and **report** work on tables and the thumbnails sense made.
- Every row includes interpreter start and imports (wall s against lamina's stage s).
  Every row is a separate process, so each row's peak RSS is that stage's alone; the
  summed tree RSS counts shared library pages once per process and overstates a little.
"""


def method(argv: list[str], results: list[Result]) -> str:
    """The paragraph that says how the figures were taken."""
    from lamina.sample import package_photos

    photos = len([k for k in package_photos() if k not in LEFT_OUT])
    return (
        f"Command: `python bench/run.py {' '.join(argv)}`. Each stage ran as "
        f"`{results[0].command if results else ''}` on one fresh store, in order, then the "
        "whole run again over the unchanged store. Wall time: the process from start to exit "
        "(interpreter and imports included); lamina's stage s: the time the run summary gives "
        "the stage. Peak RSS sampled every 50 ms with psutil: *tree* = the process plus all "
        "its descendants (worker processes), *main* = the process itself, *largest process* "
        "= the kernel's high-water mark (`wait4` ru_maxrss). Images/s = distinct images in "
        "the store / wall s. The page cache was not dropped: the collection was written "
        "earlier on this machine and fits in its RAM. The collection draws on "
        f"{photos} package photos, so the more images, the more crops of one photo overlap "
        "enough to count as near duplicates (see the sense row's flags)."
    )


def render(results: list[Result], argv: list[str], load: tuple[str, str]) -> str:
    m = machine()
    lines = [
        "# `lamina run` benchmark",
        "",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Machine: {m['nproc']} "
        f"cores ({m['cpu']}), {m['ram']} RAM, {m['os']}; Python {m['python']}; lamina commit "
        f"{m['commit']}. Load average before / after: {load[0]} / {load[1]}.",
        "",
        method(argv, results),
        "",
    ]
    for r in results:
        lines += render_n(r)
    if len(results) >= 2:
        a, b = results[0], results[-1]
        ratio = b.n / a.n
        rows = []
        for sa, sb in zip(a.steps, b.steps, strict=False):
            if sa.error or sb.error:
                continue
            rows.append(
                f"| {sa.name} | {sb.m.seconds / sa.m.seconds:.1f}x "
                f"| {sb.m.tree_mb / max(sa.m.tree_mb, 1):.2f}x |"
            )
        lines += [
            f"## Scaling from N = {a.n:,} to N = {b.n:,} ({ratio:.0f}x the images)",
            "",
            "| stage | wall time | peak RSS tree |",
            "|---|---:|---:|",
            *rows,
            "",
        ]
    lines.append(STAGE_NOTES)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, action="append", help="images (repeat: --n 1000 --n 10000)")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in run order")
    ap.add_argument("--workers", type=int, default=None, help="lamina run --workers")
    ap.add_argument("--out", type=Path, default=RESULTS, help="markdown report")
    ap.add_argument("--build-only", action="store_true", help="only build the collections")
    args = ap.parse_args(argv)
    ns = args.n or [1000, 10000]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    stages = [s for s in STAGES if s in stages]
    for n in ns:
        t0 = time.perf_counter()
        src = build_collection(n)
        print(f"collection N={n}: {src} ({time.perf_counter() - t0:.1f} s)", flush=True)
    if args.build_only:
        return 0
    lamina = lamina_command()
    load_before = _load()
    results: list[Result] = []
    report = ""
    for n in ns:
        results.append(bench_n(n, stages, args.workers, lamina))
        # Written after each N, so a long run that is cut short keeps what it measured.
        report = render(results, argv, (load_before, _load()))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    print(report)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
