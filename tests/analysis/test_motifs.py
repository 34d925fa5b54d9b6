"""Motifs end to end: a stamp planted into many sample photos at varying positions and
scales is segmented, embedded and clustered into a motif of its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lamina.analysis.motifs import cooccurrence, split_by_shape
from lamina.core.masks import decode_rle
from lamina.core.store import Store
from lamina.jobs.motifs import MotifsConfig, motifs
from lamina.jobs.scan import scan_sources
from lamina.jobs.segment import SegmentConfig, segment
from lamina.sample import package_photos

STAMP = (230, 20, 200)  # a magenta five-pointed star
RULER = (245, 235, 200)  # ivory
CHART = [(220, 40, 40), (240, 200, 40), (40, 160, 60), (40, 90, 200), (250, 250, 250), (90, 90, 90)]
# object kind -> (the mask a segment of it should match, all the pixels drawn for it)
Planted = dict[str, tuple[np.ndarray, np.ndarray]]


def star_mask(size: int) -> np.ndarray:
    """A filled five-pointed star in a size x size box."""
    im = Image.new("L", (size, size), 0)
    c = size / 2
    points = []
    for k in range(10):
        r = c * (0.95 if k % 2 == 0 else 0.42)
        a = np.pi / 2 + k * np.pi / 5
        points.append((c + r * np.cos(a), c - r * np.sin(a)))
    ImageDraw.Draw(im).polygon(points, fill=255)
    return np.asarray(im) > 127


def ruler(width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A horizontal ruler `width` px long, 1/8 as high: ivory with black ticks (every
    1/20, a quarter of its height, the halves half); returns (RGB, its pixels, the mask a
    segment should match: the whole ruler). Ticks two thirds high split the body into
    pieces on seed 7 (best IoU 0.44-0.68 in 5 of 20 photos)."""
    height = max(8, width // 8)
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = RULER
    tick = max(1, width // 120)
    for k in range(1, 20):
        x = k * width // 20
        rgb[: height * (2 if k % 2 == 0 else 1) // 4, x : x + tick] = 0
    whole = np.ones((height, width), bool)
    return rgb, whole, whole


def colour_chart(width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A colour bar `width` px long, ~1/3 as high: six patches in a thick black frame on a
    white card edge (as on herbarium scans: the card keeps the frame apart from a dark
    background); returns (RGB, its pixels, the mask a segment should match: the black
    frame, the part that is the same in every chart, where each patch falls to its own
    colour's segment)."""
    inner_h = max(12, width // 3)
    card = max(2, inner_h // 10)
    height = inner_h + 2 * card
    rgb = np.full((height, width, 3), 250, np.uint8)
    frame = np.zeros((height, width), bool)
    frame[card : height - card, card : width - card] = True
    rgb[frame] = 0
    edge = max(2, inner_h // 6)
    cell = (width - 2 * card - edge) // len(CHART)
    for k, colour in enumerate(CHART):
        x0 = card + edge + k * cell
        rgb[card + edge : height - card - edge, x0 : x0 + cell - edge] = colour
        frame[card + edge : height - card - edge, x0 : x0 + cell - edge] = False
    return rgb, np.ones((height, width), bool), frame


def planted_collection(root: Path, n_planted: int = 20, seed: int = 7) -> dict[str, Planted]:
    """Sample photos (long side 256) as PNGs, into the first `n_planted` whose short side
    is at least 128 px: the stamp (15-30% of the short side), a ruler (45-70% of the long
    side, on a random edge band) and a colour chart (35-55% of the long side), each at a
    random place and none overlapping another; returns file name -> what is where: for
    each object the mask a segment of it should match and the footprint drawn for it."""
    rng = np.random.default_rng(seed)
    photos = package_photos()
    truth: dict[str, Planted] = {}
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(sorted(photos)):
        im = Image.fromarray(photos[name]).convert("RGB")
        im.thumbnail((256, 256))
        a = np.array(im)
        file = f"{i:02d}-{name.replace('/', '_')}.png"
        h, w = a.shape[:2]
        if len(truth) < n_planted and min(h, w) >= 128:
            taken = np.zeros((h, w), bool)
            planted: Planted = {}
            s = int(min(h, w) * rng.uniform(0.15, 0.3))
            star = star_mask(s)
            objects = [
                ("stamp", np.where(star[..., None], np.array(STAMP, np.uint8), 0), star, star),
                ("ruler", *ruler(int(max(h, w) * rng.uniform(0.45, 0.7)))),
                ("chart", *colour_chart(int(max(h, w) * rng.uniform(0.35, 0.55)))),
            ]
            for kind, rgb, drawn, match in objects:
                oh, ow = drawn.shape
                ow, oh = min(ow, w - 2), min(oh, h - 2)
                rgb, drawn, match = rgb[:oh, :ow], drawn[:oh, :ow], match[:oh, :ow]
                for _ in range(200):  # a free place (else the object is left out)
                    y, x = int(rng.integers(0, h - oh)), int(rng.integers(0, w - ow))
                    if not taken[max(0, y - 3) : y + oh + 3, max(0, x - 3) : x + ow + 3].any():
                        break
                else:
                    continue
                taken[y : y + oh, x : x + ow] |= drawn
                a[y : y + oh, x : x + ow][drawn] = rgb[drawn]
                mask = np.zeros((h, w), bool)
                mask[y : y + oh, x : x + ow] = match
                footprint = np.zeros((h, w), bool)
                footprint[y : y + oh, x : x + ow] = drawn
                planted[kind] = (mask, footprint)
            truth[file] = planted
        Image.fromarray(a).save(root / file)
    return truth


def planted_recall(
    store: Store, truth: dict[str, Planted], kind: str
) -> tuple[float, float, int, int]:
    """(recall, precision, motif, members) of the motif a planted object forms: per image,
    the motif of the segment that best matches the object's mask (IoU >= 0.5); the motif
    most of them share; recall = images whose object is in it / images planted; precision
    = its members lying mostly (>= 50%) inside an object of the kind (all its drawn pixels:
    a chart's white card ring is part of the chart).

    Example:
        >>> planted_recall(store, truth, "ruler")  # doctest: +SKIP
        (1.0, 0.95, 4, 21)
    """
    files = store.sql("select image_id, rel_path from files where image_id is not null")
    name_of = dict(zip(files["image_id"].to_pylist(), files["rel_path"].to_pylist(), strict=True))
    motif_of = {
        (r["image_id"], r["segment_id"]): r["motif"] for r in store.table("motifs").to_pylist()
    }
    best: dict[str, tuple[float, int | None]] = {}  # file -> (IoU, motif) of its best match
    inside: dict[tuple[str, int], float] = {}
    for r in store.table("segments").to_pylist():
        name = name_of.get(r["image_id"])
        if r["segment_id"] is None or name not in truth or kind not in truth[name]:
            continue
        want, drawn = truth[name][kind]
        m = decode_rle({"size": [r["frame_height"], r["frame_width"]], "counts": r["rle"]})
        key = (r["image_id"], r["segment_id"])
        inside[key] = (m & drawn).sum() / m.sum()
        iou = (m & want).sum() / (m | want).sum()
        if iou >= 0.5 and iou > best.get(name, (0.0, None))[0]:
            best[name] = (iou, motif_of.get(key))
    planted = sum(kind in t for t in truth.values())
    seen = [m for _, m in best.values() if m is not None]
    if not seen:
        return 0.0, 0.0, -1, 0
    top = max(set(seen), key=seen.count)
    members = [k for k, m in motif_of.items() if m == top]
    precision = sum(inside.get(k, 0.0) >= 0.5 for k in members) / len(members)
    return seen.count(top) / planted, precision, top, len(members)


@pytest.mark.slow
def test_planted_stamp_ruler_and_chart_each_form_their_own_motif(tmp_path: Path) -> None:
    """Seed 47: with regions merged by median colour (whole rulers) the ruler and the chart
    frame shared one k-means motif (ruler precision 0.32) until motifs of two distinct
    shapes were split (`split_by_shape`). Seeds 7, 11, 31, 47, 59, 83, 97 and 113 are
    development seeds; bench/results/segment.md has the seeds first run after the last
    change."""
    truth = planted_collection(tmp_path / "src", seed=47)
    assert all(len(t) == 3 for t in truth.values())
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tmp_path / "src"], workers=1, progress=False)
    # lamina's default of 48 segments per image: with 32, the largest-first cut dropped
    # small stamps in busy photos (3 of 20 on seed 7).
    seg = segment(store, SegmentConfig(workers=1, progress=False))
    assert seg.errors == 0
    found = motifs(store, MotifsConfig(workers=1, progress=False))
    assert found.segments > 200 and found.motifs >= 5
    summary = {r["motif"]: r for r in store.table("motif_summary").to_pylist()}
    measured = {kind: planted_recall(store, truth, kind) for kind in ("stamp", "ruler", "chart")}
    for kind, (recall, precision, top, members) in measured.items():
        print(f"{kind} motif {top}: recall {recall:.2f}, precision {precision:.2f}, "
              f"{members} members, {found.segments} segments, {found.motifs} motifs")  # fmt: skip
    tops = {kind: m[2] for kind, m in measured.items()}
    for kind, (recall, precision, top, _) in measured.items():
        # The issue asks >= 0.9 (seed 47: stamp 1.00, ruler 0.95, chart 1.00).
        assert recall >= 0.9, kind
        # Most of the motif is the object (development seeds 7, 11, 31, 47, 113 with the
        # shape split: the stamp's 0.83-1.00, with star-shaped segments half in the stamp;
        # the ruler's 0.84-1.00; the chart's 0.83-0.95; seed 47: 1.00, 0.95, 0.95).
        assert precision >= (0.75 if kind == "stamp" else 0.5), kind
        assert summary[top]["images"] >= recall * len(truth)
    assert len(set(tops.values())) == 3  # each its own motif
    stamp = tops["stamp"]
    per_image = store.sql(
        f"select count(distinct image_id) from image_motifs where motif = {stamp}"
    )
    assert per_image.column(0)[0].as_py() == summary[stamp]["images"]


def test_cooccurrence_counts_lift_and_pmi() -> None:
    rows = cooccurrence({"a": {1, 2}, "b": {1, 2}, "c": {1}, "d": {3}})
    assert rows == [
        {"motif_a": 1, "motif_b": 2, "images_a": 3, "images_b": 2, "images_both": 2,
         "lift": pytest.approx(4 * 2 / 6), "pmi": pytest.approx(np.log2(4 / 3))}
    ]  # fmt: skip


def _shapes(rng: np.random.Generator, thin: float, solid: float, n: int) -> np.ndarray:
    return np.stack([rng.normal(thin, 0.005, n), rng.normal(solid, 0.02, n)], 1)


def test_a_motif_of_two_distinct_shapes_is_split_in_two() -> None:
    """Whole rulers (1:8, solid) and colour-chart frames (~1:2.5, a hollow frame) gave
    crops the embedder put in one k-means cluster (seeds 47 and 113: ruler precision
    0.32); their shapes are two tight groups far apart, so the motif splits in two."""
    rng = np.random.default_rng(0)
    shape = np.vstack(
        [_shapes(rng, 0.12, 0.9, 20), _shapes(rng, 0.47, 0.2, 38), rng.uniform(0, 1, (40, 2))]
    )
    labels = np.r_[np.zeros(58, int), np.ones(40, int)]
    out = split_by_shape(labels, shape[:, 0], shape[:, 1])
    assert len(set(out[:20].tolist())) == 1 and len(set(out[20:58].tolist())) == 1
    assert out[0] != out[20] and set(out[:58].tolist()).isdisjoint(out[58:].tolist())
    # The other motif spreads its shapes over one broad mode: it is left whole.
    assert len(set(out[58:].tolist())) == 1 and out.max() == 2


def test_a_motif_of_one_shape_with_a_few_odd_members_is_not_split() -> None:
    rng = np.random.default_rng(1)
    # Rulers, 4 of 20 with masks the ticks notched (solidity ~0.45, development seed 11):
    # one shape with a few odd members, not two motifs.
    shape = np.vstack([_shapes(rng, 0.12, 0.9, 16), _shapes(rng, 0.14, 0.45, 4)])
    labels = np.zeros(20, int)
    assert split_by_shape(labels, shape[:, 0], shape[:, 1]).tolist() == [0] * 20
    # Null shapes (no geometry) take the median and change nothing.
    shape[:3] = np.nan
    assert split_by_shape(labels, shape[:, 0], shape[:, 1]).tolist() == [0] * 20
    nothing = np.full(20, np.nan)  # segments with no geometry at all (an SVD failed on NaN)
    assert split_by_shape(labels, nothing, nothing).tolist() == [0] * 20


def test_a_negative_shape_split_is_refused() -> None:
    from lamina.analysis.motifs import MotifsConfig as PassConfig
    from lamina.core.errors import ConfigError

    with pytest.raises(ConfigError, match="shape_split >= 0"):
        PassConfig(shape_split=-1.0)
    assert PassConfig(shape_split=0.0).shape_split == 0.0  # 0: no split


def test_split_by_shape_keeps_a_motif_of_one_shape_whose_values_barely_differ() -> None:
    """Two groups of exactly repeated shapes (small masks give few distinct values)
    that differ by a hair are one shape: their zero spread must not make Ashman's D
    infinite. Alone, and beside a motif whose shapes spread widely."""
    solid = np.r_[np.full(6, 0.900), np.full(6, 0.901)]
    thin = np.full(12, 0.5)
    assert split_by_shape(np.zeros(12, int), thin, solid).tolist() == [0] * 12
    rng = np.random.default_rng(3)
    spread = rng.uniform(0.05, 1.0, (40, 2))
    labels = np.r_[np.zeros(12, int), np.ones(40, int)]
    out = split_by_shape(labels, np.r_[thin, spread[:, 0]], np.r_[solid, spread[:, 1]])
    assert out.tolist() == labels.tolist()
    # Two truly distinct shapes, each repeated exactly, are still split.
    far = split_by_shape(np.zeros(12, int), thin, np.r_[np.full(6, 0.9), np.full(6, 0.3)])
    assert far.tolist() == [0] * 6 + [1] * 6
