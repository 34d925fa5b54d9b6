"""Run `lamina` in a subprocess the way a user does, and kill it the way a machine does.

`LaminaRun` starts a command in its own process group and follows its stage lines
(`[3/7] embed ...`) as they come; `kill_group` and `kill_parent` end it with SIGKILL (the
parent alone leaves its pool workers orphaned: `orphans` says which are still alive).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

import lamina

STAGE_LINE = "] "  # `[3/7] embed ...`, `[3/7] embed: 30 embedded ... [1.2 s]`
SRC_DIR = str(Path(lamina.__file__).resolve().parents[1])


def lamina_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a lamina subprocess: this checkout's code first, output unbuffered
    (stage lines arrive as they are printed), no network for model hubs."""
    env = dict(os.environ)
    paths = [SRC_DIR, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.pop("LAMINA_STORE", None)
    env.update(extra or {})
    return env


FAULT_LAYER = Path(__file__).parent / "faultlayer"


def fault_env(kind: str, at: int, store: Path, counter: Path) -> dict[str, str]:
    """The environment of a run under the fault layer (see faultlayer/sitecustomize.py):
    `kind` (count, ENOSPC, EACCES, worker-kill, commit-kill) hits the `at`-th write under
    `store`; `counter` gets the counts and what was hit."""
    base = lamina_env()
    return lamina_env(
        {
            "PYTHONPATH": f"{FAULT_LAYER}{os.pathsep}{base['PYTHONPATH']}",
            "LAMINA_FAULT": kind,
            "LAMINA_FAULT_ROOT": str(store),
            "LAMINA_FAULT_AT": str(at),
            "LAMINA_FAULT_COUNTER": str(counter),
        }
    )


def lamina_command(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lamina.cli", "--store", str(store), *args]


@dataclass
class LaminaRun:
    """One `lamina` subprocess, its output lines with their times, and its stage."""

    command: list[str]
    env: dict[str, str]
    cwd: Path | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    started: float = 0.0
    proc: subprocess.Popen[str] | None = None
    stderr_path: Path | None = None
    reader: threading.Thread | None = None

    def start(self, stderr_path: Path) -> LaminaRun:
        self.stderr_path = stderr_path
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=stderr_path.open("w"),
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: killpg reaches the workers
        )
        self.reader = threading.Thread(target=self._follow, daemon=True)
        self.reader.start()
        return self

    def _follow(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stage(self) -> str | None:
        """The stage the run is in now: the last `[i/n] name` line printed."""
        for _, line in reversed(self.lines):
            if line.startswith("[") and STAGE_LINE in line:
                return line.split(STAGE_LINE, 1)[1].split(":")[0].split(" ")[0]
        return None

    def wait_for_stage(self, stage: str, timeout: float) -> bool:
        """Wait until `stage` starts (or a later stage, or the run ends); True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(_stage_of(line) == stage for _, line in self.lines):
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(
                f"{' '.join(self.command)} did not finish in {timeout:.0f} s"
            ) from None
        # The reader gets the last lines when the pipe closes (an orphaned worker that
        # inherited it keeps it open: then it stops waiting).
        if self.reader is not None:
            self.reader.join(timeout=5)
        return code

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_group(self) -> None:
        """SIGKILL the whole process group: the run and every worker, at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait()

    def kill_parent(self) -> list[psutil.Process]:
        """SIGKILL the run's own process only; return its descendants as they were."""
        children = self.descendants()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait()
        return children

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""

    def stage_seconds(self) -> dict[str, float]:
        """Seconds each stage took, from its `[i/n] name: ... [1.2 s]` line."""
        out = {}
        for _, line in self.lines:
            stage = _stage_of(line)
            if stage and line.endswith(" s]") and "[" in line[1:]:
                try:
                    out[stage] = float(line.rsplit("[", 1)[1].removesuffix(" s]"))
                except ValueError:
                    continue
        return out


def _stage_of(line: str) -> str | None:
    if not line.startswith("[") or STAGE_LINE not in line:
        return None
    return line.split(STAGE_LINE, 1)[1].split(":")[0].split(" ")[0]


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has exited: it only waits to be reaped)."""
    out = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def describe(p: psutil.Process) -> str:
    try:
        return f"pid {p.pid} ({' '.join(p.cmdline())[:120]})"
    except psutil.Error:
        return f"pid {p.pid}"


def end(processes: list[psutil.Process]) -> None:
    """SIGKILL each of these processes (the suite's own descendants) by its pid."""
    for p in alive(processes):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue


def has_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text
