"""The optional depth stage of `lamina run` (issue 18): off by default, skipped without a
depth_model, its cost in `--print-config`, run on the photos after `modality`, and summed
up per modality in the report (a tiny random DPT saved to a temp folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lamina.core.store import Store
from lamina.pipeline import run_pipeline
from lamina.pipeline.config import DEFAULT_STAGES, PipelineConfig, config_toml
from lamina.pipeline.costs import Counts, count_images, estimate_lines
from lamina.report import build_report
from lamina.report.data import collect
from lamina.sample import package_photos
from tests.passes.test_depth import save_tiny_dpt
from tests.text_images import render_lines


def test_depth_stage_is_off_by_default_and_says_its_cost() -> None:
    assert "depth" not in DEFAULT_STAGES
    assert 'depth_model = ""  # stage depth (off by default): hf:<repo or folder>' in (
        config_toml(PipelineConfig())
    )
    on = PipelineConfig(stages=["depth"], workers=1)
    rows = estimate_lines(on, Counts(images=100, photos=30))
    assert rows[-1] == "#   depth: ~30 s = 30 photos x 1 s [a guess, not benchmarked]"
    before = estimate_lines(PipelineConfig(workers=2), Counts(images=100))[-1]
    assert before.startswith("#   depth: ~50 s (stage off) = 100 photos x 1 s")
    assert before.endswith("(no modality yet: every image counted)")


def test_run_with_the_depth_stage_and_its_report_table(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    photos = package_photos()
    for name in ("astronaut", "coffee"):
        Image.fromarray(np.ascontiguousarray(photos[name][:240, :320])).save(src / f"{name}.jpg")
    render_lines(src / "page.png", [f"Specimen {i} collected near Uppsala" for i in range(12)])
    store = Store.open(tmp_path / "store", create=True)
    base = {"root": [str(src)], "model": "default", "workers": 1}
    skipped = run_pipeline(store, PipelineConfig(**base, stages=["scan", "depth"]),
                           progress=False, echo=lambda _: None)  # fmt: skip
    assert skipped["stages"]["depth"]["message"] == "skipped: no depth_model"
    model = f"hf:{save_tiny_dpt(tmp_path / 'tiny-dpt')}"
    config = PipelineConfig(**base, stages=["scan", "modality", "depth"], depth_model=model)
    summary = run_pipeline(store, config, progress=False, echo=lambda _: None)
    depth = summary["stages"]["depth"]
    photo_rows = store.sql(
        "select rel_path from files join modality using (image_id) where modality = 'photo' "
        "order by 1"
    ).to_pylist()
    assert [r["rel_path"] for r in photo_rows] == ["astronaut.jpg", "coffee.jpg"]
    assert depth["message"] == "2 measured of 2 (modality = 'photo'), 0 errors"
    assert count_images(store, []).photos == 2  # --print-config's depth line counts these
    measured = store.sql("select count(*) as n from depth where error is null").to_pylist()
    assert measured[0]["n"] == 2
    section = next(s for s in collect(store) if s.id == "language")
    table = section.data["depth"]
    assert table["measured"] == 2 and table["errors"] == 0 and table["model"] == model
    assert [(r["name"], r["n"]) for r in table["by_modality"]] == [("photo", 2)]
    row = table["by_modality"][0]
    assert 0.0 <= row["foreground_share"] <= 1.0 and row["depth_range"] >= 0.0
    assert table["by_cluster"] == []  # no clusters in this store
    html = build_report(store, thumbnails=False).read_text()
    assert '<table class="depth-table" id="depth-by-modality">' in html
    assert '<tr><td>photo</td><td class="n">2</td>' in html
