"""The built-in passes. Importing this package registers each of them, explicitly."""

from lamina import analysis, tagging  # noqa: F401
from lamina.passes import classify, embed, hashes, scan, signals, thumbs

__all__ = ["classify", "embed", "hashes", "scan", "signals", "thumbs"]
