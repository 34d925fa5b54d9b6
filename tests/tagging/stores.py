"""Stores for the tagging tests: real photos shipped with scikit-image, scanned, and the
ImageNet class-name vectors (4 s of MiniLM) computed once per process and copied into
each new store's text cache, as a second tagging of the same store would find them."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.tagging.offline import embed_text, imagenet_class_names, text_model_id
from lamina.tagging.text import cache_path, text_vectors
from tests.backends.embedders.tiny_models import photos

LABELS = ["cat", "cup of coffee", "rocket", "astronaut"]


def write_photos(src: Path) -> Path:
    """chelsea, coffee, rocket and astronaut as JPEGs, and a truncated copy of coffee."""
    src.mkdir(parents=True, exist_ok=True)
    for name, rgb in photos().items():
        Image.fromarray(rgb).save(src / f"{name}.jpg", quality=90)
    data = (src / "coffee.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(data[: len(data) // 3])
    return src


def scanned(src: Path, folder: Path) -> Store:
    store = Store.open(folder, create=True)
    scan_sources(store, [src], workers=1, progress=False)
    return store


def image_ids(store: Store) -> dict[str, str]:
    """file name -> image id."""
    rows = store.sql("select rel_path, image_id from files where image_id is not null")
    return dict(zip(rows["rel_path"].to_pylist(), rows["image_id"].to_pylist(), strict=True))


@functools.cache
def _class_vectors_file() -> Path:
    root = Path(tempfile.mkdtemp(prefix="lamina-class-vectors-"))
    names = list(imagenet_class_names())
    text_vectors(SimpleNamespace(root=root), text_model_id(), names, (), embed_text)
    return cache_path(SimpleNamespace(root=root), text_model_id(), names, ())


def seed_class_vectors(store: Store) -> None:
    """Put the ImageNet class names' text vectors into the store's text cache."""
    source = _class_vectors_file()
    target = cache_path(store, text_model_id(), list(imagenet_class_names()), ())
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
