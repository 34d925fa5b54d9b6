"""The probe layer's rows routed to the slices of a scan's listing, so that each slice
(the probe's check of what is already done, the commit) reads its own rows alone.

The probe layer is keyed by `file_key` (a hash: no order shared with the listing's
(source, path) order), and a rescan's layer holds the probes of earlier scans too, so
neither side can be read in the other's order. `route_probes` is a grace hash join of the
two: the listing's keys (with their slice number) and the layer's rows both go to
buckets by key prefix, written to files a slice or a few parts at a time; then each
bucket is joined on its own (one bucket of rows held at a time) and its matches written,
grouped by slice, to one Arrow IPC file with an index of which batches hold which slice.
Each part is read once and each row written twice, whatever the number of slices: the
cost is linear in the files, and what is held is a bucket's worth (BUCKET_ROWS keys).
"""

from __future__ import annotations

import itertools
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.manifest.spill import SPILL_ROWS, Listing, give_back_memory

# Keys per bucket (at most, on average: key prefixes are uniform) of the join.
BUCKET_ROWS = 8_192
# Hex digits of the key prefix that picks a bucket: up to 16**3 buckets.
PREFIX = 3
_RANK = "_part"  # which part a row came from, in name order: the first part's row wins
_SLICE = "_slice"


class RoutedProbes:
    """Probe rows by listing slice: `table(i)` holds the rows whose key slice `i` of the
    listing (read `slice_rows` at a time) lists, one per key. Remove with `close()`.

    Example:
        >>> routed = route_probes(listing, parts, Path("/tmp/r"), ScanPass.schema)  # doctest: +SKIP
        >>> routed.table(0).num_rows  # doctest: +SKIP
        16384
    """

    def __init__(self, folder: Path, schema: pa.Schema, index: dict[int, list[int]]) -> None:
        self.folder, self.schema, self.index = folder, schema, index
        self.path = folder / "routed.arrow"
        self.batches_read = 0  # how many stored batches `table` read (tests count them)

    def table(self, i: int) -> pa.Table:
        """Slice `i`'s probe rows (none: an empty table of the schema)."""
        wanted = self.index.get(i, [])
        if not wanted:
            return _empty(self.schema)
        # A plain file, not a memory map: mapped pages would stay in this process's RSS.
        with pa.OSFile(str(self.path)) as f:
            reader = pa.ipc.open_file(f)
            batches = [reader.get_batch(k) for k in wanted]
        self.batches_read += len(batches)
        return pa.Table.from_batches(batches, schema=self.schema)

    def keys(self, i: int) -> pa.Array:
        """Slice `i`'s keys that have a probe."""
        column = self.table(i).column(0)
        return column.combine_chunks() if column.num_chunks else pa.nulls(0, pa.string())

    def close(self) -> None:
        """Remove the routed files."""
        shutil.rmtree(self.folder, ignore_errors=True)


def route_probes(
    listing: Listing,
    parts: Sequence[Path],
    folder: Path,
    schema: pa.Schema,
    *,
    slice_rows: int = SPILL_ROWS,
) -> RoutedProbes:
    """Join the probe `parts` (Parquet files of `schema`, keyed by its first column) with
    the listing's files (rows with no walk status), under `folder` (made here; removed by
    `close()`). A key found in several parts takes its row from the first part in name
    order, as every reader of the layer does.

    Example:
        >>> route_probes(listing, sorted(layer.glob("part-*.parquet")), tmp / "routed",
        ...              ScanPass.schema).table(0).num_rows  # doctest: +SKIP
        16384
    """
    key = schema.names[0]
    folder.mkdir(parents=True, exist_ok=False)
    parts = sorted(parts, key=str)
    probe_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    count = max(1, min(16**PREFIX, math.ceil(max(listing.rows, probe_rows) / BUCKET_ROWS)))
    left_schema = pa.schema([pa.field(key, pa.string()), pa.field(_SLICE, pa.int32())])
    right_schema = schema.append(pa.field(_RANK, pa.int32()))

    with _Buckets(folder / "l", left_schema, count) as left:
        for i, batch in enumerate(listing.batches([key, "walk_status"], batch_size=slice_rows)):
            keys = batch.column(0)
            if batch.column(1).null_count < batch.num_rows:
                keys = keys.filter(pc.is_null(batch.column(1)))
            slices = _int32s(len(keys), i)
            left.add(pa.Table.from_arrays([keys, slices], schema=left_schema))
    with _Buckets(folder / "r", right_schema, count) as right:
        pending: list[pa.Table] = []
        held = 0
        for rank, part in enumerate(parts):
            # One thread: a pool's threads would each keep a malloc arena of what they read.
            table = pq.ParquetFile(part).read(columns=schema.names, use_threads=False)
            table = table.cast(schema)
            ranks = _int32s(table.num_rows, rank)
            pending.append(table.append_column(_RANK, ranks))
            held += table.num_rows
            if held >= slice_rows:  # split a few parts at a time: fewer, larger batches
                right.add(pa.concat_tables(pending))
                pending, held = [], 0
        if pending:
            right.add(pa.concat_tables(pending))

    index: dict[int, list[int]] = {}
    routed = RoutedProbes(folder, schema, index)
    with pa.OSFile(str(routed.path), "wb") as sink, pa.ipc.new_file(sink, schema) as out:
        written = 0
        for b in range(count):
            lt, rt = left.read(b), right.read(b)
            if not lt.num_rows or not rt.num_rows:
                continue
            rt = _first_per_key(rt, key)
            pos = pc.index_in(lt[key], value_set=rt[key])
            found = pc.is_valid(pos)
            slices = _numpy(lt[_SLICE].filter(found))
            matched = rt.take(pos.filter(found)).select(schema.names)
            for i, piece in _split(matched, slices):
                for batch in piece.combine_chunks().to_batches():
                    out.write_batch(batch)
                    index.setdefault(i, []).append(written)
                    written += 1
    shutil.rmtree(folder / "l")
    shutil.rmtree(folder / "r")
    give_back_memory()
    return routed


class _Buckets:
    """`count` Arrow IPC files under `folder`, one per bucket of key prefixes."""

    def __init__(self, folder: Path, schema: pa.Schema, count: int) -> None:
        self.folder, self.schema, self.count = folder, schema, count
        self.writers: dict[int, tuple[pa.OSFile, pa.ipc.RecordBatchFileWriter]] = {}

    def __enter__(self) -> _Buckets:
        self.folder.mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        for sink, writer in self.writers.values():
            writer.close()
            sink.close()

    def add(self, table: pa.Table) -> None:
        for b, piece in _split(table, _bucket_of(table.column(0), self.count)):
            if b not in self.writers:
                sink = pa.OSFile(str(self.folder / f"{b}.arrow"), "wb")
                self.writers[b] = sink, pa.ipc.new_file(sink, self.schema)
            self.writers[b][1].write_table(piece)

    def read(self, b: int) -> pa.Table:
        path = self.folder / f"{b}.arrow"
        if not path.exists():
            return _empty(self.schema)
        with pa.OSFile(str(path)) as f:
            return pa.ipc.open_file(f).read_all()


def _bucket_of(keys: pa.Array | pa.ChunkedArray, count: int) -> np.ndarray:
    """Each key's bucket, from its first PREFIX hex digits (uniform: keys are hashes); a
    key that is not hex goes to bucket 0 (any fixed bucket keeps the join right)."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if not len(keys):
        return np.zeros(0, dtype=np.int64)
    # A null key gets an entry of its own (bucket 0), not a null index.
    prefixes = pc.utf8_slice_codeunits(keys, 0, PREFIX).dictionary_encode(null_encoding="encode")
    table = np.zeros(len(prefixes.dictionary), dtype=np.int64)
    for j, prefix in enumerate(prefixes.dictionary.to_pylist()):
        try:
            table[j] = int(prefix, 16) * count >> (4 * PREFIX) if len(prefix) == PREFIX else 0
        except (TypeError, ValueError):
            table[j] = 0
    return table[_numpy(prefixes.indices)]


def _split(table: pa.Table, groups: np.ndarray) -> Iterator[tuple[int, pa.Table]]:
    """The rows of `table` by their group number (`groups`, one per row), each group once."""
    if not table.num_rows:
        return
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    table = table.take(_indices(order))
    cuts = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), len(ordered)]
    for start, end in itertools.pairwise(cuts):
        yield int(ordered[start]), table.slice(start, end - start)


def _first_per_key(table: pa.Table, key: str) -> pa.Table:
    """One row per key: the one of the first part (lowest rank)."""
    table = table.sort_by([(key, "ascending"), (_RANK, "ascending")])
    keys = table[key].combine_chunks()
    if len(keys) < 2:
        return table
    first = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
    if pc.all(first).as_py():
        return table
    head = pc.is_valid(keys.slice(0, 1))  # [True]: the first row is always kept
    return table.filter(pa.concat_arrays([head, first]))  # a null key matches nothing


def _indices(values: np.ndarray) -> pa.Array:
    # From a buffer: pa.array(ndarray) may import pandas (~0.25 s), which nothing here needs.
    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An integer array with no nulls as numpy, from its buffer: `to_numpy` and
    `fill_null` make pyarrow import pandas (~35 MB held), which nothing here needs."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    dtype = np.dtype(values.type.to_pandas_dtype())
    if not len(values):
        return np.zeros(0, dtype=dtype)
    data = np.frombuffer(values.buffers()[1], dtype=dtype)
    return data[values.offset : values.offset + len(values)]


def _int32s(n: int, value: int) -> pa.Array:
    data = np.full(n, value, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(data)])


def _empty(schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
