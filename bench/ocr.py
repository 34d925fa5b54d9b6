"""OCR accuracy and speed on rendered pages, both engines side by side (modality has its
own benchmark: bench/modality.py).

    .venv/bin/python bench/ocr.py            # writes bench/results/ocr.md

Pages: lines of words drawn with the DejaVu fonts that ship in matplotlib (Sans, Serif,
Mono, Sans Bold), 16-48 px, on white; strings from a seeded generator other than the
ones the space-restoring threshold was chosen on. CER = Levenshtein distance of the read
text (lines joined by newlines) to the planted text, over the planted length; also
without white space (what a recogniser that drops spaces would score).
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.text_images import cer, render_lines  # noqa: E402

from lamina.backends.ocr import load_engine  # noqa: E402

WORDS = [
    *("collected", "specimen", "Linnaeus", "herbarium", "Uppsala", "valley", "meadow"),
    *("catalogue", "sheet", "plate", "river", "north", "1753", "1821", "42", "B7", "Kew"),
    *("Gardens", "Fries", "flora", "alpine", "number", "received"),
]
FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf")
SIZES = (16, 24, 32, 48)


def pages(tmp: Path, seed: int = 7) -> list[tuple[Path, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for font in FONTS:
        for size in SIZES:
            lines = [" ".join(rng.choice(WORDS, int(rng.integers(3, 6)))) for _ in range(5)]
            path = tmp / f"{font[:-4]}_{size}.png"
            render_lines(path, lines, size=size, width=1400, font_name=font)
            out.append((path, "\n".join(lines)))
    return out


def ocr_rows(tmp: Path) -> list[str]:
    rows = []
    corpus = pages(tmp)
    for spec in ("rapidocr", "tesseract"):
        try:
            engine = load_engine(spec)
        except Exception as exc:  # an engine not installed: say so in the table
            rows.append(f"| {spec} | not installed: {exc} | | | |")
            continue
        errors = errors_ns = total = total_ns = 0
        seconds = 0.0
        for path, want in corpus:
            rgb = np.asarray(Image.open(path).convert("RGB"))
            t0 = time.perf_counter()
            got = "\n".join(line.text for line in engine.read(rgb))
            seconds += time.perf_counter() - t0
            errors += round(cer(got, want) * len(want))
            total += len(want)
            strip = "".join(want.split())
            errors_ns += round(cer("".join(got.split()), strip) * len(strip))
            total_ns += len(strip)
        rows.append(
            f"| {engine.id} {engine.version} | {100 * errors / total:.2f} % | "
            f"{100 * errors_ns / total_ns:.2f} % | {len(corpus) / seconds:.2f} | {len(corpus)} |"
        )
    return rows


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-ocr-"))
    try:
        ocr = ocr_rows(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    report = "\n".join(
        [
            "# OCR",
            "",
            f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores (shared with "
            f"other jobs: speeds are noisy), Python {platform.python_version()}, lamina "
            f"{commit}; `python bench/ocr.py`.",
            "",
            "## OCR: 16 rendered pages (4 fonts x 16/24/32/48 px, 5 lines each), one core",
            "",
            "| engine | CER | CER without white space | pages/s | pages |",
            "|---|---|---|---|---|",
            *ocr,
            "",
            "Modality: see bench/modality.py and results/modality.md.",
            "",
        ]
    )
    print(report)
    (ROOT / "bench" / "results" / "ocr.md").write_text(report)


if __name__ == "__main__":
    main()
