"""Generated collections of each layout preset's shape, with broken items."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_photo

# What every plate's manifest must hold (the schema below, and the hand count's own check).
REQUIRED_KEYS = ("id", "url", "licence")
SCHEMA = {
    "type": "object",
    "required": list(REQUIRED_KEYS),
    "properties": {"id": {"type": "integer"}, "url": {"type": "string"}},
}


def plate_tree(root: Path, n: int = 12) -> Path:
    """`plates_structured/plate-NNN/{manifest.json, source/<image>, runs/…}` with n plates,
    of which five are broken: 1 no manifest, 2 two images in source/, 3 a manifest that
    is not JSON, 4 a manifest failing the schema (no licence, id a string), 5 no image.
    Every fourth plate's image is larger (80 x 60) and every third carries `created_at`.
    """
    base = root / "plates_structured"
    for i in range(n):
        plate = base / f"plate-{i:03d}"
        manifest = {"id": i, "url": f"https://example.org/{i}", "licence": "CC-BY"}
        if i % 3 == 0:
            manifest["created_at"] = f"2024-01-{1 + i % 28:02d}"
        size = (80, 60) if i % 4 == 0 else (64, 48)
        if i != 5:
            write_photo(plate / "source" / f"plate-{i:03d}.jpg", 1000 + i, size=size)
        if i == 2:
            write_photo(plate / "source" / "second.png", 5000 + i, fmt="PNG")
        if i == 1:
            pass  # no manifest
        elif i == 3:
            plate.mkdir(parents=True, exist_ok=True)
            (plate / "manifest.json").write_text('{\n  "id": 3,\n  "url": "x"\n  "licence": 1\n}\n')
        elif i == 4:
            (plate / "manifest.json").write_text(json.dumps({"id": "four", "url": "y"}))
        else:
            plate.mkdir(parents=True, exist_ok=True)
            (plate / "manifest.json").write_text(json.dumps(manifest))
        # Outputs of earlier runs: never items, never images of the plate.
        write_photo(plate / "runs" / "r1" / "crop.jpg", 9000 + i, size=(16, 16))
        (plate / "runs" / "r1" / "ledger.json").write_text("{}")
    (root / "README.md").write_text("a herbarium\n")
    return root


def imagefolder_tree(root: Path) -> Path:
    """`class/*.jpg` with two classes, a class folder with no image, and a loose image."""
    for k, cls in enumerate(("cats", "dogs")):
        for j in range(3):
            write_photo(root / cls / f"{cls}{j}.jpg", 100 * k + j)
    (root / "birds").mkdir(parents=True)
    (root / "birds" / "notes.txt").write_text("to do\n")
    write_photo(root / "loose.jpg", 77)
    return root


def flat_tree(root: Path) -> Path:
    """Loose images, some with a `<name>.json` beside them, one of which is not JSON."""
    write_photo(root / "a.jpg", 1)
    (root / "a.jpg.json").write_text(json.dumps({"title": "A", "taken": "2020-05-01"}))
    write_photo(root / "b.jpg", 2)
    write_photo(root / "c.jpg", 3)
    (root / "c.jpg.json").write_text("{oops")
    return root
