"""The cost estimate `lamina run --print-config` prints: units x measured cost / workers,
counted from the store or the sources, and still valid TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from lamina.cli import main
from lamina.pipeline.config import PipelineConfig
from lamina.pipeline.costs import COSTS, Counts, count_images, estimate_lines


def _by_stage(lines: list[str]) -> dict[str, str]:
    return {line.split(":")[0].strip("# "): line for line in lines[1:]}


def test_estimate_is_units_times_cost_over_workers() -> None:
    config = PipelineConfig(stages=["segment", "motifs"], workers=2, caption_max=50)
    lines = estimate_lines(config, Counts(images=1000, huge_tiles=200, text_heavy=40))
    assert lines[0].startswith("# cost estimate on 1,000 images (the store), 2 workers")
    rows = _by_stage(lines)
    segment = (1000 + 200) * COSTS["segment"].seconds / 2  # 1110 s
    assert f"~{segment / 60:.0f} min = 1,000 images" in rows["segment"]
    assert "+ 200 tiles" in rows["segment"] and "(stage off)" not in rows["segment"]
    motifs = 1000 * COSTS["segment_embed"].seconds / 2 / 3600
    assert f"~{motifs:.1f} h" in rows["segment_embed + motifs"]
    assert "40 text_heavy images" in rows["ocr"] and "(stage off)" in rows["ocr"]
    assert "50 images x" in rows["caption"]  # caption_max caps it


def test_max_images_scales_every_count() -> None:
    config = PipelineConfig(max_images=100, workers=1)
    rows = _by_stage(estimate_lines(config, Counts(images=1000, huge_tiles=50, text_heavy=500)))
    assert "= 100 images" in rows["segment"] and "+ 5 tiles" in rows["segment"]
    assert "50 text_heavy images" in rows["ocr"]
    unsensed = _by_stage(estimate_lines(config, Counts(images=1000)))["ocr"]
    assert "100 text_heavy images" in unsensed and "every image counted" in unsensed


def test_without_a_store_the_source_files_are_counted(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.png", "sub/c.JPG", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    counts = count_images(None, [str(tmp_path)])
    assert counts.images == 3 and "not scanned yet" in counts.source


def test_print_config_ends_with_the_estimate_and_stays_toml(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(src / f"{i}.png")
    result = CliRunner().invoke(
        main,
        ["--store", str(tmp_path / "store"), "run", str(src), "--stages", "scan,segment",
         "--workers", "1", "--print-config"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.output)["stages"] == ["scan", "segment"]
    estimate = result.output.split("# cost estimate", 1)[1]
    assert " on 3 images (image files under the sources" in estimate
    seconds = 3 * COSTS["segment"].seconds
    assert f"segment: ~{seconds:.0f} s = 3 images x {COSTS['segment'].seconds:g} s" in estimate
    assert not (tmp_path / "store").exists()  # printing the config creates nothing
