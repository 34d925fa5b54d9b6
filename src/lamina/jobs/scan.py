"""`lamina scan`: walk the sources, probe what is new (the `scan` pass) and commit the
manifest (`files`, `images`, `file_events`) in one atomic store commit.

The walk, the listing and the pass are `lamina.passes.scan`'s; the commit is
`lamina.manifest.commit`'s; this job runs them, and decides when worker processes repay
their start. Unlike the other jobs it does not import `lamina.catalog`: the scan runs one
pass, and a worker started by the scan imports only that pass's module (~0.1 s less for
each, which a small scan notices).

Example:
    >>> from lamina.jobs.scan import ScanConfig, scan
    >>> scan(lamina.open("s", create=True), ScanConfig(("photos",))).status  # doctest: +SKIP
    {'ok': 290, 'junk': 8, 'broken': 3}
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lamina.core.archives import ArchiveLimits
from lamina.core.config import expand_user
from lamina.core.errors import SourceError, StoreError
from lamina.core.ledger import Run, done_chunks, utc_now, write_chunk_record
from lamina.core.remote import check_remote_source, is_url
from lamina.core.runner import chunk_id_for, done_keys, run_map_pass_batches
from lamina.core.store import Store, atomic_write_parquet
from lamina.executors.local import LocalExecutor
from lamina.manifest.commit import commit_scan
from lamina.manifest.route import RoutedProbes, route_probes
from lamina.manifest.sources import SourcePlan, find_same_files, plan_sources, recorded_sources
from lamina.manifest.spill import SPILL_ROWS, Listing, give_back_memory, system_memory_pool
from lamina.passes.scan import (
    LISTING_SCHEMA,
    ScanPass,
    arrow_column,
    empty_table,
    file_key,
    spill_listing,
    warm_up,
)

# Worker processes cost a fresh interpreter and its imports each (~0.5 s here) before they
# do anything, so the scan starts them only when the probe has enough work to repay that:
# an estimate of the probe's single-core time from the files and bytes found, against
# POOL_AFTER_S. The rates are the benchmark machine's (bench/scan.py --profile): ~60 us of
# per-file work (open, read, hash, header, row) and ~1 GB/s of read + SHA-256 per core.
# Below the threshold the pool would not win: this process keeps working while the
# workers start, so a pool pays off once the work outlasts their start by the share of the
# cores they take from it meanwhile (about 1.3x the start on 2 cores; measured on 10,000
# small JPEGs, ~0.8 s of work: serial 0.71-0.77 s, pool 0.69-1.38 s).
PROBE_S_PER_FILE = 60e-6
PROBE_S_PER_BYTE = 1e-9
POOL_AFTER_S = 1.0
# Forked workers (Linux: `LocalExecutor(fork=True)`) start in a few milliseconds with every
# import done, so a pool repays itself on far less work.
POOL_AFTER_S_FORK = 0.05

# Chunks close at the store's chunk size (files) or at this many bytes, whichever comes
# first, so that large files spread over every worker instead of filling one chunk.
CHUNK_BYTES_MIN = 32 << 20
CHUNK_BYTES_MAX = 256 << 20


def chunk_bytes_for(total: int, workers: int) -> int:
    """Bytes per chunk: about four chunks per worker, within CHUNK_BYTES_MIN..MAX.

    Example:
        >>> chunk_bytes_for(246_000_000, 2) >> 20
        32
    """
    return int(min(CHUNK_BYTES_MAX, max(CHUNK_BYTES_MIN, total // (4 * workers))))


def _import_duckdb() -> None:
    import duckdb  # noqa: F401


def _mark_same_files(listing: Listing, listed: dict[int, str]) -> None:
    """Rewrite the listing's file with rows `listed` (row -> detail) made
    `skipped / same_file`, a slice at a time."""
    marked = listing.path.with_name(listing.path.name + ".marked")
    writer = pq.ParquetWriter(marked, LISTING_SCHEMA, compression="none")
    start = 0
    try:
        for batch in listing.batches():
            table = pa.Table.from_batches([batch], schema=LISTING_SCHEMA)
            rows = {r - start: d for r, d in listed.items() if start <= r < start + len(batch)}
            start += len(batch)
            if rows:
                columns = {
                    n: table[n].to_pylist() for n in ("walk_status", "walk_reason", "walk_detail")
                }
                for row, detail in rows.items():
                    columns["walk_status"][row] = "skipped"
                    columns["walk_reason"][row] = "same_file"
                    columns["walk_detail"][row] = detail
                for name, values in columns.items():
                    i = table.schema.get_field_index(name)
                    table = table.set_column(
                        i, table.schema.field(i), arrow_column(values, pa.string())
                    )
            writer.write_table(table)
    finally:
        writer.close()
    os.replace(marked, listing.path)


def _reuse_merged_probes(
    store: Store, instance: ScanPass, listing: Listing, plan: SourcePlan, run: Run
) -> int:
    """Give the probes of files whose source merged into another their new `file_key`
    (source and path changed, the bytes did not), as one more committed part of the scan
    layer, so that a merge hashes nothing again. Returns how many rows it re-keyed."""
    inside: dict[str, list[tuple[str, str]]] = {}
    for old, (new, prefix) in plan.merged.items():
        inside.setdefault(new, []).append((prefix, old))
    aliases: dict[str, str] = {}  # file_key under the old source -> under the new one
    columns = ["file_key", "source", "rel_path", "size", "mtime_ns", "walk_status"]
    for row in listing.read(columns).to_pylist():
        if row["walk_status"] is not None or row["source"] not in inside:
            continue
        for prefix, old in inside[row["source"]]:
            rel = row["rel_path"]
            if prefix:
                if not rel.startswith(prefix + "/"):
                    continue
                rel = rel[len(prefix) + 1 :]
            aliases[file_key(old, rel, row["size"], row["mtime_ns"])] = row["file_key"]
            break
    done = set(done_keys(store, instance).to_pylist())
    wanted = {o: n for o, n in aliases.items() if o in done and n not in done}
    if not wanted:
        return 0
    layer = store.layer_dir(instance.name, instance.layer_id)
    ledger = store.ledger_dir(instance.name, instance.layer_id)
    parts = [layer / f"part-{chunk}.parquet" for chunk in sorted(done_chunks(ledger))]
    probes = pa.concat_tables([pq.ParquetFile(p).read() for p in parts if p.exists()])
    old_keys = arrow_column(list(wanted), pa.string())
    probes = probes.filter(pc.is_in(probes["file_key"], value_set=old_keys))
    new_keys = arrow_column([wanted[k] for k in probes["file_key"].to_pylist()], pa.string())
    probes = probes.set_column(0, probes.schema.field(0), new_keys)
    chunk = chunk_id_for(new_keys)
    atomic_write_parquet(layer / f"part-{chunk}.parquet", probes.cast(instance.schema))
    write_chunk_record(
        ledger,
        chunk,
        {
            "chunk_id": chunk,
            "pass": instance.name,
            "layer": instance.layer_id,
            "run_id": run.run_id,
            "rows": probes.num_rows,
            "error_rows": 0,
            "reused_from": "merged sources",
            "finished": utc_now(),
        },
    )
    return probes.num_rows


def _to_probe(listing: Listing) -> Iterator[pa.Table]:
    """The listing's rows that the probe reads (no walk status), a slice at a time, with
    the columns it needs (the worker rebuilds the path from source + rel_path)."""
    # mtime_ns: a remote file is checked against its listed state when read.
    columns = ["file_key", "source", "rel_path", "size", "mtime_ns", "walk_status"]
    for batch in listing.batches(columns):
        give_back_memory()  # what the chunks of the slice before held
        table = pa.Table.from_batches([batch])
        if table["walk_status"].null_count < table.num_rows:
            table = table.filter(pc.is_null(table["walk_status"]))
        yield table.select(columns[:5])


def _fresh_work(listing: Listing, done: RoutedProbes | None) -> tuple[int, int]:
    """Files the probe will read, and their bytes: those with no walk status and, on a
    rescan, not in `done` (the keys already probed, by slice)."""
    files = size = 0
    for i, batch in enumerate(listing.batches(["file_key", "size", "walk_status"])):
        keep = pc.is_null(batch.column("walk_status"))
        if done is not None and len(keys := done.keys(i)):
            keep = pc.and_(keep, pc.invert(pc.is_in(batch.column("file_key"), value_set=keys)))
        files += pc.sum(keep).as_py() or 0
        size += pc.sum(pc.filter(batch.column("size"), keep)).as_py() or 0
    return files, size


def check_sources(store_root: Path, sources: list[str | os.PathLike[str]]) -> list[Path | str]:
    """Resolve sources to absolute folders, or URLs of remote folders
    (`lamina.core.remote`); refuse missing ones and a store inside one."""
    roots: list[Path | str] = []
    for source in sources:
        if is_url(source):
            roots.append(check_remote_source(str(source)))
            continue
        root = expand_user(source).absolute()
        if not root.exists():
            raise SourceError(
                f"the source {root} does not exist",
                hint="check the path (a typo, or a disk that is not mounted)",
            )
        if not root.is_dir():
            raise SourceError(
                f"the source {root} is not a folder", hint="give the folder that holds the images"
            )
        if not os.access(root, os.R_OK | os.X_OK):
            raise SourceError(
                f"the source {root} cannot be read",
                hint="fix its permissions or run as a user who can read it",
            )
        resolved = root.resolve()
        store_real = store_root.resolve()
        if store_real == resolved or resolved in store_real.parents:
            raise StoreError(
                f"the store {store_root} lies inside the source {root}; lamina never writes "
                "inside a source",
                hint=f"choose a store outside it, e.g. --store {resolved.parent / 'lamina-store'}",
            )
        roots.append(root)
    return sorted(set(roots), key=str)


def scan_sources(
    store: Store,
    sources: list[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    follow_links: bool = False,
    archive_depth: int = ArchiveLimits.depth,
) -> dict[str, Any]:
    """Scan `sources` into the store's manifest and return a summary.

    Re-running is cheap: files whose size and mtime are unchanged are not read again. A
    folder inside a recorded source rescans that part of it; a folder around recorded
    sources takes them in (`lamina.manifest.sources`). Symlinks whose target leaves the
    sources are rows `skipped / link_outside_source` unless `follow_links`.

    Example:
        >>> summary = scan_sources(Store.open("store", create=True), ["photos"], progress=False)
        >>> summary["status"]
        {'ok': 4}
    """
    roots = check_sources(store.root, sources)
    store.check_writable()
    instance = ScanPass()
    config = {
        "sources": [str(r) for r in roots],
        "pass": instance.config_dict(),
        "layer": instance.layer_id,
        "workers": workers,
        "chunk_size": chunk_size,
        "follow_links": follow_links,
        "archive_depth": archive_depth,
    }
    with store.write_lock("scan"), Run(store, "scan", config) as run, system_memory_pool():
        files_part = store.table_dir("files") / "files.parquet"
        plan = plan_sources(recorded_sources(files_part), roots)
        # The commit's DuckDB takes ~0.1 s to import: do it meanwhile, mostly while this
        # process waits on the workers (joined below, so no import outlives the scan). The
        # thread starts once the workers are forked (never during a fork: see `start`).
        preload = threading.Thread(target=_import_duckdb, name="lamina-import-duckdb")
        layer = store.layer_dir(instance.name, instance.layer_id)
        rescan = layer.is_dir() and any(layer.glob("part-*.parquet"))
        # The executor runs chunks in this process until its workers are up, and its
        # workers are started only when there is work enough to repay their start-up.
        executor = LocalExecutor(workers, work_while_starting=True, fork=True)
        pool_after = POOL_AFTER_S_FORK if executor.fork else POOL_AFTER_S

        def start_pool() -> None:
            executor.start(warm_up)
            if preload.ident is None:
                preload.start()

        def maybe_start(files: int, size: int) -> None:
            if files * PROBE_S_PER_FILE + size * PROBE_S_PER_BYTE >= pool_after:
                start_pool()

        # The listing goes to a file as the walk goes (`spill_listing`): no step holds all
        # of it. One a scan killed earlier left behind is removed (the lock is held).
        for stale in store.tmp_dir.glob("scan-listing-*"):
            stale.unlink(missing_ok=True)
        for stale in store.tmp_dir.glob("scan-done-*"):
            shutil.rmtree(stale, ignore_errors=True)
        done: RoutedProbes | None = None
        spill = store.tmp_dir / f"scan-listing-{run.run_id}.parquet"
        try:
            try:
                if workers is not None:
                    start_pool()  # an explicit worker count is obeyed
                # A first scan starts the workers during the walk, so that their start-up
                # overlaps it; a rescan only once it knows how much is new.
                listing = spill_listing(
                    plan.scopes,
                    spill,
                    on_progress=None if rescan else maybe_start,
                    follow_links=follow_links,
                    scanned=plan.trees,
                    temp_dir=store.tmp_dir,
                    archives=ArchiveLimits(depth=archive_depth),
                )
                give_back_memory()
                same = find_same_files(listing, files_part, plan, temp_dir=store.tmp_dir)
                if same.listed:
                    _mark_same_files(listing, same.listed)
                if plan.merged:  # their files keep their probes: a merge reads nothing again
                    _reuse_merged_probes(store, instance, listing, plan, run)
                if rescan:
                    # The keys already probed, routed to the listing's slices: each slice
                    # is checked against its own, and no step holds every key of the layer.
                    ledger = store.ledger_dir(instance.name, instance.layer_id)
                    committed = [layer / f"part-{c}.parquet" for c in sorted(done_chunks(ledger))]
                    done = route_probes(
                        listing,
                        [p for p in committed if p.exists()],
                        store.tmp_dir / f"scan-done-{run.run_id}",
                        pa.schema([instance.schema.field(instance.key)]),
                        slice_rows=SPILL_ROWS,
                    )
                fresh_files, work_bytes = _fresh_work(listing, done)
                maybe_start(fresh_files, work_bytes)
                if preload.ident is None:
                    preload.start()
                used = executor
                if not executor.started:
                    # Too little work for a pool: this process does it. When reading and
                    # hashing dominate (big files), on threads: those release the GIL, so
                    # they use every core. Else one at a time, as the GIL would serialise
                    # the per-file Python work anyway and threads only add switching
                    # (measured: 5-20 % slower).
                    by_bytes = work_bytes * PROBE_S_PER_BYTE > fresh_files * PROBE_S_PER_FILE
                    used = LocalExecutor(executor.workers if by_bytes else 1, threads=True)
                result = run_map_pass_batches(
                    store,
                    instance,
                    _to_probe(listing),
                    run,
                    total=fresh_files,
                    chunk_size=chunk_size,
                    progress=progress,
                    executor=used,
                    chunk_bytes=chunk_bytes_for(work_bytes, used.workers),
                    done_for=None if done is None else done.keys,
                )
            finally:
                executor.close()
                if preload.ident is not None:
                    preload.join()
            give_back_memory()
            summary = commit_scan(
                store, run, listing, plan, layer, empty_table(ScanPass.schema), same.recorded
            )
        finally:
            spill.unlink(missing_ok=True)
            if done is not None:
                done.close()
        summary.update(
            merged={old: new for old, (new, _) in plan.merged.items()},
            parts={str(s.root): s.source for s in plan.scopes if s.prefix},
            run_id=run.run_id,
            hashed=result.processed,
            reused=result.already_done,
            failed_chunks=len(result.failed_chunks),
        )
        for key, value in summary.items():
            run.count(key, value)
    return summary


@dataclass(frozen=True)
class ScanConfig:
    """What `lamina scan` takes (its defaults): the source folders, processes (None: all
    cores), files per chunk (None: the store's), a progress bar, whether symlinks
    that lead out of the sources are followed, and how many levels of archives are read
    as folders (`lamina.core.archives`; 0: none)."""

    sources: tuple[str | os.PathLike[str], ...]
    workers: int | None = None
    chunk_size: int | None = None
    progress: bool = True
    follow_links: bool = False
    archive_depth: int = ArchiveLimits.depth


@dataclass
class ScanResult:
    """What a scan did. `status`: files by status; `events`: new file events by kind;
    `merged`: recorded source -> the source it now lies in; `parts`: folder scanned ->
    the recorded source it is part of; `summary`: all of it as one dict (`--json`)."""

    run_id: str
    files: int
    status: dict[str, int]
    events: dict[str, int]
    new_images: int
    hashed: int
    reused: int
    failed_chunks: int
    merged: dict[str, str]
    parts: dict[str, str]
    summary: dict[str, Any]

    @property
    def worked(self) -> bool:
        """Whether anything was read or recorded (False: the manifest was up to date)."""
        return bool(self.hashed or self.new_images or self.events)


def scan(store: Store, config: ScanConfig) -> ScanResult:
    """Scan `config.sources` into the store's manifest (`scan_sources`).

    Example:
        >>> store = lamina.open("photos-store", create=True)  # doctest: +SKIP
        >>> r = lamina.scan(store, ScanConfig(("photos",)))  # doctest: +SKIP
        >>> r.new_images  # doctest: +SKIP
        301
    """
    from lamina.jobs.layout import apply_layout, check_layout, store_layouts

    # A layout with a broken schema is refused before the scan, not after it.
    check_layout(store.root, check_sources(store.root, list(config.sources)))
    s = scan_sources(
        store,
        list(config.sources),
        workers=config.workers,
        chunk_size=config.chunk_size,
        progress=config.progress,
        follow_links=config.follow_links,
        archive_depth=config.archive_depth,
    )
    if store_layouts(store):
        # The items follow the manifest (lamina.manifest.items): a derived step after it.
        done = apply_layout(store)
        s["layout"] = {
            "items": done.items,
            "ok_items": done.ok_items,
            "run_id": done.run_id,
            "violations": done.violations,
            "warnings": done.warnings,
        }
    return ScanResult(
        run_id=str(s["run_id"]),
        files=s["files"],
        status=s["status"],
        events=s["events"],
        new_images=s["new_images"],
        hashed=s["hashed"],
        reused=s["reused"],
        failed_chunks=s["failed_chunks"],
        merged=s["merged"],
        parts=s["parts"],
        summary=s,
    )
