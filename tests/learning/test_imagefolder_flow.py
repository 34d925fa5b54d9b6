"""The issue-20 flow end to end through the CLI: export a small store as an ImageFolder
(one image per duplicate group, labels from the folders), scan the export into a fresh
store, embed it (a tiny random open_clip model, offline) and `lamina train --labels
folder` on it: the classes are the export's folders and every exported image is used."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from skimage import data

from lamina.core.store import Store
from tests.backends.embedders.tiny_models import tiny_open_clip
from tests.exports.sets_store import lamina

# rel_path -> scikit-image photo; chelsea_small is a near copy (dropped by --one-per-group)
# and coffee_copy.jpg a byte copy (the same image, one file).
PHOTOS = {
    "photos/chelsea.jpg": "chelsea",
    "photos/chelsea_small.jpg": "chelsea",
    "photos/rocket.jpg": "rocket",
    "photos/coffee.jpg": "coffee",
    "textures/brick.png": "brick",
    "textures/grass.png": "grass",
    "textures/gravel.png": "gravel",
    "graphics/page.png": "page",
    "graphics/text.png": "text",
    "graphics/logo.png": "logo",
}


def _write_photos(src: Path) -> Path:
    for rel, name in PHOTOS.items():
        image = Image.fromarray(getattr(data, name)())
        image.thumbnail((120, 120) if rel.endswith("_small.jpg") else (160, 160))
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(path, quality=90)
    (src / "photos" / "coffee_copy.jpg").write_bytes((src / "photos" / "coffee.jpg").read_bytes())
    return src


def test_an_imagefolder_export_trains_with_folder_labels(tmp_path: Path) -> None:
    src = _write_photos(tmp_path / "src")
    first = tmp_path / "first"
    lamina(first, "scan", str(src))
    lamina(first, "sense", "--workers", "1", "--no-thumbnails")
    out = tmp_path / "set"
    said = json.loads(
        lamina(
            first,
            "export",
            "--format",
            "imagefolder",
            "--one-per-group",
            "--label-from",
            "folder",
            "-o",
            str(out),
            "--json",
        )
    )
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["graphics", "photos", "textures"]
    exported = {f: sorted(p.name for p in (out / f).iterdir()) for f in folders}
    assert "chelsea_small.jpg" not in exported["photos"]  # its near copy was kept
    n = sum(len(v) for v in exported.values())
    assert n == 9 and said["leaks"]["duplicates_dropped"] >= 1

    second = tmp_path / "second"
    # The export's files are symlinks to the originals (the default `--link`): a scan
    # records them as skipped unless told to follow them.
    plain = json.loads(lamina(second, "scan", str(out), "--json"))
    assert (plain["status"].get("skipped"), plain["new_images"]) == (n, 0)
    linked = json.loads(lamina(second, "scan", str(out), "--follow-links", "--json"))
    assert linked["new_images"] == n
    spec = tiny_open_clip(tmp_path / "clip")
    lamina(second, "embed", "--model", spec, "--workers", "1", "--offline")
    text = lamina(second, "train", "--labels", "folder", "--head", "logreg")
    for folder in folders:
        assert folder in text
    (row,) = json.loads(lamina(second, "experiments", "--json"))
    assert sorted(row["classes"]) == folders
    assert row["n_train"] + row["n_val"] + row["n_test"] == n
    assert row["model"] == spec
    store = Store.open(second)
    labels = store.sql("select label, count(*) as n from splits group by 1 order by 1")
    assert dict(zip(labels["label"].to_pylist(), labels["n"].to_pylist(), strict=True)) == {
        f: len(v) for f, v in exported.items()
    }
