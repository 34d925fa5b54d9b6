"""COCO export of segments, checked by pycocotools: masks, areas and boxes round-trip in
the original frame, and lamina's RLE strings are pycocotools' own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lamina.core.masks import decode_rle, encode_rle, string_to_counts
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
