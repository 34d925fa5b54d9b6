"""The driver of a map pass holds the keys of its inputs, not every input row (issue 19):
`run_passes` writes the image inputs to a Parquet file (`image_inputs_file`) and the chunk
tasks read their rows from it (`RowsFile`) as they are handed out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lamina.core.runner as runner
from lamina.core.chunk_plan import RowsFile, chunk_bounds, taper_bounds
from lamina.core.store import Store


def _rows(n: int) -> pa.Table:
    ids = [f"{i:064x}" for i in range(n)]
    return pa.table(
        {
            "image_id": ids,
            "abs_path": [
                f"/some/long/source/folder/volume-{i // 200:05d}/{k}.png" for i, k in enumerate(ids)
            ],
            "size": np.arange(n, dtype=np.int64),
        }
    )


def test_rows_file_hands_out_chunks_without_reading_every_row(tmp_path: Path) -> None:
    n = 180_000
    table = _rows(n)
    path = tmp_path / "inputs.parquet"
    pq.write_table(table, path, row_group_size=8192)
    keep = pa.array(np.arange(n) % 3 != 0)  # rows already done are left out
    rows = RowsFile(path).filter(keep)
    expected = table.filter(keep)
    assert rows.num_rows == expected.num_rows == 120_000
    assert rows["image_id"].equals(expected["image_id"].combine_chunks())
    bounds = taper_bounds(chunk_bounds(expected, 256, None, "size"), workers=2)
    del table
    base = pa.total_allocated_bytes()
    peak = 0
    seen = 0
    for (start, length), chunk in zip(bounds, rows.slices(bounds), strict=True):
        peak = max(peak, pa.total_allocated_bytes() - base)
        assert chunk.equals(expected.slice(start, length))
        seen += chunk.num_rows
    assert seen == 120_000
    # Every row at once is ~22 MB; what is read at a time, a row group (8192 rows) or two.
    assert expected.nbytes > 20_000_000
    assert peak < 8_000_000, (peak, expected.nbytes)
    # A mask over a filtered file, and the first rows.
    again = rows.filter(pa.array(np.arange(120_000) < 5)).head(3)
    assert again["size"].to_pylist() == [1, 2, 4]


def test_run_passes_gives_the_driver_a_file_of_the_inputs(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lamina.jobs.scan import scan_sources

    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tree], workers=1, progress=False)
    store.tmp_dir.mkdir(parents=True, exist_ok=True)
    stale = store.tmp_dir / "inputs-killed-run.parquet"  # left by a run killed earlier
    stale.write_bytes(b"x")
    seen: list[Any] = []
    original = runner.run_map_passes

    def spy(store: Store, instances: list[Any], inputs: Any, run: Any, **kw: Any) -> Any:
        seen.append((inputs, inputs.path.is_file(), inputs["image_id"].to_pylist()))
        return original(store, instances, inputs, run, **kw)

    monkeypatch.setattr(runner, "run_map_passes", spy)
    every = runner.image_inputs(store)["image_id"].to_pylist()
    assert len(every) == 4
    counts = runner.run_passes(store, [("signals", None)], workers=1, progress=False)
    assert counts["signals"]["processed"] == 4
    inputs, existed, ids = seen[0]
    assert isinstance(inputs, RowsFile) and existed
    assert ids == every
    assert not inputs.path.exists() and not stale.exists()  # removed after the run
    # A sample and a selective run read the same file through a mask.
    runner.run_passes(store, [("hashes", None)], workers=1, progress=False, max_images=2)
    assert seen[1][2] == every[:2]
    again = runner.run_passes(
        store, [("hashes", None)], workers=1, progress=False, image_ids=every[1:3]
    )
    assert seen[2][2] == every[1:3]
    assert (again["hashes"]["already_done"], again["hashes"]["processed"]) == (1, 1)
    assert store.table("hashes").num_rows == 3


def test_the_inputs_query_tries_one_thread_before_dropping_its_memory_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 1M images the 128 MB cap failed with DuckDB's default threads and passed with one:
    # the query must not go straight to no cap (the driver's whole 1.2 GB again).
    import duckdb

    from lamina.jobs.scan import scan_sources
    from tests.conftest import write_photo

    tree = tmp_path / "photos"
    for i in range(3):
        write_photo(tree / f"p{i}.jpg", seed=i)
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tree], workers=1, progress=False)
    settings: list[tuple[str, str]] = []
    real_connect = store.connect

    class Capped:
        """A connection whose copy fails while more than one thread works under a cap."""

        def __init__(self) -> None:
            self.con = real_connect()

        def execute(self, sql: str) -> Any:
            if sql.startswith("copy"):
                limit = self.con.execute("select current_setting('memory_limit')").fetchone()
                threads = self.con.execute("select current_setting('threads')").fetchone()
                settings.append((str(limit[0]), str(threads[0])))
                if threads[0] != 1:
                    raise duckdb.OutOfMemoryException("failed to pin block (a test)")
            return self.con.execute(sql)

        def close(self) -> None:
            self.con.close()

    monkeypatch.setattr(store, "connect", Capped)
    rows = runner.image_inputs_file(store, store.tmp_dir / "inputs.parquet")
    assert rows.num_rows == 3
    assert len(settings) == 2  # the cap with default threads, then the cap with one thread
    assert settings[0][0] == settings[1][0] and settings[1][1] == "1"
    assert "MiB" in settings[1][0] or "MB" in settings[1][0]  # still capped
