"""COCO export of segments, checked by pycocotools: masks, areas and boxes round-trip in
the original frame, and lamina's RLE strings are pycocotools' own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lamina.core.masks import decode_rle, encode_rle, string_to_counts, upscaled_rle
from lamina.core.store import Store
from lamina.jobs.exports import ExportConfig, export
from lamina.jobs.scan import scan_sources
from lamina.jobs.segment import SegmentConfig, segment

mask_api = pytest.importorskip("pycocotools.mask")
# pycocotools 2.0 calls np.array(copy=False) on its own objects: numpy 2 warns, harmlessly.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def test_rle_strings_are_pycocotools_own() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        mask = rng.random((h, w)) < rng.random()
        theirs = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        ours = encode_rle(mask)
        assert ours["counts"] == theirs["counts"].decode()
        assert (mask_api.decode({"size": ours["size"], "counts": ours["counts"]}) == mask).all()
        assert (decode_rle({"size": [h, w], "counts": theirs["counts"]}) == mask).all()
    with pytest.raises(ValueError, match="add up to"):
        decode_rle({"size": [2, 2], "counts": [1, 2]})  # a mask off its frame
    assert string_to_counts("") == []


def materialised(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """The nearest-neighbour resize the export describes, made whole (the reference)."""
    h, w = mask.shape
    ys = (np.arange(height) * h) // height
    xs = (np.arange(width) * w) // width
    return mask[ys[:, None], xs[None, :]]


def test_upscaled_rle_is_pycocotools_encode_of_the_materialised_mask() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 16, 2))
        height, width = (int(v) for v in rng.integers(1, 50, 2))  # up, down and uneven
        mask = rng.random((h, w)) < rng.random()
        big = materialised(mask, width, height)
        theirs = mask_api.encode(np.asfortranarray(big.astype(np.uint8)))
        ours = upscaled_rle(mask, width, height)
        assert ours["counts"] == theirs["counts"].decode(), (h, w, height, width)
        assert ours["size"] == [height, width] and ours["area"] == int(big.sum())
        if big.any():
            assert ours["bbox"] == mask_api.toBbox(theirs).astype(int).tolist()


def test_upscaled_rle_of_a_200_megapixel_image_stays_small() -> None:
    import tracemalloc

    # A ragged disk in a 512 x 341 frame, scaled to 17,320 x 11,547 (200 MP): the
    # materialised mask alone would be 200 MB.
    yy, xx = np.mgrid[:512, :341]
    mask = (yy - 250) ** 2 + (xx - 170) ** 2 < 120**2
    mask[::29, ::13] ^= True
    tracemalloc.start()
    try:
        big = upscaled_rle(mask, 11_547, 17_320)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6  # measured ~4 MB, most of it the RLE string itself
    assert big["size"] == [17_320, 11_547]
    # Its area is the small mask's, each pixel counted by the output pixels it covers.
    rows = -((-np.arange(513) * 17_320) // 512)
    cols = -((-np.arange(342) * 11_547) // 341)
    assert big["area"] == int((np.diff(rows)[:, None] * np.diff(cols)[None, :])[mask].sum())


def test_coco_export_round_trips_through_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    src = tmp_path / "src"
    src.mkdir()
    big = np.full((600, 800, 3), (90, 120, 90), np.uint8)  # working frame 512 x 384
    big[100:300, 200:500] = (220, 40, 40)
    big[380:560, 50:200] = (40, 40, 220)
    Image.fromarray(big).save(src / "big.png")
    small = np.full((120, 160, 3), 200, np.uint8)
    small[20:80, 30:90] = (10, 160, 10)
    Image.fromarray(small).save(src / "small.png")
    Image.new("RGB", (64, 48), (30, 30, 30)).save(src / "flat.png")
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [src], workers=1, progress=False)
    segment(store, SegmentConfig(workers=1, progress=False))

    out = tmp_path / "segments.json"
    result = export(store, ExportConfig(out, fmt="coco"))
    coco = COCO(str(out))
    doc = json.loads(out.read_text())
    assert result.summary["images"] == 3 and result.rows == len(doc["annotations"]) > 2
    assert [c["name"] for c in doc["categories"]] == ["segment"]  # no motifs run
    by_name = {img["file_name"]: img for img in doc["images"]}
    assert (by_name["big.png"]["width"], by_name["big.png"]["height"]) == (800, 600)
    assert coco.getAnnIds(imgIds=[by_name["flat.png"]["id"]]) == []
    # Every annotation's mask, area and box agree with pycocotools' reading of it.
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.imgs[ann["image_id"]]
        mask = coco.annToMask(ann)
        assert mask.shape == (img["height"], img["width"])
        assert int(mask.sum()) == ann["area"] == int(mask_api.area(ann["segmentation"]))
        assert mask_api.toBbox(ann["segmentation"]).tolist() == ann["bbox"]
    # The red rectangle of the big image comes back in the original frame.
    red = np.zeros((600, 800), bool)
    red[100:300, 200:500] = True
    big_anns = coco.loadAnns(coco.getAnnIds(imgIds=[by_name["big.png"]["id"]]))
    best = max(((coco.annToMask(a) > 0) & red).sum() / ((coco.annToMask(a) > 0) | red).sum()
               for a in big_anns)  # fmt: skip
    assert best > 0.97
