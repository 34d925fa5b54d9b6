"""Interrupt `lamina run` at random moments, then run it again: the store must equal that of
an uninterrupted run (0 rows lost, 0 rows duplicated per key, equal values), and every
interrupted run must end cleanly (a fault: an exit code and a message, never a traceback).

Interruptions come in chains on one store: a run is interrupted, the run that follows is
interrupted again, and so on; a last run without any goes to the end and is compared with
the reference (`conftest.reference`). The kinds:

- `kill-group`: SIGKILL of the whole process group (a crash, the OOM killer of a container);
- `kill-parent`: SIGKILL of the run's own process alone. Its pool workers become orphans and
  must die with it: one that lives on and commits its chunk while the next run (started at
  once, as a user's would be) redoes it duplicates rows;
- `ENOSPC`, `EACCES`: the k-th write under the store fails with that error;
- `worker-kill`: a pool worker is SIGKILLed at its k-th write (mid-chunk: its work done, its
  part not yet committed);
- `commit-kill`: the run is SIGKILLed between two renames of a multi-file commit;
- `disk-full`: the store lives on a tmpfs that is shrunk to fill up at a random point (a
  real ENOSPC, also for the writers the fault layer cannot see: DuckDB, Parquet's C++
  writer). Needs the right to mount (root); skipped and recorded as such otherwise.

The faults come from `faultlayer/sitecustomize.py`, loaded by every process of the run
through PYTHONPATH; nothing in lamina knows about it. Kill moments are a stage (in turn, so
every stage is hit) and a uniform fraction of that stage's duration in the reference run;
fault moments a uniform k. All are drawn from the seed and recorded.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from lamina.pipeline.config import DEFAULT_STAGES
from tests.reliability.conftest import (
    BASE_SEED,
    FULL,
    RUN_TIMEOUT,
    Reference,
    record,
    seed_for,
)
from tests.reliability.procs import (
    LaminaRun,
    alive,
    describe,
    end,
    fault_env,
    has_traceback,
    lamina_command,
    lamina_env,
)
from tests.reliability.tables import compare, max_float_difference, snapshot

pytestmark = pytest.mark.slow

KILLS = ("kill-group", "kill-parent")
FAULTS = ("commit-kill", "worker-kill", "ENOSPC", "EACCES", "disk-full")
# Full form: 20 kills in chains of two, then three chains of every fault. Bounded form (in
# `make test`): one chain of three kills and two faults, drawn from the seed.
KILL_COUNT = 20 if FULL else 3
KILLS_PER_CHAIN = 2
POOL_STAGES = ("sense", "embed")  # the stages that run a process pool (with 25+ images)
FAULT_CHAINS = 3 if FULL else 0
BOUNDED_FAULTS = 2
# A worker that outlives its killed parent by this long is an orphan (the fix has the
# kernel end it at once: PR_SET_PDEATHSIG).
ORPHAN_GRACE = 10.0
TMPFS_BIG = "2g"


@dataclass
class Step:
    """One interruption and what came of it."""

    kind: str
    stage: str = ""  # kills: the stage to kill in
    fraction: float = 0.0  # kills: how far into it (of its duration in the reference run)
    delay: float = 0.0
    at: int = 0  # faults: the write, worker write or commit rename it hits; disk-full: bytes
    happened: bool = False  # killed, or the fault fired
    stage_at: str | None = None  # the stage the run was in when it happened
    exit_code: int | None = None
    message: str = ""
    orphans: int = 0  # descendants alive ORPHAN_GRACE s after their parent was killed
    detail: dict[str, Any] | None = None


def plan(seed: int, reference: Reference) -> list[list[Step]]:
    """Every chain of this run, drawn from `seed`. In a chain the kills come in stage order
    (each re-run then still has that stage's work to do), then the faults."""
    rng = random.Random(seed)
    stages = list(DEFAULT_STAGES)
    first = rng.randrange(len(stages))
    kills = []
    for i in range(KILL_COUNT):
        stage = stages[(first + i) % len(stages)]
        kind = KILLS[i % 2]
        if not FULL and kind == "kill-parent":
            # Three kills only: the parent's must land where it has workers to orphan.
            stage = rng.choice(POOL_STAGES)
        step = Step(kind, stage, rng.random())
        step.delay = step.fraction * reference.seconds.get(step.stage, 1.0)
        kills.append(step)
    rng.shuffle(kills)
    if not FULL:
        return [_in_order(kills) + [Step(kind) for kind in rng.sample(FAULTS, BOUNDED_FAULTS)]]
    chains = [
        _in_order(kills[i : i + KILLS_PER_CHAIN]) for i in range(0, KILL_COUNT, KILLS_PER_CHAIN)
    ]
    for _ in range(FAULT_CHAINS):
        chains.append([Step(kind) for kind in rng.sample(FAULTS, len(FAULTS))])
    return chains


def _in_order(kills: list[Step]) -> list[Step]:
    return sorted(kills, key=lambda s: DEFAULT_STAGES.index(s.stage))


def chain_ids() -> list[str]:
    kills = -(-KILL_COUNT // KILLS_PER_CHAIN) if FULL else 0
    faults = FAULT_CHAINS if FULL else 0
    if not FULL:
        return ["bounded"]
    return [f"kills{i}" for i in range(kills)] + [f"faults{i}" for i in range(faults)]


# --------------------------------------------------------------------------- tmpfs


def _mount(point: Path, size: str) -> bool:
    point.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True
    )
    return done.returncode == 0


def _remount(point: Path, size: int | str) -> bool:
    done = subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], capture_output=True)
    return done.returncode == 0


def _first_error(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    return (lines or text.strip().splitlines() or [""])[0][:300]


# --------------------------------------------------------------------------- chain


class ChainRunner:
    """Runs one chain of steps on one store."""

    def __init__(self, reference: Reference, root: Path, seed: int, tmpfs: Path | None) -> None:
        self.reference = reference
        self.root = root
        self.rng = random.Random(seed)
        self.tmpfs = tmpfs
        self.store = reference.new_store((tmpfs or root) / "store")
        self.command = lamina_command(self.store, *reference.run_args())
        self.problems: list[str] = []
        self.orphans: list[str] = []
        self.children: list[psutil.Process] = []
        self.writes_done = 0

    def run(self, steps: list[Step]) -> None:
        for i, step in enumerate(steps):
            if step.kind in KILLS:
                self.kill(i, step)
            else:
                self.fault(i, step)
        final = LaminaRun(self.command, lamina_env()).start(self.root / "final.stderr")
        code = final.wait(RUN_TIMEOUT)
        if code != 0 or has_traceback(final.stderr()):
            self.problems.append(
                f"the last run (no interruption) exited {code}:\n"
                f"{final.output()}\n{final.stderr()[-3000:]}"
            )
        # Every orphan check has had its grace period once the last run is over; then the
        # survivors are ended before the store is read.
        time.sleep(max(0.0, ORPHAN_GRACE + 0.5 - (time.monotonic() - final.started)))
        if self.orphans:
            self.problems.append(
                f"{len(self.orphans)} process(es) outlived their killed parent by "
                f"{ORPHAN_GRACE:.0f} s: " + "; ".join(self.orphans[:4])
            )
        end(self.children)

    def kill(self, i: int, step: Step) -> None:
        run = LaminaRun(self.command, lamina_env()).start(self.root / f"step{i}.stderr")
        if run.wait_for_stage(step.stage, RUN_TIMEOUT):
            time.sleep(step.delay)
        if run.proc is not None and run.proc.poll() is None:
            step.stage_at = run.stage()
            if step.kind == "kill-group":
                run.kill_group()
            else:
                children = run.kill_parent()
                self.children += children
                self._watch_orphans(step, children)
            step.happened = True
            return
        step.exit_code = run.wait(RUN_TIMEOUT)
        step.message = "the run ended before the moment came"
        self._check_clean(step, run.stderr(), allowed=(0,))

    def _watch_orphans(self, step: Step, children: list[psutil.Process]) -> None:
        def check() -> None:
            survivors = alive(children)
            step.orphans = len(survivors)
            self.orphans.extend(describe(p) for p in survivors)

        timer = threading.Timer(ORPHAN_GRACE, check)
        timer.daemon = True
        timer.start()

    def fault(self, i: int, step: Step) -> None:
        counter = self.root / f"step{i}.counter.json"
        if step.kind == "disk-full":
            if self.tmpfs is None:
                step.message = "skipped: no tmpfs (mounting needs root)"
                return
            used = shutil.disk_usage(self.tmpfs).used
            room = max(self.reference.store_bytes - used, 4096)
            step.at = used + 4096 + int(self.rng.random() * room)
            assert _remount(self.tmpfs, step.at), f"cannot shrink the tmpfs to {step.at} bytes"
            self._faulted_run(i, step, fault_env("count", 0, self.store, counter), counter)
            assert _remount(self.tmpfs, TMPFS_BIG)
            return
        if step.kind == "commit-kill":
            step.at = self.rng.randint(1, 3)  # a scan commit renames 4 files
        elif step.kind == "worker-kill":
            step.at = self.rng.randint(1, max(1, self.reference.worker_writes // 2))
        else:
            left = self.reference.writes - self.writes_done
            step.at = self.rng.randint(1, max(1, left))
        writes = self._faulted_run(i, step, fault_env(step.kind, step.at, self.store, counter),
                                   counter)  # fmt: skip
        if not step.happened and writes and step.kind in ("ENOSPC", "EACCES"):
            # The run did less than drawn for (earlier steps did the work): once more, at
            # one of the writes such a run makes.
            step.at = self.rng.randint(1, writes)
            counter = self.root / f"step{i}b.counter.json"
            env = fault_env(step.kind, step.at, self.store, counter)
            self._faulted_run(i, step, env, counter)

    def _faulted_run(self, i: int, step: Step, env: dict[str, str], counter: Path) -> int:
        """Run under the fault layer, check how it ended; return the writes it counted."""
        run = LaminaRun(self.command, env).start(self.root / f"step{i}.stderr")
        step.exit_code = run.wait(RUN_TIMEOUT)
        stderr = run.stderr()
        # A run whose processes never made a write of the kind counted (no pool worker, no
        # commit) leaves the counter created but empty.
        text = counter.read_text() if counter.is_file() else ""
        state = json.loads(text) if text.strip() else {}
        writes = state.get("n", 0)
        self.writes_done += writes
        step.detail = state.get("fired")
        step.happened = bool(step.detail)
        step.stage_at = run.stage()
        step.message = _first_error(stderr)
        if step.kind == "disk-full":
            step.happened = "No space left on device" in stderr
        if step.kind == "commit-kill" and step.happened:
            return writes  # SIGKILLed on purpose: no message to check
        # A worker that died is retried (the run may end well); the others must fail cleanly.
        allowed = (0, 1) if step.kind == "worker-kill" or not step.happened else (1, 2)
        self._check_clean(step, stderr, allowed)
        return writes

    def _check_clean(self, step: Step, stderr: str, allowed: tuple[int, ...]) -> None:
        what = f"{step.kind} (at {step.at or step.stage}, {step.detail or ''})"
        if has_traceback(stderr):
            self.problems.append(f"{what}: a traceback\n{stderr[-3000:]}")
        elif step.exit_code not in allowed:
            self.problems.append(
                f"{what}: exit code {step.exit_code}, expected one of {allowed}\n{stderr[-2000:]}"
            )
        elif step.exit_code == 2 and "error:" not in stderr:
            self.problems.append(f"{what}: exit 2 without an `error:` message\n{stderr[-2000:]}")


@pytest.mark.parametrize("chain", range(len(chain_ids())), ids=chain_ids())
def test_interrupted_runs_resume_to_the_tables_of_an_uninterrupted_run(
    reference: Reference, tmp_path: Path, chain: int
) -> None:
    seed = seed_for("interruptions")
    steps = plan(seed, reference)[chain]
    mount = tmp_path / "mnt"
    tmpfs = mount if _mount(mount, TMPFS_BIG) else None
    runner = ChainRunner(reference, tmp_path, seed * 31 + chain, tmpfs)
    try:
        runner.run(steps)
        snap = snapshot(runner.store)
        problems = runner.problems + compare(reference.snap, snap)
        record(
            "chain",
            seed=seed,
            chain=chain_ids()[chain],
            tmpfs=tmpfs is not None,
            steps=[asdict(s) for s in steps],
            rows=snap.rows(),
            problems=problems[:50],
            temp_files_left=snap.temp_files[:50],
            max_model_float_difference=max_float_difference(reference.snap, snap),
        )
    finally:
        end(runner.children)
        if tmpfs is not None:
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
    assert not problems, (
        f"LAMINA_TORTURE_SEED={BASE_SEED} (seed {seed}), steps "
        f"{[asdict(s) for s in steps]}:\n" + "\n".join(problems)
    )
