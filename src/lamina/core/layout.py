"""The files of a store at the lowest level: the layout's names and paths, atomic writes,
and the errors a failed write gives. `lamina.core.store` (the Store), `lamina.core.layers`
and `lamina.core.ledger` build on it, so none of them needs another to write a file.

Every name of the store's layout is spelled here and nowhere else; `lamina.core.store`
re-exports them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lamina.core.errors import StoreError

# The layout of layers and their ledgers (see the module docstring).
LAYERS_DIR = "layers"
LEDGER_DIR = "ledger"
CURRENT_DIR = "current"
GLOBAL_PART = "part-global.parquet"  # a global pass's one part
GLOBAL_RECORD = "global.json"  # and its ledger record (input fingerprint, rows, run id)


def layer_path(root: Path, pass_name: str, layer_id: str) -> Path:
    """`<root>/layers/<pass>/<layer id>`: the folder of a layer's parts.

    Example:
        >>> layer_path(Path("/s"), "embed", "1-ab").as_posix()
        '/s/layers/embed/1-ab'
    """
    return root / LAYERS_DIR / pass_name / layer_id


def ledger_path(root: Path, pass_name: str, layer_id: str) -> Path:
    """`<root>/ledger/<pass>/<layer id>`: the folder of a layer's ledger records.

    Example:
        >>> ledger_path(Path("/s"), "embed", "1-ab").as_posix()
        '/s/ledger/embed/1-ab'
    """
    return root / LEDGER_DIR / pass_name / layer_id


def current_path(root: Path, pass_name: str) -> Path:
    """`<root>/current/<pass>.json`: the pointer naming a pass's current layer.

    Example:
        >>> current_path(Path("/s"), "tags").as_posix()
        '/s/current/tags.json'
    """
    return root / CURRENT_DIR / f"{pass_name}.json"


def not_writable(root: Path, exc: OSError) -> StoreError:
    """The error every command gives when the store at `root` cannot be written.

    Example:
        >>> print(not_writable(Path("/s"), OSError(errno.EROFS, "Read-only file system")))
        the store /s is not writable: Read-only file system
          fix: fix its permissions or choose another store with --store
    """
    return StoreError(
        f"the store {root} is not writable: {exc.strerror or exc}",
        hint="fix its permissions or choose another store with --store",
    )


def write_error(path: Path, exc: OSError) -> StoreError:
    """The StoreError for a failed write of `path`, with the fix that fits the cause: a
    store that cannot be written gets the same message from every command.

    Example:
        >>> write_error(Path("/x/y"), OSError(errno.ENOSPC, "No space left on device")).hint
        'free some disk space or choose another store with --store'
    """
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        root = next((p for p in path.parents if (p / "lamina.toml").is_file()), None)
        if root is not None:
            return not_writable(root, exc)
        return StoreError(
            f"cannot write {path}: {exc.strerror or exc}",
            hint=f"make {path.parent} writable",
        )
    return StoreError(
        f"cannot write {path}: {exc.strerror or exc}",
        hint="free some disk space or choose another store with --store",
    )


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to `path` through a temporary file and a rename, so a crash leaves
    either the old file or the new one, never half of one. `fsync=False` skips the flush
    to disk, for files that can be made again (thumbnails): after a power cut such a file
    may be empty, never half-written by another.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x.json"
        >>> atomic_write_bytes(p, b"{}"); p.read_bytes()
        b'{}'
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from exc


def atomic_write_json(path: Path, obj: Any) -> None:
    """`atomic_write_bytes` for a JSON document (sorted keys, UTF-8, indented)."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    """Write an Arrow table as Parquet at `path` atomically (zstd-compressed)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from exc
