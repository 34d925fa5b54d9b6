"""The local executor: a spawn process pool sized to the cores, in-process for one worker."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """Run `fn` over tasks on this machine, yielding `(task, result or exception)` as each
    finishes. At most `2 * workers` tasks are in flight, so memory does not grow with the
    number of tasks. Only the task (names, configs, a small batch) crosses into a worker.

    Example:
        >>> list(LocalExecutor(workers=1).imap_unordered(abs, [-1]))
        [(-1, 1)]
    """

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or default_workers())

    def imap_unordered(
        self, fn: Callable[[T], R], tasks: Iterable[T]
    ) -> Iterator[tuple[T, R | BaseException]]:
        if self.workers == 1:
            for task in tasks:
                try:
                    yield task, fn(task)
                except Exception as exc:  # the runner decides whether to retry
                    yield task, exc
            return
        yield from self._pool_map(fn, iter(tasks))

    def _pool_map(
        self, fn: Callable[[T], R], tasks: Iterator[T]
    ) -> Iterator[tuple[T, R | BaseException]]:
        # spawn, not fork: workers must not inherit locks or half-initialised libraries.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        pending: dict[Future[R], T] = {}
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * self.workers:
                    task = next(tasks, None)
                    if task is None:
                        exhausted = True
                        break
                    pending[pool.submit(fn, task)] = task
                if not pending:
                    return
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                broken = False
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
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
