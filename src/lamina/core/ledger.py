"""The ledger: a record of every run, and a completion record per committed chunk.

A run record (`runs/<run_id>/run.json`) says what was asked (command, resolved config),
with what (lamina and package versions, host) and what came of it (counts, errors, start
and end). It is written when the run starts and rewritten when it ends, so a run that was
killed shows as `running` with no end: `lamina status` reports it as interrupted.

A chunk record (`ledger/<pass>/<layer>/chunk-<id>.json`) is written once, right after the
chunk's part file, and is what makes the part count as done.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import json
import os
import platform
import re
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lamina.core.layout import atomic_write_json

if TYPE_CHECKING:
    from lamina.core.store import Store

# Packages whose versions can change a result; recorded with every run.
RECORDED_PACKAGES = (
    "lamina",
    "pillow",
    "pillow-heif",
    "numpy",
    "pyarrow",
    "duckdb",
    "rawpy",
    "scikit-image",
    "scikit-learn",
    "torch",
    "torchvision",
    "open_clip_torch",
    "timm",
)


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 6 random hex chars.

    Example:
        >>> len(new_run_id())
        23
    """
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def utc_now() -> str:
    """The current UTC time in ISO 8601 with seconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change a result (absent ones left out).

    Example:
        >>> "pyarrow" in package_versions()
        True
    """
    return dict(_package_versions())


@functools.cache
def _package_versions() -> tuple[tuple[str, str], ...]:
    # Looked up once a process: each lookup searches every folder on sys.path (~3 ms a
    # package), and a run writes its record when it starts and again when it ends.
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())


def host_info() -> dict[str, Any]:
    """Where a run ran."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "pid": os.getpid(),
    }


def without_credentials(address: str) -> str:
    """A cluster address with any user, password or query (a token) dropped: what a run
    record may keep.

    Example:
        >>> without_credentials("ray://admin:s3cret@head.example:10001/?token=x")
        'ray://head.example:10001/'
        >>> without_credentials("head.example:6379")
        'head.example:6379'
    """
    if "://" not in address:
        return address.rpartition("@")[2]
    parts = urlsplit(address)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


# The user and password of a URL (`scheme://user:password@host`): only the authority's,
# so that a path with an "@", "?" or "#" in an error message stays as it is.
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s]+@")  # up to the last @


def text_without_credentials(text: str) -> str:
    """`text` (an error message) with the user and password of every URL in it dropped:
    a message may quote an address it was given (queries are refused where URLs are
    taken, `lamina.core.remote.check_url`; a Ray address's is dropped by its messages).

    Example:
        >>> text_without_credentials("cannot reach ray://u:p@head:10001: refused")
        'cannot reach ray://head:10001: refused'
        >>> text_without_credentials("ray://u:p@ss@head:1 or s3://bucket/a@b #1.jpg?: no")
        'ray://head:1 or s3://bucket/a@b #1.jpg?: no'
    """
    return _USERINFO.sub(r"\1", text)


def argv_without_credentials(argv: Sequence[str]) -> list[str]:
    """`argv` with the value of `--ray-address` stripped of credentials
    (`without_credentials`), so that a run record keeps the command but not its password
    (every `Run` records its argv so).

    Example:
        >>> argv_without_credentials(["lamina", "run", "--ray-address", "ray://u:p@head:10001"])
        ['lamina', 'run', '--ray-address', 'ray://head:10001']
    """
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--ray-address="):
            out[i] = "--ray-address=" + without_credentials(arg.partition("=")[2])
        elif i and out[i - 1] == "--ray-address":
            out[i] = without_credentials(arg)
    return out


@dataclass
class Run:
    """One invocation that computes something. Use as a context manager.

    Example:
        >>> with Run(store, "scan", {"sources": ["/photos"]}) as run:  # doctest: +SKIP
        ...     run.count("files", 10)
    """

    store: Store
    command: str
    config: dict[str, Any]
    run_id: str = field(default_factory=new_run_id)
    counts: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    started: str = field(default_factory=utc_now)
    argv: list[str] = field(default_factory=lambda: argv_without_credentials(sys.argv))
    _t0: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> Path:
        return self.store.run_dir(self.run_id) / "run.json"

    def record(self, ended: str | None = None) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "argv": self.argv,
            "config": self.config,
            "status": self.status,
            "started": self.started,
            "ended": ended,
            "seconds": round(time.monotonic() - self._t0, 3) if ended else None,
            "counts": self.counts,
            "errors": self.errors,
            "n_errors": len(self.errors),
            "versions": package_versions(),
            "host": host_info(),
            "store": str(self.store.root),
        }

    def count(self, key: str, value: Any) -> None:
        """Set a count shown in the run record."""
        self.counts[key] = value

    def error(self, **details: Any) -> None:
        """Add an error (a chunk that failed after its retries, a pass that could not run).
        A URL in a text is stripped of credentials: the record is kept in the store."""
        self.errors.append(
            {
                k: text_without_credentials(v) if isinstance(v, str) else v
                for k, v in details.items()
            }
        )

    def __enter__(self) -> Run:
        atomic_write_json(self.path, self.record())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc_type is KeyboardInterrupt:
            self.status = "interrupted"
        elif exc is not None:
            self.status = "failed"
            self.error(
                kind="exception", type=exc_type.__name__ if exc_type else "", message=str(exc)
            )
        elif self.status == "running":
            self.status = "failed" if self.errors else "completed"
        atomic_write_json(self.path, self.record(ended=utc_now()))


def write_chunk_record(ledger_dir: Path, chunk_id: str, record: dict[str, Any]) -> None:
    """Mark a chunk done (after its part file is in place)."""
    atomic_write_json(ledger_dir / f"chunk-{chunk_id}.json", record)


def done_chunks(ledger_dir: Path) -> set[str]:
    """Ids of the chunks of a layer that have a completion record."""
    if not ledger_dir.is_dir():
        return set()
    return {p.stem.removeprefix("chunk-") for p in ledger_dir.glob("chunk-*.json")}


def load_runs(store: Store, limit: int | None = None) -> list[dict[str, Any]]:
    """Run records, newest first."""
    paths = sorted(store.root.glob("runs/*/run.json"), reverse=True)
    runs = []
    for path in paths[:limit] if limit else paths:
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a record being rewritten right now; the next look will see it
    return runs
