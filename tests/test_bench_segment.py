"""`bench/segment.py` rewrites only its marked block of bench/results/segment.md, never the
hand-written sections around it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _segment_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_segment", BENCH / "segment.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_run_replaces_only_its_block_of_the_results() -> None:
    bench = _segment_bench()
    text = (BENCH / "results" / "segment.md").read_text()
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    before, after = text.split(bench.BEGIN)[0], text.split(bench.END)[1]
    new = bench.with_block(text, "Date: today.\n\n| run |\n")
    assert new == f"{before}{bench.BEGIN}\nDate: today.\n\n| run |\n{bench.END}{after}"
    assert bench.with_block(new, "again\n").split(bench.END)[1] == after  # and again


def test_a_file_without_markers_gets_the_block_appended() -> None:
    bench = _segment_bench()
    text = "# Segment benchmark\n\n## Notes by hand\n\nkept\n"
    new = bench.with_block(text, "rows\n")
    assert new == f"{text}\n{bench.BEGIN}\nrows\n{bench.END}\n"
    with pytest.raises(ValueError, match="markers are broken"):
        bench.with_block(f"{text}{bench.END}\n{bench.BEGIN}\n", "rows\n")
