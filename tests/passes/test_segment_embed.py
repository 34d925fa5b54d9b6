"""Segment embeddings and the motif tables on a small store: a vector per kept segment,
error rows carried over, tables that agree with each other, and a resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.jobs.motifs import MotifsConfig, motifs
from lamina.jobs.scan import scan_sources
from lamina.jobs.segment import SegmentConfig, segment
from lamina.passes.segment_embed import load_segment_embeddings, masked_crop, square
from tests.passes.test_segment import source  # noqa: F401 - the fixture


def test_masked_crop_keeps_the_margin_and_greys_the_rest() -> None:
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[:] = (250, 0, 0)
    mask = np.zeros((100, 100), bool)
    mask[40:60, 30:70] = True
    crop = masked_crop(rgb, mask, [30, 40, 40, 20], margin=0.1)
    assert crop.shape == (24, 48, 3)  # 4 px and 2 px of margin each side
    assert crop[0, 0].tolist() == [124, 116, 104] and crop[12, 24].tolist() == [250, 0, 0]


def test_a_long_thin_crop_is_squared_so_the_model_sees_all_of_it() -> None:
    # A 1:8 ruler-like crop: the embedders resize the short side and centre-crop, which
    # would keep only its middle eighth. Squared, the whole crop is inside the centre.
    crop = np.zeros((10, 80, 3), np.uint8)
    crop[:, :10] = 255  # the left end, which a centre crop would lose
    out = square(crop)
    assert out.shape == (80, 80, 3)
    assert (out[35:45] == crop).all()
    assert (out[:35] == (124, 116, 104)).all() and (out[45:] == (124, 116, 104)).all()
    assert square(out) is out


def test_motifs_need_segments_first(tmp_path: Path, source: Path) -> None:  # noqa: F811
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [source], workers=1, progress=False)
    with pytest.raises(LaminaError, match="no segments yet"):
        motifs(store, MotifsConfig(progress=False))


def test_segment_vectors_and_motif_tables_agree(tmp_path: Path, source: Path) -> None:  # noqa: F811
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [source], workers=1, progress=False)
    seg = segment(store, SegmentConfig(workers=1, progress=False))
    found = motifs(store, MotifsConfig(k=3, workers=1, progress=False))
    rows = {r["image_id"]: r for r in store.table("segment_embed").to_pylist()}
    segments = {r["image_id"]: r for r in store.table("segment").to_pylist()}
    assert rows.keys() == segments.keys()
    for image_id, row in rows.items():
        s = segments[image_id]
        if s["status"] == "error":
            # The decoder's reason first, as in every pixel pass (here: a truncated file).
            assert row["error"] == s["error"] and row["vectors"] is None
        else:
            assert row["segment_ids"] == [g["segment_id"] for g in s["segments"]]
            assert len(row["vectors"]) == len(row["segment_ids"])
    emb = load_segment_embeddings(store, found.config["embed_layer"])
    assert len(emb) == found.segments == seg.segments and emb.dim == 1280
    assert np.allclose(np.linalg.norm(emb.vectors, axis=1), 1, atol=1e-3)
    assignments = store.table("motifs")
    assert assignments.num_rows == seg.segments and found.motifs == 3
    summary = store.table("motif_summary").to_pylist()
    assert sum(r["segments"] for r in summary) == seg.segments
    assert sum(found.kinds.values()) == 3
    per_image = store.sql("select image_id, sum(count) as n, sum(share) as s from image_motifs "
                          "group by 1").to_pylist()  # fmt: skip
    for r in per_image:
        assert r["n"] == segments[r["image_id"]]["n_segments"] and r["s"] == pytest.approx(1)
    again = motifs(store, MotifsConfig(k=3, workers=1, progress=False))
    assert again.passes["segment_embed"]["processed"] == 0
    assert again.passes["motifs"]["skipped"] is True
    # The report's motif galleries read the same tables.
    from lamina.report.context import open_context
    from lamina.report.data import motif_galleries

    section = motif_galleries(open_context(store), 2)
    assert section.missing is None and section.data["n_motifs"] == 3
    shown = section.data["motifs"]
    assert sorted(m["motif"] for m in shown) == [0, 1, 2]
    assert all(0 < len(m["tiles"]) <= 2 and m["tiles"][0]["path"] for m in shown)
    # The medoid's image comes first in each gallery.
    medoids = {
        r["motif"]: r["image_id"] for r in store.table("motifs").to_pylist() if r["is_medoid"]
    }
    assert all(m["tiles"][0]["image_id"] == medoids[m["motif"]] for m in shown)
