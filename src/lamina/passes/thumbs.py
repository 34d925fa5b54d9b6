"""Thumbnails: one small JPEG (default) or WebP per image, cached in the store, made once.

The pixels come from the shared "working" decode (`lamina.core.decode`: EXIF orientation
applied, alpha composited on white, long side <= 512, never upscaled), so a thumbnail costs
one encode when it runs with `signals`/`hashes`/`embed` in the same `run_passes` call. A
thumbnail's long side is `size` (<= 512), or the image's own when it is smaller.

Each file has a name fixed by the image and the *recipe* (size, format, quality):
``<store>/thumbs/<recipe>/<image_id[:2]>/<image_id>.<ext>``, e.g.
``thumbs/512-jpeg-q80/3f/3f9c….jpg``; the same bytes always get the same name, so the HTML
report and the web UI can link thumbnails without asking the store. The pass declares the
`thumbs/` folder as its output and returns each new file's bytes with its rows; the runner
writes them, each to a temporary name renamed into place (no fsync: it is a cache, and a
file that does not open is made again), in the chunk's commit. An existing one that opens
is reused, never rewritten.

The layer (`layers/thumbs/1-<hash>/`) has one row per image: `thumb` (the path relative to
the store root), the thumbnail's `width`/`height`, its `bytes`, and `error` (why an image
has no thumbnail: its decode failed). The config's `store_root` says where earlier files are
(workers only see the config) and is left out of the layer hash, so a moved store keeps its
layer.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from PIL import Image

from lamina.core.decode import RECIPES, Decoded
from lamina.core.errors import ConfigError
from lamina.core.passes import FileOutputs, Pass, PassOutput, Resources, register

if TYPE_CHECKING:
    from lamina.core.store import Store

THUMBS_DIR = "thumbs"  # under the store root
FORMATS = {"webp": ("WEBP", "webp"), "jpeg": ("JPEG", "jpg")}  # name -> (Pillow format, ext)
# JPEG by default: sensing makes a thumbnail of every image, and a WebP costs 8-13x the
# encode of a JPEG of the same quality for ~20 % fewer bytes (measured below).
DEFAULT_SIZE, DEFAULT_FORMAT, DEFAULT_QUALITY = 512, "jpeg", 80
MIN_SIZE = 16
# libwebp's effort 0..6. Measured on a 512 x 340 photo here: 2 takes ~6 ms for 18.9 kB,
# Pillow's default 4 ~15 ms for 18.2 kB (JPEG q80: 0.5 ms, 27 kB). On 300 photos of the sense
# benchmark (512 px): WebP effort 2 4.3 ms / 15.3 kB, effort 0 2.5 ms / 17.4 kB, JPEG q80
# 0.33 ms / 19.1 kB.
WEBP_METHOD = 2

# Config fields that say where to write, not what: left out of the layer hash.
RUN_ONLY = ("store_root",)

THUMBS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("thumb", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bytes", pa.int64()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class ThumbsConfig:
    """Thumbnail settings. `size`, `format` and `quality` make the recipe and the layer;
    `store_root` (set by `thumbs_config`) only says where the files go."""

    size: int = DEFAULT_SIZE  # long side in px, 16..512 (never upscaled)
    format: str = DEFAULT_FORMAT  # webp | jpeg
    quality: int = DEFAULT_QUALITY  # 1..100, the encoder's quality
    store_root: str = ""  # absolute path of the store


def thumb_recipe(size: int = DEFAULT_SIZE, fmt: str = DEFAULT_FORMAT, quality: int = 80) -> str:
    """The recipe name of a thumbnail setting, which names its folder.

    Example:
        >>> thumb_recipe()
        '512-jpeg-q80'
        >>> thumb_recipe(256, "webp", 90)
        '256-webp-q90'
    """
    _check(size, fmt, quality)
    return f"{size}-{fmt}-q{quality}"


def _parse_recipe(recipe: str) -> tuple[int, str, int]:
    try:
        size, fmt, quality = recipe.split("-")
        parsed = int(size), fmt, int(quality.removeprefix("q"))
    except ValueError:
        raise ConfigError(
            f"bad thumbnail recipe {recipe!r}", hint="recipes look like 512-webp-q80"
        ) from None
    _check(*parsed)
    return parsed


def _check(size: int, fmt: str, quality: int) -> None:
    top = RECIPES["working"]
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= top:
        raise ConfigError(
            f"thumbs: size must be {MIN_SIZE}..{top} px, not {size!r}",
            hint=f"thumbnails come from the {top} px working decode",
        )
    if fmt not in FORMATS:
        raise ConfigError(f"thumbs: format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError(f"thumbs: quality must be 1..100, not {quality!r}")


def thumbs_root(store: Store | str | os.PathLike[str]) -> Path:
    """A Store's root, or a path given for one (a `Path` too: its own `.root` is "/").

    Example:
        >>> thumbs_root(Path("/data/store")).as_posix()
        '/data/store'
    """
    if isinstance(store, (str, os.PathLike)):
        return Path(store).absolute()
    return Path(store.root).absolute()


def _rel_path(image_id: str, recipe: str) -> str:
    ext = FORMATS[_parse_recipe(recipe)[1]][1]
    return f"{THUMBS_DIR}/{recipe}/{image_id[:2]}/{image_id}.{ext}"


def thumb_path(
    store: Store | str | os.PathLike[str], image_id: str, recipe: str | None = None
) -> Path:
    """Where the thumbnail of `image_id` is (or will be) for `recipe` (default: 512-jpeg-q80).

    Example:
        >>> thumb_path("/data/store", "3f9c00aa11", "256-jpeg-q90").as_posix()
        '/data/store/thumbs/256-jpeg-q90/3f/3f9c00aa11.jpg'
    """
    return thumbs_root(store) / _rel_path(image_id, recipe or thumb_recipe())


def thumbs_config(
    store: Store | str | os.PathLike[str],
    size: int = DEFAULT_SIZE,
    fmt: str = DEFAULT_FORMAT,
    quality: int = 80,
) -> dict[str, Any]:
    """The `thumbs` pass config for `store`, to run with other pixel passes in one decode.

    Example:
        >>> passes = [("signals", None), ("thumbs", thumbs_config(store))]  # doctest: +SKIP
        >>> lamina.core.runner.run_passes(store, passes)  # doctest: +SKIP
        >>> thumbs_config("/data/store")["store_root"]
        '/data/store'
    """
    _check(size, fmt, quality)
    return {"size": size, "format": fmt, "quality": quality, "store_root": str(thumbs_root(store))}


@register
class ThumbsPass(Pass):
    """Cached thumbnails (JPEG or WebP, long side <= 512, EXIF orientation applied), one
    file per image under `<store>/thumbs/<recipe>/`; an error row when the image does not
    decode."""

    name = "thumbs"
    version = "1"
    Config = ThumbsConfig
    run_only = RUN_ONLY
    decode = "working"
    reads = ("images",)
    schema = THUMBS_SCHEMA
    # Written by the runner, not flushed: a thumbnail lost to a power cut is made again.
    outputs = (FileOutputs(THUMBS_DIR, fsync=False),)
    resources = Resources(cpu=1.0, memory_mb=512)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        c = self.config
        self.recipe = thumb_recipe(c.size, c.format, c.quality)

    def process_decoded(self, batch: pa.Table, images: list[Decoded]) -> PassOutput:
        """One row per image: its thumbnail (found under the store, or made and returned
        for the runner to write), or why not.

        Example:
            >>> from lamina.core.decode import decode_batch
            >>> b = pa.table({"image_id": ["ab12"], "abs_path": ["/x/cat.jpg"]})
            >>> p = ThumbsPass(thumbs_config("/data/store"))  # doctest: +SKIP
            >>> p.process_decoded(b, decode_batch(b, "working"))  # doctest: +SKIP
        """
        if batch.num_rows and not self.config.store_root:
            raise ConfigError(
                "thumbs: the config has no store_root, so there is nowhere to write",
                hint="build the config with lamina.passes.thumbs.thumbs_config(store)",
            )
        rows: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        files: dict[str, bytes] = {}
        for image_id, decoded in zip(batch["image_id"].to_pylist(), images, strict=True):
            row = self._one(image_id, decoded, files)
            for name in self.schema.names:
                rows[name].append(row.get(name))
        return PassOutput(pa.table(rows, schema=self.schema), files)

    def _one(self, image_id: str, decoded: Decoded, files: dict[str, bytes]) -> dict[str, Any]:
        if decoded.failure is not None:
            return {"image_id": image_id, "error": decoded.failure}
        rel = _rel_path(image_id, self.recipe)
        path = Path(self.config.store_root) / rel
        size = _existing_size(path)
        if size is None:
            size, files[rel] = self._encode(decoded)
            n_bytes = len(files[rel])
        else:
            n_bytes = path.stat().st_size
        return {
            "image_id": image_id,
            "thumb": rel,
            "width": size[0],
            "height": size[1],
            "bytes": n_bytes,
        }

    def _encode(self, decoded: Decoded) -> tuple[tuple[int, int], bytes]:
        """The thumbnail's size and its encoded bytes."""
        im = decoded.image()  # shared with the other passes: resized into a copy
        if max(im.size) > self.config.size:
            im = im.copy()
            # LANCZOS: the working decode already did the large reduction (BOX), so this
            # last small step can afford the sharper filter.
            im.thumbnail((self.config.size, self.config.size), Image.Resampling.LANCZOS)
        pillow_format = FORMATS[self.config.format][0]
        buffer = io.BytesIO()
        # No metadata is written: the pixels are already upright, so no EXIF orientation.
        options = {"method": WEBP_METHOD} if pillow_format == "WEBP" else {}
        im.save(buffer, pillow_format, quality=self.config.quality, **options)
        return im.size, buffer.getvalue()


def _existing_size(path: Path) -> tuple[int, int] | None:
    """The size of a thumbnail already on disk, or None when there is none that opens."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError):  # absent, or cut short by a crash: remake
        return None


def missing_thumbnails(store: Store, layer: str, image_ids: Iterable[str] | None = None) -> int:
    """How many rows of a thumbs layer (of `image_ids` only, when given) name a file that
    is not there (deleted by hand): the layer counts them as done, so only deleting the
    layer makes them again.

    Example:
        >>> missing_thumbnails(lamina.open(), "1-0a1b2c3d")  # doctest: +SKIP
        0
    """
    import pyarrow.parquet as pq

    root = thumbs_root(store)
    wanted = None if image_ids is None else set(image_ids)
    missing = 0
    for part in sorted(store.layer_dir("thumbs", layer).glob("part-*.parquet")):
        table = pq.read_table(part, columns=["image_id", "thumb"])
        for image_id, rel in zip(
            table["image_id"].to_pylist(), table["thumb"].to_pylist(), strict=True
        ):
            if wanted is not None and image_id not in wanted:
                continue
            if rel is not None and not (root / rel).is_file():
                missing += 1
    return missing
