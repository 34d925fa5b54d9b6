"""The set exports (`lamina export --format imagefolder | hf | webdataset | items-json |
fiftyone`) and `lamina import-approvals`: round trips through the tools that read them,
the shared selection, labels, split and output rule, the leak report, and bad input."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from lamina.core.store import Store
from lamina.exports.sets import folder_name, shards, unescape_folder_name
from tests.exports.sets_store import PHOTOS, SPLIT, build, ids_by_path, lamina


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Store, Path]:
    root = tmp_path_factory.mktemp("sets")
    src, store = build(root)
    return src, store, root


def export(store: Store, out: Path, fmt: str, *args: str, code: int = 0) -> dict:
    text = lamina(store.root, "export", "--format", fmt, "-o", str(out), "--json", *args, code=code)
    return json.loads(text) if code == 0 else {"output": text}


# -- the shared pieces --------------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    ["cat", "a/b", "..", ".", " x ", "con", "COM1.txt", "50%", "tab\there", "日本", 'q"<>|:*?\\'],
)
def test_folder_names_are_safe_and_reversible(label: str) -> None:
    name = folder_name(label)
    assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert not name.startswith((".", " ")) and not name.endswith((".", " "))
    assert all(ord(c) >= 32 for c in name)
    assert unescape_folder_name(name) == label


def test_shards_cut_by_count_and_size() -> None:
    assert shards([1] * 7, 3, 1e9) == [(0, 3), (3, 6), (6, 7)]
    assert shards([40, 40, 40], 100, 100) == [(0, 2), (2, 3)]
    assert shards([500, 1], 100, 100) == [(0, 1), (1, 2)]  # an item bigger than a shard


# -- imagefolder ----------------------------------------------------------------------------


def test_imagefolder_loads_in_torchvision_with_folder_labels(world, tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    src, store, _ = world
    s = export(store, tmp_path / "set", "imagefolder", "--label-from", "folder")
    ds = ImageFolder(str(tmp_path / "set"))
    assert ds.classes == ["cat", "coffee", "people", "space"]
    counts = {c: sum(1 for _, k in ds.samples if ds.classes[k] == c) for c in ds.classes}
    assert counts == {"cat": 2, "coffee": 1, "people": 2, "space": 2}  # the byte copy: once
    assert s["exported"] == 7 and s["selected"] == 7
    assert s["leaks"]["byte_copies_merged"] == 1
    # astronaut (space) and its near copy (people): one group, two labels
    assert s["leaks"]["label_conflicts"] == 1
    assert s["leaks"]["label_conflict_groups"][0]["labels"] == ["people", "space"]
    link = tmp_path / "set" / "cat" / "chelsea.jpg"
    assert link.is_symlink() and os.readlink(link) == str(src / "cat" / "chelsea.jpg")
    image, k = ds[0]
    assert image.size[0] > 0 and ds.classes[k] == "cat"
    marker = json.loads((tmp_path / "set" / "lamina-export.json").read_text())
    assert marker["format"] == "imagefolder" and marker["classes"]["people"] == 2


def test_imagefolder_approved_labels_escaped_and_left_out_listed(world, tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    _, store, _ = world
    ids = ids_by_path(store)
    s = export(store, tmp_path / "set", "imagefolder", "--label-from", "approved")
    ds = ImageFolder(str(tmp_path / "set"))
    assert ds.classes == ["cat", "person%2Fastronaut"]
    assert s["escaped_labels"] == {"person/astronaut": "person%2Fastronaut"}
    assert [unescape_folder_name(c) for c in ds.classes] == ["cat", "person/astronaut"]
    assert len(ds) == 3
    reasons = {x["image_id"]: x["reason"] for x in s["left_out"]}
    assert reasons[ids["space/rocket.jpg"]] == "several labels (approved): rocket, space"
    assert reasons[ids["people/camera.png"]] == "no label (approved)"
    assert s["left_out_by_reason"] == {"no label": 3, "several labels": 1}


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_imagefolder_copies_and_hard_links(world, tmp_path: Path, link: str) -> None:
    src, store, _ = world
    export(store, tmp_path / "set", "imagefolder", "--link", link)
    out = tmp_path / "set" / "space" / "rocket.jpg"
    original = src / "space" / "rocket.jpg"
    assert not out.is_symlink() and out.read_bytes() == original.read_bytes()
    same = os.stat(out).st_ino == os.stat(original).st_ino
    assert same is (link == "hardlink")


def test_imagefolder_split_one_per_group_and_leaks(world, tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    _, store, _ = world
    s = export(store, tmp_path / "all", "imagefolder", "--split")
    # astronaut (train) and its near copy (val): one pair across the split
    assert s["leaks"]["cross_split_pairs"] == 1
    assert sorted(os.listdir(tmp_path / "all")) == [
        "items.csv", "lamina-export.json", "test", "train", "val",
    ]  # fmt: skip
    assert s["splits"] == {"test": 1, "train": 4, "val": 2}
    s = export(store, tmp_path / "dedup", "imagefolder", "--split", "--one-per-group")
    assert s["leaks"]["cross_split_pairs"] == 0
    assert s["leaks"]["duplicates_dropped"] == 2
    train = ImageFolder(str(tmp_path / "dedup" / "train"))
    names = sorted(Path(p).name for p, _ in train.samples)
    assert names == ["astronaut.jpg", "chelsea.jpg", "rocket.jpg"]  # the larger copies kept
    assert len(ImageFolder(str(tmp_path / "dedup" / "val"))) == 1  # coffee


def test_imagefolder_counts_files_torchvision_would_skip(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    from tests.conftest import write_photo

    src = tmp_path / "photos"
    write_photo(src / "cat" / "a.jpg", 1)
    write_photo(src / "cat" / "b.gif", 2, fmt="GIF")
    lamina(tmp_path / "store", "scan", str(src))
    store = Store.open(tmp_path / "store")
    s = export(store, tmp_path / "set", "imagefolder")
    assert s["classes"] == {"cat": 2} and s["not_torchvision_suffixes"] == {".gif": 1}
    assert len(ImageFolder(str(tmp_path / "set"))) == 1
    out = lamina(store.root, "export", "--format", "imagefolder", "-o", str(tmp_path / "set"))
    assert "1 files have suffixes torchvision's ImageFolder skips (.gif)" in out


def test_prediction_labels_from_the_predictions_table(world, tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    _, store, _ = world
    export(store, tmp_path / "set", "imagefolder", "--label-from", "prediction:e1")
    ds = ImageFolder(str(tmp_path / "set"))
    assert ds.classes == ["cat", "coffee", "people", "space"]  # the best-scored label
    out = export(store, tmp_path / "x", "imagefolder", "--label-from", "prediction:e9", code=2)
    assert "no experiment 'e9'" in out["output"]


# -- hf -------------------------------------------------------------------------------------


def test_hf_round_trip_with_datasets(world, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    src, store, _ = world
    ids = ids_by_path(store)
    s = export(
        store, tmp_path / "hf", "hf", "--columns", "blurry,group_id,size", "--columns", "n_files",
        "--label-from", "folder", "--shard-size", "4",
    )  # fmt: skip
    assert s["rows"] == {"train": 7} and len(s["shards"]["train"]) == 2
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "hf" / "data"))["train"]
    assert ds.num_rows == 7
    assert ds.column_names == [
        "image", "image_id", "rel_path", "label", "labels", "split", "blurry", "group_id",
        "size", "n_files",
    ]  # fmt: skip
    assert isinstance(ds.features["image"], datasets.Image)
    raw = ds.cast_column("image", datasets.Image(decode=False))
    for row in raw:
        assert row["image"]["bytes"] == (src / row["rel_path"]).read_bytes()
        assert row["image_id"] == ids[row["rel_path"]]
        assert row["label"] == row["rel_path"].split("/")[0]
    by_rel = {r["rel_path"]: r for r in ds}
    assert by_rel["coffee/coffee.jpg"]["n_files"] == 2
    assert by_rel["space/rocket.jpg"]["size"] == (src / "space" / "rocket.jpg").stat().st_size
    assert by_rel["people/camera.png"]["group_id"] is None
    picture = by_rel["cat/chelsea.jpg"]["image"]
    assert picture.size == Image.open(src / "cat" / "chelsea.jpg").size


def test_hf_paths_and_split_names(world, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    src, store, _ = world
    s = export(store, tmp_path / "hf", "hf", "--image", "paths", "--split")
    assert s["rows"] == {"test": 1, "train": 4, "val": 2}
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "hf" / "data"))
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 4, "validation": 2, "test": 1}
    row = ds["test"].cast_column("image", datasets.Image(decode=False))[0]
    assert row["image"] == {"bytes": None, "path": str(src / "people" / "camera.png")}
    assert ds["test"][0]["image"].size == (128, 128)


def test_embedding_column_needs_embeddings(world, tmp_path: Path) -> None:
    _, store, _ = world
    out = export(store, tmp_path / "hf", "hf", "--columns", "embedding", code=2)
    assert "no embeddings yet" in out["output"] and "lamina embed" in out["output"]
    out = export(store, tmp_path / "hf", "hf", "--columns", "nope", code=2)
    assert "unknown --columns nope" in out["output"]
    assert not (tmp_path / "hf").exists()


def test_hf_embedding_column_holds_the_stored_float16_vectors(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lamina.core.store import atomic_write_parquet
    from lamina.core.vectors import embed_schema

    _, store = build(tmp_path, sense=False)
    ids = sorted(set(ids_by_path(store).values()))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(ids), 4))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)
    rows = {
        "image_id": ids,
        "model": ["test:model"] * len(ids),
        "vector": [v.tolist() for v in vectors],
        "error": [None] * len(ids),
    }
    part = store.layer_dir("embed", "1-test") / "part-global.parquet"
    atomic_write_parquet(part, pa.Table.from_pydict(rows, schema=embed_schema(4)))
    export(store, tmp_path / "hf", "hf", "--columns", "embedding")
    (shard,) = (tmp_path / "hf" / "data").glob("*.parquet")
    table = pq.read_table(shard)
    assert table.schema.field("embedding").type == pa.list_(pa.float16())
    got = dict(zip(table["image_id"].to_pylist(), table["embedding"].to_pylist(), strict=True))
    for image_id, vector in zip(ids, vectors, strict=True):
        # stored as float16, read back L2-normalised (one float16 step at most)
        assert np.allclose(np.array(got[image_id], np.float32), vector, atol=1e-3)


# -- webdataset -----------------------------------------------------------------------------


def _samples(folder: Path) -> list[dict]:
    import webdataset as wds

    urls = sorted(str(p) for p in folder.glob("*.tar"))
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


def test_webdataset_round_trip_shards_and_seed(world, tmp_path: Path) -> None:
    pytest.importorskip("webdataset")
    src, store, _ = world
    ids = ids_by_path(store)
    s = export(store, tmp_path / "a", "webdataset", "--shard-size", "3", "--label-from", "folder")
    assert s["samples"] == {"train": 7}
    assert s["shards"]["train"] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    samples = _samples(tmp_path / "a")
    assert len(samples) == 7
    rel = {v: k for k, v in ids.items() if k != "coffee/coffee_copy.jpg"}
    for sample in samples:
        meta = json.loads(sample["json"])
        assert sample["__key__"] == meta["image_id"]
        path = src / rel[meta["image_id"]]
        ext = "png" if path.suffix == ".png" else "jpg"
        assert sample[ext] == path.read_bytes()
        assert meta["label"] == meta["rel_path"].split("/")[0]
    order = [json.loads(x["json"])["rel_path"] for x in samples]
    again = export(store, tmp_path / "b", "webdataset", "--shard-size", "3")
    assert again["samples"] == {"train": 7}
    assert [json.loads(x["json"])["rel_path"] for x in _samples(tmp_path / "b")] == order
    for shard in ("train-000000.tar", "train-000002.tar"):  # the same bytes
        assert (tmp_path / "a" / shard).read_bytes() != b""
    export(store, tmp_path / "c", "webdataset", "--shard-size", "3", "--seed", "5")
    other = [json.loads(x["json"])["rel_path"] for x in _samples(tmp_path / "c")]
    assert sorted(other) == sorted(order) and other != order
    export(store, tmp_path / "d", "webdataset", "--no-shuffle")
    with tarfile.open(tmp_path / "d" / "train-000000.tar") as tar:
        names = tar.getnames()
        first = json.load(io.BytesIO(tar.extractfile(names[1]).read()))
    assert first["rel_path"] == "cat/chelsea.jpg"  # the selection's order: source, path


# -- items-json -----------------------------------------------------------------------------


def test_items_json_validate_against_the_shipped_schema(world, tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from lamina.exports.items_json import schema

    _, store, _ = world
    ids = ids_by_path(store)
    s = export(store, tmp_path / "items", "items-json", "--split", "--label-from", "approved",
               "--columns", "blurry")  # fmt: skip
    assert s["files"] == 7
    files = sorted(
        p for p in (tmp_path / "items").rglob("*.json") if p.name != "lamina-export.json"
    )
    assert [p.relative_to(tmp_path / "items").as_posix() for p in files] == sorted(
        f"{r}.json" for r in PHOTOS
    )
    validator = jsonschema.Draft202012Validator(schema())
    for path in files:
        validator.validate(json.loads(path.read_text()))
    item = json.loads((tmp_path / "items" / "cat" / "chelsea_small.jpg.json").read_text())
    assert item["image_id"] == ids["cat/chelsea_small.jpg"]
    assert item["label"] == "cat" and item["split"] == SPLIT["cat/chelsea_small.jpg"]
    assert item["duplicates"]["is_representative"] is False
    assert item["columns"] == {"blurry": item["flags"]["blurry"]}
    passes = {p["pass"] for p in item["provenance"]}
    assert {"scan", "signals", "flags", "duplicates"} <= passes
    assert all(p["run_id"] for p in item["provenance"])
    coffee = json.loads((tmp_path / "items" / "coffee" / "coffee.jpg.json").read_text())
    assert len(coffee["files"]) == 2 and coffee["duplicates"] is not None
    bad = dict(item, image_id="not-an-id")
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)


# -- fiftyone -------------------------------------------------------------------------------


def test_fiftyone_samples_and_bridge(world, tmp_path: Path) -> None:
    from lamina.exports.fiftyone import read_samples

    src, store, _ = world
    s = export(store, tmp_path / "fo", "fiftyone", "--label-from", "folder")
    assert s["samples"] == 7 and s["classes"] == ["cat", "coffee", "people", "space"]
    doc = read_samples(tmp_path / "fo")
    by_path = {x["filepath"]: x for x in doc["samples"]}
    chelsea = by_path[str(src / "cat" / "chelsea.jpg")]
    assert chelsea["tags"] == ["cat"] and chelsea["ground_truth"] == "cat"
    assert chelsea["is_representative"] is True and chelsea["duplicate_group"]
    fo = pytest.importorskip(
        "fiftyone", reason="fiftyone is not installed (no extra: it needs MongoDB; see README)"
    )
    from lamina.exports.fiftyone import load

    ds = load(tmp_path / "fo")
    assert len(ds) == 7 and ds.count_values("ground_truth.label")["cat"] == 2
    del fo
    from lamina.jobs.import_approvals import import_fiftyone_tags

    sample = ds[str(src / "people" / "camera.png")]
    sample.tags = ["Camera"]
    sample.save()
    diff = import_fiftyone_tags(store, ds)  # the diff only: the shared store stays as it is
    assert [(c["path"], c["after"]) for c in diff.changes] == [
        (str(src / "people" / "camera.png"), ["camera"])
    ]
    assert diff.applied == 0


# -- bad input and the output rule ----------------------------------------------------------


def test_zero_images_selected_writes_nothing(world, tmp_path: Path) -> None:
    _, store, _ = world
    out = export(store, tmp_path / "set", "hf", "--where", "false", code=2)
    assert "no image selected: nothing written" in out["output"]
    out = export(store, tmp_path / "set", "imagefolder", "--label-from", "approved",
                 "--where", "rel_path like 'people/%'", code=2)  # fmt: skip
    assert "no image left to export" in out["output"] and "2 no label" in out["output"]
    assert not (tmp_path / "set").exists()
    assert not [p for p in tmp_path.iterdir() if "lamina" in p.name]  # no staging left


def test_output_folder_rule(world, tmp_path: Path) -> None:
    src, store, _ = world
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    out = export(store, busy, "webdataset", code=2)
    assert "is not empty" in out["output"] and "--force" in out["output"]
    export(store, busy, "webdataset", "--force")
    assert (busy / "mine.txt").read_text() == "keep me" and (busy / "train-000000.tar").exists()
    # a previous export is lamina's own: replaced whole, without --force
    export(store, tmp_path / "set", "webdataset", "--shard-size", "2")
    assert len(list((tmp_path / "set").glob("*.tar"))) == 4
    export(store, tmp_path / "set", "webdataset")
    assert len(list((tmp_path / "set").glob("*.tar"))) == 1
    out = export(store, src / "out", "hf", code=2)
    assert "inside the source" in out["output"]
    out = export(store, src.parent, "hf", "--force", code=2)
    assert "holds the source" in out["output"]
    out = export(store, store.root / "set", "hf", code=2)
    assert "inside the store" in out["output"]


def test_missing_files_listed_and_export_goes_on(tmp_path: Path) -> None:
    src, store = build(tmp_path, sense=False)
    data = (src / "space" / "rocket.jpg").read_bytes()
    (src / "space" / "cut.jpg").write_bytes(data[: len(data) // 3])
    lamina(store.root, "scan", str(src))
    (src / "space" / "rocket.jpg").unlink()
    s = export(store, tmp_path / "set", "imagefolder")
    assert s["exported"] == 6
    assert sorted((x["path"], x["reason"]) for x in s["left_out"]) == [
        (str(src / "space" / "cut.jpg"), "broken: truncated"),
        (str(src / "space" / "rocket.jpg"), "missing on disk"),
    ]
    assert s["left_out_by_reason"] == {"broken": 1, "missing on disk": 1}
    assert s["leaks"]["label_conflicts"] is None and "lamina sense" in s["leaks"]["note"]
    s = export(store, tmp_path / "split", "hf", "--split")  # cut.jpg: not in it either
    assert sorted(x["reason"] for x in s["left_out"]) == ["broken: truncated", "missing on disk"]
    s = export(store, tmp_path / "items", "items-json")  # keeps what does not decode
    assert s["exported"] == 7 and (tmp_path / "items" / "space" / "cut.jpg.json").exists()
    out = export(store, tmp_path / "x", "hf", "--one-per-group", code=2)
    assert "lamina sense" in out["output"]


def test_split_and_predictions_need_their_tables(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    from tests.exports.sets_store import write_photos

    write_photos(src)
    lamina(tmp_path / "store", "scan", str(src))
    store = Store.open(tmp_path / "store")
    out = export(store, tmp_path / "set", "imagefolder", "--split", code=2)
    assert "no splits table" in out["output"] and "lamina train" in out["output"]
    out = export(store, tmp_path / "set", "hf", "--label-from", "prediction", code=2)
    assert "no predictions table" in out["output"] and "lamina predict" in out["output"]
    out = export(store, tmp_path / "set", "hf", "--label-from", "top2", code=2)
    assert "unknown --label-from 'top2'" in out["output"]
    out = lamina(store.root, "export", "-o", "t.csv", "--where", "true", code=2)
    assert "apply to the set formats" in out
    assert not (tmp_path / "set").exists()


# -- import-approvals -----------------------------------------------------------------------


def test_import_approvals_from_an_edited_csv(tmp_path: Path) -> None:
    import csv

    src, store = build(tmp_path, sense=False)
    ids = ids_by_path(store)
    lamina(store.root, "export", "-o", str(tmp_path / "tags.csv"))
    with open(tmp_path / "tags.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["rel_path"] == "people/camera.png":
            row["approved_labels"] = "Camera|man"
        elif row["rel_path"] == "cat/chelsea.jpg":
            row["approved_labels"] = ""
    rows.append(dict(rows[0], path="/nowhere/x.jpg", rel_path="nowhere/x.jpg"))
    with open(tmp_path / "edited.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = lamina(store.root, "import-approvals", str(tmp_path / "edited.csv"))
    assert f"{src / 'people' / 'camera.png'}: '+camera' '+man'" in out
    assert f"{src / 'cat' / 'chelsea.jpg'}: '-cat'" in out
    assert "9 rows: 2 changes, 5 unchanged, 1 matching no file" in out
    assert "nothing recorded" in out
    before = store.sql("select count(*) n from approvals")["n"][0].as_py()
    r = json.loads(lamina(store.root, "import-approvals", str(tmp_path / "edited.csv"),
                          "--yes", "--who", "ana", "--json"))  # fmt: skip
    assert r["applied"] == 2 and r["unmatched"] == ["/nowhere/x.jpg"]
    from lamina.tagging.approvals import current_approvals

    now = {x["image_id"]: x["approved_labels"] for x in current_approvals(store).to_pylist()}
    assert now[ids["people/camera.png"]] == ["camera", "man"]
    assert now[ids["cat/chelsea.jpg"]] == []
    assert store.sql("select count(*) n from approvals")["n"][0].as_py() == before + 2
    again = json.loads(
        lamina(store.root, "import-approvals", str(tmp_path / "edited.csv"), "--json")
    )
    assert again["changes"] == []


def _edit_samples(folder: Path, edit) -> None:
    doc = json.loads((folder / "samples.json").read_text())
    edit(doc["samples"])
    (folder / "samples.json").write_text(json.dumps(doc))


def test_import_approvals_from_a_fiftyone_export(tmp_path: Path) -> None:
    from lamina.tagging.approvals import current_approvals

    src, store = build(tmp_path, sense=False)
    ids = ids_by_path(store)
    fo_dir = tmp_path / "fo"
    lamina(store.root, "export", "--format", "fiftyone", "-o", str(fo_dir),
           "--label-from", "folder")  # fmt: skip

    def edit(samples: list[dict]) -> None:
        for s in samples:
            if s["filepath"].endswith("camera.png"):
                s["tags"] = ["Camera", "man"]
            elif s["filepath"].endswith("chelsea.jpg"):
                s["tags"] = []
            elif s["filepath"].endswith("rocket.jpg"):  # moved: still its image_id
                s["filepath"] = "/elsewhere/rocket.jpg"
                s["tags"] = ["rocket"]
        samples.append(dict(samples[0], filepath="/nowhere/x.jpg", image_id="0" * 32))

    _edit_samples(fo_dir, edit)
    out = lamina(store.root, "import-approvals", "--from-fiftyone", str(fo_dir))
    assert f"{src / 'people' / 'camera.png'}: '+camera' '+man'" in out
    assert f"{src / 'cat' / 'chelsea.jpg'}: '-cat'" in out
    assert "/elsewhere/rocket.jpg: '-space'" in out
    assert "8 rows: 3 changes, 4 unchanged, 1 matching no file" in out
    assert "nothing recorded" in out
    r = json.loads(lamina(store.root, "import-approvals", "--from-fiftyone", str(fo_dir),
                          "--yes", "--who", "ana", "--json"))  # fmt: skip
    assert r["applied"] == 3 and r["unmatched"] == ["/nowhere/x.jpg"]
    now = {x["image_id"]: x["approved_labels"] for x in current_approvals(store).to_pylist()}
    assert now[ids["people/camera.png"]] == ["camera", "man"]
    assert now[ids["cat/chelsea.jpg"]] == []
    assert now[ids["space/rocket.jpg"]] == ["rocket"]
    assert now[ids["cat/chelsea_small.jpg"]] == ["cat"]  # untouched
    again = json.loads(
        lamina(store.root, "import-approvals", "--from-fiftyone", str(fo_dir), "--json")
    )
    assert again["changes"] == []
    # a label field instead of the tags: the export's ground_truth (the folder labels)
    by_field = json.loads(lamina(store.root, "import-approvals", "--from-fiftyone", str(fo_dir),
                                 "--fiftyone-field", "ground_truth", "--json"))  # fmt: skip
    after = {c["image_id"]: c["after"] for c in by_field["changes"]}
    assert after[ids["people/camera.png"]] == ["people"]
    assert after[ids["space/rocket.jpg"]] == ["space"]
    assert ids["cat/chelsea_small.jpg"] not in after  # already ["cat"]


def test_import_approvals_from_a_fiftyone_dataset_export(tmp_path: Path) -> None:
    """The folder FiftyOne's own FiftyOneDataset exporter writes (media copied under
    data/, filepaths relative to the folder, labels as `_cls` documents), read without
    fiftyone: the copied files match by content."""
    src, store = build(tmp_path, sense=False)
    ids = ids_by_path(store)
    fo_dir = tmp_path / "fo_native"
    (fo_dir / "data").mkdir(parents=True)
    (fo_dir / "data" / "camera.png").write_bytes((src / "people" / "camera.png").read_bytes())
    (fo_dir / "data" / "coffee.jpg").write_bytes((src / "coffee" / "coffee.jpg").read_bytes())
    (fo_dir / "data" / "other.jpg").write_bytes(b"not in the store")

    def sample(name: str, tags: list[str], label: dict | None) -> dict:
        return {"_id": {"$oid": "66" + "0" * 22}, "filepath": f"data/{name}", "tags": tags,
                "_media_type": "image", "metadata": None, "ground_truth": label}  # fmt: skip

    cls = {"_id": {"$oid": "67" + "0" * 22}, "_cls": "Classifications", "classifications": [
        {"_id": {"$oid": "68" + "0" * 22}, "_cls": "Classification", "tags": [],
         "label": "gadget", "confidence": 0.9}]}  # fmt: skip
    doc = {"samples": [sample("camera.png", ["gadget"], cls), sample("coffee.jpg", [], None),
                       sample("other.jpg", ["x"], None)]}  # fmt: skip
    (fo_dir / "samples.json").write_text(json.dumps(doc))
    (fo_dir / "metadata.json").write_text(json.dumps({"name": "photos", "version": "1.22.1"}))
    r = json.loads(lamina(store.root, "import-approvals", "--from-fiftyone", str(fo_dir),
                          "--fiftyone-field", "ground_truth", "--json"))  # fmt: skip
    assert [(c["image_id"], c["after"]) for c in r["changes"]] == [
        (ids["people/camera.png"], ["gadget"])
    ]
    assert r["unchanged"] == 1 and r["unmatched"] == [str(fo_dir / "data" / "other.jpg")]
    # use_dirs=True: one JSON file per sample under samples/
    (fo_dir / "samples").mkdir()
    for n, s in enumerate(doc["samples"]):
        (fo_dir / "samples" / f"{n:06d}-x.json").write_text(json.dumps(s))
    (fo_dir / "samples.json").unlink()
    again = json.loads(lamina(store.root, "import-approvals", "--from-fiftyone", str(fo_dir),
                              "--fiftyone-field", "ground_truth", "--json"))  # fmt: skip
    assert again == r


def test_import_approvals_bad_fiftyone_input(world, tmp_path: Path) -> None:
    _, store, _ = world
    (tmp_path / "empty").mkdir()
    out = lamina(store.root, "import-approvals", "--from-fiftyone", str(tmp_path / "empty"),
                 code=2)  # fmt: skip
    assert f"cannot read {tmp_path / 'empty' / 'samples.json'}" in out
    out = lamina(store.root, "import-approvals", code=2)
    assert "a CSV or --from-fiftyone, one of the two" in out
    out = lamina(store.root, "import-approvals", "--from-fiftyone", str(tmp_path / "nope"),
                 code=2)  # fmt: skip
    assert "is not a folder" in out
    (tmp_path / "fo").mkdir()
    (tmp_path / "fo" / "samples.json").write_text('{"samples": [{"filepath": "/a.jpg"}]}')
    out = lamina(store.root, "import-approvals", "--from-fiftyone", str(tmp_path / "fo"),
                 "--fiftyone-field", "label", code=2)  # fmt: skip
    assert "no sample in" in out and "has a field 'label'" in out
    try:
        import fiftyone  # noqa: F401
    except ImportError:
        out = lamina(store.root, "import-approvals", "--from-fiftyone", "photos", code=2)
        assert "reading a FiftyOne dataset by name needs fiftyone" in out
