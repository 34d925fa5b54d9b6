"""Verify: re-read the files of the manifest and compare their bytes with the recorded hash.

Each file comes out as one of:

* ``ok``         same SHA-256 as recorded (a touched file with the same bytes is ok);
* ``missing``    the path is gone;
* ``modified``   size or mtime changed: a legitimate edit; `lamina scan` records it;
* ``bitrot``     same size and mtime, different bytes: silent corruption;
* ``unreadable`` the file exists but reading it failed (permissions, I/O error).

It also checks that no layer of a map pass holds a key twice (a store written before
chunk commits were fenced could: see `lamina.core.layers`), and with `repair_layers`
makes those layers hold each key once, under the write lock.

Verify changes no table: it writes only its run record and `runs/<run_id>/verify.parquet`
(the problems), the certificates of the layers it found clean, and, when asked, the
repaired layers; it opens sources for reading only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from lamina.core.archives import open_source, outer_file, source_version
from lamina.core.errors import LaminaError, StoreError
from lamina.core.layers import check_layer, map_layer_dirs, repair_layer
from lamina.core.ledger import Run
from lamina.core.progress import Progress
from lamina.core.remote import check_remote_source, is_url
from lamina.core.store import Store, atomic_write_parquet
from lamina.executors.local import LocalExecutor, default_workers

KINDS = ("ok", "missing", "modified", "bitrot", "unreadable")
# A chunk ends at this many files or bytes, whichever comes first: small enough to spread
# a few huge files over workers, large enough that task overhead stays negligible.
CHUNK_FILES = 256
CHUNK_BYTES = 256 << 20
MAX_PROBLEMS_RETURNED = 1000
LOCK_WAIT_S = 60.0  # how long the report waits for another command's write lock

REPORT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("rel_path", pa.string()),
        ("kind", pa.string()),
        ("expected_sha256", pa.string()),
        ("actual_sha256", pa.string()),
        ("expected_size", pa.int64()),
        ("actual_size", pa.int64()),
        ("expected_mtime_ns", pa.int64()),
        ("actual_mtime_ns", pa.int64()),
        ("detail", pa.string()),
    ]
)


@dataclass(frozen=True)
class FileCheck:
    """One file to check: where it is and what the manifest recorded."""

    source: str
    rel_path: str
    size: int | None
    mtime_ns: int | None
    sha256: str


def check_file(item: FileCheck) -> dict[str, Any]:
    """Re-hash one file and classify it (a row of `REPORT_SCHEMA`); never raises for I/O.

    Example:
        >>> check_file(FileCheck("/nope", "a.jpg", 1, 1, "0" * 64))["kind"]
        'missing'
    """
    path = os.path.join(item.source, item.rel_path)
    row = _row(item)
    try:
        before = source_version(outer_file(path))  # an archive member: its archive's
        with open_source(path) as fh:  # a file, a member, or a remote file (fsspec)
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        after = source_version(outer_file(path))
    except (FileNotFoundError, NotADirectoryError):
        row["kind"] = "missing"
        return row
    except OSError as exc:
        row["kind"] = "unreadable"
        row["detail"] = f"{type(exc).__name__}: {exc.strerror or exc}"
        return row
    row.update(actual_sha256=digest, actual_size=after[0], actual_mtime_ns=after[1])
    unchanged = after == (item.size, item.mtime_ns)
    if before != after:
        # Written to while we read it: the digest belongs to no version of the file.
        row["kind"], row["detail"] = "modified", "changed while being read"
    elif digest == item.sha256:
        row["kind"] = "ok"
    elif unchanged:
        row["kind"] = "bitrot"
    else:
        row["kind"] = "modified"
    return row


def _source_there(source: str) -> bool:
    """Whether a source folder (or remote prefix) is there."""
    if not is_url(source):
        return os.path.isdir(source)
    try:
        check_remote_source(source)
    except LaminaError:
        return False
    return True


def _row(item: FileCheck, kind: str | None = None, detail: str | None = None) -> dict[str, Any]:
    return {
        "source": item.source,
        "rel_path": item.rel_path,
        "kind": kind,
        "expected_sha256": item.sha256,
        "actual_sha256": None,
        "expected_size": item.size,
        "actual_size": None,
        "expected_mtime_ns": item.mtime_ns,
        "actual_mtime_ns": None,
        "detail": detail,
    }


def check_chunk(items: list[FileCheck]) -> list[dict[str, Any]]:
    """Worker entry point (module level, so spawned processes can import it)."""
    return [check_file(item) for item in items]


def _chunks(items: list[FileCheck]) -> Iterator[list[FileCheck]]:
    chunk: list[FileCheck] = []
    nbytes = 0
    for item in items:
        chunk.append(item)
        nbytes += item.size or 0
        if len(chunk) >= CHUNK_FILES or nbytes >= CHUNK_BYTES:
            yield chunk
            chunk, nbytes = [], 0
    if chunk:
        yield chunk


def _manifest_files(store: Store) -> list[FileCheck]:
    if not store.table_files("files"):
        raise StoreError(
            f"the store {store.root} has no files table to verify",
            hint="run `lamina scan SOURCE` first",
        )
    table = store.sql(
        "select source, rel_path, size, mtime_ns, sha256 from files "
        "where status <> 'missing' and sha256 is not null order by source, rel_path"
    )
    return [FileCheck(**row) for row in table.to_pylist()]


def check_layers(store: Store, *, repair: bool = False) -> tuple[list[dict], list[dict]]:
    """The map-pass layers holding a key in more than one part (`layer`, `duplicate_keys`,
    `extra_rows`), and, with `repair`, what was done to each (under the write lock).
    Layers found clean are certified, so readers skip deduplicating them.

    Example:
        >>> check_layers(lamina.open())  # doctest: +SKIP
        ([{'layer': 'thumbs/1-0a1b2c3d', 'duplicate_keys': 29, 'extra_rows': 29}], [])
    """
    found = []
    for layer_dir in map_layer_dirs(store.root):
        check = check_layer(layer_dir, certify_clean=True)
        if check.extra_rows:
            found.append(
                {
                    "layer": check.layer,
                    "duplicate_keys": check.duplicate_keys,
                    "extra_rows": check.extra_rows,
                }
            )
    repaired = []
    if repair and found:
        with store.write_lock("verify --repair-layers"):
            for entry in found:
                pass_name, layer_id = entry["layer"].split("/", 1)
                done = repair_layer(store.layer_dir(pass_name, layer_id))
                repaired.append({"layer": entry["layer"], **done})
    return found, repaired


def verify(
    store: Store,
    *,
    sample: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    repair_layers: bool = False,
) -> dict[str, Any]:
    """Re-hash the manifest's files (or a random `sample` of them) and report what changed;
    report layers holding a key twice (`duplicate_layers`), and repair them when
    `repair_layers` is set (`repaired_layers`).

    Example:
        >>> report = verify(lamina.open("photos-store"), sample=1000)  # doctest: +SKIP
        >>> report["bitrot"], report["problems"][:1]  # doctest: +SKIP
        (1, [{'source': '/photos', 'rel_path': 'a.jpg', 'kind': 'bitrot', ...}])
    """
    if sample is not None and sample < 1:
        raise StoreError(
            f"--sample must be at least 1, got {sample}", hint="leave it out to check every file"
        )
    items = _manifest_files(store)
    store.check_writable()  # its run record and report: fail before hours of hashing
    if sample is not None and sample < len(items):
        picked = random.Random(seed).sample(range(len(items)), sample)
        items = [items[i] for i in sorted(picked)]  # keep path order: friendlier to disks
    chunks = list(_chunks(items))
    # Spawning workers costs about a second; not worth it for a single chunk.
    n_workers = max(1, min(workers or default_workers(), len(chunks)))
    config = {"sample": sample, "seed": seed, "workers": workers, "files": len(items)}
    counts = dict.fromkeys(KINDS, 0)
    # Problems are kept as Arrow, not dicts: an unmounted disk makes every file one.
    parts: list[pa.Table] = []
    config["repair_layers"] = repair_layers
    with (
        Run(store, "verify", config) as run,
        Progress(len(items), "verify", enabled=progress) as bar,
    ):
        duplicate_layers, repaired_layers = check_layers(store, repair=repair_layers)
        run.count("duplicate_layers", duplicate_layers)
        if repaired_layers:
            run.count("repaired_layers", repaired_layers)
        for chunk, outcome in LocalExecutor(n_workers).imap_unordered(check_chunk, chunks):
            if isinstance(outcome, BaseException):
                # A worker died (killed, out of memory): its files were not checked, and
                # must not pass for ok.
                run.error(
                    kind="chunk",
                    files=len(chunk),
                    first=chunk[0].rel_path,
                    message=f"{type(outcome).__name__}: {outcome}",
                )
                detail = f"not checked: {type(outcome).__name__}"
                outcome = [_row(item, "unreadable", detail) for item in chunk]
            for row in outcome:
                counts[row["kind"]] += 1
            bad = [row for row in outcome if row["kind"] != "ok"]
            if bad:
                parts.append(pa.Table.from_pylist(bad, schema=REPORT_SCHEMA))
            bar.update(len(chunk))
        problems = pa.concat_tables([REPORT_SCHEMA.empty_table(), *parts]).sort_by(
            [("source", "ascending"), ("rel_path", "ascending")]
        )
        _write_report(store, run, problems)
        # An unmounted disk looks like thousands of missing files; name the cause.
        gone = sorted({i.source for i in items if not _source_there(i.source)})
        run.count("checked", len(items))
        for kind, n in counts.items():
            run.count(kind, n)
        run.count("missing_sources", gone)
    keys = ["source", "rel_path", "kind", "expected_sha256", "actual_sha256"]
    return {
        "run_id": run.run_id,
        "checked": len(items),
        **counts,
        "missing_sources": gone,
        "problems": problems.select(keys).slice(0, MAX_PROBLEMS_RETURNED).to_pylist(),
        "duplicate_layers": duplicate_layers,
        "repaired_layers": repaired_layers,
    }


def _write_report(store: Store, run: Run, problems: pa.Table) -> None:
    """Write the report under the store's write lock, waiting a while for a busy store.

    The report lies in this run's own folder, which no other command writes, so when the
    lock stays taken (a long scan) it is written anyway: hours of hashing are not thrown
    away for a lock that protects nothing here.
    """
    deadline = time.monotonic() + LOCK_WAIT_S
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(store.write_lock("verify"))
                break
            except StoreError as exc:
                if "busy" not in exc.message:
                    raise
                if time.monotonic() >= deadline:
                    run.count("report_written_without_lock", True)
                    break
                time.sleep(1.0)
        atomic_write_parquet(store.run_dir(run.run_id) / "verify.parquet", problems)
