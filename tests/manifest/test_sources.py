from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.core.store import Store
from lamina.jobs import scan as scan_module
from lamina.jobs.scan import scan_sources
from lamina.manifest.sources import SameFiles, Scope, SourcePlan, plan_sources
from lamina.manifest.status import store_status
from tests.conftest import write_photo


def test_plan_compares_real_paths(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "2024" / "trip").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    os.symlink(root / "2024", tmp_path / "alias")
    p, y = str(root), str(root / "2024")

    # Inside a recorded source: part of it.
    plan = plan_sources([p], [root / "2024" / "trip"])
    assert plan.scopes == (Scope(p, root / "2024" / "trip", "2024/trip"),)
    assert plan.merged == {} and plan.trees == (os.path.realpath(root),)
    # The same folder through a symlink: the recorded name is kept.
    plan = plan_sources([y], [tmp_path / "alias"])
    assert plan.scopes == (Scope(y, tmp_path / "alias", ""),)
    # Around recorded sources: they merge into it; a source elsewhere stays.
    plan = plan_sources([y, str(tmp_path / "other")], [root])
    assert plan.merged == {y: (p, "2024")}
    assert plan.scopes == (Scope(p, root, ""),)
    assert plan.trees == tuple(
        sorted([os.path.realpath(root), os.path.realpath(tmp_path / "other")])
    )
    # Two folders of one scan, one inside the other: the outer one is walked.
    plan = plan_sources([], [root / "2024", root])
    assert plan.scopes == (Scope(p, root, ""),)
    # A store recorded before sources were compared (nested sources): the inner merges.
    assert plan_sources([p, y], [tmp_path / "other"]).merged == {y: (p, "2024")}


def test_a_store_with_nested_sources_is_repaired_by_the_next_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "pictures"
    write_photo(root / "a.jpg", 1)
    write_photo(root / "sub" / "b.jpg", 2)
    write_photo(root / "sub" / "c.jpg", 3)
    store = Store.open(tmp_path / "store", create=True)

    def old_plan(recorded: list[str], roots: list[Path]) -> SourcePlan:
        """How sources were planned before: each folder its own source, nested or not."""
        return SourcePlan(tuple(Scope(str(r), r) for r in roots))

    monkeypatch.setattr(scan_module, "plan_sources", old_plan)
    monkeypatch.setattr(scan_module, "find_same_files", lambda *a, **k: SameFiles())
    scan_sources(store, [root / "sub"], workers=1, progress=False)
    scan_sources(store, [root], workers=1, progress=False)
    before = store_status(store)
    assert before["files"]["total"] == 5  # the defect: two rows for b.jpg and c.jpg
    assert before["exact_duplicates"]["redundant_files"] == 2
    monkeypatch.undo()

    summary = scan_sources(store, [root], workers=1, progress=False)
    after = store_status(store)
    assert after["files"]["total"] == 3 and after["files"]["missing"] == 0
    assert after["files"]["by_source"] == {str(root): 3}
    assert after["exact_duplicates"] == {"groups": 0, "redundant_files": 0}
    assert summary["hashed"] == 0 and summary["merged"] == {str(root / "sub"): str(root)}


@pytest.mark.parametrize("rows_per_pass", [2, 65_536])
def test_a_file_listed_twice_is_found_in_any_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows_per_pass: int
) -> None:
    from lamina.manifest import sources as sources_module
    from lamina.manifest.sources import _listed_twice
    from lamina.passes.scan import spill_listing

    # Several passes (2 rows each) or one: the two names of one inode meet in one pass.
    monkeypatch.setattr(sources_module, "SAME_CHECK_ROWS", rows_per_pass)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(9):
        (src / f"f{i}.bin").write_bytes(bytes([i]))
    listing = spill_listing([src], tmp_path / "listing.parquet")
    assert not _listed_twice(listing)
    os.link(src / "f5.bin", src / "zz-link.bin")
    listing = spill_listing([src], tmp_path / "listing2.parquet")
    assert _listed_twice(listing)
