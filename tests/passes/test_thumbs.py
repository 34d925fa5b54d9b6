"""The thumbs pass: deterministic names, size, orientation, reuse, errors, shared decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from lamina.core.decode import decode_batch
from lamina.core.errors import ConfigError
from lamina.core.passes import get_pass
from lamina.core.runner import run_passes
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.jobs.thumbs import make_thumbnails
from lamina.passes.thumbs import thumb_path, thumb_recipe, thumbs_config
from tests.conftest import write_photo


def _portrait_with_exif_rotation(path: Path) -> None:
    """A 600x300 landscape stored with EXIF orientation 6 (shown rotated 90° clockwise,
    so upright it is 300 wide and 600 tall): left half red, right half blue as stored."""
    pixels = np.zeros((300, 600, 3), np.uint8)
    pixels[:, :300] = (255, 0, 0)
    pixels[:, 300:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, "JPEG", quality=95, exif=exif)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("thumbsrc")
    write_photo(src / "big.jpg", 1, size=(1600, 1200))
    write_photo(src / "small.png", 2, size=(120, 80), fmt="PNG")
    _portrait_with_exif_rotation(src / "rotated.jpg")
    good = (src / "big.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(good[: len(good) // 3])
    return src


def _store(tmp_path: Path, source: Path) -> Store:
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [source], workers=1, progress=False)
    return store


def _rows(store: Store) -> dict[str, dict]:
    sql = "select f.rel_path, t.* from thumbs t join files f using (image_id)"
    return {r["rel_path"]: r for r in store.sql(sql).to_pylist()}


def test_recipe_and_paths() -> None:
    assert thumb_recipe() == "512-jpeg-q80"
    assert thumb_recipe(256, "jpeg", 90) == "256-jpeg-q90"
    assert thumb_path("/s", "abcdef").as_posix() == "/s/thumbs/512-jpeg-q80/ab/abcdef.jpg"
    assert (
        thumb_path("/s", "abcdef", "64-jpeg-q70").as_posix()
        == "/s/thumbs/64-jpeg-q70/ab/abcdef.jpg"
    )
    for bad in ((1024, "webp", 80), (512, "png", 80), (512, "webp", 0)):
        with pytest.raises(ConfigError):
            thumb_recipe(*bad)


def test_store_root_is_not_in_the_layer_hash() -> None:
    a = get_pass("thumbs", thumbs_config("/a"))
    b = get_pass("thumbs", thumbs_config("/b"))
    assert a.layer_id == b.layer_id
    assert a.layer_id != get_pass("thumbs", thumbs_config("/a", quality=70)).layer_id


def test_thumbnails_sizes_orientation_errors_and_reuse(source: Path, tmp_path: Path) -> None:
    store = _store(tmp_path, source)
    first = make_thumbnails(store, workers=1, progress=False)
    assert first["processed"] == 4 and first["error_rows"] == 1
    assert first["recipe"] == "512-jpeg-q80"
    rows = _rows(store)
    assert rows["cut.jpg"]["thumb"] is None and rows["cut.jpg"]["error"].startswith("truncated")
    big, small, rotated = rows["big.jpg"], rows["small.png"], rows["rotated.jpg"]
    assert (big["width"], big["height"]) == (512, 384)  # long edge exactly 512
    assert (small["width"], small["height"]) == (120, 80)  # never upscaled
    assert (rotated["width"], rotated["height"]) == (256, 512)  # orientation 6 applied
    for row in (big, small, rotated):
        path = thumb_path(store, row["image_id"])
        assert row["thumb"] == path.relative_to(store.root).as_posix()
        assert path.stat().st_size == row["bytes"] > 0
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size == (row["width"], row["height"])
    # Upright, the stored left (red) half is on top and the right (blue) half below.
    with Image.open(thumb_path(store, rotated["image_id"])) as im:
        top, bottom = np.asarray(im.convert("RGB"))[[20, -20], 128].astype(int)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60

    mtimes = {p: p.stat().st_mtime_ns for p in (store.root / "thumbs").rglob("*.jpg")}
    assert len(mtimes) == 3
    again = make_thumbnails(store, workers=1, progress=False)
    assert again["processed"] == 0 and again["already_done"] == 4
    assert again["missing_files"] == 0
    kept = thumb_path(store, small["image_id"])
    saved = kept.read_bytes()
    kept.unlink()
    assert make_thumbnails(store, workers=1, progress=False)["missing_files"] == 1
    kept.write_bytes(saved)
    mtimes[kept] = kept.stat().st_mtime_ns
    # A new layer for the same recipe (deleted layer) finds the files and keeps them.
    for sub in ("layers", "ledger"):
        for d in (store.root / sub / "thumbs").iterdir():
            for f in d.iterdir():
                f.unlink()
    redo = make_thumbnails(store, workers=1, progress=False)
    assert redo["processed"] == 4
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert _rows(store)["big.jpg"]["bytes"] == big["bytes"]


def test_jpeg_recipe_and_a_smaller_size(source: Path, tmp_path: Path) -> None:
    store = _store(tmp_path, source)
    result = make_thumbnails(store, size=128, fmt="jpeg", quality=70, workers=1, progress=False)
    assert result["recipe"] == "128-jpeg-q70" and result["dir"].endswith("thumbs/128-jpeg-q70")
    rows = _rows(store)
    assert (rows["big.jpg"]["width"], rows["big.jpg"]["height"]) == (128, 96)
    assert (rows["rotated.jpg"]["width"], rows["rotated.jpg"]["height"]) == (64, 128)
    with Image.open(thumb_path(store, rows["big.jpg"]["image_id"], "128-jpeg-q70")) as im:
        assert im.format == "JPEG" and im.size == (128, 96)
        assert 0x0112 not in im.getexif()  # upright pixels, no orientation tag


def test_shares_one_decode_with_signals_and_hashes(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path, source)
    import lamina.core.decode as decode

    calls: list[int] = []
    real = decode.decode_batch

    def counting(batch: pa.Table, recipe: str) -> list:
        calls.append(batch.num_rows)
        return real(batch, recipe)

    monkeypatch.setattr(decode, "decode_batch", counting)
    result = run_passes(
        store,
        [("signals", None), ("hashes", None), ("thumbs", thumbs_config(store))],
        workers=1,
        progress=False,
    )
    assert sum(calls) == 4  # each image decoded once for the three passes
    assert result["thumbs"]["processed"] == result["signals"]["processed"] == 4
    rows = _rows(store)
    assert thumb_path(store, rows["big.jpg"]["image_id"]).is_file()


def test_without_a_store_root_it_refuses_rows(source: Path) -> None:
    batch = pa.table({"image_id": ["ab"], "abs_path": [str(source / "big.jpg")]})
    with pytest.raises(ConfigError, match="store_root"):
        get_pass("thumbs").process_decoded(batch, decode_batch(batch, "working"))


def test_the_pass_returns_its_files_and_the_runner_writes_them(
    source: Path, tmp_path: Path
) -> None:
    """No store write in the pass: it returns each new thumbnail's bytes with the rows
    (under its declared `thumbs/` folder), and reuses a file already there."""
    root = tmp_path / "store"
    batch = pa.table({"image_id": ["ab12", "cd34"], "abs_path": [str(source / "big.jpg")] * 2})
    p = get_pass("thumbs", thumbs_config(root))
    out = p.process_decoded(batch, decode_batch(batch, "working"))
    rel, other = "thumbs/512-jpeg-q80/ab/ab12.jpg", "thumbs/512-jpeg-q80/cd/cd34.jpg"
    assert thumb_path(root, "ab12") == root / rel
    assert sorted(out.files) == [rel, other]
    assert not root.exists()  # nothing written by the pass
    assert out.table["bytes"].to_pylist() == [len(out.files[rel])] * 2
    assert [o.folder for o in p.outputs] == ["thumbs"] and not p.outputs[0].fsync
    # A thumbnail already there (from an earlier run) is reused, not returned again.
    (root / rel).parent.mkdir(parents=True)
    (root / rel).write_bytes(out.files[rel])
    again = p.process_decoded(batch, decode_batch(batch, "working"))
    assert sorted(again.files) == [other]
    assert again.table.equals(out.table)
