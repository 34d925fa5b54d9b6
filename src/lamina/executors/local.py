"""The local executor: a spawn process pool sized to the cores (or threads), in-process for one
worker.

Starting the pool costs a fresh interpreter and its imports per worker (about half a second
here), so a caller that knows work is coming can `start()` it early, with a warm-up
function that does the imports, and let that overlap its own work (the scan starts it
while it walks the sources). With `work_while_starting`, the calling process also runs
tasks itself until the first worker is up, so no time is lost waiting on the start; if it
finishes everything first, the workers that never ran anything are killed rather than
waited for.

With `fork` (Linux), the workers are forked from this process instead of spawned: no
interpreter start and no imports, so a pool starts in milliseconds; for callers whose
tasks use only fork-safe libraries (the scan), and only from a process with one thread.

With `threads`, the workers are threads of this process instead: nothing to start, and
work that releases the GIL (reading and hashing files) still runs on every core, but
Python code runs one thread at a time. The scan uses it for work too small to repay the
start of a pool; `fn` must then be thread-safe.

Workers die with their parent. A `kill -9` of lamina (or the OOM killer) gives the pool
no chance to stop them, and a worker left behind would go on writing into the store while
a new run redoes its work. On Linux each worker asks the kernel for SIGKILL when its
parent dies (`PR_SET_PDEATHSIG`); everywhere, a worker checks that its parent is still
the one that started it before each task (`exit_if_orphaned`), and the runner checks
again right before it commits.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ready() -> bool:
    """A no-op task: once one returns, at least one worker has started and warmed up."""
    return True


# The pid of the process that started this worker; None outside a pool worker.
_PARENT_PID: int | None = None
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker end when `parent_pid` does.

    The kernel sends PDEATHSIG when the *thread* that started the worker exits, so a
    pool must be started by a thread that outlives it (the runner's calling thread).
    A parent that died before the request was made is caught by the pid check after it.
    """
    global _PARENT_PID
    _PARENT_PID = parent_pid
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    exit_if_orphaned()


def orphaned() -> bool:
    """True in a pool worker whose parent has died (it was re-parented).

    Example:
        >>> orphaned()  # not a pool worker
        False
    """
    return _PARENT_PID is not None and os.getppid() != _PARENT_PID


def exit_if_orphaned() -> None:
    """End this worker at once when its parent has died: nobody waits for its results,
    and a new run may already be redoing its work. Does nothing outside a pool worker.

    Example:
        >>> exit_if_orphaned()  # the calling process is not an orphaned worker
    """
    if orphaned():
        os._exit(1)  # no cleanup: an atexit teardown could block or write


# Modules every new worker imports before its first task. A module that must also be
# loaded in the workers (`lamina.catalog`, whose import registers the built-in passes a
# task names) adds itself here when the main process imports it.
WORKER_IMPORTS: list[str] = []


def _warm(
    warm_up: Callable[[], object] | None,
    parent_pid: int | None = None,
    imports: tuple[str, ...] = (),
) -> None:
    """Pool initializer: tie the worker's life to its parent's, import `imports`
    (`WORKER_IMPORTS` when the pool started), then run the caller's warm-up (imports).

    A warm-up only saves time; if it fails, the first real task will fail the same way
    and be reported there, so its error must not break the pool.
    """
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    for module in imports:
        importlib.import_module(module)
    if warm_up is not None:
        with contextlib.suppress(Exception):
            warm_up()


def _guarded(fn: Callable[[T], R], task: T) -> R:
    """Run one task in a pool worker, unless the parent that asked for it is gone."""
    exit_if_orphaned()
    return fn(task)


class LocalExecutor:
    """Run `fn` over tasks on this machine, yielding `(task, result or exception)` as each
    finishes. At most `2 * workers` tasks are in flight, so memory does not grow with the
    number of tasks. Only the task (names, configs, a small batch) crosses into a worker.

    Example:
        >>> list(LocalExecutor(workers=1).imap_unordered(abs, [-1]))
        [(-1, 1)]
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        *,
        work_while_starting: bool = False,
        threads: bool = False,
        fork: bool = False,
    ) -> None:
        self.workers = max(1, workers or default_workers())
        # Start the workers by forking this process (Linux only; see `_new_pool`).
        self.fork = fork and sys.platform.startswith("linux")
        # Run tasks in this process while the pool's workers are still starting.
        self.work_while_starting = work_while_starting
        self.threads = threads  # workers are threads of this process
        self._pool: ProcessPoolExecutor | None = None
        self._warm_up: Callable[[], object] | None = None
        self._ready: list[Future[bool]] = []

    @property
    def started(self) -> bool:
        """Whether worker processes have been started (never for one worker)."""
        return self._pool is not None

    def start(self, warm_up: Callable[[], object] | None = None) -> None:
        """Start the worker processes now, without waiting for them, so their start-up
        (interpreter, imports, `warm_up`: a picklable module-level function) overlaps
        whatever the caller does next. Does nothing for one worker or when started."""
        if self.workers == 1 or self.threads or self._pool is not None:
            return
        self._warm_up = warm_up
        # Fork only from a process with one thread: another could hold a lock (the import
        # lock, the loader's, a library's) that the children would find held forever.
        self._pool = self._new_pool(fork=self.fork and threading.active_count() == 1)
        # Each submit spawns one worker (up to `workers`), so this starts them all now;
        # a worker runs a task only after its initializer, so a finished one means "ready".
        self._ready = [self._pool.submit(_ready) for _ in range(self.workers)]

    def _new_pool(self, *, fork: bool = False) -> ProcessPoolExecutor:
        # spawn, not fork: workers must not inherit locks or half-initialised libraries.
        # A caller may ask for fork (`fork=True`) when it starts the pool from a process
        # with no other thread running and whose tasks need only fork-safe libraries
        # (the scan: files, hashlib, Arrow): the workers then start in milliseconds, with
        # every import done, instead of ~0.5 s each. Python's fork pool forks all its
        # workers in `submit` before starting its own manager thread, so `start` forks
        # from a single-threaded process. A pool restarted after a crash is spawned: by
        # then, threads run.
        context = multiprocessing.get_context("fork" if fork else "spawn")
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_warm,
            initargs=(self._warm_up, os.getpid(), tuple(WORKER_IMPORTS)),
        )

    def _pool_ready(self) -> bool:
        # No ready markers: a pool started after a crash, used as soon as it is up.
        return not self._ready or any(f.done() for f in self._ready)

    def close(self) -> None:
        """Stop the workers. Workers that never finished starting (so never ran a task)
        are killed instead of waited for; the others exit normally (teardown included)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._ready and not self._pool_ready():
            # No worker finished starting, so none ran a task: nothing of theirs can be
            # half done, and waiting would cost the rest of their start-up for nothing.
            # (`_processes` is private; Python 3.14's terminate_workers() does the same.)
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
        self._ready = []
        pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def imap_unordered(
        self, fn: Callable[[T], R], tasks: Iterable[T]
    ) -> Iterator[tuple[T, R | BaseException]]:
        if self.workers == 1:
            for task in tasks:
                yield task, _call(fn, task)
            return
        if self.threads:
            pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lamina-worker")
            try:
                yield from _bounded_map(pool, fn, iter(tasks), 2 * self.workers)
            finally:  # on an early stop, queued tasks are dropped, running ones finish
                pool.shutdown(wait=True, cancel_futures=True)
            return
        if self._pool is None:
            # Not started by the caller: this run owns the pool and stops it at the end.
            self.start()
            try:
                yield from self._pool_map(fn, iter(tasks))
            finally:
                self.close()
            return
        yield from self._pool_map(fn, iter(tasks))

    def _pool_map(
        self, fn: Callable[[T], R], tasks: Iterator[T]
    ) -> Iterator[tuple[T, R | BaseException]]:
        assert self._pool is not None
        pending: dict[Future[R], T] = {}
        exhausted = False
        while True:
            if self.work_while_starting and not exhausted and not self._pool_ready():
                # No worker is up yet: do the next task here rather than queue it behind
                # their start-up. Checked between tasks, so a worker that comes up waits
                # at most one task's time for work.
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                else:
                    yield task, _call(fn, task)
                continue
            broken = False
            while not exhausted and len(pending) < 2 * self.workers:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                try:
                    pending[self._pool.submit(_guarded, fn, task)] = task
                except BrokenProcessPool as exc:  # the pool broke before this task went in
                    broken = True
                    yield task, exc
                    break
            if not pending and not broken:
                return
            if not broken:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = pending.pop(future)
                    exc = future.exception()
                    broken = broken or isinstance(exc, BrokenProcessPool)
                    yield task, (exc if exc is not None else future.result())
            if broken:
                # A worker died (killed, out of memory): every task in flight is lost.
                # Report them as failed so the runner can retry, and start a new pool.
                for task in pending.values():
                    yield task, BrokenProcessPool("a worker process died")
                pending.clear()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                self._ready = []  # the new pool is used as soon as its workers are up


def _bounded_map(
    pool: Executor, fn: Callable[[T], R], tasks: Iterator[T], in_flight: int
) -> Iterator[tuple[T, R | BaseException]]:
    """`(task, result or exception)` as each finishes, at most `in_flight` at a time."""
    pending: dict[Future[R], T] = {}
    exhausted = False
    while True:
        while not exhausted and len(pending) < in_flight:
            task = next(tasks, None)
            if task is None:
                exhausted = True
                break
            pending[pool.submit(fn, task)] = task
        if not pending:
            return
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            task = pending.pop(future)
            exc = future.exception()
            yield task, (exc if exc is not None else future.result())


def _call(fn: Callable[[T], R], task: T) -> R | BaseException:
    try:
        return fn(task)
    except Exception as exc:  # the runner decides whether to retry
        return exc
