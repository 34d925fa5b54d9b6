"""The duplicates pass alone on synthetic hashes: seconds and peak memory at N images.

The input is the table `DuplicatesPass` reads from the store (`INPUT_SQL`'s columns), made
in memory: N images, 20 % of them in clusters of 2-10 near copies (each copy's pHash and
dHash are its cluster head's with 0-6 random bits flipped, its dihedral hashes likewise),
1 % pixel-identical pairs (the same pixel_sha256), the rest random 64-bit codes. Each case
runs in a fresh interpreter, timed around `DuplicatesPass(config)._groups(table)` (the
grouping, the representatives and the output rows: all of the pass but the SQL read), and
the MIH self-join `pairs_within(phash, 10)` is timed on its own. Peak RSS is the process's
high-water mark (`ru_maxrss`), imports and the input table included.

Usage::

    .venv/bin/python bench/duplicates.py                    # N = 1M: bench/results/duplicates.md
    .venv/bin/python bench/duplicates.py --n 100000 --out /tmp/dups.md
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "duplicates.md"

CASE = r"""
import json, resource, sys, time
import numpy as np, pyarrow as pa
from lamina.analysis.duplicates import DuplicatesPass, pairs_within

n, what, seed = int(sys.argv[1]), sys.argv[2], 7
rng = np.random.default_rng(seed)


def codes(k):
    return rng.integers(0, 2**63, k, dtype=np.int64) * rng.choice([1, -1], k)


def flips(k):
    # k masks of 0..6 random bits each
    out = np.zeros(k, np.uint64)
    for _ in range(6):
        bit = rng.integers(0, 64, k).astype(np.uint64)
        out |= np.where(rng.random(k) < 0.5, np.uint64(1) << bit, np.uint64(0))
    return out.view(np.int64)


ph, dh = codes(n), codes(n)
p8, d8 = codes(n * 8).reshape(n, 8), codes(n * 8).reshape(n, 8)
# 20 % of the images in clusters of 2..10: each member a near copy of its cluster's head
sizes = rng.integers(2, 11, int(n * 0.2) // 2)
sizes = sizes[np.cumsum(sizes) <= int(n * 0.2)]
starts = np.cumsum(sizes) - sizes
head = np.repeat(starts, sizes)
member = np.arange(len(head))
copy = member != head
m, h = member[copy], head[copy]
ph[m], dh[m] = ph[h] ^ flips(len(m)), dh[h] ^ flips(len(m))
p8[m], d8[m] = p8[h] ^ flips(len(m) * 8).reshape(-1, 8), d8[h] ^ flips(len(m) * 8).reshape(-1, 8)
p8[:, 0], d8[:, 0] = ph, dh
sha = np.array([f"{k:064x}" for k in range(n)], dtype=object)  # distinct
pix = rng.choice(n, int(n * 0.01), replace=False)
sha[pix[1:]] = sha[pix[:-1]]  # 1 % pixel-identical to another image
table = pa.table({
    "image_id": pa.array([f"{k:016x}" for k in range(n)]),
    "n_files": pa.array(np.ones(n, np.int32)),
    "pixels": pa.array(rng.integers(10**5, 10**7, n)),
    "taken": pa.array([None] * n, pa.timestamp("us")),
    "sharpness": pa.array(rng.random(n)),
    "phash": pa.array(ph), "dhash": pa.array(dh),
    "phash_dihedral": pa.FixedSizeListArray.from_arrays(pa.array(p8.ravel()), 8),
    "dhash_dihedral": pa.FixedSizeListArray.from_arrays(pa.array(d8.ravel()), 8),
    "pixel_sha256": pa.array(sha.tolist()),
})
t = time.perf_counter()
if what == "mih":
    out_rows = len(pairs_within(ph, 10)[0])
else:
    out = DuplicatesPass({"invariant": what == "invariant"})._groups(table)
    out_rows = out.num_rows
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": out_rows,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_case(n: int, what: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CASE, str(n), what], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"{what} at {n} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="images (default 1,000,000)")
    parser.add_argument(
        "--cases", default="mih,plain,invariant", help="of mih, plain, invariant (default all)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    sizes = args.n or [1_000_000]
    load = psutil.getloadavg()[0]
    lines = [
        "# The duplicates pass alone, on synthetic hashes",
        "",
        f"- Date: {date.today().isoformat()}; {len(psutil.Process().cpu_affinity())} cores, "
        f"Python {platform.python_version()}; load average before: {load:.2f} (the machine "
        "is shared with other agents' work: absolute times are rough)",
        f"- Command: `.venv/bin/python bench/duplicates.py {' '.join(f'--n {n}' for n in sizes)}`",
        "- Input: N images, 20 % in clusters of 2-10 near copies (0-6 bits flipped), 1 % "
        "pixel-identical pairs; each case in a fresh interpreter; seconds around the call; "
        "peak RSS = `ru_maxrss` of that interpreter (imports and the input table included).",
        "",
        "| N | case | seconds | output rows | peak RSS MB |",
        "|--:|---|--:|--:|--:|",
    ]
    for n in sizes:
        for what, label in (
            ("mih", "MIH self-join `pairs_within(phash, 10)` alone"),
            ("plain", "`DuplicatesPass` (default)"),
            ("invariant", "`DuplicatesPass(invariant=True)`"),
        ):
            if what not in cases:
                continue
            t0 = time.perf_counter()
            r = run_case(n, what)
            print(f"{n} {what}: {r} ({time.perf_counter() - t0:.0f} s with set-up)", flush=True)
            lines.append(
                f"| {n:,} | {label} | {r['seconds']:.1f} | {r['rows']:,} | {r['peak_mb']:.0f} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
