"""Sense benchmark: lamina's `sense` against CleanVision, imagededup and fastdup.

Every tool runs on the same corpus of real package-shipped photos with ground truth
(bench/sense_corpus.py: duplicate groups of 10 edit kinds, hard-negative crop pairs,
labelled defects, broken files and one 100 MP JPEG), each in its own process and, for the
peers, its own venv, with default settings. Per tool the harness records the wall-clock
time and the peak RSS of the whole process tree (psutil, 20 ms polling), maps the tool's
output to duplicate pairs and per-file flags, and scores them:

* pairs: precision / recall / F1 over every within-group pair; recall per edit kind (the
  original paired with that edit); hard-negative false-positive rate. Pairs of two files
  made from one photo that are neither a group pair nor a hard negative are ignored.
* flags: precision / recall per defect type.
* files/s (corpus files / wall time) and peak RSS; lamina's ratio to the fastest peer.
* lamina's signals pass against a plain reduced-decode loop over the same files on all
  cores (``draft`` + ``thumbnail`` to 512 px, fork Pool).

The lamina side is ``lamina --store S scan CORPUS`` then ``lamina --store S sense`` (timed
together). If ``sense`` is not available yet it is reported as such and the peers still run.

Usage::

    .venv/bin/python bench/sense.py                 # full run; writes bench/results/sense.md
    .venv/bin/python bench/sense.py --reps 1        # one timed run per tool
    .venv/bin/python bench/sense.py --only lamina   # lamina only (no peers; --out elsewhere)
    .venv/bin/python bench/sense.py --setup         # create the peer venvs (pip, minutes)
    .venv/bin/python bench/sense.py --baseline-src /tmp/base/src  # + lamina of another tree

Peers live in bench/work/venv-<peer> (see --setup for the exact pip commands).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sense_corpus  # bench/ is not a package: found through sys.path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
SENSE = WORK / "sense"
CORPUS = SENSE / "corpus"
PEERS = ROOT / "bench" / "peers"
RESULTS = ROOT / "bench" / "results" / "sense.md"
MARKER = "@@RESULT@@ "
MB = 1e6

TARGET_SPEEDUP = 3.0
TARGET_F1 = 0.99
TARGET_ROT_RECALL = 0.95
TARGET_HN_FP = 0.02
TARGET_DEFECT = 0.90
TARGET_PSS_MB = 512.0
TARGET_SIGNALS = 0.50
LOOP_SIZE = 512

IMAGEDEDUP_METHODS = ("PHash", "DHash")  # the two the speed target names

# tool flag -> ground-truth defect
LAMINA_FLAGS = {
    "dark": "dark",
    "light": "light",
    "blurry": "blurry",
    "low_information": "low_information",
    "grayscale": "grayscale",
    "odd_aspect": "odd_aspect",
    "odd_size": "odd_size",
    "tiny": "tiny",
    "huge": "huge",
    "noisy": "noisy",
    "text_heavy": "text_heavy",
}
CLEANVISION_FLAGS = {
    "dark": "dark",
    "light": "light",
    "blurry": "blurry",
    "low_information": "low_information",
    "grayscale": "grayscale",
    "odd_aspect_ratio": "odd_aspect",
    "odd_size": "odd_size",
}


# -- running a tool --------------------------------------------------------------------------


@dataclass
class Measured:
    """One timed subprocess: wall seconds, peak RSS of its process tree, its output."""

    cmd: list[str]
    rc: int
    seconds: float
    tree_mb: float  # peak of the summed PSS of the process and all its descendants
    main_mb: float  # peak PSS of the process itself
    hwm_mb: float  # kernel high-water mark of the largest waited-for process (ru_maxrss)
    stdout: str
    stderr: str
    worker_mb: float = 0.0  # peak PSS of the largest descendant (a worker)
    cpu_s: float = 0.0  # user + system CPU seconds of the process and its reaped descendants


def _pss(proc: psutil.Process) -> int:
    """Proportional set size: shared pages split between the processes that map them, so
    the PSS of a process tree adds up to what it really holds (RSS counts them in each)."""
    try:
        return int(proc.memory_full_info().pss)
    except psutil.Error:
        return 0


def measure(cmd: list[str], env: dict[str, str] | None = None, interval: float = 0.05) -> Measured:
    """Run cmd, polling the PSS of it and its descendants every `interval` seconds."""
    main = tree = worker = 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        ps = psutil.Process(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            m = _pss(ps)
            try:
                children = [_pss(c) for c in ps.children(recursive=True)]
            except psutil.Error:
                children = []
            main, tree = max(main, m), max(tree, m + sum(children))
            worker = max(worker, *children, 0)
            time.sleep(interval)
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
        stdout,
        stderr,
        worker / MB,
        usage.ru_utime + usage.ru_stime,
    )


def parse_result(stdout: str) -> dict[str, Any] | None:
    i = stdout.rfind(MARKER)
    if i < 0:
        return None
    return json.loads(stdout[i + len(MARKER) :].split("\n", 1)[0])


def venv_python(peer: str) -> Path:
    return WORK / f"venv-{peer}" / "bin" / "python"


def setup(cleanvision: bool = False) -> int:
    """The peers' venvs: bench/peers/setup.sh (kept for `--setup`)."""
    cmd = ["bash", str(PEERS / "setup.sh"), *(["--cleanvision"] if cleanvision else [])]
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def lamina_exe() -> str:
    exe = Path(sys.executable).with_name("lamina")
    return str(exe) if exe.exists() else (shutil.which("lamina") or "lamina")


# -- ground truth and scoring ----------------------------------------------------------------

Pair = tuple[str, str]


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


class Truth:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.files: dict[str, dict[str, Any]] = data["files"]
        self.groups: dict[str, list[str]] = data["groups"]
        self.positives: set[Pair] = {
            _pair(a, b)
            for members in self.groups.values()
            for i, a in enumerate(members)
            for b in members[i + 1 :]
        }
        self.hard_negatives: set[Pair] = {_pair(h["a"], h["b"]) for h in data["hard_negatives"]}
        # (original, edit) per edit kind
        self.kind_pairs: dict[str, set[Pair]] = defaultdict(set)
        for members in self.groups.values():
            original = next(m for m in members if self.files[m]["kind"] == "original")
            for m in members:
                if m != original:
                    self.kind_pairs[self.files[m]["kind"]].add(_pair(original, m))

    def classify(self, p: Pair) -> str:
        if p in self.positives:
            return "pos"
        if p in self.hard_negatives:
            return "hn"
        oa, ob = self.files[p[0]]["origin"], self.files[p[1]]["origin"]
        if oa is not None and oa == ob:
            return "ignored"
        return "neg"

    def scored(self, defect: str, universe: set[str]) -> set[str]:
        """The files of universe scored for defect (borderline ones are left out)."""
        return {r for r in universe if defect not in self.files[r].get("unscored", ())}

    def with_defect(self, defect: str, universe: set[str]) -> set[str]:
        return {r for r in universe if defect in self.files[r]["defects"]}


@dataclass
class PairScore:
    found: int
    tp: int
    fp_neg: int
    fp_hn: int
    ignored: int
    precision: float
    recall: float
    f1: float
    hn_rate: float
    kind_recall: dict[str, float]
    worst_fp: list[Pair] = field(default_factory=list)


def score_pairs(truth: Truth, pairs: set[Pair]) -> PairScore:
    pairs = {p for p in pairs if p[0] != p[1] and p[0] in truth.files and p[1] in truth.files}
    counts: dict[str, int] = defaultdict(int)
    fps: list[Pair] = []
    for p in pairs:
        c = truth.classify(p)
        counts[c] += 1
        if c == "neg":
            fps.append(p)
    tp, neg, hn = counts["pos"], counts["neg"], counts["hn"]
    precision = tp / (tp + neg + hn) if tp + neg + hn else float("nan")
    recall = tp / len(truth.positives)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    kinds = {k: len(v & pairs) / len(v) for k, v in truth.kind_pairs.items()}
    return PairScore(
        len(pairs),
        tp,
        neg,
        hn,
        counts["ignored"],
        precision,
        recall,
        f1,
        hn / len(truth.hard_negatives),
        kinds,
        sorted(fps)[:8],
    )


@dataclass
class FlagScore:
    flagged: int
    truth: int
    tp: int

    @property
    def precision(self) -> float:
        return self.tp / self.flagged if self.flagged else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / self.truth if self.truth else float("nan")


def score_flags(
    truth: Truth, flagged: dict[str, set[str]], universe: set[str]
) -> dict[str, FlagScore]:
    out = {}
    for defect, files in flagged.items():
        scored = truth.scored(defect, universe)
        files = files & scored
        want = truth.with_defect(defect, scored)
        out[defect] = FlagScore(len(files), len(want), len(files & want))
    return out


# -- tool results ----------------------------------------------------------------------------


@dataclass
class Job:
    """One tool invocation, timed `reps` times; the reps of all jobs are interleaved
    (rep 1 of every job, then rep 2...) so that load from elsewhere on the machine spreads
    over every tool alike."""

    key: str
    steps: list[list[str]]  # commands run one after the other, measured as one
    reset: Path | None = None  # a folder removed before each rep (a store, a work dir)
    env: dict[str, str] | None = None  # the environment of its commands (None: this one's)
    runs: list[Measured] = field(default_factory=list)
    parts: list[list[Measured]] = field(default_factory=list)

    def run_once(self) -> Measured:
        if self.reset is not None:
            shutil.rmtree(self.reset, ignore_errors=True)
        parts = []
        for cmd in self.steps:
            parts.append(measure(cmd, self.env))
            if parts[-1].rc not in (0, 1):
                break
        combined = Measured(
            [c for p in parts for c in [*p.cmd, "&&"]][:-1],
            parts[-1].rc,
            sum(p.seconds for p in parts),
            max(p.tree_mb for p in parts),
            max(p.main_mb for p in parts),
            max(p.hwm_mb for p in parts),
            parts[-1].stdout,
            parts[-1].stderr,
            max(p.worker_mb for p in parts),
            sum(p.cpu_s for p in parts),
        )
        self.parts.append(parts)
        self.runs.append(combined)
        return combined


@dataclass
class ToolRun:
    name: str  # row label
    tool: str  # peer / lamina
    version: str
    runs: list[Measured]
    files: int  # files it was given
    universe: set[str]
    pairs: set[Pair] | None = None  # None: this run reports no pairs
    flags: dict[str, set[str]] = field(default_factory=dict)
    note: str = ""
    ok: bool = True  # completed over its input (counts for files/s and "fastest peer")
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def tree_mb(self) -> float:
        return max(r.tree_mb for r in self.runs)

    @property
    def hwm_mb(self) -> float:
        return max(r.hwm_mb for r in self.runs)

    @property
    def worker_mb(self) -> float:
        return max(r.worker_mb for r in self.runs)

    @property
    def cpu_s(self) -> float:
        return statistics.median(r.cpu_s for r in self.runs)

    @property
    def main_mb(self) -> float:
        return max(r.main_mb for r in self.runs)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


def _shown(cmd: list[str]) -> str:
    parts = []
    for c in cmd:
        p = Path(c)
        if p.is_absolute() and p.is_relative_to(ROOT):
            c = str(p.relative_to(ROOT))
        parts.append(c if " " not in c else repr(c))
    return " ".join(parts)


def decodable_listing(truth: Truth) -> tuple[Path, set[str]]:
    decodable = sorted(r for r, f in truth.files.items() if "broken" not in f["defects"])
    listing = SENSE / "decodable.txt"
    listing.write_text("\n".join(decodable) + "\n")
    return listing, set(decodable)


def make_jobs(
    truth: Truth, only: str, cleanvision: bool = False, baseline_src: Path | None = None
) -> list[Job]:
    """The jobs of one size. `baseline_src`: also lamina run from that `src` folder (another
    checkout: the code before a change), as "lamina baseline", for a before/after ratio
    measured side by side."""
    jobs: list[Job] = []
    if only in ("peers", "all"):
        if cleanvision:  # not a speed peer: its quality flags only
            cv = [str(venv_python("cleanvision")), str(PEERS / "cleanvision_run.py"), str(CORPUS)]
            listing, _ = decodable_listing(truth)
            jobs.append(Job("cleanvision-data_path", [cv]))
            jobs.append(Job("cleanvision-decodable", [[*cv, str(listing)]]))
        idd = [str(venv_python("imagededup")), str(PEERS / "imagededup_run.py"), str(CORPUS)]
        jobs += [Job(f"imagededup-{m}", [[*idd, m]]) for m in IMAGEDEDUP_METHODS]
        work_dir = SENSE / "fastdup-work"
        fd = [str(venv_python("fastdup")), str(PEERS / "fastdup_run.py"), str(CORPUS)]
        jobs.append(Job("fastdup", [[*fd, str(work_dir)]], reset=work_dir))
    if only in ("lamina", "all"):
        exe = lamina_exe()
        trees: list[tuple[str, dict[str, str] | None]] = [("lamina", None)]
        if baseline_src is not None:
            env = {**os.environ, "PYTHONPATH": str(baseline_src.resolve())}
            trees.append(("lamina baseline", env))
        for name, env in trees:
            for label, args in ((name, []), (f"{name} --invariant", ["--invariant"])):
                store = SENSE / "stores" / label.replace(" ", "_")
                steps = [
                    [exe, "--store", str(store), "scan", str(CORPUS), "--json"],
                    [exe, "--store", str(store), "sense", *args, "--json"],
                ]
                jobs.append(Job(label, steps, reset=store, env=env))
    return jobs


def run_jobs(jobs: list[Job], reps: int) -> None:
    """Run every job `reps` times, interleaved; keep each job's last output in SENSE/raw/."""
    raw = SENSE / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for rep in range(reps):
        print(f"rep {rep + 1}/{reps}:", flush=True)
        for job in jobs:
            m = job.run_once()
            secs = " + ".join(f"{p.seconds:.1f}" for p in job.parts[-1])
            print(
                f"  {job.key}: {secs} s, tree peak PSS {m.tree_mb:.0f} MB, rc {m.rc}",
                flush=True,
            )
    for job in jobs:
        for k, part in enumerate(job.parts[-1]):
            (raw / f"{job.key}.{k}.stdout.txt").write_text(part.stdout)
            (raw / f"{job.key}.{k}.stderr.txt").write_text(part.stderr)


def rows_from_jobs(truth: Truth, jobs: list[Job]) -> list[ToolRun]:
    rows: list[ToolRun] = []
    for job in jobs:
        if job.key.startswith("lamina"):
            row = lamina_row(truth, job)
            if job.key == "lamina" or rows[-1].ok:
                rows.append(row)
        elif job.key.startswith("cleanvision"):
            rows.append(cleanvision_row(truth, job))
        elif job.key.startswith("imagededup"):
            rows.append(imagededup_row(truth, job))
        elif job.key == "fastdup":
            rows += fastdup_rows(truth, job)
    return rows


def _failed(job: Job, what: str) -> RuntimeError:
    last = job.runs[-1]
    return RuntimeError(f"{what} failed (exit {last.rc}):\n{last.stderr[-3000:]}")


def cleanvision_row(truth: Truth, job: Job) -> ToolRun:
    res = parse_result(job.runs[-1].stdout)
    if job.key == "cleanvision-data_path":
        name, universe = "CleanVision (data_path)", set(truth.files)
    else:
        name, universe = "CleanVision (decodable files)", decodable_listing(truth)[1]
    command = _shown(job.steps[0])
    if res is None:
        if job.key == "cleanvision-decodable":
            raise _failed(job, "CleanVision on the decodable files")
        note = f"exit {job.runs[-1].rc}: {job.runs[-1].stderr[-300:]}"
        return ToolRun(name, "cleanvision", "?", job.runs, len(universe), universe,
                       note=note, ok=False, command=command)  # fmt: skip
    crash = res.get("crash")
    if crash:
        if job.key == "cleanvision-decodable":
            raise _failed(job, "CleanVision on the decodable files")
        note = f"crashed: {crash['type']}: {crash['message'][:160]}"
        return ToolRun(name, "cleanvision", res["version"], job.runs, len(universe), universe,
                       note=note, ok=False, command=command, extra={"crash": crash})  # fmt: skip
    flags = {
        CLEANVISION_FLAGS[k]: set(v) for k, v in res["flags"].items() if k in CLEANVISION_FLAGS
    }
    return ToolRun(
        name,
        "cleanvision",
        res["version"],
        job.runs,
        len(universe),
        universe,
        pairs={_pair(a, b) for a, b, _ in res["pairs"]},
        flags=flags,
        command=command,
        extra={"counts": {k: len(v) for k, v in res["flags"].items()}},
    )


def imagededup_row(truth: Truth, job: Job) -> ToolRun:
    res = parse_result(job.runs[-1].stdout)
    if res is None:
        raise _failed(job, job.key)
    warned = job.runs[-1].stderr.count("Invalid image file")
    return ToolRun(
        f"imagededup {res['method']}",
        "imagededup",
        res["version"],
        job.runs,
        len(truth.files),
        set(truth.files),
        pairs={_pair(a, b) for a, b, _ in res["pairs"]},
        flags={"broken": set(res["not_encoded"])},
        command=_shown(job.steps[0]),
        extra={"not_encoded": res["not_encoded"], "warned": warned},
    )


def fastdup_rows(truth: Truth, job: Job) -> list[ToolRun]:
    res = parse_result(job.runs[-1].stdout)
    if res is None:
        raise _failed(job, "fastdup")
    flags = {k: set(v) for k, v in res["flags"].items()}
    flags["broken"] = {r for r, _ in res["invalid"]}
    common = {
        "tool": "fastdup",
        "version": res["version"],
        "runs": job.runs,
        "files": len(truth.files),
        "universe": set(truth.files),
        "flags": flags,
        "command": _shown(job.steps[0]),
        "extra": {"invalid": res["invalid"], "stats_rows": res["files"]},
    }
    return [
        ToolRun(
            "fastdup similarity (≥ 0.9)",
            pairs={_pair(a, b) for a, b, _ in res["pairs"]},
            **common,
        ),
        ToolRun(
            "fastdup components (≥ 0.96)",
            pairs={_pair(a, b) for a, b, _ in res["cc_pairs"]},
            **common,
        ),
    ]


def lamina_sql(store: Path, query: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [lamina_exe(), "--store", str(store), "sql", query, "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-500:])
    return json.loads(proc.stdout or "[]")


def lamina_row(truth: Truth, job: Job) -> ToolRun:
    exe = lamina_exe()
    store = job.reset
    assert store is not None
    scans = [p[0] for p in job.parts]
    if any(s.rc != 0 for s in scans):
        raise _failed(job, "lamina scan")
    senses = [p[1] for p in job.parts if len(p) > 1]
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    sense_args = job.steps[1][4:-1]
    command = (
        f"lamina --store S scan {CORPUS.relative_to(ROOT)} --json && "
        f"lamina --store S sense{''.join(' ' + a for a in sense_args)} --json"
    )
    files = lamina_sql(store, "select rel_path, image_id, status, reason from files")
    universe = set(truth.files)
    broken = {f["rel_path"] for f in files if f["status"] != "ok"}
    # Exact duplicates straight from the scan: several files with one image_id.
    by_image: dict[str, list[str]] = defaultdict(list)
    for f in files:
        if f["image_id"]:
            by_image[f["image_id"]].append(f["rel_path"])
    exact = {_pair(a, b) for ms in by_image.values() for i, a in enumerate(ms) for b in ms[i + 1 :]}
    extra: dict[str, Any] = {
        "scan_s": statistics.median(s.seconds for s in scans),
        "sense_s": statistics.median(s.seconds for s in senses),
        "scan_tree_mb": max(s.tree_mb for s in scans),
        "sense_tree_mb": max(s.tree_mb for s in senses),
        "sense_worker_mb": max(s.worker_mb for s in senses),
        "sense_main_mb": max(s.main_mb for s in senses),
        "files_table": files,
    }
    last = senses[-1]
    tables = {r["name"] for r in lamina_sql(store, "show tables")}
    if last.rc not in (0, 1) or not {"flags", "duplicates"} <= tables:
        err = (last.stderr.strip().splitlines() or ["?"])[-3:]
        return ToolRun(
            job.key,
            "lamina",
            version,
            job.runs,
            len(truth.files),
            universe,
            pairs=exact,
            flags={"broken": broken},
            note="`lamina sense` not available: " + " / ".join(e.strip() for e in err),
            ok=False,
            command=command,
            extra=extra,
        )
    dup_rows = lamina_sql(
        store, "select f.rel_path, d.group_id from duplicates d join files f using (image_id)"
    )
    members: dict[str, list[str]] = defaultdict(list)
    for r in dup_rows:
        members[str(r["group_id"])].append(r["rel_path"])
    pairs = set(exact)
    for ms in members.values():
        pairs |= {_pair(a, b) for i, a in enumerate(ms) for b in ms[i + 1 :]}
    flag_rows = lamina_sql(
        store, "select f.rel_path, fl.* from flags fl join files f using (image_id)"
    )
    flags: dict[str, set[str]] = {d: set() for d in LAMINA_FLAGS.values()}
    junk = set()
    for r in flag_rows:
        for col, defect in LAMINA_FLAGS.items():
            if r.get(col):
                flags[defect].add(r["rel_path"])
        if r.get("junk"):
            junk.add(r["rel_path"])
    flags["broken"] = broken | junk
    extra["junk_flag"] = sorted(junk)
    extra["error_rows"] = lamina_sql(
        store,
        "select f.rel_path, s.error, s.detail from signals s join files f using (image_id) "
        "where s.error is not null order by 1",
    )
    extra["flag_columns"] = sorted(flag_rows[0]) if flag_rows else []
    extra["passes"] = _pass_seconds(store)
    return ToolRun(
        job.key,
        "lamina",
        version,
        job.runs,
        len(truth.files),
        universe,
        pairs=pairs,
        flags=flags,
        command=command,
        extra=extra,
    )


def _pass_seconds(store: Path) -> dict[str, Any]:
    """Per-pass seconds from the last `sense` run record, where the record has them."""
    proc = subprocess.run(
        [lamina_exe(), "--store", str(store), "runs", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        records = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {}
    sense = next((r for r in records if r.get("command") == "sense"), None)
    if not sense:
        return {}
    out: dict[str, Any] = {"run_seconds": sense.get("seconds")}
    for name, counts in (sense.get("counts") or {}).items():
        if isinstance(counts, dict):
            out[name] = {k: counts[k] for k in ("seconds", "chunks", "inputs") if k in counts}
    return out


# -- signals pass against a plain reduced-decode loop ----------------------------------------


def _decode_chunk(paths: list[str]) -> tuple[int, int]:
    import warnings

    import numpy as np
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the 100 MP JPEG
    done = failed = 0
    for p in paths:
        try:
            with Image.open(p) as im:
                if im.format == "JPEG":
                    im.draft("RGB", (LOOP_SIZE, LOOP_SIZE))
                im.thumbnail((LOOP_SIZE, LOOP_SIZE))
                np.asarray(im)
            done += 1
        except Exception:  # a broken file costs its failed attempt, as in any pass
            failed += 1
    return done, failed


def decode_loop(paths: list[str], workers: int) -> tuple[float, int, int]:
    """Seconds to reduced-decode every path on `workers` processes (pool start included)."""
    step = max(1, min(32, len(paths) // (workers * 8)))
    chunks = [paths[i : i + step] for i in range(0, len(paths), step)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        done = list(pool.imap_unordered(_decode_chunk, chunks))
    return time.perf_counter() - t0, sum(d for d, _ in done), sum(f for _, f in done)


SIGNALS_ONLY = r"""
import json, sys, time
from lamina.core.store import Store
from lamina.core.runner import run_pass
store = Store.open(sys.argv[1])
t = time.perf_counter()
result = run_pass(store, "signals", progress=False)
print(json.dumps({"seconds": time.perf_counter() - t, "result": result}, default=str))
"""

INPUTS_SQL = """
select source || '/' || rel_path as path from files
where image_id is not null and status <> 'missing'
qualify row_number() over (
    partition by image_id order by (status <> 'ok'), source, rel_path) = 1
order by image_id
"""


@dataclass
class SignalsVsLoop:
    files: int
    loop: list[float]
    signals: list[float]
    decoded: int
    failed: int
    how: str
    error: str = ""
    sig_tree_mb: float = 0.0
    sig_hwm_mb: float = 0.0
    hashes: Measured | None = None  # the hashes pass alone, once, for its memory

    @property
    def ratio(self) -> float:
        """signals rate / loop rate = loop time / signals time (medians)."""
        return statistics.median(self.loop) / statistics.median(self.signals)


def signals_vs_loop(reps: int, workers: int) -> SignalsVsLoop:
    exe = lamina_exe()
    store = SENSE / "stores" / "signals-only"
    shutil.rmtree(store, ignore_errors=True)
    subprocess.run(
        [exe, "--store", str(store), "scan", str(CORPUS), "--json"],
        check=True,
        capture_output=True,
    )
    paths = [r["path"] for r in lamina_sql(store, INPUTS_SQL)]
    decode_loop(paths, workers)  # warm-up
    pristine = SENSE / "stores" / "signals-only-scanned"
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.copytree(store, pristine)
    loop: list[float] = []
    sig: list[float] = []
    sig_tree = sig_hwm = 0.0
    decoded = failed = 0
    for _ in range(reps):
        seconds, decoded, failed = decode_loop(paths, workers)
        loop.append(seconds)
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(pristine, store)
        proc = measure([sys.executable, "-c", SIGNALS_ONLY, str(store)])
        if proc.rc != 0:
            err = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return SignalsVsLoop(len(paths), loop, [], decoded, failed, "", error=err)
        sig.append(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])
        sig_tree, sig_hwm = max(sig_tree, proc.tree_mb), max(sig_hwm, proc.hwm_mb)
        print(f"  reduced-decode loop {loop[-1]:.2f} s, signals pass {sig[-1]:.2f} s", flush=True)
    # The hashes pass alone, once: where the memory of `sense` goes.
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(pristine, store)
    hashes = measure(
        [sys.executable, "-c", SIGNALS_ONLY.replace('"signals"', '"hashes"'), str(store)]
    )
    shutil.rmtree(pristine, ignore_errors=True)
    how = (
        "run_pass(store, 'signals') in a fresh interpreter on a freshly scanned store, timed "
        "around the call (worker start-up, decode, signals, parquet write and commit included)"
    )
    return SignalsVsLoop(
        len(paths),
        loop,
        sig,
        decoded,
        failed,
        how,
        "",
        sig_tree,
        sig_hwm,
        hashes if hashes.rc == 0 else None,
    )


# -- report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def peer_versions(cleanvision: bool = False) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform, sys\n"
        "out = {'python': platform.python_version()}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    want = {
        "cleanvision": ["cleanvision", "pillow", "numpy", "imagehash"],
        "imagededup": ["imagededup", "torch", "torchvision", "pillow", "numpy", "PyWavelets"],
        "fastdup": ["fastdup", "numpy", "opencv-python-headless", "scikit-learn", "pillow"],
    }
    out = {}
    if not cleanvision:
        del want["cleanvision"]
    for peer, pkgs in want.items():
        proc = subprocess.run(
            [str(venv_python(peer)), "-c", code, *pkgs], capture_output=True, text=True
        )
        info = json.loads(proc.stdout) if proc.returncode == 0 else {}
        out[peer] = ", ".join(f"{k} {v}" for k, v in info.items())
    return out


def _f(x: float, digits: int = 2) -> str:
    return "—" if x != x else f"{x:.{digits}f}"


def _label(r: ToolRun) -> str:
    """The tool run's name without the pair source (fastdup's two rows are one run)."""
    return r.name.split(" similarity")[0]


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "**MISS**")


def render(
    truth: Truth,
    rows: list[ToolRun],
    svl: SignalsVsLoop | None,
    info: dict[str, str],
    versions: dict[str, str],
    command: str,
    reps: int,
    elapsed: float,
    load: tuple[float, float],
) -> str:
    counts = truth.data["counts"]
    lam = [r for r in rows if r.tool == "lamina"]
    peers = [r for r in rows if r.tool != "lamina"]
    seen: set[int] = set()
    perf_rows = []
    for r in rows:  # fastdup's two rows share one run
        if id(r.runs) not in seen:
            seen.add(id(r.runs))
            perf_rows.append(r)
    done = [r for r in perf_rows if r.tool != "lamina" and r.ok]
    fastest = max(done, key=lambda r: r.files_per_s) if done else None
    fastest_rate = fastest.files_per_s if fastest else float("nan")
    lines = [
        f"# Sense at {counts['files']:,} files: lamina vs imagededup, fastdup",
        "",
        f"- Date: {date.today().isoformat()}",
        f"- Machine: {info['nproc']} cores (`nproc`), {info['cpu']}, {info['ram']} RAM, "
        f"{info['os']}; Python {info['python']}. **Shared** with other agents' work (tests, "
        "builds, benchmarks) during the run: absolute times are noise, the ratios of tools "
        "run side by side (reps interleaved) are the result.",
        f"- lamina: {lam[0].version if lam else '?'} (project venv, working tree as it was)",
        *(f"- {k} venv: {v}" for k, v in versions.items()),
        f"- Command: `{command}` ({reps} timed run(s) per tool, median wall time, max peak "
        f"PSS; this size {elapsed / 60:.1f} min)",
        f"- Load average (1 min) before / after the timed runs: {load[0]:.2f} / {load[1]:.2f} "
        f"on {info['nproc']} cores (other work on the machine slows every tool alike: the reps "
        "of all tools are interleaved)",
        "",
        "## Corpus",
        "",
        f"`bench/sense_corpus.py --files {truth.data['n_files']}` → "
        f"`{CORPUS.relative_to(ROOT)}` ({counts['files']} files) and "
        f"its ground truth `{CORPUS.relative_to(ROOT)}.truth.json`. Real photos from "
        "`lamina.sample.package_photos()` (17 sources) and scenes cut from them:",
        "",
        f"- {counts['groups']} duplicate groups: an original (half JPEG q92, half PNG) plus "
        "11 edits each — byte `copy`, `reencode` JPEG q30, `resize` 50 %, `crop` 5 % per "
        "side, `bright_up` x1.3, `bright_down` x0.7, `contrast` x1.5, `png_jpeg` (format "
        "swap), `flip` (mirror), `rot90`, `exif_rot` (stored turned, EXIF orientation 6/8 "
        f"shows it upright) → {counts['positive_pairs']} positive pairs.",
        f"- {counts['hard_negative_pairs']} hard-negative pairs: two crops of one picture "
        "(left/right, top/bottom, corner/corner) overlapping < 30 % of the smaller crop.",
        "- Defects (files labelled): "
        + ", ".join(f"{k} {v}" for k, v in counts["defects"].items())
        + ". grayscale includes every file made from a greyscale source (camera, moon, "
        "brick, grass, gravel, coins) and the two skimage documents; odd_size = tiny "
        "(< 32 px) or huge (a 12000x8400 = 100.8 MP JPEG and a 14142x14142 = 200 MP PNG "
        "decompression bomb of 0.6 MB); broken = 3 truncated, 1 empty, 2 garbage, 2 whose "
        "headers parse but whose pixel data is corrupt. Borderline brightness is not scored: "
        f"{counts['unscored']['dark']} files not made dark but with luma p95 < 0.35 are left "
        f"out of the dark scores, {counts['unscored']['light']} out of the light scores: "
        "not made light but with luma p05 > 0.65 or 20 % or more clipped (luma >= 250), or "
        "made light but neither washed out (p05 > 0.65) nor 30 % clipped.",
        "- Scoring: a tool's pairs are all pairs in each group/set/component it reports. "
        "Pairs of two files made from the same photo that are neither a group pair nor a "
        "hard negative (a dark copy and its photo, two overlapping crops) are ignored; every "
        "other pair is a negative. Per-kind recall = share of (original, edit) pairs found.",
        "",
        "## Duplicates",
        "",
        "| tool | pairs reported | TP | FP (negatives) | FP (hard neg.) | ignored "
        "| precision | recall | F1 | hard-neg FP rate |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if r.pairs is None or (r.tool == "cleanvision" and not r.ok):
            continue
        s = score_pairs(truth, r.pairs)
        label = r.name + (" (scan only: exact)" if r.tool == "lamina" and not r.ok else "")
        lines.append(
            f"| {label} | {s.found} | {s.tp} | {s.fp_neg} | {s.fp_hn} | {s.ignored} "
            f"| {_f(s.precision, 3)} | {_f(s.recall, 3)} | {_f(s.f1, 3)} | {_f(s.hn_rate, 3)} |"
        )
    kinds = list(sense_corpus.DUP_KINDS)
    lines += [
        "",
        f"Recall per edit kind ((original, edit) pairs found, of {counts['groups']} each):",
        "",
        "| tool | " + " | ".join(kinds) + " |",
        "|---|" + "--:|" * len(kinds),
    ]
    for r in rows:
        if r.pairs is None or (r.tool == "cleanvision" and not r.ok):
            continue
        s = score_pairs(truth, r.pairs)
        lines.append(f"| {r.name} | " + " | ".join(_f(s.kind_recall[k]) for k in kinds) + " |")
    # defects
    defects = list(sense_corpus.DEFECTS)
    scored = [r for r in rows if r.flags and not (r.tool == "cleanvision" and not r.ok)]
    shown_rows = []
    for r in scored:
        if r.name.startswith("fastdup components"):
            continue  # the same flags as the similarity row
        if r.tool == "imagededup" and r.name != "imagededup PHash":
            continue  # every hash method reads the files the same way
        shown_rows.append(r)
    lines += [
        "",
        "## Defect flags",
        "",
        "precision / recall (flagged files), per ground-truth defect; — = the tool has no "
        "such flag. imagededup: `broken` = the files it warned about and left out (all four "
        "methods alike). fastdup: `blurry` = blur < 150, `light` = mean > 253, `dark` = "
        "mean < 4 (the thresholds of its own `summary()`), `broken` = `invalid_instances()`. "
        "CleanVision 0.3.7 calls an image grayscale only when its PIL mode is `L` (read in "
        "its source), so RGB files with equal channels are never flagged.",
        "",
        "| defect | truth | " + " | ".join(r.name for r in shown_rows) + " |",
        "|---|--:|" + ":-:|" * len(shown_rows),
    ]
    flag_scores = {r.name: score_flags(truth, r.flags, r.universe) for r in shown_rows}
    for d in defects:
        cells = []
        for r in shown_rows:
            fs = flag_scores[r.name].get(d)
            cells.append(
                "—" if fs is None else f"{_f(fs.precision)} / {_f(fs.recall)} ({fs.flagged})"
            )
        n = len(truth.with_defect(d, set(truth.files)))
        lines.append(f"| {d} | {n} | " + " | ".join(cells) + " |")
    # performance
    lines += [
        "",
        "## Speed and memory",
        "",
        "Wall time of the whole tool run as a user starts it (interpreter, imports, workers, "
        "every file); files/s = files given / median wall s. Peak PSS: the summed "
        "proportional set size of the process and all its descendants, polled every 50 ms "
        "(shared pages split between the processes that map them, so the tree's sum is what "
        "it holds); main / largest worker = the peak PSS of the process itself and of its "
        "largest descendant; high-water = the kernel's peak RSS of the largest single "
        "waited-for process (`wait4` ru_maxrss). lamina = `scan` + `sense` with 2 workers "
        "(times added, peaks max'd). MB = 10^6 bytes. Fastest peer: "
        + (f"**{_label(fastest)}** ({fastest_rate:.1f} files/s)." if fastest else "none ran."),
        "",
        "| tool | files | wall s | files/s | vs fastest peer | CPU s | files per CPU s "
        "| vs fastest peer (CPU) | peak PSS tree MB | main MB | largest worker MB "
        "| high-water RSS MB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in perf_rows:
        label = r.name.split(" similarity")[0] if r.tool == "fastdup" else r.name
        if r.tool == "lamina":
            e = r.extra
            label += f" (scan {e['scan_s']:.1f} s + sense {e['sense_s']:.1f} s)"
        if not r.ok:
            label += " — " + (r.note[:90] if r.note else "did not finish")
        lines.append(
            f"| {label} | {r.files} | {r.seconds:.2f} | {r.files_per_s:.1f} "
            f"| {_f(r.files_per_s / fastest_rate) + 'x' if r.ok else '—'} "
            f"| {r.cpu_s:.1f} | {r.files / max(r.cpu_s, 1e-9):.1f} "
            f"| {_f(fastest.cpu_s / r.cpu_s) + 'x' if r.ok and fastest else '—'} "
            f"| {r.tree_mb:.0f} | {r.main_mb:.0f} | {r.worker_mb:.0f} | {r.hwm_mb:.0f} |"
        )
    for r in lam:
        p = r.extra.get("passes")
        if p:
            parts = [
                f"{name} " + ", ".join(f"{k} {v}" for k, v in vals.items())
                for name, vals in p.items()
                if isinstance(vals, dict) and vals
            ]
            lines += [
                "",
                f"`{r.name}` run record (last rep): run {p.get('run_seconds')} s; "
                + "; ".join(parts)
                + ".",
            ]
    # signals
    lines += ["", "## Signals pass vs a plain reduced-decode loop", ""]
    if svl is None:
        lines.append("Not measured (--only without lamina).")
    elif svl.error:
        lines.append(f"Not measured: the signals pass could not run (`{svl.error}`).")
    else:
        lines += [
            f"Same {svl.files} files (lamina's inputs: one path per image, broken ones "
            "included). Loop: `Image.open(p)`, `im.draft('RGB', (512, 512))` for JPEG, "
            "`im.thumbnail((512, 512))`, `np.asarray(im)` on "
            f"{info['nproc']} fork processes (pool start included; {svl.decoded} decoded, "
            f"{svl.failed} failed). Signals: {svl.how}.",
            "",
            "| | median s | files/s | runs (s) |",
            "|---|--:|--:|---|",
            f"| reduced-decode loop | {statistics.median(svl.loop):.2f} "
            f"| {svl.files / statistics.median(svl.loop):.0f} "
            f"| {', '.join(f'{s:.2f}' for s in svl.loop)} |",
            f"| lamina signals pass | {statistics.median(svl.signals):.2f} "
            f"| {svl.files / statistics.median(svl.signals):.0f} "
            f"| {', '.join(f'{s:.2f}' for s in svl.signals)} |",
            "",
            f"signals rate / loop rate = **{svl.ratio:.0%}**.",
            "",
            f"Memory of the passes run alone (same way, whole corpus): signals peak RSS tree "
            f"{svl.sig_tree_mb:.0f} MB, largest process {svl.sig_hwm_mb:.0f} MB"
            + (
                f"; hashes {svl.hashes.seconds:.2f} s, tree {svl.hashes.tree_mb:.0f} MB, "
                f"largest process {svl.hashes.hwm_mb:.0f} MB."
                if svl.hashes
                else "; hashes could not run alone."
            ),
        ]
    # broken files
    lines += ["", "## What each tool did on the broken files", ""]
    broken = sorted(r for r, f in truth.files.items() if "broken" in f["defects"])
    lines.append("Broken files: " + ", ".join(f"`{Path(b).name}`" for b in broken) + ".")
    lines.append("")
    for r in rows:
        text = _broken_text(r, broken)
        if text:
            lines.append(f"- **{r.name}**: {text}")
    for r in lam:
        if r.ok:
            lines += _details(truth, r)
    # targets
    lines += ["", "## Targets", "", "| target | tool | measured | result |", "|---|---|---|:-:|"]
    verdicts: list[tuple[str, bool | None]] = []
    for r in lam:
        verdicts += _targets(truth, r, fastest, svl, lines)
    lines += [""]
    missed = [t for t, ok in verdicts if ok is False]
    na = [t for t, ok in verdicts if ok is None]
    if missed:
        lines.append("**Missed: " + "; ".join(missed) + ".**")
    elif na:
        lines.append("**Not judged: " + "; ".join(na) + ".**")
    else:
        lines.append("**Every target is met.**")
    lines.append("")
    lines += ["## Commands", ""]
    for r in perf_rows:
        lines.append(f"- {r.name.split(' similarity')[0]}: `{r.command}`")
    lines.append("")
    notes = [r for r in rows if r.note]
    if notes or peers:
        lines += ["## Notes", ""]
        for r in notes:
            lines.append(f"- {r.name}: {r.note}")
        lines.append("")
    return "\n".join(lines)


def _details(truth: Truth, r: ToolRun, limit: int = 10) -> list[str]:
    """What lamina got wrong, file by file: for whoever tunes the passes and the policy."""
    out = ["", f"## {r.name}: where it misses", ""]
    s = score_pairs(truth, r.pairs or set())
    fp_pairs = sorted(p for p in (r.pairs or set()) if truth.classify(p) in ("neg", "hn"))
    if fp_pairs:
        out.append(
            f"- False duplicate pairs ({len(fp_pairs)}): "
            + ", ".join(f"`{a}` ~ `{b}`" for a, b in fp_pairs[:limit])
            + (" …" if len(fp_pairs) > limit else "")
        )
    for kind, pairs in sorted(truth.kind_pairs.items()):
        missed = sorted(p for p in pairs if p not in (r.pairs or set()))
        if missed and s.kind_recall[kind] < 1:
            edits = [b if truth.files[b]["kind"] == kind else a for a, b in missed]
            out.append(
                f"- `{kind}` edits not paired with their original ({len(missed)}): "
                + ", ".join(f"`{Path(e).name}`" for e in edits[:limit])
                + (" …" if len(edits) > limit else "")
            )
    for d in sense_corpus.DEFECTS:
        scored = truth.scored(d, r.universe)
        flagged = r.flags.get(d, set()) & scored
        want = truth.with_defect(d, scored)
        fp, fn = sorted(flagged - want), sorted(want - flagged)
        if fp:
            out.append(
                f"- `{d}` false positives ({len(fp)}): "
                + ", ".join(f"`{x}`" for x in fp[:limit])
                + (" …" if len(fp) > limit else "")
            )
        if fn:
            out.append(
                f"- `{d}` missed ({len(fn)}): "
                + ", ".join(f"`{x}`" for x in fn[:limit])
                + (" …" if len(fn) > limit else "")
            )
    return out


def _broken_text(r: ToolRun, broken: list[str]) -> str:
    names = {b: f"`{Path(b).name}`" for b in broken}
    if r.tool == "lamina":
        files = {f["rel_path"]: f for f in r.extra.get("files_table", [])}
        parts = [
            f"{names[b]} {files[b]['status']}/{files[b]['reason']}" if b in files else "absent"
            for b in broken
        ]
        errors = r.extra.get("error_rows", [])
        sensed = ", ".join(
            f"`{Path(e['rel_path']).name}` {e['error']}"
            + (" (broken)" if e["rel_path"] in names else "")
            for e in errors
        )
        return (
            "scan marks them " + ", ".join(parts) + "; the signals table has "
            f"{len(errors)} error rows: {sensed or 'none'} (no stop, no crash; every other "
            "file processed)."
        )
    if r.tool == "cleanvision":
        crash = r.extra.get("crash")
        if crash:
            return (
                f"`Imagelab(data_path=…).find_issues()` raised `{crash['type']}: "
                f"{crash['message'][:120]}` in a worker after {r.runs[0].seconds:.1f} s: "
                "no result at all for the corpus, and the message does not name the file."
            )
        if r.name.endswith("(decodable files)"):
            return "given only the decodable files (the broken ones left out of its list)."
        return "finished."
    if r.tool == "imagededup" and r.name.endswith("PHash"):
        ne = r.extra.get("not_encoded", [])
        return (
            f"logs `WARNING Invalid image file …` for {r.extra.get('warned')} files and "
            f"leaves {len(ne)} out of its result ("
            + ", ".join(f"`{Path(b).name}`" for b in ne)
            + "); the run goes on. Same for every hash method."
        )
    if r.tool == "fastdup" and "similarity" in r.name:
        inv = r.extra.get("invalid", [])
        listed = {Path(p).name for p, _ in inv}
        missed = [names[b] for b in broken if Path(b).name not in listed]
        text = "`invalid_instances()` lists " + ", ".join(
            f"`{Path(p).name}` ({code})" for p, code in inv
        )
        if missed:
            text += "; " + ", ".join(missed) + " pass as valid images (decoded as far as they go)"
        return text + "."
    return ""


def _targets(
    truth: Truth,
    r: ToolRun,
    fastest: ToolRun | None,
    svl: SignalsVsLoop | None,
    lines: list[str],
) -> list[tuple[str, bool | None]]:
    out: list[tuple[str, bool | None]] = []

    def add(target: str, measured: str, ok: bool | None) -> None:
        lines.append(f"| {target} | {r.name} | {measured} | {_verdict(ok)} |")
        out.append((f"{target} ({r.name})", ok))

    if fastest is None:
        add(f"files/s ≥ {TARGET_SPEEDUP:.0f}x the fastest peer", "no peer ran", None)
    else:
        speed = r.files_per_s / fastest.files_per_s
        add(
            f"files/s ≥ {TARGET_SPEEDUP:.0f}x the fastest peer",
            f"{r.files_per_s:.1f} vs {fastest.files_per_s:.1f} ({_label(fastest)}) = {speed:.2f}x",
            speed >= TARGET_SPEEDUP if r.ok else None,
        )
    s = score_pairs(truth, r.pairs or set())
    sensed = r.ok
    add(
        "near-duplicate F1 (crops, which 64-bit hashes cannot pair, included)",
        f"{_f(s.f1, 3)} (P {_f(s.precision, 3)}, R {_f(s.recall, 3)})",
        None,
    )
    invariant = "--invariant" in r.name
    for k in ("flip", "rot90", "exif_rot") if invariant else ("exif_rot",):
        v = s.kind_recall[k]
        add(f"{k} recall ≥ {TARGET_ROT_RECALL}", _f(v), v >= TARGET_ROT_RECALL if sensed else None)
    add(
        f"hard-negative FP rate ≤ {TARGET_HN_FP}",
        _f(s.hn_rate, 3),
        s.hn_rate <= TARGET_HN_FP if sensed else None,
    )
    fs = score_flags(truth, r.flags, r.universe)
    bad = []
    for d in sense_corpus.DEFECTS:
        f = fs.get(d)
        if f is None or not (f.precision >= TARGET_DEFECT and f.recall >= TARGET_DEFECT):
            p = "—" if f is None else _f(f.precision)
            rc = "—" if f is None else _f(f.recall)
            bad.append(f"{d} {p}/{rc}")
    add(
        f"every defect type precision and recall ≥ {TARGET_DEFECT}",
        "all met" if not bad else "below: " + ", ".join(bad),
        (not bad) if sensed else None,
    )
    add(
        f"peak PSS of the process tree ≤ {TARGET_PSS_MB:.0f} MB (2 workers; 100 MP JPEG, "
        "200 MP PNG bomb)",
        f"{r.tree_mb:.0f} MB (scan {r.extra['scan_tree_mb']:.0f}, sense "
        f"{r.extra['sense_tree_mb']:.0f}: main {r.extra['sense_main_mb']:.0f}, largest worker "
        f"{r.extra['sense_worker_mb']:.0f})",
        r.tree_mb <= TARGET_PSS_MB if sensed else None,
    )
    if svl is not None and not svl.error and r.name == "lamina":
        add(
            f"signals pass ≥ {TARGET_SIGNALS:.0%} of a plain reduced-decode loop",
            f"{svl.ratio:.0%}",
            svl.ratio >= TARGET_SIGNALS,
        )
    elif r.name == "lamina":
        add(
            f"signals pass ≥ {TARGET_SIGNALS:.0%} of a plain reduced-decode loop",
            svl.error if svl else "not measured",
            None,
        )
    return out


# -- main ------------------------------------------------------------------------------------


def warm(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for f in files:
            Path(folder, f).read_bytes()


def run_size(args: argparse.Namespace, n_files: int, command: str) -> tuple[str, dict]:
    """Every tool on the corpus of n_files: the report section and the raw scores."""
    global CORPUS
    t_start = time.perf_counter()
    CORPUS = SENSE / f"corpus-{n_files}"
    print(f"corpus: {CORPUS.relative_to(ROOT)}", flush=True)
    truth = Truth(sense_corpus.ensure(CORPUS, n_files))
    warm(CORPUS)
    load_before = psutil.getloadavg()[0]
    jobs = make_jobs(truth, args.only, args.cleanvision, args.baseline_src)
    run_jobs(jobs, args.reps)
    rows = rows_from_jobs(truth, jobs)
    svl = None
    if args.signals_loop and args.only in ("lamina", "all"):
        print("signals vs reduced-decode loop:", flush=True)
        svl = signals_vs_loop(args.reps, os.cpu_count() or 1)
    load = (load_before, psutil.getloadavg()[0])
    versions = peer_versions(args.cleanvision) if args.only != "lamina" else {}
    text = render(
        truth,
        rows,
        svl,
        machine(),
        versions,
        command,
        args.reps,
        time.perf_counter() - t_start,
        load,
    )
    dump = {
        r.name: {
            "seconds": [m.seconds for m in r.runs],
            "tree_mb": [m.tree_mb for m in r.runs],
            "pairs": None if r.pairs is None else vars(score_pairs(truth, r.pairs)),
            "flags": {k: vars(v) for k, v in score_flags(truth, r.flags, r.universe).items()},
            "note": r.note,
        }
        for r in rows
    }
    return text, dump


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="timed runs per tool (default 3)")
    parser.add_argument(
        "--files",
        type=int,
        action="append",
        help="corpus size(s), each its own corpus and section (default: 3000 and 30000)",
    )
    parser.add_argument(
        "--only",
        choices=["lamina", "peers", "all"],
        default="all",
        help="run only lamina or only the peers",
    )
    parser.add_argument("--cleanvision", action="store_true", help="also run CleanVision")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run lamina from this src folder (e.g. `git archive` of the commit before "
        "a change), as 'lamina baseline', side by side",
    )
    parser.add_argument(
        "--signals-loop", action="store_true", help="also time the signals pass alone"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown report path")
    parser.add_argument("--setup", action="store_true", help="create the peer venvs and exit")
    parser.add_argument("--json", type=Path, default=SENSE / "sense.json", help="raw scores")
    args = parser.parse_args(argv)
    if args.setup:
        return setup(args.cleanvision)
    t_start = time.perf_counter()
    shown = Path(sys.executable)
    shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    command = " ".join(
        [str(shown), "bench/sense.py", *(argv if argv is not None else sys.argv[1:])]
    )
    SENSE.mkdir(parents=True, exist_ok=True)
    if args.only in ("peers", "all"):
        wanted = ["imagededup", "fastdup"] + (["cleanvision"] if args.cleanvision else [])
        missing = [p for p in wanted if not venv_python(p).exists()]
        if missing:
            raise SystemExit(f"peer venvs missing: {missing}; run `bash bench/peers/setup.sh`")
    sections, dumps = [], {}
    for n in args.files or [3000, 30000]:
        text, dump = run_size(args, n, command)
        sections.append(text)
        dumps[str(n)] = dump
        # Written after each size, so a long run keeps what it has measured.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n\n".join(sections))
        args.json.write_text(json.dumps(dumps, indent=1, default=list))
        print()
        print(text)
    print(f"written to {args.out} in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
