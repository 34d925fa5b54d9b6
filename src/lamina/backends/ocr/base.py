"""What every OCR engine returns (`OcrLine`) and the script guess of a text."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class OcrLine:
    """One line of text: its words, the engine's confidence (0-1) and its axis-aligned box
    `(x0, y0, x1, y1)` in the pixels of the array the engine read.

    Example:
        >>> OcrLine("Linnaeus 1753", 0.98, (10.0, 5.0, 200.0, 30.0)).text
        'Linnaeus 1753'
    """

    text: str
    confidence: float
    box: tuple[float, float, float, float]


# Unicode name prefixes -> script, for `guess_script` (the first word of a letter's name).
_SCRIPTS = {
    "LATIN": "latin",
    "CYRILLIC": "cyrillic",
    "GREEK": "greek",
    "ARABIC": "arabic",
    "HEBREW": "hebrew",
    "CJK": "cjk",
    "HIRAGANA": "japanese",
    "KATAKANA": "japanese",
    "HANGUL": "korean",
    "DEVANAGARI": "devanagari",
    "THAI": "thai",
}


def guess_script(text: str) -> str | None:
    """The writing system most of the letters of `text` belong to (latin, cyrillic, greek,
    arabic, hebrew, cjk, japanese, korean, devanagari, thai, other); None without letters.
    A script, not a language: English and German are both latin.

    Example:
        >>> guess_script("Species plantarum 1753"), guess_script("Москва"), guess_script("42")
        ('latin', 'cyrillic', None)
    """
    counts: dict[str, int] = {}
    for char in text:
        if not char.isalpha():
            continue
        first = unicodedata.name(char, "OTHER").split(" ")[0]
        script = _SCRIPTS.get(first, "other")
        counts[script] = counts.get(script, 0) + 1
    if not counts:
        return None
    return max(sorted(counts), key=lambda s: counts[s])
