"""Curated sets out: what every `lamina export --format <set format>` shares.

A set export takes the *items* a selection chose (`lamina.jobs.set_selection` builds
them: one row per image, `ITEM_COLUMNS` first, then the columns asked for) and writes them
into one output folder in a format other tools read. Each format is one module with a
`write(store, items, out, options) -> dict` function; `WRITERS` maps the format name to
its module, so adding a format is one module and one line here.

The output folder (`check_output_folder`, `staged_folder`):

* is checked by `lamina.core.outputs.check_output_path` (never inside a source or the
  store, never a recorded file);
* is written beside itself first (`.<name>.lamina-<random>`) and renamed into place, so a
  reader never sees half an export and a failure leaves nothing;
* an empty or absent folder is simply made; a folder holding a previous lamina export
  (its `lamina-export.json` marker) is replaced whole, as a re-run replaces lamina's own
  files; any other non-empty folder is refused unless `force`, and then the export's
  files are written into it (same names replaced, other files kept).

Labels become folder names only through `folder_name`, which escapes reversibly.

Example:
    >>> folder_name("cat"), folder_name("a/b"), folder_name("..")
    ('cat', 'a%2Fb', '%2E%2E')
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.outputs import OutputError, check_output_path

# Format name -> module with `write(store, items, out, options) -> dict`.
WRITERS = {
    "imagefolder": "lamina.exports.imagefolder",
    "hf": "lamina.exports.hf",
    "webdataset": "lamina.exports.webdataset",
    "items-json": "lamina.exports.items_json",
    "fiftyone": "lamina.exports.fiftyone",
}
# Formats a model trains on: they get the leak and dedup report in their summary.
TRAINING_FORMATS = ("imagefolder", "hf", "webdataset", "fiftyone")
MARKER = "lamina-export.json"
ITEM_COLUMNS = ("image_id", "path", "source", "rel_path", "label", "labels", "split")
LINKS = ("symlink", "hardlink", "copy")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SetOptions:
    """How a writer writes: `link` (imagefolder: symlink, hardlink or copy), `image`
    (hf: the image `bytes` in the rows, or only their `paths`), shards of at most
    `shard_items` items and `shard_mb` MB (hf, webdataset), the shuffle `seed`
    (webdataset; None: no shuffle)."""

    link: str = "symlink"
    image: str = "bytes"
    shard_items: int = 10000
    shard_mb: float = 500.0
    seed: int | None = 0


def writer(fmt: str) -> Any:
    """The module that writes `fmt` (see `WRITERS`).

    Example:
        >>> writer("hf").__name__
        'lamina.exports.hf'
    """
    import importlib

    if fmt not in WRITERS:
        raise LaminaError(f"unknown set format {fmt!r}", hint=f"one of: {', '.join(WRITERS)}")
    return importlib.import_module(WRITERS[fmt])


# Characters never kept in a folder name: the separators, NUL, control characters and the
# escape character itself; names Windows reserves are escaped too, so a tree copies there.
_UNSAFE = set('/\\%:*?"<>|')
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10))}
_RESERVED |= {f"lpt{i}" for i in range(10)}


def folder_name(label: str) -> str:
    """`label` as one folder name, escaped reversibly (`unescape_folder_name` gives it
    back): unsafe characters as `%XX` (UTF-8 bytes), `.`/`..`, a leading dot or space, a
    trailing dot or space and Windows' reserved names escaped, names cut to no more than
    255 bytes refused (an error names the label).

    Example:
        >>> folder_name("dogs: big/small"), folder_name(".hidden"), folder_name("con")
        ('dogs%3A big%2Fsmall', '%2Ehidden', '%63on')
    """
    out = []
    for ch in label:
        if ch in _UNSAFE or ord(ch) < 32 or ord(ch) == 127:
            out.append("".join(f"%{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    if out and out[0] in (".", " "):
        out[0] = f"%{ord(out[0]):02X}"
    if out and out[-1] in (".", " "):
        out[-1] = f"%{ord(out[-1]):02X}"
    name = "".join(out)
    if name.split(".")[0].lower() in _RESERVED:
        name = f"%{ord(name[0]):02X}{name[1:]}"
    if not name:
        raise LaminaError("an empty label cannot name a folder", hint="approve a non-empty label")
    if len(name.encode()) > 255:
        raise LaminaError(
            f"the label {label[:60]!r}… is too long for a folder name (over 255 bytes)",
            hint="shorten the label, or export to hf / webdataset, which keep it whole",
        )
    return name


def unescape_folder_name(name: str) -> str:
    """The label `folder_name` escaped into `name`.

    Example:
        >>> unescape_folder_name("dogs%3A big%2Fsmall")
        'dogs: big/small'
    """
    from urllib.parse import unquote

    return unquote(name, errors="strict")


def check_output_folder(
    store: Any, out: str | os.PathLike[str], *, force: bool, force_into_source: bool
) -> Path:
    """The real path of the output folder, when lamina may write there (see the module
    docstring); an `OutputError` naming the rule and the fix otherwise.

    Example:
        >>> check_output_folder(s, "out", force=False, force_into_source=False)  # doctest: +SKIP
        PosixPath('/home/ana/train_set')
    """
    real = check_output_path(store, out, folder=True, force_into_source=force_into_source)
    # A source inside the folder (an export scanned later) must never be replaced or
    # written into: the swap below removes a previous export whole.
    for source in _sources(store):
        inner = Path(source).resolve()
        if inner == real or real in inner.parents:
            raise OutputError(
                f"the output folder {out} holds the source {source}",
                hint="name a folder that holds no scanned source",
            )
    if real.is_dir() and any(real.iterdir()) and not is_lamina_export(real) and not force:
        raise OutputError(
            f"the output folder {out} is not empty",
            hint="name a new or empty folder, or pass --force to write into it",
        )
    return real


def _sources(store: Any) -> list[str]:
    if not store.table_files("files"):
        return []
    return [r[0] for r in store.connect().execute("select distinct source from files").fetchall()]


def is_lamina_export(folder: Path) -> bool:
    """Whether `folder` holds a set export lamina wrote (its marker file parses)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("lamina_export") is True


@contextlib.contextmanager
def staged_folder(real: Path) -> Iterator[Path]:
    """A new folder beside `real` for the block to fill, put in place when the block ends
    (see the module docstring for what happens to a folder already there); removed on
    failure, when an OSError becomes an OutputError naming `real`.

    Example:
        >>> with staged_folder(Path("/tmp/set")) as tmp:  # doctest: +SKIP
        ...     (tmp / "a.txt").write_text("a")
    """
    tmp = real.with_name(f".{real.name}.lamina-{uuid.uuid4().hex[:8]}")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        yield tmp
        if not real.exists():
            os.replace(tmp, real)
        elif not any(real.iterdir()):
            real.rmdir()
            os.replace(tmp, real)
        elif is_lamina_export(real):
            old = real.with_name(f".{real.name}.lamina-old-{uuid.uuid4().hex[:8]}")
            os.replace(real, old)
            os.replace(tmp, real)
            shutil.rmtree(old, ignore_errors=True)
        else:  # --force into a folder of other files: ours replace theirs of the same name
            _merge_into(tmp, real)
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(
            f"cannot write {real}: {exc.strerror or exc}", hint="choose another output folder"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _merge_into(src: Path, dst: Path) -> None:
    for entry in sorted(src.rglob("*")):
        target = dst / entry.relative_to(src)
        if entry.is_dir() and not entry.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def write_marker(folder: Path, summary: dict[str, Any]) -> None:
    """`lamina-export.json`: what was exported, from what, and what was left out and why."""
    data = {"lamina_export": True, **summary}
    (folder / MARKER).write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str))


def json_value(value: Any) -> Any:
    """A value of an Arrow row as JSON takes it (dates as ISO text, bytes left out).

    Example:
        >>> json_value(float("nan")), json_value([1, 2.5])
        (None, [1, 2.5])
    """
    import datetime as dt
    import math

    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def extra_columns(items: pa.Table) -> list[str]:
    """The chosen columns of `items`, beyond `ITEM_COLUMNS`."""
    return [c for c in items.column_names if c not in ITEM_COLUMNS]


def approved_by_image(store: Any, present: set[str] | list[str]) -> dict[str, list[str]]:
    """Each image's current approved labels (none when the store has no approvals).

    Example:
        >>> approved_by_image(lamina.open(), {"approvals"})  # doctest: +SKIP
        {'3f2a…': ['cat']}
    """
    if "approvals" not in present:
        return {}
    from lamina.tagging.approvals import current_approvals

    return {
        r["image_id"]: list(r["approved_labels"] or [])
        for r in current_approvals(store).to_pylist()
    }


def shards(sizes: list[int], max_items: int, max_bytes: float) -> list[tuple[int, int]]:
    """Cut items of `sizes` bytes into runs `[start, end)` of at most `max_items` items
    and about `max_bytes` (a shard holds at least one item, however big).

    Example:
        >>> shards([5, 5, 5, 5, 5], 2, 100), shards([5, 5, 5], 10, 9)
        ([(0, 2), (2, 4), (4, 5)], [(0, 1), (1, 2), (2, 3)])
    """
    out: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_items or total + size > max_bytes):
            out.append((start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        out.append((start, len(sizes)))
    return out
