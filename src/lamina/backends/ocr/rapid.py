"""The RapidOCR engine (PP-OCRv4 on onnxruntime; the models ship in the package).

Its recogniser (a Chinese-English model) often drops the space between Latin words at
larger font sizes ("Herbariumsheet1753"), which breaks search by phrase. `restore_spaces`
puts them back from the pixels: a run of blank columns inside a line, at least
`SPACE_GAP` of the line's height wide, is a word gap (letters in a word sit much closer),
and the recogniser's per-character positions say between which two characters it falls.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np

from lamina.backends.ocr.base import OcrLine

# A blank run of columns at least this share of the line height wide separates words
# (a space in common Latin fonts is ~0.3 em plus the side bearings; the gap between letters
# ~0.05-0.2 em). 0.2 split "col lected" and "1 753" in DejaVu; 0.3 gave 1.0 % CER.
SPACE_GAP = 0.3
# Ink: a pixel this many grey levels away from the line's median (its background).
INK_LEVELS = 20
# Detection runs with the long side capped here (the package's default instead upscales
# every image to a short side of 736 px: 3x slower on small images, no more text found).
DET_SIDE = 1280


class RapidEngine:
    """RapidOCR, one instance per worker (its ONNX sessions use `threads` threads).

    Example:
        >>> RapidEngine().read(np.full((64, 64, 3), 255, np.uint8))  # doctest: +SKIP
        []
    """

    def __init__(self, *, threads: int = 1) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.version = importlib.metadata.version("rapidocr-onnxruntime")
        self.id = "rapidocr"
        self._ocr = RapidOCR(
            intra_op_num_threads=threads,
            inter_op_num_threads=1,
            det_limit_type="max",
            det_limit_side_len=DET_SIDE,
        )

    def read(self, rgb: np.ndarray) -> list[OcrLine]:
        """The lines of `rgb` (HxWx3 uint8), top to bottom."""
        # RapidOCR takes BGR arrays (OpenCV's order).
        result, _ = self._ocr(np.ascontiguousarray(rgb[:, :, ::-1]), return_word_box=True)
        if not result:
            return []
        grey = rgb.mean(axis=2)
        lines = []
        for item in result:
            quad, text, score = item[0], str(item[1]), float(item[2])
            xs = [float(p[0]) for p in quad]
            ys = [float(p[1]) for p in quad]
            box = (min(xs), min(ys), max(xs), max(ys))
            if len(item) > 4:
                text = restore_spaces(grey, box, list(item[4]), item[3])
            lines.append(OcrLine(text.strip(), score, box))
        lines.sort(key=lambda line: (line.box[1], line.box[0]))
        return lines


def restore_spaces(
    grey: np.ndarray, box: tuple[float, float, float, float], chars: list[str], char_boxes: Any
) -> str:
    """`chars` joined, with a space wherever a word gap of the line's pixels falls between
    two characters that have none (see the module docstring).

    Example:
        >>> grey = np.full((20, 60), 255.0); grey[5:15, 2:12] = 0; grey[5:15, 30:40] = 0
        >>> boxes = [[[2, 5], [12, 5]], [[30, 5], [40, 5]]]
        >>> restore_spaces(grey, (0, 0, 60, 20), ["a", "b"], boxes)
        'a b'
    """
    if len(chars) != len(char_boxes) or len(chars) < 2:
        return "".join(chars)
    x0, y0, x1, y1 = (round(v) for v in box)
    crop = grey[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
    if crop.size == 0 or crop.shape[1] <= crop.shape[0]:  # empty, or a vertical line
        return "".join(chars)
    ink = np.abs(crop - np.median(crop)) > INK_LEVELS
    blank = ~ink.any(axis=0)
    min_gap = max(2, int(SPACE_GAP * crop.shape[0]))
    gaps = []  # centres of wide blank runs, in image x
    start = None
    for x, is_blank in enumerate([*blank.tolist(), False]):
        if is_blank and start is None:
            start = x
        elif not is_blank and start is not None:
            if x - start >= min_gap and start > 0 and x < len(blank):  # not the margins
                gaps.append(x0 + (start + x) / 2)
            start = None
    centres = [sum(float(p[0]) for p in b) / len(b) for b in char_boxes]
    out = [chars[0]]
    for i in range(1, len(chars)):
        between = any(centres[i - 1] < g < centres[i] for g in gaps)
        if between and chars[i] != " " and chars[i - 1] != " ":
            out.append(" ")
        out.append(chars[i])
    return "".join(out)
