"""Which copy a duplicate group keeps: the copy a photographer would keep, and the reason
it says, on real files run through scan, sense and the duplicates pass."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import ExifTags, Image
from skimage import data

from lamina.analysis.duplicates import DuplicatesPass
from lamina.analysis.representative import choose, header_facts, jpeg_quality, representatives
from lamina.core.errors import ConfigError
from lamina.core.runner import run_passes
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources


def png16(rgb: np.ndarray, path: Path) -> None:
    """A 48-bit RGB PNG (Pillow writes no 16-bit colour PNG): IHDR, one zlib IDAT of
    unfiltered rows, IEND."""
    h, w, _ = rgb.shape
    wide = (rgb.astype(">u2") * 257).reshape(h, w * 6 // 2)
    rows = b"".join(b"\x00" + row.tobytes() for row in wide)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def camera_exif(make: str | None, date: str | None) -> Image.Exif:
    exif = Image.Exif()
    if make:
        exif[ExifTags.Base.Make] = make
        exif[ExifTags.Base.Model] = "EOS R5"
    if date:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = date
    return exif


@pytest.fixture(scope="module")
def keep_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Each folder holds copies of one photo: scanned, sensed, grouped."""
    root = tmp_path_factory.mktemp("keep")
    src = root / "photos"
    folders = ("gif", "png16", "resaved", "exif", "dated", "tiff_of_gif", "downscaled")
    for folder in folders:
        (src / folder).mkdir(parents=True)
    chelsea = Image.fromarray(data.chelsea())
    chelsea.save(src / "gif" / "original.jpg", quality=95)
    chelsea.quantize(256).save(src / "gif" / "copy.gif")
    coffee = data.coffee()
    png16(coffee, src / "png16" / "master.png")
    Image.fromarray(coffee).save(src / "png16" / "export.jpg", quality=95)
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(src / "resaved" / "original.jpg", quality=95)
    with Image.open(src / "resaved" / "original.jpg") as im:
        im.save(src / "resaved" / "resaved.jpg", quality=50)
    rocket = Image.fromarray(data.rocket())
    rocket.save(
        src / "exif" / "camera.jpg", quality=90, exif=camera_exif("Canon", "2021:05:01 10:00:00")
    )
    rocket.save(src / "exif" / "stripped.jpg", quality=90)
    motorcycle = Image.fromarray(data.stereo_motorcycle()[0])
    motorcycle.save(
        src / "dated" / "dated.jpg", quality=90, exif=camera_exif(None, "2020:01:02 03:04:05")
    )
    motorcycle.save(src / "dated" / "stripped.jpg", quality=90)
    horse = Image.fromarray(data.immunohistochemistry())
    horse.save(src / "tiff_of_gif" / "original.jpg", quality=92)
    gif = horse.quantize(64)
    gif.save(src / "tiff_of_gif" / "copy.gif")
    gif.convert("RGB").save(src / "tiff_of_gif" / "copy.tiff")
    grass = Image.fromarray(data.hubble_deep_field())
    grass.save(src / "downscaled" / "full.jpg", quality=80)
    grass.resize((grass.width // 2, grass.height // 2), Image.Resampling.LANCZOS).save(
        src / "downscaled" / "half.png"
    )
    store = Store.open(root / "store", create=True)
    scan_sources(store, [src], workers=1, progress=False)
    run_passes(
        store,
        [("signals", None), ("hashes", None), ("duplicates", None)],
        workers=1,
        progress=False,
    )
    return store


@pytest.fixture(scope="module")
def kept(keep_store: Store) -> dict[str, dict]:
    """The duplicates rows by rel_path."""
    rows = keep_store.sql(
        "select f.rel_path, d.* from duplicates d join files f using (image_id)"
    ).to_pylist()
    return {r["rel_path"]: r for r in rows}


def _rep(kept: dict[str, dict], folder: str) -> str:
    """The kept file of a folder's group, checking the whole folder is one group."""
    members = {p: r for p, r in kept.items() if p.startswith(f"{folder}/")}
    assert len({r["group_id"] for r in members.values()}) == 1, members
    (rep,) = [p for p, r in members.items() if r["is_representative"]]
    return rep


def test_the_jpeg_is_kept_over_its_gif(kept: dict[str, dict]) -> None:
    assert _rep(kept, "gif") == "gif/original.jpg"
    assert kept["gif/original.jpg"]["keep_reason"] == "best quality: JPEG q95 vs GIF 256 colours"
    assert kept["gif/copy.gif"]["keep_reason"] == "best quality: JPEG q95 vs GIF 256 colours"


def test_a_16_bit_png_is_kept_over_a_jpeg(kept: dict[str, dict]) -> None:
    assert _rep(kept, "png16") == "png16/master.png"
    assert kept["png16/export.jpg"]["keep_reason"] == (
        "best quality: PNG 16-bit lossless vs JPEG q95"
    )


def test_the_original_is_kept_over_a_low_quality_resave(kept: dict[str, dict]) -> None:
    assert _rep(kept, "resaved") == "resaved/original.jpg"
    assert kept["resaved/resaved.jpg"]["keep_reason"] == "best quality: JPEG q95 vs JPEG q50"


def test_exif_rich_copies_are_kept_over_stripped_ones(kept: dict[str, dict]) -> None:
    assert _rep(kept, "exif") == "exif/camera.jpg"
    assert kept["exif/stripped.jpg"]["kind"] == "pixel"  # the same pixels: only EXIF differs
    assert kept["exif/stripped.jpg"]["keep_reason"] == (
        "camera original: JPEG from Canon EOS R5 vs JPEG without camera EXIF"
    )
    assert _rep(kept, "dated") == "dated/dated.jpg"
    assert kept["dated/stripped.jpg"]["keep_reason"] == (
        "richer EXIF: JPEG with date vs JPEG with no EXIF"
    )


def test_a_lossless_copy_of_a_gif_is_only_as_good_as_the_gif(kept: dict[str, dict]) -> None:
    assert _rep(kept, "tiff_of_gif") == "tiff_of_gif/original.jpg"
    assert kept["tiff_of_gif/copy.tiff"]["keep_reason"] == (
        "best quality: JPEG q92 vs TIFF 64 colours (pixels of a GIF)"
    )


def test_more_pixels_beat_a_lossless_downscale(kept: dict[str, dict]) -> None:
    assert _rep(kept, "downscaled") == "downscaled/full.jpg"
    assert kept["downscaled/half.png"]["keep_reason"] == "largest: JPEG 1000×872 vs PNG 500×436"


def test_status_says_why_the_kept_copies_were_kept(keep_store: Store) -> None:
    from lamina.manifest.status import render_status, store_status

    info = store_status(keep_store)
    assert info["duplicates"]["groups"] == 7
    assert info["duplicates"]["kept_by"] == {
        "best quality": 4, "camera original": 1, "largest": 1, "richer EXIF": 1
    }  # fmt: skip
    text = render_status(info)
    assert "near duplicates: 7 groups, 8 files could go" in text
    assert "  kept copy chosen as" in text and "    best quality     4" in text


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90, 95, 100])
def test_jpeg_quality_is_read_back_from_the_header(tmp_path: Path, quality: int) -> None:
    path = tmp_path / "q.jpg"
    Image.fromarray(data.camera()).save(path, quality=quality)
    assert header_facts(str(path), "JPEG") == (quality, 0, None)
    assert jpeg_quality(np.ones(64)) == 100


def test_headers_of_webp_and_unreadable_files(tmp_path: Path) -> None:
    rgb = Image.fromarray(data.chelsea())
    rgb.save(tmp_path / "lossless.webp", lossless=True)
    rgb.save(tmp_path / "lossy.webp", quality=80)
    assert header_facts(str(tmp_path / "lossless.webp"), "WEBP") == (0, 0, True)
    assert header_facts(str(tmp_path / "lossy.webp"), "WEBP") == (0, 0, False)
    assert header_facts(str(tmp_path / "gone.jpg"), "JPEG") == (0, 0, None)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff" + bytes(100))
    assert header_facts(str(tmp_path / "bad.jpg"), "JPEG") == (0, 0, None)


def test_the_rule_order_is_configurable() -> None:
    # Two copies: a small camera JPEG and a large stripped PNG of the same picture.
    t = pa.table(
        {
            "pixels": [100, 400],
            "width": [10, 20],
            "height": [10, 20],
            "format": ["JPEG", "PNG"],
            "camera_make": ["Canon", None],
            "taken": pa.nulls(2, pa.timestamp("us")),
        }
    )
    labels, keep = np.zeros(2, np.int64), np.arange(2)
    rep, why = choose(t, labels, keep, ("original", "resolution"))
    assert rep[0] == 0 and why[1] == "camera original: JPEG from Canon vs PNG without camera EXIF"
    rep, why = choose(t, labels, keep, ("resolution", "original"))
    assert rep[0] == 1 and why == ["largest: PNG 20×20 vs JPEG 10×10"] * 2
    rep, why = choose(t, labels, keep, ())
    assert rep[0] == 0 and why[0] == "equal by every rule: the smallest image id"
    with pytest.raises(ConfigError, match="an order of some of: original, resolution"):
        DuplicatesPass({"representative": ["largest"]})


def test_representatives_of_no_rows_is_no_error() -> None:
    # A collection where no image has a copy leaves no group to represent (this crashed).
    t = pa.table({"pixels": [4, 9], "sharpness": [1.0, 1.0], "taken": [None, None]})
    rep = representatives(t, np.array([0, 1]), np.array([], dtype=np.int64), ("resolution",))
    assert rep.tolist() == [-1, -1]
