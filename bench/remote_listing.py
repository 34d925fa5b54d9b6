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

* `s3://` (`--s3-keys N --s3-scan-keys M`, where s3fs and moto are installed): moto's S3
  server in its own process (the bucket filled through moto's backend, not N PUTs),
  listed through s3fs: ListObjectsV2 pages of 1,000 keys, one request each. s3fs and
  moto cannot be installed in this project's shared environment (botocore pins
  python-dateutil < 3; it has 4.0.0): the recorded run had them in a side folder after
  the environment on PYTHONPATH, python-dateutil 2.9 ahead of it.

Usage:
    python bench/remote_listing.py                # N = 100,000, M = 10,000; writes results
    python bench/remote_listing.py --keys 20000 --http-keys 2000 --no-write
    python bench/remote_listing.py --s3-keys 100000 --s3-scan-keys 10000   # with s3fs, moto
    python bench/remote_listing.py --keys 0 --http-keys 0 --s3-keys 100000 \
        --s3-modes walk-unpaged,walk,spill --no-write   # S3 listing before / after paging
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
    if fs is None:  # a remote backend: its imports and client made before the measurement
        fsx, path = fsspec.core.url_to_fs(url)
        fsx.info(path)
        fsx.invalidate_cache()
    _reset_peak()
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    rows: int
    if mode == "find":
        fsx, path = fsspec.core.url_to_fs(url)
        rows = len(fsx.find(path, detail=True, withdirs=False))
    elif mode == "walk":
        rows = sum(1 for _ in walk_remote(url))
    elif mode == "walk-unpaged":  # the listing before paging: one `find`, held whole
        import lamina.core.remote as remote

        def unpaged(fs: Any, path: str) -> Any:
            found = fs.find(path, detail=True, withdirs=False)
            return ((name, found[name]) for name in sorted(found))

        remote._listed = unpaged
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


def s3_server(n: int, port: int) -> None:
    """Serve moto's S3 API on `port` with a bucket `bench` of `n` empty objects (filled
    through moto's backend in this process, not n PUTs), until stdin closes."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket("bench", "us-east-1")
    for i in range(n):
        backend.put_object("bench", _key(i), b"")
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()


def s3_rows(
    n: int, scan_keys: int, s3_modes: tuple[str, ...] = ("find", "walk", "spill")
) -> list[dict[str, Any]]:
    """The listing steps against moto's S3 server (its own process) through s3fs."""
    port = _free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    rows = []
    for keys, modes in ((n, s3_modes), (scan_keys, ("scan",))):
        if not keys:
            continue
        cmd = [sys.executable, __file__, "--s3-server", str(keys), "--port", str(port)]
        server = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            for mode in modes:
                rows.append(_run_child(mode, keys, "s3://bench/comics", env))
                print(rows[-1], flush=True)
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=60)
    return rows


def _run_child(
    mode: str, n: int, url: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--keys", str(n)]
    if url:
        cmd += ["--url", url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800, env=env)
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


def report(
    memory: list[dict[str, Any]],
    http: list[dict[str, Any]],
    command: str,
    s3: list[dict[str, Any]] | None = None,
) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    load = os.getloadavg()[0]
    what = {
        "find": "fsspec `find(detail=True)` (baseline)",
        "walk": "lamina `walk_remote` (sorted; size, mtime)",
        "walk-unpaged": "lamina `walk_remote` before paging (one `find`, held whole)",
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
    sides = (("memory://", memory), ("http:// (local)", http), ("s3:// (moto server)", s3 or []))
    for src, rows in sides:
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
    parser.add_argument(
        "--s3-keys",
        type=int,
        default=0,
        help="also list this many keys from moto's S3 server through s3fs (needs both)",
    )
    parser.add_argument("--s3-scan-keys", type=int, default=0, help="a whole scan of this many")
    parser.add_argument(
        "--s3-modes",
        default="find,walk,spill",
        help="the listing steps to run against S3 (find, walk-unpaged, walk, spill)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--s3-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.keys, args.url)))
        return
    if args.s3_server is not None:
        s3_server(args.s3_server, args.port)
        return
    modes = ["find", "walk", "spill"] + ([] if args.no_scan else ["scan"])
    memory = []
    for mode in modes if args.keys else ():
        memory.append(_run_child(mode, args.keys))
        print(memory[-1], flush=True)
    http = http_rows(args.http_keys) if args.http_keys else []
    for r in http:
        print(r, flush=True)
    s3_modes = tuple(args.s3_modes.split(","))
    s3 = (
        s3_rows(args.s3_keys, args.s3_scan_keys, s3_modes)
        if args.s3_keys or args.s3_scan_keys
        else []
    )
    command = "python bench/remote_listing.py " + " ".join(sys.argv[1:])
    text = report(memory, http, command, s3)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
