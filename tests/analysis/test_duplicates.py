"""The duplicates pass: exact MIH search, union-find, the representative rule, the labelled
set the default thresholds were tuned on, and a run through the runner."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from skimage import data

from lamina.analysis.duplicates import DuplicatesPass, components, pairs_within
from lamina.core.decode import Decoded, decode_image
from lamina.core.errors import ConfigError
from lamina.core.runner import run_passes
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.passes.hashes import HashesPass, hamming

# -- the search ------------------------------------------------------------------------------


def clustered_codes(n: int, seed: int) -> np.ndarray:
    """Random 64-bit codes, half of them in clusters of 4 a few bits apart."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    flips = rng.random((n // 2, 64)) < 0.05
    noise = np.packbits(flips, axis=1).view(">u8")[:, 0].astype(np.uint64).view(np.int64)
    codes[: n // 2] = np.repeat(codes[: n // 8], 4)[: n // 2] ^ noise
    return codes


@pytest.mark.parametrize("threshold", [0, 3, 8, 10, 12])
def test_pairs_within_is_exact(threshold: int) -> None:
    codes = clustered_codes(1600, threshold)
    i, j, d = pairs_within(codes, threshold)
    dist = hamming(codes[:, None], codes[None, :])
    a, b = np.nonzero(np.triu(dist <= threshold, k=1))
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == list(zip(a, b, strict=True))
    assert (d == dist[i, j]).all()
    queries = codes[:300] ^ np.int64(0b101)  # the cross-join: queries against codes
    qi, cj, _ = pairs_within(codes, threshold, queries=queries)
    a, b = np.nonzero(hamming(queries[:, None], codes[None, :]) <= threshold)
    assert sorted(zip(qi.tolist(), cj.tolist(), strict=True)) == list(zip(a, b, strict=True))


def test_components_label_each_node_with_its_smallest_node() -> None:
    labels = components(7, np.array([5, 1, 3, 6]), np.array([3, 6, 2, 1]))
    assert labels.tolist() == [0, 1, 2, 2, 4, 2, 1]


# -- grouping, from per-image rows ---------------------------------------------------------------


def image_rows(ids: list[str], decoded: list[Decoded], **extra: list) -> pa.Table:
    """The input table of `DuplicatesPass._groups` (what its SQL reads from the store)."""
    hashes = HashesPass().process_decoded(pa.table({"image_id": ids}), decoded)
    n = len(ids)
    pixels = extra.get("pixels") or [(d.width or 0) * (d.height or 0) for d in decoded]
    columns = {
        "n_files": pa.array(extra.get("n_files", [1] * n), pa.int32()),
        "pixels": pa.array(pixels, pa.int64()),
        "taken": pa.array(extra.get("taken", [None] * n), pa.timestamp("us")),
        "sharpness": pa.array(extra.get("sharpness", [None] * n), pa.float64()),
    }
    table = hashes.drop_columns(["error", "detail", "ahash", "whash"])
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


def photo(name: str) -> Image.Image:
    if name.startswith("motorcycle"):
        return Image.fromarray(data.stereo_motorcycle()[name.endswith("right")])
    return Image.fromarray(getattr(data, name)()).convert("RGB")


def crop(img: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = img.size
    return img.crop((int(left * w), int(top * h), int(right * w), int(bottom * h)))


def edits(img: Image.Image) -> dict[str, tuple[Image.Image, dict]]:
    """Each labelled edit of a photo: (pixels, save options); PNG unless a quality is set."""
    half = img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)
    dark = Image.fromarray((np.asarray(img) * 0.8).round().astype(np.uint8))
    return {
        "orig": (img, {}),
        "q30": (img, {"quality": 30}),
        "half": (half, {}),
        "crop5": (crop(img, 0.05, 0.05, 0.95, 0.95), {}),
        "dark": (dark, {}),
        "jpeg": (img, {"quality": 75}),
        "flip": (img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {}),
        "rot90": (img.transpose(Image.Transpose.ROTATE_90), {}),
        # two crops overlapping by 16 % (IoU): different pictures, never duplicates
        "left": (crop(img, 0, 0, 0.58, 1), {}),
        "right": (crop(img, 0.42, 0, 1, 1), {}),
    }


PHOTOS = ("astronaut", "coffee", "camera", "chelsea", "motorcycle_left", "motorcycle_right")
STEREO = {"motorcycle_left", "motorcycle_right"}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, str]], pa.Table]:
    folder = tmp_path_factory.mktemp("labelled")
    names, decoded = [], []
    for name in PHOTOS:
        for edit, (img, options) in edits(photo(name)).items():
            path = folder / f"{name}-{edit}.{'jpg' if options else 'png'}"
            img.save(path, **(options or {"compress_level": 1}))
            names.append((name, edit))
            decoded.append(decode_image(str(path)))
    return names, image_rows([f"{i:03d}" for i in range(len(names))], decoded)


@pytest.mark.parametrize("invariant", [False, True])
def test_labelled_set_groups_every_edit_and_no_different_photo(labelled, invariant) -> None:
    names, table = labelled
    out = DuplicatesPass({"invariant": invariant})._groups(table).to_pylist()
    group = {names[int(r["image_id"])]: r["group_id"] for r in out}
    kind = {names[int(r["image_id"])]: r["kind"] for r in out}

    def together(a: tuple[str, str], b: tuple[str, str]) -> bool:
        return group.get(a, a) == group.get(b, b)

    wanted = {"q30", "half", "dark", "jpeg"} | ({"flip", "rot90"} if invariant else set())
    for name in PHOTOS:
        for edit in wanted:
            assert together((name, "orig"), (name, edit)), (name, edit)
        # Hard negatives: crops of one photo overlapping < 30 % stay apart.
        assert not together((name, "left"), (name, "right"))
    for a, b in itertools.combinations(names, 2):
        if together(a, b):  # precision 1.0: one photo (or the stereo pair) per group
            assert a[0] == b[0] or {a[0], b[0]} <= STEREO, (a, b)
            mirrored = {"flip", "rot90"} & {a[1], b[1]}
            assert invariant or not mirrored or a[1] == b[1], (a, b)
    # The stereo views (pHash 4, dHash ~10 apart) group: one picture to a 64-bit hash.
    assert together(("motorcycle_left", "orig"), ("motorcycle_right", "orig"))
    # 5 %-a-side crops are a 10 % zoom: about a third group (see the module docstring).
    crops = [together((name, "orig"), (name, "crop5")) for name in PHOTOS]
    assert sum(crops) >= 2 and crops[PHOTOS.index("camera")]
    if invariant:
        assert kind[("astronaut", "flip")] == "flip"
        assert kind[("astronaut", "rot90")] == "rotation"


def identical(n: int, **extra: list) -> pa.Table:
    """n images with the same hashes but different pixels: one near-duplicate group."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    decoded = [pixels(rgb, f"sha{i}") for i in range(n)]
    return image_rows([f"id{i}" for i in range(n)], decoded, **extra)


def pixels(rgb: np.ndarray, sha: str) -> Decoded:
    return Decoded(rgb, rgb.shape[1], rgb.shape[0], "RGB", False, sha, None, None)


def test_representative_rule_follows_the_configured_order() -> None:
    t2020, t2021, t2022 = (np.datetime64(f"{y}-01-01", "us") for y in (2020, 2021, 2022))
    table = identical(
        4,
        pixels=[100, 400, 400, 400],
        sharpness=[5.0, 1.0, 9.0, None],
        taken=[t2020, t2021, t2022, None],
    )

    def rep(order: tuple[str, ...]) -> str:
        out = DuplicatesPass({"representative": list(order)})._groups(table)
        return out["representative"][0].as_py()

    assert rep(("resolution", "sharpness", "oldest")) == "id2"  # ties at 400 px: sharpest
    assert rep(("resolution", "oldest")) == "id1"
    assert rep(("oldest",)) == "id0"
    assert rep(("sharpness", "resolution")) == "id2"
    assert rep(()) == "id0"  # nothing to go by: the smallest image_id
    rows = DuplicatesPass()._groups(table).to_pylist()
    assert {r["group_id"] for r in rows} == {"id0"} and {r["group_size"] for r in rows} == {4}
    assert [r["is_representative"] for r in rows] == [True, False, False, False]
    assert {r["kind"] for r in rows[1:]} == {"near"} and {r["distance"] for r in rows} == {0}


def test_byte_copies_alone_are_listed_and_singletons_are_not() -> None:
    rng = np.random.default_rng(1)
    decoded = [pixels(rng.integers(0, 256, (64, 64, 3), np.uint8), sha) for sha in "ab"]
    decoded.append(decode_image("/nonexistent.jpg"))  # no hashes, two files
    table = image_rows(["a", "b", "c"], decoded, n_files=[2, 1, 2], pixels=[1, 1, 0])
    rows = DuplicatesPass()._groups(table).to_pylist()
    assert [(r["image_id"], r["group_size"], r["kind"], r["n_files"]) for r in rows] == [
        ("a", 1, "representative", 2),
        ("c", 1, "representative", 2),
    ]


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="representative"):
        DuplicatesPass({"representative": ["largest"]})
    with pytest.raises(ConfigError, match="phash_threshold"):
        DuplicatesPass({"phash_threshold": 40})


# -- through the runner ------------------------------------------------------------------------


def test_runner_end_to_end(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    for folder in ("a", "b", "c", "d", "e", "broken"):
        (src / folder).mkdir(parents=True)
    astronaut = photo("astronaut")
    astronaut.save(src / "a" / "big.jpg", quality=90)
    (src / "a" / "big_copy.jpg").write_bytes((src / "a" / "big.jpg").read_bytes())
    astronaut.resize((256, 256), Image.Resampling.LANCZOS).save(src / "b" / "small.jpg")
    coffee = photo("coffee")
    coffee.save(src / "c" / "coffee.png")
    coffee.save(src / "c" / "coffee.bmp")  # the same pixels: older, so it represents
    os.utime(src / "c" / "coffee.bmp", (1e9, 1e9))
    camera = photo("camera")
    camera.save(src / "d" / "camera.png")
    camera.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(src / "d" / "mirrored.png")
    os.utime(src / "d" / "camera.png", (1e9, 1e9))
    photo("chelsea").save(src / "e" / "chelsea.jpg")
    (src / "broken" / "cut.jpg").write_bytes((src / "a" / "big.jpg").read_bytes()[:3000])

    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [src], workers=1, progress=False)
    passes = [("hashes", None), ("duplicates", None)]
    result = run_passes(store, passes, workers=1, progress=False)
    assert result["hashes"]["error_rows"] == 1 and not result["duplicates"]["skipped"]

    def table() -> dict[str, dict]:
        rows = store.sql(
            "select f.rel_path, d.* from duplicates d join files f using (image_id) "
            "where f.rel_path not like '%copy%'"
        ).to_pylist()
        return {r["rel_path"]: r for r in rows}

    rows = table()
    assert set(rows) == {"a/big.jpg", "b/small.jpg", "c/coffee.png", "c/coffee.bmp"}
    big, small = rows["a/big.jpg"], rows["b/small.jpg"]
    assert big["is_representative"] and big["n_files"] == 2 and big["group_size"] == 2
    assert small["representative"] == big["image_id"] and small["kind"] == "near"
    assert small["distance"] <= 4 and small["group_id"] == min(big["image_id"], small["image_id"])
    assert rows["c/coffee.bmp"]["is_representative"] and rows["c/coffee.png"]["kind"] == "pixel"

    again = run_passes(store, passes, workers=1, progress=False)
    assert again["duplicates"]["skipped"] and again["hashes"]["processed"] == 0

    invariant = run_passes(
        store, [("hashes", None), ("duplicates", {"invariant": True})], workers=1, progress=False
    )
    assert not invariant["duplicates"]["skipped"]
    assert invariant["duplicates"]["layer"] != result["duplicates"]["layer"]
    rows = table()  # `duplicates` reads the newest layer
    assert rows["d/mirrored.png"]["kind"] == "flip" and rows["d/camera.png"]["is_representative"]
    assert len(store.layer_dirs("duplicates")) == 2


# -- invariant matching at scale ---------------------------------------------------------------


def planted_table(n: int, seed: int) -> pa.Table:
    """`_groups`'s input for n images with random hashes, where a third of them are near
    copies of another image, plainly or under a planted dihedral transform k (the copy's
    `phash_dihedral[k]` a few bits from the original's pHash), and a few share pixels."""
    rng = np.random.default_rng(seed)

    def codes(*shape: int) -> np.ndarray:
        return rng.integers(-(2**63), 2**63 - 1, shape, dtype=np.int64)

    def noise(k: int) -> np.ndarray:  # 0..9 random bits
        bits = rng.random((k, 64)) < rng.integers(0, 10, (k, 1)) / 64
        return np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64).view(np.int64)

    p8, d8 = codes(n, 8), codes(n, 8)
    copy, orig = np.arange(0, n, 3), rng.integers(0, n, n // 3 + 1)[: len(range(0, n, 3))]
    k = rng.integers(0, 8, len(copy))  # 0: a plain near copy
    p8[copy, k] = p8[orig, 0] ^ noise(len(copy))
    d8[copy, k] = d8[orig, 0] ^ noise(len(copy))
    ph, dh = p8[:, 0].copy(), d8[:, 0].copy()  # transform 0 is the identity
    sha = [f"{i:064x}" for i in range(n)]
    for i in range(1, n, 97):
        sha[i] = sha[i - 1]
    return pa.table(
        {
            "image_id": [f"{i:08x}" for i in range(n)],
            "n_files": pa.array(np.ones(n, np.int32)),
            "pixels": pa.array(rng.integers(10**5, 10**7, n)),
            "taken": pa.array([None] * n, pa.timestamp("us")),
            "sharpness": pa.array(rng.random(n)),
            "phash": pa.array(ph),
            "dhash": pa.array(dh),
            "phash_dihedral": pa.FixedSizeListArray.from_arrays(pa.array(p8.ravel()), 8),
            "dhash_dihedral": pa.FixedSizeListArray.from_arrays(pa.array(d8.ravel()), 8),
            "pixel_sha256": sha,
        }
    )


@pytest.mark.parametrize("invariant", [False, True])
def test_groups_match_brute_force_on_planted_transforms(invariant: bool) -> None:
    n = 3000
    t = planted_table(n, seed=5)
    ph, dh = t["phash"].to_numpy(), t["dhash"].to_numpy()
    p8 = t["phash_dihedral"].combine_chunks().flatten().to_numpy().reshape(n, 8)
    d8 = t["dhash_dihedral"].combine_chunks().flatten().to_numpy().reshape(n, 8)
    # The rule by brute force: transform k of image a within 10/12 bits of b's plain hashes.
    near = np.zeros((n, n), bool)
    for k in range(8 if invariant else 1):
        near |= (hamming(p8[:, k, None], ph[None, :]) <= 10) & (
            hamming(d8[:, k, None], dh[None, :]) <= 12
        )
    a, b = np.nonzero(near)
    sha = np.array(t["pixel_sha256"].to_pylist())
    s = np.flatnonzero(sha[1:] == sha[:-1])
    labels = components(n, np.concatenate([a, s]), np.concatenate([b, s + 1]))
    expected: dict[int, set[str]] = {}
    for i in np.flatnonzero(np.bincount(labels, minlength=n)[labels] > 1):
        expected.setdefault(int(labels[i]), set()).add(f"{i:08x}")
    got: dict[str, set[str]] = {}
    for row in DuplicatesPass({"invariant": invariant})._groups(t).to_pylist():
        got.setdefault(row["group_id"], set()).add(row["image_id"])
    assert sorted(map(sorted, got.values())) == sorted(map(sorted, expected.values()))
    # the planted transforms do join groups only the invariant search finds
    assert len(expected) > (500 if invariant else 100)
