"""The report's plots are real PNG files of the expected size, whatever the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lamina.report.plots import _place_boxes, bar_chart, cluster_scatter, dims_scatter, histogram


def _png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        return im.size


def test_histogram_with_threshold_lines_and_edge_cases(tmp_path: Path) -> None:
    values = np.random.default_rng(0).random(500)
    size = _png(
        histogram(
            values,
            tmp_path / "h.png",
            title="dark",
            xlabel="brightness_p95",
            lines=[0.3],
            line_label="dark threshold",
        )
    )
    assert size == (460, 260)  # 4.6 x 2.6 inches at 100 dpi
    assert _png(histogram(np.array([]), tmp_path / "empty.png", title="t", xlabel="x")) == size
    same = np.full(10, 5.0)
    assert _png(histogram(same, tmp_path / "same.png", title="t", xlabel="x", log_x=True))
    with_nan = np.array([1.0, np.nan, np.inf, 3.0])
    assert _png(histogram(with_nan, tmp_path / "nan.png", title="t", xlabel="x", log_y=True))


def test_bars_dimensions_and_cluster_map(tmp_path: Path) -> None:
    assert _png(bar_chart(["JPEG", "PNG"], [10, 3], tmp_path / "b.png", title="formats"))
    assert _png(dims_scatter([640, 100], [480, 3000], tmp_path / "d.png")) == (500, 400)
    picture = tmp_path / "thumb.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture)
    rng = np.random.default_rng(1)
    path = cluster_scatter(
        rng.normal(size=50),
        rng.normal(size=50),
        np.arange(50) % 3,
        tmp_path / "m.png",
        medoids=[
            (0.0, 0.0, "0", picture),
            (1.0, 1.0, "1", None),
            (2.0, 2.0, "2", tmp_path / "gone.png"),
        ],
        title="map",
    )
    assert _png(path) == (1000, 800)
    with Image.open(path) as im:  # the medoid picture is drawn on the map
        colours = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert ((colours == (200, 30, 30)).all(axis=1)).sum() > 100


def test_map_boxes_never_overlap_and_stay_inside() -> None:
    box = (0.06, 0.07)
    points = np.full((60, 2), 0.5)  # every medoid at one spot: the worst crowding
    spots = [s for s in _place_boxes(points, box, points) if s is not None]
    assert len(spots) >= 40
    for k, a in enumerate(spots):
        assert box[0] / 2 <= a[0] <= 1 - box[0] / 2 and box[1] / 2 <= a[1] <= 1 - box[1] / 2
        for b in spots[k + 1 :]:
            assert abs(a[0] - b[0]) >= box[0] - 1e-9 or abs(a[1] - b[1]) >= box[1] - 1e-9


def test_the_map_stays_readable_at_10000_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    k = 70
    centres = rng.normal(size=(k, 2)) * 6
    labels = rng.integers(0, k, 10_000)
    xy = centres[labels] + rng.normal(size=(10_000, 2))
    colours = [(10 + 3 * c, 250 - 3 * c, 128) for c in range(40)]
    medoids = []
    for c in range(k):
        picture = None
        if c < 40:  # pictures for the 40 largest, as the report does
            picture = tmp_path / f"{c}.png"
            Image.new("RGB", (64, 48), colours[c]).save(picture)
        medoids.append((float(centres[c, 0]), float(centres[c, 1]), str(c), picture))
    path = cluster_scatter(xy[:, 0], xy[:, 1], labels, tmp_path / "map.png", medoids=medoids)
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    # Every picture is drawn whole (48 x 36 px after the shrink), none covered by another.
    for colour in colours:
        assert ((pixels == colour).all(axis=1)).sum() >= 48 * 36 * 0.8, colour
