"""XMP sidecars through exiftool: written, read back, merged, replaced, dry-run, styles,
hostile labels, per-file failures, originals untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lamina.core.errors import LaminaError
from lamina.exports import exiftool_session, sidecars
from lamina.exports.sidecars import (
    label_problem,
    sidecar_path,
    summarise,
    write_sidecars,
    write_sidecars_for,
)
from tests.conftest import write_photo

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool missing")

HOSTILE = [
    "-overwrite_original",
    "a=b",
    'x"y',
    "-XMP-dc:Creator=evil",
    "a|b",
    "tab\t",
    "é",
    "commas, too",
    "$filename",
    "a<b",
    "-execute",
    "1e5",
    "true",
    "#hash",
    "trailing  ",
]
REFUSED = ["two\nlines", "cr\rhere", " lead", ""]


def exiftool_json(*args: str | Path) -> list[dict]:
    """exiftool's own JSON, run as a separate process; numbers and booleans kept as text."""
    out = subprocess.run(
        ["exiftool", "-j", "-G1", *map(str, args)], capture_output=True, text=True, check=False
    ).stdout
    rows = json.loads(out, parse_int=str, parse_float=str) if out.strip() else []
    for row in rows:
        for key, value in row.items():
            items = value if isinstance(value, list) else [value]
            row[key] = [str(v).lower() if isinstance(v, bool) else v for v in items]
    return rows


def xmp_tags(path: Path) -> dict[str, list[str]]:
    """Every XMP tag of a sidecar, by group:name."""
    (row,) = exiftool_json("-a", "-XMP:all", path)
    return {k: v for k, v in row.items() if k != "SourceFile"}


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".xmp"
    }


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    src = tmp_path / "photos"
    for i, name in enumerate(("cat.jpg", "dog.jpg", "sub/bird.jpg", "sub/fish.png")):
        write_photo(src / name, i, fmt="PNG" if name.endswith("png") else "JPEG")
    return src


def test_label_problems() -> None:
    assert all(label_problem(label) is None for label in HOSTILE)
    assert "line break" in label_problem("two\nlines")
    assert "line break" in label_problem("cr\rhere")
    assert "line break" in label_problem("u\u2028v")
    assert "white space" in label_problem(" lead")
    assert label_problem("") == "is empty"
    assert "non-character" in label_problem("x\uffff")


def test_sidecar_paths() -> None:
    assert sidecar_path("/p/a/cat.jpg") == Path("/p/a/cat.xmp")
    assert sidecar_path("/p/a/cat.jpg", style="darktable") == Path("/p/a/cat.jpg.xmp")
    mirror = sidecar_path("/p/a/cat.jpg", style="darktable", sidecar_dir="/x", rel_path="a/cat.jpg")
    assert mirror == Path("/x/a/cat.jpg.xmp")
    with pytest.raises(LaminaError, match="style"):
        sidecar_path("/p/cat.jpg", style="lightroom")


def test_hostile_labels_stay_literal_and_inject_nothing(photos: Path) -> None:
    before = digest(photos)
    original = photos / "cat.jpg"
    sidecar = photos / "cat.xmp"
    (result,) = write_sidecars_for([(original, sidecar, HOSTILE + REFUSED + ["é"])])
    assert result.action == "created" and result.error is None
    assert result.added == HOSTILE  # the duplicate "é" once, refused ones out
    assert [label for label, _ in result.refused] == REFUSED
    tags = xmp_tags(sidecar)
    assert tags.pop("XMP-dc:Subject") == HOSTILE
    assert tags.pop("XMP-lr:HierarchicalSubject") == [x for x in HOSTILE if x != "a|b"]
    assert set(tags) == {"XMP-x:XMPToolkit"}  # no Creator, nothing else
    everything = exiftool_json("-a", "-all", sidecar)[0]
    assert not any("Creator" in key for key in everything)
    assert digest(photos) == before  # originals (and everything else) untouched
    # Only the sidecar was added: no temporary files left behind.
    assert sorted(p.name for p in photos.iterdir()) == ["cat.jpg", "cat.xmp", "dog.jpg", "sub"]
    assert "'|'" in result.notes[0]


def test_merge_keeps_existing_keywords_and_tags_then_replace(photos: Path) -> None:
    sidecar = photos / "cat.xmp"
    subprocess.run(
        ["exiftool", "-q", "-XMP-dc:Subject=old", "-XMP-dc:Subject=cat",
         "-XMP-lr:HierarchicalSubject=Animals|Cat", "-XMP-dc:Creator=Me",
         "-XMP-xmp:Rating=3", "-o", str(sidecar)],
        check=True,
    )  # fmt: skip
    before = digest(photos)
    (merged,) = write_sidecars_for([(photos / "cat.jpg", sidecar, ["cat", "dog"])])
    assert merged.action == "updated"
    assert (merged.added, merged.kept, merged.removed) == (["dog"], ["old", "cat"], [])
    tags = xmp_tags(sidecar)
    assert tags["XMP-dc:Subject"] == ["old", "cat", "dog"]
    assert tags["XMP-lr:HierarchicalSubject"] == ["Animals|Cat", "cat", "dog"]
    assert tags["XMP-dc:Creator"] == ["Me"] and tags["XMP-xmp:Rating"] == ["3"]

    mtime = sidecar.stat().st_mtime_ns
    (again,) = write_sidecars_for([(photos / "cat.jpg", sidecar, ["cat", "dog"])])
    assert again.action == "unchanged" and sidecar.stat().st_mtime_ns == mtime

    (replaced,) = write_sidecars_for([(photos / "cat.jpg", sidecar, ["dog"])], replace=True)
    assert (replaced.added, replaced.kept, replaced.removed) == ([], ["dog"], ["old", "cat"])
    tags = xmp_tags(sidecar)
    assert tags["XMP-dc:Subject"] == ["dog"] and tags["XMP-lr:HierarchicalSubject"] == ["dog"]
    assert tags["XMP-dc:Creator"] == ["Me"]  # only the keywords are replaced
    assert digest(photos) == before


def test_dry_run_writes_nothing(photos: Path) -> None:
    existing = photos / "dog.xmp"
    subprocess.run(["exiftool", "-q", "-XMP-dc:Subject=old", "-o", str(existing)], check=True)
    listing = {p: p.stat().st_mtime_ns for p in photos.rglob("*")}
    results = write_sidecars_for(
        [
            (photos / "cat.jpg", photos / "cat.xmp", ["cat"]),
            (photos / "dog.jpg", existing, ["dog"]),
        ],
        replace=True,
        dry_run=True,
    )
    assert [r.action for r in results] == ["would_create", "would_update"]
    assert (results[1].added, results[1].removed) == (["dog"], ["old"])
    assert {p: p.stat().st_mtime_ns for p in photos.rglob("*")} == listing


def test_styles_and_mirror_tree(photos: Path, tmp_path: Path) -> None:
    items = []
    for rel in ("cat.jpg", "sub/bird.jpg"):
        items.append((photos / rel, sidecar_path(photos / rel, style="darktable"), ["x"]))
        mirror = sidecar_path(photos / rel, sidecar_dir=tmp_path / "xmp", rel_path=rel)
        items.append((photos / rel, mirror, ["y"]))
    results = write_sidecars_for(items)
    assert [r.action for r in results] == ["created"] * 4
    assert xmp_tags(photos / "sub" / "bird.jpg.xmp")["XMP-dc:Subject"] == ["x"]
    assert xmp_tags(tmp_path / "xmp" / "sub" / "bird.xmp")["XMP-dc:Subject"] == ["y"]
    assert (tmp_path / "xmp" / "cat.xmp").is_file()


def test_per_file_failures_leave_the_rest_going(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests run as root, where a read-only folder does not stop a write: a sidecar whose
    folder is a regular file cannot be made whoever runs it, and a truncated XMP makes
    exiftool itself fail in the middle of a batch."""
    monkeypatch.setattr(exiftool_session, "BATCH", 2)  # several batches, statuses split per file
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    truncated = photos / "dog.xmp"
    truncated.write_text(
        "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>\n<x:xmpmeta xmlns:x='adobe:ns:meta/'>\n"
    )
    not_xmp = photos / "sub" / "bird.xmp"
    not_xmp.write_text("my notes")
    before = digest(photos)
    results = write_sidecars_for(
        [
            (photos / "cat.jpg", photos / "cat.xmp", ["cat"]),
            (photos / "dog.jpg", truncated, ["dog"]),
            (photos / "sub/bird.jpg", not_xmp, ["bird"]),
            (photos / "sub/fish.png", blocker / "fish.xmp", ["fish"]),
            (photos / "sub/fish.png", photos / "sub" / "fish.xmp", ["fish"]),
        ]
    )
    assert [r.action for r in results] == ["created", "failed", "failed", "failed", "created"]
    assert "exiftool" in results[1].error and "Format error" in results[1].error
    assert "not XMP" in results[2].error and not_xmp.read_text() == "my notes"
    assert "--sidecar-dir" in results[3].error
    assert xmp_tags(photos / "sub" / "fish.xmp")["XMP-dc:Subject"] == ["fish"]
    summary = summarise(results)
    assert (summary["created"], summary["failed"], len(summary["problems"])) == (2, 3, 3)
    assert digest(photos) == before
    assert truncated.read_text().endswith("xmlns:x='adobe:ns:meta/'>\n")  # left as it was
    assert not list(photos.rglob(".*.xmp"))  # temporary files cleaned up


def test_read_only_folder_is_reported_before_writing(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root every folder is writable, so the permission answer is faked for one folder
    (the check is `os.access(folder, W_OK)`, as a normal user's read-only folder gives)."""
    real = sidecars.os.access
    monkeypatch.setattr(
        sidecars.os, "access", lambda p, mode: False if Path(p) == photos / "sub" else real(p, mode)
    )
    results = write_sidecars_for(
        [
            (photos / "sub/bird.jpg", photos / "sub" / "bird.xmp", ["bird"]),
            (photos / "cat.jpg", photos / "cat.xmp", ["cat"]),
        ]
    )
    assert [r.action for r in results] == ["failed", "created"]
    assert "read-only" in results[0].error and "--sidecar-dir" in results[0].error
    assert not (photos / "sub" / "bird.xmp").exists()


def test_adobe_names_clash_between_extensions(photos: Path) -> None:
    write_photo(photos / "cat.png", 9, fmt="PNG")
    results = write_sidecars_for(
        [(photos / name, sidecar_path(photos / name), ["cat"]) for name in ("cat.jpg", "cat.png")]
    )
    assert [r.action for r in results] == ["failed", "failed"]
    assert "darktable" in results[0].error and not (photos / "cat.xmp").exists()


def test_missing_exiftool_says_how_to_install(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exiftool_session.shutil, "which", lambda name: None)
    with pytest.raises(LaminaError, match="apt-get install libimage-exiftool-perl"):
        write_sidecars_for([(photos / "cat.jpg", photos / "cat.xmp", ["cat"])])


def test_write_sidecars_from_the_store(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's present files with labels get sidecars; the label source is stubbed at
    the one seam that reads helper tables (`_labels_by_image`), with real image ids."""
    from lamina.core.store import Store
    from lamina.jobs.scan import scan_sources

    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [photos], workers=1, progress=False)
    rows = store.sql("select rel_path, image_id from files").to_pylist()
    ids = {r["rel_path"]: r["image_id"] for r in rows}
    labels = {ids["cat.jpg"]: ["cat"], ids["sub/bird.jpg"]: ["bird", "bad\nlabel"]}
    seen: list[str] = []

    def fake_labels(store_arg: object, use: str) -> dict[str, list[str]]:
        seen.append(use)
        return labels

    monkeypatch.setattr(sidecars, "_labels_by_image", fake_labels)
    before = digest(photos)
    dry = write_sidecars(store, style="darktable", dry_run=True)
    assert (dry["files"], dry["would_create"]) == (2, 2) and not list(photos.rglob("*.xmp"))
    (reason,) = dry["skipped_reasons"]
    assert reason == "no approved labels"
    assert dry["skipped_reasons"][reason]["files"] == 2
    assert dry["skipped_reasons"][reason]["examples"] == [
        str(photos / "dog.jpg"),
        str(photos / "sub" / "fish.png"),
    ]
    assert "lamina approve" in dry["skipped_reasons"][reason]["hint"]
    out = write_sidecars(store, use="over_threshold", sidecar_dir=tmp_path / "xmp")
    assert seen == ["approved", "over_threshold"]
    assert (out["created"], out["failed"]) == (2, 0)
    assert out["problems"] == [
        {
            "original": str(photos / "sub" / "bird.jpg"),
            "sidecar": str(tmp_path / "xmp" / "sub" / "bird.xmp"),
            "label": "bad\nlabel",
            "error": "holds a line break or control character (U+000A)",
        }
    ]
    assert xmp_tags(tmp_path / "xmp" / "sub" / "bird.xmp")["XMP-dc:Subject"] == ["bird"]
    assert list(out["skipped_reasons"]) == ["no tag over the threshold"]
    only = write_sidecars(store, image_ids=[ids["cat.jpg"]], replace=True)
    assert only["files"] == 1 and (photos / "cat.xmp").is_file()
    assert only["skipped_reasons"] == {}  # files not asked for are not "skipped"
    labels[ids["dog.jpg"]] = ["\n"]  # every label refused: nothing to write
    refused = write_sidecars(store, image_ids=[ids["dog.jpg"]])
    assert refused["skipped_reasons"] == {
        "every label refused": {"files": 1, "examples": [str(photos / "dog.jpg")]}
    }
    assert digest(photos) == before


def test_mirror_roots_keep_same_named_sources_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sources both named `photos` get their own mirror roots (name plus a hash of
    the path), so a cat.jpg in each gets its own sidecar under --sidecar-dir."""
    from lamina.core.store import Store
    from lamina.jobs.scan import scan_sources

    a, b, c = tmp_path / "A" / "photos", tmp_path / "B" / "photos", tmp_path / "scans"
    write_photo(a / "cat.jpg", 1)
    write_photo(b / "cat.jpg", 2)
    write_photo(c / "cat.jpg", 3)
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [a, b, c], workers=1, progress=False)
    rows = store.sql("select source, image_id from files").to_pylist()
    labels = {r["image_id"]: [f"from {Path(r['source']).parent.name}"] for r in rows}
    monkeypatch.setattr(sidecars, "_labels_by_image", lambda store_arg, use: labels)
    out = write_sidecars(store, sidecar_dir=tmp_path / "xmp")
    assert (out["created"], out["failed"], out["problems"]) == (3, 0, [])
    roots = sidecars.mirror_roots([str(a), str(b), str(c)])
    assert roots[str(c)] == "scans"
    for source in (a, b):
        digest8 = hashlib.sha256(str(source).encode()).hexdigest()[:8]
        assert roots[str(source)] == f"photos-{digest8}"
        sidecar = tmp_path / "xmp" / f"photos-{digest8}" / "cat.xmp"
        assert xmp_tags(sidecar)["XMP-dc:Subject"] == [f"from {source.parent.name}"]
    assert sidecars.mirror_roots([str(a)]) == {str(a): ""}


def test_a_clash_names_the_originals_that_share_the_sidecar(photos: Path, tmp_path: Path) -> None:
    shared = tmp_path / "xmp" / "cat.xmp"
    items = [(photos / "cat.jpg", shared, ["cat"]), (photos / "sub" / "bird.jpg", shared, ["b"])]
    results = write_sidecars_for(items)
    assert [r.action for r in results] == ["failed", "failed"]
    assert str(photos / "sub" / "bird.jpg") in results[0].error
    assert str(photos / "cat.jpg") in results[1].error
    assert "darktable" not in results[0].error and not shared.exists()


def test_a_name_too_long_for_its_sidecar_fails_that_file_only(photos: Path) -> None:
    """A 255-byte file name is the most a file system allows: its darktable sidecar
    (name + `.xmp`) cannot exist. That one file fails with the reason; the others get
    their sidecars, in the same batch."""
    long = write_photo(photos / ("a" * 251 + ".jpg"), 7)
    assert len(long.name.encode()) == 255
    before = digest(photos)
    results = write_sidecars_for(
        [
            (photos / "cat.jpg", sidecar_path(photos / "cat.jpg", style="darktable"), ["cat"]),
            (long, sidecar_path(long, style="darktable"), ["long"]),
            (photos / "dog.jpg", sidecar_path(photos / "dog.jpg", style="darktable"), ["dog"]),
        ]
    )
    assert [r.action for r in results] == ["created", "failed", "created"]
    assert "259 bytes" in results[1].error and "255" in results[1].error
    assert "--style adobe" in results[1].error
    assert xmp_tags(photos / "dog.jpg.xmp")["XMP-dc:Subject"] == ["dog"]
    assert digest(photos) == before


def test_a_long_name_whose_sidecar_fits_gets_it(photos: Path) -> None:
    """The adobe sidecar of a 255-byte `<stem>.jpg` is a 255-byte `<stem>.xmp`: allowed,
    so it is written (the temporary name used while writing must not be longer)."""
    long = write_photo(photos / ("b" * 251 + ".jpg"), 8)
    (result,) = write_sidecars_for([(long, sidecar_path(long), ["long"])])
    assert (result.action, result.error) == ("created", None)
    assert xmp_tags(photos / ("b" * 251 + ".xmp"))["XMP-dc:Subject"] == ["long"]


def test_decisions_become_a_rejected_rating_only_when_asked(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`with_decisions`: a rejected image's sidecar reads back `XMP-xmp:Rating` -1 (also
    without labels, its keywords left alone); a later keep mark removes the -1 and leaves
    other stars alone. Without it, no rating is ever written."""
    import time

    from lamina.core.store import Store
    from lamina.jobs.scan import scan_sources
    from lamina.tagging.decisions import decide

    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [photos], workers=1, progress=False)
    ids = {r["rel_path"]: r["image_id"] for r in store.sql("select * from files").to_pylist()}
    monkeypatch.setattr(sidecars, "_labels_by_image", lambda s, u: {ids["cat.jpg"]: ["cat"]})
    decide(store, [ids["cat.jpg"], ids["dog.jpg"]], "reject", who="t")
    before = digest(photos)
    plain = write_sidecars(store)
    assert plain["created"] == 1 and "XMP-xmp:Rating" not in xmp_tags(photos / "cat.xmp")
    assert not (photos / "dog.xmp").exists()
    # A person's own keywords and a star rating elsewhere stay.
    subprocess.run(
        ["exiftool", "-q", "-o", str(photos / "sub" / "bird.xmp"), "-XMP-dc:Subject=mine",
         "-XMP-xmp:Rating=4", str(photos / "sub" / "bird.jpg")], check=True,
    )  # fmt: skip
    decide(store, [ids["sub/bird.jpg"]], "keep", who="t")
    dry = write_sidecars(store, with_decisions=True, dry_run=True)
    assert (dry["would_update"], dry["would_create"]) == (1, 1)
    out = write_sidecars(store, with_decisions=True)
    assert (out["updated"], out["created"], out["failed"]) == (1, 1, 0), out["problems"]
    cat, dog = xmp_tags(photos / "cat.xmp"), xmp_tags(photos / "dog.xmp")
    assert (cat["XMP-xmp:Rating"], cat["XMP-dc:Subject"]) == (["-1"], ["cat"])
    assert dog["XMP-xmp:Rating"] == ["-1"] and "XMP-dc:Subject" not in dog
    bird = xmp_tags(photos / "sub" / "bird.xmp")
    assert (bird["XMP-xmp:Rating"], bird["XMP-dc:Subject"]) == (["4"], ["mine"])
    time.sleep(0.002)
    decide(store, [ids["dog.jpg"]], "keep", who="t")  # changed their mind
    again = write_sidecars(store, with_decisions=True, replace=True)
    assert (again["updated"], again["unchanged"], again["failed"]) == (1, 2, 0)
    assert "XMP-xmp:Rating" not in xmp_tags(photos / "dog.xmp")
    assert digest(photos) == before
