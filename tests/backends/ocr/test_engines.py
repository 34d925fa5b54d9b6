"""The OCR engines on rendered text: known strings back, boxes where the ink is."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lamina.backends.ocr import check_engine, guess_script, load_engine, parse_engine
from lamina.core.errors import ConfigError, LaminaError
from tests.text_images import cer, render_lines

# Held out: the space-restoring threshold was chosen on other strings (see rapid.py).
PLANTED = [
    "Carl Linnaeus Uppsala 1753",
    "Flora of the alpine meadows",
    "Catalogue number 50127 sheet B",
    "Received from Kew Gardens",
]


@pytest.mark.parametrize("size", [22, 36])
def test_rapidocr_reads_planted_lines_with_their_boxes(tmp_path: Path, size: int) -> None:
    path = tmp_path / "page.png"
    boxes = render_lines(path, PLANTED, size=size, width=1000)
    engine = load_engine("rapidocr")
    lines = engine.read(np.asarray(Image.open(path).convert("RGB")))
    assert len(lines) == len(PLANTED)
    assert cer("\n".join(line.text for line in lines), "\n".join(PLANTED)) < 0.05
    for line, (x0, y0, x1, y1) in zip(lines, boxes, strict=True):
        assert 0.5 <= line.confidence <= 1.0
        # The detector pads its boxes a little around the ink.
        assert abs(line.box[0] - x0) < size and abs(line.box[2] - x1) < size
        assert line.box[1] < (y0 + y1) / 2 < line.box[3]


def test_a_blank_image_has_no_lines() -> None:
    assert load_engine("rapidocr").read(np.full((300, 400, 3), 255, np.uint8)) == []


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Debian's tesseract-ocr absent")
def test_tesseract_reads_planted_lines(tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    render_lines(path, PLANTED, size=30, width=1000)
    lines = load_engine("tesseract").read(np.asarray(Image.open(path).convert("RGB")))
    assert cer("\n".join(line.text for line in lines), "\n".join(PLANTED)) < 0.05
    assert load_engine("tesseract").read(np.full((200, 200, 3), 255, np.uint8)) == []


def test_an_engine_not_installed_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LaminaError) as info:
        check_engine("tesseract")
    assert "apt-get install tesseract-ocr" in (info.value.hint or "")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LaminaError) as info:
        check_engine("rapidocr")
    assert "pip install 'lamina[ocr]'" in (info.value.hint or "")


def test_specs_are_checked() -> None:
    assert parse_engine("tesseract:eng+deu") == ("tesseract", "eng+deu")
    for bad in ("easyocr", "tesseract:eng;rm", "rapidocr:x"):
        with pytest.raises(ConfigError):
            parse_engine(bad)


def test_guess_script() -> None:
    assert guess_script("Herbarium 1753") == "latin"
    assert guess_script("Ελληνικά") == "greek"
    assert guess_script("") is None
