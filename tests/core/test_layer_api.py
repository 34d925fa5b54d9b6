"""The store's layer API: layers listed with their run records, a layer chosen by pass,
version and config, the current layer named by a pointer (not by file times), older
stores without pointers, and stores written by a newer lamina."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.core.errors import StoreError
from lamina.core.ledger import Run
from lamina.core.passes import REGISTRY, Pass, register
from lamina.core.runner import run_global_pass, run_map_pass
from lamina.core.store import SCHEMA_VERSION, Store


@dataclass(frozen=True)
class ScaleConfig:
    factor: int = 2


class Scale(Pass):
    """A toy map pass: y = x * factor."""

    name = "scale_test"
    version = "1"
    Config = ScaleConfig
    schema = pa.schema([("image_id", pa.string()), ("y", pa.int64())])

    def process(self, batch: pa.Table) -> pa.Table:
        ys = [x * self.config.factor for x in batch["x"].to_pylist()]
        return pa.table({"image_id": batch["image_id"], "y": ys})


class Total(Pass):
    """A toy global pass: one row, the sum of the current scale layer times `factor`."""

    name = "total_test"
    version = "1"
    kind = "global"
    Config = ScaleConfig
    reads = ("scale_test",)
    schema = pa.schema([("image_id", pa.string()), ("total", pa.int64())])

    def compute(self, store: Store) -> pa.Table:
        y = store.table("scale_test")["y"].to_pylist()
        return pa.table({"image_id": ["all"], "total": [sum(y) * self.config.factor]})


@pytest.fixture(autouse=True)
def registered() -> None:
    register(Scale)
    register(Total)
    yield
    REGISTRY.pop(Scale.name, None)
    REGISTRY.pop(Total.name, None)


def inputs(n: int = 4) -> pa.Table:
    return pa.table({"image_id": [f"id{i}" for i in range(n)], "x": list(range(n))})


def run_scale(store: Store, factor: int) -> str:
    with Run(store, "test", {"passes": {"scale_test": {"config": {"factor": factor}}}}) as run:
        p = Scale({"factor": factor})
        run_map_pass(store, p, inputs(), run, workers=1, progress=False)
    return p.layer_id


def ys(store: Store) -> list[int]:
    return store.table("scale_test").sort_by("image_id")["y"].to_pylist()


def test_current_is_the_layer_the_last_run_asked_for_not_the_newest_file(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "s", create=True)
    first = run_scale(store, 2)
    second = run_scale(store, 3)
    assert ys(store) == [0, 3, 6, 9]
    # Back to the first config: nothing to compute, but it is what the user asked for.
    assert run_scale(store, 2) == first
    assert ys(store) == [0, 2, 4, 6]
    # Touching the other layer's part (a backup tool, a copy) changes nothing.
    part = next(store.layer_dir("scale_test", second).glob("part-*.parquet"))
    os.utime(part, ns=(2**62, 2**62))
    assert ys(store) == [0, 2, 4, 6]
    assert json.loads((store.root / "current" / "scale_test.json").read_text())["layer"] == first


def test_a_copied_store_gives_the_same_answer(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    first = run_scale(store, 2)
    run_scale(store, 3)
    run_scale(store, 2)
    with Run(store, "test", {}) as run:
        run_global_pass(store, Total(), run)
    # `cp -r` without -p: every file gets a new time, in whatever order it copies them.
    shutil.copytree(store.root, tmp_path / "copy", copy_function=shutil.copy)
    copy = Store.open(tmp_path / "copy")
    for k, part in enumerate(sorted((copy.root / "layers").rglob("*.parquet"), reverse=True)):
        os.utime(part, ns=(10**18 + k, 10**18 + k))  # the first layer now looks oldest
    assert copy.current_layer_dir("scale_test").name == first
    assert store.table("scale_test").equals(copy.table("scale_test"))
    assert copy.table("total_test")["total"].to_pylist() == [24]


def test_a_store_without_pointers_opens_and_answers_as_before(tmp_path: Path) -> None:
    """A format-1 store, as lamina wrote it before pointers: lamina.toml says 1, no
    `current/`, and the current layer is the one whose part was written last."""
    root = tmp_path / "old"
    (root / "tables").mkdir(parents=True)
    (root / "lamina.toml").write_text("schema_version = 1\nchunk_size = 1024\n")
    for k, layer in enumerate(["1-aaaaaaaa", "1-bbbbbbbb"]):
        folder = root / "layers" / "total_test" / layer
        folder.mkdir(parents=True)
        table = pa.table({"image_id": ["all"], "total": [100 + k]})
        pq.write_table(table, folder / "part-global.parquet")
        ledger = root / "ledger" / "total_test" / layer
        ledger.mkdir(parents=True)
        (ledger / "global.json").write_text(json.dumps({"rows": 1, "run_id": f"r{k}"}))
        os.utime(folder / "part-global.parquet", ns=(10**18 * (2 - k), 10**18 * (2 - k)))
    store = Store.open(root)
    assert store.schema_version == 1
    # 1-aaaaaaaa's part is the newer by file time: the old rule picks it.
    assert store.table("total_test")["total"].to_pylist() == [100]
    infos = store.layers("total_test")
    assert [(i.layer_id, i.current, i.rows, i.run_id) for i in infos] == [
        ("1-bbbbbbbb", False, 1, "r1"),
        ("1-aaaaaaaa", True, 1, "r0"),
    ]
    assert not (root / "current").exists()  # opening writes nothing


def test_layers_list_what_wrote_them(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    first = run_scale(store, 2)
    second = run_scale(store, 3)
    infos = store.layers("scale_test")
    assert [i.layer_id for i in infos] == [first, second]
    last = infos[-1]
    assert (last.pass_name, last.version, last.rows, last.current) == ("scale_test", "1", 4, True)
    assert last.config_hash == Scale({"factor": 3}).config_hash
    assert last.config == {"factor": 3}
    assert last.run_id is not None and last.written is not None
    assert last.path == store.layer_dir("scale_test", second)
    assert not infos[0].current
    assert {i.pass_name for i in store.layers()} == {"scale_test"}


def test_a_layer_by_version_and_config(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    first = run_scale(store, 2)
    run_scale(store, 3)
    assert store.layer("scale_test").config == {"factor": 3}
    by_config = store.layer("scale_test", config={"factor": 2})
    assert (by_config.layer_id, by_config.current) == (first, False)
    assert store.layer("scale_test", config=first.split("-")[1]).layer_id == first
    table = store.read_layer("scale_test", config={"factor": 2}).sort_by("image_id")
    assert table["y"].to_pylist() == [0, 2, 4, 6]
    assert store.layer("scale_test", version="1").current


def test_unknown_pass_version_or_config_lists_what_exists(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    first = run_scale(store, 2)
    with pytest.raises(StoreError, match=r"no layer of the pass 'nope' \(passes with layers: "
                       r"scale_test\)"):  # fmt: skip
        store.layer("nope")
    with pytest.raises(StoreError, match=r"at version '7' \(versions: 1\)"):
        store.layer("scale_test", version="7")
    with pytest.raises(StoreError, match=rf"no layer 1-\w+ of 'scale_test' \(layers: {first}\)"):
        store.layer("scale_test", config={"factor": 5})
    with pytest.raises(StoreError, match="passes with layers: scale_test"):
        store.layers("nope")


def test_a_store_from_a_newer_lamina_is_refused_naming_both_versions(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    assert store.schema_version == SCHEMA_VERSION
    newer = SCHEMA_VERSION + 1
    (store.root / "lamina.toml").write_text(f"schema_version = {newer}\nchunk_size = 1024\n")
    with pytest.raises(StoreError) as info:
        Store.open(store.root)
    message = str(info.value)
    assert f"format (schema_version) {newer}" in message
    assert f"formats up to {SCHEMA_VERSION}" in message
    assert "upgrade lamina" in message


def test_file_path_macro_joins_source_and_rel_path(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    got = (
        store.connect(sandbox=True).execute("select file_path('/photos', 'cats/a.jpg')").fetchone()
    )
    assert got == ("/photos/cats/a.jpg",)
