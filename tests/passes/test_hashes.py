"""The hashes pass: imagehash-compatible bits, dihedral entries, error rows."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from skimage import data

from lamina.core.decode import Decoded, decode_image
from lamina.passes.hashes import (
    DIHEDRAL,
    HashesPass,
    as_uint64,
    compute_hashes,
    from_hex,
    grey_stack,
    hamming,
    to_hex,
    transform,
)

# `str(imagehash.phash(img))` etc. from imagehash 4.3.2 on the skimage arrays.
IMAGEHASH = {
    "astronaut": ("c2924c5532bddfc8", "cd8dd91d897293a7", "7f7f7fc744f8d050", "7f775fc744f80040"),
    "coffee": ("bb8320376c0f3637", "f3e96933160b1b36", "3f3fbfbb818081c3", "3f7f3fbb818080c1"),
}
# The same on the photos box-reduced by `Image.reduce(k)` to a short side under 256 px
# (astronaut k=3: 171 x 171, coffee k=2: 300 x 200), which the hashes do not reduce again.
IMAGEHASH_SMALL = {
    "astronaut": (3, ("c2924c5532bddfc8", "cd8d991d893297a7", "7f7f7fc744f8d050",
                      "7f775fc744f80040")),
    "coffee": (2, ("bb8320376c0f3637", "f3e96933160b1b36", "3f3fbfbb818081c1",
                   "3f7f3fbb818080c1")),
}  # fmt: skip


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def hash_rows(paths: list[Path]) -> list[dict]:
    """The pass's rows for files, decoded by the real `working` recipe."""
    batch = pa.table({"image_id": [p.name for p in paths]})
    return HashesPass().process_decoded(batch, [decode_image(str(p)) for p in paths]).to_pylist()


def save(img: Image.Image, path: Path, **kw: object) -> Path:
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("name", sorted(IMAGEHASH_SMALL))
def test_bits_match_imagehash_under_256_px(name: str) -> None:
    k, expected = IMAGEHASH_SMALL[name]
    out = compute_hashes([grey_stack(np.asarray(photo(name).reduce(k)))])
    got = tuple(to_hex(out[h][0]) for h in ("phash", "dhash", "ahash", "whash"))
    # pHash and dHash are imagehash's bit for bit; aHash and wHash come from the 32x32
    # pHash array instead of their own resizes of the image, a few bits apart.
    assert got[:2] == expected[:2]
    assert hamming(from_hex(got[2]), from_hex(expected[2])) <= 2
    assert hamming(from_hex(got[3]), from_hex(expected[3])) <= 3


@pytest.mark.parametrize("name", sorted(IMAGEHASH))
def test_bits_are_within_4_of_imagehash_on_512_px_photos(name: str) -> None:
    # Working images with a short side of 256 px or more are box-reduced before the resizes.
    out = compute_hashes([grey_stack(np.asarray(photo(name)))])
    for column, expected in zip(("phash", "dhash", "ahash", "whash"), IMAGEHASH[name], strict=True):
        assert hamming(out[column][0], from_hex(expected)) <= 4, column


def test_identical_pixels_give_identical_hashes(tmp_path: Path) -> None:
    img = photo("astronaut")  # 512 px: the working image is the photo itself
    paths = [save(img, tmp_path / f"a.{ext}") for ext in ("png", "bmp", "tiff")]
    rows = hash_rows(paths)
    assert all(r["error"] is None for r in rows)
    columns = ("phash", "dhash", "ahash", "whash", "phash_dihedral", "dhash_dihedral")
    for column in (*columns, "pixel_sha256"):
        assert len({str(r[column]) for r in rows}) == 1, column
    assert hamming(rows[0]["phash"], from_hex(IMAGEHASH["astronaut"][0])) <= 4
    assert rows[0]["phash_dihedral"][0] == rows[0]["phash"]
    assert rows[0]["dhash_dihedral"][0] == rows[0]["dhash"]


def test_dihedral_entries_are_the_hashes_of_the_flipped_and_rotated_image(
    tmp_path: Path,
) -> None:
    img = photo("astronaut")
    original = save(img, tmp_path / "a.png")
    flipped = save(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), tmp_path / "flip.png")
    rotated = save(img.transpose(Image.Transpose.ROTATE_90), tmp_path / "rot90.png")
    base, flip, rot = hash_rows([original, flipped, rotated])
    assert DIHEDRAL[4] == "flip_lr" and DIHEDRAL[1] == "rot90"
    assert flip["phash"] == base["phash_dihedral"][4]
    assert flip["dhash"] == base["dhash_dihedral"][4]
    # Axes swap: Pillow's two resize passes round in the other order, a bit or two apart.
    assert hamming(rot["phash"], base["phash_dihedral"][1]) <= 2
    assert hamming(rot["dhash"], base["dhash_dihedral"][1]) <= 2
    # The other entries, straight from the arrays: the 180-degree ones are exact.
    rgb = np.asarray(img)
    for k in range(8):
        turned = np.ascontiguousarray(np.moveaxis(transform(np.moveaxis(rgb, 2, 0), k), 0, 2))
        h = compute_hashes([grey_stack(turned)])
        limit = 0 if k % 2 == 0 else 2
        assert hamming(h["phash"][0], base["phash_dihedral"][k]) <= limit, DIHEDRAL[k]
        assert hamming(h["dhash"][0], base["dhash_dihedral"][k]) <= limit, DIHEDRAL[k]


def test_jpeg_q30_is_within_a_few_bits(tmp_path: Path) -> None:
    for name in ("astronaut", "coffee", "camera"):
        img = photo(name)
        png = save(img, tmp_path / f"{name}.png")
        jpg = save(img, tmp_path / f"{name}.jpg", quality=30)
        a, b = hash_rows([png, jpg])
        assert a["pixel_sha256"] != b["pixel_sha256"]
        assert hamming(a["phash"], b["phash"]) <= 4, name
        assert hamming(a["dhash"], b["dhash"]) <= 4, name


def test_different_photos_differ_by_more_than_20_bits() -> None:
    names = ("astronaut", "coffee", "camera", "chelsea", "rocket")
    out = compute_hashes([grey_stack(np.asarray(photo(n))) for n in names])
    for i, j in itertools.combinations(range(len(names)), 2):
        assert hamming(out["phash"][i], out["phash"][j]) > 20, (names[i], names[j])


def test_broken_files_become_error_rows(tmp_path: Path) -> None:
    good = save(photo("camera"), tmp_path / "good.jpg")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:2000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    rows = hash_rows([good, cut, empty, tmp_path / "gone.jpg"])
    assert rows[0]["error"] is None and rows[0]["phash"] is not None
    for row in rows[1:]:
        assert row["error"] is not None and row["detail"]
        nulls = ("phash", "dhash", "ahash", "whash", "phash_dihedral", "pixel_sha256")
        assert all(row[c] is None for c in nulls)
    # A Decoded without pixels and without a reason is an error row too, not an exception.
    blank = Decoded(None, None, None, None, False, None, None, None)
    out = HashesPass().process_decoded(pa.table({"image_id": ["x"]}), [blank]).to_pylist()
    assert out[0]["error"] == "decode_failed"


def test_hashes_are_stored_as_signed_int64() -> None:
    assert from_hex(to_hex(-2)) == -2 and to_hex(-2) == "fffffffffffffffe"
    assert as_uint64(from_hex("8000000000000000")) == 1 << 63
    out = compute_hashes([grey_stack(np.asarray(photo("astronaut")))])
    assert out["phash"][0] < 0  # c2924c...: the top bit is set
    assert to_hex(int(out["phash"][0])) == IMAGEHASH["astronaut"][0]


def test_axis_swapping_dhash_variants_hold_on_nearly_flat_images() -> None:
    """The 8x9 array behind the rot90 / rot270 dHash variants is resized from the 32x32 one
    and rounded to whole levels like a resize of the "L" image: on a nearly flat frame (a
    lens-cap shot, a blank page) equal neighbours give no bit in both, where float noise
    flipped up to ~half of the bits."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:200, 0:260]
    frames = {
        "flat_gradient": (120 + 2 * xx / 260 + rng.normal(0, 0.4, xx.shape)),
        "flat_vignette": (90 + 3 * np.hypot(xx - 130, yy - 100) / 165),
        "photo": np.asarray(photo("coffee").convert("L").reduce(2), dtype=np.float64),
    }
    for name, frame in frames.items():
        grey = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        base = compute_hashes([grey_stack(None, grey)])
        for k in (1, 3, 5, 7):  # the transforms that swap the axes
            turned = compute_hashes([grey_stack(None, np.ascontiguousarray(transform(grey, k)))])
            bits = int(hamming(base["dhash_dihedral"][0, k], turned["dhash"][0]))
            assert bits <= 4, (name, DIHEDRAL[k], bits)
