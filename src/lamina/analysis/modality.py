"""The `modality` global pass: is each image a photo, a scanned document, a graphic
(drawing, chart, logo) or a screenshot, with a score and the reason in words.

From `pixel_stats` (flat fills), `signals` (`text_score`) and, when `lamina ocr` has run,
the letters it read. The rule, in order (thresholds in `ModalityConfig`, chosen on a
generated calibration set and judged on a held-out one with other photos, fonts, logos and
seed: tests/analysis/test_modality.py):

1. no pixels (did not decode, under 16 px): `other`;
2. computer-made: most pixels in exactly flat fills (`flat_share >= flat_min`) and few in
   smooth gradients (`smooth_share < smooth_max`: a smooth grey photo, a JPEG-compressed
   sky, has flat runs too, but gradients around them). Text on it (`text_score >=
   text_min_screen`, or at least `ocr_letters_min` letters read) makes a `screenshot`,
   else a `graphic`;
3. otherwise natural pixels: text with a dominant background colour (paper: `text_score
   >= text_min_document` or OCR letters, and `dominant_share >= paper_min`) makes a
   `document`, else a `photo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.passes import Pass, register

MODALITIES = ("photo", "document", "graphic", "screenshot", "other")

MODALITY_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("modality", pa.string()),
        ("modality_score", pa.float32()),
        ("modality_reason", pa.string()),
    ]
)


@dataclass(frozen=True)
class ModalityConfig:
    """The rule's thresholds (see the module docstring)."""

    flat_min: float = 0.6
    smooth_max: float = 0.15
    text_min_screen: float = 0.1
    text_min_document: float = 0.3
    paper_min: float = 0.25
    ocr_letters_min: int = 60


BASE_SQL = """
select p.image_id, p.flat_share, p.smooth_share, p.dominant_share, p.error,
       s.text_score, {letters} as letters
from pixel_stats p
left join signals s using (image_id)
{ocr_join}
"""


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


def classify(row: dict[str, Any], c: ModalityConfig) -> tuple[str, float, str]:
    """`(modality, score 0-1, reason)` of one row of pixel stats, text score and OCR letters.

    Example:
        >>> row = {"flat_share": 0.95, "smooth_share": 0.01, "dominant_share": 0.7,
        ...        "text_score": 0.0, "letters": None, "error": None}
        >>> classify(row, ModalityConfig())[0]
        'graphic'
    """
    flat, smooth = row["flat_share"], row["smooth_share"]
    if row["error"] is not None or flat is None:
        return "other", 1.0, f"no pixels: {row['error'] or 'too small'}"
    text = row["text_score"] or 0.0
    letters = row["letters"]
    read = letters is not None and letters >= c.ocr_letters_min
    ocr_part = f", {letters} letters read" if letters is not None else ""
    facts = f"flat {flat:.2f}, smooth {smooth:.2f}, text {text:.2f}{ocr_part}"
    if flat >= c.flat_min and smooth < c.smooth_max:
        # Margin past the flat threshold, 0.5 at the threshold, 1 at all-flat.
        made = 0.5 + 0.5 * _clip((flat - c.flat_min) / (1 - c.flat_min))
        if text >= c.text_min_screen or read:
            return "screenshot", made, f"flat fills with text ({facts})"
        return "graphic", made, f"flat fills, no text ({facts})"
    natural = 0.5 + 0.5 * _clip(max(c.flat_min - flat, smooth - c.smooth_max) / c.flat_min)
    if (text >= c.text_min_document or read) and row["dominant_share"] >= c.paper_min:
        return "document", natural, f"text on a plain background, natural grain ({facts})"
    return "photo", natural, f"natural grain, no text on paper ({facts})"


@register
class ModalityPass(Pass):
    """photo / document / graphic / screenshot / other, with a score and a reason."""

    name = "modality"
    version = "1"
    kind = "global"
    Config = ModalityConfig
    reads = ("pixel_stats", "signals", "ocr")
    schema = MODALITY_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        tables = store.available_tables()
        for needed, command in (("pixel_stats", "lamina modality"), ("signals", "lamina sense")):
            if needed not in tables:
                raise LaminaError(f"modality needs the {needed} table", hint=f"run `{command}`")
        if "ocr" in tables:
            letters = "o.letters"
            ocr_join = (
                "left join (select image_id, length(regexp_replace(text, '[^[:alpha:]]', '', "
                "'g')) as letters from ocr where error is null) o using (image_id)"
            )
        else:
            letters, ocr_join = "cast(null as integer)", ""
        rows = store.sql(BASE_SQL.format(letters=letters, ocr_join=ocr_join)).to_pylist()
        out: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for row in rows:
            modality, score, reason = classify(row, self.config)
            out["image_id"].append(row["image_id"])
            out["modality"].append(modality)
            out["modality_score"].append(round(score, 4))
            out["modality_reason"].append(reason)
        return pa.Table.from_pydict(out, schema=self.schema)
