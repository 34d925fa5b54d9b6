"""Where `lamina sense` spends its CPU, per file, stage by stage, against the least work any
tool that reads the pixels must do: one process, CPU seconds (`time.process_time`), on a
fixed sample of a sense corpus (`bench/sense_corpus.py`), median of `--reps` passes.

Stages: Pillow's own decode (open + load: the floor), a pHash tool's pixel work (open,
grey, one 32 x 32 Lanczos resize: what imagededup PHash does per file before its DCT),
lamina's working decode (`decode_batch`), then the signals, hashes and thumbs passes on
those decoded images, and each signals group alone (the signals pass with every other
optional group skipped, less the pass with all of them skipped). Fixed costs (imports,
worker start, the duplicates and flags passes) are not here: `bench/sense.py` times the
whole commands.

Usage::

    .venv/bin/python bench/sense_stages.py                 # corpus-3000, 300 files, 3 reps
    .venv/bin/python bench/sense_stages.py --files 500 --out /tmp/stages.md
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lamina.catalog  # noqa: F401  (registers the passes)
import sense  # bench/ is not a package: found through sys.path
from lamina.core.decode import decode_batch
from lamina.core.passes import get_pass
from lamina.passes.signals import DEFAULT_SKIP, GROUPS, OPTIONAL
from lamina.passes.thumbs import thumbs_config

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "work" / "sense" / "corpus-3000"
RESULTS = HERE / "results" / "sense_stages.md"


def sample_files(corpus: Path, n: int, seed: int = 1) -> list[str]:
    """`n` files of `corpus` drawn with `seed`, without the two huge ones (the streamed
    decode of a 200 MP PNG alone would outweigh 300 ordinary files) and the broken ones."""
    files = sorted(
        str(p)
        for p in corpus.rglob("*")
        if p.is_file() and "huge" not in p.parts and "broken" not in p.parts
    )
    if not files:
        raise SystemExit(f"no files under {corpus}: build it with bench/sense_corpus.py")
    return random.Random(seed).sample(files, min(n, len(files)))


def _pillow_decode(path: str) -> None:
    with Image.open(path) as im:
        im.load()


def _phash_pixels(path: str) -> None:
    with Image.open(path) as im:
        im.convert("L").resize((32, 32), Image.Resampling.LANCZOS)


def cpu_ms(fn: Callable[[], object], n: int, reps: int) -> float:
    """Median CPU ms per file of `fn` (which does all `n` files) over `reps` calls."""
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) / n * 1e3)
    return statistics.median(times)


def measure(files: list[str], reps: int) -> list[tuple[str, float]]:
    """(stage, CPU ms per file) rows, in the order of the report."""
    n = len(files)
    batch = pa.table({"image_id": [f"{i:06d}" for i in range(n)], "abs_path": files})
    floor = cpu_ms(lambda: [_pillow_decode(f) for f in files], n, reps)
    phash = cpu_ms(lambda: [_phash_pixels(f) for f in files], n, reps)
    rows = [
        ("Pillow open + load (the floor)", floor),
        ("pHash tool's pixel work (open, grey, 32x32 Lanczos)", phash),
    ]
    decoded = decode_batch(batch, "working")
    rows.append(("lamina working decode", cpu_ms(lambda: decode_batch(batch, "working"), n, reps)))
    with tempfile.TemporaryDirectory() as tmp:  # thumbs are returned, never written
        passes = {
            "signals (default groups)": get_pass("signals"),
            "hashes": get_pass("hashes"),
            "thumbs (JPEG q80)": get_pass("thumbs", thumbs_config(tmp)),
        }
        for p in passes.values():
            p.setup()
            p.process_decoded(batch, decoded)  # first use: lazy imports (scipy) out of the timing
        for name, p in passes.items():
            rows.append((name, cpu_ms(lambda p=p: p.process_decoded(batch, decoded), n, reps)))
    base = get_pass("signals", {"skip": list(OPTIONAL)})
    base_ms = cpu_ms(lambda: base.process_decoded(batch, decoded), n, reps)
    rows.append(("signals: exposure and table only (every group skipped)", base_ms))
    for group, cols in GROUPS.items():
        if set(cols) <= set(DEFAULT_SKIP):
            continue
        one = get_pass("signals", {"skip": [c for c in OPTIONAL if c not in cols]})
        ms = cpu_ms(lambda one=one: one.process_decoded(batch, decoded), n, reps)
        rows.append((f"signals: + {group}", ms - base_ms))
    return rows


def report(rows: list[tuple[str, float]], files: int, reps: int, corpus: Path, secs: float) -> str:
    info = sense.machine()
    lines = [
        "# Sense, stage by stage: CPU ms per file",
        "",
        f"- Date: {date.today().isoformat()}; machine: {info['nproc']} cores, {info['cpu']}, "
        f"{info['ram']} RAM, Python {info['python']}; shared with other work (CPU time, not "
        "wall time, is measured: it moves less with load, but still some).",
        f"- Command: `.venv/bin/python bench/sense_stages.py --files {files} --reps {reps}` "
        f"({secs:.0f} s); {files} files of `{corpus.name}` (no huge or broken files), one "
        f"process, median of {reps}.",
        "",
        "| stage | CPU ms / file |",
        "|---|--:|",
    ]
    lines += [f"| {name} | {ms:.3f} |" for name, ms in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="a sense corpus folder")
    parser.add_argument("--files", type=int, default=300, help="files sampled (default 300)")
    parser.add_argument("--reps", type=int, default=3, help="timed passes (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown report path")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    files = sample_files(args.corpus, args.files)
    rows = measure(files, args.reps)
    text = report(rows, len(files), args.reps, args.corpus, time.monotonic() - t0)
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
