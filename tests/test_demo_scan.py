"""End to end: scanning the sample collection reproduces its ground truth."""

from __future__ import annotations

import pytest

from lamina.core.store import Store
from lamina.passes.scan import scan
from lamina.sample import build_sample_collection


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Store, dict]:
    root = tmp_path_factory.mktemp("demo")
    truth = build_sample_collection(root / "collection")
    store = Store.open(root / "store", create=True)
    summary = scan(store, [root / "collection"], workers=2, progress=False)
    return truth, store, summary


def test_every_file_gets_its_true_status(scanned: tuple[dict, Store, dict]) -> None:
    truth, store, summary = scanned
    files = {r["rel_path"]: r for r in store.table("files").to_pylist()}
    assert set(files) == set(truth)
    for path, expected in truth.items():
        got = (files[path]["status"], files[path]["reason"])
        if expected["found_by"] == "decode":
            # Damage inside pixel data: the header is intact, so the manifest says ok.
            assert got == ("ok", None), path
        else:
            assert got == (expected["status"], expected["reason"]), path
    assert summary["failed_chunks"] == 0


def test_formats_and_facts_from_headers(scanned: tuple[dict, Store, dict]) -> None:
    _, store, _ = scanned
    formats = {r["format"] for r in store.table("images").to_pylist()}
    assert {"JPEG", "PNG", "TIFF", "WEBP", "GIF", "BMP", "HEIF"} <= formats
    tiff16 = store.sql(
        "select i.bit_depth, i.frames from files f join images i using (image_id) "
        "where f.rel_path like 'variants/tiff16/%' limit 1").to_pylist()[0]
    assert tiff16["bit_depth"] == 16
    multipage = store.sql(
        "select distinct i.frames from files f join images i using (image_id) "
        "where f.rel_path like 'variants/tiff_pages/%'").to_pylist()
    assert multipage == [{"frames": 3}]
    phone = store.sql(
        "select i.camera_make, i.orientation from files f join images i using (image_id) "
        "where f.rel_path like 'phone/%' and f.status = 'ok' order by f.rel_path").to_pylist()
    assert phone and all(p["camera_make"] == "Apple" for p in phone)
    assert {p["orientation"] for p in phone} >= {6, 8}


def test_byte_copies_share_one_image(scanned: tuple[dict, Store, dict]) -> None:
    truth, store, _ = scanned
    files = {r["rel_path"]: r for r in store.table("files").to_pylist()}
    kinds = ("copy", "copy_renamed", "copy_other_class")
    copies = [(p, t["original"]) for p, t in truth.items() if t["kind"] in kinds]
    assert copies
    for path, original in copies:
        assert files[path]["image_id"] == files[original]["image_id"], path
