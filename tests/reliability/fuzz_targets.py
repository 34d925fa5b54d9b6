"""What the property tests and the fuzz run feed with hostile bytes, and what each must hold.

Every target takes bytes and a scratch folder (the one place it may write) and raises
AssertionError when a promise breaks; any exception other than the target's `allowed` ones
is a finding too. The same targets run under hypothesis (test_properties.py, mutations of
real files) and under atheris (fuzz.py, coverage-guided, time-boxed).

Targets (`TARGETS`):

- `plain_header`: lamina's own JPEG/PNG header reader (lamina.core.headers). Never raises;
  when it answers, Pillow reads the same size and mode from the same bytes (the module's
  promise: "the columns are exactly Pillow's").
- `sniff_format`: magic-byte sniffing. Never raises.
- `probe_file`: the scan's probe of one file. Never raises; the row fits PROBE_SCHEMA with
  a known status.
- `load_labels`: label files (lamina.tagging.labels). A clean label list or a LaminaError.
- `pipeline_config`: `lamina run --config` (lamina.pipeline.config). A config or a
  ConfigError.
- `flags_policy`: `--policy` files (lamina.analysis.flags.load_policy). A policy or a
  ConfigError.
- `where_expression`: the `--where` checker (lamina.core.sqlsafe.check_condition). An
  UnsafeSQLError, or a condition that stays one parenthesised group inside the statement
  lamina puts it in and, run on a locked-down connection, answers or fails as SQL
  (a DuckDB error), never reading a file.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.core.errors import ConfigError, LaminaError
from lamina.core.sqlsafe import UnsafeSQLError


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes, Path], None]
    allowed: tuple[type[BaseException], ...]  # the documented errors
    seeds: Callable[[], dict[str, bytes]]  # starting inputs (real files) for mutation
    text: bool = False  # its input is text: property tests also draw any unicode string


# --------------------------------------------------------------------------- seeds


def image_seeds() -> dict[str, bytes]:
    """Small real images in every format the probe reads, some with metadata."""
    import numpy as np
    from PIL import Image

    from lamina.sample import package_photos

    photos = package_photos()
    rgb = np.asarray(Image.fromarray(photos["chelsea"]).resize((48, 32)))
    img = Image.fromarray(rgb)
    seeds: dict[str, bytes] = {}

    def save(name: str, fmt: str, image: Image.Image = img, **params: object) -> None:
        buf = io.BytesIO()
        image.save(buf, fmt, **params)
        seeds[name] = buf.getvalue()

    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0112] = 6
    save("plain.jpg", "JPEG", quality=80)
    save("progressive.jpg", "JPEG", progressive=True, dpi=(300, 300))
    save("exif.jpg", "JPEG", exif=exif.tobytes())
    save("grey.jpg", "JPEG", image=img.convert("L"))
    save("plain.png", "PNG")
    save("dpi.png", "PNG", dpi=(72, 72))
    save("palette.png", "PNG", image=img.convert("P"))
    save("rgba.png", "PNG", image=img.convert("RGBA"))
    save("still.gif", "GIF")
    save("anim.gif", "GIF", save_all=True, append_images=[img.rotate(90)], duration=50)
    save("plain.tif", "TIFF")
    save("deflate.tif", "TIFF", compression="tiff_adobe_deflate")
    save("pages.tif", "TIFF", save_all=True, append_images=[img.resize((24, 16))])
    save("lossy.webp", "WEBP", quality=50)
    save("lossless.webp", "WEBP", lossless=True)
    save("plain.bmp", "BMP")
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        save("plain.heic", "HEIF", quality=50)
    except ImportError:
        pass
    return seeds


def label_seeds() -> dict[str, bytes]:
    return {
        "labels.txt": b"# what we look for\ncat\nCup of Coffee  # drinks\nc#\n\ncat\n",
        "crlf.txt": b"\xef\xbb\xbfdog\r\nhorse\r\n\tzebra crossing\t\r\n",
        "unicode.txt": "café\ncafe\u0301\n日本\n📷\n".encode(),
    }


def config_seeds() -> dict[str, bytes]:
    return {
        "lamina.toml": (
            b'root = ["photos"]\nlabels_file = "labels.txt"\nmodel = "default"\n'
            b"batch_images = 16\nthreshold = 0.3\ntopk = 3\nmax_images = 100\n"
            b'stages = ["scan", "sense", "report"]\nsidecar_style = "darktable"\n'
        ),
        "photo_tagger.toml": (
            b'model_name = "ViT-B-32"\npretrained = "laion2b_s34b_b79k"\n'
            b'threshold = "auto"\nrun_dir = "out"\nworkers = 2\n'
        ),
    }


def policy_seeds() -> dict[str, bytes]:
    from lamina.analysis.flags import default_policy_text

    return {
        "policy.toml": default_policy_text().encode(),
        "small.toml": (
            b'[policy]\nname = "mine"\nversion = 2\n\n[dark]\nthreshold = 0.8\n'
            b'[blurry]\nenabled = false\nwhy = "film grain"\n'
        ),
    }


def condition_seeds() -> dict[str, bytes]:
    """`--where` conditions as users write them, and as attackers do."""
    conditions = [
        "status = 'ok' and (blurry or dark)",
        "width between 100 and 2000 and not is_screenshot",
        "rel_path like '%cat%' or rel_path ilike 'IMG\\_%' escape '\\'",
        "image_id in (select image_id from tags where label = 'cat')",
        "case when width > height then 'landscape' else 'portrait' end = 'portrait'",
        "cast(width as double) / nullif(height, 0) > 1.5",
        "list_contains(['a', 'b'], status) and coalesce(blurry, false)",
        "lower(rel_path) similar to '.*\\.jpe?g'",
        "false) union select * from read_text('/etc/passwd') --",
        "1; copy files to '/tmp/x.csv'",
        "getenv('HOME') = '' or current_setting('threads') > 0",
        "exists (select * from glob('/*'))",
    ]
    return {f"condition{i}.sql": c.encode() for i, c in enumerate(conditions)}


# --------------------------------------------------------------------------- targets


def run_plain_header(data: bytes, scratch: Path) -> None:
    from PIL import Image

    from lamina.core.headers import plain_header
    from lamina.core.images import sniff_format

    # What the probe hands it: the format sniffed from the first 64 KiB, the first MiB.
    fmt = sniff_format(data[: 64 << 10])
    header = plain_header(fmt, data[: 1 << 20])
    if header is None:
        return
    assert fmt in ("JPEG", "PNG") and header.width > 0 and header.height > 0, (fmt, header)
    # Pillow must read the same facts. Only its header is read, so a claimed size past its
    # bomb limit is no danger here (a fuzzed SOF claimed 208 M pixels: Pillow refused).
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == fmt, (im.format, fmt)
            assert (im.width, im.height) == (header.width, header.height), (im.size, header)
            assert im.mode == header.mode, (im.mode, header.mode)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def run_sniff_format(data: bytes, scratch: Path) -> None:
    from lamina.core.images import sniff_format

    fmt = sniff_format(data)
    assert fmt is None or isinstance(fmt, str)


STATUSES = {"ok", "junk", "broken", "unsupported", "unreadable"}


def run_probe_file(data: bytes, scratch: Path) -> None:
    import pyarrow as pa

    from lamina.core.images import PROBE_SCHEMA, probe_file

    path = scratch / "fuzzed.jpg"
    path.write_bytes(data)
    row = probe_file(str(path), "fuzzed.jpg")
    assert row["status"] in STATUSES, row
    assert row["size"] == len(data), row
    pa.Table.from_pylist([row], schema=PROBE_SCHEMA)  # the row fits the layer's schema


def run_load_labels(data: bytes, scratch: Path) -> None:
    from lamina.tagging.labels import control_character, load_labels

    path = scratch / "labels.txt"
    path.write_bytes(data)
    labels = load_labels(path)
    assert labels and len(labels) == len(set(labels)), labels
    for label in labels:
        assert label == " ".join(label.split()).lower(), label  # normalised: a fixed point
        assert control_character(label) is None, label
        assert "\n" not in label and "\r" not in label and "\t" not in label, label


def run_pipeline_config(data: bytes, scratch: Path) -> None:
    from lamina.pipeline.config import PipelineConfig, resolve_config

    path = scratch / "lamina.toml"
    path.write_bytes(data)
    config = resolve_config(path, {})
    assert isinstance(config, PipelineConfig)
    assert config.topk >= 1 and config.batch_images >= 1 and config.max_images >= 0


def run_flags_policy(data: bytes, scratch: Path) -> None:
    from lamina.analysis.flags import FLAG_NAMES, Policy, load_policy

    path = scratch / "policy.toml"
    path.write_bytes(data)
    policy = load_policy(path)
    assert isinstance(policy, Policy) and set(policy.rules) == set(FLAG_NAMES)
    assert Policy.from_json(policy.to_json()) == policy  # what the flags layer is named by


_CONDITION_TABLE = (
    "create table files as select 'a/cat.jpg' as rel_path, 'ok' as status, "
    "'i1' as image_id, 640 as width, 480 as height, true as blurry, false as dark, "
    "false as is_screenshot"
)
_conditions_connection = None


def _condition_connection() -> Any:
    """One locked-down in-memory connection per process (opening one costs ~0.2 s): a
    `files` table with the columns users filter on, a `tags` table, no file access."""
    global _conditions_connection
    if _conditions_connection is None:
        import duckdb

        from lamina.core.sqlsafe import lock_down

        con = duckdb.connect()
        con.execute(_CONDITION_TABLE)
        con.execute("create table tags as select 'i1' as image_id, 'cat' as label")
        _conditions_connection = lock_down(con)
    return _conditions_connection


def run_where_expression(data: bytes, scratch: Path) -> None:
    import threading

    import duckdb

    from lamina.core.sqlsafe import check_condition

    text = data.decode("utf-8", "replace")
    cond = check_condition(text, tables=["tags"], what="--where condition")
    assert cond == text.strip(), (cond, text)
    # Placed as lamina places it, it is one statement whose WHERE is the whole condition.
    sql = f"select count(*) from files where (\n{cond}\n)"
    con = _condition_connection()
    statements = con.extract_statements(sql)
    assert len(statements) == 1 and str(statements[0].type).endswith("SELECT"), (cond, statements)
    # A condition may be slow (a big `range` in a list function): interrupted after 10 s.
    timer = threading.Timer(10.0, con.interrupt)
    timer.start()
    try:
        con.execute(sql).fetchall()
    except duckdb.Error as exc:
        # Failing as SQL is fine (a type error, an unknown column); reaching a file is not.
        message = str(exc)
        assert "file system operations are disabled" not in message, (cond, message)
        assert "Permission Error" not in message, (cond, message)
    finally:
        timer.cancel()


TARGETS: dict[str, Target] = {
    "plain_header": Target("plain_header", run_plain_header, (), image_seeds),
    "sniff_format": Target("sniff_format", run_sniff_format, (), image_seeds),
    "probe_file": Target("probe_file", run_probe_file, (), image_seeds),
    "load_labels": Target("load_labels", run_load_labels, (LaminaError,), label_seeds),
    "pipeline_config": Target("pipeline_config", run_pipeline_config, (ConfigError,), config_seeds),
    "flags_policy": Target("flags_policy", run_flags_policy, (ConfigError,), policy_seeds),
    "where_expression": Target(
        "where_expression", run_where_expression, (UnsafeSQLError,), condition_seeds, text=True
    ),
}


# --------------------------------------------------------------------------- writes


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = (
    "os.rename",
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.truncate",
    "os.chmod",
    "os.utime",
    "os.symlink",
    "shutil.rmtree",
)


class WriteGuard:
    """An audit hook that records every write outside the allowed folders while it is
    on (an audit hook cannot be removed, so it is switched on and off)."""

    installed: WriteGuard | None = None

    def __init__(self) -> None:
        self.allowed: tuple[str, ...] = ()
        self.on = False
        self.outside: list[str] = []

    @classmethod
    def get(cls) -> WriteGuard:
        if cls.installed is None:
            cls.installed = cls()
            sys.addaudithook(cls.installed)
        return cls.installed

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        if not self.on:
            return
        path: object = None
        if event == "open":
            target, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
            )
            path = target if writing else None
        elif event in _WRITE_EVENTS:
            path = args[1] if event == "os.rename" else args[0]
        if path is None or isinstance(path, int):
            return
        text = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        if not any((text + os.sep).startswith(a) for a in self.allowed):
            self.outside.append(f"{event} {text}")

    def watch(self, *folders: Path) -> WriteGuard:
        self.allowed = tuple(str(f.resolve()) + os.sep for f in folders)
        self.outside = []
        self.on = True
        return self

    def stop(self) -> list[str]:
        self.on = False
        return self.outside


def check(target: Target, data: bytes, scratch: Path) -> None:
    """Run `target` on `data`: its documented errors pass, anything else propagates, and a
    write outside `scratch` is an AssertionError."""
    guard = WriteGuard.get().watch(scratch)
    try:
        target.run(data, scratch)
    except target.allowed:
        pass
    finally:
        outside = guard.stop()
    assert not outside, f"{target.name} wrote outside its scratch folder: {outside[:5]}"


# --------------------------------------------------------------------------- mutation


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 flips bits of a byte, 1 cuts the file there,
    2 inserts a byte, 3 overwrites four bytes with a big-endian length-like number, 4 drops
    a byte. Positions wrap around the data's length."""
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            out = bytearray(bytes([value & 0xFF]))
            continue
        at = position % len(out)
        if kind == 0:
            out[at] ^= (value & 0xFF) or 1
        elif kind == 1:
            del out[at:]
        elif kind == 2:
            out.insert(at, value & 0xFF)
        elif kind == 3:
            out[at : at + 4] = struct.pack(">I", value)
        else:
            del out[at]
    return bytes(out)
