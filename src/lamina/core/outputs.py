"""Files a user names for lamina to write (`-o`, `run_dir`): one rule, checked before any
work, for every command that writes one.

An output path is refused when it is:

1. **a recorded file**: any file of the store's `files` table (by path, or the same file
   reached another way: a link, a hard link), whatever the flags;
2. **inside a source** (the sources the store has scanned, plus any the caller names),
   by the path as given and by its real path, unless `force_into_source` (the user's
   `--force-into-source`; XMP sidecars are made elsewhere and need no flag);
3. **inside the store**, except under `<store>/exports/` and `<store>/report/`: the
   store's own tables are never an output;
4. **an existing file lamina did not write**, unless `force` (`--force`). A file lamina
   wrote is one under `<store>/exports/`, or one whose size and modification time are
   those `record_output` noted in `<store>/ledger/outputs.json` when lamina wrote it, so
   re-running a command replaces its own output without `--force`.

Example:
    >>> out = check_output_path(store, "to_review.txt")  # doctest: +SKIP
    >>> write_output(store, out, "a.jpg\\n")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.remote import is_url
from lamina.core.store import LEDGER_DIR, Store, add_macros

# What an output check takes for "the store": one, several (a command that writes for
# two), or None (no store involved).
StoreOrStores = Store | Sequence[Store | None] | None

STORE_OUTPUT_DIRS = ("exports", "report")
RECORD = Path(LEDGER_DIR) / "outputs.json"
FORCE_HINT = "choose a new file name, or pass --force to replace it"


class OutputError(LaminaError):
    """An output path lamina refuses to write (the message says which rule)."""


def _stores(store: StoreOrStores) -> list[Store]:
    if store is None:
        return []
    if isinstance(store, Sequence):
        return [s for s in store if s is not None]
    return [store]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _both(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The path as given (absolute, `..` folded) and its real path (links followed)."""
    given = Path(os.path.abspath(Path(path).expanduser()))
    return given, given.resolve()


def _files(store: Store, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Rows of `sql` over the store's `files` table (none when it has no table yet)."""
    import duckdb

    parts = store.table_files("files")
    if not parts:
        return []
    con = add_macros(duckdb.connect())
    try:
        listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parts)
        con.execute(f"create view files as select * from read_parquet([{listing}])")
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _sources(store: Store) -> list[str]:
    return [r[0] for r in _files(store, "select distinct source from files")]


def _recorded(store: Store, given: Path, real: Path) -> str | None:
    """The recorded file `given` is (by path, or by identity when it exists), or None."""
    import duckdb

    rows = _files(
        store,
        "select file_path(source, rel_path) from files where file_path(source, rel_path) in (?, ?)",
        [str(given), str(real)],
    )
    if rows:
        return str(rows[0][0])
    try:
        st = real.stat()
    except OSError:
        return None
    # The same file under another path (a linked folder, a hard link): same size first,
    # then the same device and inode.
    try:
        candidates = _files(
            store,
            "select file_path(source, rel_path) from files where size = ? and status <> 'missing'",
            [st.st_size],
        )
    except duckdb.Error:  # a files table without sizes (written by hand): every row
        candidates = _files(store, "select file_path(source, rel_path) from files")
    for (candidate,) in candidates:
        with contextlib.suppress(OSError):
            other = os.stat(candidate)
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                return str(candidate)
    return None


def _noted(store: Store) -> dict[str, Any]:
    try:
        return json.loads((store.root / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _ours(stores: list[Any], real: Path) -> bool:
    """Whether the existing file at `real` is lamina's own output (see the module doc)."""
    for store in stores:
        root = store.root.resolve()
        if _inside(real, root / "exports"):
            return True
        noted = _noted(store).get(str(real))
        if noted:
            with contextlib.suppress(OSError):
                st = real.stat()
                if [st.st_size, st.st_mtime_ns] == [noted.get("size"), noted.get("mtime_ns")]:
                    return True
    return False


def check_output_path(
    store: StoreOrStores,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    force_into_source: bool = False,
    folder: bool = False,
    sources: Iterable[str | os.PathLike[str]] = (),
    fix: str = FORCE_HINT,
) -> Path:
    """The real path to write `path` to, when the rules of the module docstring allow it;
    an `OutputError` naming the rule and the fix otherwise. `store`: a Store, several, or
    None. `folder`: the output is a folder lamina fills (the report, `run_dir`), whose
    own files are checked when written. `fix`: the hint for an existing file.

    Example:
        >>> check_output_path(store, "/photos/a.jpg")  # doctest: +SKIP
        OutputError: /photos/a.jpg is a file lamina recorded (...); ...
    """
    stores = _stores(store)
    given, real = _both(path)
    kind = "folder" if folder else "file"
    if folder and real.exists() and not real.is_dir():
        raise OutputError(f"{given} is a file, not a folder", hint="name a folder")
    if not folder and real.is_dir():
        raise OutputError(f"{given} is a folder", hint="name a file to write, e.g. out.csv")
    for s in stores:
        for root in {s.root.absolute(), s.root.resolve()}:
            for p in (given, real):
                if not _inside(p, root):
                    continue
                rel = p.relative_to(root)
                if not rel.parts or rel.parts[0] not in STORE_OUTPUT_DIRS:
                    raise OutputError(
                        f"{given} lies inside the store {s.root}, among its own files",
                        hint=f"write it outside the store, or under {s.root / 'exports'}",
                    )
    if not folder:
        for s in stores:
            recorded = _recorded(s, given, real)
            if recorded is not None:
                raise OutputError(
                    f"{given} is a file lamina recorded ({recorded}); lamina never writes "
                    "over a recorded file",
                    hint="choose another output path",
                )
    if not force_into_source:
        named = [str(x) for x in sources] + [src for s in stores for src in _sources(s)]
        for src in named:
            if is_url(src):  # a remote source holds no local path
                continue
            roots = _both(src)
            if any(_inside(p, r) for p in (given, real) for r in roots):
                raise OutputError(
                    f"the output {kind} {given} lies inside the source {src}; lamina never "
                    "writes inside a source",
                    hint="choose a path outside it (or pass --force-into-source if you "
                    "really mean it)",
                )
    if not folder and not force and real.exists() and not _ours(stores, real):
        raise OutputError(f"{given} exists and was not written by lamina", hint=fix)
    return real


def record_output(store: StoreOrStores, path: str | os.PathLike[str]) -> None:
    """Note that lamina wrote `path` (its size and time), so the next run may replace
    it without --force. Best effort: a store that cannot be written keeps no note.

    Example:
        >>> record_output(store, "/home/ana/to_review.txt")  # doctest: +SKIP
    """
    from lamina.core.store import atomic_write_json

    stores = _stores(store)
    if not stores:
        return
    real = Path(path).resolve()
    with contextlib.suppress(OSError, LaminaError):
        st = real.stat()
        noted = _noted(stores[0])
        noted[str(real)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        atomic_write_json(stores[0].root / RECORD, noted)


def write_output(
    store: StoreOrStores,
    path: str | os.PathLike[str],
    data: str | bytes,
    *,
    force: bool = False,
    force_into_source: bool = False,
) -> Path:
    """Check `path` (`check_output_path`), write `data` to it atomically (a temporary file
    beside it, then a rename) and note it (`record_output`). Returns the path written.

    Example:
        >>> write_output(store, "ids.txt", "5d41402abc4b2a76b9719d911017c592\\n")  # doctest: +SKIP
        PosixPath('/home/ana/ids.txt')
    """
    real = check_output_path(store, path, force=force, force_into_source=force_into_source)
    raw = data.encode() if isinstance(data, str) else data
    with staged_output(real) as tmp:
        tmp.write_bytes(raw)
    record_output(store, real)
    return real


@contextlib.contextmanager
def staged_output(path: Path, *, hint: str = "choose another output path") -> Iterator[Path]:
    """A temporary file beside `path` for the block to write, renamed onto `path` when the
    block ends: a reader never sees half an output. On failure the temporary file is
    removed, and an OSError becomes an OutputError naming `path` and `hint`.

    Example:
        >>> with staged_output(Path("out.csv")) as tmp:
        ...     _ = tmp.write_text("a,b")
        >>> Path("out.csv").read_text()
        'a,b'
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", hint=hint) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
