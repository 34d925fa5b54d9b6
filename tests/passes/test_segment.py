"""The segment pass and the flat segments table: geometry, filters, rows for images with
no segment and for broken files, selective runs, resume, and a kill mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from lamina.backends.segmenters import Mask
from lamina.core.errors import ConfigError
from lamina.core.masks import decode_rle
from lamina.core.passes import get_pass
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.jobs.segment import SegmentConfig, segment
from lamina.passes.segment import SegmentConfig as PassConfig
from lamina.passes.segment import filter_masks, flatten_segments, mask_stats


def test_mask_stats_of_a_rectangle_and_a_line() -> None:
    m = np.zeros((100, 200), bool)
    m[10:30, 20:100] = True
    s = mask_stats(m)
    assert s["bbox"] == [20, 10, 80, 20]
    assert s["area_pct"] == pytest.approx(8.0)
    assert s["solidity"] == pytest.approx(1.0)
    assert s["thinness"] == pytest.approx(0.25, abs=0.01)
    assert s["border"] == pytest.approx(0.1)
    assert 0.9 < s["eccentricity"] < 1
    line = np.zeros((100, 200), bool)
    line[50, 10:190] = True
    assert mask_stats(line)["thinness"] < 0.01


def test_filters_drop_specks_wholes_hairlines_and_repeats() -> None:
    shape = (100, 100)

    def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        m = np.zeros(shape, bool)
        m[y0:y1, x0:x1] = True
        return m

    masks = [
        Mask(box(0, 2, 0, 2)),  # a speck: 0.04%
        Mask(box(0, 100, 0, 100)),  # the whole frame
        Mask(box(50, 51, 0, 100)),  # a hairline
        Mask(box(10, 50, 10, 50), score=0.5),
        Mask(box(10, 50, 10, 51), score=0.9),  # repeats the one above, scores higher
        Mask(box(60, 90, 60, 90), score=0.7),
    ]
    kept = filter_masks(masks, shape, PassConfig())
    assert [(m.score, s["bbox"]) for m, s in kept] == [
        (0.9, [10, 10, 41, 40]),
        (0.7, [60, 60, 30, 30]),
    ]
    assert len(filter_masks(masks, shape, PassConfig(max_segments=1))) == 1
    with pytest.raises(ValueError, match="outside the image bounds"):
        filter_masks([Mask(np.ones((10, 10), bool))], shape, PassConfig())


def test_bad_filter_configs_are_refused() -> None:
    with pytest.raises(ConfigError):
        get_pass("segment", {"min_area": 0.5, "max_area": 0.1})
    with pytest.raises(ConfigError):
        get_pass("segment", {"segmenter": "classical:nope"})
    with pytest.raises(ConfigError, match="key=value"):
        get_pass("segment", {"options": "a=1&&"})
    # Filters name the layer; how to run does not.
    assert get_pass("segment", {"min_area": 0.01}).layer_id != get_pass("segment").layer_id
    assert get_pass("segment", {"device": "cpu"}).layer_id == get_pass("segment").layer_id


def _shapes_photo(path: Path, seed: int, size: tuple[int, int] = (240, 180)) -> None:
    """A grey-green background with 1-3 solid shapes of distinct colours."""
    rng = np.random.default_rng(seed)
    w, h = size
    a = np.empty((h, w, 3), np.uint8)
    a[:] = (90, 120, 90)
    for _ in range(1 + seed % 3):
        s = int(rng.integers(h // 5, h // 2))
        y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
        a[y : y + s, x : x + s] = rng.integers(0, 256, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, quality=95)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i in range(4):
        _shapes_photo(src / "shapes" / f"s{i}.jpg", i)
    (src / "plain").mkdir()
    Image.new("RGB", (120, 90), (40, 40, 40)).save(src / "plain" / "flat.png")
    good = (src / "shapes" / "s0.jpg").read_bytes()
    (src / "broken").mkdir()
    (src / "broken" / "cut.jpg").write_bytes(good[: len(good) // 3])
    return src


def _store(tmp_path: Path, source: Path) -> Store:
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [source], workers=1, progress=False)
    return store


def test_segment_rows_masks_and_the_flat_table(tmp_path: Path, source: Path) -> None:
    store = _store(tmp_path, source)
    result = segment(store, SegmentConfig(workers=1, progress=False))
    assert (result.images, result.no_segments, result.errors) == (6, 1, 1)
    rows = {r["image_id"]: r for r in store.table("segment").to_pylist()}
    files = store.sql("select image_id, rel_path from files where image_id is not null")
    paths = dict(zip(files["image_id"].to_pylist(), files["rel_path"].to_pylist(), strict=True))
    by_path = {paths[i]: r for i, r in rows.items()}
    flat = by_path["plain/flat.png"]
    assert (flat["status"], flat["n_segments"], flat["segments"]) == ("no_segments", 0, [])
    broken = by_path["broken/cut.jpg"]
    assert broken["status"] == "error" and broken["error"].startswith(("truncated", "decode"))
    s0 = by_path["shapes/s0.jpg"]
    assert s0["status"] == "ok" and s0["frame_width"] == 240 and s0["scale_x"] == 1.0
    # s0 holds one square: a segment covers it (and the background is another).
    segs = s0["segments"]
    assert [g["segment_id"] for g in segs] == list(range(len(segs)))
    for g in segs:
        mask = decode_rle({"size": [180, 240], "counts": g["rle"]})
        x, y, w, h = g["bbox"]
        assert mask.sum() / mask.size * 100 == pytest.approx(g["area_pct"], rel=1e-3)
        assert mask[y : y + h, x : x + w].sum() == mask.sum()
    table = store.table("segments")
    keys = list(zip(table["image_id"].to_pylist(), table["segment_id"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == result.segments + 2  # + the no-segment, error rows
    assert (
        store.sql("select count(*) from segments where segment_id is null").column(0)[0].as_py()
        == 2
    )
    again = segment(store, SegmentConfig(workers=1, progress=False))
    assert again.passes["segment"]["processed"] == 0 and again.segments == result.segments


def test_where_segments_only_the_selected_images(tmp_path: Path, source: Path) -> None:
    store = _store(tmp_path, source)
    result = segment(
        store, SegmentConfig(where="rel_path like 'shapes/%'", workers=1, progress=False)
    )
    assert result.selected == 4 and result.images == 4 and result.errors == 0


def test_flatten_keeps_one_row_per_segmentless_image() -> None:
    from lamina.passes.segment import SCHEMA

    table = pa.Table.from_pylist(
        [
            {"image_id": "a", "status": "ok", "n_segments": 2,
             "segments": [{"segment_id": 0, "rle": "x"}, {"segment_id": 1, "rle": "y"}]},
            {"image_id": "b", "status": "no_segments", "n_segments": 0, "segments": []},
            {"image_id": "c", "status": "error", "segments": None, "error": "truncated"},
        ],
        schema=SCHEMA,
    )  # fmt: skip
    flat = flatten_segments(table).sort_by("image_id")
    assert flat["image_id"].to_pylist() == ["a", "a", "b", "c"]
    assert flat["segment_id"].to_pylist() == [0, 1, None, None]
    assert flat["rle"].to_pylist() == ["x", "y", None, None]
    assert flat["error"].to_pylist() == [None, None, None, "truncated"]


def _cli(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lamina.cli", "--store", str(store), *args]


@pytest.mark.slow
def test_a_kill_during_segment_resumes_to_identical_tables(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(100):
        _shapes_photo(src / f"d{i % 3}" / f"{i:03d}.jpg", i, size=(320, 240))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for root in (killed, clean):
        subprocess.run(_cli(root, "scan", str(src), "--workers", "1"), check=True, env=env,
                       capture_output=True)  # fmt: skip
    proc = subprocess.Popen(
        _cli(killed, "segment", "--workers", "1"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if list((killed / "ledger" / "segment").glob("*/chunk-*.json")):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "segment finished before it could be killed"
    for root in (killed, clean):
        subprocess.run(_cli(root, "segment", "--workers", "1", "--json"), check=True, env=env,
                       capture_output=True)  # fmt: skip
    query = "select * from segments order by image_id, segment_id"
    a, b = Store.open(killed).sql(query), Store.open(clean).sql(query)
    assert a.num_rows == b.num_rows > 100
    assert a.equals(b)
