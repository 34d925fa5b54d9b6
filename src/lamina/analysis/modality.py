"""The `modality` global pass: is each image a photo, a scanned document, a graphic
(drawing, chart, logo, icon) or a screenshot, with a score and the reason in words.

A shipped classifier reads the `pixel_stats` of each image: a multinomial logistic
regression (scikit-learn, balanced class weights, C=1) over `FEATURES`, standardised, whose
weights live in `modality_model.json` next to this module, so classifying needs numpy only.
It was trained by `python bench/modality.py train` on the four generated splits of
tests/modality_set.py and judged once on the `fresh` split of tests/modality_fresh.py,
built from photo sources, fonts, a seed and generators no training split used; it misses
P and R >= 0.9 there for photos, graphics and screenshots (bench/results/modality.md).

The embedding head (`Head`, `modality_head.json`): the same kind of model over `FEATURES`
followed by the 1280 dimensions of the default embedder's stored vectors
(EfficientNet-Lite0, ImageNet), fitted by `python bench/modality.py train-head` on 938
generated images (on the pixel features and 24 principal components of the vectors,
folded into one linear map of the raw vector). On `fresh2`, families no training set
had, judged once: photos and documents P / R 1.00, graphics 0.67 / 0.95, screenshots
0.92 / 0.52. It is used instead of the pixel model for every image with such
a vector when `head` names its version (`lamina modality --head auto` does when the store
has vectors of that embedder made with the weights it was fitted on: the SHA-256 the embed
runs recorded, or for an older store that recorded none, the installed weight file's);
images without a vector get the pixel model. Its version is part of the layer config,
and the embedding layer is an input (new vectors re-run the pass).

On top of the model, when `lamina ocr` has read an image: at least `ocr_letters_min`
letters make a `graphic` a `screenshot` and, on a page-like background (`paper_share >=
paper_min`), a `photo` a `document` (OCR sees text the pixel statistics can miss).
An image without pixels (did not decode, under 4 px a side) is `other`.

Zero-shot (when `zero_shot` names a text-capable model with vectors in the store, which
`lamina modality --zero-shot auto` picks by default): each class has `PROMPTS`, whose text
vectors (mean of the L2-normalised prompt vectors) score the image's stored vector;
`softmax(zero_shot_scale x cosine)` gives the zero-shot probabilities, and the rule is a
weighted geometric mean of the two models: `p ∝ p_pixels^(1 - w) x p_zero_shot^w`, with
`w = zero_shot_weight` (0.5); then the OCR overrides as above. An image without a vector
of that model gets the pixel model alone. The model, the weight, the scale and the
prompts' version are the layer's config. Accuracy with real CLIP weights is not measured
(none offline); the tests run the plumbing with a tiny random CLIP.

The score is the model's probability of the class it chose (0.25-1 for four classes); the
reason names the runner-up and the features that pushed most towards the choice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
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
# The embedding head: a model over FEATURES + the vectors of one embedder (see `Head`).
HEAD_FILE = "modality_head.json"
# Zero-shot prompts per class (their version is part of the layer config).
PROMPTS: dict[str, tuple[str, ...]] = {
    "photo": ("a photo", "a photograph taken with a camera"),
    "document": ("a scanned document", "a scan of a printed page of text"),
    "graphic": ("a computer graphic, a drawing or a chart", "an illustration or a logo"),
    "screenshot": ("a screenshot of a computer screen", "a screenshot of an app window"),
}
PROMPT_VERSION = hashlib.sha256(json.dumps(PROMPTS, sort_keys=True).encode()).hexdigest()[:8]
log = logging.getLogger(__name__)

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
    """The OCR override's thresholds and the zero-shot rule (see the module docstring);
    `zero_shot` "" uses the pixel model alone."""

    ocr_letters_min: int = 60
    paper_min: float = 0.7
    zero_shot: str = ""
    head: str = ""  # the shipped head's version (see `Head`) when its vectors are used
    zero_shot_weight: float = 0.5
    zero_shot_scale: float = 100.0
    prompt_version: str = PROMPT_VERSION

    def __post_init__(self) -> None:
        if not 0.0 <= self.zero_shot_weight <= 1.0:
            raise LaminaError(f"zero_shot_weight must lie in [0, 1], not {self.zero_shot_weight}")


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


@dataclass(frozen=True)
class Head:
    """The embedding head: a `Model` over `FEATURES` followed by the dimensions of one
    embedder's stored vectors (`embedder`, a canonical spec, whose weight file had
    `weights_sha256` when the head was fitted). `version`: the first 8 hex digits of the
    SHA-256 of the head's file, part of the layer config, so a refitted head recomputes."""

    embedder: str
    weights_sha256: str
    version: str
    model: Model

    @classmethod
    def from_json(cls, text: str) -> Head:
        """From the JSON `bench/modality.py train-head` writes."""
        d = json.loads(text)
        model = Model.from_dict(d)
        if model.features[: len(FEATURES)] != FEATURES:
            raise LaminaError("the modality head's features do not start with FEATURES")
        version = hashlib.sha256(text.encode()).hexdigest()[:8]
        return cls(d["embedder"], d["weights_sha256"], version, model)

    @property
    def dim(self) -> int:
        """The vector dimensions it reads."""
        return len(self.model.features) - len(FEATURES)

    def proba(self, pixels: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Class probabilities of rows of pixel features and their (L2-normalised) vectors.

        Example:
            >>> h = shipped_head()
            >>> h.proba(np.zeros((1, len(FEATURES))), np.zeros((1, h.dim))).shape
            (1, 4)
        """
        return self.model.proba(np.hstack([pixels, vectors]))


@cache
def shipped_head() -> Head:
    """The head that ships with lamina (`modality_head.json`)."""
    return Head.from_json(resources.files("lamina.analysis").joinpath(HEAD_FILE).read_text())


def pick_head(store: Any, choice: str) -> str:
    """The head's version when `choice` is "auto" and the store has vectors of the head's
    embedder made with the weights it was fitted on, else ""; "off" -> "". Which weights
    made the vectors is read from the store (the embed runs' records give the weight
    file's SHA-256); where a run recorded none (an older store), the installed weight
    file must be the head's. Why the head is not used is logged.

    Example:
        >>> pick_head(store, "off")  # doctest: +SKIP
        ''
    """
    from lamina.core.vectors import list_models, recorded_weights_sha256

    if choice == "off":
        return ""
    if choice != "auto":
        raise LaminaError(f"--head takes auto or off, not {choice!r}")
    head = shipped_head()
    if not store.table_files("images") or head.embedder not in list_models(store):
        return ""
    recorded = recorded_weights_sha256(store, head.embedder)
    other = sorted({sha for sha in recorded.values() if sha and sha != head.weights_sha256})
    if other:
        log.warning(
            "modality head not used: the store's %s vectors were made with weights of "
            "SHA-256 %s, not the ones it was fitted on (%s)",
            head.embedder, ", ".join(other), head.weights_sha256,
        )  # fmt: skip
        return ""
    if (not recorded or None in recorded.values()) and installed_weights_sha256(
        head.embedder
    ) != head.weights_sha256:
        log.warning(
            "modality head not used: the store does not record which weights made its %s "
            "vectors, and the installed ones are not the ones it was fitted on",
            head.embedder,
        )
        return ""
    return head.version


@cache
def installed_weights_sha256(spec: str) -> str:
    """The SHA-256 of the installed weight file of `spec` ("" when unknown or missing)."""
    from lamina.backends.embedders import DEFAULT_SPEC

    if spec != DEFAULT_SPEC:
        return ""
    try:
        from lamina.backends.embedders._common import file_sha256
        from lamina.backends.embedders.efficientnet import weights_path

        return str(file_sha256(Path(weights_path())))
    except (LaminaError, OSError):  # not installed, or its weight file gone: no head
        return ""


def combine(pixels: np.ndarray, zero_shot: np.ndarray, weight: float) -> np.ndarray:
    """The documented rule: `p ∝ pixels^(1 - weight) x zero_shot^weight` (both over the same
    classes), renormalised.

    Example:
        >>> combine(np.array([0.8, 0.2]), np.array([0.2, 0.8]), 0.5).round(2).tolist()
        [0.5, 0.5]
    """
    logp = (1 - weight) * np.log(np.maximum(pixels, 1e-12))
    logp += weight * np.log(np.maximum(zero_shot, 1e-12))
    p = np.exp(logp - logp.max())
    return p / p.sum()


def zero_shot_proba(vectors: np.ndarray, texts: np.ndarray, scale: float) -> np.ndarray:
    """`softmax(scale x cosine)` of image vectors (rows) against one text vector per class.

    Example:
        >>> zero_shot_proba(np.eye(2), np.eye(2), 100.0).round(3).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    logits = scale * (vectors @ texts.T)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def class_text_vectors(embed_texts: Any, classes: tuple[str, ...]) -> np.ndarray:
    """One L2-normalised text vector per class: the mean of its prompts' vectors."""
    rows = []
    for label in classes:
        v = np.asarray(embed_texts(list(PROMPTS[label])), np.float64)
        v = v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
        mean = v.mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.stack(rows)


def classify(
    row: dict[str, Any],
    c: ModalityConfig,
    model: Model | None = None,
    zero_shot: np.ndarray | None = None,
    vector: np.ndarray | None = None,
    head: Head | None = None,
) -> tuple[str, float, str]:
    """`(modality, score 0-1, reason)` of one row of pixel stats (+ `letters` read by OCR,
    None when OCR has not run, and `error`); `zero_shot`: the zero-shot probabilities over
    the model's classes, combined by `combine` (None: the pixel model alone); `vector`:
    the image's vector of `head`'s embedder, read with the pixel stats by `head` instead of
    the pixel model (None: the pixel model).

    Example:
        >>> row = dict.fromkeys(FEATURES, 0.0) | {"letters": None, "error": "truncated"}
        >>> classify(row, ModalityConfig())[0]
        'other'
    """
    if row.get("error") is not None or row.get("flat_share") is None:
        return "other", 1.0, f"no pixels: {row.get('error') or 'too small'}"
    m = model or shipped_model()
    x = np.array([[float(row[f] or 0.0) for f in m.features]])
    reader = "model"
    if vector is not None and head is not None:
        m, reader = head.model, "head"
        x = np.hstack([x[:, : len(FEATURES)], np.asarray(vector, float)[None, :]])
    p = m.proba(x)[0]
    pixel_best = int(np.argmax(p))
    if zero_shot is not None:
        p = combine(p, zero_shot, c.zero_shot_weight)
    order = np.argsort(-p)
    best, second = int(order[0]), int(order[1])
    # The features that pushed most towards the choice: coefficient x standardised value.
    push = m.coef[best] * m.z(x)[0]
    pushes = list(zip(m.features[: len(FEATURES)], push[: len(FEATURES)], strict=True))
    if reader == "head":  # the vector's dimensions count as one: the embedding
        pushes.append(("embedding", float(push[len(FEATURES) :].sum())))
    top = [f for f, v in sorted(pushes, key=lambda t: -t[1])[:2] if v > 0]
    label, score = m.classes[best], float(p[best])
    why = f"{reader} {label} {score:.2f}, {m.classes[second]} {p[second]:.2f}"
    if top:
        why += "; " + ", ".join(f if f == "embedding" else f"{f} {row[f]:.2f}" for f in top)
    if zero_shot is not None:
        zs = int(np.argmax(zero_shot))
        alone = "pixels" if reader == "model" else "head"
        why += f"; zero-shot {m.classes[zs]} {zero_shot[zs]:.2f}, {alone} {m.classes[pixel_best]}"
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
    version = "3"
    kind = "global"
    Config = ModalityConfig
    reads = ("pixel_stats", "ocr")
    schema = MODALITY_SCHEMA

    def describe(self) -> dict[str, Any]:
        """The head and the zero-shot rule, for the run record."""
        head = None
        if self.config.head:
            h = shipped_head()
            head = {"version": h.version, "embedder": h.embedder,
                    "weights_sha256": h.weights_sha256}  # fmt: skip
        if not self.config.zero_shot:
            return {"head": head, "zero_shot": None}
        return {
            "head": head,
            "zero_shot": self.config.zero_shot,
            "rule": "p ~ p_pixels^(1-w) * p_zero_shot^w, p_zero_shot = softmax(scale * cosine "
            "to the mean prompt vector of each class)",
            "weight": self.config.zero_shot_weight,
            "scale": self.config.zero_shot_scale,
            "prompts": PROMPTS,
        }

    def input_paths(self, store: Any) -> list[Path]:
        """The head's and the zero-shot model's embedding layers: new vectors re-run the
        pass."""
        from lamina.core.vectors import embedding_layers

        models = [shipped_head().embedder] if self.config.head else []
        models += [self.config.zero_shot] if self.config.zero_shot else []
        layers = embedding_layers(store) if models else {}
        found = {layers[m] for m in models if m in layers}
        return sorted(p for folder in found for p in folder.glob("part-*.parquet"))

    def _head_vectors(self, store: Any) -> tuple[Head | None, dict[str, np.ndarray]]:
        """The head and image_id -> its embedder's vector ((None, {}) without a head)."""
        if not self.config.head:
            return None, {}
        from lamina.core.vectors import load_embeddings

        head = shipped_head()
        if head.version != self.config.head:
            raise LaminaError(
                f"the modality head {self.config.head} is not the one this lamina ships "
                f"({head.version})",
                hint="run `lamina modality` again (it picks the shipped head)",
            )
        emb = load_embeddings(store, head.embedder)
        if len(emb) and emb.vectors.shape[1] != head.dim:
            raise LaminaError(f"{head.embedder} vectors have {emb.vectors.shape[1]} dimensions, "
                              f"the modality head reads {head.dim}")  # fmt: skip
        vectors = np.asarray(emb.vectors, np.float64)
        return head, dict(zip(emb.ids.tolist(), vectors, strict=True))

    def _zero_shot(self, store: Any, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
        """image_id -> zero-shot probabilities over `classes` ({} without a model)."""
        if not self.config.zero_shot:
            return {}
        from lamina.core.vectors import load_embeddings

        embedder = text_embedder(self.config.zero_shot)
        texts = class_text_vectors(embedder.embed_texts, classes)
        emb = load_embeddings(store, self.config.zero_shot)
        if not len(emb):
            return {}
        vectors = np.asarray(emb.vectors, np.float64)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        proba = zero_shot_proba(vectors, texts, self.config.zero_shot_scale)
        return dict(zip(emb.ids.tolist(), proba, strict=True))

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
        zero_shot = self._zero_shot(store, shipped_model().classes)
        head, vectors = self._head_vectors(store)
        out: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for row in rows:
            modality, score, reason = classify(
                row, self.config, zero_shot=zero_shot.get(row["image_id"]),
                vector=vectors.get(row["image_id"]), head=head,
            )  # fmt: skip
            out["image_id"].append(row["image_id"])
            out["modality"].append(modality)
            out["modality_score"].append(round(score, 4))
            out["modality_reason"].append(reason)
        return pa.Table.from_pydict(out, schema=self.schema)


@cache
def text_embedder(spec: str) -> Any:
    """The embedder of `spec`, loaded once per process, offline (its weights are cached:
    they made the store's vectors); a LaminaError when it cannot embed text."""
    from lamina.backends.embedders import TEXT_CAPABLE, load_embedder

    embedder = load_embedder(spec, offline=True)
    if not getattr(embedder, "can_embed_text", False):
        raise LaminaError(
            f"zero-shot modality needs a model that embeds text; {spec!r} embeds images only",
            hint=f"--zero-shot off, or a model with vectors in the store that has a text "
            f"tower ({TEXT_CAPABLE})",
        )
    return embedder


def pick_zero_shot(store: Any, choice: str) -> str:
    """The zero-shot model for `choice`: "off" -> ""; "auto" -> the newest model with
    vectors in the store that embeds text (open_clip / hf CLIP-like, weights loadable
    offline), else ""; any other value must be such a model in the store.

    Example:
        >>> pick_zero_shot(store, "off")  # doctest: +SKIP
        ''
    """
    from lamina.core.vectors import list_models

    if choice == "off":
        return ""
    models = list_models(store) if store.table_files("images") else []
    if choice != "auto":
        if choice not in models:
            raise LaminaError(
                f"no embeddings of model {choice!r} in the store for zero-shot modality",
                hint=f"models with embeddings: {', '.join(models) or 'none'}; "
                f"`lamina embed -m {choice}` first, or --zero-shot auto / off",
            )
        text_embedder(choice)
        return choice
    for spec in reversed(models):
        if not spec.startswith(("open_clip:", "hf:")):
            continue  # the other backends have no text tower
        try:
            text_embedder(spec)
        except Exception as exc:  # weights gone, or no text tower: the pixel model alone
            log.warning("zero-shot modality: %s not used (%s)", spec, exc)
            continue
        return spec
    return ""
