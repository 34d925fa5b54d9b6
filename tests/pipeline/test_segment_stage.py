"""`lamina segment` and the pipeline's segment stage (off by default) write the same
layers, row for row."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from lamina.cli import main
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.pipeline.config import DEFAULT_STAGES, STAGES, PipelineConfig
from lamina.pipeline.stages import stage_segment
from tests.passes.test_segment import source  # noqa: F401 - the fixture


def test_segment_command_and_stage_write_the_same_layers(tmp_path: Path, source: Path) -> None:  # noqa: F811
    assert {"segment", "motifs"} <= set(STAGES) and not {"segment", "motifs"} & set(DEFAULT_STAGES)
    a = Store.open(tmp_path / "a", create=True)
    b = Store.open(tmp_path / "b", create=True)
    for store in (a, b):
        scan_sources(store, [source], workers=1, progress=False)
    result = CliRunner().invoke(main, ["--store", str(a.root), "segment", "-j", "1", "--json"])
    assert result.exit_code == 0, result.output
    stage = stage_segment(b, PipelineConfig(root=[str(source)], workers=1), progress=False)
    assert stage.worked and "segments in 6 images, 1 errors" in stage.message
    assert a.current_pointer("segment") == b.current_pointer("segment")
    query = "select * from segments order by image_id, segment_id"
    assert a.sql(query).equals(b.sql(query))
