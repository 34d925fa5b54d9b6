"""Tests of verify, reconcile and attach, on small scanned stores."""

from __future__ import annotations

from pathlib import Path

from lamina.core.store import Store
from lamina.jobs.scan import scan_sources


def scanned(tmp_path: Path, *sources: Path) -> Store:
    """A fresh store at tmp_path/store with `sources` scanned into it (in process)."""
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, list(sources), workers=1, progress=False)
    return store


def files_of(store: Store) -> dict[str, dict]:
    """The store's files table as {rel_path: row}."""
    return {r["rel_path"]: r for r in store.table("files").to_pylist()}
