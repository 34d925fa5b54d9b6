"""Duplicates: group images that are copies of one capture, and pick who represents each.

Edges between images, merged with union-find into groups:

- *pixel*: the same `pixel_sha256` (lossless re-encodes, metadata-only edits);
- *near*: pHash within `phash_threshold` AND dHash within `dhash_threshold` bits. Both must
  hold, which guards against chaining: dHash alone joins crops of a text page that barely
  overlap (2-5 bits), and a second, mostly independent hash makes chance matches between
  unrelated photos rarer at scale (none of 57k pairs of photo tiles had pHash <= 10);
- *flip* / *rotation* (`invariant=True`): the same rule between a dihedral transform of
  one image's hashes (`hashes.phash_dihedral[k]`) and the other's plain hashes.

Byte-identical files share an `image_id` already: `n_files` counts them, and an image alone
in its group is still listed when `n_files > 1`, so every redundant file can be found here.

The representative is the first by the `representative` rules (`lamina.analysis.representative`:
by default camera original, then most pixels, then the best encoding (no palette, lossless,
bit depth, JPEG quality), sharpest, richer EXIF, oldest), then the smallest image_id;
`keep_reason` says which rule put it ahead of each member. `distance` is a
member's pHash distance to it (under the best transform when invariant); `kind` says how it
relates to it: representative, pixel, near, flip (k = 4..7) or rotation (k = 1..3).
`group_id` is the smallest image_id of the group.

Defaults, tuned on a labelled set (21 skimage photos x {JPEG q30, 50 % resize, 5 %-a-side
crop, brightness x0.8, PNG<->JPEG, flip, rot90} + crops of one photo overlapping < 30 %,
decoded by the real `working` recipe; tests/analysis/test_duplicates.py keeps a small copy):
phash <= 10 and dhash <= 12 give pairwise precision 1.000, recall 0.785 (invariant: 1.000,
0.871). Every edit but crops groups with its original (re-encodes, resizes, tone and format
changes sit at pHash <= 4, dHash <= 8; flips and rot90 with invariant); 5 %-a-side crops
reach pHash 6..26 (a 10 % zoom moves a 64-bit hash as far as another photo), so only 0.33
of them group (0.43 invariant; 0.52 at 12/12, for 2-2.5x the search time): crops need
embeddings. Different photos sit at pHash >= 20, the < 30 % overlapping crops at >= 22.
The motorcycle stereo pair (pHash 4, dHash 10-11) groups as *near*: two views a few pixels
apart are one picture to a 64-bit hash (no threshold that keeps q30 copies splits them
reliably), and a dataset wants one of them; telling captures apart needs embeddings.

Near-duplicate search never builds an N x N matrix: multi-index hashing (MIH) on pHash.
Split 64 bits into blocks with radii r_i; if sum(r_i + 1) > t, every pair within t bits
has a block within its radius (pigeonhole), so probing each key's buckets at distance
<= r_i in dense per-block tables, then verifying the full distance, is exact. Measured on
2 cores shared with other work (load ~3), 20 % of the codes in clusters of 2-10; a
self-join, each pair once; memory = tracemalloc peak (faiss: process RSS); exact = the same
neighbours as brute force for sampled codes:

    index                      n     t=8      t=10     t=12     build   memory   exact
    MIH (this module, numpy)   100k  0.5 s    1.4 s    2.8 s    0.03 s  0.1 GB   yes
    MIH (this module, numpy)   1M    13 s     43 s     108 s    0.3 s   0.17 GB  yes
    faiss IndexBinaryMultiHash 100k  9-17 s   8.8 s    115 s    0.1 s   1.0 GB   yes
    faiss IndexBinaryMultiHash 1M    200 s    -        -        2.3 s   0.6 GB   yes
    faiss IndexBinaryHash      100k  -        ~305 s   -        0.03 s  -        yes
    BK-tree (pure Python)      100k  ~5400 s  ~7900 s  -        0.3 s   0.1 GB   yes

So MIH in numpy, no new dependency. `invariant=True` replaces the self-join with one join:
an index over the distinct plain pHashes and the 7 transformed pHashes of every image,
probed once by each plain pHash (n probes; probing with the 7n transformed codes, as
7 cross-joins, made 7x the probes for the same candidates). The candidates
(code pairs sharing a block within its radius) still grow as 8 n^2 against the self-join's
n^2 / 2, so the invariant pass costs ~5-8x the plain one (100k-1M)
(bench/results/duplicates.md).

Example:
    >>> run_passes(store, [("hashes", None), ("duplicates", {"invariant": True})])  # doctest: +SKIP
    >>> store.sql("select group_id, image_id, kind from duplicates")             # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from math import comb
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.analysis.representative import (
    DEFAULT_ORDER,
    check_representative,
    choose,
    facts_sql,
)
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.passes import Pass, register
from lamina.passes.hashes import hamming, popcount

MAX_BLOCK_BITS = 22  # dense bucket tables of 2^22 entries: 4 M x 17 bytes
BATCH = 1 << 21  # probes (and about as many candidates) handled at a time


@dataclass(frozen=True)
class DuplicatesConfig:
    """phash_threshold / dhash_threshold: largest Hamming distances (of 64 bits) of a near
    pair, both must hold; invariant: also match flips and 90-degree rotations; representative:
    the order of the rules that pick a group's representative (see
    `lamina.analysis.representative.REPRESENTATIVE_KEYS`)."""

    phash_threshold: int = 10
    dhash_threshold: int = 12
    invariant: bool = False
    representative: tuple[str, ...] = DEFAULT_ORDER

    def __post_init__(self) -> None:
        for name in ("phash_threshold", "dhash_threshold"):
            if not 0 <= getattr(self, name) <= 32:
                raise ConfigError(f"{name} must be within 0..32", hint="the default is 10/12")
        check_representative(self.representative)


DUPLICATES_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("group_id", pa.string()),
        ("group_size", pa.int32()),
        ("representative", pa.string()),
        ("is_representative", pa.bool_()),
        ("kind", pa.string()),
        ("distance", pa.int32()),
        ("n_files", pa.int32()),
        ("keep_reason", pa.string()),
    ]
)

# -- multi-index hashing ---------------------------------------------------------------------


def plan_blocks(n_codes: int, n_queries: int, threshold: int) -> list[tuple[int, int, int]]:
    """(shift, bits, radius) of each probed block: equal blocks, radii summing to
    threshold + 1 - m (pigeonhole), the block count minimising probes + candidates.

    Example:
        >>> plan_blocks(1_000_000, 1_000_000, 8)
        [(0, 22, 2), (22, 21, 2), (43, 21, 2)]
    """
    best: tuple[float, list[tuple[int, int, int]]] | None = None
    for m in range(1, 9):
        widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
        if max(widths) > MAX_BLOCK_BITS:
            continue
        need = threshold + 1  # sum of (radius + 1); a block with radius -1 is not probed
        radii = [need // m + (1 if i < need % m else 0) - 1 for i in range(m)]
        cost, blocks, shift = 0.0, [], 0
        for width, radius in zip(widths, radii, strict=True):
            if radius >= 0:
                probes = sum(comb(width, k) for k in range(radius + 1))
                # a candidate costs about 4 probes (expand, gather, xor, popcount)
                cost += n_queries * probes * (1.0 + 4 * n_codes / 2**width) + 2**width
                blocks.append((shift, width, radius))
            shift += width
        if best is None or cost < best[0]:
            best = (cost, blocks)
    assert best is not None
    return best[1]


def _masks(bits: int, radius: int) -> np.ndarray:
    """Non-zero masks of <= radius bits, ascending (so grouped by their highest bit)."""
    out = [
        sum(1 << b for b in combo)
        for r in range(1, radius + 1)
        for combo in itertools.combinations(range(bits), r)
    ]
    return np.array(sorted(out), dtype=np.int64)


def _expand(qi: np.ndarray, starts: np.ndarray, cnt: np.ndarray):
    """Each query index against the position (in key order) of every code of its probed
    bucket."""
    total = int(cnt.sum())
    # position in order = the bucket's start + (flat index - the bucket's first flat index)
    shift = starts - (np.cumsum(cnt) - cnt)
    return np.repeat(qi, cnt), np.repeat(shift, cnt) + np.arange(total)


def _candidates(
    kc: np.ndarray, kq: np.ndarray | None, bits: int, radius: int, order: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(query index, code position in `order`, the codes sorted by key) pairs whose block
    keys differ in <= radius bits; a self-join (kq None) yields each unordered pair once."""
    counts = np.bincount(kc, minlength=1 << bits)
    starts = np.cumsum(counts) - counts
    occupied = counts > 0  # 4 MB: stays in cache, unlike the counts
    if kq is None:
        # Mask 0: the pairs inside each bucket. Then probe only from the lower key of a
        # pair (its bit at the mask's highest bit is 0): the other end would find it again.
        keys = kc[order]
        pos = np.arange(len(keys))
        later = starts[keys] + counts[keys] - pos - 1
        first, second = _expand(pos, pos + 1, later)
        yield order[first], second
        ids = order
    else:
        ids = np.argsort(kq, kind="stable")  # probing in key order keeps table reads local
        keys = kq[ids]
        hit = occupied[keys]
        yield _expand(ids[hit], starts[keys[hit]], counts[keys[hit]])
    masks = _masks(bits, radius)
    high = np.floor(np.log2(np.maximum(masks, 1))).astype(np.int64)
    per_probe = 1.0 + len(kc) / 2**bits
    for hb in np.unique(high):
        group = masks[high == hb]
        sel = ((keys >> hb) & 1) == 0 if kq is None else slice(None)
        q_ids, q_keys = ids[sel], keys[sel]
        step = max(1, int(BATCH / per_probe) // max(1, len(q_keys)))
        for g0 in range(0, len(group), step):
            fs = group[g0 : g0 + step]
            probe = (q_keys[None, :] ^ fs[:, None]).ravel()
            hit = np.flatnonzero(occupied[probe])
            probe = probe[hit]
            yield _expand(q_ids[hit % len(q_ids)], starts[probe], counts[probe])


def pairs_within(
    codes: np.ndarray, threshold: int, queries: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair within `threshold` bits, exactly, by multi-index hashing: (i, j, distance)
    with `i` indexing `queries` and `j` `codes`; without queries, a self-join with i < j.

    Example:
        >>> codes = np.array([0, 1, 3, -1], dtype=np.int64)
        >>> [a.tolist() for a in pairs_within(codes, 1)]
        [[0, 1], [1, 2], [1, 1]]
    """
    c = np.ascontiguousarray(codes, dtype=np.int64).view(np.uint64)
    q = c if queries is None else np.ascontiguousarray(queries, dtype=np.int64).view(np.uint64)
    blocks = plan_blocks(len(c), len(q), threshold)
    out_i, out_j, out_d = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, int)]
    for b, (shift, bits, radius) in enumerate(blocks):
        keymask = np.uint64((1 << bits) - 1)
        kc = ((c >> np.uint64(shift)) & keymask).astype(np.int64)
        kq = None if queries is None else ((q >> np.uint64(shift)) & keymask).astype(np.int64)
        order = np.argsort(kc, kind="stable")
        by_key = c[order]  # a bucket's codes side by side: candidates read them in order
        for qi, pos in _candidates(kc, kq, bits, radius, order):
            x = q[qi] ^ by_key[pos]
            d = popcount(x)
            keep = np.flatnonzero(d <= threshold)  # few: the later checks run on these only
            x, d, qi, cj = x[keep], d[keep], qi[keep], order[pos[keep]]
            # Report a pair only from the first block whose radius it meets: once in all.
            first = np.ones(len(keep), bool)
            for s2, b2, r2 in blocks[:b]:
                first &= popcount((x >> np.uint64(s2)) & np.uint64((1 << b2) - 1)) > r2
            out_i.append(qi[first])
            out_j.append(cj[first])
            out_d.append(d[first].astype(int))
    i, j, d = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)
    if queries is None:
        i, j = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Union-find over edges (i, j), vectorised: each node's label is the smallest node of
    its component (hook roots onto the smaller root, then jump pointers, until stable).

    Example:
        >>> components(5, np.array([3, 1]), np.array([4, 3])).tolist()
        [0, 1, 2, 1, 1]
    """
    parent = np.arange(n)
    while True:
        pi, pj = parent[i], parent[j]
        differ = pi != pj
        if not differ.any():
            return parent
        lo, hi = np.minimum(pi[differ], pj[differ]), np.maximum(pi[differ], pj[differ])
        np.minimum.at(parent, hi, lo)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


# -- the pass ----------------------------------------------------------------------------------

# The hashes the grouping reads, beside the facts the representative rules read.
HASH_COLUMNS = ", h.phash, h.dhash, h.phash_dihedral, h.dhash_dihedral, h.pixel_sha256"
HASH_JOIN = "left join hashes h using (image_id)\n"


def _dihedral(table: pa.Table, name: str, valid: np.ndarray) -> np.ndarray:
    out = np.zeros((table.num_rows, 8), np.int64)
    column = table[name].combine_chunks()
    if valid.any():
        values = column.filter(pa.array(valid)).flatten().to_numpy(zero_copy_only=False)
        out[valid] = values.reshape(-1, 8)
    return out


@dataclass
class _Images:
    """The per-image arrays the grouping works on, in image_id order (0 where no hashes)."""

    ids: np.ndarray
    valid: np.ndarray  # has hashes
    phash: np.ndarray
    dhash: np.ndarray
    p8: np.ndarray  # (n, 8) dihedral pHashes
    d8: np.ndarray
    sha: np.ndarray  # pixel_sha256, "" where none
    n_files: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)

    @classmethod
    def from_table(cls, t: pa.Table) -> _Images:
        valid = t["phash"].is_valid().to_numpy(zero_copy_only=False)
        return cls(
            ids=np.array(t["image_id"].to_pylist(), dtype=object),
            valid=valid,
            phash=t["phash"].fill_null(0).to_numpy(),
            dhash=t["dhash"].fill_null(0).to_numpy(),
            p8=_dihedral(t, "phash_dihedral", valid),
            d8=_dihedral(t, "dhash_dihedral", valid),
            sha=np.array(t["pixel_sha256"].fill_null("").to_pylist(), dtype=object),
            n_files=t["n_files"].to_numpy(),
        )


@register
class DuplicatesPass(Pass):
    """Groups of pixel-identical, near-duplicate (and, if invariant, flipped or rotated)
    images, each with its representative, from the hashes layer."""

    name = "duplicates"
    version = "2"
    kind = "global"
    Config = DuplicatesConfig
    reads = ("files", "images", "hashes", "signals")
    schema = DUPLICATES_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        if not store.table_files("files") or not store.table_files("images"):
            return self.schema.empty_table()
        if not store.table_files("hashes"):
            raise LaminaError("duplicates need the hashes table", hint="run `lamina sense`")
        return self._groups(store.sql(facts_sql(store, HASH_COLUMNS, HASH_JOIN)))

    def _groups(self, t: pa.Table) -> pa.Table:
        """The output rows from the per-image input rows (`facts_sql` with HASH_COLUMNS)."""
        cfg = self.config
        im = _Images.from_table(t)
        if im.n == 0:
            return self.schema.empty_table()
        edges_i, edges_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        # Pixel-identical: neighbours in pixel_sha256 order.
        has_sha = np.flatnonzero(im.sha != "")
        by_sha = has_sha[np.argsort(im.sha[has_sha], kind="stable")]
        same = im.sha[by_sha[1:]] == im.sha[by_sha[:-1]]
        edges_i.append(by_sha[:-1][same])
        edges_j.append(by_sha[1:][same])
        # Near: search the distinct (pHash, dHash) codes; equal codes join their first image.
        rows = np.flatnonzero(im.valid)
        codes = np.stack([im.phash[rows], im.dhash[rows]], axis=1)
        uniq, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
        head = rows[first]
        edges_i.append(rows)
        edges_j.append(head[inverse.ravel()])
        if not cfg.invariant:
            a, b, _ = pairs_within(uniq[:, 0], cfg.phash_threshold)
            ok = hamming(uniq[a, 1], uniq[b, 1]) <= cfg.dhash_threshold
            edges_i.append(head[a[ok]])
            edges_j.append(head[b[ok]])
        else:
            # Transform k (0..7) of image i against the plain hashes of j, as one join: the
            # index holds the distinct plain codes and the 7 transformed codes of each image,
            # and each distinct plain code probes it once. Probing from the plain side makes
            # n probes, not 7n (the candidates, pairs sharing a block within its radius, are
            # the same either way), and the plain pairs come in it too (both ways: the same
            # components as the self-join).
            moved = np.concatenate([uniq[:, 0], im.p8[rows, 1:].ravel()])
            b, c, _ = pairs_within(moved, cfg.phash_threshold, queries=uniq[:, 0])
            plain = c < len(uniq)
            u, m = np.minimum(c, len(uniq) - 1), np.maximum(c - len(uniq), 0)  # in range
            src = np.where(plain, head[u], rows[m // 7])
            dh = np.where(plain, uniq[u, 1], im.d8[rows[m // 7], m % 7 + 1])
            ok = hamming(dh, uniq[b, 1]) <= cfg.dhash_threshold
            edges_i.append(src[ok])
            edges_j.append(head[b[ok]])
        labels = components(im.n, np.concatenate(edges_i), np.concatenate(edges_j))
        size = np.bincount(labels, minlength=im.n)[labels]
        keep = np.flatnonzero((size > 1) | (im.n_files > 1))
        rep, reasons = choose(t, labels, keep, self.config.representative)
        return self._rows(im, labels, size, keep, rep, reasons)

    def _rows(
        self,
        im: _Images,
        labels: np.ndarray,
        size: np.ndarray,
        keep: np.ndarray,
        rep: np.ndarray,
        reasons: list[str],
    ) -> pa.Table:
        """One row per kept image: its group, representative, kind, distance and why the
        representative was kept over it."""
        cfg = self.config
        r = rep[labels[keep]]
        is_rep = r == keep
        transforms = range(8) if cfg.invariant else range(1)
        # Distance of each member to its representative under each allowed transform k:
        # member ~ transform k of the representative.
        dp = np.stack([hamming(im.phash[keep], im.p8[r, k]) for k in transforms], axis=1)
        dd = np.stack([hamming(im.dhash[keep], im.d8[r, k]) for k in transforms], axis=1)
        match = (dp <= cfg.phash_threshold) & (dd <= cfg.dhash_threshold)
        # The matching transform closest in pHash (identity first on ties), else the closest:
        # a member linked only through another member may be farther than the thresholds.
        closest = np.argmin(np.where(match, dp, 99), axis=1)
        best = np.where(match.any(axis=1), closest, np.argmin(dp, axis=1))
        # Only a representative can lack hashes (alone in its group, listed for n_files > 1).
        distance = np.where(is_rep, 0, dp[np.arange(len(keep)), best])
        kind = np.array(["near"] + ["rotation"] * 3 + ["flip"] * 4, dtype=object)[best]
        kind[(im.sha[keep] == im.sha[r]) & (im.sha[keep] != "")] = "pixel"
        kind[is_rep] = "representative"
        out = pa.table(
            {
                "image_id": pa.array(im.ids[keep].tolist(), pa.string()),
                "group_id": pa.array(im.ids[labels[keep]].tolist(), pa.string()),
                "group_size": pa.array(size[keep], pa.int32()),
                "representative": pa.array(im.ids[r].tolist(), pa.string()),
                "is_representative": pa.array(is_rep),
                "kind": pa.array(kind.tolist(), pa.string()),
                "distance": pa.array(distance, pa.int32()),
                "n_files": pa.array(im.n_files[keep], pa.int32()),
                "keep_reason": pa.array(reasons, pa.string()),
            },
            schema=self.schema,
        )
        return out.sort_by([("group_id", "ascending"), ("is_representative", "descending"),
                            ("image_id", "ascending")])  # fmt: skip
