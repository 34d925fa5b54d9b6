"""What the Ray executor tests share with the Ray workers and with each other: a toy pass
that fails on purpose (importable by a worker, which registers it), and a Ray head node of
the test's own, started and killed by its process group.

Ray workers import this module (it adds itself to the executor's `WORKER_IMPORTS`), so it
must not import pytest or anything a worker lacks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from lamina.core.passes import REGISTRY, Pass, register
from lamina.executors.local import WORKER_IMPORTS

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FlakyConfig:
    markers: str = ""  # a folder: a row's marker says it has failed once already
    fail_once: tuple[int, ...] = ()  # raise the first time
    die_once: tuple[int, ...] = ()  # end the worker process the first time (a kill -9)
    fail_always: tuple[int, ...] = ()


class FlakyPass(Pass):
    """`y = 2 * x`, failing on purpose for the rows its config names."""

    name = "flaky_ray_test"
    version = "1"
    Config = FlakyConfig
    schema = pa.schema([("image_id", pa.string()), ("y", pa.int64()), ("pid", pa.int64())])

    def process(self, batch: pa.Table) -> pa.Table:
        xs = batch["x"].to_pylist()
        for x in xs:
            marker = Path(self.config.markers) / str(x)
            if x in self.config.fail_always:
                raise ValueError(f"row {x} always fails")
            if x in self.config.fail_once + self.config.die_once and not marker.exists():
                marker.write_text("failed once\n")
                if x in self.config.die_once:
                    os._exit(1)  # the worker dies mid-chunk, as under the OOM killer
                raise ValueError(f"row {x} fails once")
        return pa.table(
            {
                "image_id": batch["image_id"],
                "y": pa.array([2 * x for x in xs], pa.int64()),
                "pid": pa.array([os.getpid()] * len(xs), pa.int64()),
            }
        )


if FlakyPass.name not in REGISTRY:
    register(FlakyPass)
if __name__ not in WORKER_IMPORTS:
    WORKER_IMPORTS.append(__name__)


def inputs(n: int) -> pa.Table:
    return pa.table({"image_id": [f"id{i:04d}" for i in range(n)], "x": list(range(n))})


# -- a Ray head of our own ----------------------------------------------------------------


def ray_env() -> dict[str, str]:
    """The environment of a test's Ray head and lamina runs: this checkout importable by
    the workers, no token authentication (a head and its clients would need to share a
    token), no model downloads."""
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT), *env.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    env["RAY_AUTH_MODE"] = "disabled"
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("RAY_ADDRESS", None)
    env.pop("LAMINA_STORE", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayHead:
    """`ray start --head --block` in a process group of its own (its temp folder too, so
    that no other Ray on this machine sees it); `kill()` ends that group and only it."""

    def __init__(self, cpus: int = 2) -> None:
        # Short: Ray's socket paths live under it and must stay under 108 characters.
        self.temp = Path(tempfile.mkdtemp(prefix="lray"))
        self.log = self.temp / "head.log"
        cmd = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--port={_free_port()}",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            f"--object-store-memory={200 * 2**20}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={self.temp}",
        ]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=ray_env(), start_new_session=True
            )
        self.address = self._wait_for_address(timeout=180)

    def _wait_for_address(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "block forever" in text:
                line = next(x for x in text.splitlines() if "ray start --address=" in x)
                return line.split("--address=")[1].strip().strip("'")
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"the Ray head did not start:\n{self.log.read_text()[-3000:]}")

    def processes(self) -> list[int]:
        """Pids still in the head's process group."""
        out = subprocess.run(
            ["ps", "-e", "-o", "pid=,pgid="], capture_output=True, text=True, check=False
        ).stdout
        pids = []
        for line in out.splitlines():
            pid, pgid = line.split()
            if int(pgid) == self.proc.pid:
                pids.append(int(pid))
        return pids

    def kill(self) -> None:
        """SIGKILL the head's whole process group (the node going away), then tidy up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)

    def remove(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)
