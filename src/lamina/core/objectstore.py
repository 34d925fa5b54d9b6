"""A store kept on an object store (`--store s3://bucket/prefix`): immutable content-named
objects, and numbered commit manifests written with a conditional put.

An object store has no rename, so the local commit (stage, redo record, `os.replace`) does
not carry over. Instead the bucket holds a *history of snapshots*::

    <url>/objects/<sha256>              every file of the store, named by its content;
                                        written once, never changed
    <url>/commits/<n, 10 digits>.json   a snapshot: {relative path: [sha256, size]} of
                                        every file, and its parent commit

A commit uploads the objects it adds first, then writes its manifest `commits/<n+1>.json`
with a *conditional put* (S3 `If-None-Match: *`, fsspec's `mode="create"`), which fails
when that name exists. So:

* a snapshot is visible only once its manifest exists, and a manifest is one PUT, whole or
  absent: a writer killed before it (while uploading objects) leaves objects nobody names,
  and readers still see the previous commit;
* two writers that start from the same commit cannot both commit: the second's conditional
  put fails, and it stops with a clear error (nothing of it is visible).

Readers take the manifest with the highest number. Commands work on a local *working
copy* of the newest snapshot (`checkout_dir`, under the user's cache folder): `pull`
brings it up to date (downloading only objects it lacks, applied as one local commit),
the command reads and writes that local store exactly as any other (locks, fenced chunk
commits, roll-forward), and `push` publishes what it committed. The CLI does both around
every command given `--store URL`. A command killed midway publishes nothing; its
committed chunks stay in the working copy, and running it again resumes from them and
publishes the lot.

Protocols whose fsspec backend makes `mode="create"` a real conditional put, *tested
here*, can be written: `s3` (s3fs, against moto's server) and `memory` (one process).
Others (gs://, http(s)://) can be pulled (read) but not pushed. gcsfs (2024.12 on) sends
`ifGenerationMatch=0` for `mode="create"` (experimental, says gcsfs), but lamina has no
offline test of it (no GCS server that honours the precondition runs in the tests), so
gs:// stays read-only rather than untested (docs/scale.md, "Where the store can live").

Objects that no manifest names (a push killed or refused after its uploads) are found by
`unnamed_objects` and removed by `delete_unnamed` (`lamina gc`): only those older than a
grace period, so a writer's upload in flight is never taken.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.core.errors import StoreError
from lamina.core.layout import atomic_write_bytes, atomic_write_json
from lamina.core.remote import (
    check_url,
    filesystem,
    mtime_ns,
    protocol_of,
    remote_error,
    walk_remote,
)
from lamina.core.store import FENCE_FILE, LOCK_FILE, Store, checkout_dir

COMMITS = "commits"
OBJECTS = "objects"
STATE_FILE = "objectstore.json"  # in the working copy: the commit it holds, and hashes
# Never published: staging, the local lock and fence, the working copy's own state, and
# `cache/` (features and text caches any machine can make again).
LOCAL_ONLY = frozenset({"tmp", "cache", LOCK_FILE, FENCE_FILE, STATE_FILE})
# Protocols whose `pipe_file(..., mode="create")` is a conditional put (see module doc).
WRITABLE = frozenset({"s3", "s3a", "memory"})
_COMMIT_NAME = re.compile(r"^(\d{10})\.json$")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Commit:
    """One snapshot in the bucket: its number and files ({rel path: (sha256, size)})."""

    number: int
    files: dict[str, tuple[str, int]]


def _join(base: str, *names: str) -> str:
    """The key `names` below `base`, a path or URL; a URL of a filesystem's root
    ("memory://") keeps its "//".

    Example:
        >>> _join("memory://", "objects"), _join("s3://bucket/", "commits", "x.json")
        ('memory://objects', 's3://bucket/commits/x.json')
    """
    if base.endswith("://"):
        return base + "/".join(names)
    return "/".join([base.rstrip("/"), *names])


def _store_url(url: str) -> str:
    """`url` as `check_url` gives it, refused when it is an S3 URL that names no bucket
    (`s3://`: its keys would land in buckets named `commits` and `objects`)."""
    url = check_url(url)
    if protocol_of(url) in ("s3", "s3a") and not url.split("://", 1)[-1].strip("/"):
        raise StoreError(
            f"the store {url} names no bucket",
            hint="give a bucket, and a prefix below it if you like: s3://BUCKET or "
            "s3://BUCKET/PREFIX",
        )
    return url


def commits(url: str) -> list[int]:
    """The numbers of the commits in the bucket at `url`, oldest first.

    Example:
        >>> commits("memory://no-store-here")
        []
    """
    fs, base = filesystem(_store_url(url))
    folder = _join(base, COMMITS)
    try:
        fs.invalidate_cache()
        names = fs.ls(folder, detail=False) if fs.exists(folder) else []
    except Exception as exc:
        raise remote_error(url, exc) from exc
    found = (_COMMIT_NAME.match(str(n).rsplit("/", 1)[-1]) for n in names)
    return sorted(int(m.group(1)) for m in found if m)


def read_commit(url: str, number: int) -> Commit:
    """The manifest of commit `number` of the store at `url`."""
    fs, base = filesystem(check_url(url))
    path = _join(base, COMMITS, f"{number:010d}.json")
    try:
        record = json.loads(fs.cat_file(path))
        files = {str(k): (str(v[0]), int(v[1])) for k, v in record["files"].items()}
    except Exception as exc:
        raise StoreError(
            f"the commit {url}/{COMMITS}/{number:010d}.json cannot be read: {exc}",
            hint="check the endpoint and credentials; a manifest is written whole or not at all",
        ) from exc
    for rel, (sha, _size) in files.items():
        # The manifest comes from a bucket, maybe one someone else writes: a path that
        # could land outside the working copy, or a hash that is not one, is refused
        # before anything is downloaded.
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise StoreError(
                f"the commit {url}/{COMMITS}/{number:010d}.json names the path {rel!r}, "
                "which is not a plain relative path inside a store",
                hint="this manifest was not written by lamina: check who writes to that bucket",
            )
        if not _SHA256.fullmatch(sha):
            raise StoreError(
                f"the commit {url}/{COMMITS}/{number:010d}.json gives {rel!r} the hash "
                f"{sha!r}, which is not a SHA-256",
                hint="this manifest was not written by lamina: check who writes to that bucket",
            )
    return Commit(number, files)


def newest(url: str) -> Commit | None:
    """The newest commit of the store at `url` (what every reader sees), or None.

    Example:
        >>> newest("memory://no-store-here") is None
        True
    """
    numbers = commits(url)
    return read_commit(url, numbers[-1]) if numbers else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _state(root: Path) -> dict[str, Any]:
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {"commit": 0, "files": {}}
    return state if isinstance(state, dict) else {"commit": 0, "files": {}}


def local_files(root: Path, known: dict[str, Any] | None = None) -> dict[str, tuple[str, int]]:
    """Every publishable file of the working copy at `root`: {rel path: (sha256, size)}.
    A file whose size and mtime match `known` (the state's record) is not hashed again.

    Example:
        >>> local_files(Path("/nonexistent"))
        {}
    """
    known = known or {}
    out: dict[str, tuple[str, int]] = {}
    if not root.is_dir():
        return out
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/", 1)[0] in LOCAL_ONLY or not path.is_file():
            continue
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # an atomic write in flight
        st = path.stat()
        seen = known.get(rel)
        if seen and seen[1] == st.st_size and seen[2] == st.st_mtime_ns:
            out[rel] = (seen[0], st.st_size)
        else:
            out[rel] = (_sha256(path), st.st_size)
    return out


def _save_state(root: Path, url: str, number: int, files: dict[str, tuple[str, int]]) -> None:
    stamped = {}
    for rel, (sha, size) in files.items():
        try:
            stamped[rel] = [sha, size, (root / rel).stat().st_mtime_ns]
        except OSError:
            continue
    atomic_write_json(root / STATE_FILE, {"url": url, "commit": number, "files": stamped})


def pull(url: str, *, create: bool = False) -> Store:
    """The working copy of the store at `url`, brought up to its newest commit and opened.

    Only objects the copy lacks are downloaded, and they are moved into place as one local
    commit, so a local reader never sees half a pull. A copy with work not yet published
    on an older commit, while the bucket moved on, is refused (that work would be lost).
    `create`: a bucket prefix with no commit yet gives a new empty store (published by
    the first `push`).

    Example:
        >>> store = pull("s3://bucket/lamina-store")  # doctest: +SKIP
    """
    url = _store_url(url)
    if create and protocol_of(url) not in WRITABLE:
        raise _read_only(url)  # before the command does work it could never publish
    root = checkout_dir(url)
    head = newest(url)
    if head is None:
        if (root / "lamina.toml").is_file() or create:
            _check_bucket(url)
            return Store.open(root, create=create)
        raise StoreError(
            f"no lamina store at {url} (no {COMMITS}/ manifest there)",
            hint=f"run `lamina scan SOURCE --store {url}` to create one",
        )
    state = _state(root)
    if state.get("url") not in (None, url):
        raise StoreError(f"the working copy {root} belongs to {state['url']}, not {url}")
    if int(state.get("commit") or 0) == head.number and (root / "lamina.toml").is_file():
        return Store.open(root)
    have = local_files(root, state.get("files"))
    published = {k: (v[0], int(v[1])) for k, v in (state.get("files") or {}).items()}
    if have and have != published:
        raise StoreError(
            f"the working copy {root} has work not yet published on commit "
            f"{state.get('commit') or 0} of {url}, and the store there has moved on to "
            f"commit {head.number} (another machine published)",
            hint=f"publish nothing from here: move {root} aside and run again, which "
            "checks out the newest commit (then redo the work: it resumes there)",
        )
    fs, base = filesystem(url)
    if not (root / "lamina.toml").is_file():
        sha, _size = head.files["lamina.toml"]
        atomic_write_bytes(root / "lamina.toml", fs.cat_file(_join(base, OBJECTS, sha)))
        (root / "tmp").mkdir(exist_ok=True)
    store = Store(root)
    with store.write_lock("pull"):
        staging = store.staging_dir("pull")
        staged: dict[Path, Path] = {}
        try:
            for i, (rel, (sha, _size)) in enumerate(sorted(head.files.items())):
                if have.get(rel, ("",))[0] == sha:
                    continue
                tmp = staging / f"{i:08d}"
                fs.get_file(_join(base, OBJECTS, sha), str(tmp))
                staged[root / rel] = tmp
        except Exception as exc:
            raise remote_error(url, exc) from exc
        store.commit("pull", staged)
        for rel in set(have) - set(head.files):
            (root / rel).unlink(missing_ok=True)  # removed by the commit pulled
        _save_state(root, url, head.number, head.files)
    return Store.open(root)


def push(url: str) -> int | None:
    """Publish the working copy of the store at `url` as its next commit; the commit's
    number, or None when there was nothing new. See the module docstring for the order
    (objects, then the manifest by conditional put) and what a race or a kill leaves.

    Example:
        >>> push("s3://bucket/lamina-store")  # doctest: +SKIP
        3
    """
    url = check_url(url)
    protocol = protocol_of(url)
    root = checkout_dir(url)
    store = Store.open(root)
    with store.write_lock("push"):
        state = _state(root)
        parent = int(state.get("commit") or 0)
        files = local_files(root, state.get("files"))
        published = {k: (v[0], int(v[1])) for k, v in (state.get("files") or {}).items()}
        if parent and files == published:
            return None
        if protocol not in WRITABLE:
            raise _read_only(url)
        numbers = commits(url)
        if (numbers[-1] if numbers else 0) != parent:
            raise _conflict(url, parent, numbers[-1])
        fs, base = filesystem(url)
        known = {sha for sha, _size in published.values()}
        try:
            for rel, (sha, _size) in sorted(files.items()):
                if sha not in known:
                    fs.put_file(str(root / rel), _join(base, OBJECTS, sha))
                    known.add(sha)
        except Exception as exc:
            raise remote_error(url, exc) from exc
        number = parent + 1
        manifest = {
            "format": 1,
            "commit": number,
            "parent": parent or None,
            "files": {rel: [sha, size] for rel, (sha, size) in sorted(files.items())},
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        try:
            fs.pipe_file(_join(base, COMMITS, f"{number:010d}.json"), data, mode="create")
        except FileExistsError:
            raise _conflict(url, parent, number) from None
        except Exception as exc:
            raise remote_error(url, exc) from exc
        _save_state(root, url, number, files)
    return number


def _read_only(url: str) -> StoreError:
    protocol = protocol_of(url)
    return StoreError(
        f"the store {url} can be read but not written: lamina commits to an object store "
        f"by a conditional put, wired for {', '.join(f'{p}://' for p in sorted(WRITABLE))} "
        f'only ({protocol}:// stores are read-only: docs/scale.md, "Where the store can live")',
        hint="keep the store on a local or shared disk, or on s3://",
    )


def _check_bucket(url: str) -> None:
    """A new store on S3 needs its bucket: say so now, not after the command's work."""
    if protocol_of(url) not in ("s3", "s3a"):
        return  # memory:// has no buckets
    fs, base = filesystem(url)
    bucket = base.strip("/").split("/", 1)[0]
    try:
        exists = fs.exists(bucket)
    except Exception as exc:
        raise remote_error(url, exc) from exc
    if not exists:
        raise StoreError(
            f"the bucket {bucket} of the store {url} does not exist (or the credentials in "
            "use cannot see it)",
            hint=f"create it (`aws s3 mb s3://{bucket}`), or check the name and the "
            "credentials; AWS_ENDPOINT_URL for an S3-compatible server",
        )


def _conflict(url: str, parent: int, theirs: int) -> StoreError:
    return StoreError(
        f"the store {url} moved on while this command ran (this work starts from commit "
        f"{parent}; commit {theirs} was published by another writer): nothing was published",
        hint="one writer at a time per store; the work stays in the local working copy "
        f"{checkout_dir(url)} (move it aside and run the command again to redo it on the "
        "newest commit)",
    )


# -- garbage: objects no commit names -------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    """An object of the bucket: its SHA-256 name, size and last-modified time (ns, None
    when the backend gives none)."""

    sha: str
    size: int
    mtime_ns: int | None


@dataclass
class Unnamed:
    """The objects of a store that no commit names (`unnamed_objects`)."""

    commits: list[int]  # the commits read (their objects are never garbage)
    named: int  # distinct objects the commits name
    old: list[StoredObject]  # unnamed, last modified before the grace period: garbage
    young: list[StoredObject]  # unnamed, but recent: maybe a push in flight, kept
    foreign: int  # keys under objects/ that are not a SHA-256: not lamina's, never touched
    cutoff_ns: int = 0  # `old` means last modified at or before this time


def _named_by(url: str, numbers: list[int]) -> set[str]:
    return {sha for n in numbers for sha, _size in read_commit(url, n).files.values()}


def unnamed_objects(url: str, grace_s: float, *, now_ns: int | None = None) -> Unnamed:
    """The objects of the store at `url` that no commit names (a push killed before its
    manifest, or refused by the conditional put, uploaded them), split by age: `old`
    ones were last modified more than `grace_s` seconds ago. Every commit counts, not
    only the newest (a reader may be pulling an older one). The bucket is listed a page
    (1,000 keys) at a time on S3 (`lamina.core.remote.walk_remote`).

    Example:
        >>> unnamed_objects("s3://bucket/lamina-store", 86400).old  # doctest: +SKIP
        [StoredObject(sha='3f2a…', size=20817, mtime_ns=1796504967326720000)]
    """
    url = check_url(url)
    numbers = commits(url)  # first: it names missing credentials (a bucket check cannot)
    if not numbers:
        _check_bucket(url)
        # Not (yet) a lamina store: its objects/ may be another tool's. Nothing is taken.
        raise StoreError(
            f"no lamina store at {url} (no {COMMITS}/ manifest there): gc leaves it alone",
            hint="check the URL; a first publish killed before its manifest leaves objects "
            "that the same command publishes when run again",
        )
    named = _named_by(url, numbers)
    now = time.time_ns() if now_ns is None else now_ns
    cutoff = now - int(grace_s * 1e9)
    found = Unnamed(numbers, len(named), [], [], 0, cutoff)
    for rel, size, mtime in walk_remote(_join(url, OBJECTS)):
        if not _SHA256.fullmatch(rel):
            found.foreign += 1
        elif rel not in named:
            obj = StoredObject(rel, int(size or 0), mtime)
            # An object the backend gives no time for is never old: it might be in flight.
            (found.old if mtime is not None and mtime <= cutoff else found.young).append(obj)
    return found


def delete_unnamed(url: str, found: Unnamed, *, batch: int = 1000) -> list[StoredObject]:
    """Delete `found.old` (from `unnamed_objects`), a batch at a time; the objects deleted.

    Before each batch the commits are listed again, and an object a commit published
    since names is kept; then each object is looked at again (one HEAD each), and one
    no longer older than the grace is kept: a writer re-uploaded it (a push uploads
    every object its parent commit lacks, an old orphan too, before its manifest), and
    its manifest, maybe still to come, will name it. What is left is a re-upload between
    that look and the batch's delete request (documented in docs/scale.md).

    Example:
        >>> url = "s3://bucket/lamina-store"
        >>> len(delete_unnamed(url, unnamed_objects(url, 86400)))  # doctest: +SKIP
        12
    """
    url = check_url(url)
    fs, base = filesystem(url)
    seen = list(found.commits)
    named: set[str] = set()
    deleted: list[StoredObject] = []
    for start in range(0, len(found.old), batch):
        newer = [n for n in commits(url) if n not in seen]
        named |= _named_by(url, newer)
        seen += newer
        doomed = [o for o in found.old[start : start + batch] if o.sha not in named]
        doomed = _still_old(url, fs, base, doomed, found.cutoff_ns)
        if not doomed:
            continue
        try:
            fs.rm([_join(base, OBJECTS, o.sha) for o in doomed])
        except FileNotFoundError:
            pass  # another gc removed some of them first
        except Exception as exc:
            raise remote_error(url, exc) from exc
        deleted += doomed
    return deleted


def _still_old(
    url: str, fs: Any, base: str, objects: list[StoredObject], cutoff_ns: int
) -> list[StoredObject]:
    """The `objects` still last modified at or before `cutoff_ns` (gone ones left out): a
    newer time is a writer's re-upload, whose manifest may not be there yet. (The cutoff,
    not the listed time, is compared: a HEAD may give whole seconds where the listing
    gave milliseconds, as MinIO's do.)"""
    paths = [_join(base, OBJECTS, o.sha) for o in objects]
    try:
        fs.invalidate_cache()  # s3fs answers `info` from its listing cache otherwise
        if getattr(fs, "async_impl", False):
            from fsspec.asyn import _run_coros_in_chunks, sync

            coros = [fs._info(p) for p in paths]
            infos = sync(fs.loop, _run_coros_in_chunks, coros, return_exceptions=True)
        else:
            infos = []
            for path in paths:
                try:
                    infos.append(fs.info(path))
                except FileNotFoundError as exc:
                    infos.append(exc)
    except Exception as exc:
        raise remote_error(url, exc) from exc
    same = []
    for obj, info in zip(objects, infos, strict=True):
        if isinstance(info, FileNotFoundError):
            continue  # another gc removed it first
        if isinstance(info, BaseException):
            raise remote_error(url, info) from info
        mtime = mtime_ns(info)
        if mtime is not None and mtime <= cutoff_ns:
            same.append(obj)
    return same
