"""Binary masks as COCO run-length encodings (the `rle` column of the segment tables and
the `segmentation` of a COCO export), with no dependency on pycocotools, and the geometry
of one mask (`mask_stats`: bbox, area, solidity, eccentricity, thinness, border).

COCO's RLE runs over the mask in column-major order (down each column, then the next),
alternating 0-runs and 1-runs, the first a 0-run (possibly empty). The compressed string
form is pycocotools' `rleToString`: each count, minus the count two before it from the
third on, written 5 bits at a time as characters from '0' (48), with a continuation bit.
`tests/exports/test_coco.py` checks both directions against pycocotools.

Example:
    >>> m = np.array([[0, 1], [1, 1]], bool)
    >>> encode_rle(m)
    {'size': [2, 2], 'counts': '13'}
    >>> decode_rle(encode_rle(m)).tolist()
    [[False, True], [True, True]]
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rle_counts(mask: np.ndarray) -> list[int]:
    """The uncompressed COCO counts of a 2-D boolean mask.

    Example:
        >>> rle_counts(np.array([[1, 0], [1, 0]], bool))
        [0, 2, 2]
    """
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return ([0] if flat[0] else []) + [int(c) for c in counts]


def counts_to_string(counts: list[int]) -> str:
    """pycocotools' compressed form of uncompressed counts.

    Example:
        >>> counts_to_string([0, 2, 2])
        '022'
    """
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as C's on a signed long
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(text: str) -> list[int]:
    """Uncompressed counts of pycocotools' compressed string; a ValueError when malformed.

    Example:
        >>> string_to_counts("022")
        [0, 2, 2]
    """
    counts: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("truncated RLE string")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"bad RLE character {text[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """A 2-D mask as COCO compressed RLE: {"size": [height, width], "counts": str}.

    Example:
        >>> encode_rle(np.zeros((3, 2), bool))
        {'size': [3, 2], 'counts': '6'}
    """
    h, w = np.asarray(mask).shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(rle_counts(mask))}


def encode_rle_at(part: np.ndarray, x: int, y: int, size: tuple[int, int]) -> dict[str, Any]:
    """`encode_rle` of a mask of `size` (height, width) that is empty but for `part` at
    column `x`, row `y`, without making the whole mask (a segment of one tile in a big
    frame costs its own columns, not the frame).

    Example:
        >>> part = np.ones((1, 2), bool)
        >>> encode_rle_at(part, 1, 1, (3, 4)) == encode_rle(np.pad(part, ((1, 1), (1, 1))))
        True
    """
    height, width = size
    ph, pw = part.shape
    if x < 0 or y < 0 or x + pw > width or y + ph > height:
        raise ValueError(f"a {ph}x{pw} mask at ({x}, {y}) lies outside a {height}x{width} frame")
    band = np.zeros((height, pw), bool)  # the part's columns, whole
    band[y : y + ph] = part
    counts = rle_counts(band)
    counts[0] += x * height  # the columns before the part: zeros
    after = (width - x - pw) * height
    if after and len(counts) % 2 == 0:  # it ends with a 1-run: a 0-run after it
        counts.append(after)
    elif after:
        counts[-1] += after
    return {"size": [int(height), int(width)], "counts": counts_to_string(counts)}


def upscaled_rle(mask: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """`encode_rle` of `mask` resized to `width` x `height` by nearest neighbour (output
    row Y takes mask row Y * h // height, column X column X * w // width), built from the
    small mask's runs without making the big one: a 512-px frame's segment of a 200 MP
    image costs its runs, not 200 MB. Also its area and bbox (x, y, w, h) there.

    Small row r covers output rows [ceil(r H / h), ceil((r + 1) H / h)), so each run of a
    small column maps to one output run, repeated in every output column that takes that
    small column; runs that touch (down a column end into the next one's top) are joined.

    Example:
        >>> m = np.array([[True, False]])
        >>> big = upscaled_rle(m, 4, 2)
        >>> big["counts"] == encode_rle(np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool))["counts"]
        True
        >>> big["area"], big["bbox"]
        (4, [0, 0, 2, 2])
    """
    m = np.asarray(mask, bool)
    h, w = m.shape
    total = int(height) * int(width)
    empty = {"size": [int(height), int(width)], "area": 0, "bbox": [0, 0, 0, 0],
             "counts": counts_to_string([total] if total else [])}  # fmt: skip
    if h == 0 or w == 0 or total == 0:
        return empty
    # Runs of each small column: +1 where a run starts, -1 where it ends (row index).
    padded = np.zeros((h + 2, w), np.int8)
    padded[1:-1] = m
    edges = np.diff(padded, axis=0)  # (h + 1, w)
    start_c, start_r = np.nonzero(edges.T == 1)  # column-major order: by column, then row
    _, end_r = np.nonzero(edges.T == -1)
    # Output row bounds of the small rows: ceil(r * H / h), exact in integers.
    bound = -((-np.arange(h + 1, dtype=np.int64) * height) // h)
    s_out, e_out = bound[start_r], bound[end_r]
    runs_per_col = np.bincount(start_c, minlength=w)
    first_run = np.concatenate([[0], np.cumsum(runs_per_col)])
    # Small column of each output column, and that column's runs repeated once per output
    # column in order (X, then row).
    col_of = (np.arange(width, dtype=np.int64) * w) // width
    n = runs_per_col[col_of]
    if not n.sum():
        return empty
    xs = np.repeat(np.arange(width, dtype=np.int64), n)
    offset = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    run = np.repeat(first_run[col_of], n) + offset
    lo, hi = s_out[run], e_out[run]
    keep = hi > lo  # a small row that no output row takes (shrinking) leaves nothing
    xs, lo, hi = xs[keep], lo[keep], hi[keep]
    if not len(xs):
        return empty
    bbox = [int(xs[0]), int(lo.min()), int(xs[-1] - xs[0] + 1), int(hi.max() - lo.min())]
    starts, ends = xs * height + lo, xs * height + hi
    # Join runs that touch: one ends where the next begins (across columns or rows).
    joined = np.r_[False, starts[1:] == ends[:-1]]
    starts = starts[~joined]
    ends = ends[np.r_[~joined[1:], True]]
    counts = np.empty(2 * len(starts) + 1, np.int64)
    counts[0] = starts[0]
    counts[1::2] = ends - starts
    counts[2:-1:2] = starts[1:] - ends[:-1]
    counts[-1] = total - ends[-1]
    out = counts.tolist() if counts[-1] else counts[:-1].tolist()
    return {"size": [int(height), int(width)], "counts": counts_to_string(out),
            "area": int((ends - starts).sum()), "bbox": bbox}  # fmt: skip


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The HxW boolean mask of a COCO RLE (compressed string or uncompressed list); a
    ValueError when the counts do not add up to the size (a mask outside its frame).

    Example:
        >>> decode_rle({"size": [1, 3], "counts": [1, 2]}).tolist()
        [[False, True, True]]
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise ValueError(f"RLE counts add up to {sum(counts)}, not {h}x{w} = {h * w}")
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()


def mask_stats(mask: np.ndarray) -> dict[str, Any]:
    """Geometry of one mask in its frame: `bbox` [x, y, w, h], `area` (pixels), `area_pct`,
    `solidity`, `eccentricity`, `thinness` (minor / major axis) and `border` (the gap to the
    nearest edge over the short side).

    Example:
        >>> m = np.zeros((10, 20), bool); m[2:6, 4:12] = True
        >>> s = mask_stats(m)
        >>> s["bbox"], s["area_pct"], s["solidity"], s["border"]
        ([4, 2, 8, 4], 16.0, 1.0, 0.2)
    """
    from skimage.measure import regionprops

    h, w = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = mask[y0:y1, x0:x1]
    props = regionprops(crop.astype(np.uint8))[0]
    major = float(props.axis_major_length)
    minor = float(props.axis_minor_length)
    gap = min(x0, y0, w - x1, h - y1)
    return {
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": int(crop.sum()),
        "area_pct": round(100.0 * float(crop.sum()) / (h * w), 4),
        "solidity": float(props.solidity),
        "eccentricity": float(props.eccentricity),
        # One row or column has no second axis: a line, unless it is a single pixel.
        "thinness": minor / major if major > 0 else 1.0,
        "border": gap / min(h, w),
    }
