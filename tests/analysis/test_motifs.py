"""Motifs end to end: a stamp planted into many sample photos at varying positions and
scales is segmented, embedded and clustered into a motif of its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lamina.analysis.motifs import cooccurrence
from lamina.core.masks import decode_rle
from lamina.core.store import Store
from lamina.jobs.motifs import MotifsConfig, motifs
from lamina.jobs.scan import scan_sources
from lamina.jobs.segment import SegmentConfig, segment
from lamina.sample import package_photos

STAMP = (230, 20, 200)  # a magenta five-pointed star


def star_mask(size: int) -> np.ndarray:
    """A filled five-pointed star in a size x size box."""
    im = Image.new("L", (size, size), 0)
    c = size / 2
    points = []
    for k in range(10):
        r = c * (0.95 if k % 2 == 0 else 0.42)
        a = np.pi / 2 + k * np.pi / 5
        points.append((c + r * np.cos(a), c - r * np.sin(a)))
    ImageDraw.Draw(im).polygon(points, fill=255)
    return np.asarray(im) > 127


def planted_collection(root: Path, n_planted: int = 20) -> dict[str, np.ndarray]:
    """Sample photos (long side 256) as PNGs, the first `n_planted` whose short side is at
    least 128 px with the stamp at a random place and a scale of 15-30% of the short side
    (so at least ~20 px: smaller is a speck the filters drop); returns file name -> the
    stamp's mask for the planted ones."""
    rng = np.random.default_rng(7)
    photos = package_photos()
    truth: dict[str, np.ndarray] = {}
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(sorted(photos)):
        im = Image.fromarray(photos[name]).convert("RGB")
        im.thumbnail((256, 256))
        a = np.array(im)
        file = f"{i:02d}-{name.replace('/', '_')}.png"
        h, w = a.shape[:2]
        if len(truth) < n_planted and min(h, w) >= 128:
            s = int(min(h, w) * rng.uniform(0.15, 0.3))
            y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            mask = np.zeros((h, w), bool)
            mask[y : y + s, x : x + s] = star_mask(s)
            a[mask] = STAMP
            truth[file] = mask
        Image.fromarray(a).save(root / file)
    return truth


@pytest.mark.slow
def test_a_planted_stamp_forms_its_own_motif(tmp_path: Path) -> None:
    truth = planted_collection(tmp_path / "src")
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tmp_path / "src"], workers=1, progress=False)
    # 32 segments per image at most: the test's cost is the crops' embedding.
    seg = segment(store, SegmentConfig(max_segments=32, workers=1, progress=False))
    assert seg.errors == 0
    found = motifs(store, MotifsConfig(workers=1, progress=False))
    assert found.segments > 200 and found.motifs >= 5
    files = store.sql("select image_id, rel_path from files where image_id is not null")
    name_of = dict(zip(files["image_id"].to_pylist(), files["rel_path"].to_pylist(), strict=True))
    flat = store.table("segments").to_pylist()
    motif_of = {
        (r["image_id"], r["segment_id"]): r["motif"] for r in store.table("motifs").to_pylist()
    }
    # Per planted image: the motif of its segment that best covers the stamp.
    stamp_motif: dict[str, int | None] = {}
    inside: dict[tuple[str, int], float] = {}  # share of each segment inside a stamp
    for image_id, name in name_of.items():
        if name not in truth:
            continue
        best, best_iou = None, 0.0
        for r in flat:
            if r["image_id"] != image_id or r["segment_id"] is None:
                continue
            m = decode_rle({"size": [r["frame_height"], r["frame_width"]], "counts": r["rle"]})
            inside[image_id, r["segment_id"]] = (m & truth[name]).sum() / m.sum()
            iou = (m & truth[name]).sum() / (m | truth[name]).sum()
            if iou > best_iou:
                best, best_iou = (image_id, r["segment_id"]), iou
        stamp_motif[name] = motif_of.get(best) if best and best_iou >= 0.5 else None
    motifs_seen = [m for m in stamp_motif.values() if m is not None]
    top = max(set(motifs_seen), key=motifs_seen.count)
    recall = motifs_seen.count(top) / len(truth)
    members = [k for k, m in motif_of.items() if m == top]
    # Precision: members that are (mostly) a stamp, or a piece of one.
    precision = sum(inside.get(k, 0.0) >= 0.5 for k in members) / len(members)
    print(f"stamp motif {top}: recall {recall:.2f}, precision {precision:.2f}, "
          f"{len(members)} members, {found.segments} segments, {found.motifs} motifs")  # fmt: skip
    assert recall >= 0.9
    assert precision >= 0.8
    summary = {r["motif"]: r for r in store.table("motif_summary").to_pylist()}
    assert summary[top]["images"] >= 0.9 * len(truth)
    assert summary[top]["kind"] == "foreground"
    per_image = store.sql(f"select count(distinct image_id) from image_motifs where motif = {top}")
    assert per_image.column(0)[0].as_py() == summary[top]["images"]


def test_cooccurrence_counts_lift_and_pmi() -> None:
    rows = cooccurrence({"a": {1, 2}, "b": {1, 2}, "c": {1}, "d": {3}})
    assert rows == [
        {"motif_a": 1, "motif_b": 2, "images_a": 3, "images_b": 2, "images_both": 2,
         "lift": pytest.approx(4 * 2 / 6), "pmi": pytest.approx(np.log2(4 / 3))}
    ]  # fmt: skip
