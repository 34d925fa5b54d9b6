"""The built-in passes. `register_all()` imports (and so registers) every one of them.

Importing this package alone registers nothing, so that a command needing one pass
imports only that pass's module: `lamina scan` would otherwise pay ~0.3 s of imports
(analysis, tagging, decoding) for passes it never runs. `get_pass` calls `register_all`
when it is asked for a pass not registered yet.
"""

from __future__ import annotations

import importlib

BUILT_IN = ("classify", "embed", "hashes", "scan", "signals", "thumbs")


def register_all() -> None:
    """Import every built-in pass module, registering each pass.

    Example:
        >>> from lamina.core.passes import REGISTRY
        >>> register_all(); "signals" in REGISTRY
        True
    """
    importlib.import_module("lamina.analysis")  # the global passes
    importlib.import_module("lamina.tagging")
    for name in BUILT_IN:
        importlib.import_module(f"lamina.passes.{name}")


__all__ = ["BUILT_IN", "register_all"]
