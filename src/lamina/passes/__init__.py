"""The built-in passes. Importing this package registers each of them, explicitly."""

from lamina import analysis  # noqa: F401
from lamina.passes import hashes, scan, signals

__all__ = ["hashes", "scan", "signals"]
