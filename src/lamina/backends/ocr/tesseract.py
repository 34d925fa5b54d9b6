"""Debian's tesseract, run as a subprocess with a fixed argv (never a shell): the image
goes in as a PNG on stdin, the words come back as TSV on stdout and are joined into lines
by tesseract's own (block, paragraph, line) numbers."""

from __future__ import annotations

import io
import subprocess

import numpy as np
from PIL import Image

from lamina.backends.ocr.base import OcrLine
from lamina.core.errors import LaminaError

TIMEOUT_S = 120  # one page; a hung tesseract fails the image, not the run


class TesseractEngine:
    """tesseract with language data `lang` (`eng`, `eng+deu`, …), LSTM engine, automatic
    page segmentation.

    Example:
        >>> TesseractEngine("eng").read(np.full((64, 64, 3), 255, np.uint8))  # doctest: +SKIP
        []
    """

    def __init__(self, lang: str = "eng", *, threads: int = 1) -> None:
        self.lang = lang
        self.threads = threads
        self.id = f"tesseract:{lang}"
        try:
            out = subprocess.run(
                ["tesseract", "--version"], capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise LaminaError(
                f"tesseract does not run: {exc}", hint="apt-get install tesseract-ocr"
            ) from None
        self.version = (out.stdout or out.stderr).split("\n", 1)[0].strip()

    def read(self, rgb: np.ndarray) -> list[OcrLine]:
        """The lines of `rgb` (HxWx3 uint8), top to bottom."""
        png = io.BytesIO()
        Image.fromarray(rgb).save(png, "PNG", compress_level=1)
        # OMP_THREAD_LIMIT: tesseract's own threads; the runner's workers are the parallelism.
        env = {"OMP_THREAD_LIMIT": str(self.threads), "PATH": "/usr/bin:/bin:/usr/local/bin"}
        argv = ["tesseract", "stdin", "stdout", "-l", self.lang, "--psm", "3", "tsv"]
        done = subprocess.run(
            argv, input=png.getvalue(), capture_output=True, timeout=TIMEOUT_S, env=env
        )
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace")[:300]
            raise RuntimeError(f"tesseract failed ({done.returncode}): {message}")
        return parse_tsv(done.stdout.decode("utf-8", errors="replace"))


def parse_tsv(tsv: str) -> list[OcrLine]:
    """tesseract's TSV output as lines (words of one block/paragraph/line joined by spaces,
    the union of their boxes, the mean of their confidences / 100).

    Example:
        >>> head = "level page block par line word left top width height conf text"
        >>> row = "5 1 1 1 1 1 10 5 40 12 96.5 Flora"
        >>> parse_tsv(head.replace(" ", "\\t") + "\\n" + row.replace(" ", "\\t"))
        [OcrLine(text='Flora', confidence=0.965, box=(10.0, 5.0, 50.0, 17.0))]
    """
    lines: dict[tuple[str, str, str], list[tuple[str, float, float, float, float, float]]] = {}
    rows = tsv.splitlines()
    for row in rows[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or cells[0] != "5":
            continue
        text = cells[11].strip()
        if not text:
            continue
        left, top, width, height = (float(c) for c in cells[6:10])
        conf = max(float(cells[10]), 0.0) / 100.0
        lines.setdefault((cells[2], cells[3], cells[4]), []).append(
            (text, conf, left, top, left + width, top + height)
        )
    out = []
    for words in lines.values():
        box = (
            min(w[2] for w in words),
            min(w[3] for w in words),
            max(w[4] for w in words),
            max(w[5] for w in words),
        )
        confidence = round(sum(w[1] for w in words) / len(words), 6)
        out.append(OcrLine(" ".join(w[0] for w in words), confidence, box))
    out.sort(key=lambda line: (line.box[1], line.box[0]))
    return out
