"""The `modality` global pass: is each image a photo, a scanned document, a graphic
(drawing, chart, logo, icon) or a screenshot, with a score and the reason in words.

A shipped classifier reads the `pixel_stats` of each image: a multinomial logistic
regression (scikit-learn, balanced class weights, C=1) over `FEATURES`, standardised, whose
weights live in `modality_model.json` next to this module, so classifying needs numpy only.
It was trained by `python bench/modality.py train` on the generated `calibration` set of
tests/modality_set.py and is judged on the `final` set, built from other photos (or
crops), fonts, another seed and other generators (bench/results/modality.md).

On top of the model, when `lamina ocr` has read an image: at least `ocr_letters_min`
letters make a `graphic` a `screenshot` and, on a page-like background (`paper_share >=
paper_min`), a `photo` a `document` (OCR sees text the pixel statistics can miss).
An image without pixels (did not decode, under 4 px a side) is `other`.

The score is the model's probability of the class it chose (0.25-1 for four classes); the
reason names the runner-up and the features that pushed most towards the choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa

from lamina.core.errors import LaminaError
from lamina.core.passes import Pass, register

MODALITIES = ("photo", "document", "graphic", "screenshot", "other")
FEATURES = (
    "flat_share", "smooth_share", "dominant_share", "palette_share", "edge_share",
    "line_share", "clean_share", "linearity", "sat_mean", "sat_std", "grey_share",
    "paper_share", "text_share", "text_density", "screen_size", "coherence",
)  # fmt: skip
MODEL_FILE = "modality_model.json"

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
    """The OCR override's thresholds (see the module docstring)."""

    ocr_letters_min: int = 60
    paper_min: float = 0.7


@dataclass(frozen=True)
class Model:
    """A standardised multinomial logistic regression over `features`."""

    features: tuple[str, ...]
    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # classes x features
    intercept: np.ndarray

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Model:
        """From the JSON the training script writes (see `to_dict`)."""
        model = cls(
            tuple(d["features"]), tuple(d["classes"]), np.asarray(d["mean"], float),
            np.asarray(d["scale"], float), np.asarray(d["coef"], float),
            np.asarray(d["intercept"], float),
        )  # fmt: skip
        n = len(model.features)
        if model.coef.shape != (len(model.classes), n) or model.mean.shape != (n,):
            raise LaminaError("the modality model's shapes do not match its feature list")
        return model

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists of floats."""
        return {
            "features": list(self.features),
            "classes": list(self.classes),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    def z(self, rows: np.ndarray) -> np.ndarray:
        """Standardised features (rows x features)."""
        return (rows - self.mean) / self.scale

    def proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities (rows x classes).

        Example:
            >>> m = shipped_model()
            >>> m.proba(np.zeros((1, len(m.features)))).shape
            (1, 4)
        """
        logits = self.z(rows) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)


@cache
def shipped_model() -> Model:
    """The model that ships with lamina (`modality_model.json`)."""
    text = resources.files("lamina.analysis").joinpath(MODEL_FILE).read_text()
    return Model.from_dict(json.loads(text))


def classify(
    row: dict[str, Any], c: ModalityConfig, model: Model | None = None
) -> tuple[str, float, str]:
    """`(modality, score 0-1, reason)` of one row of pixel stats (+ `letters` read by OCR,
    None when OCR has not run, and `error`).

    Example:
        >>> row = dict.fromkeys(FEATURES, 0.0) | {"letters": None, "error": "truncated"}
        >>> classify(row, ModalityConfig())[0]
        'other'
    """
    if row.get("error") is not None or row.get("flat_share") is None:
        return "other", 1.0, f"no pixels: {row.get('error') or 'too small'}"
    m = model or shipped_model()
    x = np.array([[float(row[f] or 0.0) for f in m.features]])
    p = m.proba(x)[0]
    order = np.argsort(-p)
    best, second = int(order[0]), int(order[1])
    # The features that pushed most towards the choice: coefficient x standardised value.
    push = m.coef[best] * m.z(x)[0]
    top = [m.features[i] for i in np.argsort(-push)[:2] if push[i] > 0]
    label, score = m.classes[best], float(p[best])
    why = f"model {label} {score:.2f}, {m.classes[second]} {p[second]:.2f}"
    if top:
        why += "; " + ", ".join(f"{f} {row[f]:.2f}" for f in top)
    letters = row.get("letters")
    if letters is not None and letters >= c.ocr_letters_min:
        if label == "graphic":
            return "screenshot", score, f"{letters} letters read on a graphic ({why})"
        if label == "photo" and (row.get("paper_share") or 0.0) >= c.paper_min:
            return "document", score, f"{letters} letters read on paper ({why})"
    if letters is not None:
        why += f"; {letters} letters read"
    return label, score, why


@register
class ModalityPass(Pass):
    """photo / document / graphic / screenshot / other, with a score and a reason."""

    name = "modality"
    version = "2"
    kind = "global"
    Config = ModalityConfig
    reads = ("pixel_stats", "ocr")
    schema = MODALITY_SCHEMA

    def compute(self, store: Any) -> pa.Table:
        tables = store.available_tables()
        if "pixel_stats" not in tables:
            raise LaminaError("modality needs the pixel_stats table", hint="run `lamina modality`")
        if "ocr" in tables:
            letters = "o.letters"
            ocr_join = (
                "left join (select image_id, length(regexp_replace(text, '[^[:alpha:]]', '', "
                "'g')) as letters from ocr where error is null) o using (image_id)"
            )
        else:
            letters, ocr_join = "cast(null as integer)", ""
        rows = store.sql(
            f"select p.*, {letters} as letters from pixel_stats p {ocr_join}"
        ).to_pylist()
        out: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for row in rows:
            modality, score, reason = classify(row, self.config)
            out["image_id"].append(row["image_id"])
            out["modality"].append(modality)
            out["modality_score"].append(round(score, 4))
            out["modality_reason"].append(reason)
        return pa.Table.from_pydict(out, schema=self.schema)
