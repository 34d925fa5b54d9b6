"""Hashes: perceptual hashes of every image (pHash, dHash, aHash, wHash) and the exact
hash of its decoded pixels, for finding duplicates (`lamina.analysis.duplicates`).

Each 64-bit hash follows the `imagehash` package's definition, computed with numpy on small
grey arrays made from one *reduced* grey image: the working image's luma (PIL "L", shared
with the signals pass), box-reduced by the integer factor k = short side // 128 when that is
2 or more (Pillow's `reduce`, what `resize(..., reducing_gap=4)` does). Lanczos resizes
of it, as imagehash makes them, give pHash and dHash; aHash and wHash come from the 32x32
array, not from resizes of their own (each costs ~0.2 ms an image):

- pHash: Lanczos resize to 32x32, 2-D DCT-II, the 8x8 lowest frequencies, bit = coefficient
  > their median.
- dHash: resized to 9 wide x 8 high, bit = pixel brighter than its left neighbour.
- aHash: the 32x32 array Lanczos-resized to 8x8 (rounded to whole levels), bit = pixel >
  mean.
- wHash: imagehash's Haar wHash at scale 32 (the max-level Haar LL removed, the Haar LL at
  8x8, bit = coefficient > median): with Haar that LL is the 8x8 block sums of the 32x32
  array minus a constant, which is what we threshold (exact sums, so degenerate flat images
  give 0 bits where pywt's rounding gives noise). imagehash takes it at the largest power of
  two <= the short side.

An image whose working short side is under 256 px is not reduced: its pHash and dHash are
bit for bit imagehash 4.3's on the working image, its aHash and wHash within 0-2 bits (on
the skimage photos). Larger ones (most photos: the working image has a 512 px long side)
cost a fifth of the full Lanczos resizes; on the 29 package photos
(`lamina.sample.package_photos()`, thumbnailed to 512 px) the reduction moves pHash, dHash
and aHash by 0-4 bits from imagehash's, far inside the duplicate thresholds (10 / 12).

Bits are read row by row, the first bit the most significant, so `to_hex` gives the same
16 hex digits as `str(imagehash.phash(img))`. A hash is stored as int64: the signed
reinterpretation of its uint64 bit pattern (Parquet and DuckDB have no uint64 that every
reader handles); `to_hex` and `as_uint64` undo it, and Hamming distances are the same.

`phash_dihedral` / `dhash_dihedral` hold the hash of each of the 8 symmetries of the image,
in `DIHEDRAL` order; index 0 is the hash itself. They cost array operations, not resizes:
the 32x32 array is flipped and transposed before one batched DCT (a flip of the input only
changes the sign of the odd DCT coefficients, so the median test could even reuse one DCT;
the matmul of all eight is ~10 us an image), and dHash's 9x8 and 8x9 arrays give its eight.
So `phash_dihedral[k]` of an image equals the pHash of `transform(image, k)` for the
transforms that keep the axes; for those that swap them, Pillow's two resize passes (and
the box reduction's partial last row or column) round in the other order (pHash <= 2,
dHash <= 5 bits apart on the skimage photos).

Example:
    >>> run_pass(store, "hashes")                                     # doctest: +SKIP
    >>> store.sql("select image_id, phash from hashes limit 1")       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from lamina.core.passes import NoConfig, Pass, register

# The 8 symmetries of a rectangle; `transform(a, k)` applies number k. rot90 turns counter-
# clockwise (like np.rot90 and PIL's Image.Transpose.ROTATE_90); "flip_lr+rotK" flips first.
DIHEDRAL = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip_lr",
    "flip_lr+rot90",
    "flip_lr+rot180",
    "flip_lr+rot270",
)
LANCZOS = Image.Resampling.LANCZOS  # imagehash's ANTIALIAS

HASHES_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("error", pa.string()),
        ("detail", pa.string()),
        ("phash", pa.int64()),
        ("dhash", pa.int64()),
        ("ahash", pa.int64()),
        ("whash", pa.int64()),
        ("phash_dihedral", pa.list_(pa.int64(), 8)),
        ("dhash_dihedral", pa.list_(pa.int64(), 8)),
        ("pixel_sha256", pa.string()),
    ]
)

# Rows 0..7 of the unnormalised DCT-II matrix for n = 32 (scipy.fftpack.dct up to a factor
# 2 per axis, which the median threshold ignores).
_N = np.arange(32)
_DCT8 = np.cos(np.pi * np.arange(8)[:, None] * (2 * _N[None, :] + 1) / 64)


def transform(a: np.ndarray, k: int) -> np.ndarray:
    """Apply dihedral transform number `k` (see `DIHEDRAL`) to the last two axes of `a`.

    Example:
        >>> transform(np.array([[1, 2], [3, 4]]), 4).tolist()  # flip_lr
        [[2, 1], [4, 3]]
    """
    if k >= 4:
        a = np.flip(a, axis=-1)
    return np.rot90(a, k % 4, axes=(-2, -1))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(..., 8, 8) booleans -> int64 hashes, row-major, the first bit most significant.

    Example:
        >>> to_hex(int(pack_bits(np.eye(8, dtype=bool))))
        '8040201008040201'
    """
    flat = bits.reshape(*bits.shape[:-2], 64)
    packed = np.packbits(flat, axis=-1)  # big-endian within each byte
    return np.ascontiguousarray(packed).view(">u8")[..., 0].astype(np.uint64).view(np.int64)


def as_uint64(h: int) -> int:
    """The unsigned bit pattern of a stored (int64) hash.

    Example:
        >>> as_uint64(-1) == 2**64 - 1
        True
    """
    return int(h) & 0xFFFF_FFFF_FFFF_FFFF


def to_hex(h: int) -> str:
    """A stored (int64) hash as 16 hex digits, as `str(imagehash.ImageHash)` writes it.

    Example:
        >>> to_hex(-1), to_hex(255)
        ('ffffffffffffffff', '00000000000000ff')
    """
    return f"{as_uint64(h):016x}"


def from_hex(text: str) -> int:
    """16 hex digits -> the stored (int64) hash; the inverse of `to_hex`.

    Example:
        >>> from_hex("ffffffffffffffff")
        -1
    """
    value = int(text, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


_POP16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each 64-bit integer (`np.bitwise_count` where numpy has it).

    Example:
        >>> popcount(np.array([0, 7, -1], dtype=np.int64)).tolist()
        [0, 3, 64]
    """
    x = np.asarray(x).view(np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    parts = x.view(np.uint16).reshape(*x.shape, 4)  # numpy < 2.0
    return _POP16[parts].sum(axis=-1, dtype=np.uint8)


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Hamming distances between stored hashes (broadcasting).

    Example:
        >>> int(hamming(np.int64(0), np.int64(-1)))
        64
    """
    return popcount(np.bitwise_xor(np.asarray(a, np.int64), np.asarray(b, np.int64)))


def _resized(grey: Image.Image, width: int, height: int) -> np.ndarray:
    return np.asarray(grey.resize((width, height), LANCZOS), dtype=np.float64)


def _median_bits(values: np.ndarray) -> np.ndarray:
    """(..., 8, 8) -> bits above the median of each 8x8."""
    flat = values.reshape(*values.shape[:-2], 64)
    med = np.median(flat, axis=-1)
    return values > med[..., None, None]


REDUCED_SIDE = 128  # the box reduction keeps the short side at least this long


def grey_stack(
    rgb: np.ndarray | None, grey: np.ndarray | Image.Image | None = None
) -> dict[str, np.ndarray]:
    """The small grey arrays the hashes are computed from: PIL "L", box-reduced by
    short side // 128, then imagehash's Lanczos resizes for pHash (32x32) and dHash (9x8,
    and 8x9 for the dihedral variants that swap the axes). aHash and wHash come from the
    32x32 array, not from more resizes of the image (each costs ~0.2 ms): aHash's 8x8 is a
    Lanczos resize of it (rounded to whole levels), wHash reads its 4x4 block sums.
    `grey`: the luma of `rgb`, when already computed (an array or a Pillow "L" image; then
    `rgb` may be None).

    Example:
        >>> g = grey_stack(np.zeros((300, 400, 3), np.uint8))
        >>> g["p"].shape, g["d"].shape, g["d_t"].shape, g["w"].shape
        ((32, 32), (8, 9), (9, 8), (8, 8))
    """
    if grey is None:
        if rgb is None:
            raise ValueError("grey_stack needs rgb or grey")
        img = Image.fromarray(rgb).convert("L")
    else:
        img = grey if isinstance(grey, Image.Image) else Image.fromarray(grey)
    k = min(img.size) // REDUCED_SIDE
    small = img.reduce(k) if k >= 2 else img
    p32 = small.resize((32, 32), LANCZOS)
    p = np.asarray(p32, dtype=np.float64)
    pf = Image.fromarray(p.astype(np.float32), "F")
    return {
        "p": p,
        "d": _resized(small, 9, 8),  # 9 wide, 8 high
        # For the transforms that swap the axes: its own resize of the image. Resized from
        # the 32x32 array instead, a nearly flat frame's rot90 variant was 8 bits (float:
        # 30+) from the turned frame's dHash, where this gives 0.
        "d_t": _resized(small, 8, 9),
        # Rounded to whole levels, as a resize of the "L" image is (ties give no bit).
        "a": np.rint(np.asarray(pf.resize((8, 8), LANCZOS), dtype=np.float64)),
        # wHash's 8x8 Haar LL at scale 32: block sums of 4x4 (integers: exact)
        "w": p.reshape(8, 4, 8, 4).sum(axis=(1, 3)),
    }


def compute_hashes(greys: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batched hashes of images given as `grey_stack` dicts: phash, dhash, ahash, whash
    (int64, n) and phash_dihedral, dhash_dihedral (int64, n x 8).

    Example:
        >>> rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
        >>> out = compute_hashes([grey_stack(rgb)])
        >>> bool(out["phash"][0] == out["phash_dihedral"][0, 0])
        True
    """
    n = len(greys)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return {
            "phash": empty, "dhash": empty, "ahash": empty, "whash": empty,
            "phash_dihedral": np.zeros((0, 8), np.int64),
            "dhash_dihedral": np.zeros((0, 8), np.int64),
        }  # fmt: skip
    p = np.stack([g["p"] for g in greys])  # (n, 32, 32)
    p8 = np.stack([transform(p, k) for k in range(8)], axis=1)  # (n, 8, 32, 32)
    low = _DCT8 @ p8 @ _DCT8.T  # (n, 8, 8, 8): one matmul for every image and transform
    phash_d = pack_bits(_median_bits(low))

    d = np.stack([g["d"] for g in greys])  # (n, 8, 9)
    d_t = np.stack([g["d_t"] for g in greys])  # (n, 9, 8)
    dhash_d = np.empty((n, 8), np.int64)
    for k in range(8):
        # dHash of the transformed image = gradient of the transformed 9x8 resize; the
        # transforms that swap axes start from the 8-wide, 9-high resize.
        g = transform(d_t if k % 2 else d, k)  # (n, 8, 9)
        dhash_d[:, k] = pack_bits(g[..., 1:] > g[..., :-1])

    a = np.stack([g["a"] for g in greys])
    ahash = pack_bits(a > a.mean(axis=(-2, -1), keepdims=True))
    whash = pack_bits(_median_bits(np.stack([g["w"] for g in greys])))
    return {
        "phash": phash_d[:, 0].copy(),
        "dhash": dhash_d[:, 0].copy(),
        "ahash": ahash,
        "whash": whash,
        "phash_dihedral": phash_d,
        "dhash_dihedral": dhash_d,
    }


@register
class HashesPass(Pass):
    """Perceptual hashes (pHash, dHash, aHash, wHash; pHash and dHash also of the 8 flips and
    rotations) and the SHA-256 of the decoded pixels of every image."""

    name = "hashes"
    version = "3"  # 3: aHash and wHash from the 32x32 pHash array
    Config = NoConfig
    reads = ("images",)
    decode = "working"
    schema = HASHES_SCHEMA

    def process_decoded(self, batch: pa.Table, images: list[Any]) -> pa.Table:
        """One row per image; an image without pixels is an error row with null hashes."""
        ids = batch["image_id"].to_pylist()
        errors: list[str | None] = []
        details: list[str | None] = []
        greys: list[dict[str, np.ndarray]] = []
        ok: list[int] = []
        for i, decoded in enumerate(images):
            error, detail = decoded.error, decoded.detail
            if error is None and not decoded.has_pixels:
                error, detail = "decode_failed", "no pixels"
            if error is None:
                try:
                    greys.append(grey_stack(None, decoded.grey_image()))
                    ok.append(i)
                except Exception as exc:  # a permanent per-image problem: a row, not a retry
                    error, detail = "hash_failed", f"{type(exc).__name__}: {exc}"
            errors.append(error)
            details.append(detail)
        hashes = compute_hashes(greys)
        n = len(ids)
        missing = np.ones(n, bool)
        missing[ok] = False
        columns: dict[str, pa.Array] = {}
        for name in ("phash", "dhash", "ahash", "whash"):
            values = np.zeros(n, np.int64)
            values[ok] = hashes[name]
            columns[name] = pa.array(values, pa.int64(), mask=missing)
        for name in ("phash_dihedral", "dhash_dihedral"):
            lists: list[list[int] | None] = [None] * n
            for i, row in zip(ok, hashes[name].tolist(), strict=True):
                lists[i] = row
            columns[name] = pa.array(lists, pa.list_(pa.int64(), 8))
        sha = [images[i].pixel_sha256 if errors[i] is None else None for i in range(n)]
        return pa.table(
            {
                "image_id": pa.array(ids, pa.string()),
                "error": pa.array(errors, pa.string()),
                "detail": pa.array(details, pa.string()),
                **columns,
                "pixel_sha256": pa.array(sha, pa.string()),
            },
            schema=self.schema,
        )
