"""The docstring examples of src/lamina run as tests, and what they run against.

`pytest` (testpaths names src/lamina) collects every module's examples here, without
`--doctest-modules`: that flag would also import every module under tests/, fault-injection
and fuzz harnesses included. `pytest src/lamina/core/store.py` runs one module's examples.

Every example runs in a fresh folder holding only a copy of `photos/` (three small
generated photos and a label reading "Systema Naturae, Linnaeus 1758"), with
`$LAMINA_STORE` naming a store that has scanned them, so `lamina.open()` opens it. The
store is built once per test process, and holds a small embedding layer written as the embed
pass writes it (running the real model would cost seconds the suite does not have).
That store is shared by every example of a test process, in no fixed order: an example
that writes (scans, runs a pass) makes its own, `lamina.open("store", create=True)`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _pytest.doctest import DoctestModule  # not in pytest's public API; stable since 7.0
from PIL import Image, ImageDraw, ImageFont

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the examples never download weights

# The width of the example embedding layer and the model it is filed under.
EXAMPLE_DIM = 8
EXAMPLE_MODEL = "example:8d"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Every module of src/lamina as its examples (`--doctest-modules` does it itself)."""
    if (
        file_path.suffix != ".py"
        or file_path.name in ("conftest.py", "__main__.py")
        or parent.config.option.doctestmodules
    ):
        return None
    return DoctestModule.from_parent(parent, path=file_path)


def _write_photos(folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        pixels = np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, "JPEG")
    label = Image.new("RGB", (560, 80), "white")
    font = ImageFont.load_default(size=28)
    ImageDraw.Draw(label).text((16, 24), "Systema Naturae, Linnaeus 1758", fill="black", font=font)
    label.save(folder / "label.png")


def _write_embeddings(store: object) -> None:
    """One embed layer over the scanned images, in the embed pass's own format."""
    import pyarrow as pa

    from lamina.core.ledger import write_chunk_record
    from lamina.core.store import Store, atomic_write_parquet
    from lamina.core.vectors import EMBED_PASS, embed_schema, vectors_to_arrow

    assert isinstance(store, Store)
    ids = sorted(store.sql("select image_id from images").column("image_id").to_pylist())
    vectors = np.random.default_rng(0).normal(size=(len(ids), EXAMPLE_DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pa.table(
        {
            "image_id": ids,
            "model": [EXAMPLE_MODEL] * len(ids),
            "vector": vectors_to_arrow(vectors),
            "error": pa.nulls(len(ids), pa.string()),
        },
        schema=embed_schema(EXAMPLE_DIM),
    )
    layer = "1-example"
    atomic_write_parquet(store.layer_dir(EMBED_PASS, layer) / "part-0.parquet", table)
    write_chunk_record(store.ledger_dir(EMBED_PASS, layer), "0", {"rows": len(ids)})


@pytest.fixture(scope="session")
def example_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `photos/` and the store `.lamina/` that scanned them."""
    import lamina.catalog  # registers the passes, as every entry point does

    root = tmp_path_factory.mktemp("examples")
    _write_photos(root / "photos")
    store = lamina.open(root / ".lamina", create=True)
    lamina.scan(store, lamina.ScanConfig(sources=(str(root / "photos"),), progress=False))
    _write_embeddings(store)
    return root


@pytest.fixture(autouse=True)
def example_folder(
    example_world: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    doctest_namespace: dict[str, object],
) -> Iterator[Path]:
    """Each example: its own working folder (what it writes lands there), the store (as
    `store`, and `lamina.open()`), and `lamina` imported, as a user's session has it."""
    import lamina

    doctest_namespace["lamina"] = lamina
    # `store` in an example is an open store, as in the module docs' prose.
    doctest_namespace["store"] = lamina.open(example_world / ".lamina")
    shutil.copytree(example_world / "photos", tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAMINA_STORE", str(example_world / ".lamina"))
    yield tmp_path
