"""The optional depth pass (issue 18, item 6): a transformers depth-estimation model on the
photographs, summary statistics only; a tiny random DPT saved to a temp folder runs the
whole path offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.jobs.depth import DepthJobConfig, depth
from lamina.jobs.scan import ScanConfig, scan
from lamina.passes.depth import depth_summary
from tests.conftest import write_photo


def save_tiny_dpt(folder: Path) -> Path:
    """A random DPT of ~300 KB with a 32 px processor."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
        image_size=32, patch_size=8, neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=16,
        backbone_out_indices=[0, 1, 2, 3], reassemble_factors=[4, 2, 1, 0.5],
    )  # fmt: skip
    torch.manual_seed(0)
    DPTForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(
        folder
    )
    return folder


def test_depth_summary_of_a_known_map() -> None:
    d = np.full((10, 10), 2.0)
    d[:, :3] = 10.0  # a near object over 30 % of the frame (larger is nearer)
    s = depth_summary(d)
    assert s["depth_median"] == 2.0 and s["depth_p95"] == 10.0 and s["depth_p05"] == 2.0
    assert s["depth_range"] == 8.0 and s["foreground_share"] == 0.3
    # Metric depth (larger is farther): the near object is the small values.
    assert depth_summary(d, larger_is_nearer=False)["foreground_share"] == 0.7
    with pytest.raises(ValueError, match="no finite value"):
        depth_summary(np.full((2, 2), np.nan))


def test_depth_on_the_selected_images_with_a_tiny_model(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_photo(src / "a.jpg", 1, size=(96, 64))
    write_photo(src / "b.jpg", 2, size=(64, 96))
    (src / "cut.jpg").write_bytes((src / "a.jpg").read_bytes()[:300])  # truncated
    store = Store.open(tmp_path / "store", create=True)
    scan(store, ScanConfig(sources=(str(src),), progress=False))
    model = f"hf:{save_tiny_dpt(tmp_path / 'tiny-dpt')}"
    # Default selection: the photos, which needs `lamina modality`.
    with pytest.raises(LaminaError, match="no modality yet"):
        depth(store, DepthJobConfig(model, progress=False))
    with pytest.raises(LaminaError, match="bad depth model 'dpt'"):
        depth(store, DepthJobConfig("dpt", all_images=True, progress=False))
    with pytest.raises(LaminaError, match="no model folder"):
        depth(store, DepthJobConfig("hf:/nonexistent/dpt", all_images=True, progress=False))
    done = depth(store, DepthJobConfig(model, all_images=True, progress=False))
    assert done.selected == done.processed == 3
    rows = {
        r["rel_path"]: r
        for r in store.sql("select * from depth join files using (image_id)").to_pylist()
    }
    for name in ("a.jpg", "b.jpg"):
        r = rows[name]
        assert r["error"] is None and r["model"] == model and r["larger_is_nearer"] is True
        assert r["depth_p05"] <= r["depth_median"] <= r["depth_p95"]
        assert r["depth_range"] == pytest.approx(r["depth_p95"] - r["depth_p05"], rel=1e-5)
        assert 0.0 <= r["foreground_share"] <= 1.0
    assert rows["cut.jpg"]["error"] and rows["cut.jpg"]["depth_median"] is None
    # Resumable: nothing new, nothing measured again.
    again = depth(store, DepthJobConfig(model, all_images=True, progress=False))
    assert again.processed == 0 and again.already_done == 3
