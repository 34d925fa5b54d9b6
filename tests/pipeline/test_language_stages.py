"""The language stages of `lamina run`: off by default, run when listed in `stages`, and
the caption stage skipped (with its reason) without a caption_model."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lamina.cli import main
from lamina.pipeline.config import DEFAULT_STAGES, PipelineConfig, config_toml
from tests.conftest import write_photo
from tests.text_images import render_lines


def test_language_stages_are_off_by_default_and_say_their_cost() -> None:
    assert not {"ocr", "modality", "caption"} & set(DEFAULT_STAGES)
    toml = config_toml(PipelineConfig())
    assert (
        'ocr_engine = "rapidocr"  # stage ocr (off by default): text_heavy images, ~1-2 s' in toml
    )
    assert "caption_max = 50  # captions per run at most (~0.5-5 s each" in toml


def test_run_with_the_ocr_and_modality_stages(tmp_path: Path) -> None:
    src = tmp_path / "src"
    # A page with plenty of small text: flagged text_heavy by the default policy.
    lines = [f"Specimen {i:03d} collected near Uppsala by Linnaeus in 1753" for i in range(14)]
    render_lines(src / "page.png", lines, size=18, width=700)
    write_photo(src / "photo.jpg", 1, size=(160, 120))
    out = CliRunner().invoke(
        main,
        ["--store", str(tmp_path / "store"), "run", str(src), "--stages",
         "scan,sense,ocr,modality,caption", "--json"],
        catch_exceptions=False,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    stages = json.loads(out.output[out.output.index("{") :])["stages"]
    assert stages["caption"]["message"] == "skipped: no caption_model"
    assert "1 text_heavy images, 1 with text" in stages["ocr"]["message"]
    assert stages["modality"]["message"]
