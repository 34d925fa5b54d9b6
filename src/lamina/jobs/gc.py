"""`lamina gc`: find, and with `delete` remove, what killed or refused commands left in a
store and nothing reads.

* A store on an object store (`--store s3://…`): objects that no commit manifest names
  (a push killed before its manifest, or refused by the conditional put, uploaded them).
  Every commit's objects are kept, not only the newest's.
* A store folder: staging under `tmp/` that never became a commit (a staging folder with
  its redo record, `COMMIT.json`, is a cut-short commit that the next open rolls forward:
  never removed), temporary files of atomic writes (`.<name>.<hex>.tmp`), and parts of a
  map pass's layer without their ledger record (readers already skip them).

Only what was last modified more than `grace_s` ago counts (default 24 h): a concurrent
writer's upload or staging in flight is recent, so it is never taken. A dry run changes
nothing; `delete` on a store folder holds the store's write lock. A leftover that cannot
be removed (permissions, a file in use) is not counted as deleted: it is named with the
error in `failures`, and the others are still removed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.layers import is_chunked, ledger_dir_of
from lamina.core.layout import LAYERS_DIR
from lamina.core.ledger import done_chunks
from lamina.core.store import Store

DAY_S = 24 * 3600
ITEMS_SHOWN = 1000  # the result lists this many items at most (the counts are all)
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": DAY_S}


def parse_duration(text: str) -> int:
    """Seconds in `text`: a whole number with an optional unit (s, m, h, d).

    Example:
        >>> parse_duration("24h"), parse_duration("90")
        (86400, 90)
    """
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise LaminaError(
            f"--grace {text!r} is not a duration",
            hint="give a whole number with s, m, h or d: 24h (the default), 30m, 7d, 0",
        )
    return int(found.group(1)) * _UNIT_S[found.group(2)]


@dataclass(frozen=True)
class GcConfig:
    """What `lamina gc` takes: the grace period (seconds) and whether to delete."""

    grace_s: float = DAY_S
    delete: bool = False


@dataclass
class GcResult:
    """What was found and done. `found` (and bytes): garbage older than the grace;
    `young`: unreferenced but recent, kept; `deleted`: removed now (0 on a dry run);
    `named`: objects some commit names (object store) or None (store folder); `foreign`:
    keys under objects/ that lamina did not write (never touched); `items`: the first
    `ITEMS_SHOWN` found, each {name, kind, bytes, age_s}; `failed` (and bytes): found but
    not removed because deleting failed (store folder), the first `ITEMS_SHOWN` of them in
    `failures`, each {name, kind, bytes, error}."""

    where: str
    kind: str  # "objects" (a store on an object store) or "files" (a store folder)
    grace_s: float
    dry_run: bool
    found: int = 0
    found_bytes: int = 0
    young: int = 0
    young_bytes: int = 0
    deleted: int = 0
    deleted_bytes: int = 0
    named: int | None = None
    commits: int | None = None
    foreign: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    failed_bytes: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


def collect_garbage(target: Store | str, config: GcConfig = GcConfig()) -> GcResult:
    """Find (and with `config.delete`, remove) the store's garbage; see the module doc.
    `target`: an open store folder, or the URL of a store on an object store (its bucket
    is read directly: no working copy is pulled).

    Example:
        >>> collect_garbage("s3://bucket/lamina-store").found  # doctest: +SKIP
        12
    """
    if isinstance(target, Store):
        return _folder_garbage(target, config)
    return _bucket_garbage(target, config)


def _bucket_garbage(url: str, config: GcConfig) -> GcResult:
    from lamina.core import objectstore

    found = objectstore.unnamed_objects(url, config.grace_s)
    now = time.time_ns()
    result = GcResult(
        url,
        "objects",
        config.grace_s,
        not config.delete,
        found=len(found.old),
        found_bytes=sum(o.size for o in found.old),
        young=len(found.young),
        young_bytes=sum(o.size for o in found.young),
        named=found.named,
        commits=len(found.commits),
        foreign=found.foreign,
    )
    result.items = [
        {"name": o.sha, "kind": "object", "bytes": o.size, "age_s": _age(now, o.mtime_ns)}
        for o in found.old[:ITEMS_SHOWN]
    ]
    if config.delete and found.old:
        deleted = objectstore.delete_unnamed(url, found)
        result.deleted = len(deleted)
        result.deleted_bytes = sum(o.size for o in deleted)
    return result


def _age(now_ns: int, mtime_ns: int | None) -> float | None:
    return None if mtime_ns is None else round((now_ns - mtime_ns) / 1e9, 1)


@dataclass(frozen=True)
class _Leftover:
    path: Path
    kind: str
    size: int
    mtime_ns: int


def _measure(path: Path, kind: str) -> _Leftover | None:
    """A leftover's bytes and newest mtime (a folder: over everything in it, so staging
    that is still being written counts as recent)."""
    try:
        own = path.stat()
        inside = [p.stat() for p in path.rglob("*")] if stat.S_ISDIR(own.st_mode) else []
    except OSError:
        return None  # gone meanwhile
    if stat.S_ISDIR(own.st_mode):
        size = sum(s.st_size for s in inside if stat.S_ISREG(s.st_mode))
    else:
        size = own.st_size
    return _Leftover(path, kind, size, max(s.st_mtime_ns for s in [own, *inside]))


def _leftovers(store: Store) -> list[_Leftover]:
    out: list[_Leftover | None] = []
    tmp = store.tmp_dir
    if tmp.is_dir():
        for entry in sorted(tmp.iterdir()):
            if (entry / "COMMIT.json").is_file():
                continue  # a cut-short commit: rolled forward by the next open
            if entry.name == "duckdb":
                continue  # a reader's spill folder (`Store.connect`): DuckDB's own to clear
            out.append(_measure(entry, "staging"))
    for path in sorted(store.root.rglob(".*.tmp")):
        if not path.is_relative_to(tmp):
            out.append(_measure(path, "temporary file"))
    layers = store.root / LAYERS_DIR
    for layer in sorted(layers.glob("*/*")) if layers.is_dir() else []:
        # A chunked layer's part without its ledger record is a chunk killed in its
        # commit: readers skip it (`readable_parts`), and a rerun would sweep it.
        if not layer.is_dir() or not is_chunked(layer):
            continue
        done = done_chunks(ledger_dir_of(layer))
        for part in sorted(layer.glob("part-*.parquet")):
            if part.stem.removeprefix("part-") not in done:
                out.append(_measure(part, "uncommitted part"))
    return [x for x in out if x is not None]


def _remove(path: Path, root: Path) -> str | None:
    """Delete the file or folder `path` (already gone counts as deleted): None when it is
    gone, else why not, each failing path named relative to `root`. A folder loses all it
    can: a file that cannot go does not keep the others."""
    errors: list[str] = []

    def note(failed: Any, exc: BaseException) -> None:
        if isinstance(exc, FileNotFoundError):
            return  # removed meanwhile
        if errors and isinstance(exc, OSError) and exc.errno == errno.ENOTEMPTY:
            return  # a folder left non-empty by the error already noted
        name = Path(os.fsdecode(failed))
        where = name.relative_to(root).as_posix() if name.is_relative_to(root) else str(name)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        errors.append(f"{where}: {reason}")

    try:
        if path.is_dir() and not path.is_symlink():
            if sys.version_info >= (3, 12):
                shutil.rmtree(path, onexc=lambda _f, p, exc: note(p, exc))
            else:
                shutil.rmtree(path, onerror=lambda _f, p, info: note(p, info[1]))
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        note(exc.filename or path, exc)
    if not errors and not os.path.lexists(path):
        return None
    shown = "; ".join(errors[:3]) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")
    return shown or f"{path.relative_to(root).as_posix()}: still there after deleting it"


def _folder_garbage(store: Store, config: GcConfig) -> GcResult:
    now = time.time_ns()
    cutoff = now - int(config.grace_s * 1e9)
    result = GcResult(str(store.root), "files", config.grace_s, not config.delete)

    def survey() -> list[_Leftover]:
        old = []
        for item in _leftovers(store):
            if item.mtime_ns <= cutoff:
                old.append(item)
            else:
                result.young += 1
                result.young_bytes += item.size
        return old

    if not config.delete:
        old = survey()
    else:
        # Under the write lock no other command writes (a second one is refused), and a
        # worker of a killed one cannot commit (the chunk commits are fenced).
        with store.write_lock("gc"):
            old = survey()
            for item in old:
                error = _remove(item.path, store.root)
                if error is None:
                    result.deleted += 1
                    result.deleted_bytes += item.size
                    continue
                result.failed += 1
                result.failed_bytes += item.size
                if len(result.failures) < ITEMS_SHOWN:
                    name = item.path.relative_to(store.root).as_posix()
                    result.failures.append(
                        {"name": name, "kind": item.kind, "bytes": item.size, "error": error}
                    )
    result.found = len(old)
    result.found_bytes = sum(x.size for x in old)
    result.items = [
        {
            "name": x.path.relative_to(store.root).as_posix(),
            "kind": x.kind,
            "bytes": x.size,
            "age_s": _age(now, x.mtime_ns),
        }
        for x in old[:ITEMS_SHOWN]
    ]
    return result
