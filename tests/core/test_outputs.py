"""The one rule for output paths (issue 11, defect 3): never a recorded file, never inside a
source or among the store's tables, never over someone else's file without force."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.core.outputs import OutputError, check_output_path, record_output, write_output
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources


@pytest.fixture
def scanned(tree: Path, tmp_path: Path) -> tuple[Store, Path]:
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tree], workers=1, progress=False)
    return store, tree


def refused(store: Store | None, path: Path | str, named: str, **flags: bool) -> None:
    with pytest.raises(OutputError) as caught:
        check_output_path(store, path, **flags)
    assert named in str(caught.value) and "fix:" in str(caught.value)


def test_a_recorded_file_is_never_an_output(scanned, tmp_path: Path) -> None:
    store, tree = scanned
    original = tree / "cats" / "a.jpg"
    refused(store, original, "recorded", force=True, force_into_source=True)
    # The same file reached another way: a linked folder, a link, a hard link.
    (tmp_path / "alias").symlink_to(tree / "cats")
    refused(store, tmp_path / "alias" / "a.jpg", "recorded", force=True, force_into_source=True)
    (tmp_path / "link.jpg").symlink_to(original)
    refused(store, tmp_path / "link.jpg", "recorded", force=True)
    os.link(original, tmp_path / "hard.jpg")
    refused(store, tmp_path / "hard.jpg", "recorded", force=True)
    # A path with `..` that lands on it.
    refused(store, f"{tree}/dogs/../cats/a.jpg", "recorded", force=True, force_into_source=True)


def test_inside_a_source_only_when_forced(scanned, tmp_path: Path) -> None:
    store, tree = scanned
    refused(store, tree / "cats" / "list.txt", "inside the source")
    assert (
        check_output_path(store, tree / "list.txt", force_into_source=True)
        == (tree / "list.txt").resolve()
    )
    # A sources given by the caller (not scanned yet) counts too, and so does a folder.
    other = tmp_path / "other"
    other.mkdir()
    refused(store, other / "x.csv", "inside the source", sources=[other])
    refused(store, tree / "report", "inside the source", folder=True)
    # A link placed outside a source that points into it.
    (tmp_path / "into").symlink_to(tree / "dogs")
    refused(store, tmp_path / "into" / "new.txt", "inside the source")


def test_the_store_takes_outputs_only_under_exports_and_report(scanned) -> None:
    store, _ = scanned
    refused(store, store.root / "tables" / "files" / "files.parquet", "inside the store")
    refused(store, store.root / "lamina.toml", "inside the store", force=True)
    refused(store, store.root, "inside the store", folder=True)
    assert check_output_path(store, store.root / "exports" / "tags.csv")
    assert check_output_path(store, store.root / "report", folder=True)


def test_an_existing_file_needs_force_unless_lamina_wrote_it(scanned, tmp_path: Path) -> None:
    store, _ = scanned
    theirs = tmp_path / "theirs.txt"
    theirs.write_text("mine\n")
    refused(store, theirs, "not written by lamina")
    refused(store, tmp_path, "is a folder")
    write_output(store, theirs, "one\n", force=True)
    assert theirs.read_text() == "one\n"
    write_output(store, theirs, "two\n")  # lamina's own output now
    assert theirs.read_text() == "two\n"
    theirs.write_text("edited by hand, so no longer lamina's\n")
    refused(store, theirs, "not written by lamina")
    # Without a store, the rule about existing files still holds.
    refused(None, theirs, "not written by lamina")
    new = tmp_path / "sub" / "new.txt"
    assert write_output(None, new, b"x") == new.resolve() and new.read_bytes() == b"x"
    refused(None, new, "not written by lamina")  # no store, so no note of it


def test_the_note_is_best_effort(scanned, tmp_path: Path) -> None:
    store, _ = scanned
    out = tmp_path / "out.txt"
    out.write_text("x")
    (store.root / "ledger" / "outputs.json").write_text("not json")
    record_output(store, out)  # a broken note is replaced, not a crash
    assert check_output_path(store, out) == out.resolve()
