"""Which executor runs the map passes' chunks: the local process pool (the default), or
Ray (`--executor ray`), chosen once for a whole command.

A command runs its jobs inside `use_executor(...)`; every `run_passes` in it (each stage
of `lamina run`) then runs its chunks on that executor, which connects on first use (a
command with nothing to compute never starts Ray) and is closed when the block ends. The
scan keeps its own local pool whatever is chosen: it reads the sources' files from this
machine's disks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from lamina.core.errors import ConfigError, LaminaError
from lamina.core.ledger import without_credentials
from lamina.executors.ray import INSTALL_HINT, RayExecutor, RayMissing

EXECUTORS = ("local", "ray")

_CURRENT: ContextVar[RayExecutor | None] = ContextVar("lamina_executor", default=None)


@contextmanager
def use_executor(
    kind: str = "local", address: str | None = None, workers: int | None = None
) -> Iterator[RayExecutor | None]:
    """Run the map passes of every run inside the block on `kind`: "local" (a process pool
    per run, as without this) or "ray" (a cluster at `address`, else `RAY_ADDRESS`, else a
    local Ray started on first use; at most `workers` tasks at once when given).

    Example:
        >>> with use_executor("local") as executor:
        ...     executor is None
        True
    """
    if kind not in EXECUTORS:
        raise ConfigError(f"unknown executor {kind!r}", hint=f"one of: {', '.join(EXECUTORS)}")
    if kind == "local":
        if address:
            raise ConfigError("--ray-address is for the Ray executor", hint="add `--executor ray`")
        yield None
        return
    executor = RayExecutor(address, workers=workers)
    try:
        executor.check()
    except RayMissing as exc:
        raise LaminaError("--executor ray needs the package 'ray'", hint=INSTALL_HINT) from exc
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)
        executor.close()


def current_executor() -> RayExecutor | None:
    """The executor `use_executor` chose for this block (None: a local pool per run).

    Example:
        >>> current_executor() is None
        True
    """
    return _CURRENT.get()


def executor_record(executor: RayExecutor | None = None) -> dict[str, str | None]:
    """What runs the map passes' chunks, for a run record: the executor's kind and, for
    Ray, the cluster's address without credentials (None: a local Ray of the command's
    own). `executor`: the one `use_executor` chose when not given.

    Example:
        >>> executor_record()
        {'kind': 'local'}
        >>> executor_record(RayExecutor("ray://admin:s3cret@head.example:10001"))
        {'kind': 'ray', 'address': 'ray://head.example:10001'}
    """
    executor = executor or current_executor()
    if executor is None:
        return {"kind": "local"}
    address = executor.address
    return {
        "kind": "ray",
        "address": None if address is None else without_credentials(address),
    }
