"""`lamina sense`'s own pool: workers forked before the store is read, same tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_photo

# Run in a fresh interpreter: a pytest (xdist) worker has threads of its own, so a pool
# started there is spawned, never forked (LocalExecutor checks), and the fork path would
# go untested.
_SCRIPT = """
import json, os, sys, threading
import lamina
from lamina.core.sqlsafe import parser_open
from lamina.executors.local import LocalExecutor
from lamina.jobs.scan import ScanConfig, scan
from lamina.jobs.sense import SenseConfig, sense

seen = []
start = LocalExecutor.start

def recording_start(self, *args, **kwargs):
    seen.append({
        "fork": self.fork and threading.active_count() == 1,
        "duckdb_before": parser_open(),
        "pandas_before": "pandas" in sys.modules,
    })
    return start(self, *args, **kwargs)

LocalExecutor.start = recording_start
out = {}
for workers in (2, 1):
    store = lamina.open(sys.argv[1] + f"/store{workers}", create=True)
    scan(store, ScanConfig((sys.argv[2],), progress=False))
    sense(store, SenseConfig(workers=workers, progress=False, thumbnails=False))
    out[workers] = {
        t: store.sql(f"select * exclude (image_id) from {t} order by image_id").to_pylist()
        for t in ("signals", "hashes", "flags")
    }
print(json.dumps({"seen": seen, "same": out[1] == out[2], "rows": len(out[2]["hashes"])}))
"""


def test_sense_forks_its_workers_before_duckdb_and_matches_one_worker(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(4):
        write_photo(photos / f"p{i}.jpg", seed=i, size=(96, 64))
    write_photo(photos / "p4.png", seed=4, size=(80, 80), fmt="PNG")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path), str(photos)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Two workers: one pool, forked, before any DuckDB connection, with pandas loaded (so
    # the workers do not each import it); one worker: no pool at all.
    assert result["seen"] == [{"fork": True, "duckdb_before": False, "pandas_before": True}]
    assert result["rows"] == 5
    assert result["same"] is True
