"""A small store for the set exports: real photos (scikit-image) in class folders, a byte
copy, a near copy in the same class and one in another class (a label conflict), sensed
(so duplicates and flags exist), with approvals, a frozen split and predictions written
as `lamina train` / `lamina predict` would (tables `splits` and `predictions`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from click.testing import CliRunner
from PIL import Image
from skimage import data

from lamina.cli import main
from lamina.core.store import Store, atomic_write_parquet
from lamina.tagging.approvals import approve

# rel_path -> (photo, long side); near copies are the same photo at another size.
PHOTOS = {
    "cat/chelsea.jpg": ("chelsea", 160),
    "cat/chelsea_small.jpg": ("chelsea", 120),
    "coffee/coffee.jpg": ("coffee", 160),
    "space/rocket.jpg": ("rocket", 160),
    "space/astronaut.jpg": ("astronaut", 160),
    "people/astronaut_small.jpg": ("astronaut", 120),
    "people/camera.png": ("camera", 128),
}
BYTE_COPY = ("coffee/coffee.jpg", "coffee/coffee_copy.jpg")


def write_photos(src: Path) -> Path:
    for rel, (name, side) in PHOTOS.items():
        image = Image.fromarray(getattr(data, name)())
        image.thumbnail((side, side))
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)
    (src / BYTE_COPY[1]).write_bytes((src / BYTE_COPY[0]).read_bytes())
    return src


def lamina(store: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["--store", str(store), *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def ids_by_path(store: Store) -> dict[str, str]:
    rows = store.sql("select rel_path, image_id from files where image_id is not null")
    return dict(zip(rows["rel_path"].to_pylist(), rows["image_id"].to_pylist(), strict=True))


def write_layer(store: Store, name: str, rows: list[dict]) -> None:
    """A table another command writes, as `lamina train` (the `splits` table) and
    `lamina predict` (the `predictions` layer, one part) write them."""
    if name == "splits":
        part = store.table_dir(name) / "part-s1.parquet"
    else:
        part = store.layer_dir(name, "1-test") / "part-global.parquet"
    atomic_write_parquet(part, pa.Table.from_pylist(rows))


SPLIT = {
    "cat/chelsea.jpg": "train",
    "cat/chelsea_small.jpg": "train",
    "coffee/coffee.jpg": "val",
    "space/rocket.jpg": "train",
    "space/astronaut.jpg": "train",
    "people/astronaut_small.jpg": "val",  # a duplicate across the split: a leak
    "people/camera.png": "test",
}


def build(root: Path, *, sense: bool = True) -> tuple[Path, Store]:
    src = write_photos(root / "photos")
    folder = root / "store"
    lamina(folder, "scan", str(src))
    if sense:
        lamina(folder, "sense", "--workers", "1", "--no-thumbnails")
    store = Store.open(folder)
    ids = ids_by_path(store)
    approve(store, [ids["cat/chelsea.jpg"], ids["cat/chelsea_small.jpg"]], ["cat"], who="t")
    approve(store, [ids["space/astronaut.jpg"]], ["person/astronaut"], who="t")
    approve(store, [ids["space/rocket.jpg"]], ["rocket", "space"], who="t")
    write_layer(
        store,
        "splits",
        [{"image_id": ids[r], "split": s, "split_id": "s1"} for r, s in SPLIT.items()],
    )
    write_layer(
        store,
        "predictions",
        [
            {"image_id": ids[r], "label": label, "score": score, "experiment_id": "e1"}
            for r in SPLIT
            for label, score in (("thing", 0.4), (r.split("/")[0], 0.6))
        ],
    )
    return src, store
