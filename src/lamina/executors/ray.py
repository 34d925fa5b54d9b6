"""The Ray executor: chunks run as Ray tasks on a cluster (`RAY_ADDRESS` or an address
given), or on a local Ray started for the run when there is none.

Its workers compute and never write: a task returns its chunk's rows as Arrow tables (and
a pass's files as bytes) through Ray's object store, and the caller commits them in its
own process (`commits_in_driver`). So the store needs to be writable by the driver only,
and a killed driver leaves exactly what a killed local run leaves: committed chunks, and
nothing half written by a worker it no longer controls (Ray cancels a dead driver's tasks;
their results have nowhere to go).

What a task asks of the cluster (CPUs, GPUs, both may be fractions) is the caller's to say
per call (`imap_unordered(..., cpus=, gpus=)`); at most `2 x slots` tasks are in flight,
where slots is how many such tasks the cluster's CPUs hold at once (or `workers`), so the
driver's memory holds a bounded number of chunks whatever the collection's size.

A local Ray is started small (a 200 MB object store, no dashboard) and shut down by
`close()`. Ray itself is optional (`pip install 'lamina[scale]'`): `RayMissing` says so.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from lamina.executors.local import WORKER_IMPORTS, default_workers
from lamina.executors.supervisor import report

T = TypeVar("T")
R = TypeVar("R")

INSTALL_HINT = "pip install 'lamina[scale]'  (or: pip install 'ray>=2.40')"
# A local Ray's object store: results are a chunk's rows (a few MB at most) and only
# 2 x slots of them are in flight, so a small store suffices (Ray's default takes 30% of RAM).
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20
# How long one wait for a finished task lasts before the cluster is checked again. Ray's own
# client ends the whole process 60 s after its cluster's control store (GCS) went away, so
# the check must come well before that for the run to stop with its own message.
WAIT_SECONDS = 2.0
# Tries (a second apart) to reach the GCS before the cluster counts as gone.
GCS_TRIES = 3


class RayMissing(ImportError):
    """Ray is not installed."""


def _shown(address: str | None) -> str:
    """`address` as a message may show it: without a user, password or query (a token),
    as `lamina.core.ledger.without_credentials` writes it into a run record."""
    if not address:
        return "local"
    parts = urlsplit(address) if "://" in address else None
    if parts is None:
        return address.rpartition("@")[2]
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class ClusterLost(ConnectionError):
    """The Ray cluster could not be reached, or went away mid-run."""


def import_ray() -> Any:
    """The `ray` module, or `RayMissing` with the command that installs it.

    Example:
        >>> import_ray().__name__  # doctest: +SKIP
        'ray'
    """
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayMissing(f"--executor ray needs the package 'ray': {INSTALL_HINT}") from exc


def _run(fn: Callable[[T], R], task: T, imports: tuple[str, ...]) -> R:
    """A Ray task: import what the driver's workers must have imported (the passes'
    registry), then run `fn`. A Ray worker process is reused between tasks, so the imports
    and whatever `fn` caches (loaded models) are paid once per worker."""
    for module in imports:
        importlib.import_module(module)
    return fn(task)


class RayExecutor:
    """Run `fn` over tasks as Ray tasks, yielding `(task, result or exception)` as each
    finishes, at most `2 x slots` in flight.

    `address`: a cluster's (`ray://host:10001`, `host:6379`, `auto`); None reads
    `RAY_ADDRESS`, and when that is unset too a local Ray of `local_cpus` CPUs (default:
    this machine's cores) is started on first use and stopped by `close()`.
    `workers`: at most this many tasks run at once (default: as many as the CPUs hold).

    Example:
        >>> with RayExecutor() as ex:  # doctest: +SKIP
        ...     list(ex.imap_unordered(abs, [-1]))
        [(-1, 1)]
    """

    name = "ray"
    # The caller commits the results in its own process: workers do not write the store.
    commits_in_driver = True

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        local_cpus: int | None = None,
        object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES,
        max_retries: int = 1,
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.requested_workers = workers
        self.local_cpus = local_cpus
        self.object_store_bytes = object_store_bytes
        # Ray re-runs a task whose worker process died this many times; the caller's own
        # retries (an exception in the task) come on top.
        self.max_retries = max_retries
        self._ray: Any = None
        self._owns = False  # this executor called ray.init, so it calls ray.shutdown
        self._gcs: str | None = None  # the cluster's GCS address, host:port

    # -- connection --------------------------------------------------------------------------

    def check(self) -> None:
        """Fail now, before any work, when Ray is not installed (`RayMissing`)."""
        import_ray()

    def start(self) -> None:
        """Connect to the cluster (or start a local Ray) unless already connected."""
        if self._ray is not None:
            return
        ray = import_ray()
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(
                        address=self.address,
                        namespace="lamina",
                        logging_level=logging.WARNING,
                    )
                else:
                    # address="local": a new Ray of our own, never one that another
                    # process on this machine started (ray.init() alone would join it).
                    ray.init(
                        address="local",
                        num_cpus=self.local_cpus or default_workers(),
                        object_store_memory=self.object_store_bytes,
                        include_dashboard=False,
                        namespace="lamina",
                        logging_level=logging.WARNING,
                    )
            except ConnectionError as exc:
                where = _shown(self.address)
                detail = str(exc).replace(self.address or "", where)  # Ray may echo it
                raise ClusterLost(f"cannot reach the Ray cluster at {where}: {detail}") from exc
            self._owns = True
        self._ray = ray
        report(f"gcs {self._gcs_address()}")  # for the supervisor (executors.supervisor)

    @property
    def started(self) -> bool:
        return self._ray is not None

    def close(self) -> None:
        """Disconnect (and stop the local Ray this executor started)."""
        ray, self._ray = self._ray, None
        self._gcs = None
        if ray is not None and self._owns:
            self._owns = False
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sizing ------------------------------------------------------------------------------

    def cluster_resources(self) -> dict[str, float]:
        """What the cluster has in all (CPU, GPU, memory…), as Ray reports it."""
        self.start()
        return dict(self._ray.cluster_resources())

    def slots(self, cpus: float = 1.0) -> int:
        """How many tasks of `cpus` CPUs run at once: `workers` when given, else as many as
        the cluster's CPUs hold (at least one)."""
        if self.requested_workers:
            return max(1, self.requested_workers)
        total = self.cluster_resources().get("CPU", 1.0)
        return max(1, int(total / max(cpus, 1e-3)))

    @property
    def workers(self) -> int:
        """Tasks of one CPU that run at once (what chunk sizes are planned for)."""
        return self.slots(1.0)

    # -- running -----------------------------------------------------------------------------

    def imap_unordered(
        self,
        fn: Callable[[T], R],
        tasks: Iterable[T],
        *,
        cpus: float = 1.0,
        gpus: float = 0.0,
    ) -> Iterator[tuple[T, R | BaseException]]:
        """`(task, result or exception)` as each task finishes. An exception raised by
        `fn` comes back as itself (a Ray worker that died, as Ray's error), for the caller
        to retry; a cluster that went away raises `ClusterLost`."""
        self.start()
        ray = self._ray
        if gpus > 0 and self.cluster_resources().get("GPU", 0.0) < gpus:
            # Ray would queue such a task for ever, waiting for a GPU node to join.
            raise ClusterLost(f"the tasks ask for {gpus:g} GPU each and the Ray cluster has none")
        remote = ray.remote(_run).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=self.max_retries, retry_exceptions=False
        )
        imports = tuple(WORKER_IMPORTS)
        in_flight = 2 * self.slots(cpus)
        pending: dict[Any, T] = {}
        tasks = iter(tasks)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < in_flight:
                    task = next(tasks, None)
                    if task is None:
                        exhausted = True
                        break
                    pending[remote.remote(fn, task, imports)] = task
                if not pending:
                    return
                ready = self._wait(list(pending))
                for ref in ready:
                    task = pending.pop(ref)
                    result = self._result(ref)
                    if not isinstance(result, BaseException):
                        report("done")  # a finished task's chunks are committed
                    yield task, result
        finally:
            for ref in pending:  # an early stop: tasks nobody will read
                with contextlib.suppress(Exception):  # the cluster may be gone already
                    ray.cancel(ref, force=True)

    def _wait(self, refs: list[Any]) -> list[Any]:
        """The refs that finished, waiting until one does; `ClusterLost` when the cluster
        stops answering meanwhile."""
        ray = self._ray
        while True:
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=WAIT_SECONDS)
            except Exception as exc:  # whatever Ray raises here, the cluster is gone
                raise self._lost(str(exc)) from exc
            if ready:
                return list(ready)
            self._check_alive()

    def _check_alive(self) -> None:
        """`ClusterLost` when the cluster's GCS stops taking connections. A plain TCP
        connect, not a Ray call: Ray's calls wait (up to a minute) for a GCS that is gone."""
        address = self._gcs_address()
        host, _, port = address.rpartition(":")
        for attempt in range(GCS_TRIES):
            try:
                with socket.create_connection((host, int(port)), timeout=2.0):
                    return
            except OSError as exc:
                if attempt == GCS_TRIES - 1:
                    raise self._lost(exc.strerror or str(exc)) from exc
                time.sleep(1.0)

    def _lost(self, detail: str) -> ClusterLost:
        where = self._gcs or _shown(self.address)
        first_line = (detail.strip().splitlines() or ["no answer"])[0]
        return ClusterLost(f"the Ray cluster at {where} went away ({first_line})")

    def _gcs_address(self) -> str:
        if self._gcs is None:
            self._gcs = str(self._ray.get_runtime_context().gcs_address)
        return self._gcs

    def _result(self, ref: Any) -> Any:
        ray = self._ray
        from ray import exceptions as rex

        try:
            return ray.get(ref)
        except rex.RayTaskError as exc:
            # The task's own exception, as the local executor would give it.
            cause = getattr(exc, "cause", None)
            return cause if isinstance(cause, BaseException) else exc
        except (rex.RaySystemError, rex.GetTimeoutError) as exc:
            raise self._lost(str(exc)) from exc
        except rex.RayError as exc:
            # A worker that died or an object lost: the chunk is retried. Unless the whole
            # cluster went with it: then every retry would fail the same way.
            self._check_alive()
            return exc
