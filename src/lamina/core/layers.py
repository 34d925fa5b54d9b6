"""What a reader may see of a layer: its committed parts, and never two rows for one key.

A map pass's layer is the union of its parts (`part-<chunk>.parquet`), each counted once
its ledger record (`chunk-<chunk>.json`) exists. Parts are disjoint by key by
construction: the runner skips committed keys, and commits are fenced by the store's
lock (`lamina.core.store.fenced_commit`). Two parts can only share a key when that
construction was broken (a store written by lamina before the fence, or files copied in
by hand). Readers must still never see the key twice, so:

* the rule: when several parts hold one key, the row of the part whose name sorts first
  counts; `Store.connect` views, `read_layer` and `lamina.core.vectors.load_embeddings`
  all apply it, and `repair_layer` makes it permanent;
* the cost: checking a layer reads every key, and deduplicating in a view costs a window
  over the whole layer on every query (measured: `count(*)` over 1M rows 0.04 s plain,
  1.3 s deduplicated). So a layer known to be clean carries a *certificate*
  (`ledger/<pass>/<layer>/keys.checked`: a digest of the names, sizes and mtimes of the
  parts that were checked). The runner writes it after a map pass under the lock, and
  `lamina verify` after checking. Readers deduplicate only a layer whose parts no longer
  match its certificate (a run in progress or killed, or an older store).

Layers without chunk records (global passes' `part-global.parquet`, or parts written by
hand) are read as they are: every part, no deduplication.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.ledger import done_chunks, utc_now, write_chunk_record
from lamina.core.store import atomic_write_json, atomic_write_parquet

CERTIFICATE = "keys.checked"  # JSON, but not `*.json`: the ledger's readers glob those


def ledger_dir_of(layer_dir: Path) -> Path:
    """`<store>/ledger/<pass>/<layer>` for `<store>/layers/<pass>/<layer>`.

    Example:
        >>> ledger_dir_of(Path("/s/layers/embed/1-ab")).as_posix()
        '/s/ledger/embed/1-ab'
    """
    return layer_dir.parents[2] / "ledger" / layer_dir.parent.name / layer_dir.name


def is_chunked(layer_dir: Path) -> bool:
    """Whether the layer is a map pass's, made of committed chunks (its ledger has chunk
    records), rather than one global part or parts written by hand."""
    ledger = ledger_dir_of(layer_dir)
    return ledger.is_dir() and any(ledger.glob("chunk-*.json"))


def readable_parts(layer_dir: Path) -> list[Path]:
    """The parts a reader may see, sorted by name: the committed ones of a map pass's
    layer (a part without its record is a chunk killed mid-commit), else every part.

    Example:
        >>> readable_parts(Path("/nonexistent/layers/x/1-a"))
        []
    """
    if not layer_dir.is_dir():
        return []
    parts = sorted(p for p in layer_dir.glob("*.parquet") if not p.name.startswith("."))
    if not is_chunked(layer_dir):
        return parts
    done = done_chunks(ledger_dir_of(layer_dir))
    return [p for p in parts if p.stem.removeprefix("part-") in done]


def parts_digest(parts: list[Path]) -> str:
    """A hash of the parts' names, sizes and mtimes: changes when any part does."""
    digest = hashlib.sha256()
    for part in sorted(parts):
        st = part.stat()
        digest.update(f"{part.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def is_certified(layer_dir: Path, parts: list[Path] | None = None) -> bool:
    """Whether the layer's parts are still those found free of duplicate keys."""
    parts = readable_parts(layer_dir) if parts is None else parts
    try:
        record = json.loads((ledger_dir_of(layer_dir) / CERTIFICATE).read_text())
        return record.get("parts") == parts_digest(parts)
    except (OSError, ValueError, AttributeError):
        return False


def certify(layer_dir: Path, parts: list[Path], digest: str | None = None) -> None:
    """Record that `parts` hold no key twice (`digest`: as computed before the check).
    Only for a caller that knows it: the runner holding the lock, or a check."""
    record = {"parts": digest or parts_digest(parts), "checked": utc_now(), "n_parts": len(parts)}
    atomic_write_json(ledger_dir_of(layer_dir) / CERTIFICATE, record)


def needs_dedup(layer_dir: Path, parts: list[Path]) -> bool:
    """Whether readers must deduplicate this layer by key (a map layer not certified)."""
    return len(parts) > 1 and is_chunked(layer_dir) and not is_certified(layer_dir, parts)


def key_column(parts: list[Path]) -> str:
    """A layer's key: the first column of its schema (the pass contract)."""
    return pq.read_schema(parts[0]).names[0]


def first_rows(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A mask keeping the first row of each key (and every null key), in row order.

    Example:
        >>> first_rows(pa.array(["a", "b", "a", None, None])).to_pylist()
        [True, True, False, True, True]
    """
    index = pa.table({"k": keys, "i": pa.array(range(len(keys)), pa.int64())})
    firsts = index.group_by("k", use_threads=False).aggregate([("i", "min")])["i_min"]
    keep = pc.is_in(index["i"], value_set=firsts)
    return pc.or_(keep, pc.is_null(index["k"])).combine_chunks()


def read_layer(layer_dir: Path, columns: list[str] | None = None) -> pa.Table | None:
    """A layer's readable parts as one table in part order, each key once (see the module
    docstring for which row wins); None when it has no part.

    Example:
        >>> read_layer(store.layer_dir("classify", layer_id))  # doctest: +SKIP
    """
    parts = readable_parts(layer_dir)
    if not parts:
        return None
    if not needs_dedup(layer_dir, parts):
        return pq.read_table(parts, columns=columns)
    key = key_column(parts)
    wanted = None if columns is None else list(dict.fromkeys([key, *columns]))
    table = pq.read_table(parts, columns=wanted)
    table = table.filter(first_rows(table[key]))
    return table if columns is None else table.select(columns)


@dataclass(frozen=True)
class LayerCheck:
    """What `check_layer` found: keys held by more than one part, and the extra rows."""

    layer: str  # "<pass>/<layer id>"
    parts: int
    rows: int
    duplicate_keys: int
    extra_rows: int


def check_layer(layer_dir: Path, *, certify_clean: bool = False) -> LayerCheck:
    """Count the keys of a map pass's layer held by more than one committed part.
    `certify_clean`: record a clean layer's certificate, so readers skip the check.

    Example:
        >>> check_layer(store.layer_dir("thumbs", layer_id)).duplicate_keys  # doctest: +SKIP
        0
    """
    name = f"{layer_dir.parent.name}/{layer_dir.name}"
    parts = readable_parts(layer_dir)
    if not parts or not is_chunked(layer_dir):
        return LayerCheck(name, len(parts), 0, 0, 0)
    digest = parts_digest(parts)  # before reading: a part changed meanwhile voids it
    key = key_column(parts)
    keys = pa.chunked_array([pq.ParquetFile(p).read(columns=[key])[key] for p in parts])
    valid = keys.filter(pc.is_valid(keys))
    distinct = pc.count_distinct(valid).as_py()
    extra = len(valid) - distinct
    duplicate_keys = 0
    if extra:
        counts = pc.value_counts(valid)
        duplicate_keys = pc.sum(pc.greater(counts.field("counts"), 1)).as_py() or 0
    elif certify_clean:
        certify(layer_dir, parts, digest)
    return LayerCheck(name, len(parts), len(keys), duplicate_keys, extra)


def map_layer_dirs(root: Path) -> list[Path]:
    """Every map pass's layer folder in the store at `root` (those with chunk records)."""
    base = root / "layers"
    if not base.is_dir():
        return []
    return sorted(d for d in base.glob("*/*") if d.is_dir() and is_chunked(d))


def repair_layer(layer_dir: Path) -> dict[str, int]:
    """Make the reading rule permanent: drop every row whose key an earlier part (by name)
    already holds. A part left empty is removed with its record; one left smaller is
    rewritten with its old mtime (so the layer stays where it was in `layer_dirs`' order)
    and its record's `rows` updated. Safe only under the store's write lock; each step
    leaves a readable layer, so a crash midway loses nothing (run it again).

    Example:
        >>> repair_layer(store.layer_dir("thumbs", layer_id))  # doctest: +SKIP
        {'duplicate_keys': 29, 'rows_dropped': 29, 'parts_rewritten': 1, 'parts_removed': 6}
    """
    found = check_layer(layer_dir)
    summary = {"duplicate_keys": found.duplicate_keys, "rows_dropped": 0}
    summary.update(parts_rewritten=0, parts_removed=0)
    if not is_chunked(layer_dir):
        return summary
    parts = readable_parts(layer_dir)
    if found.extra_rows:
        ledger = ledger_dir_of(layer_dir)
        key = key_column(parts)
        per_part = [pq.ParquetFile(p).read(columns=[key])[key] for p in parts]
        # Parts in name order, so the first part holding a key keeps it.
        keep_all = first_rows(pa.chunked_array(per_part, per_part[0].type))
        offset = 0
        for part, keys in zip(parts, per_part, strict=True):
            keep = keep_all.slice(offset, len(keys))
            offset += len(keys)
            n_keep = pc.sum(keep).as_py() or 0
            if n_keep == len(keys):
                continue
            chunk = part.stem.removeprefix("part-")
            record_path = ledger / f"chunk-{chunk}.json"
            summary["rows_dropped"] += len(keys) - n_keep
            if n_keep == 0:
                # The record first: a part without one is swept by the next run.
                record_path.unlink(missing_ok=True)
                part.unlink(missing_ok=True)
                summary["parts_removed"] += 1
                continue
            mtime_ns = part.stat().st_mtime_ns
            atomic_write_parquet(part, pq.read_table(part).filter(keep))
            os.utime(part, ns=(mtime_ns, mtime_ns))
            record = json.loads(record_path.read_text())
            record.update(rows=n_keep, repaired=utc_now())
            write_chunk_record(ledger, chunk, record)
            summary["parts_rewritten"] += 1
        parts = readable_parts(layer_dir)
    if parts:
        certify(layer_dir, parts)
    return summary
