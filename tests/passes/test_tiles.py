"""Huge images: streamed tiles and overview (their geometry, pixels and memory), a PNG bomb
refused by its header, and `lamina segment` mapping tile segments back to the original."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from lamina.core.masks import decode_rle
from lamina.core.store import Store
from lamina.core.tiles import TilePolicy, overview_size, stream_tiles, tile_grid
from lamina.jobs.scan import scan_sources
from lamina.jobs.segment import SegmentConfig, segment
from lamina.passes.segment_embed import mask_box, masked_crop, segment_pixels
from lamina.passes.tiles import TilesPass

RED, BLUE, GREEN = (200, 30, 30), (30, 30, 200), (90, 120, 90)


def test_grid_and_overview_size() -> None:
    assert tile_grid(2500, 1100, 1024) == [
        (0, 0, 1024, 1024), (1024, 0, 1024, 1024), (2048, 0, 452, 1024),
        (0, 1024, 1024, 76), (1024, 1024, 1024, 76), (2048, 1024, 452, 76),
    ]  # fmt: skip
    assert overview_size(16000, 12500, 2048) == (2048, 1600)
    assert overview_size(300, 200, 2048) == (300, 200)  # never upscaled


def _scene(path: Path, size: tuple[int, int] = (2000, 1500)) -> None:
    """Green, a red box inside the top-right tile, a blue one across four tiles."""
    w, h = size
    a = np.empty((h, w, 3), np.uint8)
    a[:] = GREEN
    a[100:400, 1200:1700] = RED
    a[900:1300, 900:1200] = BLUE
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def test_tiles_hold_the_original_pixels_and_the_overview_the_whole(tmp_path: Path) -> None:
    _scene(tmp_path / "big.png")
    original = np.asarray(Image.open(tmp_path / "big.png").convert("RGB")).astype(int)
    out = stream_tiles(str(tmp_path / "big.png"), TilePolicy(tile_size=512, overview_side=400))
    assert [g for g, _ in out.tiles] == tile_grid(2000, 1500, 512)
    for (x, y, w, h), data in out.tiles:
        tile = np.asarray(Image.open(io.BytesIO(data))).astype(int)
        assert tile.shape == (h, w, 3)
        assert np.abs(tile - original[y : y + h, x : x + w]).mean() < 2  # JPEG q90
    assert (out.overview_width, out.overview_height) == (400, 300)
    over = np.asarray(Image.open(io.BytesIO(out.overview))).astype(int)
    assert over.shape == (300, 400, 3)
    # The red box (1200-1700 x 100-400) is at x 240-340, y 20-80 of the overview.
    assert np.abs(over[30:70, 250:330] - RED).max() < 12
    assert np.abs(over[190:250, 185:235] - BLUE).max() < 12
    assert np.abs(over[5:15, 5:100] - GREEN).max() < 12


_PEAK = """
import json, resource, sys
from lamina.core.tiles import TilePolicy, stream_tiles
import numpy, PIL.Image, pyvips  # loaded before the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = stream_tiles(sys.argv[1], TilePolicy(tile_size=512))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tiles": len(out.tiles), "grown_mb": (peak - base) / 1024}))
"""


def _uniform_png(path: Path, width: int, height: int) -> None:
    """A mostly uniform PNG (cheap to write and to store, costly to decode whole)."""
    import pyvips

    im = pyvips.Image.black(width, height, bands=3).new_from_image([90, 120, 90]).cast("uchar")
    im = im.draw_rect([200, 30, 30], width // 3, height // 3, width // 5, height // 5, fill=True)
    im.pngsave(str(path), compression=6)


def test_tiling_streams_a_big_png_in_bounded_memory(tmp_path: Path) -> None:
    """48 MP (144 MB of RGB): the tiler holds one 512-row strip (12 MB) and a band."""
    path = tmp_path / "wide.png"
    _uniform_png(path, 8000, 6000)
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, check=True
    )
    measured = json.loads(done.stdout)
    assert measured["tiles"] == 16 * 12
    whole_mb = 8000 * 6000 * 3 / 2**20
    assert measured["grown_mb"] < 0.4 * whole_mb, measured


def test_a_200_mp_png_bomb_is_refused_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _uniform_png(path, 16000, 12500)  # 200 MP (600 MB of RGB) in ~3 MB
    assert path.stat().st_size < 5_000_000
    tiles = TilesPass({"max_megapixels": 150.0})
    t0 = time.process_time()
    out = tiles.process(pa.table({"image_id": ["bomb"], "abs_path": [str(path)]}))
    assert time.process_time() - t0 < 0.5  # the header only: decoding it takes seconds
    row = out.table.to_pylist()[0]
    assert row["status"] == "too_large" and "16000x12500 (200 MP)" in row["error"]
    assert out.files == {}


def test_small_images_get_no_tiles(tmp_path: Path) -> None:
    Image.new("RGB", (300, 200)).save(tmp_path / "s.png")
    out = TilesPass().process(pa.table({"image_id": ["s"], "abs_path": [str(tmp_path / "s.png")]}))
    assert out.table["status"].to_pylist() == ["small"] and out.files == {}


@pytest.fixture
def tiled_store(tmp_path: Path) -> Store:
    _scene(tmp_path / "src" / "plate.png")
    small = np.empty((300, 400, 3), np.uint8)
    small[:] = GREEN
    small[50:150, 50:150] = RED
    Image.fromarray(small).save(tmp_path / "src" / "small.png")
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tmp_path / "src"], workers=1, progress=False)
    return store


def test_segment_uses_tiles_and_maps_segments_to_the_original(tiled_store: Store) -> None:
    store = tiled_store
    result = segment(store, SegmentConfig(workers=1, progress=False, tile_over=1.0))
    assert result.tiled == 1 and result.errors == 0
    record = json.loads((store.root / "runs" / str(result.tiles_run) / "run.json").read_text())
    assert record["command"] == "tiles" and record["counts"]["tiles"]["processed"] == 1
    rows = {r["frame_width"]: r for r in store.table("segment").to_pylist()}
    plate, small = rows[2000], rows[400]  # the overview frame: 2000 px (never upscaled)
    assert all(g["tile"] is None and g["scale"] == "full" for g in small["segments"])
    segs = plate["segments"]
    assert {g["scale"].split(":")[0] for g in segs} == {"tile", "overview"}
    for g in segs:
        assert (store.root / g["tile"]).is_file()
    # The red box lies in one tile: one segment, exact in original pixels.
    red = [g for g in segs if g["bbox_original"] == [1200, 100, 500, 300]]
    assert len(red) == 1 and red[0]["scale"] == "tile:1024,0,976,1024"
    mask = decode_rle({"size": [1500, 2000], "counts": red[0]["rle"]})
    # Felzenszwalb works at <= 256 px: the corners round off by a few pixels.
    assert mask.sum() == pytest.approx(500 * 300, rel=0.01) and mask[110:390, 1210:1690].all()
    # The blue box (900-1200 x 900-1300) crosses a tile corner: its four pieces agree
    # along both seams, so they are joined into one segment, whose pixels are the overview's.
    blue = [g for g in segs if g["area_pct"] < 10 and g is not red[0]]
    assert len(blue) == 1 and blue[0]["scale"] == "overview:0,0,2000,1500"
    assert blue[0]["tile"].endswith("/overview.jpg") and (store.root / blue[0]["tile"]).is_file()
    # Within Felzenszwalb's 256-px grain of the tiles.
    assert np.abs(np.subtract(blue[0]["bbox_original"], [900, 900, 300, 400])).max() <= 10
    mask = decode_rle({"size": [1500, 2000], "counts": blue[0]["rle"]})
    assert mask.sum() == pytest.approx(300 * 400, rel=0.03) and mask[910:1290, 910:1190].all()
    (piece,) = segment_pixels({**plate, "segments": blue}, None, str(store.root))  # type: ignore[arg-type]
    _, rgb, cut = piece  # the overview (2000 x 1500) decoded at 512 x 384: the box ~77 x 102
    assert rgb.shape == (384, 512, 3) and abs(int(cut.sum()) - 77 * 102) < 400
    assert np.abs(rgb[cut].astype(int) - BLUE).mean() < 12
    # The green ground touches every seam too, but it also fills most of each tile: one
    # segment joined over all tiles, not one per tile.
    assert sum(g["area_pct"] > 50 for g in segs) <= 1
    # A re-run makes no new tiles: the layer has them.
    again = segment(store, SegmentConfig(workers=1, progress=False, tile_over=1.0))
    assert again.passes["segment"]["processed"] == 0 and again.tiled == 1


def test_segment_crops_of_a_tiled_image_come_from_its_tiles(tiled_store: Store) -> None:
    store = tiled_store
    segment(store, SegmentConfig(workers=1, progress=False, tile_over=1.0))
    row = next(r for r in store.table("segment").to_pylist() if r["frame_width"] == 2000)
    red = next(g for g in row["segments"] if g["bbox_original"] == [1200, 100, 500, 300])
    # Only tile segments: the whole image's decode is never asked for.
    pieces = list(segment_pixels({**row, "segments": [red]}, None, str(store.root)))  # type: ignore[arg-type]
    assert [seg["segment_id"] for seg, _, _ in pieces] == [red["segment_id"]]
    _, rgb, mask = pieces[0]
    # The tile (976 x 1024) decodes at 488 x 512: the box is 250 x 150 there, all red.
    assert rgb.shape == (512, 488, 3)
    crop = masked_crop(rgb, mask, mask_box(mask), margin=0.0).astype(int)
    assert abs(crop.shape[1] - 250) <= 4 and abs(crop.shape[0] - 150) <= 4
    assert np.abs(crop[10:-10, 10:-10] - RED).max() < 12


def test_rle_of_a_part_equals_the_rle_of_the_whole_frame() -> None:
    from lamina.core.masks import encode_rle, encode_rle_at

    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        ph, pw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        part = rng.random((ph, pw)) < rng.choice([0.0, 0.5, 1.0])
        whole = np.zeros((h, w), bool)
        whole[y : y + ph, x : x + pw] = part
        assert encode_rle_at(part, x, y, (h, w)) == encode_rle(whole)
    with pytest.raises(ValueError, match="outside"):
        encode_rle_at(np.ones((2, 2), bool), 3, 0, (4, 4))


def test_segment_stats_of_a_tiled_image_come_from_its_tiles(tiled_store: Store) -> None:
    from lamina.core.decode import decode_image
    from lamina.passes.segment_stats import SegmentPixelsPass

    store = tiled_store
    segment(store, SegmentConfig(workers=1, progress=False, tile_over=1.0))
    layer = store.current_pointer("segment")
    image_id = next(r["image_id"] for r in store.table("segment").to_pylist()
                    if r["frame_width"] == 2000)  # fmt: skip
    path = store.sql(f"select file_path(source, rel_path) as p from files "
                     f"where image_id = '{image_id}'")["p"][0].as_py()  # fmt: skip
    stats = SegmentPixelsPass({"segment_layer": layer, "store_root": str(store.root)})
    batch = pa.table({"image_id": [image_id]})
    row = stats.process_decoded(batch, [decode_image(path)]).to_pylist()[0]
    assert row["error"] is None
    by_id = {g["segment_id"]: g for g in row["stats"]}
    segs = next(r for r in store.table("segment").to_pylist() if r["image_id"] == image_id)
    red = next(g for g in segs["segments"] if g["bbox_original"] == [1200, 100, 500, 300])
    # The red box measured in its tile (976 x 1024 decoded at 488 x 512): ~250 x 150 px.
    assert by_id[red["segment_id"]]["pixels"] == pytest.approx(250 * 150, rel=0.03)
    assert by_id[red["segment_id"]]["lab_a"] > 40  # red


def test_a_huge_page_inside_a_cbz_is_tiled_from_the_member(tmp_path: Path) -> None:
    """The member streams through a libvips custom source (zipfile's decompressing
    stream), so it is tiled like a file: the same tiles, its segments in original pixels."""
    import zipfile

    _scene(tmp_path / "plate.png")
    (tmp_path / "src").mkdir()
    with zipfile.ZipFile(tmp_path / "src" / "book.cbz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(tmp_path / "plate.png", "pages/plate.png")
    member = str(tmp_path / "src" / "book.cbz") + "!/pages/plate.png"
    policy = TilePolicy(tile_size=1024, overview_side=400)
    from_member = stream_tiles(member, policy)
    from_file = stream_tiles(str(tmp_path / "plate.png"), policy)
    assert (from_member.width, from_member.height) == (2000, 1500)
    assert from_member.tiles == from_file.tiles and from_member.overview == from_file.overview
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tmp_path / "src"], workers=1, progress=False)
    result = segment(store, SegmentConfig(workers=1, progress=False, tile_over=1.0))
    assert result.tiled == 1 and result.errors == 0
    (row,) = store.table("segment").to_pylist()
    assert {g["scale"].split(":")[0] for g in row["segments"]} <= {"tile", "overview"}
    assert [1200, 100, 500, 300] in [g["bbox_original"] for g in row["segments"]]
