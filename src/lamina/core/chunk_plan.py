"""Chunk planning: how a run's input rows become chunk tasks (`ChunkTask`), and how many
workers and what resources those tasks get.

A chunk's id is a hash of the keys it holds (`chunk_id_for`), so the same rows give the
same id whatever the chunking. Passes that share a `decode` recipe share a chunk
(`pass_groups`); pixel chunks are sized to keep every worker busy (`decode_chunk_size`)
and re-cut smaller at the end of a run (`taper_bounds`). The runner (`lamina.core.runner`)
drives these tasks; `lamina.core.chunk_work` computes and commits each one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.ledger import Run
from lamina.core.passes import Pass, Resources
from lamina.core.store import Store
from lamina.executors.local import default_workers

# Rows per chunk for pixel passes: see decode_chunk_size.
DECODE_CHUNK_MIN = 32
DECODE_CHUNK_MAX = 256
# The model passes' default batch size: pixel chunks are a multiple of it, so that their
# forward passes (always full batches, see lamina.backends.embedders._common.pad_batch)
# need padding only in a run's last chunk.
DECODE_BATCH = 32


@dataclass(frozen=True)
class PassPart:
    """One pass's share of a chunk: which rows it still needs and the part it writes."""

    pass_name: str
    config: dict[str, Any]
    layer_id: str
    chunk_id: str
    rows: tuple[int, ...] | None  # None: every row of the chunk


@dataclass(frozen=True)
class ChunkTask:
    """All a worker needs to do one chunk: pass names, configs and the input rows."""

    parts: tuple[PassPart, ...]
    store_root: str
    run_id: str
    batch: bytes  # Arrow IPC stream of the input rows
    lock_token: str | None = None  # the store lock's token when the run started (fencing)

    @property
    def chunk_id(self) -> str:
        return self.parts[0].chunk_id


class RowsFile:
    """A run's input rows kept in a Parquet file rather than in memory (`run_passes`
    writes the image inputs there): the driver reads one column at a time (the keys, to
    find the rows still to do) and each chunk's rows only when its task is handed out, so
    that it never holds every row's paths and header facts at once. `mask`: which of the
    file's rows are in (None: all). Acts as the `pa.Table` the runner otherwise gets, for
    what the runner asks of one (`num_rows`, `column_names`, a column, `filter`).

    Example:
        >>> rows = RowsFile(path).filter(pa.array([True, False, True]))  # doctest: +SKIP
        >>> [t.num_rows for t in rows.slices([(0, 1), (1, 1)])]  # doctest: +SKIP
        [1, 1]
    """

    def __init__(self, path: Path, mask: pa.BooleanArray | None = None) -> None:
        self.path = Path(path)
        self.mask = mask

    @property
    def num_rows(self) -> int:
        if self.mask is not None:
            return int(pc.sum(self.mask).as_py() or 0)
        return int(pq.ParquetFile(self.path).metadata.num_rows)

    @property
    def column_names(self) -> list[str]:
        return list(pq.read_schema(self.path).names)

    def __getitem__(self, name: str) -> pa.Array:
        column = pq.ParquetFile(self.path).read(columns=[name])[name].combine_chunks()
        return column if self.mask is None else column.filter(self.mask)

    def filter(self, mask: pa.Array | pa.ChunkedArray) -> RowsFile:
        """The rows where `mask` (one value per row of this one) is true."""
        keep = pa.chunked_array([mask]) if isinstance(mask, pa.Array) else mask
        wanted = keep.combine_chunks().to_numpy(zero_copy_only=False).astype(bool)
        if self.mask is None:
            return RowsFile(self.path, pa.array(wanted))
        full = self.mask.to_numpy(zero_copy_only=False).astype(bool)
        out = np.zeros(len(full), bool)
        out[np.flatnonzero(full)[wanted]] = True
        return RowsFile(self.path, pa.array(out))

    def head(self, n: int) -> RowsFile:
        """The first `n` rows."""
        total = self.num_rows
        return self.filter(pa.array(np.arange(total) < n)) if n < total else self

    def slices(self, bounds: list[tuple[int, int]], batch_rows: int = 4096) -> Iterator[pa.Table]:
        """The rows at each (start, length) of `bounds` (ascending, as `chunk_bounds` and
        `taper_bounds` give them), read from the file as they are asked for."""
        # A row group at a time (no pre-buffering of the whole file's column chunks).
        reader = pq.ParquetFile(self.path, pre_buffer=False).iter_batches(batch_size=batch_rows)
        schema = pq.read_schema(self.path)
        pending, at, offset = schema.empty_table(), 0, 0  # `at`: pending's first row
        for start, length in bounds:
            while at + pending.num_rows < start + length:
                batch = pa.Table.from_batches([next(reader)], schema=schema)
                if self.mask is not None:
                    mask = self.mask.slice(offset, batch.num_rows)
                    offset += batch.num_rows
                    batch = batch.filter(mask)
                pending = pa.concat_tables([pending, batch]).combine_chunks()
            pending, at = pending.slice(start - at), start
            yield pending.slice(0, length)
            pending, at = pending.slice(length), start + length


def to_ipc(table: pa.Table) -> bytes:
    """A table as an Arrow IPC stream: how a chunk's rows travel to a worker (`ChunkTask`).

    Example:
        >>> from_ipc(to_ipc(pa.table({"x": [1, 2]})))["x"].to_pylist()
        [1, 2]
    """
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    """The table `to_ipc` wrote."""
    return pa.ipc.open_stream(data).read_all()


def chunk_id_for(keys: pa.Array | pa.ChunkedArray) -> str:
    """A chunk's id: a hash of the keys it holds, so the same inputs give the same id."""
    digest = hashlib.sha256()
    for key in keys.to_pylist():
        digest.update(str(key).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def result_keys(instances: list[Pass]) -> list[str]:
    """What each pass's counts are filed under: its name, or `name/layer_id` when the same
    pass runs under several configs (each writes its own layer).

    Example:
        >>> import lamina.catalog  # registers the passes
        >>> from lamina.core.passes import get_pass
        >>> result_keys([get_pass("signals"), get_pass("hashes")])
        ['signals', 'hashes']
    """
    names = [i.name for i in instances]
    return [i.name if names.count(i.name) == 1 else f"{i.name}/{i.layer_id}" for i in instances]


def pass_groups(instances: list[Pass]) -> list[list[Pass]]:
    """Passes that can share a chunk: the same decode recipe (or none, one pass a group).

    Example:
        >>> from lamina.core.passes import get_pass
        >>> [[i.name for i in g] for g in pass_groups([get_pass("signals"), get_pass("hashes")])]
        [['signals', 'hashes']]
    """
    groups: dict[str, list[Pass]] = {}
    alone: list[list[Pass]] = []
    for instance in instances:
        if instance.decode is None:
            alone.append([instance])
        else:
            groups.setdefault(instance.decode, []).append(instance)
    return [*groups.values(), *alone]


def chunk_bounds(
    todo: pa.Table | RowsFile, chunk_size: int, chunk_bytes: int | None, size_column: str
) -> list[tuple[int, int]]:
    """(start, length) of each chunk: `chunk_size` rows, or fewer when `chunk_bytes` is set
    and the rows' `size_column` adds up to more (a chunk always gets at least one row).

    Example:
        >>> chunk_bounds(pa.table({"size": [5, 5, 20, 1]}), 3, 10, "size")
        [(0, 2), (2, 1), (3, 1)]
    """
    n = todo.num_rows
    if not chunk_bytes or size_column not in todo.column_names:
        return [(start, min(chunk_size, n - start)) for start in range(0, n, chunk_size)]
    bounds = []
    start = total = 0
    for i, size in enumerate(todo[size_column].to_pylist()):
        size = size or 0
        if i > start and (i - start >= chunk_size or total + size > chunk_bytes):
            bounds.append((start, i - start))
            start, total = i, 0
        total += size
    if start < n:
        bounds.append((start, n - start))
    return bounds


def decode_chunk_size(n_rows: int, chunk_size: int, workers: int) -> int:
    """Rows per chunk for passes that decode pixels: small enough that every worker gets
    several chunks (a decode costs ~10-50 ms, a chunk of files for scan far less), at most
    `DECODE_CHUNK_MAX` so a kill loses little, at least `DECODE_CHUNK_MIN` so the per-chunk
    commit stays cheap, and a multiple of `DECODE_BATCH` so that model passes pad no batch
    but a run's last (the store's `chunk_size` is the ceiling, whatever it is).

    Example:
        >>> decode_chunk_size(1000, 1024, 2)
        96
    """
    even = math.ceil(n_rows / (4 * max(1, workers)))
    size = min(DECODE_CHUNK_MAX, max(DECODE_CHUNK_MIN, even))
    return max(1, min(chunk_size, size - size % DECODE_BATCH))


def taper_bounds(
    bounds: list[tuple[int, int]], workers: int, batch: int = DECODE_BATCH
) -> list[tuple[int, int]]:
    """`bounds` with the rows of the last `workers` chunks re-cut into smaller chunks, each
    about 1/(2 x workers) of the rows still left (to a multiple of `batch`, at least one
    batch), so the workers run out of work together: with equal chunks to the end, the
    last one runs alone while the other workers wait (on the sense benchmark, 2 workers
    and chunks of 256 images, ~1.5 s of one core at the end of ~20 s).

    Example:
        >>> [n for _, n in taper_bounds([(0, 256), (256, 256), (512, 100)], workers=2)]
        [256, 96, 64, 64, 32, 32, 32, 32, 4]
    """
    if workers <= 1 or len(bounds) < 2 or max(n for _, n in bounds) <= batch:
        return bounds
    cut = max(1, len(bounds) - workers)
    head, tail = bounds[:cut], bounds[cut:]
    start = tail[0][0]
    end = tail[-1][0] + tail[-1][1]
    out = list(head)
    while start < end:
        left = end - start
        size = max(batch, round(left / (2 * workers) / batch) * batch)
        size = min(size, left)
        out.append((start, size))
        start += size
    return out


def chunk_tasks(
    todo: pa.Table | RowsFile,
    needs: list[pa.Array],
    group: list[Pass],
    store: Store,
    run: Run,
    bounds: list[tuple[int, int]],
) -> Iterator[ChunkTask]:
    """The chunk tasks of `todo` cut at `bounds`: each names, for every pass of `group`, the
    rows it still needs (`needs`, a mask per pass; a pass that needs none is left out).
    Lazily: a chunk's rows are sliced (or, from a `RowsFile`, read) when its task is asked for.

    Example:
        >>> tasks = chunk_tasks(todo, [need], [instance], store, run, [(0, 256)])  # doctest: +SKIP
    """
    if isinstance(todo, RowsFile):
        batches: Iterator[pa.Table] = todo.slices(bounds)
    else:
        batches = (todo.slice(start, length) for start, length in bounds)
    for (start, length), batch in zip(bounds, batches, strict=True):
        parts = []
        for instance, need in zip(group, needs, strict=True):
            mask = need.slice(start, length)
            n_needed = pc.sum(mask).as_py() or 0
            if n_needed == 0:
                continue
            rows = None
            keys = batch[instance.key]
            if n_needed < batch.num_rows:
                idx = pc.indices_nonzero(mask)
                rows = tuple(idx.to_pylist())
                keys = keys.take(idx)
            parts.append(
                PassPart(
                    instance.name,
                    instance.config_dict(),
                    instance.layer_id,
                    chunk_id_for(keys),
                    rows,
                )
            )
        yield ChunkTask(tuple(parts), str(store.root), run.run_id, to_ipc(batch), store.lock_token)


def available_memory_mb() -> int:
    """Memory this machine has free now, in MB (what a new worker can count on)."""
    import psutil

    return int(psutil.virtual_memory().available // 2**20)


# Of the free memory, the share the workers may plan to use (the main process, the OS's
# file cache and the decoded pixels in flight need the rest).
MEMORY_SHARE = 0.8


def plan_workers(
    instances: list[Pass], cores: int | None = None, memory_mb: int | None = None
) -> int:
    """How many workers a run of `instances` gets when none is asked for, from the
    passes' `resources`: every core (over the most `cpu` a pass asks for), but no more
    than the free memory holds, a worker holding every pass of the run (its models stay
    loaded between chunks). At least one.

    Example:
        >>> from lamina.core.passes import get_pass
        >>> plan_workers([get_pass("signals")], cores=8, memory_mb=64_000)
        8
        >>> plan_workers([get_pass("embed"), get_pass("classify")], cores=8, memory_mb=8_000)
        2
    """
    cores = default_workers() if cores is None else cores
    memory_mb = available_memory_mb() if memory_mb is None else memory_mb
    cpu = max((i.resources.cpu for i in instances), default=1.0)
    per_worker = sum(i.resources.memory_mb for i in instances) or 1
    by_cpu = int(cores / max(cpu, 1e-9))
    by_memory = int(memory_mb * MEMORY_SHARE // per_worker)
    return max(1, min(by_cpu, by_memory))


def group_resources(group: list[Pass]) -> Resources:
    """What one task running `group` together asks of a cluster: the most CPUs and GPUs any
    of its passes declares (they run one after another on the same decode), and the sum of
    their memory (every pass's model stays loaded in the worker).

    Example:
        >>> from lamina.core.passes import get_pass
        >>> group_resources([get_pass("signals"), get_pass("hashes")])
        Resources(cpu=1.0, memory_mb=1024, gpu=0.0)
    """
    return Resources(
        cpu=max(i.resources.cpu for i in group),
        memory_mb=sum(i.resources.memory_mb for i in group),
        gpu=max(i.resources.gpu for i in group),
    )
