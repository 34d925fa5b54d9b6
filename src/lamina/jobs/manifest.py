"""`lamina verify`, `lamina reconcile` and `lamina attach`: jobs over the manifest (the
work is in `lamina.manifest.verify`, `.reconcile` and `.attach`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.store import Store

if TYPE_CHECKING:
    from lamina.manifest.reconcile import ReconcileResult


@dataclass(frozen=True)
class VerifyConfig:
    """What `lamina verify` takes (its defaults). sample: check a random sample of N files
    (None: all); repair_layers: rewrite layers that hold an image twice."""

    sample: int | None = None
    seed: int = 0
    workers: int | None = None
    progress: bool = True
    repair_layers: bool = False


@dataclass
class VerifyResult:
    """`report` is `lamina.manifest.verify.verify`'s (counts, problems, duplicate and
    repaired layers, run_id); `clean`: every file checked is ok and no layer is left
    holding a key twice."""

    run_id: str
    checked: int
    ok: int
    report: dict[str, Any]

    @property
    def clean(self) -> bool:
        unrepaired = len(self.report["duplicate_layers"]) > len(self.report["repaired_layers"])
        return self.checked == self.ok and not unrepaired


def verify(store: Store, config: VerifyConfig = VerifyConfig()) -> VerifyResult:
    """Re-read the manifest's files and report bit rot, missing and modified files.

    Example:
        >>> lamina.verify(lamina.open(), VerifyConfig(sample=100)).clean  # doctest: +SKIP
        True
    """
    from lamina.manifest.verify import verify as run_verify

    report = run_verify(
        store,
        sample=config.sample,
        seed=config.seed,
        workers=config.workers,
        progress=config.progress,
        repair_layers=config.repair_layers,
    )
    return VerifyResult(str(report["run_id"]), report["checked"], report["ok"], report)


@dataclass(frozen=True)
class ReconcileConfig:
    """What `lamina reconcile` takes: listings `a` and `b` (stores, or CSV/Parquet/JSONL
    lists of paths), and `output`, a CSV of every row to write (checked against every
    store in sight, as any output; `force` / `force_into_source` as
    `lamina.core.outputs.check_output_path` takes them)."""

    a: str
    b: str
    output: str | None = None
    force: bool = False
    force_into_source: bool = False


def reconcile(store: Store | None, config: ReconcileConfig) -> ReconcileResult:
    """Compare two manifests (`lamina.manifest.reconcile.reconcile`), and write every row
    to `config.output`. `store`: the store the caller names (or None), whose files `output`
    must not overwrite either, like A's, B's and the one found from the working folder.

    Example:
        >>> r = lamina.reconcile(None, ReconcileConfig("photos", "bucket.csv"))  # doctest: +SKIP
        >>> r.summary["only_in_a_by_class"]  # doctest: +SKIP
        {'apple_double': 346}
    """
    from lamina.core.csvtext import frame_csv
    from lamina.core.outputs import check_output_path, write_output
    from lamina.core.store import find_store
    from lamina.manifest.listing import store_root_of
    from lamina.manifest.reconcile import reconcile as run_reconcile

    # -o is checked against every store in sight: A, B, the caller's and the nearest one.
    roots = {store_root_of(config.a), store_root_of(config.b), find_store()}
    if store is not None:
        roots.add(store.root)
    stores = [Store.open(root) for root in {r.resolve() for r in roots if r is not None}]
    output, force, into = config.output, config.force, config.force_into_source
    if output:
        check_output_path(stores, output, force=force, force_into_source=into)
    result = run_reconcile(config.a, config.b)
    if output:
        text = frame_csv(result.rows.to_pandas())
        write_output(stores, output, text, force=force, force_into_source=into)
    return result


@dataclass(frozen=True)
class AttachConfig:
    """What `lamina attach` takes: the metadata (CSV, JSON, JSONL, Parquet or a glob of
    JSON manifests), what its key matches (path, name, hash or folder) and the key column
    (None: guessed)."""

    spec: str
    on: str = "path"
    key: str | None = None


@dataclass
class AttachResult:
    """`report` is `lamina.manifest.attach.attach`'s (columns, unmatched, several, …)."""

    rows: int
    matched_images: int
    report: dict[str, Any]


def attach(store: Store, config: AttachConfig) -> AttachResult:
    """Join per-image metadata into the `meta` table.

    Example:
        >>> lamina.attach(lamina.open(), AttachConfig("labels.csv")).rows  # doctest: +SKIP
        120
    """
    from lamina.manifest.attach import attach as run_attach

    report = run_attach(store, config.spec, on=config.on, key=config.key)
    return AttachResult(report["rows"], report["matched_images"], report)
