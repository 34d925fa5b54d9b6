"""The store: the one folder lamina writes to, and how every table in it is read.

Layout (see docs/ARCHITECTURE.md)::

    <store>/lamina.toml                 schema version, chunk size (fixed at init)
    <store>/tables/<table>/*.parquet    files, images, file_events, meta
    <store>/layers/<pass>/<ver>-<cfg>/part-<chunk>.parquet   (a global pass: part-global)
    <store>/ledger/<pass>/<ver>-<cfg>/chunk-<chunk>.json     (a global pass: global.json)
    <store>/current/<pass>.json         which layer of the pass is current (see below)
    <store>/runs/<run_id>/run.json
    <store>/tmp/                        staging for atomic writes and commits

Every write is a temporary file renamed into place; a change that spans several files
(a scan updating files, images and file_events together) is a *commit*: the new files are
staged, a COMMIT.json redo record is written, then they are renamed into place. A commit
cut short by a crash is rolled forward the next time the store is opened, so readers see
either all of it or none of it.

One command writes at a time: it holds the write lock (`<store>/lock`, an flock the OS
drops when the holder dies) and writes a fresh random token into the file. Chunk commits
are fenced by that token (`fenced_commit`): a worker of a killed command that is still
running cannot commit after a new command took the lock.

Every name of that layout is spelled in `lamina.core.layout` and nowhere else
(`layer_path`, `ledger_path`, `GLOBAL_PART`, `GLOBAL_RECORD`, `current_path`, re-exported
here): other modules ask for paths.

The *current* layer of a pass (what `sql` and `table` call `<pass>`) is named by a pointer
record, `current/<pass>.json`, written atomically by the runner when a run finishes the
layer (`Store.set_current`), so copying a store or touching its files never changes the
answer. A pass without a pointer (a store written before pointers, format 1) falls back
to the old rule: its layer whose part was written last.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from lamina.core.errors import StoreError
from lamina.core.layout import (  # re-exported: the store's own names, asked of it
    CURRENT_DIR,
    GLOBAL_PART,
    GLOBAL_RECORD,
    LAYERS_DIR,
    LEDGER_DIR,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    current_path,
    layer_path,
    ledger_path,
    not_writable,
    write_error,
)
from lamina.core.remote import check_url, is_url

__all__ = [
    "GLOBAL_PART",
    "GLOBAL_RECORD",
    "LAYERS_DIR",
    "LEDGER_DIR",
    "SCHEMA_VERSION",
    "TABLE_NAMES",
    "UNDECODABLE",
    "LayerInfo",
    "LockLostError",
    "Store",
    "add_macros",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "checkout_dir",
    "fenced_commit",
    "find_store",
    "layer_path",
    "ledger_path",
    "lock_token",
    "not_writable",
    "resolve_store_path",
    "write_error",
]

if TYPE_CHECKING:
    import duckdb

STORE_DIRNAME = ".lamina"
# The store's format, `schema_version` in lamina.toml. 1: the current layer was the one
# written last (by file time); 2: named by `current/<pass>.json`. A lamina opens every
# format up to its own (a format-1 store falls back to file times where it has no
# pointer) and refuses a newer one.
SCHEMA_VERSION = 2
DEFAULT_CHUNK_SIZE = 1024
ENV_STORE = "LAMINA_STORE"

# Tables with several parts (appended by runs) vs one part (rewritten by a commit).
TABLE_NAMES = (
    "files",
    "images",
    "file_events",
    "meta",
    "approvals",
    "decode_failures",
    # A collection's items under its layout (lamina.manifest.items), rewritten as one commit.
    "items",
    "item_files",
    "item_meta",
    "decisions",
    # lamina train (lamina.learning): frozen splits and the experiments table.
    "splits",
    "experiments",
)
# Images whose pixels do not decode (lamina.manifest.decode_failures): the `files` and
# `images` views show what the scan called `ok` as `broken / undecodable` while an image's
# latest event there is `failed`.
UNDECODABLE = "decode_failures"
UNDECODABLE_VIEW = """
with undecodable as (
  select image_id, detail from (
    select * from read_parquet([{failures}], union_by_name=true)
    qualify row_number() over (partition by image_id order by recorded desc, run_id desc) = 1
  ) where event = 'failed'
)
select t.* replace (
  case when u.image_id is null then t.status else 'broken' end as status,
  case when u.image_id is null then t.reason else 'undecodable' end as reason{detail})
from read_parquet([{parts}], union_by_name=true) t
left join undecodable u on t.image_id = u.image_id and t.status = 'ok'
"""
LOCK_FILE = "lock"  # the write lock: flock, plus the holder's name and token
FENCE_FILE = "fence"  # the commit fence: flock, shared by commits, exclusive at a handover
FENCE_WAIT_S = 60.0  # how long a new lock holder waits for an old commit in flight


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a pass, as `Store.layers` lists it.

    `config` and `written` come from the run record and ledger that wrote it (None when
    they are gone, as in a store assembled by hand); `current` says whether it is the
    layer `sql` and `table` call `<pass>`.
    """

    pass_name: str
    layer_id: str
    rows: int
    run_id: str | None
    written: str | None
    current: bool
    path: Path
    config: dict[str, Any] | None = None

    @property
    def version(self) -> str:
        """The pass version part of the layer id ("1" of "1-ab12cd34")."""
        return self.layer_id.split("-", 1)[0]

    @property
    def config_hash(self) -> str:
        """The config hash part of the layer id ("ab12cd34" of "1-ab12cd34")."""
        return self.layer_id.split("-", 1)[-1]


# SQL macros of every connection `Store.connect` makes (and `add_macros` adds to others):
# `file_path(source, rel_path)` is a manifest file's absolute path, spelled once here.
SQL_MACROS = (
    "create or replace temp macro file_path(source, rel_path) as source || '/' || rel_path",
)


def add_macros(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Define lamina's SQL macros (`SQL_MACROS`) on a DuckDB connection; returns it.

    Example:
        >>> import duckdb
        >>> add_macros(duckdb.connect()).execute("select file_path('/p', 'a/b.jpg')").fetchone()
        ('/p/a/b.jpg',)
    """
    for macro in SQL_MACROS:
        con.execute(macro)
    return con


class LockLostError(StoreError):
    """A chunk was about to be committed for a command that no longer holds the lock."""


def find_store(start: Path | None = None) -> Path | None:
    """The nearest `.lamina/` store in `start` or its parents, the way git finds `.git`.

    Example:
        >>> find_store(Path("/")) is None
        True
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / STORE_DIRNAME
        if (candidate / "lamina.toml").is_file():
            return candidate
    return None


def checkout_dir(url: str) -> Path:
    """The local working copy of the store kept at `url` (an object store; see
    `lamina.core.objectstore`): a folder under `$XDG_CACHE_HOME/lamina/stores` (default
    `~/.cache`), named after the URL.

    Example:
        >>> checkout_dir("s3://bucket/lamina-store").name
        'bucket_lamina-store-d7a0adf0bc6c'
    """
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    url = check_url(url)
    scheme, _, rest = url.partition("://")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", rest).strip("_")[:60] or scheme
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return Path(cache) / "lamina" / "stores" / f"{readable}-{digest}"


def resolve_store_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the store is: `--store`, else `$LAMINA_STORE`, else the nearest `.lamina/`,
    else `./.lamina` (created on first write).

    Example:
        >>> resolve_store_path("/tmp/s").as_posix()
        '/tmp/s'
    """
    if explicit:
        if is_url(str(explicit)):  # a store on an object store: its local working copy
            return checkout_dir(str(explicit))
        return Path(explicit).expanduser().absolute()
    if os.environ.get(ENV_STORE):
        if is_url(os.environ[ENV_STORE]):
            return checkout_dir(os.environ[ENV_STORE])
        return Path(os.environ[ENV_STORE]).expanduser().absolute()
    return find_store() or (Path.cwd() / STORE_DIRNAME).absolute()


def lock_token(root: Path) -> str | None:
    """The token of the command holding (or that last held) the store's write lock.

    Example:
        >>> lock_token(Path("/nonexistent")) is None
        True
    """
    try:
        text = (root / LOCK_FILE).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("token "):
            return line.removeprefix("token ").strip()
    return None


@contextlib.contextmanager
def fenced_commit(root: Path, token: str | None) -> Iterator[None]:
    """Commit (write a part and its ledger record) only while the command that asked for
    it still holds the store's write lock, known by its `token`; else `LockLostError`.

    The commit holds the fence shared, and a new lock holder takes it exclusively while it
    writes its token. So a commit either ends before the new holder reads what is done, or
    sees the new token and writes nothing. No token (a caller that holds no lock, as in
    tests) commits unfenced.

    Example:
        >>> with fenced_commit(store.root, store.lock_token):  # doctest: +SKIP
        ...     atomic_write_parquet(part, table)
    """
    if token is None:
        yield
        return
    try:
        fd = os.open(root / FENCE_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_error(root / FENCE_FILE, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if lock_token(root) != token:
            raise LockLostError(
                f"the store {root} is no longer locked by the command that started this "
                "work (it was killed, or its lock was taken): nothing was written",
                hint="run the command again; it continues from what was committed",
            )
        yield
    finally:
        os.close(fd)  # releases the fence


# Descriptors of the write locks this process holds. A process forked while one is held
# (the scan's workers, `LocalExecutor(fork=True)`) shares the lock: a flock belongs to
# the open file, so the lock would outlive a killed holder until its workers die too. The
# child lets go of its copy at once: /dev/null takes the descriptor's place (closing it
# could let a later file reuse the number, which the holder's file object would close).
_HELD_LOCKS: set[int] = set()


def _drop_held_locks() -> None:
    if not _HELD_LOCKS:
        return
    null = os.open(os.devnull, os.O_RDWR)
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.dup2(null, fd)
    os.close(null)
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_held_locks)


class Store:
    """A lamina store folder. Open with `Store.open(path)` or `lamina.open(path)`.

    Example:
        >>> import tempfile
        >>> store = Store.open(Path(tempfile.mkdtemp()) / "s", create=True)
        >>> store.chunk_size
        1024
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock_token: str | None = None  # set while this object holds the write lock
        settings = tomllib.loads((root / "lamina.toml").read_text())
        self.schema_version = int(settings.get("schema_version", SCHEMA_VERSION))
        self.chunk_size = int(settings.get("chunk_size", DEFAULT_CHUNK_SIZE))
        if self.schema_version > SCHEMA_VERSION:
            raise StoreError(
                f"the store {root} has format (schema_version) {self.schema_version}, "
                f"written by a newer lamina; this lamina reads formats up to {SCHEMA_VERSION}",
                hint="upgrade lamina (pip install -U lamina) to open it",
            )

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Store:
        """Open the store at `path` (resolved as in `resolve_store_path`), creating it when
        `create` is true; roll forward any commit a crash cut short."""
        root = resolve_store_path(path)
        if not (root / "lamina.toml").is_file():
            if not create:
                raise StoreError(
                    f"no lamina store at {root}",
                    hint="run `lamina scan SOURCE` to create one, or pass --store PATH",
                )
            cls._init(root, chunk_size)
        store = cls(root)
        store.recover()
        return store

    @staticmethod
    def _init(root: Path, chunk_size: int) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            for sub in ("tables", LAYERS_DIR, LEDGER_DIR, CURRENT_DIR, "runs", "tmp", "cache"):
                (root / sub).mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store at {root}: {exc.strerror or exc}",
                hint="choose a writable folder with --store or LAMINA_STORE",
            ) from exc
        text = (
            "# lamina store settings (fixed when the store was made)\n"
            f"schema_version = {SCHEMA_VERSION}\nchunk_size = {chunk_size}\n"
        )
        atomic_write_bytes(root / "lamina.toml", text.encode())

    # -- paths ---------------------------------------------------------------------------

    def table_dir(self, name: str) -> Path:
        return self.root / "tables" / name

    def layer_dir(self, pass_name: str, layer_id: str) -> Path:
        """The folder of a layer's parts (it may not exist yet)."""
        return layer_path(self.root, pass_name, layer_id)

    def ledger_dir(self, pass_name: str, layer_id: str) -> Path:
        """The folder of a layer's ledger records (it may not exist yet)."""
        return ledger_path(self.root, pass_name, layer_id)

    def global_part(self, pass_name: str, layer_id: str) -> Path:
        """The one part file of a global pass's layer (it may not exist yet).

        Example:
            >>> store.global_part("tags", "1-ab12cd34").name  # doctest: +SKIP
            'part-global.parquet'
        """
        return self.layer_dir(pass_name, layer_id) / GLOBAL_PART

    def global_record(self, pass_name: str, layer_id: str) -> Path:
        """The ledger record of a global pass's layer (`inputs`, `rows`, `run_id`, ...)."""
        return self.ledger_dir(pass_name, layer_id) / GLOBAL_RECORD

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def check_writable(self) -> None:
        """Fail early, naming the store, when it cannot be written.

        Example:
            >>> store.check_writable()  # doctest: +SKIP
        """
        probe = self.tmp_dir / f".write-test-{uuid.uuid4().hex[:8]}"
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise self.not_writable(exc) from exc

    def not_writable(self, exc: OSError) -> StoreError:
        """The error every command gives when the store cannot be written."""
        return not_writable(self.root, exc)

    # -- locking -------------------------------------------------------------------------

    @contextlib.contextmanager
    def write_lock(self, command: str) -> Iterator[None]:
        """Hold the store's write lock; a second writer is refused, not queued.

        The OS drops the lock when the holder dies, so a killed run never leaves it stuck.
        While held, `self.lock_token` is a fresh random token, also written into the lock
        file, which `fenced_commit` checks before every chunk commit.
        """
        path = self.root / LOCK_FILE
        try:
            fh = open(path, "a+")  # noqa: SIM115 - held for the whole block
        except OSError as exc:
            raise self.not_writable(exc) from exc
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                lines = fh.read().strip().splitlines()
                holder = lines[0] if lines else "another lamina command"
                raise StoreError(
                    f"the store {self.root} is busy: {holder} is writing to it",
                    hint="wait for it to finish (a killed command releases it at once)",
                ) from None
            token = secrets.token_hex(8)
            # A worker of a killed holder may be committing right now: wait for it, then
            # publish the new token, after which such a worker's commits are refused.
            with self._fence_exclusive():
                fh.seek(0)
                fh.truncate()
                fh.write(f"`lamina {command}` (pid {os.getpid()})\ntoken {token}\n")
                fh.flush()
            self.lock_token = token
            _HELD_LOCKS.add(fh.fileno())
            yield
        finally:
            _HELD_LOCKS.discard(fh.fileno())
            self.lock_token = None
            fh.close()

    @contextlib.contextmanager
    def _fence_exclusive(self) -> Iterator[None]:
        path = self.root / FENCE_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self.not_writable(exc) from exc
        try:
            deadline = time.monotonic() + FENCE_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"a process of an earlier lamina command is still committing "
                            f"to {self.root} (it holds {path})",
                            hint=f"end it (`fuser -v {path}` names it), then run again",
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    # -- multi-file commits ----------------------------------------------------------------

    def commit(self, name: str, staged: dict[Path, Path]) -> None:
        """Move several staged files into place as one commit (see module docstring).

        `staged` maps each destination path in the store to a file already written under
        `self.tmp_dir`.
        """
        commit_dir = self.tmp_dir / f"commit-{name}"
        record = {str(dest): str(src) for dest, src in staged.items()}
        atomic_write_json(commit_dir / "COMMIT.json", record)
        self._apply_commit(commit_dir)

    def staging_dir(self, name: str) -> Path:
        """A fresh folder under tmp/ for files that a later `commit(name, …)` moves."""
        path = self.tmp_dir / f"commit-{name}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def _apply_commit(self, commit_dir: Path) -> None:
        record = json.loads((commit_dir / "COMMIT.json").read_text())
        for dest, src in record.items():
            if Path(src).exists():  # already moved when rolling forward a cut-short commit
                Path(dest).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)
        shutil.rmtree(commit_dir, ignore_errors=True)

    def recover(self) -> None:
        """Roll forward commits cut short by a crash.

        Staging without a COMMIT.json is left alone: it may belong to a run still writing
        it, and nothing reads it (a dead run's staging is cleared when its name is reused).
        """
        if not self.tmp_dir.is_dir():
            return
        for entry in sorted(self.tmp_dir.glob("commit-*/COMMIT.json")):
            with contextlib.suppress(OSError):
                self._apply_commit(entry.parent)

    # -- reading -------------------------------------------------------------------------

    def table_files(self, name: str) -> list[Path]:
        """The Parquet files holding table or layer `name` (empty when it has none); for a
        map pass's layer, its committed parts (see `lamina.core.layers`)."""
        if name in TABLE_NAMES:
            folder = self.table_dir(name)
            return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
        from lamina.core.layers import readable_parts

        layer = self.current_layer_dir(name)
        return readable_parts(layer) if layer is not None else []

    def layer_dirs(self, pass_name: str) -> list[Path]:
        """Every version/config of a pass's layer that has a part: by the time their parts
        were written, except that the current layer (see `current_layer_dir`) comes last.

        Example:
            >>> [d.name for d in store.layer_dirs("embed")]  # doctest: +SKIP
            ['1-1a2b3c4d', '1-9f8e7d6c']
        """
        base = self.root / LAYERS_DIR / pass_name
        if not base.is_dir():
            return []
        dirs = [d for d in base.iterdir() if d.is_dir() and any(d.glob("part-*.parquet"))]
        dirs.sort(key=lambda d: (max(p.stat().st_mtime_ns for p in d.glob("*.parquet")), d.name))
        pointed = self.current_pointer(pass_name)
        if pointed is not None:
            current = self.layer_dir(pass_name, pointed)
            if current in dirs:
                dirs.remove(current)
                dirs.append(current)
        return dirs

    def current_pointer(self, pass_name: str) -> str | None:
        """The layer id `current/<pass>.json` names, or None when there is no pointer (a
        pass never run since pointers, or a damaged record)."""
        try:
            record = json.loads(current_path(self.root, pass_name).read_text())
        except (OSError, ValueError):
            return None
        layer = record.get("layer") if isinstance(record, dict) else None
        return layer if isinstance(layer, str) and layer else None

    def current_layer_dir(self, pass_name: str) -> Path | None:
        """The current layer of `pass_name` (what `sql` calls `<pass_name>`): the one its
        pointer names; without a pointer (an older store), the one written last.

        Example:
            >>> store.current_layer_dir("tags").name  # doctest: +SKIP
            '1-ab12cd34'
        """
        dirs = self.layer_dirs(pass_name)
        return dirs[-1] if dirs else None

    def set_current(self, pass_name: str, layer_id: str, run_id: str | None = None) -> None:
        """Make `layer_id` the current layer of `pass_name` (one atomic write). The runner
        calls it when a run finishes a layer, under the store's write lock.

        Example:
            >>> store.set_current("tags", "1-ab12cd34", run.run_id)  # doctest: +SKIP
        """
        from lamina.core.ledger import utc_now

        record = {"pass": pass_name, "layer": layer_id, "run_id": run_id, "set": utc_now()}
        atomic_write_json(current_path(self.root, pass_name), record)

    def layer_names(self) -> list[str]:
        """The passes that have at least one layer with a part, sorted.

        Example:
            >>> store.layer_names()
            ['embed', 'scan']
        """
        base = self.root / LAYERS_DIR
        if not base.is_dir():
            return []
        return sorted(d.name for d in base.iterdir() if d.is_dir() and self.layer_dirs(d.name))

    def layers(self, name: str | None = None) -> list[LayerInfo]:
        """Every layer (of pass `name`, or of every pass) with what wrote it: rows, run id,
        the time of its last commit, the config from its run record, and whether it is the
        current one. Oldest first per pass, the current one last.

        Example:
            >>> [(i.layer_id, i.current) for i in store.layers("embed")]  # doctest: +SKIP
            [('1-1a2b3c4d', False), ('1-9f8e7d6c', True)]
        """
        names = self.layer_names() if name is None else [self._known_pass(name)]
        infos = []
        for pass_name in names:
            dirs = self.layer_dirs(pass_name)
            for folder in dirs:
                infos.append(self._layer_info(pass_name, folder, current=folder == dirs[-1]))
        return infos

    def layer(
        self,
        name: str,
        *,
        version: str | None = None,
        config: Mapping[str, Any] | str | None = None,
    ) -> LayerInfo:
        """One layer of pass `name`: the current one, or the one of `version` (default:
        the pass's version now) and `config` (a config dict, as the pass takes it, or a
        config hash). An unknown pass, version or config is an error listing what exists.

        Example:
            >>> store.layer("embed", config={"model": "efficientnet_lite0"}).rows  # doctest: +SKIP
            312
        """
        self._known_pass(name)
        dirs = self.layer_dirs(name)
        if version is None and config is None:
            return self._layer_info(name, dirs[-1], current=True)
        have = [d.name for d in dirs]
        if config is None:
            matches = [d for d in dirs if d.name.split("-", 1)[0] == str(version)]
            if not matches:
                versions = sorted({n.split("-", 1)[0] for n in have})
                raise StoreError(
                    f"the store {self.root} has no layer of {name!r} at version {version!r} "
                    f"(versions: {', '.join(versions)})",
                    hint=f"layers of {name}: {', '.join(have)}",
                )
            return self._layer_info(name, matches[-1], current=matches[-1] == dirs[-1])
        if isinstance(config, str):
            digest, ver = config, version
        else:
            from lamina.core.passes import get_pass

            instance = get_pass(name, dict(config))
            digest, ver = instance.config_hash, version or instance.version
        wanted = [n for n in have if n.split("-", 1)[-1] == digest]
        if ver is not None:
            wanted = [n for n in wanted if n.split("-", 1)[0] == str(ver)]
        if not wanted:
            label = f"{ver}-{digest}" if ver is not None else f"config hash {digest}"
            raise StoreError(
                f"the store {self.root} has no layer {label} of {name!r} "
                f"(layers: {', '.join(have)})",
                hint=f"run the {name} pass with that config, or pick one of its layers",
            )
        folder = self.layer_dir(name, wanted[-1])
        return self._layer_info(name, folder, current=folder == dirs[-1])

    def read_layer(
        self,
        name: str,
        *,
        version: str | None = None,
        config: Mapping[str, Any] | str | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """A layer's rows (each key once), chosen as `layer` chooses it.

        Example:
            >>> store.read_layer("embed", config={"model": "efficientnet_lite0"})  # doctest: +SKIP
        """
        from lamina.core.layers import read_layer

        info = self.layer(name, version=version, config=config)
        table = read_layer(info.path, columns)
        if table is None:  # parts removed since `layer` looked
            raise StoreError(f"the layer {name}/{info.layer_id} has no part left")
        return table

    def _known_pass(self, name: str) -> str:
        """`name`, when the store has a layer of that pass; else an error naming those
        it has."""
        if not isinstance(name, str) or not self.layer_dirs(name):
            have = ", ".join(self.layer_names()) or "none yet"
            raise StoreError(
                f"the store {self.root} has no layer of the pass {name!r} (passes with "
                f"layers: {have})",
                hint="run the pass first (`lamina run`, or its own command)",
            )
        return name

    def _layer_info(self, pass_name: str, folder: Path, *, current: bool) -> LayerInfo:
        from lamina.core.layers import readable_parts

        parts = readable_parts(folder)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        record = self._last_record(pass_name, folder.name)
        run_id = record.get("run_id")
        config = record.get("config")
        if not isinstance(config, dict):  # a record written before configs were in it
            config = self._run_config(run_id, pass_name, folder.name)
        return LayerInfo(
            pass_name=pass_name,
            layer_id=folder.name,
            rows=rows,
            run_id=run_id,
            written=record.get("finished"),
            current=current,
            path=folder,
            config=config,
        )

    def _last_record(self, pass_name: str, layer_id: str) -> dict[str, Any]:
        """The layer's newest ledger record (by its `finished` time), or {}."""
        ledger = self.ledger_dir(pass_name, layer_id)
        best: dict[str, Any] = {}
        for path in sorted(ledger.glob("*.json")) if ledger.is_dir() else ():
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and str(record.get("finished") or "") >= str(
                best.get("finished") or ""
            ):
                best = record
        return best

    def _run_config(
        self, run_id: str | None, pass_name: str, layer_id: str
    ) -> dict[str, Any] | None:
        """The config a run record gives for this layer (`run_passes` records each pass's
        config and layer), or None."""
        if not run_id:
            return None
        try:
            record = json.loads((self.run_dir(run_id) / "run.json").read_text())
        except (OSError, ValueError):
            return None
        passes = (record.get("config") or {}).get("passes") or {}
        for key, entry in passes.items() if isinstance(passes, dict) else ():
            named = key == pass_name or key.startswith(f"{pass_name}/")
            if named and isinstance(entry, dict) and entry.get("layer") == layer_id:
                config = entry.get("config")
                return config if isinstance(config, dict) else None
        return None

    def available_tables(self) -> list[str]:
        """Names of every table and layer that has data."""
        names = [n for n in TABLE_NAMES if self.table_files(n)]
        # A table's name is never also a layer's view (a stray layers/<table>/ is ignored).
        names += [n for n in self.layer_names() if n not in TABLE_NAMES]
        if any(self.root.glob("runs/*/run.json")):
            names.append("runs")
        return names

    def view_files(self) -> dict[str, list[Path]]:
        """The files behind each view `connect` makes: table and layer parts, run records.

        Example:
            >>> sorted(store.view_files())
            ['embed', 'file_events', 'files', 'images', 'runs', 'scan']
        """
        views: dict[str, list[Path]] = {}
        for name in self.available_tables():
            files = (
                sorted(self.root.glob("runs/*/run.json"))
                if name == "runs"
                else self.table_files(name)
            )
            # A layer whose only parts are uncommitted (a chunk killed mid-commit) has no
            # view yet: a view over no files would fail every query of the connection.
            if files:
                views[name] = files
        return views

    def connect(
        self, *, sandbox: bool = False, allow_files: bool = False
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per table and layer, plus `runs`, and the
        macro `file_path(source, rel_path)` (a file's absolute path).

        The plain connection is a trusted API (for Python code the user writes): its SQL
        can read and write any file the process can. `sandbox=True` gives the connection
        for user text (`--where`, policies, `lamina sql`; see `lamina.core.sqlsafe`):
        only the store's own files are readable, nothing is installed or downloaded, and
        the settings are locked; `allow_files` keeps reading other files possible.

        Example:
            >>> con = store.connect()
            >>> con.sql("select status, count(*) from files group by 1").fetchall()
            [('ok', 4)]
        """
        import duckdb

        con = add_macros(duckdb.connect())
        # DuckDB spills big queries into `.tmp/` of the current folder, which may be a source.
        con.execute(f"SET temp_directory = '{_sq(str(self.tmp_dir / 'duckdb'))}'")
        views = self.view_files()
        for name, files in views.items():
            listing = ", ".join(f"'{_sq(str(f))}'" for f in files)
            if name == "runs":
                con.execute(
                    f"create view runs as select * from read_json_auto([{listing}], "
                    "union_by_name=true, maximum_object_size=67108864)"
                )
                continue
            failures = ", ".join(f"'{_sq(str(f))}'" for f in views.get(UNDECODABLE, []))
            if name in ("files", "images") and failures:
                detail = (
                    ",\n  case when u.image_id is null then t.detail else u.detail end as detail"
                )
                query = UNDECODABLE_VIEW.format(
                    failures=failures, parts=listing, detail=detail if name == "files" else ""
                )
            else:
                query = self._select_table(name)
            if name == "files" and views.get("item_files"):
                query = _with_item_sidecars(query, views["item_files"])
            con.execute(f'create view "{name}" as {query}')
        if "files" in views:
            # ImageFolder-style class labels: the name of each image's folder.
            con.execute(
                "create view folder_labels as select image_id, source, rel_path, folder, "
                "regexp_extract(folder, '[^/]+$') as label from files "
                "where image_id is not null and status <> 'missing' and folder <> ''"
            )
        if "item_files" in views and "item_meta" in views:
            # Each image with its item (the nearest above it) and its item's sidecar fields.
            con.execute(
                "create view image_meta as select f.image_id, f.source, f.rel_path, f.item_id, "
                "m.* exclude (source, item_id, rel_path), m.rel_path as sidecar_path "
                "from item_files f left join item_meta m using (source, item_id) "
                "where f.role = 'image'"
            )
        if sandbox:
            from lamina.core.sqlsafe import lock_down

            readable = [f for files in views.values() for f in files]
            lock_down(con, readable=readable, allow_files=allow_files)
        return con

    def _select_table(self, name: str) -> str:
        """The SELECT of table or layer `name`'s view: every row of its files, each key
        once in a map pass's layer (see `lamina.core.layers`)."""
        from lamina.core.layers import key_column, needs_dedup

        files = self.table_files(name)
        listing = ", ".join(f"'{_sq(str(f))}'" for f in files)
        if name in TABLE_NAMES or not needs_dedup(files[0].parent, files):
            return f"select * from read_parquet([{listing}], union_by_name=true)"
        # Not known to be free of duplicate keys: the first part by name holds each key.
        key = key_column(files).replace('"', '""')
        return (
            "select * exclude (lamina_part) from read_parquet("
            f"[{listing}], union_by_name=true, filename='lamina_part') "
            f'qualify "{key}" is null '
            f'or row_number() over (partition by "{key}" order by lamina_part) = 1'
        )

    def table(self, name: str) -> pa.Table:
        """Table or layer `name` as an Arrow table (`.to_pandas()` for pandas).

        Example:
            >>> lamina.open().table("files").to_pandas().value_counts("status").to_dict()
            {'ok': 4}
        """
        if name != "runs" and not self.table_files(name):
            have = ", ".join(self.available_tables()) or "none yet"
            raise StoreError(
                f"the store {self.root} has no table {name!r} (tables: {have})",
                hint="run `lamina scan SOURCE` first" if name in ("files", "images") else None,
            )
        return self.connect().sql(f'select * from "{name}"').to_arrow_table()

    def sql(self, query: str) -> pa.Table:
        """Run a DuckDB query over every table of the store and return Arrow.

        A trusted API, like `connect()`: the query may do anything DuckDB can (read and
        write files). Text from someone else goes through `lamina.core.sqlsafe` first, as
        `lamina sql` does.

        Example:
            >>> lamina.open().sql("select format, count(*) n from images group by 1 order by 1")
            pyarrow.Table
            format: string
            n: int64
            ----
            format: [["JPEG","PNG"]]
            n: [[3,1]]
        """
        return self.connect().sql(query).to_arrow_table()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"


def _with_item_sidecars(files_query: str, item_files: list[Path]) -> str:
    """The `files` view's query with the sidecar files of items (a plate's manifest.json,
    found by `lamina.manifest.items`) read as `metadata / item_sidecar` instead of junk.
    Folded in the view, as undecodable images are: `files.parquet` stays what the scan saw,
    and a changed layout changes the answer without a rescan."""
    parts = ", ".join(f"'{_sq(str(f))}'" for f in item_files)
    return (
        "select t.* replace (\n"
        "  case when s.rel_path is null or t.status <> 'junk' then t.status else 'metadata' end "
        "as status,\n"
        "  case when s.rel_path is null or t.status <> 'junk' then t.reason else 'item_sidecar' "
        "end as reason)\n"
        f"from ({files_query}) t\n"
        "left join (select distinct source, rel_path from read_parquet("
        f"[{parts}], union_by_name=true) where role = 'sidecar') s\n"
        "on t.source = s.source and t.rel_path = s.rel_path"
    )


def _sq(text: str) -> str:
    """Escape a string for a single-quoted SQL literal."""
    return text.replace("'", "''")
