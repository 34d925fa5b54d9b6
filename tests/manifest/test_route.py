"""The probe layer routed to the listing's slices (`lamina.manifest.route`): each slice
gets exactly its own probes, each part is read once, and the commit and the rescan's check
of what is done read no other slice's rows."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.core import runner as runner_module
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.manifest import commit as commit_module
from lamina.manifest import route as route_module
from lamina.manifest.route import route_probes
from lamina.manifest.spill import Listing
from lamina.passes.scan import file_key
from tests.conftest import write_photo

PROBES = pa.schema([("file_key", pa.string()), ("sha256", pa.string())])


def _listing(path: Path, rows: list[tuple[str, str | None]]) -> Listing:
    table = pa.table(
        {"file_key": [k for k, _ in rows], "walk_status": [s for _, s in rows]},
        schema=pa.schema([("file_key", pa.string()), ("walk_status", pa.string())]),
    )
    pq.write_table(table, path)
    return Listing(path, len(rows), len(rows), 0)


def _part(path: Path, rows: list[tuple[str, str]]) -> Path:
    columns = {"file_key": [k for k, _ in rows], "sha256": [v for _, v in rows]}
    pq.write_table(pa.table(columns, schema=PROBES), path)
    return path


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the reads of each Parquet file's rows through `pq.ParquetFile`."""
    reads: Counter[str] = Counter()

    class Counting(pq.ParquetFile):
        def __init__(self, source: object, *args: object, **kwargs: object) -> None:
            super().__init__(source, *args, **kwargs)
            self._name = str(source)

        def read(self, *args: object, **kwargs: object) -> pa.Table:
            reads[self._name] += 1
            return super().read(*args, **kwargs)

    monkeypatch.setattr(route_module.pq, "ParquetFile", Counting)
    return reads


@pytest.mark.parametrize("bucket_rows", [1, 3, 10**6])
def test_each_slice_gets_exactly_its_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket_rows: int
) -> None:
    monkeypatch.setattr(route_module, "BUCKET_ROWS", bucket_rows)
    keys = [f"{i * 2654435761 % 16**6:06x}{i:018x}" for i in range(11)]  # spread prefixes
    # Row 4 has a walk status (never probed); keys[10] is not listed (a stale probe).
    listing = _listing(
        tmp_path / "l.parquet", [(k, "junk" if i == 4 else None) for i, k in enumerate(keys[:10])]
    )
    parts = [
        _part(tmp_path / "part-b.parquet", [(keys[1], "late"), (keys[7], "h7"), (keys[10], "x")]),
        _part(tmp_path / "part-a.parquet", [(keys[1], "first"), (keys[2], "h2")]),
        _part(tmp_path / "part-c.parquet", [(k, f"h{i}") for i, k in enumerate(keys) if i >= 3]),
        _part(tmp_path / "part-d.parquet", []),
    ]
    reads = _counting_reads(monkeypatch)

    routed = route_probes(listing, parts, tmp_path / "r", PROBES, slice_rows=3)

    got = {
        i: sorted((r["file_key"], r["sha256"]) for r in routed.table(i).to_pylist())
        for i in range(5)
    }
    assert got == {
        0: sorted([(keys[1], "first"), (keys[2], "h2")]),
        1: sorted([(keys[3], "h3"), (keys[5], "h5")]),
        2: sorted((keys[i], f"h{i}") for i in (6, 7, 8)),
        3: [(keys[9], "h9")],
        4: [],
    }
    assert sorted(routed.keys(2).to_pylist()) == sorted(keys[6:9])
    assert reads == Counter({str(p): 1 for p in parts})  # every part read once
    routed.close()
    assert not (tmp_path / "r").exists()


def test_commit_of_many_slices_reads_each_part_once_and_only_its_rows(
    tree: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(12):
        write_photo(tree / f"more/{i % 3}" / f"p{i:02d}.jpg", 100 + i)
    store = Store.open(tmp_path_factory.mktemp("stores") / "s", create=True)
    monkeypatch.setattr(commit_module, "PARTITION_ROWS", 2)
    reads = _counting_reads(monkeypatch)
    served: list[tuple[int, list[str]]] = []
    table = route_module.RoutedProbes.table

    def recording(self: route_module.RoutedProbes, i: int) -> pa.Table:
        out = table(self, i)
        served.append((i, out["file_key"].to_pylist()))
        return out

    monkeypatch.setattr(route_module.RoutedProbes, "table", recording)

    summary = scan_sources(store, [tree], workers=1, chunk_size=3, progress=False)

    layer = next(store.root.glob("layers/scan/*"))
    parts = sorted(str(p) for p in layer.glob("part-*.parquet"))
    # Every part's rows read once (pq.ParquetFile is patched for all: the listing too).
    assert len(parts) > 3 and {p: reads[p] for p in parts} == dict.fromkeys(parts, 1)
    # The commit asked each slice once, in order, and got that slice's keys alone.
    files = store.table("files").to_pylist()
    slices = [files[i : i + 2] for i in range(0, len(files), 2)]
    assert [i for i, _ in served] == list(range(len(slices)))
    probes = pa.concat_tables(pq.read_table(p) for p in parts)
    probed = set(probes["file_key"].to_pylist())
    for (_, keys), rows in zip(served, slices, strict=True):
        listed = {file_key(r["source"], r["rel_path"], r["size"], r["mtime_ns"]) for r in rows}
        assert len(keys) == len(set(keys)) and set(keys) == listed & probed
    assert sum(len(k) for _, k in served) == summary["hashed"] == len(probes)


def test_rescan_checks_each_slice_against_its_own_done_keys(
    tree: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path_factory.mktemp("stores") / "s", create=True)
    first = scan_sources(store, [tree], workers=1, progress=False)
    write_photo(tree / "cats" / "a.jpg", 77)  # changed
    write_photo(tree / "cats" / "new.jpg", 78)  # added

    def every_key(*args: object) -> pa.Array:
        raise AssertionError("a rescan must not load every probed key")

    monkeypatch.setattr(runner_module, "done_keys", every_key)
    again = scan_sources(store, [tree], workers=1, progress=False)

    assert again["hashed"] == 2
    assert again["reused"] == first["hashed"] - 1  # a.jpg's old probe is not this file's
    assert again["events"] == {"added": 1, "changed": 1}
    assert not list(store.tmp_dir.glob("scan-done-*"))


def test_a_scan_and_rescan_never_import_pandas(tree: Path, tmp_path: Path) -> None:
    # pyarrow's `to_numpy` and `fill_null` import pandas, which then stays in the scan's
    # main process (~35 MB, measured): the routing must do without them.
    code = (
        "import sys\n"
        "from lamina.core.store import Store\n"
        "from lamina.jobs.scan import scan_sources\n"
        "store = Store.open(sys.argv[1], create=True)\n"
        "for _ in range(2):\n"
        "    scan_sources(store, [sys.argv[2]], workers=1, progress=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(route_module.__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "store"), str(tree)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
