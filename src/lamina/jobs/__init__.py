"""The jobs: one module per thing a user asks lamina to do (`lamina scan`, `sense`, …).

A job is a plain function `job(store, config) -> result`: `config` a frozen dataclass
(defaults = the command's defaults), `result` a dataclass with the counts the command and
the pipeline print. The command (`lamina.cli`) parses and prints; the stage of
`lamina run` (`lamina.pipeline.stages`) builds the same config from the pipeline's; both
call the same function, so they run the same passes. The public API re-exports each job
from `lamina` (`lamina.sense(store)`).

Jobs import passes, analysis, tagging, manifest, exports, index and core, never the
CLI, the pipeline or the report (`tests/test_imports.py` checks the direction). Each job
module imports `lamina.catalog`, so the built-in passes are registered.

Example:
    >>> from lamina.jobs.sense import SenseConfig, sense
    >>> sense(lamina.open(), SenseConfig(invariant=True)).sensed  # doctest: +SKIP
    312
"""
