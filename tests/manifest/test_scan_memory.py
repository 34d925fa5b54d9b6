"""What keeps a scan's main process flat in the number of files (bench/scan.py measures it):
Arrow's allocations go to malloc, which gives freed memory back, and the listing is read a
slice at a time without the whole file being buffered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import lamina
from lamina.manifest.spill import Listing

SRC = str(Path(lamina.__file__).parents[1])


def _arrow_pool_after_import(env: dict[str, str]) -> str:
    code = "import lamina, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "PYTHONPATH": SRC},
    )
    return done.stdout.strip()


def test_importing_lamina_makes_arrow_allocate_from_malloc() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _arrow_pool_after_import(env) == "system"
    # A choice the user made stays theirs.
    assert _arrow_pool_after_import({**env, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"


def test_a_listing_slice_does_not_buffer_the_whole_file(tmp_path: Path) -> None:
    n = 40_000
    table = pa.table(
        {
            "file_key": [f"{i:024x}" for i in range(n)],
            "rel_path": [f"d{i // 500:03d}/photo-{i:06d}.jpg" for i in range(n)],
        }
    )
    path = tmp_path / "listing.parquet"
    pq.write_table(table, path, row_group_size=4_096, compression="none")
    del table
    pool = pa.default_memory_pool()  # where pyarrow's C++ reader allocates by default
    before = pool.bytes_allocated()
    batches = Listing(path, n, n, 0).batches(batch_size=4_096)
    first = next(batches)
    held = pool.bytes_allocated() - before
    assert first.num_rows == 4_096
    # Pre-buffered (pyarrow's default), the first slice held every row group: 1.2x the file.
    assert held < 0.5 * path.stat().st_size
    batches.close()
