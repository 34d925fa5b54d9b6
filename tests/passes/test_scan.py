from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from lamina.core.errors import SourceError, StoreError
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.passes import scan as scan_module
from lamina.passes import scan_listing
from tests.conftest import write_photo


def files_by_path(store: Store) -> dict[str, dict]:
    return {r["rel_path"]: r for r in store.table("files").to_pylist()}


def run_scan(store: Store, *sources: Path, workers: int = 1) -> dict:
    return scan_sources(store, list(sources), workers=workers, progress=False)


def test_statuses_ids_and_exact_duplicates(tree: Path, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    summary = run_scan(store, tree)
    files = files_by_path(store)
    expected = {
        "cats/a.jpg": ("ok", None),
        "cats/b.jpg": ("ok", None),
        "dogs/c.png": ("ok", None),
        "dogs/c_copy.png": ("ok", None),
        "broken/cut.jpg": ("broken", "truncated"),
        "broken/empty.jpg": ("junk", "zero_byte"),
        "broken/notes.txt": ("junk", "not_an_image"),
        "__MACOSX/cats/._a.jpg": ("junk", "apple_double"),
        ".DS_Store": ("junk", "os_metadata"),
    }
    assert {p: (r["status"], r["reason"]) for p, r in files.items()} == expected
    assert summary["files"] == 9 and summary["hashed"] == 9 and summary["reused"] == 0
    # image_id is the first 128 bits of sha256 of the bytes: `sha256sum | cut -c1-32`.
    a = (tree / "cats" / "a.jpg").read_bytes()
    assert files["cats/a.jpg"]["image_id"] == hashlib.sha256(a).hexdigest()[:32]
    assert files["cats/a.jpg"]["sha256"] == hashlib.sha256(a).hexdigest()
    # Exact duplicates fall out: two files, one image.
    assert files["dogs/c.png"]["image_id"] == files["dogs/c_copy.png"]["image_id"]
    assert files["broken/empty.jpg"]["image_id"] is None  # junk gets no image
    images = {r["image_id"]: r for r in store.table("images").to_pylist()}
    assert len(images) == 4  # a, b, c, and the truncated one
    c = images[files["dogs/c.png"]["image_id"]]
    assert (c["format"], c["width"], c["height"], c["mode"]) == ("PNG", 64, 48, "RGB")
    assert images[files["broken/cut.jpg"]["image_id"]]["status"] == "broken"
    labels = store.sql("select rel_path, label from folder_labels order by 1").to_pylist()
    assert {"rel_path": "cats/a.jpg", "label": "cats"} in labels


def test_rescan_is_incremental_and_keeps_history(tree: Path, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    run_scan(store, tree)
    old_a = files_by_path(store)["cats/a.jpg"]["image_id"]

    again = run_scan(store, tree)
    assert (again["hashed"], again["reused"], again["new_images"]) == (0, 9, 0)
    assert again["events"] == {}

    os.rename(tree / "cats" / "b.jpg", tree / "dogs" / "b_moved.jpg")  # moved
    write_photo(tree / "cats" / "a.jpg", 99)  # content changed
    os.utime(tree / "cats" / "a.jpg", ns=(1, 1))
    (tree / "broken" / "notes.txt").unlink()  # deleted
    third = run_scan(store, tree)
    assert third["hashed"] == 2  # the moved file and the changed one, nothing else
    files = files_by_path(store)
    assert files["cats/b.jpg"]["status"] == "missing"  # never removed
    assert files["cats/b.jpg"]["missing_since_run"] == third["run_id"]
    assert files["dogs/b_moved.jpg"]["image_id"] == files["cats/b.jpg"]["image_id"]
    assert files["cats/a.jpg"]["image_id"] != old_a
    assert files["cats/a.jpg"]["first_seen_run"] != third["run_id"]
    assert files["cats/a.jpg"]["content_run"] == third["run_id"]
    assert old_a in store.table("images")["image_id"].to_pylist()  # history kept
    events = {
        (r["rel_path"], r["event"]): r
        for r in store.table("file_events").to_pylist()
        if r["run_id"] == third["run_id"]
    }
    assert set(events) == {
        ("cats/b.jpg", "missing"),
        ("dogs/b_moved.jpg", "moved"),
        ("cats/a.jpg", "changed"),
        ("broken/notes.txt", "missing"),
    }
    assert events[("dogs/b_moved.jpg", "moved")]["moved_from"] == "cats/b.jpg"
    assert events[("cats/a.jpg", "changed")]["old_image_id"] == old_a

    (tree / "broken" / "notes.txt").write_text("back\n")
    fourth = run_scan(store, tree)
    assert fourth["events"] == {"restored": 1}
    assert files_by_path(store)["broken/notes.txt"]["missing_since_run"] is None


def test_sources_are_scanned_independently(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_photo(a / "x.jpg", 1)
    write_photo(b / "y.jpg", 2)
    store = Store.open(tmp_path / "store", create=True)
    run_scan(store, a)
    run_scan(store, b)  # scanning b alone must not mark a's files missing
    rows = store.sql("select source, rel_path, status from files order by 1").to_pylist()
    assert [(r["rel_path"], r["status"]) for r in rows] == [("x.jpg", "ok"), ("y.jpg", "ok")]


def test_links_loops_and_unreadable_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write_photo(src / "a" / "x.jpg", 1)
    os.symlink("..", src / "a" / "up")  # a loop
    os.symlink("gone.jpg", src / "a" / "dangling.jpg")
    os.symlink(src / "a" / "x.jpg", src / "link.jpg")  # a good file link
    (src / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(scan_module.os, "scandir", scandir)
    store = Store.open(tmp_path / "store", create=True)
    run_scan(store, src)
    files = files_by_path(store)
    assert files["a/up"]["reason"] == "symlink_loop"
    assert files["a/dangling.jpg"]["reason"] == "broken_symlink"
    assert (files["locked"]["status"], files["locked"]["reason"]) == (
        "unreadable",
        "permission_denied",
    )
    # A link to a file inside the source is the same physical file: recorded once, where
    # it lies; the link is a row of its own that says so.
    assert (files["link.jpg"]["status"], files["link.jpg"]["reason"]) == (
        "skipped",
        "link_to_scanned",
    )
    assert files["link.jpg"]["image_id"] is None and "a/x.jpg" in files["link.jpg"]["detail"]


def test_links_leaving_the_source_are_skipped_unless_followed(tmp_path: Path) -> None:
    outside = tmp_path / "etc"
    write_photo(outside / "secret.jpg", 5)
    write_photo(outside / "deep" / "more.jpg", 6)
    src = tmp_path / "src"
    write_photo(src / "a.jpg", 1)
    os.symlink(outside, src / "etc_link")  # a folder link that leaves the source
    os.symlink(outside / "secret.jpg", src / "secret.jpg")  # a file link that does
    os.symlink(src / "a.jpg", src / "inside.jpg")  # a link that stays inside
    store = Store.open(tmp_path / "store", create=True)
    summary = run_scan(store, src)
    files = files_by_path(store)
    assert set(files) == {"a.jpg", "etc_link", "secret.jpg", "inside.jpg"}
    for link in ("etc_link", "secret.jpg"):
        assert (files[link]["status"], files[link]["reason"]) == ("skipped", "link_outside_source")
        assert str(outside) in files[link]["detail"] and "--follow-links" in files[link]["detail"]
        assert files[link]["image_id"] is None and files[link]["sha256"] is None
    assert summary["hashed"] == 1 and summary["status"] == {"ok": 1, "skipped": 3}
    assert store.sql("select count(*) n from images").to_pylist() == [{"n": 1}]

    followed = scan_sources(store, [src], follow_links=True, workers=1, progress=False)
    files = files_by_path(store)
    assert files["etc_link/deep/more.jpg"]["status"] == "ok"
    # Two ways to one outside file (the folder link and the file link): one row holds it.
    secret = [files["etc_link/secret.jpg"], files["secret.jpg"]]
    assert sorted(r["status"] for r in secret) == ["ok", "skipped"]
    assert files["inside.jpg"]["reason"] == "link_to_scanned"  # inside: never followed
    # The folder link is no row now that it is followed (a skipped row that goes is
    # dropped, not kept as missing: it never held an image).
    assert "etc_link" not in files
    assert followed["status"] == {"ok": 3, "skipped": 2}
    assert store.sql("select count(*) n from images").to_pylist() == [{"n": 3}]


def test_huge_plate_is_header_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.new("1", (10_000, 9_100)).save(src / "plate.png")  # 91 MP, tiny on disk
    store = Store.open(tmp_path / "store", create=True)
    run_scan(store, src)
    row = store.table("files").to_pylist()[0]
    assert (row["status"], row["reason"]) == ("ok", "huge")
    image = store.table("images").to_pylist()[0]
    assert image["huge"] and image["megapixels"] == pytest.approx(91.0)


def test_bad_sources_and_store_inside_source(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    with pytest.raises(SourceError, match="does not exist"):
        run_scan(store, tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(SourceError, match="not a folder"):
        run_scan(store, tmp_path / "file.jpg")
    with pytest.raises(StoreError, match="lies inside the source") as info:
        run_scan(store, tmp_path)
    assert "--store" in str(info.value)


def test_parallel_equals_serial(tree: Path, tmp_path: Path) -> None:
    one = Store.open(tmp_path / "one", create=True)
    two = Store.open(tmp_path / "two", create=True)
    scan_sources(one, [tree], workers=1, chunk_size=2, progress=False)
    scan_sources(two, [tree], workers=2, chunk_size=2, progress=False)
    assert comparable(one) == comparable(two)


def test_sources_are_never_written(tree: Path, tmp_path: Path) -> None:
    before = snapshot(tree)
    store = Store.open(tmp_path / "store", create=True)
    run_scan(store, tree, workers=2)
    run_scan(store, tree)
    assert snapshot(tree) == before


# -- kill -9 and resume ------------------------------------------------------------------------

RUN_COLUMNS = ("first_seen_run", "last_seen_run", "content_run", "missing_since_run", "run_id")


def comparable(store: Store) -> dict[str, list[dict]]:
    """Every table's rows without run ids (which differ between any two runs), sorted."""
    out = {}
    for name in ("files", "images", "file_events"):
        if not store.table_files(name):
            continue
        table = store.table(name)
        keep = [c for c in table.column_names if c not in RUN_COLUMNS]
        rows = table.select(keep).to_pylist()
        out[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return out


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            result[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
    return result


def many_files(src: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = src / f"d{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")
    (src / "d0" / "empty.jpg").write_bytes(b"")


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    src = tmp_path / "src"
    many_files(src, 3000)
    killed_store = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "lamina.cli",
        "--store",
        str(killed_store),
        "scan",
        str(src),
        "--chunk-size",
        "25",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ledger = killed_store / "ledger" / "scan"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(ledger.glob("*/chunk-*.json"))) >= 10:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the scan finished before it could be killed"
    run_record = json.loads(next((killed_store / "runs").glob("*/run.json")).read_text())
    assert run_record["status"] == "running" and run_record["ended"] is None

    store = Store.open(killed_store)
    resumed = scan_sources(store, [src], workers=2, chunk_size=25, progress=False)
    assert resumed["reused"] >= 250  # the committed chunks were not redone
    assert resumed["hashed"] + resumed["reused"] == 3001
    clean = Store.open(tmp_path / "clean", create=True)
    scan_sources(clean, [src], workers=2, chunk_size=25, progress=False)
    assert comparable(store) == comparable(clean)
    parts = store.table("scan")
    assert parts.num_rows == len(set(parts["file_key"].to_pylist()))  # no duplicate rows


def test_process_never_raises_on_a_bad_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(path: str, rel_path: str) -> dict:
        raise ValueError("parser bug")

    monkeypatch.setattr(scan_module, "probe_file", explode)
    batch = pa.table(
        {"file_key": ["k"], "abs_path": [str(tmp_path / "x.jpg")], "rel_path": ["x.jpg"]}
    )
    out = scan_module.ScanPass().process(batch).to_pylist()[0]
    assert (out["status"], out["reason"]) == ("broken", "probe_error")
    assert "parser bug" in out["detail"]


def test_full_disk_is_a_clear_error_and_leaves_the_store_as_it_was(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "store", create=True)
    run_scan(store, tree)
    before = comparable(store)
    write_photo(tree / "new.jpg", 7)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    import lamina.core.store as store_module

    monkeypatch.setattr(store_module.pq, "write_table", disk_full)
    with pytest.raises(StoreError, match="No space left on device") as info:
        run_scan(store, tree)
    assert "free some disk space" in str(info.value) and str(store.root) in str(info.value)
    assert comparable(Store.open(store.root)) == before
    monkeypatch.undo()
    again = run_scan(store, tree)
    assert again["events"] == {"added": 1}


def test_rescan_without_changes_keeps_the_files_fingerprint(tree: Path, tmp_path: Path) -> None:
    from lamina.core.runner import input_fingerprint

    store = Store.open(tmp_path / "store", create=True)
    run_scan(store, tree)
    before = input_fingerprint(store, ["files"])
    run_scan(store, tree)  # rewrites files.parquet (last_seen_run moves), changes nothing else
    assert input_fingerprint(store, ["files"]) == before
    # A sidecar written next to a photo (by `lamina sidecars`, Lightroom) is junk with its
    # own reason, and junk changes nothing a pass reads.
    (tree / "cats" / "a.xmp").write_text('<x:xmpmeta xmlns:x="adobe:ns:meta/"/>\n')
    run_scan(store, tree)
    assert files_by_path(store)["cats/a.xmp"]["reason"] == "sidecar"
    assert input_fingerprint(store, ["files"]) == before
    write_photo(tree / "cats" / "new.jpg", 99)
    run_scan(store, tree)
    assert input_fingerprint(store, ["files"]) != before


# -- one physical file, one row ----------------------------------------------------------------


def nested_tree(tmp_path: Path) -> Path:
    root = tmp_path / "pictures"
    write_photo(root / "a.jpg", 1)
    write_photo(root / "2024" / "b.jpg", 2)
    write_photo(root / "2024" / "trip" / "c.jpg", 3)
    return root


@pytest.mark.parametrize("outer_first", [True, False])
def test_nested_sources_are_one_source(tmp_path: Path, outer_first: bool) -> None:
    from lamina.manifest.status import store_status

    root = nested_tree(tmp_path)
    inner = root / "2024"
    store = Store.open(tmp_path / "store", create=True)
    first = run_scan(store, root if outer_first else inner)
    second = run_scan(store, inner if outer_first else root)
    rows = store.sql("select source, rel_path, status from files order by rel_path").to_pylist()
    assert rows == [
        {"source": str(root), "rel_path": p, "status": "ok"}
        for p in ("2024/b.jpg", "2024/trip/c.jpg", "a.jpg")
    ]
    info = store_status(store)
    assert info["files"]["total"] == 3 and info["files"]["by_source"] == {str(root): 3}
    assert info["exact_duplicates"] == {"groups": 0, "redundant_files": 0}
    events = store.sql("select run_id, rel_path, event, old_source, moved_from from file_events")
    kinds = {(r["rel_path"], r["event"]) for r in events.to_pylist()}
    assert not {e for _, e in kinds} & {"missing", "restored"}  # never missing then added
    b = files_by_path(store)["2024/b.jpg"]
    assert b["first_seen_run"] == first["run_id"]  # the row kept its history
    if outer_first:
        assert second["hashed"] == 0 and second["events"] == {}  # a rescan of part of it
    else:
        merged = [r for r in events.to_pylist() if r["event"] == "merged"]
        assert {(r["rel_path"], r["old_source"], r["moved_from"]) for r in merged} == {
            ("2024/b.jpg", str(inner), "b.jpg"),
            ("2024/trip/c.jpg", str(inner), "trip/c.jpg"),
        }
        assert second["hashed"] == 1  # only a.jpg is new: the merged rows keep their hashes
    # Rescanning the inner folder is a rescan of that part of the one source: nothing
    # outside it is marked missing, a deletion inside it is.
    (inner / "trip" / "c.jpg").unlink()
    third = run_scan(store, inner)
    assert third["events"] == {"missing": 1}
    assert files_by_path(store)["a.jpg"]["status"] == "ok"


def test_a_link_into_a_scanned_tree_records_nothing_twice(tmp_path: Path) -> None:
    from lamina.manifest.status import store_status

    archive = tmp_path / "archive"
    write_photo(archive / "x.jpg", 1)
    write_photo(archive / "old" / "y.jpg", 2)
    phone = tmp_path / "phone"
    write_photo(phone / "z.jpg", 3)
    os.symlink(archive, phone / "archive")
    store = Store.open(tmp_path / "store", create=True)
    run_scan(store, archive)
    scan_sources(store, [phone], follow_links=True, workers=1, progress=False)
    link = store.sql(
        "select status, reason, detail from files where rel_path = 'archive'"
    ).to_pylist()[0]
    assert (link["status"], link["reason"]) == ("skipped", "link_to_scanned")
    assert str(archive) in link["detail"]
    info = store_status(store)
    assert info["files"]["by_status"] == {"ok": 3, "skipped": 1}
    assert info["exact_duplicates"]["groups"] == 0
    # The same through a symlinked source path: it resolves to the scanned tree.
    os.symlink(archive, tmp_path / "alias")
    again = run_scan(store, tmp_path / "alias")
    assert again["hashed"] == 0 and again["events"] == {}
    assert sorted(store_status(store)["files"]["by_source"]) == sorted([str(archive), str(phone)])


def test_hard_links_are_one_physical_file(tmp_path: Path) -> None:
    from lamina.manifest.status import store_status

    src = tmp_path / "src"
    write_photo(src / "a.jpg", 1)
    (src / "backup").mkdir()
    os.link(src / "a.jpg", src / "backup" / "a.jpg")  # one inode, two names
    (src / "backup" / "copy.jpg").write_bytes((src / "a.jpg").read_bytes())  # a real copy
    store = Store.open(tmp_path / "store", create=True)
    summary = run_scan(store, src)
    files = files_by_path(store)
    assert files["a.jpg"]["status"] == "ok"
    assert (files["backup/a.jpg"]["status"], files["backup/a.jpg"]["reason"]) == (
        "skipped",
        "same_file",
    )
    assert "a.jpg" in files["backup/a.jpg"]["detail"]
    assert summary["hashed"] == 2  # the second name of the same file is not read again
    # The byte copy is a real duplicate (deleting it frees space); the hard link is not.
    assert store_status(store)["exact_duplicates"] == {"groups": 1, "redundant_files": 1}
    # Stable on a rescan; a hard link from another source is the same file too.
    run_scan(store, src)
    assert files_by_path(store)["a.jpg"]["status"] == "ok"
    other = tmp_path / "other"
    other.mkdir()
    os.link(src / "a.jpg", other / "same.jpg")
    run_scan(store, other)
    row = files_by_path(store)["same.jpg"]
    assert (row["status"], row["reason"]) == ("skipped", "same_file")
    # When the name that held it goes, another name takes it over at the next scan.
    (src / "a.jpg").unlink()
    run_scan(store, src)
    files = files_by_path(store)
    assert files["a.jpg"]["status"] == "missing"
    assert files["backup/a.jpg"]["status"] == "ok"
    assert store_status(store)["exact_duplicates"] == {"groups": 1, "redundant_files": 1}


def test_walk_gives_path_order_and_the_listing_is_sorted(tmp_path: Path) -> None:
    # A folder sorts as its name followed by "/": "a.jpg" and "a-b" before "a/...".
    src = tmp_path / "src"
    for rel in ("a/x.jpg", "a.jpg", "a-b/y.jpg", "a0", "a/b/z.jpg", "a/b.jpg", "B.jpg", "é.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    walked = [e.rel_path for e in scan_module.walk_source(src)]
    assert walked == sorted(walked)
    assert walked[:4] == ["B.jpg", "a-b/y.jpg", "a.jpg", "a/b.jpg"]
    # Sources given out of order (or rows out of order) still give a sorted listing.
    other = tmp_path / "other"
    write_photo(other / "o.jpg", 1)
    listing = scan_module.list_sources([other, src])
    keys = list(zip(listing["source"].to_pylist(), listing["rel_path"].to_pylist(), strict=True))
    assert keys == sorted(keys) and len(keys) == 9


@pytest.mark.parametrize("order", ["in order", "out of order"])
def test_spilled_listing_equals_the_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """The listing the scan writes to a file as it walks (`spill_listing`, several row
    groups here) holds the rows of `list_sources`, sorted, also when the walk's rows come
    out of order (sources given in reverse: the file is then sorted by DuckDB)."""
    monkeypatch.setattr(scan_listing, "SPILL_ROWS", 4)
    monkeypatch.setattr(scan_listing, "_WALK_BATCH", 3)
    src, other = tmp_path / "src", tmp_path / "other"
    for rel in ("a/x.jpg", "a.jpg", "a-b/y.jpg", "a0", "a/b/z.jpg", "B.jpg", "é.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(rel.encode())
    for i in range(6):
        write_photo(other / f"o{i}.jpg", i)
    sources = [src, other] if order == "out of order" else [other, src]
    spilled = scan_module.spill_listing(sources, tmp_path / "listing.parquet")
    expected = scan_module.list_sources(sources)
    assert spilled.read().to_pylist() == expected.to_pylist()
    assert (spilled.rows, spilled.files) == (13, 13)
    assert spilled.size == sum(expected["size"].to_pylist())
    slices = [b.num_rows for b in spilled.batches(["file_key"], batch_size=5)]
    assert slices == [5, 5, 3]
    assert not (tmp_path / "listing.parquet.unsorted").exists()


def test_forked_workers_give_the_ids_of_the_bytes(tmp_path: Path) -> None:
    """Workers forked by the scan hash as this process does: every image_id is the first
    128 bits of the SHA-256 of the file's bytes, as a one-process scan records it."""
    src = tmp_path / "src"
    many_files(src, 60)
    one = Store.open(tmp_path / "one", create=True)
    two = Store.open(tmp_path / "two", create=True)
    scan_sources(one, [src], workers=1, chunk_size=7, progress=False)
    summary = scan_sources(two, [src], workers=2, chunk_size=7, progress=False)
    assert summary["hashed"] == 61 and summary["failed_chunks"] == 0
    assert comparable(one) == comparable(two)
    for row in two.table("files").to_pylist():
        digest = hashlib.sha256((src / row["rel_path"]).read_bytes()).hexdigest()
        assert row["sha256"] == digest
        assert row["image_id"] == (digest[:32] if row["status"] == "ok" else None)
