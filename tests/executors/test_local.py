"""The local executor: results and failures come back as values, a dead worker breaks only
its own tasks, and workers never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from lamina.executors import local
from lamina.executors.local import LocalExecutor

ROOT = Path(__file__).resolve().parents[2]


def square(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * x


def die_on_7(x: int) -> int:
    if x == 7:
        os._exit(3)  # a worker killed mid-task (out of memory, kill -9)
    return x


def worker_facts(_: int) -> tuple[int, int | None, int]:
    """In a worker: its parent pid, the parent it was started by, its death signal."""
    pdeathsig = ctypes.c_int(0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(2, ctypes.byref(pdeathsig), 0, 0, 0)  # PR_GET_PDEATHSIG
    return os.getppid(), local._PARENT_PID, pdeathsig.value


@pytest.mark.parametrize("kind", ["in-process", "threads", "processes"])
def test_results_and_exceptions_come_back_per_task(kind: str) -> None:
    executor = {
        "in-process": LocalExecutor(1),
        "threads": LocalExecutor(2, threads=True),
        "processes": LocalExecutor(2),
    }[kind]
    out = dict(executor.imap_unordered(square, [3, -1, 4, 5]))
    assert {k: v for k, v in out.items() if k != -1} == {3: 9, 4: 16, 5: 25}
    assert isinstance(out[-1], ValueError) and "negative: -1" in str(out[-1])


def test_a_dead_worker_fails_its_tasks_and_a_new_pool_runs_the_rest() -> None:
    out = dict(LocalExecutor(2).imap_unordered(die_on_7, range(12)))
    assert isinstance(out[7], BrokenProcessPool)
    broken = {k for k, v in out.items() if isinstance(v, BrokenProcessPool)}
    assert {k: v for k, v in out.items() if k not in broken} == {
        k: k for k in range(12) if k not in broken
    }
    assert len(broken) < 12  # tasks after the crash ran on a new pool


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_workers_know_their_parent_and_die_with_it() -> None:
    facts = {v for _, v in LocalExecutor(2).imap_unordered(worker_facts, range(4))}
    assert facts == {(os.getpid(), os.getpid(), signal.SIGKILL)}


def test_an_orphaned_worker_exits_before_its_next_task(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not local.orphaned()  # this process is no pool worker
    local.exit_if_orphaned()
    exits: list[int] = []
    monkeypatch.setattr(local.os, "_exit", exits.append)
    monkeypatch.setattr(local, "_PARENT_PID", os.getppid() + 100_000)  # not our parent
    assert local.orphaned()
    calls: list[int] = []
    local._guarded(calls.append, 1)  # os._exit is patched, so the task runs after it
    assert exits == [1] and calls == [1]


DRIVER = """
import sys, time
from lamina.executors.local import LocalExecutor
ex = LocalExecutor(2)
ex.start()
while len(ex._pool._processes) < 2:
    time.sleep(0.05)
print(" ".join(map(str, ex._pool._processes)), flush=True)
for _ in ex.imap_unordered(time.sleep, [600] * 4):
    pass
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_parent_kills_its_workers() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=env
    )
    workers = [int(pid) for pid in proc.stdout.readline().split()]
    try:
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone: its workers sleep on
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.05)
        assert [pid for pid in workers if _alive(pid)] == []
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
