"""The signals pass: known answers on real photos (skimage.data) and generated images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from lamina.core.decode import decode_batch
from lamina.core.errors import ConfigError, LaminaError
from lamina.core.passes import get_pass
from lamina.core.runner import image_inputs, run_pass
from lamina.core.store import Store
from lamina.jobs.scan import scan_sources
from lamina.passes.signals import SignalsPass, _lab_histogram, compute_signals, lab_bins

data = pytest.importorskip("skimage.data")

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven")


def rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return image
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


def printed_page(width: int = 900, height: int = 700, size: int = 20) -> np.ndarray:
    """Lines of dark print on light paper, as a photographed page would show them."""
    rng = np.random.default_rng(3)
    page = Image.new("L", (width, height), 232)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=size)
    for top in range(30, height - 40, int(size * 1.6)):
        draw.text((30, top), " ".join(rng.choice(WORDS, 9)), fill=35, font=font)
    return rgb(np.asarray(page))


def test_blur_lowers_laplacian_and_raises_blur_effect() -> None:
    astronaut = data.astronaut()
    s = [compute_signals(gaussian(astronaut, sigma)) for sigma in (0, 1, 2, 4)]
    lap = [x["laplacian_var"] for x in s]
    blur = [x["blur_effect"] for x in s]
    assert lap == sorted(lap, reverse=True) and len(set(lap)) == 4
    assert blur == sorted(blur) and len(set(blur)) == 4
    assert blur[0] < 0.45 < blur[3] and min(blur) >= 0 and max(blur) <= 1


def test_blur_effect_is_skimages() -> None:
    measure = pytest.importorskip("skimage.measure")
    camera = data.camera()
    half = np.asarray(Image.fromarray(camera).reduce(2), np.float64)
    expected = measure.blur_effect(half, h_size=11)
    assert compute_signals(rgb(camera))["blur_effect"] == pytest.approx(expected, abs=1e-6)


def test_darkened_copy_is_darker() -> None:
    coffee = data.coffee()
    dark = (coffee * 0.25).astype(np.uint8)
    s, d = compute_signals(coffee), compute_signals(dark)
    assert d["brightness_mean"] < 0.35 * s["brightness_mean"]
    assert d["dark_fraction"] > s["dark_fraction"] + 0.3
    assert d["brightness_p95"] < s["brightness_p95"] and d["light_fraction"] == 0
    assert 0 <= d["brightness_p05"] <= d["brightness_p50"] <= d["brightness_p95"] <= 1


@pytest.mark.parametrize("sigma", [5, 10, 20])
def test_noise_sigma_is_estimated_within_25_percent(sigma: float) -> None:
    smooth = gaussian(data.camera(), 2).astype(np.float64)
    rng = np.random.default_rng(int(sigma))
    noisy = np.clip(np.rint(smooth + rng.normal(0, sigma, smooth.shape)), 0, 255)
    estimate = compute_signals(rgb(noisy.astype(np.uint8)))["noise_sigma"]
    assert estimate == pytest.approx(sigma, rel=0.25)
    assert compute_signals(rgb(smooth.astype(np.uint8)))["noise_sigma"] < 1.5


@pytest.mark.parametrize("sigma", [10, 20, 30])
def test_chroma_noise_reads_colour_noise_and_not_texture(sigma: float, tmp_path: Path) -> None:
    # Noise drawn per channel (as a sensor's) shows in the colour differences; fine texture and
    # a downscaled grass photo move the channels together and read near 0, however sharp.
    grass = np.asarray(Image.fromarray(rgb(data.grass())).reduce(2))
    rng = np.random.default_rng(int(sigma))
    smooth = gaussian(data.astronaut(), 2).astype(np.float64)
    noisy = np.clip(np.rint(smooth + rng.normal(0, sigma, smooth.shape)), 0, 255).astype(np.uint8)
    path = tmp_path / "noisy.jpg"
    Image.fromarray(noisy).save(path, quality=92)  # 4:2:0 chroma, as cameras save it
    jpeg = decode_batch(pa.table({"abs_path": [str(path)]}), "working")[0].rgb
    assert compute_signals(noisy)["chroma_noise"] == pytest.approx(sigma, rel=0.25)
    if sigma >= 20:  # q92 keeps strong colour noise (4:2:0 halves it); weak noise it smooths
        assert compute_signals(jpeg)["chroma_noise"] > 0.3 * sigma
    assert compute_signals(grass)["chroma_noise"] < 0.5
    assert compute_signals(smooth.astype(np.uint8))["chroma_noise"] < 1.5
    assert compute_signals(grass)["noise_sigma"] > 5  # which luma alone takes for noise


def test_grey_by_content_whatever_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "grey_as_rgb.jpg"
    Image.fromarray(rgb(data.camera())).save(path, quality=85)  # an RGB JPEG of grey pixels
    grey = compute_signals(decode_batch(pa.table({"abs_path": [str(path)]}), "working")[0].rgb)
    colour = compute_signals(data.astronaut())
    assert grey["grey_by_content"] and grey["chroma_mean"] < 0.01
    assert grey["saturation_mean"] < 0.02 and grey["colorfulness"] < 2
    assert not colour["grey_by_content"] and colour["chroma_mean"] > 0.1
    assert colour["colorfulness"] > 30 and colour["saturation_mean"] > 0.2


def test_text_scores_above_photos() -> None:
    photos = [compute_signals(getattr(data, n)())["text_score"] for n in ("chelsea", "coffee")]
    photos.append(compute_signals(data.astronaut())["text_score"])
    page = compute_signals(rgb(data.page()))["text_score"]
    printed = compute_signals(printed_page())["text_score"]
    assert max(photos) < 0.05
    assert page > 0.5 and printed > 0.5
    for value in (*photos, page, printed):
        assert 0.0 <= value <= 1.0


def test_histograms_are_normalised_and_lab_matches_skimage() -> None:
    color = pytest.importorskip("skimage.color")
    s = compute_signals(data.chelsea(), hist_bins=8)
    for name in ("hist_rgb", "hist_lab"):
        channels = np.array(s[name]).reshape(3, 8)
        assert channels.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0])
    pixels = data.coffee()[::4, ::4].reshape(-1, 3)
    lab = color.rgb2lab(pixels.reshape(1, -1, 3)).reshape(-1, 3)
    expected = np.concatenate(
        [
            np.bincount(np.floor((lab[:, c] - lo) / w).clip(0, 15).astype(int), minlength=16)
            for c, (lo, w) in enumerate(lab_bins(16))
        ]
    ) / len(pixels)
    # float32 and the tabulated cube root may move a pixel lying on a bin edge
    assert np.abs(np.array(_lab_histogram(pixels, 16)) - expected).max() < 1e-3


def test_rows_errors_and_config() -> None:
    p = get_pass("signals")
    assert p.decode == "working" and p.schema.names[0] == "image_id"
    assert p.schema.field("hist_rgb").type == pa.list_(pa.float32(), 48)
    assert get_pass("signals", {"hist_bins": 8}).schema.field("hist_lab").type.list_size == 24
    with pytest.raises(ConfigError, match="work_side"):
        get_pass("signals", {"work_side": 1024})


def test_corrupt_file_gives_an_error_row(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(data.chelsea()).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:5000])
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (6, 5), (10, 20, 30)).save(tiny)
    paths = [str(good), str(bad), str(tiny)]
    batch = pa.table({"image_id": ["good", "bad", "tiny"], "abs_path": paths})
    out = get_pass("signals").process(batch).to_pylist()
    # Too small to measure some signals: those are null, the row is no error.
    assert out[2]["error"] is None and out[2]["brightness_mean"] is not None
    assert out[2]["text_score"] is None and out[2]["fft_high_ratio"] is None
    assert out[0]["error"] is None and out[0]["width"] == 451 and out[0]["height"] == 300
    assert out[0]["aspect_ratio"] == pytest.approx(451 / 300)
    assert out[1]["error"] in ("truncated", "decode_error") and out[1]["detail"]
    assert all(out[1][k] is None for k in ("width", "brightness_mean", "hist_rgb", "alpha"))


def test_end_to_end_through_the_runner(tree: Path, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    scan_sources(store, [tree], workers=1, progress=False)
    images = image_inputs(store)
    first = run_pass(store, "signals", workers=1, progress=False)
    assert first["processed"] == images.num_rows == 4 and first["error_rows"] == 1
    table = store.table("signals")
    assert sorted(table["image_id"].to_pylist()) == sorted(images["image_id"].to_pylist())
    rows = {r["image_id"]: r for r in table.to_pylist()}
    by_status = dict(zip(images["image_id"].to_pylist(), images["status"].to_pylist(), strict=True))
    for image_id, row in rows.items():
        ok = by_status[image_id] == "ok"
        assert (row["error"] is None) == ok
        assert (row["width"], row["height"]) == ((64, 48) if ok else (None, None))
    again = run_pass(store, "signals", workers=1, progress=False)
    assert again["processed"] == 0 and again["already_done"] == 4


def test_skipped_signals_are_null_and_the_rest_unchanged() -> None:
    photo = data.chelsea()
    full = compute_signals(photo)
    skip = ("hist_lab", "hist_rgb", "text_score", "noise_sigma", "chroma_noise")
    part = compute_signals(photo, skip=skip)
    for name, value in full.items():
        if name in skip:
            assert value is not None and part[name] is None, name
        else:
            assert part[name] == value, name
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    assert compute_signals(photo, grey=grey) == full  # the shared luma changes nothing


def test_unknown_skip_is_refused() -> None:
    with pytest.raises(ConfigError, match="brightness_mean"):
        SignalsPass({"skip": ["brightness_mean"]})


def test_creating_the_pass_checks_scipy_without_importing_it() -> None:
    # The main process of `lamina sense` creates the pass: importing scipy.ndimage there
    # cost ~0.3 s of CPU and ~20 MB for nothing (only workers measure pixels).
    code = (
        "import sys, lamina.catalog; from lamina.core.passes import get_pass; "
        "get_pass('signals'); print('scipy.ndimage' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_required_module_is_a_clear_error() -> None:
    class NeedsMissing(SignalsPass):
        requires = (("lamina_no_such_package.sub", "lamina-no-such-package>=1"),)

    with pytest.raises(LaminaError, match="lamina-no-such-package") as info:
        NeedsMissing()
    assert "pip install" in (info.value.hint or "")
