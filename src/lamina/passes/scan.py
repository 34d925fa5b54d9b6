"""Scan: walk sources read-only and build the manifest (`files`, `images`, `file_events`).

This module holds the probe pass; the walk is `lamina.passes.scan_walk`'s and the listing
`lamina.passes.scan_listing`'s (their names are importable from here too).
`lamina.jobs.scan` runs the three steps (and decides when to start worker processes):

1. *Walk* every source (stat only) into a listing: one row per path, with size and mtime.
   Symlink loops, broken links, unreadable folders and special files become rows too.
2. *Probe* (the `scan` map pass, run by the runner): hash each file and read its header.
   Its layer is keyed by `file_key` = hash(source, path, size, mtime), so a file whose size
   and mtime have not changed is never read again, and a killed scan resumes.
3. *Commit*: join the listing with the probes and the previous state into the new `files`
   table (rewritten), new rows of `images` and `file_events` (appended), in one atomic
   store commit.

Sources are only ever opened for reading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from lamina.core.archives import SEP, is_member, read_members
from lamina.core.images import PROBE_SCHEMA, probe_bytes, probe_file, probe_stream
from lamina.core.passes import Pass, register
from lamina.core.remote import is_url, open_checked
from lamina.passes.scan_listing import (
    LISTING_SCHEMA,
    arrow_column,
    empty_table,
    file_key,
    list_sources,
    spill_listing,
)
from lamina.passes.scan_walk import WalkEntry, walk_source

# Importable from here as before the split (the scan job, tests and benchmarks use them).
__all__ = [
    "IMAGE_STATUSES",
    "LISTING_SCHEMA",
    "ScanConfig",
    "ScanPass",
    "WalkEntry",
    "arrow_column",
    "empty_table",
    "file_key",
    "image_id_from_sha256",
    "list_sources",
    "spill_listing",
    "walk_source",
    "warm_up",
]

# Statuses of files that hold (or claim to hold) an image: these get an image_id.
IMAGE_STATUSES = ("ok", "broken", "unsupported")


def image_id_from_sha256(sha256_hex: str) -> str:
    """The frozen image id: the first 128 bits of the content's SHA-256, in hex.

    Same bytes, same id, on any machine, forever; `sha256sum FILE | cut -c1-32` agrees.

    Example:
        >>> import hashlib
        >>> image_id_from_sha256(hashlib.sha256(b"").hexdigest())
        'e3b0c44298fc1c149afbf4c8996fb924'
    """
    return sha256_hex[:32]


def failed_probe(status: str, reason: str, detail: str) -> dict[str, Any]:
    """The probe row of a file that was not read through: its status, reason and detail,
    no header facts (flags False, the rest null).

    Example:
        >>> failed_probe("broken", "probe_error", "ValueError: x")["huge"]
        False
    """
    row: dict[str, Any] = {name: None for name in PROBE_SCHEMA.names}
    row.update(
        status=status, reason=reason, ext_mismatch=False, icc=False, huge=False, detail=detail
    )
    return row


# -- the probe pass --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanConfig:
    """Scan settings. The hash of these values names the probe layer."""

    hash: str = "sha256"  # the content hash that image ids derive from; fixed forever


@register
class ScanPass(Pass):
    """Hash each file and read its image header (no pixel decode)."""

    name = "scan"
    version = "1"
    Config = ScanConfig
    reads = ()
    key = "file_key"
    schema = pa.schema([("file_key", pa.string()), *PROBE_SCHEMA, ("detail", pa.string())])

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.hash != "sha256":
            raise ValueError("scan: image ids are defined on sha256; `hash` cannot change")

    def process(self, batch: pa.Table) -> pa.Table:
        rels = batch["rel_path"].to_pylist()
        if "abs_path" in batch.column_names:
            paths = batch["abs_path"].to_pylist()
        else:  # the listing leaves it out: it is source + "/" + rel_path
            paths = [
                os.path.join(source, rel)
                for source, rel in zip(batch["source"].to_pylist(), rels, strict=True)
            ]
        rows: list[dict[str, Any]] = []
        members = _read_members(paths, rels)
        n = batch.num_rows
        sizes = batch["size"].to_pylist() if "size" in batch.column_names else [None] * n
        mtimes = batch["mtime_ns"].to_pylist() if "mtime_ns" in batch.column_names else [None] * n
        for key, path, rel, size, mtime in zip(
            batch["file_key"].to_pylist(), paths, rels, sizes, mtimes, strict=True
        ):
            try:
                if SEP in rel and is_member(path):
                    row = _probe_member(members, path, rel)
                elif is_url(path):
                    row = _probe_remote(path, rel, size, mtime)
                else:
                    row = probe_file(path, rel)
                    row["detail"] = None
            except Exception as exc:  # a bug in a header parser must not sink the chunk
                row = failed_probe("broken", "probe_error", f"{type(exc).__name__}: {exc}")
            row["file_key"] = key
            rows.append(row)
        return pa.Table.from_arrays(
            [arrow_column([row[f.name] for row in rows], f.type) for f in self.schema],
            schema=self.schema,
        )


def _read_members(paths: list[str], rels: list[str]) -> dict[str, dict[str, bytes | Exception]]:
    """The bytes of the batch's archive members, by archive (absolute path) and member:
    each archive opened once (a compressed tar is read in one pass, not once a member)."""
    wanted: dict[str, list[str]] = {}
    for path, rel in zip(paths, rels, strict=True):
        if SEP in rel and is_member(path):
            container, _, name = path.rpartition(SEP)
            wanted.setdefault(container, []).append(name)
    out: dict[str, dict[str, bytes | Exception]] = {}
    for container, names in wanted.items():
        try:
            out[container] = read_members(container, names)
        except Exception as exc:  # the archive itself is gone or unreadable now
            out[container] = dict.fromkeys(names, exc)
    return out


def _probe_remote(path: str, rel: str, size: int | None, mtime: int | None) -> dict[str, Any]:
    """Probe a remote file as the scan's listing saw it: read by streaming, and checked
    against the listed size and mtime before and after, so that a file that changed or
    went away since the listing is `unreadable / changed_during_scan` (the scan stays on
    its snapshot; the next one lists the file again and reads it)."""
    f, changed = open_checked(path, size, mtime)
    row: dict[str, Any] = {}
    if f is not None:
        with f:
            row = probe_stream(f, rel)
        if size is not None and row["size"] is not None and row["size"] != size:
            changed = f"listed at {size} bytes, {row['size']} bytes when read"
    if not changed:
        row["detail"] = None
        return row
    return failed_probe(
        "unreadable", "changed_during_scan", f"{changed}; the next scan reads it again"
    )


def _probe_member(
    members: dict[str, dict[str, bytes | Exception]], path: str, rel: str
) -> dict[str, Any]:
    container, _, name = path.rpartition(SEP)
    got = members.get(container, {}).get(name)
    if isinstance(got, bytes):
        row = probe_bytes(got, rel)
        row["detail"] = None
        return row
    if got is None:
        return failed_probe("unreadable", "archive_member_missing", "gone from its archive")
    return failed_probe("unreadable", "archive_member_unreadable", f"{type(got).__name__}: {got}")


def warm_up() -> None:
    """Run in each new worker while the main process walks: the imports and the pass set-up
    that its first chunk would otherwise wait for (`lamina.jobs.scan` starts the workers
    with it; it lives here so that a worker imports only this module)."""
    from lamina.core.chunk_work import worker_pass

    worker_pass(ScanPass.name, ScanPass().config_dict())
