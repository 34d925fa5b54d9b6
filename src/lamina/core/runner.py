"""The runner: cuts map passes' input into chunks, runs them on an executor, writes each
chunk's part file and ledger record atomically, and skips work already done; runs global
passes when their inputs changed.

What counts as done is decided by the rows, not by the chunking: an input row is done when
its key (`image_id`, or `file_key` for scan) is in a part that has a ledger record. So a
re-run after a kill processes exactly the rows that were not committed, even if the
inputs grew in between and the chunks fall differently (the pitfall of tying completion
to chunk numbers). A part without a ledger record is a chunk killed between its two
writes; it is deleted and redone.

Map passes with the same `decode` recipe run together: each chunk decodes an image once
and hands the pixels to every pass that still needs that row. One pass may run under
several configs at once (`lamina embed --model A --model B`): each is its own layer, and
results are keyed by `result_keys` (the pass name, or `name/layer` when it repeats).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.errors import LaminaError, StoreError
from lamina.core.execution import current_executor
from lamina.core.layers import certify, is_certified, readable_parts, repair_layer
from lamina.core.ledger import Run, done_chunks, utc_now, write_chunk_record
from lamina.core.passes import REGISTRY, Pass, PassOutput, Resources, get_pass, split_output
from lamina.core.progress import Progress
from lamina.core.store import (
    Store,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    fenced_commit,
    layer_path,
    ledger_path,
)
from lamina.executors.local import LocalExecutor, default_workers, exit_if_orphaned
from lamina.executors.ray import ClusterLost, RayExecutor

log = logging.getLogger("lamina")

# A chunk that raises is retried this many more times before the run gives up on it.
RETRIES = 2
# Rows per chunk for pixel passes: see decode_chunk_size.
DECODE_CHUNK_MIN = 32
DECODE_CHUNK_MAX = 256
# The model passes' default batch size: pixel chunks are a multiple of it, so that their
# forward passes (always full batches, see lamina.backends.embedders._common.pad_batch)
# need padding only in a run's last chunk.
DECODE_BATCH = 32
# Images decoded and held at a time within a chunk (see _decoded_outputs): one model batch,
# so a slice is never padded but in a run's last chunk.
DECODE_SLICE = DECODE_BATCH


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


@dataclass(frozen=True)
class ChunkResult:
    pass_name: str
    layer_id: str
    chunk_id: str
    rows: int
    error_rows: int
    seconds: float


@dataclass
class MapResult:
    """What a map pass run did, for the run record and the summary line."""

    inputs: int = 0
    already_done: int = 0
    processed: int = 0
    error_rows: int = 0
    chunks: int = 0
    failed_chunks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "already_done": self.already_done,
            "processed": self.processed,
            "error_rows": self.error_rows,
            "chunks": self.chunks,
            "failed_chunks": len(self.failed_chunks),
        }


# One pass instance per (name, config) per worker process: `setup` (model loading) runs once.
_WORKER_PASSES: dict[tuple[str, str], Pass] = {}
_WORKER_PASSES_LOCK = threading.Lock()  # chunks may run on threads (LocalExecutor(threads=))


def _worker_pass(name: str, config: dict[str, Any]) -> Pass:
    key = (name, json.dumps(config, sort_keys=True, default=str))
    instance = _WORKER_PASSES.get(key)
    if instance is None:
        with _WORKER_PASSES_LOCK:
            instance = _WORKER_PASSES.get(key)
            if instance is None:
                instance = get_pass(name, config)
                instance.setup()
                atexit.register(instance.teardown)
                _WORKER_PASSES[key] = instance
    return instance


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def _decoded_outputs(
    batch: pa.Table, parts: list[PassPart], instances: list[Pass], recipe: str
) -> tuple[list[PassOutput], list[float]]:
    """Each pass's output for its rows, decoding DECODE_SLICE images at a time: every pass
    sees an image while it is decoded, so a worker holds one slice of pixels, not a chunk's
    (256 working images are ~270 MB), and each image is still decoded once."""
    from lamina.core.decode import decode_batch

    outs: list[list[pa.Table]] = [[] for _ in parts]
    files: list[dict[str, bytes]] = [{} for _ in parts]
    seconds = [0.0] * len(parts)
    for start in range(0, batch.num_rows, DECODE_SLICE):
        stop = min(batch.num_rows, start + DECODE_SLICE)
        t0 = time.monotonic()
        decoded = decode_batch(batch.slice(start, stop - start), recipe)
        share = (time.monotonic() - t0) / len(parts)  # the decode, shared by the passes
        for k, (part, instance) in enumerate(zip(parts, instances, strict=True)):
            t0 = time.monotonic()
            if part.rows is None:
                rows = list(range(start, stop))
            else:
                rows = [r for r in part.rows if start <= r < stop]
            if rows:
                sub = batch.take(_indices(rows))
                out = instance.process_decoded(sub, [decoded[r - start] for r in rows])
                table, written = split_output(out)
                outs[k].append(table)
                files[k].update(written)
            seconds[k] += share + time.monotonic() - t0
        del decoded
    results = [
        PassOutput(pa.concat_tables(o) if o else instance.schema.empty_table(), f)
        for o, f, instance in zip(outs, files, instances, strict=True)
    ]
    return results, seconds


def check_files(instance: Pass | type[Pass], files: dict[str, bytes]) -> None:
    """Refuse a file a pass returned outside the folders it declared (`Pass.outputs`), or
    a path that could leave them (absolute, `..`).

    Example:
        >>> import lamina.catalog  # registers the passes
        >>> check_files(get_pass("thumbs"), {"layers/x.parquet": b""})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        RuntimeError: pass thumbs returned the file 'layers/x.parquet' outside its declared ...
    """
    folders = [PurePosixPath(o.folder) for o in instance.outputs]
    for rel in files:
        path = PurePosixPath(rel)
        inside = any(path.parts[: len(f.parts)] == f.parts for f in folders)
        if path.is_absolute() or ".." in path.parts or not inside or path in folders:
            declared = ", ".join(o.folder for o in instance.outputs) or "none"
            raise RuntimeError(
                f"pass {instance.name} returned the file {rel!r} outside its declared "
                f"outputs ({declared})"
            )


def write_files(root: Path, instance: Pass | type[Pass], files: dict[str, bytes]) -> None:
    """Write a pass's files under the store `root`, each atomically (a temporary file
    renamed into place), flushed to disk unless its folder says it need not be."""
    check_files(instance, files)
    for rel, data in sorted(files.items()):
        path = PurePosixPath(rel)
        spec = next(o for o in instance.outputs if path.is_relative_to(o.folder))
        atomic_write_bytes(root / rel, data, fsync=spec.fsync)


@dataclass(frozen=True)
class PartOutput:
    """One pass's computed share of a chunk, not yet committed: its checked rows, the files
    it wants written (`Pass.outputs`), its error-row count and the seconds it took."""

    table: pa.Table
    files: dict[str, bytes]
    error_rows: int
    seconds: float


def compute_chunk(task: ChunkTask) -> list[PartOutput]:
    """Compute one chunk without writing anything: decode once if the passes need pixels (a
    slice of images at a time), then for each pass process its rows and check them (row
    count, declared files, schema). An executor whose workers must not write the store
    (Ray: they may be other machines) runs this, and the driver commits (`commit_chunk`).
    """
    batch = _from_ipc(task.batch)
    instances = [_worker_pass(p.pass_name, p.config) for p in task.parts]
    recipe = instances[0].decode
    decoded_outs: list[PassOutput] | None = None
    decode_seconds = [0.0] * len(task.parts)
    if recipe is not None:
        decoded_outs, decode_seconds = _decoded_outputs(batch, list(task.parts), instances, recipe)
    outputs = []
    for k, (part, instance) in enumerate(zip(task.parts, instances, strict=True)):
        t0 = time.monotonic() - decode_seconds[k]
        rows = list(part.rows) if part.rows is not None else None
        sub = batch if rows is None else batch.take(_indices(rows))
        out, files = split_output(
            decoded_outs[k] if decoded_outs is not None else instance.process(sub)
        )
        check_files(instance, files)
        if out.num_rows != sub.num_rows:
            raise RuntimeError(
                f"pass {part.pass_name} returned {out.num_rows} rows for {sub.num_rows} inputs"
            )
        out = out.select(instance.schema.names).cast(instance.schema)
        error_rows = 0
        if "error" in out.column_names:
            error_rows = out.num_rows - out["error"].null_count
        outputs.append(PartOutput(out, files, error_rows, time.monotonic() - t0))
    return outputs


def commit_chunk(task: ChunkTask, outputs: list[PartOutput]) -> list[ChunkResult]:
    """Commit a computed chunk: for each pass its files, the part, then the ledger record.

    The writes are fenced (`fenced_commit`): when the run that asked for the chunk no
    longer holds the store's lock (it was killed and another started), nothing is written.
    """
    root = Path(task.store_root)
    results = []
    for part, output in zip(task.parts, outputs, strict=True):
        # The class says which folders its files may go in: no instance (and no model load)
        # in the driver.
        declared = REGISTRY[part.pass_name]
        layer_dir = layer_path(root, part.pass_name, part.layer_id)
        with fenced_commit(root, task.lock_token):
            # The pass's files first: a committed row may name its file.
            write_files(root, declared, output.files)
            atomic_write_parquet(layer_dir / f"part-{part.chunk_id}.parquet", output.table)
            write_chunk_record(
                ledger_path(root, part.pass_name, part.layer_id),
                part.chunk_id,
                {
                    "chunk_id": part.chunk_id,
                    "pass": part.pass_name,
                    "layer": part.layer_id,
                    "config": part.config,
                    "run_id": task.run_id,
                    "rows": output.table.num_rows,
                    "error_rows": output.error_rows,
                    "seconds": round(output.seconds, 4),
                    "finished": utc_now(),
                },
            )
        results.append(
            ChunkResult(
                part.pass_name,
                part.layer_id,
                part.chunk_id,
                output.table.num_rows,
                output.error_rows,
                output.seconds,
            )
        )
    return results


def execute_chunk(task: ChunkTask) -> list[ChunkResult]:
    """Run one chunk in this process: `compute_chunk`, then `commit_chunk` (the local
    executor's workers commit their own chunks, fenced by the store's lock)."""
    outputs = compute_chunk(task)
    exit_if_orphaned()  # the parent died while this chunk ran: nobody wants it
    return commit_chunk(task, outputs)


def _indices(rows: list[int]) -> pa.Array:
    # Built from a buffer: pa.array(list) would make pyarrow import pandas in the worker.
    data = np.asarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def sweep_uncommitted(store: Store, instance: Pass) -> int:
    """Delete part files without a ledger record and leftover temporary files.

    Returns how many were removed. Safe only while the store's write lock is held.
    """
    layer_dir = store.layer_dir(instance.name, instance.layer_id)
    if not layer_dir.is_dir():
        return 0
    done = done_chunks(store.ledger_dir(instance.name, instance.layer_id))
    removed = 0
    for path in layer_dir.iterdir():
        stale_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
        orphan = path.name.startswith("part-") and path.stem.removeprefix("part-") not in done
        if stale_tmp or orphan:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def done_keys(store: Store, instance: Pass) -> pa.Array:
    """Keys of every committed row of a pass's layer."""
    layer_dir = store.layer_dir(instance.name, instance.layer_id)
    done = done_chunks(store.ledger_dir(instance.name, instance.layer_id))
    parts = [layer_dir / f"part-{chunk}.parquet" for chunk in sorted(done)]
    # ParquetFile.read, not pq.read_table, and pa.nulls, not pa.array([]): those make
    # pyarrow import pandas (~0.25 s), which nothing here needs.
    arrays = [
        pq.ParquetFile(p).read(columns=[instance.key])[instance.key] for p in parts if p.exists()
    ]
    if not arrays:
        return pa.nulls(0, pa.string())
    return pa.chunked_array(arrays).combine_chunks()


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
        >>> result_keys([get_pass("signals"), get_pass("hashes")])
        ['signals', 'hashes']
    """
    names = [i.name for i in instances]
    return [i.name if names.count(i.name) == 1 else f"{i.name}/{i.layer_id}" for i in instances]


def _groups(instances: list[Pass]) -> list[list[Pass]]:
    """Passes that can share a chunk: the same decode recipe (or none, one pass a group)."""
    groups: dict[str, list[Pass]] = {}
    alone: list[list[Pass]] = []
    for instance in instances:
        if instance.decode is None:
            alone.append([instance])
        else:
            groups.setdefault(instance.decode, []).append(instance)
    return [*groups.values(), *alone]


def _chunk_bounds(
    todo: pa.Table, chunk_size: int, chunk_bytes: int | None, size_column: str
) -> list[tuple[int, int]]:
    """(start, length) of each chunk: `chunk_size` rows, or fewer when `chunk_bytes` is set
    and the rows' `size_column` adds up to more (a chunk always gets at least one row)."""
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


def _chunks(
    todo: pa.Table,
    needs: list[pa.Array],
    group: list[Pass],
    store: Store,
    run: Run,
    bounds: list[tuple[int, int]],
) -> Iterator[ChunkTask]:
    for start, length in bounds:
        batch = todo.slice(start, length)
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
        yield ChunkTask(tuple(parts), str(store.root), run.run_id, _to_ipc(batch), store.lock_token)


def run_map_passes(
    store: Store,
    instances: list[Pass],
    inputs: pa.Table,
    run: Run,
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    executor: LocalExecutor | RayExecutor | None = None,
    chunk_bytes: int | None = None,
    size_column: str = "size",
) -> dict[str, MapResult]:
    """Run map passes over `inputs` (which must hold each pass's key column), skipping rows
    already committed, decoding each image once for passes that share a decode recipe.
    Chunks that still fail after their retries are recorded as run errors; the other
    chunks are committed. Returns what each pass did, by `result_keys` (the name, unless a
    pass runs under several configs).

    `executor`: run the chunks on this one (the caller starts and closes it), instead of a
    `LocalExecutor(workers)` of this call's own. `chunk_bytes`: also close a chunk before its
    rows' `size_column` adds up to more than this, so that big files spread over the workers.

    Example:
        >>> passes = [get_pass("signals"), get_pass("hashes")]
        >>> run_map_passes(store, passes, inputs, run)  # doctest: +SKIP
        {'signals': MapResult(inputs=300, processed=300, ...), 'hashes': ...}
    """
    layers = [(i.name, i.layer_id) for i in instances]
    if len(set(layers)) < len(layers):
        raise ValueError("the same pass and config twice in one run: they would share a layer")
    result_key = dict(zip(layers, result_keys(instances), strict=True))
    by_layer = {layer: MapResult(inputs=inputs.num_rows) for layer in layers}
    chunk_size = chunk_size or store.chunk_size
    # The executor given, else the one the command chose (`--executor ray`), else a pool.
    executor = executor or current_executor() or LocalExecutor(workers or plan_workers(instances))
    try:
        for group in _groups(instances):
            needs_all = []
            for instance in group:
                if instance.kind != "map":
                    raise TypeError(f"{instance.name} is not a map pass")
                sweep_uncommitted(store, instance)
                _heal(store, instance, run)
                done = done_keys(store, instance)
                keys = inputs[instance.key]
                if not len(done):
                    done = pa.nulls(0, keys.type)
                # Every row not committed (all of them when nothing is): a null key is never in
                # `done`, so it is needed, as it always was.
                need = pc.invert(pc.is_in(keys, value_set=done))
                if isinstance(need, pa.ChunkedArray):
                    need = need.combine_chunks()
                by_layer[instance.name, instance.layer_id].already_done = inputs.num_rows - (
                    pc.sum(need).as_py() or 0
                )
                needs_all.append(need)
            any_need = needs_all[0]
            for need in needs_all[1:]:
                any_need = pc.or_(any_need, need)
            n_todo = pc.sum(any_need).as_py() or 0
            if n_todo == 0:
                continue
            if n_todo == inputs.num_rows:  # a first run: no copy of the inputs
                todo, needs = inputs, needs_all
            else:
                todo = inputs.filter(any_need)
                needs = [need.filter(any_need) for need in needs_all]
            size = chunk_size
            if group[0].decode is not None:
                size = decode_chunk_size(todo.num_rows, chunk_size, executor.workers)
            bounds = _chunk_bounds(todo, size, chunk_bytes, size_column)
            if group[0].decode is not None and not chunk_bytes:
                bounds = taper_bounds(bounds, executor.workers)
            _run_group(
                group,
                _chunks(todo, needs, group, store, run, bounds),
                todo.num_rows,
                executor,
                by_layer,
                run,
                progress,
            )
    except ClusterLost as exc:
        done = max((r.chunks for r in by_layer.values()), default=0)
        raise LaminaError(
            f"{exc}; {done} chunk(s) of this run were committed and stay",
            hint="run the same command again (on a cluster that is up, or without "
            "--executor ray): it continues from what was committed",
        ) from exc
    for instance in instances:
        layer_dir = store.layer_dir(instance.name, instance.layer_id)
        parts = readable_parts(layer_dir)
        if not parts:
            continue
        if store.lock_token is not None:
            # Under the lock, with no duplicate at the start (_heal) and only this run's
            # commits since (disjoint from what was done and from each other), every
            # layer holds each key once: say so, so that readers need not check.
            certify(layer_dir, parts)
        # The layer this run asked for is now the pass's current one (the last config
        # given, when a pass runs under several), whatever the files' times say.
        store.set_current(instance.name, instance.layer_id, run.run_id)
    return {result_key[layer]: result for layer, result in by_layer.items()}


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


def _heal(store: Store, instance: Pass, run: Run) -> None:
    """Drop rows whose key an earlier part already holds, when a layer is not certified
    free of them (written before commits were fenced, or a run was killed): the next run
    of a pass repairs its layer (see `lamina.core.layers.repair_layer`)."""
    layer_dir = store.layer_dir(instance.name, instance.layer_id)
    parts = readable_parts(layer_dir)
    if not parts or is_certified(layer_dir, parts):
        return
    repaired = repair_layer(layer_dir)
    if repaired["rows_dropped"]:
        log.warning(
            "%s/%s held %d key(s) twice: dropped %d later row(s)",
            instance.name,
            instance.layer_id,
            repaired["duplicate_keys"],
            repaired["rows_dropped"],
        )
        run.count(f"repaired {instance.name}/{instance.layer_id}", repaired)


def group_resources(group: list[Pass]) -> Resources:
    """What one task running `group` together asks of a cluster: the most CPUs and GPUs any
    of its passes declares (they run one after another on the same decode), and the sum of
    their memory (every pass's model stays loaded in the worker).

    Example:
        >>> import lamina.catalog  # registers the passes
        >>> group_resources([get_pass("signals"), get_pass("hashes")])
        Resources(cpu=1.0, memory_mb=1024, gpu=0.0)
    """
    return Resources(
        cpu=max(i.resources.cpu for i in group),
        memory_mb=sum(i.resources.memory_mb for i in group),
        gpu=max(i.resources.gpu for i in group),
    )


def _outcomes(
    group: list[Pass], tasks: Iterable[ChunkTask], executor: LocalExecutor | RayExecutor
) -> Iterator[tuple[ChunkTask, list[ChunkResult] | BaseException]]:
    """Each chunk's committed results (or why it failed). A local worker commits its own
    chunk; an executor whose workers must not write (`commits_in_driver`: Ray) returns the
    computed rows and they are committed here, in the driver, under the same fence."""
    if not getattr(executor, "commits_in_driver", False):
        yield from executor.imap_unordered(execute_chunk, tasks)
        return
    assert isinstance(executor, RayExecutor)
    need = group_resources(group)
    for task, outcome in executor.imap_unordered(
        compute_chunk, tasks, cpus=need.cpu, gpus=need.gpu
    ):
        if isinstance(outcome, BaseException):
            yield task, outcome
            continue
        try:
            yield task, commit_chunk(task, outcome)
        except StoreError:
            raise
        except Exception as exc:  # as a local worker's failed commit: the chunk is retried
            yield task, exc


def _run_group(
    group: list[Pass],
    tasks: Iterable[ChunkTask],
    total: int,
    executor: LocalExecutor | RayExecutor,
    results: dict[tuple[str, str], MapResult],
    run: Run,
    progress: bool,
) -> None:
    failed: list[tuple[ChunkTask, str]] = []
    label = "+".join(i.name for i in group)
    with Progress(total, label, unit="row", enabled=progress) as bar:
        # Every chunk once, then the failed ones again, up to RETRIES more rounds.
        for attempt in range(RETRIES + 1):
            failed = []
            for task, outcome in _outcomes(group, tasks, executor):
                if isinstance(outcome, StoreError):
                    # The store cannot be written (disk full, permissions): every other
                    # chunk would fail the same way, so stop with the error that says so.
                    # Committed chunks stay committed; a re-run continues from them.
                    raise outcome
                if isinstance(outcome, BaseException):
                    detail = "".join(traceback.format_exception_only(type(outcome), outcome))
                    failed.append((task, detail.strip()))
                    continue
                for chunk in outcome:
                    result = results[chunk.pass_name, chunk.layer_id]
                    result.chunks += 1
                    result.processed += chunk.rows
                    result.error_rows += chunk.error_rows
                bar.update(_from_ipc(task.batch).num_rows)
            if not failed:
                break
            if attempt < RETRIES:
                log.warning(
                    "%d chunk(s) of %s failed (%s); retrying", len(failed), label, failed[0][1]
                )
            tasks = [task for task, _ in failed]
        for task, detail in failed:
            rows = _from_ipc(task.batch).num_rows
            for part in task.parts:
                results[part.pass_name, part.layer_id].failed_chunks.append(part.chunk_id)
                run.error(
                    kind="chunk",
                    pass_name=part.pass_name,
                    chunk_id=part.chunk_id,
                    rows=rows if part.rows is None else len(part.rows),
                    message=detail,
                )
            bar.update(rows)


def run_map_pass(
    store: Store,
    instance: Pass,
    inputs: pa.Table,
    run: Run,
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    executor: LocalExecutor | RayExecutor | None = None,
    chunk_bytes: int | None = None,
    size_column: str = "size",
) -> MapResult:
    """`run_map_passes` for one pass.

    Example:
        >>> run_map_pass(store, get_pass("scan"), listing, run)  # doctest: +SKIP
        MapResult(inputs=300, already_done=0, processed=300, ...)
    """
    return run_map_passes(
        store,
        [instance],
        inputs,
        run,
        workers=workers,
        chunk_size=chunk_size,
        progress=progress,
        executor=executor,
        chunk_bytes=chunk_bytes,
        size_column=size_column,
    )[instance.name]


def run_map_pass_batches(
    store: Store,
    instance: Pass,
    batches: Iterable[pa.Table | pa.RecordBatch],
    run: Run,
    *,
    total: int,
    chunk_size: int | None = None,
    progress: bool = True,
    executor: LocalExecutor,
    chunk_bytes: int | None = None,
    size_column: str = "size",
    done_for: Callable[[int], pa.Array] | None = None,
) -> MapResult:
    """`run_map_pass` over inputs that come a batch at a time (read from a file, say),
    so that neither they nor their chunks are ever held all at once: each batch's rows
    not yet committed are cut into chunks as the executor asks for work. `total`: the
    rows to expect, for the progress bar. A chunk never spans two batches, so the batches
    should hold several chunks each. `done_for(i)`: the committed keys among batch `i`'s
    (a caller that can tell them batch by batch, so that no step holds every key of the
    layer); by default all the layer's (`done_keys`).

    Example:
        >>> run_map_pass_batches(store, get_pass("scan"), batches, run, total=300,
        ...                      executor=LocalExecutor(2))  # doctest: +SKIP
        MapResult(inputs=300, already_done=0, processed=300, ...)
    """
    if instance.kind != "map":
        raise TypeError(f"{instance.name} is not a map pass")
    result = MapResult()
    chunk_size = chunk_size or store.chunk_size
    sweep_uncommitted(store, instance)
    _heal(store, instance, run)
    every_done = done_keys(store, instance) if done_for is None else None

    def tasks() -> Iterator[ChunkTask]:
        for i, batch in enumerate(batches):
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            keys = table[instance.key]
            result.inputs += table.num_rows
            done = every_done if done_for is None else done_for(i)
            assert done is not None  # one of the two is always given
            # A null key is never in `done`: such a row is needed, as in run_map_passes.
            known = done if len(done) else pa.nulls(0, keys.type)
            need = pc.invert(pc.is_in(keys, value_set=known))
            if isinstance(need, pa.ChunkedArray):
                need = need.combine_chunks()
            n_todo = pc.sum(need).as_py() or 0
            result.already_done += table.num_rows - n_todo
            if n_todo == 0:
                continue
            todo, every = table, need
            if n_todo < table.num_rows:
                todo, every = table.filter(need), need.filter(need)  # every row needed
            bounds = _chunk_bounds(todo, chunk_size, chunk_bytes, size_column)
            yield from _chunks(todo, [every], [instance], store, run, bounds)

    results = {(instance.name, instance.layer_id): result}
    _run_group([instance], tasks(), total, executor, results, run, progress)
    layer_dir = store.layer_dir(instance.name, instance.layer_id)
    parts = readable_parts(layer_dir)
    if parts:
        if store.lock_token is not None:
            certify(layer_dir, parts)  # as in run_map_passes
        store.set_current(instance.name, instance.layer_id, run.run_id)
    return result


# -- global passes -------------------------------------------------------------------------


def input_fingerprint(store: Store, names: Iterable[str], paths: Iterable[Path] = ()) -> str:
    """A hash of the files that make up the tables `names`, and of `paths` (files a pass
    reads beyond the current layers, see `Pass.input_paths`): changes when any input does."""
    digest = hashlib.sha256()
    groups = [(f"[{name}]", store.table_files(name)) for name in sorted(names)]
    extra = sorted(paths)
    if extra:
        groups.append(("[paths]", extra))
    for label, files in groups:
        digest.update(label.encode())
        content = store.table_dir("files") / "files.digest"
        if label == "[files]" and content.is_file():
            # The scan's digest of the rows that hold an image, not the file's mtime:
            # every rescan rewrites files.parquet, but only a change to the images' files
            # should make a pass recompute (see lamina.manifest.commit).
            digest.update(content.read_bytes().split(b"\n")[0])
            continue
        for path in files:
            st = path.stat()
            digest.update(
                f"{path.relative_to(store.root)} {st.st_size} {st.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()[:16]


def run_global_pass(store: Store, instance: Pass, run: Run, *, force: bool = False) -> dict:
    """Run a global pass unless its inputs and config are unchanged since it last ran.

    Its layer holds one part (`Store.global_part`), replaced atomically; the ledger record
    (`Store.global_record`) names the input fingerprint it was computed from. Either way
    its layer becomes the pass's current one (`Store.set_current`).
    """
    if instance.kind != "global":
        raise TypeError(f"{instance.name} is not a global pass")
    fingerprint = input_fingerprint(store, instance.reads, instance.input_paths(store))
    record_path = store.global_record(instance.name, instance.layer_id)
    part = store.global_part(instance.name, instance.layer_id)
    if not force and record_path.exists() and part.exists():
        record = json.loads(record_path.read_text())
        if record.get("inputs") == fingerprint:
            if store.current_pointer(instance.name) != instance.layer_id:
                # Back to a config computed before (a policy tried, then the default
                # again): make its layer the current one, which is what `sql` shows.
                store.set_current(instance.name, instance.layer_id, run.run_id)
            return {"skipped": True, "rows": record["rows"], "layer": instance.layer_id}
    t0 = time.monotonic()
    out, files = split_output(instance.compute(store))
    out = out.select(instance.schema.names).cast(instance.schema)
    write_files(store.root, instance, files)
    atomic_write_parquet(part, out)
    seconds = round(time.monotonic() - t0, 3)
    atomic_write_json(
        record_path,
        {
            "pass": instance.name,
            "layer": instance.layer_id,
            "config": instance.config_dict(),
            "inputs": fingerprint,
            "rows": out.num_rows,
            "run_id": run.run_id,
            "seconds": seconds,
            "finished": utc_now(),
        },
    )
    store.set_current(instance.name, instance.layer_id, run.run_id)
    return {"skipped": False, "rows": out.num_rows, "layer": instance.layer_id, "seconds": seconds}


# -- running passes over a store -------------------------------------------------------------

IMAGE_INPUTS_SQL = """
select i.*, f.source, f.rel_path, file_path(f.source, f.rel_path) as abs_path
from images i
join (
    select image_id, source, rel_path from files
    where image_id is not null and status <> 'missing'
    -- one path per image: prefer a file whose own status is fine, then the first by path
    qualify row_number() over (
        partition by image_id order by (status <> 'ok'), source, rel_path) = 1
) f using (image_id)
order by i.image_id
"""


def image_inputs(store: Store) -> pa.Table:
    """The input rows of an image map pass: every image present in the manifest with one
    readable path (`abs_path`) and its header facts from `images`.

    Example:
        >>> image_inputs(lamina.open()).column_names[:3]  # doctest: +SKIP
        ['image_id', 'sha256', 'size']
    """
    if not store.table_files("files") or not store.table_files("images"):
        return pa.table(
            {
                "image_id": pa.array([], pa.string()),
                "abs_path": pa.array([], pa.string()),
                "rel_path": pa.array([], pa.string()),
            }
        )
    return store.sql(IMAGE_INPUTS_SQL)


def run_passes(
    store: Store,
    passes: list[tuple[str, dict[str, Any] | None]],
    *,
    command: str | None = None,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    max_images: int | None = None,
    image_ids: Iterable[str] | None = None,
    executor: LocalExecutor | None = None,
) -> dict[str, dict[str, Any]]:
    """Run registered passes over the store as one run (write lock, run record, resume):
    map passes over every image (sharing decodes), then global passes in the given order.
    Returns each pass's counts by `result_keys` (the name, or `name/layer` for a pass given
    under several configs), plus `run_id`. Each pass's `describe()` goes into the run record
    before any work, so a pass that cannot start (model weights missing) fails first.
    `max_images` limits the map passes to the first N images by image id: content-hash
    order, so a stable sample that does not favour any folder. `image_ids` limits them to
    those images (a selective run: OCR on the text-heavy ones, `lamina segment --where`).
    `executor`: run the map passes' chunks on this pool (the caller starts and closes it;
    `lamina sense` forks one before the store is read), not on one of the run's own.

    Example:
        >>> run_passes(lamina.open(), [("signals", None), ("hashes", None)])  # doctest: +SKIP
        {'signals': {'processed': 312, ...}, 'hashes': {...}, 'run_id': '2026…'}
    """
    instances = [get_pass(name, config) for name, config in passes]
    selected = None if image_ids is None else sorted(set(image_ids))
    described = [
        {"config": i.config_dict(), "layer": i.layer_id, **i.describe()} for i in instances
    ]
    store.check_writable()
    record = {
        "passes": dict(zip(result_keys(instances), described, strict=True)),
        "workers": workers,
        "chunk_size": chunk_size,
        "max_images": max_images,
        **({"selected_images": len(selected)} if selected is not None else {}),
    }
    name = command or "+".join(i.name for i in instances)
    out: dict[str, Any] = {}
    with store.write_lock(name), Run(store, name, record) as run:
        maps = [i for i in instances if i.kind == "map"]
        if maps:
            inputs = image_inputs(store)
            if selected is not None:
                wanted = pa.array(selected, pa.string())
                inputs = inputs.filter(pc.is_in(inputs["image_id"], value_set=wanted))
            if max_images:
                inputs = inputs.slice(0, max_images)
            results = run_map_passes(
                store,
                maps,
                inputs,
                run,
                workers=workers,
                chunk_size=chunk_size,
                progress=progress,
                executor=executor,
            )
            out.update({k: v.as_dict() for k, v in results.items()})
            if any(i.decode for i in maps):
                # Images whose pixels did not decode become `broken / undecodable` in files
                # and images (read from the layers, so a killed run's are caught up here).
                from lamina.core.decode_failures import record_decode_failures

                run.count("undecodable", record_decode_failures(store, run))
        for instance in instances:
            if instance.kind == "global":
                out[instance.name] = run_global_pass(store, instance, run)
        for key, value in out.items():
            run.count(key, value)
    out["run_id"] = run.run_id
    return out


def run_pass(
    store: Store,
    name: str,
    config: dict[str, Any] | None = None,
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run one registered pass over the store (see `run_passes`); its counts and run id.

    Example:
        >>> run_pass(lamina.open(), "signals")  # doctest: +SKIP
        {'inputs': 312, 'already_done': 0, 'processed': 312, ..., 'run_id': '2026…'}
    """
    result = run_passes(
        store, [(name, config)], workers=workers, chunk_size=chunk_size, progress=progress
    )
    return {**result[name], "run_id": result["run_id"], "layer": get_pass(name, config).layer_id}
