"""A guard around a `lamina ... --executor ray` process, so that a Ray cluster that goes
away always ends the run with lamina's own message.

Why: a Ray driver whose local raylet dies is ended by Ray's C++ core with `_exit(1)`
("Exiting because the Raylet IPC connection failed and the local Raylet is dead", written
only to Ray's log files). Whether that happens before the executor notices the lost
cluster itself is a race, and when Ray wins the run ends silently with code 1. So the
`lamina` command, when asked for the Ray executor, forks once at start: the child runs
the command as usual and tells the parent over a pipe which cluster it joined, how many
chunk tasks finished (their chunks are committed) and that it exited through Python. The
parent only waits. When the child vanished without exiting through Python and its
cluster no longer answers, the parent says so (exit 2, as `ClusterLost` does); otherwise
it ends exactly as the child did.

Only the real command forks (`python -m lamina.cli`, the `lamina` script): the library
and in-process callers (tests through click's runner) never do.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

# The pipe's write end in the child, for `report`.
FD_ENV = "LAMINA_RAY_SUPERVISOR_FD"
# Tries (a second apart) to reach the cluster's GCS before it counts as gone.
GCS_TRIES = 3
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def wants_ray(argv: Sequence[str]) -> bool:
    """Whether a command line asks for the Ray executor.

    Example:
        >>> wants_ray(["sense", "--executor", "ray"]), wants_ray(["sense"])
        (True, False)
    """
    for i, arg in enumerate(argv):
        if arg == "--":
            return False
        if arg == "--executor=ray" or (arg == "--executor" and argv[i + 1 : i + 2] == ["ray"]):
            return True
    return False


def report(line: str) -> None:
    """Tell the supervising parent one fact (a no-op in an unsupervised process).

    Example:
        >>> report("gcs 10.0.0.5:6379")  # nothing happens without a supervisor
    """
    fd = os.environ.get(FD_ENV)
    if fd is None or not fd.isdigit():
        return
    with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
        os.write(int(fd), f"{line}\n".encode())


def supervise(argv: Sequence[str]) -> None:
    """Fork when `argv` asks for the Ray executor: return in the child (which runs the
    command), never in the parent (which ends as the child did, or with the message
    for a cluster that went away). A no-op for any other command, in a child, and where
    `fork` does not exist."""
    if not wants_ray(argv) or FD_ENV in os.environ or not hasattr(os, "fork"):
        return
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _die_with_parent()
        os.environ[FD_ENV] = str(write_end)
        # Runs on every exit through Python (sys.exit, an exception), not on `_exit`.
        atexit.register(report, "exit")
        return
    os.close(write_end)
    code = _wait(pid)
    lines = _drain(read_end)
    os._exit(_ending(code, lines))


def _die_with_parent() -> None:
    """The child gets SIGKILL when the parent dies (a `kill -9` of the command reaches
    the process doing the work), on Linux; elsewhere it outlives a killed parent."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)


def _wait(pid: int) -> int:
    """The child's exit code (negative: the signal that ended it), passing on the signals
    a user sends the command (Ctrl-C, kill) to the child meanwhile."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _drain(fd: int) -> list[str]:
    """What the child reported. It has exited, so what it wrote is all in the pipe (a few
    short lines, far below a pipe's buffer); non-blocking, in case a Ray process it
    started still holds the write end."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65536):
            data += chunk
    return data.decode(errors="replace").splitlines()


def _ending(code: int, lines: list[str]) -> int:
    """The parent's exit code: the child's, unless Ray ended it for a lost cluster."""
    gcs = next((line[4:] for line in reversed(lines) if line.startswith("gcs ")), None)
    if code == 1 and "exit" not in lines and gcs is not None and not _reachable(gcs):
        done = sum(1 for line in lines if line == "done")
        sys.stderr.write(
            f"error: the Ray cluster at {gcs} went away and Ray ended this run's driver; "
            f"{done} chunk(s) of this run were committed and stay\n"
            "  fix: run the same command again (on a cluster that is up, or without "
            "--executor ray): it continues from what was committed\n"
        )
        sys.stderr.flush()
        return 2
    if code < 0:  # ended by a signal: end the same way, as a shell expects
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's handler cannot be set
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _reachable(address: str) -> bool:
    """Whether the GCS at `host:port` takes a TCP connection (within a few tries)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return True  # not an address we can check: assume nothing
    for attempt in range(GCS_TRIES):
        try:
            with socket.create_connection((host, int(port)), timeout=2.0):
                return True
        except OSError:
            if attempt < GCS_TRIES - 1:
                time.sleep(1.0)
    return False
