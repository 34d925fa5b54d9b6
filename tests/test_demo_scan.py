"""End to end: scanning the sample collection reproduces its ground truth."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.sample import build_sample_collection


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Store, dict]:
    root = tmp_path_factory.mktemp("demo")
    truth = build_sample_collection(root / "collection")
    store = Store.open(root / "store", create=True)
    summary = scan_sources(store, [root / "collection"], workers=2, progress=False)
    return truth, store, summary


def test_every_file_gets_its_true_status(scanned: tuple[dict, Store, dict]) -> None:
    truth, store, summary = scanned
    # What the scan itself wrote (the views add what decoding finds: see the last test).
    table = pq.read_table(store.table_dir("files") / "files.parquet")
    files = {r["rel_path"]: r for r in table.to_pylist()}
    assert set(files) == set(truth)
    for path, expected in truth.items():
        got = (files[path]["status"], files[path]["reason"])
        if expected["found_by"] == "decode":
            # Damage inside pixel data: the header is intact, so the scan says ok.
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
        "where f.rel_path like 'variants/tiff16/%' limit 1"
    ).to_pylist()[0]
    assert tiff16["bit_depth"] == 16
    multipage = store.sql(
        "select distinct i.frames from files f join images i using (image_id) "
        "where f.rel_path like 'variants/tiff_pages/%'"
    ).to_pylist()
    assert multipage == [{"frames": 3}]
    phone = store.sql(
        "select i.camera_make, i.orientation from files f join images i using (image_id) "
        "where f.rel_path like 'phone/%' and f.status = 'ok' order by f.rel_path"
    ).to_pylist()
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


@pytest.fixture(scope="module")
def sensed(scanned: tuple[dict, Store, dict]) -> tuple[dict, dict[str, dict]]:
    """`lamina sense --invariant` on the scanned sample: per file, its flags and group."""
    from lamina.analysis.flags import flags_config, load_policy
    from lamina.core.runner import run_passes

    truth, store, _ = scanned
    run_passes(
        store,
        [
            ("signals", None),
            ("hashes", None),
            ("duplicates", {"invariant": True}),
            ("flags", flags_config(load_policy(None))),
        ],
        workers=2,
        progress=False,
    )
    rows = store.sql(
        "select f.rel_path, fl.flags, d.group_id from files f "
        "join flags fl using (image_id) left join duplicates d using (image_id)"
    ).to_pylist()
    return truth, {r["rel_path"]: r for r in rows}


def test_sense_finds_the_sample_defects(sensed: tuple[dict, dict[str, dict]]) -> None:
    truth, rows = sensed
    by_kind: dict[str, list[str]] = {}
    for path, t in truth.items():
        if path in rows:
            by_kind.setdefault(t["kind"], []).append(path)
    # Damage inside the pixel data passes the header scan and is caught by the decode.
    assert all("junk" in rows[p]["flags"] for p in by_kind["corrupt"])
    dark = [p for p in by_kind["dark"] if "dark" in rows[p]["flags"]]
    assert dark == by_kind["dark"]
    # A Gaussian blur of sigma 3 blurs every photo, but textures (brick, gravel) and
    # already-soft photos (retina) stay under the default threshold: measured 9 of 14.
    blurry = [p for p in by_kind["blur"] if "blurry" in rows[p]["flags"]]
    assert len(blurry) >= 9, sorted(set(by_kind["blur"]) - set(blurry))
    # Their well-exposed, sharp originals are neither. (Some sample originals are dark or
    # soft by nature: the Hubble deep field, the defocused clock, smooth graphics.)
    sharp = ("chelsea", "coffee", "astronaut", "rocket", "china", "flower", "coins", "grass")
    photos = [p for p in by_kind["photo"] if Path(p).stem in sharp]
    assert len(photos) == len(sharp)
    assert not any({"dark", "blurry"} & set(rows[p]["flags"]) for p in photos)


def test_sense_groups_copies_with_their_original(sensed: tuple[dict, dict[str, dict]]) -> None:
    truth, rows = sensed
    kinds = ("jpeg_q30", "resize50", "png", "webp", "bmp", "tiff16", "heic", "flip", "rot90")
    for kind in kinds:
        pairs = [(p, t["original"]) for p, t in truth.items() if t["kind"] == kind]
        assert pairs, kind
        apart = [p for p, o in pairs if rows[p]["group_id"] != rows[o]["group_id"] or
                 rows[p]["group_id"] is None]  # fmt: skip
        assert not apart, (kind, apart)
    # Different photos never share a group; the motorcycle stereo pair (two views a few
    # pixels apart) is one picture to a 64-bit hash, as analysis/duplicates.py documents.
    originals = [
        p for p, t in truth.items() if t["kind"] == "photo" and "motorcycle_right" not in p
    ]
    groups = [rows[p]["group_id"] for p in originals if rows[p]["group_id"] is not None]
    assert len(groups) == len(set(groups))


def test_undecodable_files_are_broken_and_every_count_agrees(
    scanned: tuple[dict, Store, dict], sensed: tuple[dict, dict[str, dict]]
) -> None:
    from lamina.jobs.sense import sensed_line
    from lamina.manifest.status import store_status
    from lamina.report.context import open_context
    from lamina.report.data import overview

    truth, store, _ = scanned
    files = {r["rel_path"]: r for r in store.table("files").to_pylist()}
    decoded = [p for p, t in truth.items() if t["found_by"] == "decode"]
    assert sorted(decoded) == ["messy/corrupt.jpg", "messy/corrupt.png"]
    for path in decoded:  # now that a pass decoded them, the manifest says so
        got = (files[path]["status"], files[path]["reason"])
        assert got == (truth[path]["status"], truth[path]["reason"]) == ("broken", "undecodable")
        assert files[path]["detail"]  # the decoder's message
    broken = sum(1 for t in truth.values() if t["status"] == "broken")
    assert broken == 5  # truncated x2, unknown content, undecodable x2
    assert store_status(store)["files"]["by_status"]["broken"] == broken
    assert store_status(store)["images"]["by_status"]["broken"] == broken
    rows = overview(open_context(store)).data["by_status"]
    assert {r["status"]: r["n"] for r in rows}["broken"] == broken
    recipe = store.sql("select status from files where status <> 'ok'")["status"].to_pylist()
    assert recipe.count("broken") == broken
    line = sensed_line(store, {"processed": 0, "already_done": 246})
    assert f"{broken} broken files (2 undecodable" in line
