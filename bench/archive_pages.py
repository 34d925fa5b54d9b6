"""Reading a CBZ's pages one `open_source` call at a time (as a decoding pass reads a
chunk), with the opened archive kept per process (`lamina.core.archives._zip_kept`)
against reopening it every page (the kept archives cleared before each read: what every
read did before they were kept).

Two archives of N stored 200x140 JPEG pages: a local file, and the same bytes as an S3
object behind moto's server (its own thread in this process; s3fs with range reads).
Both modes alternate in one run, best of `--reps`; the ratio is the figure to keep.

Usage:
    python bench/archive_pages.py                  # 200 pages local, 50 over S3; writes results
    python bench/archive_pages.py --pages 50 --s3-pages 20 --no-write
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "archive_pages.md"
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from lamina.core import archives  # noqa: E402


def make_cbz(path: Path, pages: int) -> None:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(pages):
            buf = io.BytesIO()
            pixels = rng.integers(0, 255, (200, 140, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buf, "JPEG", quality=80)
            zf.writestr(f"p{i:03d}.jpg", buf.getvalue())


def read_pages(container: str, names: list[str], *, keep: bool) -> float:
    """Seconds to read every page through `open_source`, one call each."""
    archives._zip_kept.clear()
    t0 = time.perf_counter()
    for name in names:
        if not keep:
            archives._zip_kept.clear()  # reopen: as before archives were kept
        with archives.open_source(f"{container}!/{name}") as fh:
            fh.read()
    return time.perf_counter() - t0


def measure(container: str, pages: int, reps: int) -> dict[str, float]:
    names = [f"p{i:03d}.jpg" for i in range(pages)]
    best = {"reopen": float("inf"), "kept": float("inf")}
    for _ in range(reps):
        for mode in best:
            best[mode] = min(best[mode], read_pages(container, names, keep=mode == "kept"))
    return {mode: seconds * 1000 / pages for mode, seconds in best.items()}


def s3_url(cbz: Path) -> tuple[str, object]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server._server.server_address
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="pages")
    s3.put_object(Bucket="pages", Key=cbz.name, Body=cbz.read_bytes())
    return f"s3://pages/{cbz.name}", server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--s3-pages", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-cbz-"))
    cbz = work / "vol.cbz"
    make_cbz(cbz, max(args.pages, args.s3_pages))
    rows = [("local file", args.pages, measure(str(cbz), args.pages, args.reps))]
    if args.s3_pages:
        url, server = s3_url(cbz)
        try:
            rows.append(("s3:// (moto server)", args.s3_pages, measure(url, args.s3_pages, 2)))
        finally:
            server.stop()  # type: ignore[attr-defined]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# CBZ pages: the archive kept open vs reopened per page",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d}; machine: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average (1 min) {os.getloadavg()[0]:.1f}",
        f"- lamina commit `{commit}`; archive: {cbz.stat().st_size / 1e6:.1f} MB, stored "
        "200x140 JPEG pages",
        f"- Command: `{' '.join(['python bench/archive_pages.py', *sys.argv[1:]])}`",
        "",
        "| archive | pages | reopened per page, ms/page | kept open, ms/page | ratio |",
        "|---|--:|--:|--:|--:|",
    ]
    for where, pages, ms in rows:
        ratio = ms["reopen"] / ms["kept"]
        lines.append(
            f"| {where} | {pages} | {ms['reopen']:.2f} | {ms['kept']:.2f} | {ratio:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
