"""The guard around `--executor ray` commands: a driver that Ray ends silently (`_exit(1)`
from its C++ core when the local raylet dies) still ends with lamina's message, and every
other ending passes through unchanged. The children here play the driver's part without
Ray: what they report and how they end is what a Ray driver would do."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lamina.executors.supervisor import wants_ray
from tests.executors.ray_support import ray_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork and PDEATHSIG: Linux")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the socket is


def supervised(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `body` as the child of a supervised `--executor ray` command."""
    script = tmp_path / "driver.py"
    script.write_text(
        "import os, sys, time\n"
        "from lamina.executors.supervisor import report, supervise\n"
        "supervise(['sense', '--executor', 'ray'])\n" + textwrap.dedent(body)
    )
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=ray_env(), timeout=60
    )


def test_only_a_ray_command_line_is_supervised() -> None:
    assert wants_ray(["sense", "--executor", "ray"])
    assert wants_ray(["run", "--executor=ray", "--config", "x.toml"])
    assert not wants_ray(["sense", "--executor", "local"])
    assert not wants_ray(["sense", "--executor"])
    assert not wants_ray(["sql", "--", "--executor", "ray"])


def test_a_driver_ray_ended_silently_gets_the_cluster_message(tmp_path: Path) -> None:
    gone = f"127.0.0.1:{closed_port()}"
    done = supervised(
        f"report('gcs {gone}'); report('done'); report('done')\n"
        "print('sensing', flush=True)\n"
        "os._exit(1)  # as Ray's QuickExit: no Python exit\n",
        tmp_path,
    )
    assert done.returncode == 2
    assert done.stdout == "sensing\n"
    assert f"the Ray cluster at {gone} went away" in done.stderr
    assert "2 chunk(s) of this run were committed and stay" in done.stderr
    assert "run the same command again" in done.stderr


def test_a_python_exit_passes_through_with_its_own_code(tmp_path: Path) -> None:
    gone = f"127.0.0.1:{closed_port()}"
    # Exited through Python (lamina's own ClusterLost message path): not rewritten.
    done = supervised(f"report('gcs {gone}')\nsys.exit(1)\n", tmp_path)
    assert (done.returncode, done.stderr) == (1, "")
    done = supervised("print('ok')\n", tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


def test_a_silent_exit_with_the_cluster_up_is_not_blamed_on_it(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        up = f"127.0.0.1:{server.getsockname()[1]}"
        done = supervised(f"report('gcs {up}')\nos._exit(1)\n", tmp_path)
    assert (done.returncode, done.stderr) == (1, "")


def test_a_child_ended_by_a_signal_ends_the_command_the_same_way(tmp_path: Path) -> None:
    done = supervised("os.kill(os.getpid(), 9)\n", tmp_path)
    assert done.returncode == -signal.SIGKILL


def test_killing_the_command_kills_the_driver_and_a_signal_is_passed_on(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "driver.py"
    script.write_text(
        "import os, time\n"
        "from lamina.executors.supervisor import supervise\n"
        "supervise(['sense', '--executor', 'ray'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    for signum, code in ((signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, -signal.SIGTERM)):
        pid_file.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, str(script)], env=ray_env())
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == code
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and _state(child) != "Z":
            assert time.monotonic() < deadline, f"the child outlived a {signum.name}"
            time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "gone"
