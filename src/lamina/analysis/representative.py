"""Which copy of a duplicate group to keep, and why: the rules shared by the `duplicates`
and `semantic_duplicates` passes.

Each rule gives every image one or more keys (higher is better). A group's representative
is the first by the configured order of rules, then the smallest image_id:

- `original`: a camera original: RAW (3), HEIF with camera EXIF (2), any other file whose
  EXIF names the camera make or model (1), else 0. A converted HEIF without EXIF is no
  original.
- `resolution`: width x height.
- `fidelity`: what the encoding kept, compared in this order: not a palette (GIF, mode P
  or 1: at most 256 colours), colour (neither a grey mode nor grey by content), lossless
  (PNG, TIFF, BMP, lossless WebP, RAW...), bit depth, the JPEG quality estimated from the
  luminance quantisation table (IJG scale; other lossy codecs count as unknown, 0), then,
  for lossy files, bytes per pixel (a smaller file for the same pixels was compressed
  harder). Copies with identical pixels (`hashes.pixel_sha256`) share the worst palette,
  grey and lossy verdict of their class: a TIFF with the pixels of a GIF holds that GIF's
  colours, a PNG with the pixels of a JPEG holds that JPEG's artefacts.
- `sharpness`: Laplacian variance (`signals.laplacian_var`).
- `metadata`: EXIF richness: camera make/model and date taken, one point each.
- `oldest`: EXIF date taken, else the earliest file mtime.

The default order is original, resolution, fidelity, sharpness, metadata, oldest.
Resolution comes before fidelity because a lossless copy is not worth keeping over four
times its pixels (a 1200 px PNG web export beside the 12 MP JPEG it came from); at equal
size, which is how format conversions come, fidelity decides (the JPEG over its GIF, the
16-bit PNG over the JPEG, the q95 JPEG over its q50 re-save). Before this order the
default was resolution, sharpness, oldest, and the dithering of a 256-colour GIF made it
"sharper" than the JPEG it came from.

`keep_reason` says, for each member, the first rule that put the representative ahead of
it ("largest: JPEG 4000×3000 vs GIF 2000×1500"); for the representative itself, the rule
that beat the runner-up.

JPEG quality and palette sizes are read from the file headers (Pillow's `open`, no pixel
decode) of the group members only, so a 100k-image collection with 20k grouped images
reads 20k headers once per duplicates run.

Example:
    >>> rep, reasons = choose(facts, labels, keep, DEFAULT_ORDER)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.archives import open_source
from lamina.core.errors import ConfigError

REPRESENTATIVE_KEYS = ("original", "resolution", "fidelity", "sharpness", "metadata", "oldest")
DEFAULT_ORDER = REPRESENTATIVE_KEYS
LABELS = {
    "original": "camera original",
    "resolution": "largest",
    "fidelity": "best quality",
    "sharpness": "sharpest",
    "metadata": "richer EXIF",
    "oldest": "oldest",
}
RAW_FORMATS = frozenset({"DNG", "CR2", "CR3", "NEF", "ARW", "ORF", "RW2", "RAF"})
LOSSLESS_FORMATS = frozenset({"PNG", "BMP", "TIFF", "GIF", "PSD", "ICO"}) | RAW_FORMATS
PALETTE_MODES = frozenset({"P", "PA", "1"})
GREY_MODES = frozenset({"L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "1"})
JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# The IJG luminance table, libjpeg's scale for quality q (`jpeg_quality_scaling`).
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.int64,
)  # fmt: skip


def _ijg_sums() -> np.ndarray:
    q = np.arange(1, 101)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    tables = np.clip((_IJG_LUMA[None, :] * scale[:, None] + 50) // 100, 1, 255)
    return tables.sum(axis=1)


_QUALITY_SUMS = _ijg_sums()  # sum of the luminance table at quality 1..100 (decreasing)


def check_representative(rules: tuple[str, ...]) -> None:
    """Refuse a representative order with an unknown or repeated rule.

    Example:
        >>> check_representative(("resolution", "sharpness"))
    """
    if set(rules) - set(REPRESENTATIVE_KEYS) or len(set(rules)) != len(rules):
        raise ConfigError(
            f"bad representative rules {list(rules)}",
            hint=f"an order of some of: {', '.join(REPRESENTATIVE_KEYS)}",
        )


# What the rules need per present image. `{extra_columns}` / `{extra_joins}` let the
# duplicates pass add its hashes; `facts_sql` fills the signals part.
FACTS_SQL = """
with present as (
    select image_id, count(*)::int as n_files, min(mtime) as first_mtime,
           min(file_path(source, rel_path)) as path from files
    where image_id is not null and status <> 'missing' group by 1
)
select p.image_id, p.n_files, p.path,
       coalesce(i.width, 0)::bigint * coalesce(i.height, 0) as pixels,
       i.width, i.height, upper(i.format) as format, i.mode, i.bit_depth,
       i.size as bytes, i.camera_make, i.camera_model,
       i.datetime_original is not null as dated,
       coalesce(try_cast(i.datetime_original as timestamp), p.first_mtime) as taken,
       {{sharpness}} as sharpness, {{grey}} as grey_by_content{extra_columns}
from present p
left join {{images}} i using (image_id)
{extra_joins}{{signals_join}}
order by p.image_id
"""
# The images columns the rules read (all written by every scan; a table written by hand
# may lack some, which then count as unknown).
IMAGE_COLUMNS = {
    "width": "integer", "height": "integer", "format": "varchar", "mode": "varchar",
    "bit_depth": "smallint", "size": "bigint", "camera_make": "varchar",
    "camera_model": "varchar", "datetime_original": "varchar",
}  # fmt: skip


def facts_sql(store: Any, extra_columns: str = "", extra_joins: str = "") -> str:
    """FACTS_SQL for this store: the signals columns when the table has them.

    Example:
        >>> store.sql(facts_sql(store)).column_names[:3]  # doctest: +SKIP
        ['image_id', 'n_files', 'path']
    """
    con = store.connect()  # one connection: each makes a view per table

    def columns_of(table: str) -> set[str]:
        return {r[0] for r in con.execute(f'describe "{table}"').fetchall()}

    columns = columns_of("signals") if "signals" in store.available_tables() else set()
    sharp = "laplacian_var" in columns
    grey = "grey_by_content" in columns
    have = columns_of("images")
    images = "images"
    if set(IMAGE_COLUMNS) - have:
        nulls = ", ".join(
            f"null::{kind} as {name}" for name, kind in IMAGE_COLUMNS.items() if name not in have
        )
        images = f"(select *, {nulls} from images)"
    return FACTS_SQL.format(extra_columns=extra_columns, extra_joins=extra_joins).format(
        images=images,
        sharpness="s.laplacian_var::double" if sharp else "null::double",
        grey="s.grey_by_content" if grey else "null::boolean",
        signals_join="left join signals s using (image_id)" if sharp or grey else "",
    )


# -- header facts ------------------------------------------------------------------------------


def jpeg_quality(luma: list[int] | np.ndarray) -> int:
    """The IJG quality (1..100) whose luminance table is closest in sum to `luma`: exact
    for libjpeg / Pillow files, the equivalent quality for a camera's own tables.

    Example:
        >>> jpeg_quality([1] * 64), jpeg_quality(_IJG_LUMA)
        (100, 50)
    """
    total = int(np.sum(luma))
    return int(np.argmin(np.abs(_QUALITY_SUMS - total))) + 1


def _webp_lossless(path: str) -> bool | None:
    """Whether a WebP holds a lossless (VP8L) bitstream, from its RIFF chunks."""
    try:
        with open_source(path) as f:
            head = f.read(4096)
    except OSError:
        return None
    pos = 12
    while pos + 8 <= len(head):
        tag = head[pos : pos + 4]
        if tag == b"VP8L":
            return True
        if tag == b"VP8 ":
            return False
        size = int.from_bytes(head[pos + 4 : pos + 8], "little")
        pos += 8 + size + (size & 1)
    return None


def header_facts(path: str | None, fmt: str | None) -> tuple[int, int, bool | None]:
    """(JPEG quality or 0, palette colours or 0, lossless WebP or None) from a file's
    header, without decoding pixels; zeros when it cannot be read.

    Example:
        >>> header_facts("photo.jpg", "JPEG")  # doctest: +SKIP
        (92, 0, None)
    """
    if not path or fmt not in JPEG_FORMATS | {"GIF", "PNG", "WEBP", "TIFF", "BMP"}:
        return 0, 0, None
    if fmt == "WEBP":
        return 0, 0, _webp_lossless(path)
    from PIL import Image

    from lamina.core.images import _init_plugins, _no_bomb_limit

    _init_plugins()
    with _no_bomb_limit():
        try:
            with open_source(path) as fh, Image.open(fh) as im:
                tables = getattr(im, "quantization", None) or {}
                quality = jpeg_quality(tables[0]) if 0 in tables else 0
                colours = 0
                if im.mode in ("P", "PA") and im.palette is not None:
                    colours = len(im.palette.palette) // max(1, len(im.palette.mode))
                return quality, colours, None
        except Exception:  # a file gone or changed since the scan: the facts are unknown
            return 0, 0, None


# -- the rules --------------------------------------------------------------------------------


def _column(t: pa.Table, name: str, default: Any) -> list[Any]:
    if name not in t.column_names:
        return [default] * t.num_rows
    return [default if v is None else v for v in t[name].to_pylist()]


@dataclass
class _Facts:
    """Per kept row (positions in `keep`): what the rules read and what the reasons say.

    Header facts (JPEG quality, palette size, lossless WebP) start unknown and are read by
    `read_headers` only for the rows where they can decide something (see `choose`)."""

    fmt: list[str]
    mode: list[str]
    paths: list[str | None]
    sha: list[str]
    width: list[int]
    height: list[int]
    pixels: np.ndarray
    sharpness: np.ndarray
    taken: np.ndarray  # int64 microseconds; max where unknown
    camera: list[str]
    dated: np.ndarray
    grey_content: np.ndarray
    bits: np.ndarray
    bytes: np.ndarray
    raw: np.ndarray
    quality: np.ndarray
    colours: np.ndarray
    webp_lossless: list[bool | None]
    read: np.ndarray  # header facts read
    # Derived (`_derive`): each file's verdicts, shared within a pixel class.
    palette: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    grey: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    lossless: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    shown_colours: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    coded: np.ndarray = field(default_factory=lambda: np.zeros(0))  # bytes of the pixel data
    inherited: list[str] = field(default_factory=list)  # format whose pixels a copy holds

    @classmethod
    def of(cls, t: pa.Table, keep: np.ndarray) -> _Facts:
        sub = t.take(pa.array(keep, pa.int64())) if len(keep) else t.slice(0, 0)
        n = sub.num_rows
        make = _column(sub, "camera_make", "")
        model = _column(sub, "camera_model", "")
        taken = (
            sub["taken"]
            .cast(pa.timestamp("us"))
            .cast(pa.int64())
            .fill_null(np.iinfo(np.int64).max)
            .to_numpy()
            if "taken" in sub.column_names
            else np.full(n, np.iinfo(np.int64).max)
        )
        fmt = [str(f) for f in _column(sub, "format", "?")]
        facts = cls(
            fmt=fmt,
            mode=[str(m) for m in _column(sub, "mode", "")],
            paths=_column(sub, "path", None),
            sha=[str(v) for v in _column(sub, "pixel_sha256", "")],
            width=[int(v) for v in _column(sub, "width", 0)],
            height=[int(v) for v in _column(sub, "height", 0)],
            pixels=np.array(_column(sub, "pixels", 0), np.float64),
            sharpness=np.array(_column(sub, "sharpness", np.nan), np.float64),
            taken=np.asarray(taken, np.int64),
            camera=[
                " ".join(p for p in (str(a).strip(), str(b).strip()) if p)
                for a, b in zip(make, model, strict=True)
            ],
            dated=np.array(_column(sub, "dated", False), bool),
            grey_content=np.array(_column(sub, "grey_by_content", False), bool),
            bits=np.array(_column(sub, "bit_depth", 8), np.float64),
            bytes=np.array(_column(sub, "bytes", 0), np.float64),
            raw=np.array([f in RAW_FORMATS for f in fmt], bool),
            quality=np.zeros(n),
            colours=np.zeros(n, np.int64),
            webp_lossless=[None] * n,
            read=np.zeros(n, bool),
        )
        facts._derive()
        return facts

    def read_headers(self, rows: np.ndarray) -> None:
        """Read the header facts of `rows` (once each), then derive the verdicts again."""
        rows = rows[~self.read[rows]]
        for i in rows.tolist():
            q, c, w = header_facts(self.paths[i], self.fmt[i])
            self.quality[i], self.colours[i], self.webp_lossless[i] = q, c, w
        self.read[rows] = True
        if len(rows):
            self._derive()

    def _derive(self) -> None:
        """Each file's palette, grey and lossless verdict, then identical pixels, identical
        limits: each pixel class takes its worst verdicts, and a lossless copy names the
        format it inherits from (a TIFF holding a GIF's pixels has that GIF's colours)."""
        fmt, mode = self.fmt, self.mode
        self.palette = np.array(
            [f == "GIF" or m in PALETTE_MODES for f, m in zip(fmt, mode, strict=True)], bool
        )
        self.grey = np.array([m in GREY_MODES for m in mode], bool) | self.grey_content
        self.lossless = np.array(
            [f in LOSSLESS_FORMATS or w is True
             for f, w in zip(fmt, self.webp_lossless, strict=True)], bool
        )  # fmt: skip
        self.shown_colours = self.colours.copy()
        self.coded = self.bytes.copy()
        self.inherited = [""] * len(fmt)
        classes: dict[str, list[int]] = {}
        for i, s in enumerate(self.sha):
            if s:
                classes.setdefault(s, []).append(i)
        for members in classes.values():
            if len(members) < 2:
                continue
            idx = np.array(members)
            worst = idx[np.lexsort((self.lossless[idx], ~self.palette[idx]))][0]
            for i in members:
                if self.lossless[i] and (
                    not self.lossless[worst] or (self.palette[worst] and not self.palette[i])
                ):
                    self.inherited[i] = self.fmt[worst]
            # Same pixels, same compression: bytes beyond the smallest copy are metadata.
            self.coded[idx] = self.coded[idx].min()
            self.shown_colours[idx] = self.colours[idx].max()
            self.palette[idx] = self.palette[idx].any()
            self.grey[idx] = self.grey[idx].any()
            self.lossless[idx] = self.lossless[idx].all()

    # Keys per rule: arrays over the kept rows, higher is better.
    def keys(self, rule: str) -> list[np.ndarray]:
        if rule == "original":
            has_camera = np.array([bool(c) for c in self.camera], bool)
            heif = np.array([f in ("HEIF", "HEIC") for f in self.fmt], bool)
            return [np.where(self.raw, 3, np.where(has_camera, np.where(heif, 2, 1), 0))]
        if rule == "resolution":
            return [self.pixels]
        if rule == "fidelity":
            lossy = ~self.lossless
            bpp = np.where(lossy & (self.pixels > 0), self.coded / np.maximum(self.pixels, 1), 0)
            return [
                (~self.palette).astype(float),
                (~self.grey).astype(float),
                self.lossless.astype(float),
                self.bits,
                np.where(lossy, self.quality, 0.0),
                np.round(bpp, 2),
            ]
        if rule == "sharpness":
            return [np.nan_to_num(self.sharpness, nan=-np.inf)]
        if rule == "metadata":
            has_camera = np.array([bool(c) for c in self.camera], bool)
            return [has_camera.astype(float) + self.dated]
        return [-self.taken.astype(np.float64)]  # oldest; no date sorts last

    # What a reason says about one row, for the rule that decided.
    def describe(self, rule: str, i: int, key: int) -> str:
        fmt = self.fmt[i] if self.fmt[i] != "?" else "image"
        if rule == "original":
            if self.raw[i]:
                return f"{fmt} RAW"
            camera = self.camera[i]
            return f"{fmt} from {camera}" if camera else f"{fmt} without camera EXIF"
        if rule == "resolution":
            return f"{fmt} {self.width[i]}×{self.height[i]}"
        if rule == "fidelity":
            return self._encoding(i, with_bpp=key == 5)
        if rule == "sharpness":
            value = self.sharpness[i]
            return f"{fmt} {value:.0f}" if np.isfinite(value) else f"{fmt} unmeasured"
        if rule == "metadata":
            parts = [p for p, ok in (("camera", self.camera[i]), ("date", self.dated[i])) if ok]
            return f"{fmt} with {' and '.join(parts) or 'no EXIF'}"
        if self.taken[i] == np.iinfo(np.int64).max:
            return f"{fmt} undated"
        when = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(self.taken[i]))
        return f"{fmt} {when:%Y-%m-%d %H:%M:%S}"

    def _encoding(self, i: int, *, with_bpp: bool) -> str:
        parts = [self.fmt[i] if self.fmt[i] != "?" else "image"]
        if self.palette[i]:
            colours = self.shown_colours[i]
            parts.append(f"{colours} colours" if colours else "palette")
        if self.grey[i]:
            parts.append("greyscale")
        if self.bits[i] > 8:
            parts.append(f"{self.bits[i]:.0f}-bit")
        if self.lossless[i] and not self.palette[i]:  # a palette has lost colours already
            parts.append("lossless")
        elif self.quality[i]:
            parts.append(f"q{self.quality[i]:.0f}")
        if self.inherited[i]:
            parts.append(f"(pixels of a {self.inherited[i]})")
        if with_bpp and not self.lossless[i]:
            parts.append(f"{self.coded[i] / max(self.pixels[i], 1):.2f} bytes/px")
        return " ".join(parts)


def choose(
    t: pa.Table, labels: np.ndarray, keep: np.ndarray, rules: tuple[str, ...]
) -> tuple[np.ndarray, list[str]]:
    """The representative of each group and the reason of each kept row.

    `rep[label]` is the row that represents its group (-1 for labels of no kept row);
    `reasons[k]` is why `keep[k]` lost to its representative, or for the representative,
    why it beat the runner-up. `t` has FACTS_SQL's columns (missing ones count as unknown).

    Example:
        >>> t = pa.table({"pixels": [4, 9], "taken": pa.nulls(2, pa.timestamp("us"))})
        >>> rep, why = choose(t, np.array([0, 0]), np.array([0, 1]), ("resolution",))
        >>> int(rep[0]), why[0]
        (1, 'largest: image 0×0 vs image 0×0')
    """
    rep = np.full(len(labels), -1)
    if not len(keep):
        return rep, []
    facts = _Facts.of(t, keep)
    group = labels[keep]
    _read_deciding_headers(facts, group, rules)
    keys, owner = _keys(facts, rules)
    pos = np.arange(len(keep))
    # lexsort: last key first; keys descending, then the smallest image_id (row order).
    order = np.lexsort([pos, *(-k for k in reversed(keys)), group])
    firsts = np.ones(len(order), bool)
    firsts[1:] = group[order][1:] != group[order][:-1]
    best = np.full(len(labels), -1)
    best[group[order][firsts]] = order[firsts]
    rep[group[order][firsts]] = keep[order[firsts]]
    # Runner-up of each group: the row after its first, when the group has one.
    second = np.full(len(labels), -1)
    heads = np.flatnonzero(firsts)
    heads = heads[heads + 1 < len(order)]
    heads = heads[~firsts[heads + 1]]
    second[group[order][heads]] = order[heads + 1]
    winner = best[group]
    loser = np.where(winner == pos, second[group], pos)
    return rep, _reasons(facts, keys, owner, winner, loser)


def _keys(facts: _Facts, rules: tuple[str, ...]) -> tuple[list[np.ndarray], list[tuple[str, int]]]:
    """The sort keys of `rules` in order, and (rule, index within the rule) of each."""
    keys: list[np.ndarray] = []
    owner: list[tuple[str, int]] = []
    for rule in rules:
        for k, key in enumerate(facts.keys(rule)):
            keys.append(np.asarray(key, np.float64))
            owner.append((rule, k))
    return keys, owner


FIDELITY_QUALITY_KEY = 4  # index of the JPEG quality among the fidelity keys


def _read_deciding_headers(facts: _Facts, group: np.ndarray, rules: tuple[str, ...]) -> None:
    """Read the file headers that can change the order: WebP files in groups (lossless or
    not), and JPEGs that tie with another JPEG of their group on every key before the
    quality. Most groups are decided before (a resize, a camera original), so most files
    are never opened here."""
    if "fidelity" not in rules:
        return
    size = np.bincount(group)[group]
    webp = np.array([f == "WEBP" for f in facts.fmt], bool)
    facts.read_headers(np.flatnonzero(webp & (size > 1)))
    before = rules[: rules.index("fidelity")]
    prefix = [k for rule in before for k in facts.keys(rule)]
    prefix += facts.keys("fidelity")[:FIDELITY_QUALITY_KEY]
    jpeg = np.flatnonzero(np.array([f in JPEG_FORMATS for f in facts.fmt], bool) & ~facts.lossless)
    if len(jpeg) < 2:
        return
    rows = np.column_stack([group[jpeg], *(np.asarray(k, np.float64)[jpeg] for k in prefix)])
    _, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    facts.read_headers(jpeg[counts[inverse.ravel()] > 1])


def _reasons(
    facts: _Facts,
    keys: list[np.ndarray],
    owner: list[tuple[str, int]],
    winner: np.ndarray,
    loser: np.ndarray,
) -> list[str]:
    matrix = np.stack(keys, axis=1) if keys else np.zeros((len(winner), 0))
    decided: list[tuple[str, int] | None] = []
    for w, lo in zip(winner.tolist(), loser.tolist(), strict=True):
        differ = np.flatnonzero(matrix[w] != matrix[lo]) if lo >= 0 else []
        decided.append(owner[differ[0]] if len(differ) else None)
    # A reason decided by the encoding names the JPEG quality and palette size: read the
    # headers of those rows too (WebP excluded: its lossless flag was read, or is moot).
    said = {
        i
        for d, w, lo in zip(decided, winner.tolist(), loser.tolist(), strict=True)
        if d is not None and d[0] == "fidelity"
        for i in (w, lo)
        if facts.fmt[i] != "WEBP"
    }
    facts.read_headers(np.array(sorted(said), dtype=np.int64))
    out: list[str] = []
    for d, w, lo in zip(decided, winner.tolist(), loser.tolist(), strict=True):
        if lo < 0:
            out.append("the only image of its group (byte-identical files)")
        elif d is None:
            out.append("equal by every rule: the smallest image id")
        else:
            rule, k = d
            kept, other = facts.describe(rule, w, k), facts.describe(rule, lo, k)
            out.append(f"{LABELS[rule]}: {kept} vs {other}")
    return out


def representatives(
    t: pa.Table, labels: np.ndarray, keep: np.ndarray, rules: tuple[str, ...]
) -> np.ndarray:
    """rep[label] = the row that represents its group, for the labels of the rows in `keep`
    (see `choose`, which also gives the reasons).

    Example:
        >>> t = pa.table({"pixels": [4, 9], "taken": pa.nulls(2, pa.timestamp("us"))})
        >>> int(representatives(t, np.array([0, 0]), np.array([0, 1]), ("resolution",))[0])
        1
    """
    return choose(t, labels, keep, rules)[0]
