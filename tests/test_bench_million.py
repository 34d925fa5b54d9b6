"""`bench/million.py render` rewrites bench/results/million.md from the log and
bench/results/million.notes.md: every hand-written section of the results must be in the
notes, or the next render drops it."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _million_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_million", BENCH / "million.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_render_keeps_every_hand_written_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _million_bench()
    log = tmp_path / "results.jsonl"
    row = bench.Stage(2000, "scan", 2100, 7.5, 1.0, 159, 90, 242, 90, 0.5, "1.0", "", "now")
    log.write_text(json.dumps(bench.asdict(row)) + "\n")
    monkeypatch.setattr(bench, "LOG", log)
    notes = (BENCH / "results" / "million.notes.md").read_text()
    rendered = bench.render(notes)
    text = (BENCH / "results" / "million.md").read_text()
    headings = re.findall(r"^## .+$", text, flags=re.M)
    # The headings render writes itself, then the notes' (from "What was run" on).
    assert [h for h in headings if h not in rendered] == []
    assert (
        text.split("## What was run, and what was not", 1)[1]
        == rendered.split("## What was run, and what was not", 1)[1]
    )
