"""Reconcile: compare two listings of the same collection (stores, CSV/Parquet/JSON lists).

Rows are paired one-to-one, first by content hash where both sides have one, then by the
longest common suffix of path components, after normalising away what differs between
machines (``s3://bucket/``, ``E:\\``, backslashes, Unicode NFC/NFD), so
``s3://bucket/x/y.jpg``, ``E:\\x\\y.jpg`` and ``/data/x/y.jpg`` all meet. What stays unpaired
is classed (apple_double, os_metadata, zero_byte, image, other, or the store's own reason),
so "are the 346 files missing from the bucket all __MACOSX junk?" is one look at the summary.

The readers and the path normalisation live in `lamina.manifest.listing`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lamina.core.images import IMAGE_EXTS, classify_name
from lamina.manifest.listing import load_listing, pair_by_suffix, path_parts

ROWS_SCHEMA = pa.schema(
    [
        ("side", pa.string()),
        ("path_a", pa.string()),
        ("path_b", pa.string()),
        ("match", pa.string()),
        ("suffix_len", pa.int32()),
        ("same_content", pa.bool_()),
        ("junk_class", pa.string()),
    ]
)


# -- reconcile -------------------------------------------------------------------------------


@dataclass
class ReconcileResult:
    """Every row of both sides (paired or not) and a summary of the counts.

    `rows` columns: side ('a' | 'b' | 'both'), path_a, path_b, match ('hash' |
    'path_suffix' | null), suffix_len, same_content (false when a path match joins two
    different hashes), junk_class (for unpaired rows).
    """

    rows: pa.Table
    summary: dict[str, Any] = field(default_factory=dict)

    def only_in(self, side: str) -> pa.Table:
        """The rows found only on `side` ('a' or 'b')."""
        return self.rows.filter(pc.equal(self.rows["side"], side))


def junk_class(path: str, size: int | None, status: str | None, reason: str | None) -> str:
    """What an unpaired file is: the store's verdict where it has one, else a guess from the
    name and size: apple_double, os_metadata, zero_byte, image or other.

    Example:
        >>> junk_class("E:\\\\__MACOSX\\\\._a.jpg", 4096, None, None)
        'apple_double'
    """
    if status is not None:
        if status == "ok":
            return "image"
        if status == "junk":
            return "other" if reason in (None, "not_an_image") else reason
        return status  # broken, unsupported, unreadable
    parts = path_parts(path)
    named = classify_name("/".join(parts))
    if named is not None:
        return named
    if size == 0:
        return "zero_byte"
    name = parts[-1] if parts else ""
    dot = name.rfind(".")
    return "image" if dot > 0 and name[dot:].lower() in IMAGE_EXTS else "other"


def reconcile(a: str, b: str) -> ReconcileResult:
    """Compare listing `a` with listing `b` (see `load_listing` for what each may be).

    Example:
        >>> result = reconcile("~/pictures/.lamina", "bucket.csv")  # doctest: +SKIP
        >>> result.summary["only_in_a_by_class"]  # doctest: +SKIP
        {'apple_double': 346}
    """
    t0 = time.monotonic()
    la, lb = load_listing(a), load_listing(b)
    paths_a, paths_b = la["path"].to_pylist(), lb["path"].to_pylist()
    sha_a, sha_b = la["sha256"].to_pylist(), lb["sha256"].to_pylist()
    parts_a = [path_parts(p) for p in paths_a]
    parts_b = [path_parts(p) for p in paths_b]

    # 1. Same content: pair within each hash, by path suffix where copies share one (so
    # duplicates pair with their namesakes), else in order (min_len=0).
    hash_pairs = pair_by_suffix(
        [(h, p) if h else None for h, p in zip(sha_a, parts_a, strict=True)],
        [(h, p) if h else None for h, p in zip(sha_b, parts_b, strict=True)],
        min_len=0,
    )
    used_a = {i for i, _, _ in hash_pairs}
    used_b = {j for _, j, _ in hash_pairs}
    # 2. What is left: by path, the file name at least.
    path_pairs = pair_by_suffix(
        [None if i in used_a else ("", p) for i, p in enumerate(parts_a)],
        [None if j in used_b else ("", p) for j, p in enumerate(parts_b)],
        min_len=1,
    )

    partner: dict[int, tuple[int, str, int]] = {i: (j, "hash", k) for i, j, k in hash_pairs}
    partner.update((i, (j, "path_suffix", k)) for i, j, k in path_pairs)
    paired_b = used_b | {j for _, j, _ in path_pairs}
    size_a, size_b = la["size"].to_pylist(), lb["size"].to_pylist()
    status_a, status_b = la["status"].to_pylist(), lb["status"].to_pylist()
    reason_a, reason_b = la["reason"].to_pylist(), lb["reason"].to_pylist()

    out: list[tuple[Any, ...]] = []  # one tuple per row, in ROWS_SCHEMA order
    by_class: dict[str, Counter[str]] = {"a": Counter(), "b": Counter()}
    differs = 0
    for i, path in enumerate(paths_a):
        hit = partner.get(i)
        if hit is None:
            cls = junk_class(path, size_a[i], status_a[i], reason_a[i])
            by_class["a"][cls] += 1
            out.append(("a", path, None, None, None, None, cls))
            continue
        j, kind, k = hit
        equal = True if kind == "hash" else None
        if kind == "path_suffix" and sha_a[i] and sha_b[j]:
            equal = False  # both hashed, yet not paired by hash: the bytes differ
            differs += 1
        out.append(("both", path, paths_b[j], kind, k, equal, None))
    for j, path in enumerate(paths_b):
        if j not in paired_b:
            cls = junk_class(path, size_b[j], status_b[j], reason_b[j])
            by_class["b"][cls] += 1
            out.append(("b", None, path, None, None, None, cls))
    columns = [list(c) for c in zip(*out, strict=True)] if out else [[]] * len(ROWS_SCHEMA)
    rows = pa.table(columns, schema=ROWS_SCHEMA)

    summary = {
        "a": a,
        "b": b,
        "rows_a": la.num_rows,
        "rows_b": lb.num_rows,
        "matched": {
            "hash": len(hash_pairs),
            "path_suffix": len(path_pairs),
            "total": len(hash_pairs) + len(path_pairs),
        },
        "content_differs": differs,
        "only_in_a": sum(by_class["a"].values()),
        "only_in_b": sum(by_class["b"].values()),
        "only_in_a_by_class": dict(by_class["a"].most_common()),
        "only_in_b_by_class": dict(by_class["b"].most_common()),
        "seconds": round(time.monotonic() - t0, 3),
    }
    return ReconcileResult(rows, summary)


def render_summary(result: ReconcileResult, *, examples: int = 3) -> str:
    """The summary as text for a person: what matched and how, and what is only on one
    side by class, with a few example paths of each class.

    Example:
        >>> print(render_summary(reconcile("store", "bucket.csv")))  # doctest: +SKIP
        A: store (265 rows); B: bucket.csv (250 rows)
        matched 240: 238 by content hash, 2 by path (1 of them with other content)
        only in A: 25
          apple_double  20  e.g. /p/__MACOSX/._a.jpg, /p/__MACOSX/._b.jpg, …
          image          5  e.g. /p/new/1.jpg, /p/new/2.jpg, …
    """
    s = result.summary
    m = s["matched"]
    lines = [f"A: {s['a']} ({s['rows_a']} rows); B: {s['b']} ({s['rows_b']} rows)"]
    how = [f"{m['hash']} by content hash", f"{m['path_suffix']} by path"]
    if s["content_differs"]:
        how[-1] += f" ({s['content_differs']} of them with other content)"
    lines.append(f"matched {m['total']}: {', '.join(how)}")
    for side in ("a", "b"):
        lines.append(f"only in {side.upper()}: {s[f'only_in_{side}']}")
        classes = s[f"only_in_{side}_by_class"]
        if not classes:
            continue
        rows = result.only_in(side)
        paths = rows[f"path_{side}"].to_pylist()
        kinds = rows["junk_class"].to_pylist()
        width, digits = max(map(len, classes)), len(str(max(classes.values())))
        for cls, n in classes.items():
            some = [p for p, k in zip(paths, kinds, strict=True) if k == cls][:examples]
            more = ", …" if n > len(some) else ""
            lines.append(f"  {cls:<{width}}  {n:>{digits}}  e.g. {', '.join(some)}{more}")
    return "\n".join(lines)
