"""Reading listings: tabular files (CSV, TSV, JSON, JSONL, Parquet, sha256sum output, plain
path lists), lamina stores as listings, and the path normalisation and suffix pairing that
`reconcile` and `attach` share.

Paths are normalised so that what differs between machines does not matter
(``s3://bucket/``, ``E:\\``, backslashes, Unicode NFC/NFD): ``s3://bucket/x/y.jpg``,
``E:\\x\\y.jpg`` and ``/data/x/y.jpg`` have the same components ``x/y.jpg``.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lamina.core.config import expand_user
from lamina.core.errors import LaminaError
from lamina.core.store import STORE_DIRNAME, Store

# Column names tried, in order and case-insensitively, for a listing's path column.
PATH_COLUMNS = ("path", "key", "file", "filename", "name")
# Columns always read as text from CSV: type inference would turn an id "007" into 7.
TEXT_COLUMNS = frozenset(
    {
        *PATH_COLUMNS,
        "file_name",
        "sha256",
        "hash",
        "checksum",
        "image_id",
        "id",
        "folder",
        "rel_path",
        "source",
    }
)
LISTING_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("size", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)

# Schema metadata naming the column that holds the outer keys of an object of objects.
KEYED_BY = b"lamina.keyed_by"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_DRIVE = re.compile(r"^[A-Za-z]:(?=/|$)")
_SHA256SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


# -- paths -----------------------------------------------------------------------------------


def path_parts(path: str) -> tuple[str, ...]:
    """The components of `path` with machine-specific prefixes removed, for suffix matching.

    Backslashes become '/', a URL scheme and its bucket or host are dropped (``file://``
    keeps what follows), a Windows drive letter is dropped, names are put in Unicode NFC
    (macOS writes NFD), and empty and '.' components vanish. Case is kept.

    Example:
        >>> path_parts("s3://bucket/x/y.jpg"), path_parts("E:\\\\x\\\\y.jpg")
        (('x', 'y.jpg'), ('x', 'y.jpg'))
    """
    text = path.replace("\\", "/")
    if "://" in text:
        scheme = _SCHEME.match(text)
        if scheme:
            text = text[scheme.end() :]
            if scheme.group(1).lower() != "file":
                text = text.partition("/")[2]  # bucket or host: names a machine, not the file
    text = text.lstrip("/")
    if text[1:2] == ":" and _DRIVE.match(text):
        text = text[2:]
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    parts = text.split("/")
    if "" in parts or "." in parts:
        return tuple(c for c in parts if c and c != ".")
    return tuple(parts)


def _common_suffix(x: tuple[str, ...], y: tuple[str, ...]) -> int:
    n = 0
    for p, q in zip(reversed(x), reversed(y), strict=False):
        if p != q:
            break
        n += 1
    return n


def pair_by_suffix(
    a: Sequence[tuple[Hashable, tuple[str, ...]] | None],
    b: Sequence[tuple[Hashable, tuple[str, ...]] | None],
    *,
    min_len: int = 1,
) -> list[tuple[int, int, int]]:
    """Pair rows of `a` with rows of `b` one-to-one, longest common path suffix first.

    Each row is `(group, parts)` or None (never paired); only rows of the same group pair,
    and only when they share at least `min_len` trailing components (1: the file name).
    Greedy from the longest suffix down; at each length, rows pair in their input order, so
    the result is deterministic. Cost: O(total path depth), never O(len(a) * len(b)).
    Returns `(index_in_a, index_in_b, common_suffix_len)`, sorted by index in `a`.

    Example:
        >>> pair_by_suffix([(0, ("x", "n")), (0, ("y", "n"))], [(0, ("q", "y", "n"))])
        [(1, 0, 2)]
    """
    pairs: list[tuple[int, int, int]] = []
    # Most groups (hashes) hold one row a side: pair those directly, no index needed.
    count_a = Counter(row[0] for row in a if row is not None)
    count_b = Counter(row[0] for row in b if row is not None)
    single_b = {
        row[0]: j
        for j, row in enumerate(b)
        if row is not None and count_b[row[0]] == 1 and count_a[row[0]] == 1
    }
    if single_b:
        for i, row in enumerate(a):
            j = single_b.get(row[0]) if row is not None else None
            if j is not None:
                k = _common_suffix(row[1], b[j][1])  # type: ignore[index]
                if k >= min_len:
                    pairs.append((i, j, k))
        a = [None if row is None or row[0] in single_b else row for row in a]
        b = [None if row is None or row[0] in single_b else row for row in b]
    groups_a = {row[0] for row in a if row is not None}
    # A suffix of k components is interned as an id built from the id of its k-1 suffix, so
    # each level costs one dict lookup instead of hashing a k-tuple. Only `b` adds ids; a
    # row of `a` walks them until its first miss, which is also its longest shared suffix.
    ids: dict[tuple[int, Hashable], int] = {}
    chain_b: dict[int, list[int]] = {}
    for j, row in enumerate(b):
        if row is None or row[0] not in groups_a:
            continue
        sid = ids.setdefault((-1, row[0]), len(ids))
        chain = [sid]
        for comp in reversed(row[1]):
            sid = ids.setdefault((sid, comp), len(ids))
            chain.append(sid)
        chain_b[j] = chain

    chain_a: dict[int, list[int]] = {}
    start_a: dict[int, list[int]] = defaultdict(list)
    reached = bytearray(len(ids))  # suffix ids that some row of `a` shares
    get = ids.get
    for i, row in enumerate(a):
        if row is None:
            continue
        found = get((-1, row[0]))
        if found is None:
            continue
        chain = [found]
        for comp in reversed(row[1]):
            found = get((found, comp))
            if found is None:
                break
            chain.append(found)
        for sid in chain:
            reached[sid] = 1
        if len(chain) > min_len:
            chain_a[i] = chain
            start_a[len(chain) - 1].append(i)
    start_b: dict[int, list[int]] = defaultdict(list)
    for j, chain in chain_b.items():
        level = -1
        for sid in chain:
            if not reached[sid]:
                break  # suffixes are prefix-closed: the first miss ends the shared part
            level += 1
        if level >= min_len:
            start_b[level].append(j)

    top = max([*start_a, *start_b], default=-1)
    carry_a: list[int] = []
    carry_b: list[int] = []
    for level in range(top, min_len - 1, -1):
        # Rows that failed to pair at a longer suffix compete again here; within a suffix,
        # rows pair in input order.
        by_sid_a: dict[int, list[int]] = defaultdict(list)
        by_sid_b: dict[int, list[int]] = defaultdict(list)
        for i in sorted(carry_a + start_a.get(level, [])):
            by_sid_a[chain_a[i][level]].append(i)
        for j in sorted(carry_b + start_b.get(level, [])):
            by_sid_b[chain_b[j][level]].append(j)
        carry_a, carry_b = [], []
        for sid, rows_a in by_sid_a.items():
            rows_b = by_sid_b.pop(sid, [])
            n = min(len(rows_a), len(rows_b))
            pairs.extend((i, j, level) for i, j in zip(rows_a[:n], rows_b[:n], strict=True))
            carry_a += rows_a[n:]
            carry_b += rows_b[n:]
        for rows_b in by_sid_b.values():
            carry_b += rows_b
    pairs.sort()
    return pairs


# -- reading tabular files -------------------------------------------------------------------


def flatten_record(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A JSON object with nested objects flattened to dotted keys, lists JSON-encoded.

    Example:
        >>> flatten_record({"a": {"b": 1}, "tags": ["x", "y"]})
        {'a.b': 1, 'tags': '["x", "y"]'}
    """
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_record(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value, ensure_ascii=False)
        else:
            flat[name] = value
    return flat


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)


def _infer_array(values: list[Any]) -> pa.Array:
    """An Arrow array for one column of JSON values, typed as the CSV reader would type it
    (bool, int64, float64, date32, timestamp, string); mixed columns become text."""
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if not present:
        return pa.array(values, pa.string())
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds <= {int, float}:
        try:
            return pa.array(values, pa.int64() if kinds == {int} else pa.float64())
        except (pa.ArrowInvalid, OverflowError):
            pass  # an integer past int64: keep it exact, as text
    elif kinds == {str}:
        typed = _infer_temporal(values, present)
        if typed is not None:
            return typed
    return pa.array(
        [v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string()
    )


def _infer_temporal(values: list[Any], present: list[str]) -> pa.Array | None:
    strings = pa.array(values, pa.string())
    if all(_ISO_DATE.match(v) for v in present):
        return strings.cast(pa.date32())
    matches = [_ISO_DATETIME.match(v) for v in present]
    if not all(matches):
        return None
    zoned = {m["tz"] is not None for m in matches if m}
    if len(zoned) != 1:
        return None  # some with a zone, some without: no single honest type
    tz = "UTC" if zoned == {True} else None
    for unit in ("s", "ms", "us", "ns"):  # the coarsest unit that holds every value
        try:
            return pc.cast(strings, pa.timestamp(unit, tz=tz))
        except pa.ArrowInvalid:
            continue
    return None


def records_to_table(records: list[dict[str, Any]]) -> pa.Table:
    """Flat JSON records as an Arrow table, columns in first-seen order, types inferred.

    Example:
        >>> records_to_table([{"id": 1}, {"id": 2, "ok": True}]).schema.types
        [DataType(int64), DataType(bool)]
    """
    names: dict[str, None] = {}
    for rec in records:
        names.update(dict.fromkeys(rec))
    return pa.table({n: _infer_array([rec.get(n) for rec in records]) for n in names})


def _json_records(path: Path, text: str, *, lines: bool) -> tuple[list[dict[str, Any]], str | None]:
    """Parse a JSON document (list of objects, object of objects keyed by id, or one object)
    or JSON Lines, naming the file and line of the first error. Also returns the column that
    holds the outer keys of an object of objects (None otherwise)."""
    if not lines:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # JSON Lines saved as .json: read it as such
                return _json_records(path, text, lines=True)
            raise _bad_json(path, exc.lineno, exc) from None
        return _doc_records(path, doc)
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _bad_json(path, lineno, exc) from None
        if not isinstance(obj, dict):
            raise LaminaError(
                f"{path} line {lineno}: expected a JSON object, got {type(obj).__name__}",
                hint="write one object per line",
            )
        records.append(flatten_record(obj))
    return records, None


def _doc_records(path: Path, doc: Any) -> tuple[list[dict[str, Any]], str | None]:
    if isinstance(doc, list):
        if all(isinstance(x, str) for x in doc):  # a plain list of paths
            return [{"path": x} for x in doc], None
        if not all(isinstance(x, dict) for x in doc):
            raise LaminaError(
                f"{path}: a JSON list must hold objects (or path strings)",
                hint="write a list of objects, one per item",
            )
        return [flatten_record(x) for x in doc], None
    if isinstance(doc, dict):
        if doc and all(isinstance(v, dict) for v in doc.values()):
            # An object of objects keyed by id: the key becomes a column of its own.
            inner = {k for v in doc.values() for k in v}
            id_col = next(c for c in ("id", "key", "_key", "__key") if c not in inner)
            return [{id_col: k, **flatten_record(v)} for k, v in doc.items()], id_col
        return [flatten_record(doc)], None
    raise LaminaError(
        f"{path}: expected a JSON object or list, got {type(doc).__name__}",
        hint="write a list of objects, or an object of objects keyed by id",
    )


def read_json_records(path: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """The flattened objects of a JSON (list, object of objects keyed by id, one object) or
    JSON Lines file (by extension; a .json that holds JSON Lines is read as such), and the
    column holding the outer keys of an object of objects (None for other shapes).

    Example:
        >>> read_json_records("plates/p1/manifest.json")  # doctest: +SKIP
        ([{'title': 'Plate 1', 'license.name': 'CC-BY'}], None)
    """
    path = expand_user(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LaminaError(f"{path} does not exist", hint="check the path") from None
    except UnicodeDecodeError as exc:
        raise LaminaError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="re-save it as UTF-8",
        ) from None
    except OSError as exc:
        raise LaminaError(
            f"cannot read {path}: {exc.strerror or exc}", hint="check the path and its permissions"
        ) from None
    return _json_records(path, text, lines=path.suffix.lower() != ".json")


def _bad_json(path: Path, lineno: int, exc: json.JSONDecodeError) -> LaminaError:
    return LaminaError(
        f"{path} line {lineno}: not valid JSON ({exc.msg})",
        hint="fix that line (a missing comma or quote is the usual cause)",
    )


def _read_csv(path: Path, delimiter: str | None, text_columns: Iterable[str]) -> pa.Table:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        header_line = fh.readline()
    if not header_line.strip():
        raise LaminaError(f"{path} is empty", hint="give a file with a header row")
    if delimiter is None:
        # Excel in many locales writes ';': a header without a comma names its separator.
        others = [d for d in ";\t|" if d in header_line]
        delimiter = "," if "," in header_line or not others else max(others, key=header_line.count)
    header = next(csv.reader([header_line], delimiter=delimiter))
    wanted = {c.lower() for c in text_columns} | TEXT_COLUMNS
    types = {name: pa.string() for name in header if name.strip().lower() in wanted}
    try:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise LaminaError(
            f"cannot read {path} as CSV: {exc}",
            hint="check the delimiter, quoting and that it is UTF-8",
        ) from None


def _read_text_lines(path: Path) -> pa.Table:
    """One path per line, or `sha256sum` output (``<hex>  <path>``)."""
    lines = [
        ln
        for ln in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        if ln.strip()
    ]
    sums = [_SHA256SUM_LINE.match(ln) for ln in lines]
    if lines and all(sums):
        return pa.table(
            {"path": [m[2] for m in sums if m], "sha256": [m[1].lower() for m in sums if m]}
        )
    return pa.table({"path": pa.array(lines, pa.string())})


def read_table_file(path: str | Path, *, text_columns: Iterable[str] = ()) -> pa.Table:
    """Read a CSV/TSV, Parquet, JSON, JSON Lines or text list into an Arrow table.

    JSON objects are flattened (``a.b`` columns, lists as JSON text) and typed like CSV
    columns; Parquet structs are flattened the same way. Columns named like keys (path,
    name, id, sha256, ... and `text_columns`) are read from CSV as text, never as numbers.
    Errors name the file (and, for JSON, the line).

    Example:
        >>> read_table_file("labels.csv").column_names  # doctest: +SKIP
        ['file', 'label']
    """
    path = expand_user(path)
    if not path.is_file():
        raise LaminaError(
            f"{path} does not exist" if not path.exists() else f"{path} is not a file",
            hint="check the path",
        )
    suffix = path.suffix.lower()
    if suffix not in (
        ".csv",
        ".tsv",
        ".tab",
        ".parquet",
        ".pq",
        ".json",
        ".jsonl",
        ".ndjson",
        ".txt",
        ".lst",
        ".sha256",
        ".sha256sum",
    ):
        suffix = _sniff_suffix(path)
    try:
        if suffix in (".parquet", ".pq"):
            table = pq.read_table(path)
            while any(pa.types.is_struct(t) for t in table.schema.types):
                table = table.flatten()  # one level per call; names come out as `a.b`
            return table
        if suffix in (".csv", ".tsv", ".tab"):
            return _read_csv(path, "\t" if suffix != ".csv" else None, text_columns)
        if suffix in (".txt", ".lst", ".sha256", ".sha256sum"):
            return _read_text_lines(path)
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LaminaError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="re-save it as UTF-8",
        ) from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise LaminaError(
            f"cannot read {path}: {exc}",
            hint="check that the file is complete and in the format its extension says",
        ) from None
    records, keyed_by = _json_records(path, text, lines=suffix != ".json")
    return with_keyed_by(records_to_table(records), keyed_by)


def with_keyed_by(table: pa.Table, column: str | None) -> pa.Table:
    """Mark `column` as the outer keys of an object of objects: the natural join key."""
    if column is None:
        return table
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), KEYED_BY: column.encode()}
    )


def keyed_by(table: pa.Table) -> str | None:
    """The column `with_keyed_by` marked, if any."""
    value = (table.schema.metadata or {}).get(KEYED_BY)
    return value.decode() if value is not None else None


def _sniff_suffix(path: Path) -> str:
    """The format of a file with an unknown extension, from its first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return ".parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] == b"[" or (stripped[:1] == b"{" and b"\n{" not in stripped):
        return ".json"
    if stripped[:1] == b"{":
        return ".jsonl"
    return ".csv"


def pick_column(table: pa.Table, candidates: Iterable[str]) -> str | None:
    """The first of `candidates` (case-insensitive, in candidate order) that `table` has.

    Example:
        >>> pick_column(pa.table({"Key": ["a"]}), ("path", "key"))
        'Key'
    """
    by_lower: dict[str, str] = {}
    for name in table.column_names:
        by_lower.setdefault(name.strip().lower(), name)
    for cand in candidates:
        if cand.lower() in by_lower:
            return by_lower[cand.lower()]
    return None


def normalize_sha256(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Lower-case hex digests; anything that is not 64 hex chars (``sha256:`` prefix
    allowed) becomes null, so a bad cell never matches by accident."""
    text = pc.utf8_lower(pc.utf8_trim_whitespace(values.cast(pa.string())))
    text = pc.replace_substring_regex(text, "^sha256:", "")
    return pc.if_else(pc.match_substring_regex(text, "^[0-9a-f]{64}$"), text, None)


# -- listings --------------------------------------------------------------------------------


def store_root_of(spec: str | Path) -> Path | None:
    """The store folder `spec` names (the store itself, or a folder holding `.lamina/`)."""
    folder = expand_user(spec)
    if (folder / "lamina.toml").is_file():
        return folder
    if (folder / STORE_DIRNAME / "lamina.toml").is_file():
        return folder / STORE_DIRNAME
    return None


def load_listing(spec: str) -> pa.Table:
    """A listing of files as a table with columns path, sha256, size, status, reason.

    `spec` is a lamina store (its `files` table, minus missing and skipped paths; path is
    source/rel_path) or a CSV/TSV/Parquet/JSON/JSON Lines/text file with a path column
    (path, key, file, filename or name, any case) and optionally sha256 (or a hash/checksum
    column of 64-hex values) and size.

    Example:
        >>> load_listing("bucket.csv").column_names  # doctest: +SKIP
        ['path', 'sha256', 'size', 'status', 'reason']
    """
    root = store_root_of(spec)
    if root is not None:
        return _store_listing(Store.open(root))
    path = expand_user(spec)
    if path.is_dir():
        raise LaminaError(
            f"{path} is a folder but not a lamina store",
            hint="give a store (a folder with lamina.toml or .lamina/) or a "
            "CSV/Parquet/JSON listing file",
        )
    table = read_table_file(path)
    path_col = pick_column(table, PATH_COLUMNS) or keyed_by(table)
    if path_col is None:
        raise LaminaError(
            f"{path} has no path column (columns: {', '.join(table.column_names) or 'none'})",
            hint=f"name the column holding the paths one of: {', '.join(PATH_COLUMNS)}",
        )
    n = table.num_rows
    sha = pa.nulls(n, pa.string())
    sha_col = pick_column(table, ("sha256",))
    if sha_col is not None:
        sha = normalize_sha256(table[sha_col])
    else:
        for cand in ("hash", "checksum"):
            col = pick_column(table, (cand,))
            if col is None:
                continue
            digests = normalize_sha256(table[col])
            # An ETag or MD5 column must not pass for sha256: every value has to look like one.
            if digests.null_count == table[col].null_count and digests.null_count < n:
                sha = digests
                break
    size = pa.nulls(n, pa.int64())
    size_col = pick_column(table, ("size", "size_bytes", "bytes"))
    if size_col is not None:
        size = _to_int64(table[size_col])
    listing = pa.table(
        [
            table[path_col].cast(pa.string()),
            sha,
            size,
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
        ],
        schema=LISTING_SCHEMA,
    )
    return listing.filter(pc.is_valid(listing["path"]))


def _to_int64(values: pa.ChunkedArray) -> pa.Array:
    try:
        return values.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = []
        for v in values.to_pylist():
            try:
                out.append(int(float(v)))
            except (TypeError, ValueError):
                out.append(None)
        return pa.array(out, pa.int64())


def _store_listing(store: Store) -> pa.Table:
    if not store.table_files("files"):
        raise LaminaError(
            f"the store {store.root} has no files table yet",
            hint="run `lamina scan SOURCE` with that store first",
        )
    table = store.sql(
        "select case when ends_with(source, '/') then source || rel_path "
        "            else source || '/' || rel_path end as path, "
        "sha256, size, status, reason from files where status not in ('missing', 'skipped') "
        "order by source, rel_path"
    )
    return table.cast(LISTING_SCHEMA)
