"""One chunk's work: compute a pass's rows for a chunk task (decoding each image once for
every pass that needs it), check them, and commit them: the pass's files, the layer's part
file and the ledger record, in one fenced commit.

A local worker runs both halves (`execute_chunk`); an executor whose workers must not
write the store (Ray) runs `compute_chunk` there and the driver runs `commit_chunk`.
"""

from __future__ import annotations

import atexit
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.chunk_plan import DECODE_BATCH, ChunkTask, PassPart, from_ipc
from lamina.core.ledger import utc_now, write_chunk_record
from lamina.core.passes import REGISTRY, Pass, PassOutput, get_pass, split_output
from lamina.core.store import (
    atomic_write_bytes,
    atomic_write_parquet,
    fenced_commit,
    layer_path,
    ledger_path,
)
from lamina.executors.local import exit_if_orphaned

# Images decoded and held at a time within a chunk (see _decoded_outputs): one model batch,
# so a slice is never padded but in a run's last chunk.
DECODE_SLICE = DECODE_BATCH


@dataclass(frozen=True)
class ChunkResult:
    pass_name: str
    layer_id: str
    chunk_id: str
    rows: int
    error_rows: int
    seconds: float


# One pass instance per (name, config) per worker process: `setup` (model loading) runs once.
_WORKER_PASSES: dict[tuple[str, str], Pass] = {}
_WORKER_PASSES_LOCK = threading.Lock()  # chunks may run on threads (LocalExecutor(threads=))


def worker_pass(name: str, config: dict[str, Any]) -> Pass:
    """This process's instance of a pass, set up on first use and torn down at exit.

    Example:
        >>> worker_pass("scan", {}) is worker_pass("scan", {})  # doctest: +SKIP
        True
    """
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
    batch = from_ipc(task.batch)
    instances = [worker_pass(p.pass_name, p.config) for p in task.parts]
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
