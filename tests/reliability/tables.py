"""Compare two stores the way the reliability promise is stated: every table, every layer,
the thumbnails and the exports of a store that was killed and resumed must equal those of
an uninterrupted run: 0 rows lost, 0 rows duplicated per key, equal values.

`snapshot(store_root)` reads everything into canonical rows (run ids and other columns
that name the run that wrote them dropped, as listed in `RUN_COLUMNS`; rows keyed as in
`KEYS`); `compare(reference, other)` lists every difference as a sentence. Layers are read
straight from their part files, not through `Store.table`, so a duplicate a reader would
hide (or show) is counted either way.

Example:
    >>> problems = compare(snapshot(clean_store), snapshot(resumed_store))  # doctest: +SKIP
    >>> assert not problems, "\\n".join(problems)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

# Model float outputs (embeddings, class probabilities, label scores and everything computed
# from vectors) may differ this much between a resumed and an uninterrupted run: a batch of
# another size takes another BLAS path. Everything else must be exactly equal.
MODEL_FLOAT_TOLERANCE = 1e-6

# Layers (by pass name) and exports whose float columns are model outputs.
MODEL_OUTPUT_LAYERS = frozenset(
    {
        "embed",
        "classify",
        "tags",
        "clusters",
        "medoids",
        "exemplars",
        "outliers",
        "semantic_map",
        "semantic_duplicates",
        "exports/tags.csv",
        "exports/tags.parquet",
        "exports/folder_medoids.csv",
        "cache/text",
    }
)

# Columns that name the run which wrote a row: two runs never share them. Nothing else
# is dropped.
RUN_COLUMNS = frozenset(
    {"run_id", "first_seen_run", "last_seen_run", "content_run", "missing_since_run"}
)

# The key of each table or layer whose key is not its first column (a row per key).
KEYS: dict[str, tuple[str, ...]] = {
    "files": ("source", "rel_path"),
    "file_events": ("source", "rel_path", "event", "old_sha256", "new_sha256", "moved_from"),
    "approvals": (),  # an event log: compared as a multiset of rows
    "exemplars": ("model", "cluster", "role", "rank"),
    "medoids": ("model", "scope", "group"),
    "exports/tags.csv": ("path",),
    "exports/tags.parquet": ("path",),
    "exports/folder_medoids.csv": ("folder",),
}

# Leftovers of an atomic write cut short: `.<name>.<8 hex>.tmp`.
TEMP_SUFFIX = ".tmp"


@dataclass
class Snapshot:
    """A store read into comparable form.

    `tables` maps a name (`files`, `layers/embed/1-abc`, `exports/tags.csv`, …) to its rows,
    each a dict without run columns. `files` maps the store-relative path of every
    thumbnail and report file to a digest (thumbnails) or None (only its presence counts).
    """

    root: Path
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[str, str | None] = field(default_factory=dict)
    uncommitted_parts: list[str] = field(default_factory=list)
    records_without_part: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)

    def rows(self) -> int:
        return sum(len(rows) for rows in self.tables.values())


def _without_run_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in RUN_COLUMNS} for row in rows]


def _read_parquet(paths: list[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in paths:
        rows += pq.ParquetFile(path).read().to_pylist()
    return _without_run_columns(rows)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return _without_run_columns(list(csv.DictReader(fh)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> Snapshot:
    """Everything of the store at `root` that a killed-and-resumed run must reproduce.

    Example:
        >>> snapshot(Path("store")).tables["files"][0]["status"]  # doctest: +SKIP
        'ok'
    """
    snap = Snapshot(root)
    for table_dir in sorted((root / "tables").glob("*")):
        parts = sorted(p for p in table_dir.glob("*.parquet") if not p.name.startswith("."))
        if parts:
            snap.tables[table_dir.name] = _read_parquet(parts)
    for layer_dir in sorted((root / "layers").glob("*/*")):
        pass_name, layer_id = layer_dir.parent.name, layer_dir.name
        parts = sorted(p for p in layer_dir.glob("part-*.parquet"))
        if not parts:
            continue
        snap.tables[f"layers/{pass_name}/{layer_id}"] = _read_parquet(parts)
        ledger = root / "ledger" / pass_name / layer_id
        recorded = {
            p.name.removeprefix("chunk-").removesuffix(".json") for p in ledger.glob("chunk-*.json")
        }
        if (ledger / "global.json").is_file():
            recorded.add("global")
        chunks = {p.stem.removeprefix("part-") for p in parts}
        snap.uncommitted_parts += [
            f"{layer_dir.relative_to(root)}/part-{c}.parquet" for c in sorted(chunks - recorded)
        ]
        snap.records_without_part += [
            f"{ledger.relative_to(root)}/{c}" for c in sorted(recorded - chunks)
        ]
    exports = root / "exports"
    for name in ("tags.csv", "folder_medoids.csv"):
        if (exports / name).is_file():
            snap.tables[f"exports/{name}"] = _read_csv(exports / name)
    if (exports / "tags.parquet").is_file():
        snap.tables["exports/tags.parquet"] = _read_parquet([exports / "tags.parquet"])
    if (exports / "config.json").is_file():
        config = json.loads((exports / "config.json").read_text())
        snap.tables["exports/config.json"] = _without_run_columns([config])
    for npy in sorted((root / "cache" / "text").glob("*.npy")):
        vectors = np.load(npy, allow_pickle=False)
        snap.tables.setdefault("cache/text", []).append(
            {"file": npy.name, "vectors": vectors.ravel().tolist(), "shape": list(vectors.shape)}
        )
    for path in sorted((root / "thumbs").rglob("*")):
        if path.is_file() and not path.name.endswith(TEMP_SUFFIX):
            snap.files[str(path.relative_to(root))] = _sha256(path)
    for path in sorted((root / "report").rglob("*")):
        if path.is_file() and not path.name.endswith(TEMP_SUFFIX):
            snap.files[str(path.relative_to(root))] = None
    for path in sorted(root.rglob(f"*{TEMP_SUFFIX}")):
        if "tmp" not in path.relative_to(root).parts[:1]:
            snap.temp_files.append(str(path.relative_to(root)))
    return snap


def _kind(name: str) -> str:
    """`layers/embed/1-abc` -> `embed`; tables and exports are their own kind."""
    return name.split("/")[1] if name.startswith("layers/") else name


def key_of(name: str, row: dict[str, Any]) -> tuple[Any, ...]:
    """The key of `row` in table or layer `name` (its first column unless `KEYS` says)."""
    kind = _kind(name)
    if kind in KEYS:
        columns = KEYS[kind] or tuple(sorted(row))
    elif name == "cache/text":
        columns = ("file",)
    else:
        columns = (next(iter(row)),)
    return tuple(_hashable(row.get(c)) for c in columns)


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _equal(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], tolerance) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= tolerance
    if tolerance and isinstance(a, str) and isinstance(b, str) and a != b:
        return _equal_numbers_in_text(a, b, tolerance)
    return a == b


def _equal_numbers_in_text(a: str, b: str, tolerance: float) -> bool:
    """CSV cells of model scores (`0.81234|0.5`): equal within the tolerance, field by field."""
    fa, fb = a.split("|"), b.split("|")
    if len(fa) != len(fb):
        return False
    for x, y in zip(fa, fb, strict=True):
        if x == y:
            continue
        try:
            if abs(float(x) - float(y)) > tolerance:
                return False
        except ValueError:
            return False
    return True


def duplicated_keys(name: str, rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], int]:
    """Keys that hold more than one row, with their row counts."""
    counts = Counter(key_of(name, row) for row in rows)
    return {k: n for k, n in counts.items() if n > 1}


def compare(reference: Snapshot, other: Snapshot, *, limit: int = 20) -> list[str]:
    """Every way `other` differs from `reference`, as sentences (empty when equal).

    Example:
        >>> compare(snapshot(a), snapshot(a))  # doctest: +SKIP
        []
    """
    problems: list[str] = []
    for name in sorted(reference.tables.keys() | other.tables.keys()):
        if name not in other.tables:
            problems.append(f"{name}: missing ({len(reference.tables[name])} rows lost)")
            continue
        if name not in reference.tables:
            extra = len(other.tables[name])
            problems.append(f"{name}: not in the uninterrupted run ({extra} rows)")
            continue
        problems += _compare_table(name, reference.tables[name], other.tables[name], limit)
    for path in sorted(reference.files.keys() - other.files.keys())[:limit]:
        problems.append(f"{path}: missing")
    for path in sorted(other.files.keys() - reference.files.keys())[:limit]:
        problems.append(f"{path}: not made by the uninterrupted run")
    for path in sorted(reference.files.keys() & other.files.keys()):
        if reference.files[path] != other.files[path]:
            problems.append(f"{path}: other bytes")
    for path in other.uncommitted_parts[:limit]:
        problems.append(f"{path}: a part without a ledger record (readers see its rows)")
    for path in other.records_without_part[:limit]:
        problems.append(f"{path}: a ledger record without its part (rows lost)")
    return problems


def _compare_table(
    name: str, ref_rows: list[dict[str, Any]], rows: list[dict[str, Any]], limit: int
) -> list[str]:
    problems = []
    for label, table in (("uninterrupted", ref_rows), ("resumed", rows)):
        dups = duplicated_keys(name, table)
        if dups:
            extra = sum(n - 1 for n in dups.values())
            sample = ", ".join(f"{k} x{n}" for k, n in list(dups.items())[:3])
            problems.append(f"{name}: {extra} duplicated rows in the {label} store ({sample})")
    tolerance = MODEL_FLOAT_TOLERANCE if _kind(name) in MODEL_OUTPUT_LAYERS else 0.0
    ref = {key_of(name, r): r for r in ref_rows}
    got = {key_of(name, r): r for r in rows}
    lost = [k for k in ref if k not in got]
    extra = [k for k in got if k not in ref]
    if lost:
        problems.append(f"{name}: {len(lost)} rows lost (keys {lost[:3]})")
    if extra:
        problems.append(f"{name}: {len(extra)} rows not in the uninterrupted run ({extra[:3]})")
    differing = 0
    for key in ref.keys() & got.keys():
        a, b = ref[key], got[key]
        columns = [c for c in a.keys() | b.keys() if not _equal(a.get(c), b.get(c), tolerance)]
        if columns:
            differing += 1
            if differing <= limit:
                column = sorted(columns)[0]
                problems.append(
                    f"{name}: row {key} differs in {sorted(columns)} "
                    f"({column}: {_short(a.get(column))} != {_short(b.get(column))})"
                )
    if differing > limit:
        problems.append(f"{name}: {differing - limit} more differing rows")
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def max_float_difference(reference: Snapshot, other: Snapshot) -> float:
    """The largest difference between two float values at the same key and column of a
    model output (for the figures: how close "within the tolerance" came)."""
    worst = 0.0
    for name, ref_rows in reference.tables.items():
        if _kind(name) not in MODEL_OUTPUT_LAYERS or name not in other.tables:
            continue
        got = {key_of(name, r): r for r in other.tables[name]}
        for row in ref_rows:
            match = got.get(key_of(name, row))
            if match is not None:
                worst = max(worst, _max_diff(row, match))
    return worst


def _max_diff(a: Any, b: Any) -> float:
    if isinstance(a, dict) and isinstance(b, dict):
        return max((_max_diff(a[k], b.get(k)) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max((_max_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, float) and isinstance(b, float) and math.isfinite(a) and math.isfinite(b):
        return abs(a - b)
    return 0.0
