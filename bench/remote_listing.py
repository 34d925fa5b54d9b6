"""Listing a remote source: speed and memory of 100,000 keys (names only, empty objects).

Each measurement runs in a fresh subprocess, so that one does not inherit another's heap:

* `memory://` (fsspec's in-process filesystem) holding N empty objects in 100-key folders:
  fsspec's own `find(detail=True)` (the baseline: what any fsspec client pays), lamina's
  `walk_remote` (that listing, sorted, sizes and mtimes), `spill_listing` (the scan's whole
  listing step, written to Parquet) and a whole `scan_sources` of the N objects.
* `http://`: a local `python -m http.server` (its own process) over M empty files in
  folders of 1,000: the index pages are parsed for links, and each file costs one HEAD for
  its size and Last-Modified, so it is measured at M = 10,000.

Peak memory is the process's peak RSS during the step alone (Linux: the peak is reset with
`/proc/self/clear_refs` once the objects are built), minus its RSS before the step.

S3 itself is not measured: s3fs and moto cannot be installed next to this project's
python-dateutil 4 (botocore pins python-dateutil < 3). On S3 a listing is ListObjectsV2
pages of 1,000 keys, one request each: 100 requests for 100,000 keys, plus what
`find` holds, which the memory:// figures measure.

Usage:
    python bench/remote_listing.py                # N = 100,000, M = 10,000; writes results
    python bench/remote_listing.py --keys 20000 --http-keys 2000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "remote_listing.md"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS


def _key(i: int) -> str:
    return f"comics/s{i // 10_000:02}/v{(i // 100) % 100:02}/p{i:07}.jpg"


def child(mode: str, n: int, url: str | None) -> dict[str, Any]:
    """Run one step in this (fresh) process; return its time and memory."""
    sys.path.insert(0, str(ROOT / "src"))
    import fsspec

    from lamina.core.remote import walk_remote

    if url is None:
        fs = fsspec.filesystem("memory")
        for i in range(n):
            fs.pipe(f"/bench/{_key(i)}", b"")
        url = "memory://bench"
    else:
        fs = None
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-listing-"))
    # Imports the step needs, before the measurement.
    import lamina.catalog  # noqa: F401
    from lamina.core.store import Store
    from lamina.jobs.scan import scan_sources
    from lamina.passes.scan import spill_listing

    store = Store.open(work / "store", create=True) if mode == "scan" else None
    _reset_peak()
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    rows: int
    if mode == "find":
        fsx, path = fsspec.core.url_to_fs(url)
        rows = len(fsx.find(path, detail=True, withdirs=False))
    elif mode == "walk":
        rows = sum(1 for _ in walk_remote(url))
    elif mode == "spill":
        from lamina.manifest.sources import Scope

        listing = spill_listing([Scope(url, url)], work / "listing.parquet")
        rows = listing.rows
    elif mode == "scan":
        assert store is not None
        done = scan_sources(store, [url], progress=False)
        rows = done["files"]
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    shutil.rmtree(work, ignore_errors=True)
    return {
        "mode": mode,
        "keys": n,
        "rows": rows,
        "seconds": round(seconds, 3),
        "peak_mb": round((peak - before) / 1024, 1),
        "per_key_bytes": round((peak - before) * 1024 / max(n, 1)),
        "keys_per_s": round(n / seconds) if seconds else None,
    }


def _run_child(mode: str, n: int, url: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--keys", str(n)]
    if url:
        cmd += ["--url", url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_rows(m: int) -> list[dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="lamina-bench-http-"))
    for i in range(m):
        p = folder / f"f{i // 1000:03}" / f"p{i:07}.jpg"
        p.parent.mkdir(exist_ok=True)
        p.touch()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/"
        return [_run_child(mode, m, url) for mode in ("find", "walk")]
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def report(memory: list[dict[str, Any]], http: list[dict[str, Any]], command: str) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    load = os.getloadavg()[0]
    what = {
        "find": "fsspec `find(detail=True)` (baseline)",
        "walk": "lamina `walk_remote` (sorted; size, mtime)",
        "spill": "lamina `spill_listing` (the scan's listing, to Parquet)",
        "scan": "lamina `scan_sources` (listing + probe of each object + commit)",
    }
    lines = [
        "# Remote listing benchmark",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d}; machine: {_machine()}",
        f"- lamina commit `{commit}`; load average (1 min) at the end: {load:.1f}",
        f"- Command: `{command}`",
        "- Peak = the step's own peak RSS over the process's RSS before it (the objects of",
        "  the memory filesystem are built before, and not counted).",
        "",
        "| source | step | keys | rows | s | keys/s | peak MB | bytes/key |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for src, rows in (("memory://", memory), ("http:// (local)", http)):
        for r in rows:
            lines.append(
                f"| {src} | {what[r['mode']]} | {r['keys']:,} | {r['rows']:,} | {r['seconds']} "
                f"| {r['keys_per_s']:,} | {r['peak_mb']} | {r['per_key_bytes']:,} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--http-keys", type=int, default=10_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--no-scan", action="store_true", help="skip the whole-scan step")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.keys, args.url)))
        return
    modes = ["find", "walk", "spill"] + ([] if args.no_scan else ["scan"])
    memory = []
    for mode in modes:
        memory.append(_run_child(mode, args.keys))
        print(memory[-1], flush=True)
    http = http_rows(args.http_keys) if args.http_keys else []
    for r in http:
        print(r, flush=True)
    text = report(memory, http, "python bench/remote_listing.py " + " ".join(sys.argv[1:]))
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
