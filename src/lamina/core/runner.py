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

Where the parts live: `lamina.core.chunk_plan` (chunk tasks, their bounds and ids, worker
and resource planning), `lamina.core.chunk_work` (a chunk computed and committed: files,
part, ledger record), `lamina.core.global_passes` (global passes); this module drives the
executor and runs passes over a store. Their public names are importable from here too.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.chunk_plan import (
    DECODE_BATCH,
    DECODE_CHUNK_MAX,
    DECODE_CHUNK_MIN,
    MEMORY_SHARE,
    ChunkTask,
    PassPart,
    RowsFile,
    available_memory_mb,
    chunk_bounds,
    chunk_id_for,
    chunk_tasks,
    decode_chunk_size,
    from_ipc,
    group_resources,
    pass_groups,
    plan_workers,
    result_keys,
    taper_bounds,
)
from lamina.core.chunk_work import (
    DECODE_SLICE,
    ChunkResult,
    PartOutput,
    check_files,
    commit_chunk,
    compute_chunk,
    execute_chunk,
    write_files,
)
from lamina.core.errors import LaminaError, StoreError
from lamina.core.execution import current_executor
from lamina.core.global_passes import input_fingerprint, run_global_pass
from lamina.core.layers import certify, is_certified, readable_parts, repair_layer
from lamina.core.ledger import Run, done_chunks
from lamina.core.memory import CAPPED_MEMORY_LIMIT, CAPPED_QUERY_SETTINGS, give_back_memory
from lamina.core.passes import Pass, get_pass
from lamina.core.progress import Progress
from lamina.core.store import Store, _sq
from lamina.executors.local import LocalExecutor
from lamina.executors.ray import ClusterLost, RayExecutor

# Importable from here as before the split (callers, tests and benchmarks use them).
__all__ = [
    "DECODE_BATCH",
    "DECODE_CHUNK_MAX",
    "DECODE_CHUNK_MIN",
    "DECODE_SLICE",
    "IMAGE_INPUTS_SQL",
    "INPUTS_MEMORY_LIMIT",
    "MEMORY_SHARE",
    "RETRIES",
    "ChunkResult",
    "ChunkTask",
    "MapResult",
    "PartOutput",
    "PassPart",
    "RowsFile",
    "available_memory_mb",
    "check_files",
    "chunk_id_for",
    "commit_chunk",
    "compute_chunk",
    "decode_chunk_size",
    "done_keys",
    "execute_chunk",
    "group_resources",
    "image_inputs",
    "image_inputs_file",
    "input_fingerprint",
    "plan_workers",
    "result_keys",
    "rows_needed",
    "run_global_pass",
    "run_map_pass",
    "run_map_pass_batches",
    "run_map_passes",
    "run_pass",
    "run_passes",
    "sweep_uncommitted",
    "taper_bounds",
    "write_files",
]


log = logging.getLogger("lamina")

# A chunk that raises is retried this many more times before the run gives up on it.
RETRIES = 2


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


def rows_needed(keys: pa.Array | pa.ChunkedArray, done: pa.Array) -> pa.BooleanArray:
    """Which of `keys` are still to do: every key not among the committed ones (`done`),
    all of them when nothing is; a null key is never in `done`, so its row is needed.

    Example:
        >>> rows_needed(pa.chunked_array([["a", "b", None]]), pa.array(["a"])).to_pylist()
        [False, True, True]
    """
    known = done if len(done) else pa.nulls(0, keys.type)
    need = pc.invert(pc.is_in(keys, value_set=known))
    return need.combine_chunks() if isinstance(need, pa.ChunkedArray) else need


def run_map_passes(
    store: Store,
    instances: list[Pass],
    inputs: pa.Table | RowsFile,
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
    chunks are committed. `inputs` may be a `RowsFile` (rows in a Parquet file): then only
    its key column is held, and each chunk's rows are read when the chunk is handed out.
    Returns what each pass did, by `result_keys` (the name, unless a pass runs under
    several configs).

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
        for group in pass_groups(instances):
            needs_all = []
            for instance in group:
                if instance.kind != "map":
                    raise TypeError(f"{instance.name} is not a map pass")
                sweep_uncommitted(store, instance)
                _heal(store, instance, run)
                need = rows_needed(inputs[instance.key], done_keys(store, instance))
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
            bounds = chunk_bounds(todo, size, chunk_bytes, size_column)
            if group[0].decode is not None and not chunk_bytes:
                bounds = taper_bounds(bounds, executor.workers)
            _run_group(
                group,
                chunk_tasks(todo, needs, group, store, run, bounds),
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
                bar.update(from_ipc(task.batch).num_rows)
            if not failed:
                break
            if attempt < RETRIES:
                log.warning(
                    "%d chunk(s) of %s failed (%s); retrying", len(failed), label, failed[0][1]
                )
            tasks = [task for task, _ in failed]
        for task, detail in failed:
            rows = from_ipc(task.batch).num_rows
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
            need = rows_needed(keys, done)
            n_todo = pc.sum(need).as_py() or 0
            result.already_done += table.num_rows - n_todo
            if n_todo == 0:
                continue
            todo, every = table, need
            if n_todo < table.num_rows:
                todo, every = table.filter(need), need.filter(need)  # every row needed
            bounds = chunk_bounds(todo, chunk_size, chunk_bytes, size_column)
            yield from chunk_tasks(todo, [every], [instance], store, run, bounds)

    results = {(instance.name, instance.layer_id): result}
    _run_group([instance], tasks(), total, executor, results, run, progress)
    layer_dir = store.layer_dir(instance.name, instance.layer_id)
    parts = readable_parts(layer_dir)
    if parts:
        if store.lock_token is not None:
            certify(layer_dir, parts)  # as in run_map_passes
        store.set_current(instance.name, instance.layer_id, run.run_id)
    return result


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


# DuckDB's memory for the image inputs query (`image_inputs_file`): beyond it, its sort and
# window spill to the store's tmp folder, so the driver's peak does not grow with the
# images (unbounded, the query peaked at ~1.2 KB per image, ~1.2 GB for a million).
INPUTS_MEMORY_LIMIT = CAPPED_MEMORY_LIMIT
# What to try, in order, when a step of that query cannot spill under the cap.
INPUTS_SETTINGS = CAPPED_QUERY_SETTINGS
# Rows per row group of that file: the chunk tasks read it a row group at a time (~3 MB).
INPUTS_ROW_GROUP = 8192


def image_inputs_file(store: Store, path: Path) -> RowsFile | pa.Table:
    """`image_inputs` written to the Parquet file `path` by DuckDB (under
    `INPUTS_MEMORY_LIMIT`, spilling beyond it) and returned as a `RowsFile`, for a run
    whose driver should not hold every image's row; the small empty table when the store
    has no images. The caller deletes `path`.

    Example:
        >>> image_inputs_file(store, store.tmp_dir / "inputs.parquet").num_rows  # doctest: +SKIP
        312
    """
    import duckdb

    if not store.table_files("files") or not store.table_files("images"):
        return image_inputs(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = store.connect()
    try:
        copy = (
            f"copy ({IMAGE_INPUTS_SQL}) to '{_sq(str(path))}' "
            f"(format parquet, row_group_size {INPUTS_ROW_GROUP})"
        )
        for limit, threads in INPUTS_SETTINGS:
            con.execute(f"set memory_limit = '{limit}'" if limit else "reset memory_limit")
            con.execute(f"set threads = {threads}" if threads else "reset threads")
            try:
                con.execute(copy)
                break
            except duckdb.OutOfMemoryException:
                if not limit:
                    raise
                log.info("image inputs: out of memory at %s, %s threads; next setting",
                         limit, threads or "default")  # fmt: skip
    finally:
        con.close()
        give_back_memory()  # what DuckDB freed, back to the system
    return RowsFile(path)


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
            # The inputs go to a file, not into memory: the driver holds their keys only.
            # One a run killed earlier left behind is removed (the lock is held).
            for stale in store.tmp_dir.glob("inputs-*.parquet"):
                stale.unlink(missing_ok=True)
            inputs_path = store.tmp_dir / f"inputs-{run.run_id}.parquet"
            try:
                inputs = image_inputs_file(store, inputs_path)
                if selected is not None:
                    wanted = pa.array(selected, pa.string())
                    inputs = inputs.filter(pc.is_in(inputs["image_id"], value_set=wanted))
                if max_images:
                    if isinstance(inputs, RowsFile):
                        inputs = inputs.head(max_images)
                    else:
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
            finally:
                inputs_path.unlink(missing_ok=True)
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
