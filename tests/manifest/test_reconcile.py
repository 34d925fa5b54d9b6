from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.core.errors import LaminaError
from lamina.manifest.listing import load_listing, pair_by_suffix, path_parts
from lamina.manifest.reconcile import junk_class, reconcile, render_summary
from tests.manifest import files_of, scanned


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> str:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _rows(result: object) -> list[tuple]:
    table = result.rows  # type: ignore[attr-defined]
    return [
        (r["side"], r["path_a"], r["path_b"], r["match"], r["suffix_len"], r["junk_class"])
        for r in table.to_pylist()
    ]


def test_path_parts_normalises_machines_away() -> None:
    expected = ("x", "y.jpg")
    assert path_parts("s3://bucket/x/y.jpg") == expected
    assert path_parts("gs://b/x/y.jpg") == expected
    assert path_parts("E:\\x\\y.jpg") == expected
    assert path_parts("file:///x/./y.jpg") == expected
    assert path_parts("file:///C:/x/y.jpg") == expected
    assert path_parts("/x//y.jpg") == expected
    assert path_parts("X/Y.jpg") != expected  # case matters
    assert path_parts("cafe\u0301/y.jpg") == path_parts("caf\u00e9/y.jpg")  # NFD == NFC


def test_store_vs_windows_csv_extra_rows_are_apple_double(tree: Path, tmp_path: Path) -> None:
    scanned(tmp_path, tree)
    images = ["cats\\a.jpg", "cats\\b.jpg", "dogs\\c.png", "dogs\\c_copy.png"]
    junk = ["__MACOSX\\cats\\._b.jpg", "__MACOSX\\dogs\\._c.png", "__MACOSX\\dogs\\._c_copy.png"]
    listing = _csv(
        tmp_path / "drive.csv", ["Path", "Size"], [[f"E:\\photos\\{p}", 100] for p in images + junk]
    )
    result = reconcile(str(tmp_path / "store"), listing)
    s = result.summary
    assert s["matched"] == {"hash": 0, "path_suffix": 4, "total": 4}
    assert (s["only_in_a"], s["only_in_b"]) == (5, 3)
    assert s["only_in_b_by_class"] == {"apple_double": 3}
    assert s["only_in_a_by_class"] == {
        "apple_double": 1,
        "broken": 1,
        "zero_byte": 1,
        "other": 1,
        "os_metadata": 1,
    }
    src = str(tree)
    assert _rows(result)[:3] == [
        ("a", f"{src}/.DS_Store", None, None, None, "os_metadata"),
        ("a", f"{src}/__MACOSX/cats/._a.jpg", None, None, None, "apple_double"),
        ("a", f"{src}/broken/cut.jpg", None, None, None, "broken"),
    ]
    assert (
        "both",
        f"{src}/cats/a.jpg",
        "E:\\photos\\cats\\a.jpg",
        "path_suffix",
        2,
        None,
    ) in _rows(result)
    assert result.only_in("b")["junk_class"].to_pylist() == ["apple_double"] * 3


def test_s3_listing_meets_local_and_windows_paths(tmp_path: Path) -> None:
    a = _csv(
        tmp_path / "a.csv",
        ["Key"],
        [["s3://bucket/x/y.jpg"], ["s3://bucket/x/z.jpg"], ["s3://bucket/x/only.jpg"]],
    )
    b = tmp_path / "b.json"
    b.write_text(json.dumps(["/data/x/y.jpg", "E:\\x\\z.jpg", "/data/x/notes.txt"]))
    result = reconcile(a, str(b))
    assert _rows(result) == [
        ("both", "s3://bucket/x/y.jpg", "/data/x/y.jpg", "path_suffix", 2, None),
        ("both", "s3://bucket/x/z.jpg", "E:\\x\\z.jpg", "path_suffix", 2, None),
        ("a", "s3://bucket/x/only.jpg", None, None, None, "image"),
        ("b", None, "/data/x/notes.txt", None, None, "other"),
    ]
    assert result.summary["only_in_a_by_class"] == {"image": 1}


def test_hash_matches_renamed_files_and_pairs_copies_by_name(tree: Path, tmp_path: Path) -> None:
    store = scanned(tmp_path, tree)
    sha = {rel: row["sha256"] for rel, row in files_of(store).items()}
    listing = tmp_path / "bucket.jsonl"
    rows = [
        {"name": "backup/dogs/c_copy.png", "checksum": sha["dogs/c_copy.png"].upper()},
        {"name": "backup/dogs/c.png", "checksum": sha["dogs/c.png"]},
        {"name": "backup/kitty.jpg", "checksum": sha["cats/a.jpg"]},
        {"name": "backup/cats/b.jpg", "checksum": "f" * 64},  # same path, other bytes
    ]
    listing.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = reconcile(str(tree.parent / "store"), str(listing))
    src = str(tree)
    both = [r for r in _rows(result) if r[0] == "both"]
    assert both == [
        ("both", f"{src}/cats/a.jpg", "backup/kitty.jpg", "hash", 0, None),
        ("both", f"{src}/cats/b.jpg", "backup/cats/b.jpg", "path_suffix", 2, None),
        ("both", f"{src}/dogs/c.png", "backup/dogs/c.png", "hash", 2, None),
        ("both", f"{src}/dogs/c_copy.png", "backup/dogs/c_copy.png", "hash", 2, None),
    ]
    assert result.summary["matched"] == {"hash": 3, "path_suffix": 1, "total": 4}
    assert result.summary["content_differs"] == 1
    same = {r["path_b"]: r["same_content"] for r in result.rows.to_pylist() if r["path_b"]}
    assert (same["backup/kitty.jpg"], same["backup/cats/b.jpg"]) == (True, False)


def test_longest_suffix_wins_then_input_order(tmp_path: Path) -> None:
    a = _csv(tmp_path / "a.csv", ["path"], [["x/2020/cats/a.jpg"], ["p/a.jpg"], ["q/a.jpg"]])
    b = _csv(
        tmp_path / "b.csv", ["file"], [["/m/dogs/a.jpg"], ["/n/2020/cats/a.jpg"], ["/o/cats/a.jpg"]]
    )
    assert _rows(reconcile(a, b)) == [
        ("both", "x/2020/cats/a.jpg", "/n/2020/cats/a.jpg", "path_suffix", 3, None),
        ("both", "p/a.jpg", "/m/dogs/a.jpg", "path_suffix", 1, None),
        ("both", "q/a.jpg", "/o/cats/a.jpg", "path_suffix", 1, None),
    ]
    # One-to-one: the second "a.jpg" has nothing left to pair with.
    one = _csv(tmp_path / "one.csv", ["path"], [["r/a.jpg"]])
    assert [r[0] for r in _rows(reconcile(a, one))] == ["both", "a", "a"]


def test_pair_by_suffix_is_greedy_longest_first() -> None:
    a = [("", ("x", "n")), ("", ("y", "n")), None, ("", ("z", "m"))]
    b = [("", ("q", "y", "n")), ("", ("n",)), ("", ("k",))]
    assert pair_by_suffix(a, b) == [(0, 1, 1), (1, 0, 2)]


def test_parquet_listing_with_md5_hash_column_is_not_taken_for_sha256(tmp_path: Path) -> None:
    path = tmp_path / "inventory.parquet"
    pq.write_table(
        pa.table(
            {
                "Key": ["a/b.jpg", None],
                "hash": ["d41d8cd98f00b204e9800998ecf8427e", None],
                "size": [0, 3],
            }
        ),
        path,
    )
    listing = load_listing(str(path))
    assert listing.to_pylist() == [
        {"path": "a/b.jpg", "sha256": None, "size": 0, "status": None, "reason": None}
    ]
    assert junk_class("a/b.jpg", 0, None, None) == "zero_byte"


def test_listing_without_path_column_names_file_and_columns(tmp_path: Path) -> None:
    bad = _csv(tmp_path / "bad.csv", ["url_x", "bytes"], [["a", 1]])
    with pytest.raises(LaminaError, match=r"bad\.csv has no path column \(columns: url_x, bytes\)"):
        load_listing(bad)
    with pytest.raises(LaminaError, match="not a lamina store"):
        load_listing(str(tmp_path))


def test_a_store_listing_holds_each_physical_file_once(tree: Path, tmp_path: Path) -> None:
    import os

    os.link(tree / "cats" / "a.jpg", tree / "cats" / "a_link.jpg")  # one file, two names
    os.symlink(tree / "cats" / "b.jpg", tree / "b_link.jpg")
    store = scanned(tmp_path, tree)
    paths = load_listing(str(store.root))["path"].to_pylist()
    assert str(tree / "cats" / "a.jpg") in paths and str(tree / "cats" / "b.jpg") in paths
    assert not {str(tree / "cats" / "a_link.jpg"), str(tree / "b_link.jpg")} & set(paths)


def test_the_summary_reads_as_text(tree: Path, tmp_path: Path) -> None:
    scanned(tmp_path, tree)
    listing = _csv(
        tmp_path / "drive.csv",
        ["Path"],
        [[f"E:\\photos\\{p}"] for p in ("cats\\a.jpg", "__MACOSX\\x\\._1.jpg", "new.jpg")],
    )
    text = render_summary(reconcile(str(tmp_path / "store"), listing), examples=1)
    src = str(tree)
    assert text.splitlines() == [
        f"A: {tmp_path / 'store'} (9 rows); B: {listing} (3 rows)",
        "matched 1: 0 by content hash, 1 by path",
        "only in A: 8",
        f"  image         3  e.g. {src}/cats/b.jpg, …",
        f"  os_metadata   1  e.g. {src}/.DS_Store",
        f"  apple_double  1  e.g. {src}/__MACOSX/cats/._a.jpg",
        f"  broken        1  e.g. {src}/broken/cut.jpg",
        f"  zero_byte     1  e.g. {src}/broken/empty.jpg",
        f"  other         1  e.g. {src}/broken/notes.txt",
        "only in B: 2",
        "  apple_double  1  e.g. E:\\photos\\__MACOSX\\x\\._1.jpg",
        "  image         1  e.g. E:\\photos\\new.jpg",
    ]
    assert "{" not in text  # no Python dict
