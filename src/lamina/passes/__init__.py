"""The built-in passes. Importing this package registers each of them, explicitly."""

from lamina import analysis  # noqa: F401
from lamina.passes import embed, hashes, scan, signals

__all__ = ["embed", "hashes", "scan", "signals"]
