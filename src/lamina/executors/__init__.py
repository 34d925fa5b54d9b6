"""Executors run the runner's chunk tasks: `local` (a process pool) today."""

from lamina.executors.local import LocalExecutor

__all__ = ["LocalExecutor"]
