"""The `segment_text` global pass: the OCR text inside each segment (issue 18: OCR on
segments, as the comics project aligned its OCR lines with the detected panels).

It reads the current `ocr` and `segment` layers and places every OCR line in the smallest
segment that encloses it: the segment's mask, holes filled, holds the line's centre, and
its box holds the line's box (the letters of a word are often segments of their own: they
are not the region the word is in; the page around a panel encloses the line too, but the
panel is the region it belongs to, as a balloon would be inside a panel with SAM's nested
masks). A line no segment encloses is in none.
One row per segment with at least one line: the segment's id, its box and the lines'
boxes in original pixels (EXIF orientation applied, like the `ocr` table's), their text
joined top to bottom by newlines, and the count. The engine reads the whole image once:
no crop is read again, so a segment's text is exactly the page's lines that fall in it.
`lamina ocr` runs it after reading when the store has segments; `lamina segment` then
`lamina ocr` (or the other order, and `lamina ocr` again) fills it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from lamina.core.masks import decode_rle
from lamina.core.passes import Pass, Resources, register
from lamina.passes.ocr import LINE_TYPE

SEGMENT_TEXT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("segment_id", pa.int32()),
        ("x0", pa.float32()),
        ("y0", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("text", pa.string()),
        ("n_lines", pa.int32()),
        ("lines", pa.list_(LINE_TYPE)),
    ]
)

_SQL = """
select s.image_id, s.frame_width, s.frame_height, s.scale_x, s.scale_y, s.segments, o.lines
from segment s join ocr o using (image_id)
where s.status = 'ok' and o.error is null and o.n_lines > 0
order by s.image_id
"""


def place_lines(
    segments: list[dict[str, Any]], lines: list[dict[str, Any]], frame: tuple[int, int],
    scale: tuple[float, float],
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:  # fmt: skip
    """`(segment, its lines)` for the segments that are the smallest to enclose a line
    (see the module docstring); `frame` is the segment masks' (height, width), `scale`
    the original pixels per frame pixel (x, y).

    Example:
        >>> import numpy as np
        >>> from lamina.core.masks import encode_rle
        >>> mask = np.zeros((4, 8), bool); mask[:, 4:] = True
        >>> seg = {"segment_id": 0, "rle": encode_rle(mask)["counts"], "bbox": [4, 0, 4, 4]}
        >>> line = {"text": "hi", "x0": 10.0, "y0": 1.0, "x1": 14.0, "y1": 5.0}
        >>> [s["segment_id"] for s, _ in place_lines([seg], [line], (4, 8), (2.0, 2.0))]
        [0]
    """
    h, w = frame
    sx, sy = scale
    centres = [
        (
            min(w - 1, max(0, int((line["x0"] + line["x1"]) / 2 / sx))),
            min(h - 1, max(0, int((line["y0"] + line["y1"]) / 2 / sy))),
        )
        for line in lines
    ]
    from scipy.ndimage import binary_fill_holes

    # The smallest enclosing segment of each line: (area, segment index) or None.
    best: list[tuple[int, int] | None] = [None] * len(lines)
    for k, seg in enumerate(segments):
        # Holes filled: the letters of a line are often segments of their own, holes in
        # the panel around them.
        mask = binary_fill_holes(decode_rle({"size": [h, w], "counts": seg["rle"]}))
        area = int(mask.sum())
        bx, by, bw, bh = seg["bbox"]
        box = ((bx - 2) * sx, (by - 2) * sy, (bx + bw + 2) * sx, (by + bh + 2) * sy)
        for i, (line, (x, y)) in enumerate(zip(lines, centres, strict=True)):
            encloses = (
                mask[y, x]
                # The whole line: a word's own ink is not the region it is in.
                and box[0] <= line["x0"] and box[1] <= line["y0"]
                and line["x1"] <= box[2] and line["y1"] <= box[3]
            )  # fmt: skip
            if encloses and (best[i] is None or area < best[i][0]):  # type: ignore[index]
                best[i] = (area, k)
    out = []
    for k, seg in enumerate(segments):
        inside = [line for line, b in zip(lines, best, strict=True) if b and b[1] == k]
        if inside:
            out.append((seg, sorted(inside, key=lambda li: (li["y0"], li["x0"]))))
    return out


@register
class SegmentTextPass(Pass):
    """The OCR lines inside each segment (one row per segment that holds text)."""

    name = "segment_text"
    version = "1"
    kind = "global"
    reads = ("ocr", "segment")
    schema = SEGMENT_TEXT_SCHEMA
    resources = Resources(cpu=1.0, memory_mb=512)

    def compute(self, store: Any) -> pa.Table:
        tables = store.available_tables()
        if "ocr" not in tables or "segment" not in tables:
            return self.schema.empty_table()
        cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for row in store.sql(_SQL).to_pylist():
            frame = (int(row["frame_height"]), int(row["frame_width"]))
            scale = (float(row["scale_x"] or 1.0), float(row["scale_y"] or 1.0))
            for seg, lines in place_lines(row["segments"] or [], row["lines"], frame, scale):
                bx, by, bw, bh = seg["bbox"]
                cols["image_id"].append(row["image_id"])
                cols["segment_id"].append(seg["segment_id"])
                box = (bx * scale[0], by * scale[1], (bx + bw) * scale[0], (by + bh) * scale[1])
                for key, value in zip(("x0", "y0", "x1", "y1"), box, strict=True):
                    cols[key].append(round(float(value), 1))
                cols["text"].append("\n".join(line["text"] for line in lines))
                cols["n_lines"].append(len(lines))
                cols["lines"].append(lines)
        return pa.Table.from_pydict(cols, schema=self.schema)
