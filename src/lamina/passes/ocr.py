"""The `ocr` map pass: the text in an image, per line with its box, through an OCR engine
(`lamina.backends.ocr`: RapidOCR offline by default, tesseract as an option).

The pass decodes its own pixels (long side <= `max_side`, 1600 by default): the shared
`working` decode (512 px) is too small for the text of a scanned page. Boxes are stored
in the coordinates of the original image (EXIF orientation applied), whatever size the
engine read. An image with no text is an empty, successful row (`text` = '', no lines);
an image that does not decode, or that the engine fails on, is an error row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from lamina.core.passes import Pass, Resources, register

LINE_TYPE = pa.struct(
    [
        ("text", pa.string()),
        ("confidence", pa.float32()),
        ("x0", pa.float32()),
        ("y0", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
    ]
)
OCR_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("engine", pa.string()),
        ("engine_version", pa.string()),
        ("text", pa.string()),
        ("n_lines", pa.int32()),
        ("mean_confidence", pa.float32()),
        ("script", pa.string()),
        ("lines", pa.list_(LINE_TYPE)),
        ("seconds", pa.float32()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class OcrPassConfig:
    """`engine`: an OCR engine spec (`rapidocr`, `tesseract[:lang]`); `max_side`: the long
    side the image is read at (never upscaled); `min_confidence`: lines below it are
    dropped; `threads`: the engine's threads per worker (how to run, not what)."""

    engine: str = "rapidocr"
    max_side: int = 1600
    min_confidence: float = 0.5
    threads: int = 1


@register
class OcrPass(Pass):
    """Full text, script, mean confidence and lines (text, confidence, box) per image."""

    name = "ocr"
    version = "1"
    Config = OcrPassConfig
    run_only = ("threads",)
    reads = ("images",)
    schema = OCR_SCHEMA
    # RapidOCR's three ONNX sessions plus a 1600 px page: ~600 MB per worker measured.
    resources = Resources(cpu=1.0, memory_mb=800)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        from lamina.backends.ocr import parse_engine

        parse_engine(self.config.engine)  # a bad spec fails when the pass is made
        self._engine: Any = None

    def describe(self) -> dict[str, Any]:
        from lamina.backends.ocr import check_engine

        check_engine(self.config.engine)  # not installed: fail before any work, with the fix
        return {"engine": self.config.engine}

    def setup(self) -> None:
        from lamina.backends.ocr import load_engine

        self._engine = load_engine(self.config.engine, threads=self.config.threads)

    def process(self, batch: pa.Table) -> pa.Table:
        from lamina.backends.ocr import guess_script
        from lamina.core.decode import decode_image

        if self._engine is None and batch.num_rows:
            self.setup()
        engine = self._engine
        cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for image_id, path in zip(
            batch["image_id"].to_pylist(), batch["abs_path"].to_pylist(), strict=True
        ):
            started = time.perf_counter()
            cols["image_id"].append(image_id)
            cols["engine"].append(engine.id)
            cols["engine_version"].append(engine.version)
            decoded = decode_image(path, self.config.max_side)
            lines: list[dict[str, Any]] = []
            error = decoded.failure
            if error is None:
                rgb = decoded.pixels()
                # Boxes back to the full (oriented) image: the decode may have shrunk it.
                scale = (decoded.width or rgb.shape[1]) / rgb.shape[1]
                try:
                    found = engine.read(rgb)
                except Exception as exc:  # the engine's own failure on this image: a row
                    error = f"ocr_error: {type(exc).__name__}: {exc}"
                    found = []
                for line in found:
                    if line.confidence < self.config.min_confidence or not line.text:
                        continue
                    x0, y0, x1, y1 = (round(v * scale, 1) for v in line.box)
                    lines.append(
                        {"text": line.text, "confidence": line.confidence,
                         "x0": x0, "y0": y0, "x1": x1, "y1": y1}
                    )  # fmt: skip
            text = "\n".join(line["text"] for line in lines)
            ok = error is None
            cols["text"].append(text if ok else None)
            cols["n_lines"].append(len(lines) if ok else None)
            confidences = [line["confidence"] for line in lines]
            cols["mean_confidence"].append(
                sum(confidences) / len(confidences) if confidences else None
            )
            cols["script"].append(guess_script(text) if ok else None)
            cols["lines"].append(lines if ok else None)
            cols["seconds"].append(time.perf_counter() - started)
            cols["error"].append(error)
        return pa.Table.from_pydict(cols, schema=self.schema)
