"""The runner: cuts a map pass's input into chunks, runs them on an executor, writes each
chunk's part file and ledger record atomically, and skips work already done.

What counts as done is decided by the rows, not by the chunking: an input row is done when
its key (`image_id`, or `file_key` for scan) is in a part that has a ledger record. So a
re-run after a kill processes exactly the rows that were not committed, even if the
inputs grew in between and the chunks fall differently (the pitfall of tying completion
to chunk numbers). A part without a ledger record is a chunk killed between its two
writes; it is deleted and redone.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.errors import StoreError
from lamina.core.ledger import Run, done_chunks, utc_now, write_chunk_record
from lamina.core.passes import Pass, get_pass
from lamina.core.progress import Progress
from lamina.core.store import Store, atomic_write_parquet
from lamina.executors.local import LocalExecutor

log = logging.getLogger("lamina")

# A chunk that raises is retried this many more times before the run gives up on it.
RETRIES = 2


@dataclass(frozen=True)
class ChunkTask:
    """All a worker needs to do one chunk: names, a config and the input rows."""

    pass_name: str
    config: dict[str, Any]
    store_root: str
    layer_id: str
    chunk_id: str
    run_id: str
    batch: bytes  # Arrow IPC stream of the input rows


@dataclass(frozen=True)
class ChunkResult:
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


def _worker_pass(name: str, config: dict[str, Any]) -> Pass:
    key = (name, json.dumps(config, sort_keys=True, default=str))
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


def execute_chunk(task: ChunkTask) -> ChunkResult:
    """Run one chunk in this process: process, check, write the part, then the record."""
    t0 = time.monotonic()
    instance = _worker_pass(task.pass_name, task.config)
    batch = _from_ipc(task.batch)
    out = instance.process(batch)
    if out.num_rows != batch.num_rows:
        raise RuntimeError(
            f"pass {task.pass_name} returned {out.num_rows} rows for {batch.num_rows} inputs"
        )
    out = out.select(instance.schema.names).cast(instance.schema)
    root = Path(task.store_root)
    layer_dir = root / "layers" / task.pass_name / task.layer_id
    atomic_write_parquet(layer_dir / f"part-{task.chunk_id}.parquet", out)
    error_rows = 0
    if "error" in out.column_names:
        error_rows = out.num_rows - out["error"].null_count
    seconds = time.monotonic() - t0
    write_chunk_record(
        root / "ledger" / task.pass_name / task.layer_id,
        task.chunk_id,
        {
            "chunk_id": task.chunk_id,
            "pass": task.pass_name,
            "layer": task.layer_id,
            "run_id": task.run_id,
            "rows": out.num_rows,
            "error_rows": error_rows,
            "seconds": round(seconds, 4),
            "finished": utc_now(),
        },
    )
    return ChunkResult(task.chunk_id, out.num_rows, error_rows, seconds)


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
    arrays = [pq.read_table(p, columns=[instance.key])[instance.key] for p in parts if p.exists()]
    if not arrays:
        return pa.array([], type=pa.string())
    return pa.chunked_array(arrays).combine_chunks()


def chunk_id_for(keys: pa.Array) -> str:
    """A chunk's id: a hash of the keys it holds, so the same inputs give the same id."""
    digest = hashlib.sha256()
    for key in keys.to_pylist():
        digest.update(str(key).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def _chunks(
    todo: pa.Table, instance: Pass, store: Store, run: Run, chunk_size: int
) -> Iterator[ChunkTask]:
    for start in range(0, todo.num_rows, chunk_size):
        batch = todo.slice(start, chunk_size)
        yield ChunkTask(
            pass_name=instance.name,
            config=instance.config_dict(),
            store_root=str(store.root),
            layer_id=instance.layer_id,
            chunk_id=chunk_id_for(batch[instance.key].combine_chunks()),
            run_id=run.run_id,
            batch=_to_ipc(batch),
        )


def run_map_pass(
    store: Store,
    instance: Pass,
    inputs: pa.Table,
    run: Run,
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> MapResult:
    """Run a map pass over `inputs` (which must hold the pass's key column), skipping rows
    already committed, and return what was done. Chunks that still fail after their
    retries are recorded as run errors; the other chunks are committed.

    Example:
        >>> run_map_pass(store, get_pass("scan"), listing, run)  # doctest: +SKIP
        MapResult(inputs=300, already_done=0, processed=300, ...)
    """
    if instance.kind != "map":
        raise TypeError(f"{instance.name} is not a map pass")
    result = MapResult(inputs=inputs.num_rows)
    sweep_uncommitted(store, instance)
    done = done_keys(store, instance)
    if len(done):
        todo = inputs.filter(pc.invert(pc.is_in(inputs[instance.key], value_set=done)))
    else:
        todo = inputs
    result.already_done = inputs.num_rows - todo.num_rows
    if todo.num_rows == 0:
        return result

    chunk_size = chunk_size or store.chunk_size
    executor = LocalExecutor(workers)
    tasks: Iterable[ChunkTask] = _chunks(todo, instance, store, run, chunk_size)
    failed: list[tuple[ChunkTask, str]] = []
    with Progress(todo.num_rows, instance.name, enabled=progress) as bar:
        # Every chunk once, then the failed ones again, up to RETRIES more rounds.
        for attempt in range(RETRIES + 1):
            failed = []
            for task, outcome in executor.imap_unordered(execute_chunk, tasks):
                if isinstance(outcome, StoreError):
                    # The store cannot be written (disk full, permissions): every other
                    # chunk would fail the same way, so stop with the error that says so.
                    # Committed chunks stay committed; a re-run continues from them.
                    raise outcome
                if isinstance(outcome, BaseException):
                    detail = "".join(traceback.format_exception_only(type(outcome), outcome))
                    failed.append((task, detail.strip()))
                    continue
                result.chunks += 1
                result.processed += outcome.rows
                result.error_rows += outcome.error_rows
                bar.update(outcome.rows)
            if not failed:
                break
            if attempt < RETRIES:
                log.warning(
                    "%d chunk(s) of %s failed (%s); retrying",
                    len(failed),
                    instance.name,
                    failed[0][1],
                )
            tasks = [task for task, _ in failed]
        for task, detail in failed:
            result.failed_chunks.append(task.chunk_id)
            rows = _from_ipc(task.batch).num_rows
            run.error(
                kind="chunk",
                pass_name=instance.name,
                chunk_id=task.chunk_id,
                rows=rows,
                message=detail,
            )
            bar.update(rows)
    return result


IMAGE_INPUTS_SQL = """
select i.*, f.source, f.rel_path, f.source || '/' || f.rel_path as abs_path
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


def run_pass(
    store: Store,
    name: str,
    config: dict[str, Any] | None = None,
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the registered map pass `name` over every image of the store, as one run
    (write lock, run record, resume), and return its counts with the run id.

    Example:
        >>> run_pass(lamina.open(), "signals")  # doctest: +SKIP
        {'inputs': 312, 'already_done': 0, 'processed': 312, ..., 'run_id': '2026…'}
    """
    instance = get_pass(name, config)
    store.check_writable()
    record = {
        "pass": name,
        "config": instance.config_dict(),
        "layer": instance.layer_id,
        "workers": workers,
        "chunk_size": chunk_size,
    }
    with store.write_lock(name), Run(store, name, record) as run:
        result = run_map_pass(
            store,
            instance,
            image_inputs(store),
            run,
            workers=workers,
            chunk_size=chunk_size,
            progress=progress,
        )
        counts = result.as_dict()
        for key, value in counts.items():
            run.count(key, value)
    return {**counts, "run_id": run.run_id, "layer": instance.layer_id}
