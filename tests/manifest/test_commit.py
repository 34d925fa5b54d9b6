"""The scan's commit writes its tables one key range at a time (`PARTITION_ROWS`): however
the ranges fall, the tables must be those of one range over everything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.manifest import commit as commit_module
from tests.conftest import write_photo

RUN_COLUMNS = ("run_id", "first_seen_run", "last_seen_run", "content_run", "missing_since_run")


def _tables(store: Store, runs: list[str]) -> dict[str, list[dict]]:
    """files, images and file_events, with each run id replaced by the scan it was (the
    stores' run ids differ, and two made in one second need not sort alike)."""
    rank = {run: f"scan{i}" for i, run in enumerate(runs)}
    out = {}
    for name in ("files", "images", "file_events"):
        rows = store.table(name).to_pylist()
        for row in rows:
            for col in RUN_COLUMNS:
                if row.get(col) is not None:
                    row[col] = rank[row[col]]
        # One part per run, read in the order of their names: not the scans' order.
        out[name] = rows if name == "files" else sorted(rows, key=lambda r: repr(sorted(r.items())))
    return out


def _scan_both(
    stores: dict[int, Store],
    runs: dict[int, list[str]],
    sources: list[Path],
    mp: pytest.MonkeyPatch,
) -> None:
    for rows, store in stores.items():
        mp.setattr(commit_module, "PARTITION_ROWS", rows)
        mp.setattr(commit_module, "RANGE_ROWS", 2 * rows)  # the later steps: 2 slices a range
        runs[rows].append(scan_sources(store, sources, workers=1, progress=False)["run_id"])


def test_ranges_make_the_tables_of_one_range(
    tree: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in range(12):  # enough rows for several ranges of 2, in nested folders
        write_photo(tree / f"more/{i % 3}" / f"p{i:02d}.jpg", 100 + i)
    (tree / "more" / "0" / "dup.jpg").write_bytes((tree / "cats" / "a.jpg").read_bytes())
    elsewhere = tmp_path_factory.mktemp("stores")  # not inside tmp_path, scanned below
    stores = {rows: Store.open(elsewhere / f"store-{rows}", create=True) for rows in (10**6, 2)}
    runs: dict[int, list[str]] = {rows: [] for rows in stores}

    _scan_both(stores, runs, [tree], monkeypatch)
    os.rename(tree / "cats" / "b.jpg", tree / "more" / "2" / "b_moved.jpg")  # moved
    write_photo(tree / "more" / "1" / "p01.jpg", 999)  # changed
    os.utime(tree / "more" / "1" / "p01.jpg", ns=(1, 1))
    (tree / "broken" / "notes.txt").unlink()  # missing
    write_photo(tree / "zz" / "new.png", 7, fmt="PNG")  # added, after every range
    _scan_both(stores, runs, [tree], monkeypatch)
    shutil.rmtree(tree / "more" / "0")  # a part of the source rescanned alone
    _scan_both(stores, runs, [tree / "more"], monkeypatch)
    # Another source, then one around both: the recorded rows are merged into it.
    write_photo(tmp_path / "other" / "o.jpg", 50)
    _scan_both(stores, runs, [tmp_path / "other"], monkeypatch)
    _scan_both(stores, runs, [tmp_path], monkeypatch)

    one, many = (_tables(stores[rows], runs[rows]) for rows in (10**6, 2))
    assert one == many
    events = {(r["rel_path"], r["event"]) for r in many["file_events"]}
    assert {("more/2/b_moved.jpg", "moved"), ("more/1/p01.jpg", "changed")} <= events
    assert ("more/0/p00.jpg", "missing") in events
    # Every table comes out in its order.
    files = [(r["source"], r["rel_path"]) for r in many["files"]]
    assert files == sorted(files) and len(files) == len(set(files)) > 20
    ids = [r["image_id"] for r in many["images"]]
    assert len(ids) == len(set(ids))
    assert {"added", "merged"} <= {r["event"] for r in many["file_events"]}


def test_key_range_and_hex_ranges() -> None:
    cond = commit_module.key_range("p", ("/a", "x'y"), None)
    assert cond == "(p.source > '/a' or (p.source = '/a' and p.rel_path >= 'x''y'))"
    assert commit_module.key_range("p", None, None) == "true"
    ranges = commit_module._hex_ranges(3)
    assert ranges[0][0] is None and ranges[-1][1] is None
    assert [hi for _, hi in ranges[:-1]] == [lo for lo, _ in ranges[1:]] == ["55555555", "aaaaaaaa"]
