"""Decoding: bounded, oriented, converted, hashed by pixels; bad files become errors."""

from __future__ import annotations

import resource
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pytest
from PIL import Image, JpegImagePlugin, PngImagePlugin

from lamina.core.decode import decode_batch, decode_image

RNG = np.random.default_rng(7)


def noise_rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def photo(h: int, w: int) -> np.ndarray:
    """A smooth gradient with mild noise: compresses like a photo."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1)
    return np.clip(base + RNG.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def test_jpeg_decodes_through_draft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(photo(300, 400)).resize((4000, 3000), Image.Resampling.BILINEAR).save(path)
    loaded: list[tuple[int, int]] = []
    real_load = JpegImagePlugin.JpegImageFile.load

    def spy(self: JpegImagePlugin.JpegImageFile) -> object:
        loaded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    t0 = time.perf_counter()
    d = decode_image(str(path))
    seconds = time.perf_counter() - t0
    assert d.error is None and d.rgb is not None
    assert d.rgb.shape == (384, 512, 3) and d.rgb.dtype == np.uint8
    assert (d.width, d.height, d.mode, d.alpha) == (4000, 3000, "RGB", False)
    assert loaded[0] == (1000, 750)  # libjpeg decoded at 1/4 scale, not 12 MP
    assert max(loaded) == (1000, 750)
    assert seconds < 1.0  # ~30 ms on one core; generous for a loaded CI machine


@pytest.mark.parametrize("ext", ["jpg", "png", "tif", "webp", "heic"])
def test_exif_orientation_6_rotates(tmp_path: Path, ext: str) -> None:
    if ext == "heic":  # libheif applies the rotation while decoding: it must not happen twice
        pytest.importorskip("pillow_heif").register_heif_opener()
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    path = tmp_path / f"rot.{ext}"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    d = decode_image(str(path))
    assert d.rgb is not None and d.rgb.shape == (80, 40, 3)  # tall from a wide stored image
    assert (d.width, d.height) == (40, 80)  # full size after orientation
    assert d.rgb[:30].mean() > 200 and d.rgb[50:].mean() < 50  # the white half is now on top


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_is_scaled_not_clipped(tmp_path: Path, ext: str) -> None:
    values = np.array([[0, 256, 32768, 65535]], np.uint16).repeat(4, axis=0)
    path = tmp_path / f"deep.{ext}"
    Image.fromarray(values).save(path)
    d = decode_image(str(path))
    assert d.mode == "I;16" and d.rgb is not None
    assert d.rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (d.rgb[..., 0] == d.rgb[..., 2]).all()


def test_palette_la_cmyk_and_alpha_become_rgb(tmp_path: Path) -> None:
    p = Image.new("P", (8, 8))
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.paste(1, (0, 0, 4, 8))
    p.save(tmp_path / "p.png")
    d = decode_image(str(tmp_path / "p.png"))
    assert d.rgb is not None and d.rgb[0, 0].tolist() == [0, 0, 255]
    assert d.rgb[0, 7].tolist() == [255, 0, 0] and not d.alpha

    Image.new("LA", (8, 8), (50, 0)).save(tmp_path / "la.png")  # fully transparent grey
    d = decode_image(str(tmp_path / "la.png"))
    assert d.rgb is not None and d.alpha and d.rgb[0, 0].tolist() == [255, 255, 255]

    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.tif")  # pure red ink
    d = decode_image(str(tmp_path / "c.tif"))
    assert d.mode == "CMYK" and d.rgb is not None and d.rgb[0, 0].tolist() == [255, 0, 0]

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :4, 3] = 255  # left opaque red, right transparent
    rgba[:, 4:6, 3] = 128  # half-transparent red
    Image.fromarray(rgba).save(tmp_path / "a.png")
    d = decode_image(str(tmp_path / "a.png"))
    assert d.rgb is not None and d.alpha
    assert d.rgb[0, 0].tolist() == [200, 0, 0]
    assert d.rgb[0, 7].tolist() == [255, 255, 255]  # composited on white
    assert d.rgb[0, 4].tolist() == pytest.approx([228, 127, 127], abs=2)


def test_bad_files_are_errors_not_exceptions(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(photo(200, 300)).save(good, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    d = decode_image(str(cut))
    assert d.error in ("truncated", "decode_error") and d.rgb is None
    assert d.detail and "truncated" in d.detail.lower()

    d = decode_image(str(tmp_path / "nope.jpg"))
    assert (d.error, d.rgb) == ("missing", None) and "nope.jpg" in (d.detail or "")

    (tmp_path / "short.jpg").write_bytes(b"\xff\xd8\xff\xe0 ends inside its header")
    assert decode_image(str(tmp_path / "short.jpg")).error == "truncated"
    buf = tmp_path / "bad.png"
    Image.fromarray(noise_rgb(64, 64)).save(buf)
    png = bytearray(buf.read_bytes())
    at = png.find(b"IDAT") + 100
    png[at : at + 40] = bytes(40)  # corrupt the compressed pixels
    buf.write_bytes(bytes(png))
    d = decode_image(str(buf))
    assert (d.error, d.mode) == ("decode_error", "RGB") and "broken data stream" in (d.detail or "")
    (tmp_path / "notes.png").write_text("hello")
    assert decode_image(str(tmp_path / "notes.png")).error == "unsupported"


def write_png_header_bomb(path: Path, width: int, height: int) -> None:
    """A valid 1-bit PNG of width x height, written without ever holding its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_too_large_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    write_png_header_bomb(path, 20000, 15000)  # 300 MP in ~40 kB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    d = decode_image(str(path), max_pixels=250e6)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert d.error == "too_large" and d.rgb is None
    assert "20000x15000" in (d.detail or "") and "250 MP" in (d.detail or "")
    assert grown_mb < 50  # decoding it would take 300 MB
    assert Image.MAX_IMAGE_PIXELS is not None  # the bomb guard is restored


def write_two_colour_png(path: Path, width: int, height: int, *, truncate: bool = False) -> None:
    """An RGB PNG, red top half and blue bottom half, written row by row (never whole)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    red, blue = b"\x00" + b"\xff\x00\x00" * width, b"\x00" + b"\x00\x00\xff" * width
    z = zlib.compressobj(6)
    idat = b"".join(z.compress(red if y < height // 2 else blue) for y in range(height))
    idat += z.flush()
    if truncate:  # the stream stops at a third: a partial image must not pass as whole
        idat = idat[: len(idat) // 3]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    tail = b"" if truncate else chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + tail)


def test_huge_png_is_shrunk_while_it_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plate.png"
    write_two_colour_png(path, 5000, 3600)  # 18 MP: 54 MB of RGB if decoded whole

    def whole(self: PngImagePlugin.PngImageFile) -> object:
        raise AssertionError("Pillow loaded the whole image")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", whole)
    d = decode_image(str(path))
    assert d.error is None and d.rgb is not None
    assert (d.width, d.height) == (5000, 3600) and d.rgb.shape == (369, 512, 3)
    assert d.rgb[10, 10].tolist() == [255, 0, 0] and d.rgb[-10, 10].tolist() == [0, 0, 255]
    assert (d.pixel_sha256 or "") != "" and d.alpha is False
    with pytest.raises(ValueError):
        d.rgb[0, 0, 0] = 1  # shared by every pass of a chunk: read-only


def peak_pss_growth_mb(fn: Callable[[], object]) -> tuple[object, float]:
    """fn's result and how far this process's PSS rose above its start while fn ran (MB)."""
    proc = psutil.Process()
    start = proc.memory_full_info().pss
    peak, done = [start], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_full_info().pss)
            done.wait(0.002)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        result = fn()
    finally:
        done.set()
        poller.join()
    return result, (peak[0] - start) / 1e6


def test_huge_png_streams_in_a_few_rows_of_memory(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    write_two_colour_png(path, 14000, 3000)  # 42 MP: 126 MB of RGB whole, 42 kB a row
    decode_image(str(path))  # libvips' own start-up is not the image's cost
    d, grown_mb = peak_pss_growth_mb(lambda: decode_image(str(path)))
    assert d.error is None and d.rgb.shape == (110, 512, 3)
    assert d.rgb[5, 5].tolist() == [255, 0, 0] and d.rgb[-5, 5].tolist() == [0, 0, 255]
    # Never whole (126 MB): libvips holds strips of rows. (The box shrink on sequential access
    # takes ~50 MB for the 200 MP bomb of bench/sense_corpus.py in a fresh process, libvips'
    # thumbnail ~100 MB: measured there, since a warm process reuses the buffers.)
    assert grown_mb < 60


def test_truncated_huge_png_is_an_error_not_padding(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    write_two_colour_png(path, 5000, 3600, truncate=True)
    d = decode_image(str(path))
    assert d.rgb is None and d.error in ("truncated", "decode_error"), d
    assert d.detail


def replace_app1(jpeg: bytes, exif_payload: bytes) -> bytes:
    """The same JPEG with its APP1 (EXIF) segment replaced; every other byte kept."""
    pos = 2
    while jpeg[pos + 1] != 0xE1:
        pos += 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
    end = pos + 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
    segment = b"\xff\xe1" + (len(exif_payload) + 2).to_bytes(2, "big") + exif_payload
    return jpeg[:pos] + segment + jpeg[end:]


def test_pixel_sha256_ignores_containers_and_metadata(tmp_path: Path) -> None:
    pixels = noise_rgb(48, 64)
    hashes = set()
    for ext in ("png", "tif", "bmp"):
        Image.fromarray(pixels).save(tmp_path / f"same.{ext}")
        hashes.add(decode_image(str(tmp_path / f"same.{ext}")).pixel_sha256)
    assert len(hashes) == 1 and None not in hashes
    changed = pixels.copy()
    changed[10, 10, 0] ^= 1
    Image.fromarray(changed).save(tmp_path / "changed.png")
    assert decode_image(str(tmp_path / "changed.png")).pixel_sha256 not in hashes

    exif = Image.Exif()
    exif[0x010F] = "CameraOne"
    Image.fromarray(photo(600, 800)).save(tmp_path / "a.jpg", exif=exif.tobytes(), quality=90)
    other = Image.Exif()
    other[0x010F] = "AnotherMakeEntirely"
    other[0x0131] = "some editor"
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(replace_app1(data, other.tobytes()))
    assert (tmp_path / "b.jpg").read_bytes() != data
    a, b = decode_image(str(tmp_path / "a.jpg")), decode_image(str(tmp_path / "b.jpg"))
    assert Image.open(tmp_path / "b.jpg").getexif()[0x010F] == "AnotherMakeEntirely"
    assert a.pixel_sha256 == b.pixel_sha256 and a.pixel_sha256 is not None
    Image.fromarray(photo(600, 800)).save(tmp_path / "c.jpg", quality=90)  # new noise
    assert decode_image(str(tmp_path / "c.jpg")).pixel_sha256 != a.pixel_sha256


def test_small_images_are_not_upscaled_and_batches_never_raise(tmp_path: Path) -> None:
    Image.fromarray(noise_rgb(30, 20)).save(tmp_path / "s.png")
    batch = pa.table({"abs_path": [str(tmp_path / "s.png"), None, str(tmp_path / "x.png")]})
    out = decode_batch(batch, "working")
    assert out[0].rgb is not None and out[0].rgb.shape == (30, 20, 3)
    assert [d.error for d in out] == [None, "missing", "missing"]
    with pytest.raises(ValueError, match="unknown decode recipe"):
        decode_batch(batch, "nope")


def test_sensing_passes_never_make_the_rgb_array(tmp_path: Path) -> None:
    """signals, hashes and thumbs work on the decoder's Pillow image: the HxWx3 array (a
    copy of every pixel) is made only for a pass that asks for `rgb`, and equals the image."""
    from lamina.core.passes import get_pass
    from lamina.passes.thumbs import thumbs_config

    for name, array in (("a.jpg", photo(300, 400)), ("b.png", noise_rgb(64, 48))):
        Image.fromarray(array).save(tmp_path / name)
    batch = pa.table({"image_id": ["a", "b"], "abs_path": [str(tmp_path / "a.jpg"),
                                                          str(tmp_path / "b.png")]})  # fmt: skip
    images = decode_batch(batch, "working")
    passes = [get_pass("signals"), get_pass("hashes"), get_pass("thumbs", thumbs_config(tmp_path))]
    for p in passes:
        out = p.process_decoded(batch, images)
        table = getattr(out, "table", out)
        assert table["error"].null_count == 2, p.name
    assert all(d._rgb is None for d in images)
    rgb = images[1].rgb
    assert rgb is not None and not rgb.flags.writeable
    assert np.array_equal(rgb, np.asarray(Image.open(tmp_path / "b.png")))
    assert rgb.shape == (64, 48, 3)
