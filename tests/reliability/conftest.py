"""The reliability suite's switches, its figures and the uninterrupted reference run.

Two forms: the bounded one runs in `make test` (a few kills and faults, a few hundred
examples per property, well under two minutes of CPU); `LAMINA_TORTURE=full` (what
`make torture` sets) runs the full one. `LAMINA_TORTURE_SEED` replays a run's random
choices (every failure message names the seed it used); without it each run draws new
ones, so the suite keeps looking where it has not looked before.

`LAMINA_TORTURE_REFERENCE=DIR` reuses the reference run kept in DIR (a
`reliability-reference` folder of an earlier session, from the same code): only for work on
the suite itself.

`LAMINA_TORTURE_FIGURES=FILE` makes every test append what it did (kills survived,
faults injected, inputs tried) to FILE as JSON lines; `tests/reliability/torture.py`
turns them into docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from lamina.core.store import Store
from tests.reliability.collections import (
    KILL_LABELS,
    build_hostile_collection,
    build_kill_collection,
    unlock,
)
from tests.reliability.procs import LaminaRun, fault_env, has_traceback, lamina_command
from tests.reliability.tables import Snapshot, snapshot

FULL = os.environ.get("LAMINA_TORTURE", "") == "full"
BASE_SEED = int(os.environ.get("LAMINA_TORTURE_SEED") or random.SystemRandom().randrange(2**31))
# Rows per chunk of the trial stores: small, so a map stage has several chunks to be
# killed between (the default, 1024, would put the whole collection in one).
CHUNK_SIZE = 4
WORKERS = 2  # a pool, so that killing the parent alone leaves workers to orphan
RUN_TIMEOUT = 900.0  # seconds for one `lamina run` on a loaded machine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.torture)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Give back the permissions the hostile collection took (so its folder can be removed
    by a user who is not root), once, when every worker is done."""
    if hasattr(session.config, "workerinput"):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        unlock(factory.getbasetemp() / "reliability-reference" / "src" / "hostile")


def seed_for(name: str) -> int:
    """This test's seed: the run's base seed mixed with the test's name."""
    return (BASE_SEED * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def record(kind: str, **figures: Any) -> None:
    """Append one record of what a test did to $LAMINA_TORTURE_FIGURES (if set)."""
    path = os.environ.get("LAMINA_TORTURE_FIGURES")
    line = {"kind": kind, "full": FULL, "base_seed": BASE_SEED, "time": time.time(), **figures}
    print(json.dumps(line, default=str))
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")


@dataclass
class Reference:
    """The kill collection (with the hostile collection in `hostile/`) and an uninterrupted
    `lamina run` over it."""

    src: Path
    outside: Path  # what the hostile collection's links point at
    labels: Path
    store: Path
    seconds: dict[str, float]
    snap: Snapshot
    writes: int  # writes under the store (every process), as the fault layer counts them
    worker_writes: int  # of which pool workers made
    store_bytes: int  # the store's size as a tmpfs counts it (whole pages)
    hostile_kinds: dict[str, int]  # files of the hostile collection by kind

    def run_args(self) -> list[str]:
        return run_args(self.src, self.labels)

    def new_store(self, path: Path) -> Path:
        """An empty store with the reference's chunk size. In the bounded form it gets the
        reference's text cache (the ImageNet class names' vectors, the same for any store:
        a second tagging finds them there), which saves the tag stage a minute of CPU."""
        Store.open(path, create=True, chunk_size=CHUNK_SIZE)
        if not FULL:
            shutil.copytree(self.store / "cache", path / "cache", dirs_exist_ok=True)
        return path


def run_args(src: Path, labels: Path) -> list[str]:
    """`lamina run`'s arguments in every trial. The model's batch is the chunk size: each
    chunk's forward pass is padded to a full batch (so a resumed run is bit-exact), and
    the default batch (32) would make chunks of 4 cost eight times the work."""
    return ["run", str(src), "--labels", str(labels), "--workers", str(WORKERS),
            "--batch-images", str(CHUNK_SIZE)]  # fmt: skip


def _make_reference(root: Path) -> None:
    src = build_kill_collection(root / "src")
    kinds = build_hostile_collection(src / "hostile", root / "outside")
    (root / "kinds.json").write_text(json.dumps(kinds))
    labels = root / "labels.txt"
    labels.write_text(KILL_LABELS)
    store = root / "store"
    Store.open(store, create=True, chunk_size=CHUNK_SIZE)
    args = run_args(src, labels)
    env = fault_env("count", 0, store, root / "writes.json")
    run = LaminaRun(lamina_command(store, *args), env).start(root / "stderr.txt")
    code = run.wait(RUN_TIMEOUT)
    assert code == 0 and not has_traceback(run.stderr()), run.output() + run.stderr()
    (root / "seconds.json").write_text(json.dumps(run.stage_seconds()))
    (root / "done").write_text("")


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Reference:
    """One uninterrupted run, shared by every xdist worker of the session (the first one
    to ask makes it while the others wait on a file lock)."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    root = shared / "reliability-reference"
    if os.environ.get("LAMINA_TORTURE_REFERENCE"):
        # For work on the suite itself: a reference folder kept from an earlier session
        # (it must come from the same code, and is never written).
        root = Path(os.environ["LAMINA_TORTURE_REFERENCE"])
    with FileLock(str(shared / "reliability-reference.lock")):
        if not (root / "done").is_file():
            if root.exists():
                shutil.rmtree(root)
            root.mkdir()
            _make_reference(root)
    seconds = json.loads((root / "seconds.json").read_text())
    writes = json.loads((root / "writes.json").read_text())
    pages = sum(
        -(-p.stat().st_size // 4096) * 4096 for p in (root / "store").rglob("*") if p.is_file()
    )
    return Reference(
        root / "src",
        root / "outside",
        root / "labels.txt",
        root / "store",
        seconds,
        snapshot(root / "store"),
        writes.get("n", 0),
        writes.get("worker_n", 0),
        pages,
        json.loads((root / "kinds.json").read_text()),
    )
