"""`lamina sense` and the pipeline's sense stage: signals, perceptual hashes, thumbnails,
duplicate groups and flags for every scanned image, from one decode per image.

Thumbnails are part of sensing for both (`SenseConfig.thumbnails`): they share the decode
the signals and hashes make, so they cost one small encode per image here, against a
second decode of every image when the report (or `lamina thumbs`) makes them later.

On Linux the workers are forked (`forked_pool`), before the store is read: they start in
milliseconds with every import done (the passes' modules, scipy), where spawned workers
each paid a fresh interpreter and ~0.6 CPU s of imports.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store

if TYPE_CHECKING:
    from lamina.executors.local import LocalExecutor


@dataclass(frozen=True)
class SenseConfig:
    """What `lamina sense` takes (its defaults).

    policy: a flags policy TOML laid over the defaults (None: the defaults).
    invariant: also group mirrored and 90/180/270-rotated copies.
    all_signals: also the signals no flag of the policy reads (colour histograms).
    thumbnails: make the thumbnails (default recipe) from the same decode.
    """

    policy: str | None = None
    invariant: bool = False
    all_signals: bool = False
    thumbnails: bool = True
    workers: int | None = None
    max_images: int | None = None
    progress: bool = True


@dataclass
class SenseResult:
    """What sensing did: each pass's counts, the flag summary and the broken-file counts
    (as `lamina status` counts them)."""

    run_id: str
    passes: dict[str, dict[str, Any]]
    summary: dict[str, Any]
    decode: dict[str, int]

    @property
    def sensed(self) -> int:
        return int(self.passes["signals"]["processed"])

    @property
    def already_done(self) -> int:
        return int(self.passes["signals"]["already_done"])

    @property
    def failed_chunks(self) -> int:
        return sum(int(v.get("failed_chunks") or 0) for v in self.passes.values())


def sense_passes(store: Store, config: SenseConfig) -> list[tuple[str, Any]]:
    """The passes sensing runs, with their configs, in run order.

    Example:
        >>> [name for name, _ in sense_passes(store, SenseConfig())]  # doctest: +SKIP
        ['signals', 'hashes', 'thumbs', 'duplicates', 'flags']
    """
    from lamina.analysis.flags import flags_config, load_policy, signals_skip
    from lamina.passes.thumbs import thumbs_config

    policy = load_policy(config.policy)
    skip = signals_skip(policy, all_signals=config.all_signals)
    passes: list[tuple[str, Any]] = [("signals", {"skip": list(skip)}), ("hashes", None)]
    if config.thumbnails:
        passes.append(("thumbs", thumbs_config(store)))  # shares the decode
    passes += [("duplicates", {"invariant": config.invariant}), ("flags", flags_config(policy))]
    return passes


def forked_pool(store: Store, config: SenseConfig) -> LocalExecutor | None:
    """A started pool of workers forked from this process for sensing's pixel passes
    (Linux; None elsewhere, for one worker, or under another executor: the run then makes
    its own pool as before).

    Forked, not spawned: a spawned worker starts an interpreter and imports lamina, the
    passes, scipy and pandas (~0.6 CPU s each on 2 cores); a forked one inherits them. It
    is forked before anything here runs a DuckDB query (the policy check, the store
    reads: DuckDB starts its threads on a connection and ends them when it closes), so the
    only other threads are the allocator's, BLAS's and Arrow's, which fork safely (as for
    the scan's workers); where this process still holds a connection, None. scipy and
    pandas are imported here first, once for all workers; libvips and pillow-heif's
    decoders start in the workers; the store lock's descriptor is dropped in the children
    (`lamina.core.store`).

    Example:
        >>> pool = forked_pool(store, SenseConfig(workers=2))  # doctest: +SKIP
        >>> pool.fork, pool.workers  # doctest: +SKIP
        (True, 2)
    """
    from lamina.core.execution import current_executor
    from lamina.core.passes import get_pass
    from lamina.core.runner import plan_workers
    from lamina.core.sqlsafe import parser_open
    from lamina.executors.local import LocalExecutor
    from lamina.passes.thumbs import thumbs_config

    if current_executor() is not None or not sys.platform.startswith("linux"):
        return None
    if parser_open():  # DuckDB's threads run (`lamina run` checked a policy first): spawn
        return None
    names = ["signals", "hashes"]
    maps = [get_pass(name) for name in names]
    if config.thumbnails:
        maps.append(get_pass("thumbs", thumbs_config(store)))
    workers = config.workers or plan_workers(maps)
    if workers <= 1:
        return None
    from lamina.core.images import _init_plugins
    from lamina.passes.signals import _scipy

    _scipy()  # ~0.3 s: paid here once, not in each worker
    _init_plugins()
    # pyarrow imports pandas (where installed) on its first `pa.array` / `from_pydict`, in
    # every process that builds a table: ~0.3 s each, once here for all of them.
    with contextlib.suppress(ImportError):
        import pandas  # noqa: F401
    executor = LocalExecutor(workers, fork=True)
    executor.start()
    return executor


def sense(store: Store, config: SenseConfig = SenseConfig()) -> SenseResult:
    """Sense every scanned image (resumable; a finished run re-runs nothing).

    Example:
        >>> result = lamina.sense(lamina.open())  # doctest: +SKIP
        >>> result.sensed, result.summary["flags"]["blurry"]  # doctest: +SKIP
        (312, 4)
    """
    from lamina.analysis.flags import flag_summary
    from lamina.core.decode_failures import decode_summary
    from lamina.core.runner import run_passes

    if not store.table_files("images"):
        raise LaminaError(
            f"the store {store.root} has no images yet: run `lamina scan SOURCE` first"
        )
    executor = forked_pool(store, config)  # first: before any DuckDB query
    try:
        result = run_passes(
            store,
            sense_passes(store, config),
            command="sense",
            workers=config.workers,
            progress=config.progress,
            max_images=config.max_images,
            executor=executor,
        )
    finally:
        if executor is not None:
            executor.close()
    counts = {k: v for k, v in result.items() if k != "run_id"}
    return SenseResult(str(result["run_id"]), counts, flag_summary(store), decode_summary(store))


def sensed_line(store: Store, done: dict[str, Any]) -> str:
    """What sensing did and how many files are broken, counted as `lamina status` counts.

    Example:
        >>> sensed_line(store, {"processed": 246, "already_done": 0})  # doctest: +SKIP
        'sensed 246 images (0 already done); 5 broken files (2 undecodable, found by decoding)'
    """
    from lamina.core.decode_failures import decode_summary

    counts = decode_summary(store)
    line = (
        f"sensed {done['processed']} images ({done['already_done']} already done); "
        f"{counts['broken']} broken files ({counts['undecodable']} undecodable, found by "
        "decoding)"
    )
    if counts["not_decoded"]:
        line += (
            f"; {counts['not_decoded']} more images not decoded here (a format or size "
            "lamina does not decode; still ok)"
        )
    return line


@dataclass(frozen=True)
class FlagsConfig:
    """`lamina flags`: the policy TOML laid over the defaults (None: the defaults)."""

    policy: str | None = None


@dataclass
class FlagsResult:
    run_id: str
    summary: dict[str, Any]


def flags(store: Store, config: FlagsConfig = FlagsConfig()) -> FlagsResult:
    """Recompute the flags from the stored signals with a policy (seconds, no pixels).

    Example:
        >>> store = lamina.open()  # doctest: +SKIP
        >>> lamina.flags(store, FlagsConfig("strict.toml")).summary["clean"]  # doctest: +SKIP
        280
    """
    from lamina.analysis.flags import flag_summary, flags_config, load_policy
    from lamina.core.runner import run_passes

    if "signals" not in store.available_tables():
        raise LaminaError("no signals yet: run `lamina sense` first")
    result = run_passes(
        store,
        [("flags", flags_config(load_policy(config.policy)))],
        command="flags",
        progress=False,
    )
    return FlagsResult(str(result["run_id"]), flag_summary(store))
