"""A small store with every table the report reads: real photos (scikit-image) with a dark,
a blurred, a flipped and a re-encoded copy, a byte copy, junk and a truncated file;
scanned, sensed, embedded (the offline default model) and clustered, plus a tags layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from click.testing import CliRunner
from PIL import Image, ImageFilter
from skimage import data

from lamina.cli import main
from lamina.core.store import Store, atomic_write_json, atomic_write_parquet
from lamina.tagging.approvals import approve

TAGS_RUN = "20260101T000000Z-tagged"


def write_photos(src: Path) -> Path:
    """11 files: 9 images (one truncated), a byte copy, a text file and an empty file."""
    src.mkdir(parents=True)
    (src / "pets").mkdir()
    (src / "food").mkdir()
    chelsea = Image.fromarray(data.chelsea())
    coffee = Image.fromarray(data.coffee())
    chelsea.save(src / "pets" / "chelsea.jpg", quality=92)
    Image.fromarray((data.chelsea() * 0.15).astype(np.uint8)).save(src / "pets" / "dark.jpg")
    chelsea.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(src / "pets" / "flip.jpg")
    coffee.save(src / "food" / "coffee.jpg", quality=92)
    coffee.save(src / "food" / "coffee_q30.jpg", quality=30)
    coffee.filter(ImageFilter.GaussianBlur(4)).save(src / "food" / "blurry.jpg")
    Image.fromarray(data.rocket()).save(src / "rocket & <b>.png")  # a name to escape
    Image.fromarray(data.astronaut()).save(src / "astronaut.jpg")
    (src / "copy_of_astronaut.jpg").write_bytes((src / "astronaut.jpg").read_bytes())
    good = (src / "food" / "coffee.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(good[: len(good) // 3])
    (src / "notes.txt").write_text("not an image\n")
    (src / "empty.jpg").write_bytes(b"")
    return src


def lamina(store: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--store", str(store), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def write_tags(store: Store) -> None:
    """A tags layer as `lamina tag` writes it (every decodable image tagged), and
    approvals: "cat" for the first two images, "rocket" added to the first."""
    ids = store.sql("select image_id from images where status = 'ok' order by image_id")[
        "image_id"
    ].to_pylist()
    labels = ["cat", "cup of coffee", "rocket"]
    rows = []
    for k, image_id in enumerate(ids):
        top = [labels[k % 3], labels[(k + 1) % 3]]
        rows.append(
            {
                "image_id": image_id,
                "model_name": "fake:tagger",
                "top1": top[0],
                "top1_score": 0.9 - 0.01 * k,
                "top_labels": top,
                "top_scores": [0.9 - 0.01 * k, 0.05],
                "over_threshold": top[:1],
                "error": None,
            }
        )
    layer = "1-tagstest"
    atomic_write_parquet(
        store.layer_dir("tags", layer) / "part-global.parquet", pa.Table.from_pylist(rows)
    )
    atomic_write_json(
        store.ledger_dir("tags", layer) / "global.json",
        {
            "pass": "tags",
            "layer": layer,
            "run_id": TAGS_RUN,
            "rows": len(rows),
            "finished": "2026-01-01T00:00:00+00:00",
        },
    )
    approve(store, ids[:2], ["cat"], who="tester")
    approve(store, ids[:1], ["rocket"], action="add", who="tester")


def build_full_store(root: Path) -> Store:
    src = write_photos(root / "photos")
    store = root / "store"
    lamina(store, "scan", str(src))
    lamina(store, "sense", "--invariant", "--workers", "1")
    lamina(store, "embed", "--workers", "1")
    lamina(store, "cluster")
    opened = Store.open(store)
    write_tags(opened)
    return opened


def scanned_store(root: Path) -> Store:
    """Only scanned: no signals, embeddings or clusters."""
    src = write_photos(root / "photos")
    lamina(root / "store", "scan", str(src))
    return Store.open(root / "store")
