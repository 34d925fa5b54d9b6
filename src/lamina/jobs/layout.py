"""`lamina layout`: describe a collection's shape once, and compute its items.

`layout init` proposes a `[layout]` from a tree (read-only) and can add it to the store's
`lamina.toml`; `layout apply` (and `lamina scan`, when the store has a layout) computes
the `items`, `item_files` and `item_meta` tables (`lamina.manifest.items`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from lamina.core.errors import ConfigError, LaminaError
from lamina.core.ledger import Run
from lamina.core.store import Store, atomic_write_bytes
from lamina.manifest.contract import (
    LAYOUT_FILE,
    Layout,
    layout_for,
    layout_toml,
    parse_layout,
    propose_layout,
)
from lamina.manifest.items import ITEM_TABLES, compute_items


@dataclass
class LayoutInitResult:
    """A proposed layout: its TOML text, what was seen, and where it was written (if)."""

    layout: dict[str, Any]
    toml: str
    notes: list[str]
    written: str | None = None


@dataclass
class LayoutResult:
    """What `layout apply` computed."""

    run_id: str
    items: int
    ok_items: int
    violations: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    layouts: dict[str, dict[str, Any]] = field(default_factory=dict)


def init_layout(
    source: str | Path,
    *,
    preset: str | None = None,
    store: Store | None = None,
    force: bool = False,
) -> LayoutInitResult:
    """Propose a layout for the tree at `source`; with `store`, add it to the store's
    `lamina.toml` (refused when it has a `[layout]` already, unless `force`). The
    collection is only read: nothing is written next to it.

    Example:
        >>> init_layout("herbarium").toml.splitlines()[-1]  # doctest: +SKIP
        'required = true'
    """
    root = Path(source).expanduser()
    values, notes = propose_layout(root, preset)
    text = layout_toml(values, notes)
    parse_layout(tomllib.loads(text)["layout"], where="the proposed layout")  # it must load
    written = None
    if store is not None:
        written = str(_write_store_layout(store, text, force=force))
    return LayoutInitResult(values, text, notes, written)


def _write_store_layout(store: Store, text: str, *, force: bool) -> Path:
    path = store.root / "lamina.toml"
    current = path.read_text(encoding="utf-8")
    doc = tomllib.loads(current)
    if "layout" in doc:
        if not force:
            raise ConfigError(
                f"{path} has a [layout] already",
                hint="edit it by hand, or pass --force to replace it with this proposal",
            )
        current = _without_layout(current)
    store.check_writable()
    with store.write_lock("layout"):
        atomic_write_bytes(path, (current.rstrip("\n") + "\n\n" + text).encode())
    return path


def _without_layout(text: str) -> str:
    """`text` (a lamina.toml) without its `[layout]` and `[[layout.*]]` tables: lamina
    writes them last, after the store's own keys."""
    keep: list[str] = []
    skipping = False
    for line in text.splitlines():
        head = line.strip()
        if head.startswith("["):
            name = head.strip("[]").strip()
            skipping = name == "layout" or name.startswith("layout.")
        if not skipping:
            keep.append(line)
    # The proposal's comments sit just above its table: drop them with it.
    while keep and (keep[-1].startswith("#") or not keep[-1].strip()):
        if keep[-1].startswith("# lamina store settings"):
            break
        keep.pop()
    return "\n".join(keep) + "\n"


def store_layouts(store: Store) -> dict[str, Layout]:
    """The layout of each recorded source (its own `lamina-layout.toml`, else the
    store's `[layout]`); sources with neither are left out.

    Example:
        >>> sorted(store_layouts(lamina.open()))  # doctest: +SKIP
        ['/data/herbarium']
    """
    if not store.table_files("files"):
        return {}
    sources = store.sql("select distinct source from files").column(0).to_pylist()
    layouts = {}
    for source in sources:
        layout = layout_for(store.root, source)
        if layout is not None:
            layouts[source] = layout
    return layouts


def check_layout(store_root: Path, sources: list[Path | str]) -> bool:
    """Load the layouts that a scan of `sources` into the store at `store_root` would use,
    so a broken one (a schema that does not parse) is refused before the scan; whether
    there is any.

    Example:
        >>> check_layout(Path("/no-store"), [Path("/no-source")])
        False
    """
    found = [layout_for(store_root, s) for s in sources]
    return any(f is not None for f in found)


def apply_layout(store: Store) -> LayoutResult:
    """Compute the items of every source that has a layout and commit the `items`,
    `item_files` and `item_meta` tables (replacing the previous ones).

    Example:
        >>> r = apply_layout(lamina.open())  # doctest: +SKIP
        >>> r.items, r.violations  # doctest: +SKIP
        (435, {'missing_sidecar': 2, 'image_count': 3})
    """
    layouts = store_layouts(store)
    if not layouts:
        if not store.table_files("files"):
            raise LaminaError(
                f"the store {store.root} has no manifest yet", hint="run `lamina scan SOURCE` first"
            )
        raise ConfigError(
            f"no layout for any source of the store {store.root}",
            hint=f"run `lamina layout init SOURCE --write` (or put a [layout] in {LAYOUT_FILE} "
            "at the source's root)",
        )
    store.check_writable()
    config = {"layouts": {s: lay.to_dict() for s, lay in layouts.items()}}
    with store.write_lock("layout"), Run(store, "layout", config) as run:
        result = compute_items(store, layouts, run_id=run.run_id)
        staging = store.staging_dir("layout")
        staged = {}
        for name, table in zip(
            ITEM_TABLES, (result.items, result.item_files, result.item_meta), strict=True
        ):
            tmp = staging / f"{name}.parquet"
            pq.write_table(table, tmp, compression="zstd")
            staged[store.table_dir(name) / f"{name}.parquet"] = tmp
        store.commit("layout", staged)
        violations: dict[str, int] = {}
        for entry in result.items.column("violations").to_pylist():
            for v in entry:
                violations[v["rule"]] = violations.get(v["rule"], 0) + 1
        ok = sum(result.items.column("ok").to_pylist())
        run.count("items", result.items.num_rows)
        run.count("ok_items", ok)
        run.count("violations", violations)
        run.count("warnings", result.warnings)
    return LayoutResult(
        run_id=run.run_id,
        items=result.items.num_rows,
        ok_items=ok,
        violations=violations,
        warnings=result.warnings,
        layouts=result.layouts,
    )
