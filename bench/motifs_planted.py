"""Planted motifs: a stamp, a ruler and a colour chart planted into the package photos at
varying positions and scales (tests/analysis/test_motifs.py), `lamina segment && lamina
motifs`, and the recall / precision of the motif each forms, for several seeds. Seeds 7,
11, 31, 47, 59, 83, 97 and 113 are development seeds; the seeds first run once after the
last change are in bench/results/segment.md.

Usage::

    nice -n 10 .venv/bin/python bench/motifs_planted.py --seeds 7,11
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.analysis.test_motifs import planted_collection, planted_recall  # noqa: E402

from lamina.core.store import Store  # noqa: E402
from lamina.jobs.motifs import MotifsConfig, motifs  # noqa: E402
from lamina.jobs.scan import scan_sources  # noqa: E402
from lamina.jobs.segment import SegmentConfig, segment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="7,11")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--k", default="0", help="motif counts to try (0: lamina's default)")
    args = parser.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"planted-{seed}-"))
        t0 = time.monotonic()
        truth = planted_collection(work / "src", seed=seed)
        store = Store.open(work / "store", create=True)
        scan_sources(store, [work / "src"], workers=args.workers, progress=False)
        segment(store, SegmentConfig(workers=args.workers, progress=False))
        for k in (int(v) for v in args.k.split(",")):
            # The segment embeddings are made once: another k only re-clusters them.
            found = motifs(store, MotifsConfig(k=k, workers=args.workers, progress=False))
            for kind in ("stamp", "ruler", "chart"):
                recall, precision, top, members = planted_recall(store, truth, kind)
                print(f"seed {seed} k {k or 'default'} {kind}: motif {top}, recall "
                      f"{recall:.2f}, precision {precision:.2f}, {members} members")  # fmt: skip
            print(f"seed {seed} k {k or 'default'}: {found.segments} segments, "
                  f"{found.motifs} motifs, {time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
