"""The sample collection: its files match its ground truth, and it is the same every time."""

import hashlib
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import ExifTags, Image, ImageOps

from lamina import sample

pillow_heif.register_heif_opener()

# Which reasons each status may carry (the table in lamina.sample's docstring).
ALLOWED = {
    "ok": {None, "huge", "extension_mismatch"},
    "junk": {"zero_byte", "apple_double", "os_metadata", "sidecar", "not_an_image"},
    "broken": {"truncated", "undecodable", "unknown_content"},
}


def sha256_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("sample") / "collection"
    return root, sample.build_sample_collection(root)


def test_files_on_disk_are_exactly_the_ground_truth(built: tuple[Path, dict[str, dict]]) -> None:
    root, truth = built
    on_disk = set(sha256_tree(root))
    assert on_disk == set(truth)
    assert 250 <= len(truth) <= 400
    assert sum((root / rel).stat().st_size for rel in truth) < 40_000_000


def test_ground_truth_uses_the_vocabulary(built: tuple[Path, dict[str, dict]]) -> None:
    _, truth = built
    for rel, record in truth.items():
        assert set(record) == {"status", "reason", "original", "kind", "found_by"}, rel
        assert record["reason"] in ALLOWED[record["status"]], rel
        assert record["original"] is None or record["original"] in truth, rel
    assert {r["status"] for r in truth.values()} == set(sample.STATUSES)
    assert {r["reason"] for r in truth.values()} == set(sample.REASONS)
    assert {r["kind"] for r in truth.values()} >= set(sample.VARIANTS) | {"photo", "phone"}


def test_exact_duplicates_are_exactly_the_copies(built: tuple[Path, dict[str, dict]]) -> None:
    root, truth = built
    groups: dict[str, list[str]] = defaultdict(list)
    for rel, digest in sha256_tree(root).items():
        groups[digest].append(rel)
    copies = {rel for rel, r in truth.items() if r["kind"].startswith("copy")}
    assert len(copies) >= 5
    for rel in copies:
        original = truth[rel]["original"]
        assert (root / rel).read_bytes() == (root / original).read_bytes(), rel
    # Besides the copies, no two files share bytes (so a dedup test can count on it).
    for members in groups.values():
        originals = [m for m in members if m not in copies]
        assert len(originals) == 1, members
        assert all(truth[m]["original"] == originals[0] for m in members if m in copies)


def test_pillow_agrees_with_the_ground_truth(
    built: tuple[Path, dict[str, dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, truth = built
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    for rel, record in truth.items():
        if record["status"] == "ok" and record["reason"] != "huge":
            with Image.open(root / rel) as im:
                im.load()
        elif record["status"] == "broken":
            with pytest.raises(OSError), Image.open(root / rel) as im:
                im.load()
    with Image.open(root / "messy/mislabelled.jpg") as im:
        assert im.format == "PNG"
    pages = [rel for rel, r in truth.items() if r["kind"] == "tiff_pages"]
    assert pages
    for rel in pages:
        with Image.open(root / rel) as im:
            assert im.n_frames == 3


def test_huge_plate_is_over_90_megapixels_but_tiny(
    built: tuple[Path, dict[str, dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, truth = built
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    plate = root / "plates/plate_0001.png"
    assert truth["plates/plate_0001.png"]["reason"] == "huge"
    with Image.open(plate) as im:
        assert im.width * im.height > 90_000_000
        assert im.mode in {"1", "L"}
    assert plate.stat().st_size < 200_000


def test_truncated_jpeg_is_a_short_prefix_of_its_original(
    built: tuple[Path, dict[str, dict]],
) -> None:
    root, truth = built
    record = truth["messy/truncated.jpg"]
    assert (record["status"], record["reason"]) == ("broken", "truncated")
    truncated = (root / "messy/truncated.jpg").read_bytes()
    original = (root / record["original"]).read_bytes()
    assert len(truncated) < len(original)
    assert original.startswith(truncated)
    assert (root / "messy/empty.jpg").stat().st_size == 0


def test_phone_dump_has_iphone_exif_and_turns_upright(
    built: tuple[Path, dict[str, dict]],
) -> None:
    root, truth = built
    shots = sorted(rel for rel, r in truth.items() if r["kind"] == "phone")
    assert "phone/DCIM/100APPLE/IMG_0001.JPG" in shots
    assert "phone/DCIM/100APPLE/._IMG_0001.JPG" in truth
    orientations = set()
    for rel in shots:
        with Image.open(root / rel) as im:
            exif = im.getexif()
            assert (exif[ExifTags.Base.Make], exif[ExifTags.Base.Model]) == ("Apple", "iPhone 12")
            assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal]
            orientations.add(exif.get(ExifTags.Base.Orientation, 1))
            upright = ImageOps.exif_transpose(im)
        with Image.open(root / truth[rel]["original"]) as original:
            assert upright.size == original.size, rel
    assert orientations >= {1, 3, 6, 8}


def test_package_photos_are_rgb_uint8() -> None:
    photos = sample.package_photos()
    assert {"astronaut", "chelsea", "coffee", "china", "grace_hopper"} <= set(photos)
    for name, pixels in photos.items():
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3, name


def test_write_junk_alone(tmp_path: Path) -> None:
    truth = sample.write_junk(tmp_path)
    assert set(sha256_tree(tmp_path)) == set(truth)
    assert truth["messy/not_really.jpg"]["reason"] == "unknown_content"
    assert truth["messy/mislabelled.jpg"] == {
        "status": "ok",
        "reason": "extension_mismatch",
        "original": "photos/food/coffee.jpg",
        "kind": "mislabelled",
        "found_by": "scan",
    }


def test_build_is_deterministic(built: tuple[Path, dict[str, dict]], tmp_path: Path) -> None:
    root, truth = built
    again = sample.build_sample_collection(tmp_path / "again")
    assert again == truth
    assert sha256_tree(tmp_path / "again") == sha256_tree(root)


def test_refuses_a_non_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        sample.build_sample_collection(tmp_path)
    src = str(Path(sample.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "lamina.sample", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert "not an empty folder" in done.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "keep.txt"]


def test_command_without_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sample.main([str(tmp_path / "small"), "--no-variants"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "ok " in line and "broken 5" in line
    assert not (tmp_path / "small/variants").exists()
