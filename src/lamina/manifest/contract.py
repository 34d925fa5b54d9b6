"""Layout contracts: what an *item* of a structured collection is, and its rules.

A collection with a shape (a herbarium's `plates/plate-NNN/{manifest.json, source/<one
image>, runs/…}`, an ImageFolder's `class/*.jpg`) is described by a `[layout]` table in
TOML: in the store's `lamina.toml`, or in `lamina-layout.toml` at the root of a source
(which wins for that source). Keys:

    [layout]
    preset = "item-folder-with-manifest"  # or "imagefolder", "flat"; the keys below override it
    items = "plates_structured/plate-*"   # item folders, a glob relative to the source
    depth = 2                             # or: every folder this deep is an item
    images = "source/*"                   # an item's images, a glob relative to the item
    image_count = "exactly_one"           # or "at_least_one", "any"
    ignore = ["runs", "cache"]            # output folders inside an item: never looked at
    nested = "outermost"                  # an item inside an item: "outermost" or "refuse"
    huge_megapixels = 90.0

    [[layout.sidecars]]
    name = "manifest.json"                # a glob relative to the item
    required = true
    schema = "manifest.schema.json"       # optional JSON Schema, relative to the TOML file

Globs match whole path components: `*` never crosses a `/`, `**` matches any number of
folders. A `flat` layout makes every image file an item (`unit = "file"`); its sidecars
may name `{name}` (the image's file name) or `{stem}` (without its extension).

Nested items (a folder matching `items` inside another): the outermost one is the item,
the inner folder is part of it, and the outer item gets a `nested_item` violation naming
it (`nested = "refuse"` refuses the layout instead).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from lamina.core.errors import ConfigError
from lamina.core.remote import is_url

LAYOUT_FILE = "lamina-layout.toml"  # at the root of a source: that source's layout
IMAGE_COUNTS = ("exactly_one", "at_least_one", "any")
NESTED_RULES = ("outermost", "refuse")
UNITS = ("folder", "file")
HUGE_MEGAPIXELS = 90.0  # the scan's `huge` threshold (lamina.core.images)

PRESETS: dict[str, dict[str, Any]] = {
    # ImageFolder training sets: one folder per class, images directly in it.
    "imagefolder": {"items": "*", "images": "*", "image_count": "at_least_one"},
    # One folder per item: a manifest beside a source/ folder holding its one image.
    "item-folder-with-manifest": {
        "items": "*",
        "images": "source/*",
        "image_count": "exactly_one",
        "sidecars": [{"name": "manifest.json", "required": True}],
        "ignore": ["runs", "cache"],
    },
    # A loose folder: every image is an item, a `<name>.json` beside it its optional sidecar.
    "flat": {
        "unit": "file",
        "items": "**",
        "sidecars": [{"name": "{name}.json", "required": False}],
    },
}


@dataclass(frozen=True)
class Sidecar:
    """A file an item carries: `name` (a glob relative to the item), whether it is
    required, and an optional JSON Schema (absolute path) its content must satisfy."""

    name: str
    required: bool = False
    schema: str | None = None


@dataclass(frozen=True)
class Layout:
    """A parsed, checked `[layout]` (see the module docstring).

    Example:
        >>> parse_layout({"preset": "item-folder-with-manifest"}).images
        'source/*'
    """

    items: str = "*"
    images: str = "*"
    image_count: str = "any"
    sidecars: tuple[Sidecar, ...] = ()
    ignore: tuple[str, ...] = ()
    nested: str = "outermost"
    unit: str = "folder"
    huge_megapixels: float = HUGE_MEGAPIXELS
    preset: str | None = None
    origin: str = ""  # where it was read from (a file, or "preset")

    def to_dict(self) -> dict[str, Any]:
        """The layout as plain data (JSON-ready; what a run record holds)."""
        return dataclasses.asdict(self)


_KEYS = (
    "preset",
    "items",
    "depth",
    "images",
    "image_count",
    "sidecars",
    "ignore",
    "nested",
    "unit",
    "huge_megapixels",
)


def _nearest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    import difflib

    near = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {near[0]!r}? " if near else ""


def _check_glob(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} in {where} must be a non-empty glob, not {value!r}")
    text = value.strip().strip("/")
    if text.startswith("..") or "/../" in f"/{text}/" or value.startswith("/"):
        raise ConfigError(
            f"{key} = {value!r} in {where} leaves the folder it is relative to",
            hint="write a glob relative to the source (or the item), without '..' or a leading /",
        )
    return text


def _load_schema(path: Path, where: str) -> str:
    """Check a JSON Schema file before any work: it must parse and be a valid schema."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the JSON Schema {path} (named in {where}): {exc.strerror or exc}",
            hint="fix the path of `schema` (relative to the file that names it)",
        ) from exc
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"the JSON Schema {path} does not parse: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            hint="fix that file (it must be one JSON document) and run again",
        ) from None
    validator = _validator_class(str(path), where)
    import jsonschema

    try:
        validator(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(
            f"{path} is not a valid JSON Schema: {exc.message}",
            hint="fix the schema (see https://json-schema.org) and run again",
        ) from None
    return str(path)


def _validator_class(path: str, where: str) -> Any:
    try:
        import jsonschema
    except ImportError as exc:  # an optional package: only layouts with a schema need it
        raise ConfigError(
            f"{where} names a JSON Schema ({path}) but jsonschema is not installed",
            hint="pip install 'lamina[layout]' (or jsonschema)",
        ) from exc
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    return jsonschema.validators.validator_for(schema)


def parse_layout(
    values: dict[str, Any], *, where: str = "[layout]", base: Path | None = None
) -> Layout:
    """Check a `[layout]` table and resolve its preset; schema paths are read relative to
    `base` and checked here, so a broken schema stops a command before any work.

    Example:
        >>> parse_layout({"preset": "imagefolder"}).image_count
        'at_least_one'
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(values) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where}",
            hint=f"{_nearest(unknown[0], _KEYS)}valid keys are: {', '.join(_KEYS)}",
        )
    merged: dict[str, Any] = {}
    preset = values.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(
                f"unknown preset {preset!r} in {where}",
                hint=f"{_nearest(str(preset), tuple(PRESETS))}presets: {', '.join(PRESETS)}",
            )
        merged.update(PRESETS[preset])
    merged.update({k: v for k, v in values.items() if k != "preset"})
    if "depth" in merged:
        depth = merged.pop("depth")
        if "items" in values:
            raise ConfigError(f"{where} gives both items and depth", hint="keep one of them")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ConfigError(f"depth in {where} must be a whole number >= 1, not {depth!r}")
        merged["items"] = "/".join(["*"] * depth)
    choices = {"image_count": IMAGE_COUNTS, "nested": NESTED_RULES, "unit": UNITS}
    for key, allowed in choices.items():
        if key in merged and merged[key] not in allowed:
            raise ConfigError(
                f"bad value for {key} in {where}: {merged[key]!r}",
                hint=f"{_nearest(str(merged[key]), allowed)}use one of {', '.join(allowed)}",
            )
    items = _check_glob(merged.get("items", "*"), "items", where)
    images = _check_glob(merged.get("images", "*"), "images", where)
    ignore = merged.get("ignore", ())
    if isinstance(ignore, str) or not all(isinstance(i, str) for i in ignore):
        raise ConfigError(f"ignore in {where} must be a list of folder names or globs")
    huge = merged.get("huge_megapixels", HUGE_MEGAPIXELS)
    if isinstance(huge, bool) or not isinstance(huge, (int, float)) or huge <= 0:
        raise ConfigError(f"huge_megapixels in {where} must be a positive number, not {huge!r}")
    sidecars = []
    raw_sidecars = merged.get("sidecars", ())
    if not isinstance(raw_sidecars, (list, tuple)):
        raise ConfigError(
            f"sidecars in {where} must be a list of tables",
            hint='write [[layout.sidecars]] name = "manifest.json"',
        )
    for i, entry in enumerate(raw_sidecars):
        here = f"{where} sidecars[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{here} needs a name (a file name or glob relative to the item)")
        extra = sorted(set(entry) - {"name", "required", "schema"})
        if extra:
            raise ConfigError(
                f"unknown key {extra[0]!r} in {here}", hint="valid keys are: name, required, schema"
            )
        required = entry.get("required", False)
        if not isinstance(required, bool):
            raise ConfigError(f"required in {here} must be true or false, not {required!r}")
        schema = entry.get("schema")
        if schema is not None:
            path = Path(os.path.expanduser(str(schema)))
            if not path.is_absolute():
                path = (base or Path.cwd()) / path
            schema = _load_schema(path, here)
        name = _check_glob(entry["name"], "name", here)
        sidecars.append(Sidecar(name=name, required=required, schema=schema))
    return Layout(
        items=items,
        images=images,
        image_count=merged.get("image_count", "any"),
        sidecars=tuple(sidecars),
        ignore=tuple(i.strip("/") for i in ignore),
        nested=merged.get("nested", "outermost"),
        unit=merged.get("unit", "folder"),
        huge_megapixels=float(huge),
        preset=preset,
        origin=where,
    )


def read_layout_file(path: Path) -> Layout | None:
    """The `[layout]` of a TOML file (None when it has none); errors name the file.

    Example:
        >>> read_layout_file(Path("/nonexistent.toml")) is None
        True
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix that file") from None
    if "layout" not in doc:
        return None
    return parse_layout(doc["layout"], where=f"[layout] of {path}", base=path.parent)


def layout_for(store_root: Path, source: str | Path) -> Layout | None:
    """The layout that applies to `source`: its own `lamina-layout.toml`, else the
    `[layout]` of the store's `lamina.toml`, else None.

    Example:
        >>> layout_for(Path("/no-store"), "/no-source") is None
        True
    """
    # A remote source's own layout file is not read (only the store's [layout] applies).
    own = None if is_url(str(source)) else read_layout_file(Path(source) / LAYOUT_FILE)
    return own if own is not None else read_layout_file(store_root / "lamina.toml")


# -- globs over relative paths ---------------------------------------------------------------


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for a component-wise glob (`*` stays in a component, `**` spans
    folders), matching a whole relative path.

    Example:
        >>> bool(glob_regex("plates/plate-*").fullmatch("plates/plate-007"))
        True
        >>> bool(glob_regex("source/*").fullmatch("source/sub/a.jpg"))
        False
    """
    return re.compile(_glob_body(pattern))


def _component(comp: str) -> str:
    """One glob component as a regex that never crosses a `/`."""
    out, i = "", 0
    while i < len(comp):
        ch = comp[i]
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[" and "]" in comp[i + 2 :]:
            end = comp.index("]", i + 2)
            body = comp[i + 1 : end].replace("\\", "\\\\")
            if body.startswith("!"):
                body = "^" + body[1:]
            out += f"[{body}]"
            i = end
        else:
            out += re.escape(ch)
        i += 1
    return out


def _glob_body(pattern: str) -> str:
    parts = pattern.strip("/").split("/")
    out = ""
    for i, comp in enumerate(parts):
        last = i == len(parts) - 1
        if comp == "**":  # zero or more folders; at the end, one or more components
            out += "(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*"
        else:
            out += _component(comp) + ("" if last else "/")
    return out


def item_prefix(pattern: str, rel_folder: str) -> list[str]:
    """Every ancestor folder of `rel_folder` (itself included) that `pattern` matches,
    outermost first.

    Example:
        >>> item_prefix("*/plate-*", "plates/plate-1/runs/plate-2")
        ['plates/plate-1']
        >>> item_prefix("**/plate-*", "plates/plate-1/runs/plate-2")
        ['plates/plate-1', 'plates/plate-1/runs/plate-2']
    """
    if not rel_folder:
        return []
    regex = glob_regex(pattern)
    parts = rel_folder.split("/")
    return [
        "/".join(parts[:n])
        for n in range(1, len(parts) + 1)
        if regex.fullmatch("/".join(parts[:n]))
    ]


# -- proposing a layout from a tree ------------------------------------------------------------

_SIDECAR_SUFFIXES = (".json", ".csv", ".tsv")
# Folder names that usually hold what tools made from an item, not the item's own images.
OUTPUT_NAMES = frozenset(
    {"runs", "run", "cache", "output", "outputs", "out", "tmp", "derived", "thumbs", "work"}
)
MAX_PROPOSE_FILES = 500_000  # a proposal looks at this many files at most


def _walk(root: Path) -> list[str]:
    """Relative paths of the files under `root` (links not followed, hidden names skipped)."""
    out: list[str] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root).as_posix()
        for name in sorted(names):
            if not name.startswith("."):
                out.append(name if rel == "." else f"{rel}/{name}")
        if len(out) >= MAX_PROPOSE_FILES:
            break
    return out


def _common_glob(names: list[str]) -> str:
    """A glob for sibling folder names: their shared prefix and `*` (`plate-001`,
    `plate-002` -> `plate-*`), or `*`.

    Example:
        >>> _common_glob(["plate-001", "plate-002"]), _common_glob(["cats", "dogs"])
        ('plate-*', '*')
    """
    # Numbered names share leading zeros (plate-001 .. plate-435): the glob stops before them.
    # (Characters, not path components: these are sibling names.)
    prefix = os.path.commonprefix(names).rstrip("0123456789")  # noqa: RUF071
    return f"{glob_escape(prefix)}*" if prefix and len(names) > 1 else "*"


def glob_escape(text: str) -> str:
    """`text` with glob characters escaped as `[x]`.

    Example:
        >>> glob_escape("a*b")
        'a[*]b'
    """
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def propose_layout(root: Path, preset: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """A `[layout]` for the tree at `root` (read-only: file names only), and notes on
    what was seen. `preset` forces the shape; otherwise the tree decides: item folders
    sharing a JSON/CSV file name (item-folder-with-manifest), images only in first-level
    folders (imagefolder), else flat.

    Example:
        >>> propose_layout(Path("herbarium"))[0]["items"]  # doctest: +SKIP
        'plates_structured/plate-*'
    """
    from lamina.core.images import IMAGE_EXTS

    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder", hint="give the collection's root folder")
    paths = _walk(root)
    images = [p for p in paths if os.path.splitext(p)[1].lower() in IMAGE_EXTS]
    notes = [f"{len(paths)} files, {len(images)} images by extension under {root}"]
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}", hint=f"presets: {', '.join(PRESETS)}")
        notes.append(f"preset {preset} as asked")
        return {"preset": preset}, notes
    # Folders holding a file of the same sidecar name, by depth: item folders.
    holders: dict[tuple[str, int], set[str]] = defaultdict(set)
    folders_at: dict[int, set[str]] = defaultdict(set)
    for p in paths:
        parts = p.split("/")
        for n in range(1, len(parts)):
            folders_at[n].add("/".join(parts[:n]))
        if len(parts) > 1 and os.path.splitext(p)[1].lower() in _SIDECAR_SUFFIXES:
            holders[(parts[-1], len(parts) - 1)].add("/".join(parts[:-1]))
    # The item is the shallowest folder level where a sidecar name is common: a deeper one
    # (`runs/r1/ledger.json`) is an output inside the item, not the item.
    most = max((len(h) for h in holders.values()), default=0)
    candidates = [
        (depth, -len(holding), name, holding)
        for (name, depth), holding in holders.items()
        if len(holding) >= 2
        and len(holding) >= 0.5 * most
        and len(holding) >= 0.5 * len(folders_at[depth])
    ]
    if candidates:
        depth, _, name, holding = min(candidates)
        return _propose_items(name, depth, holding, folders_at[depth], images, paths, notes)
    top_images = [p for p in images if p.count("/") == 1]
    classes = len({p.split("/")[0] for p in top_images})
    if images and len(top_images) >= 0.75 * len(images) and classes >= 2:
        notes.append(
            f"{len(top_images)} of {len(images)} images sit in one of {classes} first-level "
            "folders: ImageFolder"
        )
        return {"preset": "imagefolder"}, notes
    notes.append("no item folders found: every image is an item")
    return {"preset": "flat"}, notes


def _propose_items(
    name: str,
    depth: int,
    holding: set[str],
    siblings: set[str],
    images: list[str],
    paths: list[str],
    notes: list[str],
) -> tuple[dict[str, Any], list[str]]:
    parents = {f.rpartition("/")[0] for f in siblings}
    if len(parents) == 1:
        parent = parents.pop()
        glob = _common_glob(sorted(f.rpartition("/")[2] for f in siblings))
        items = f"{glob_escape(parent)}/{glob}" if parent else glob
    else:
        items = "/".join(["*"] * depth)
    regex = glob_regex(items)
    item_set = {f for f in siblings if regex.fullmatch(f)}
    rel_folders: dict[str, int] = defaultdict(int)
    per_item: dict[str, int] = defaultdict(int)
    for p in images:
        parts = p.split("/")
        if len(parts) > depth and "/".join(parts[:depth]) in item_set:
            rel_folders["/".join(parts[depth:-1])] += 1
            per_item["/".join(parts[:depth])] += 1
    # Where most items keep their images; a folder named like an output loses a tie.
    folder = min(
        rel_folders,
        key=lambda k: (k.split("/")[0].lower() in OUTPUT_NAMES, -rel_folders[k], k.count("/"), k),
        default="",
    )
    image_glob = f"{glob_escape(folder)}/*" if folder else "*"
    inner = glob_regex(image_glob)
    counts = [
        sum(1 for p in images if p.startswith(f"{item}/") and inner.fullmatch(p[len(item) + 1 :]))
        for item in sorted(item_set)
    ]
    ones = sum(1 for c in counts if c == 1)
    image_count = "exactly_one" if counts and ones >= 0.8 * len(counts) else "at_least_one"
    subfolders = {
        p.split("/")[depth]
        for p in paths
        if p.count("/") > depth and "/".join(p.split("/")[:depth]) in item_set
    }
    ignore = sorted(subfolders - {folder.split("/")[0]} if folder else subfolders)
    share = len(holding & item_set) / max(len(item_set), 1)
    notes += [
        f"{len(item_set)} item folders match {items}; {len(holding & item_set)} hold {name}",
        f"images sit in {image_glob} of their item; {ones} of {len(counts)} items hold exactly one",
    ]
    if ignore:
        notes.append(
            f"other folders inside items, proposed as outputs to ignore: {', '.join(ignore)}"
        )
    layout: dict[str, Any] = {
        "items": items,
        "images": image_glob,
        "image_count": image_count,
        "ignore": ignore,
        "sidecars": [{"name": glob_escape(name), "required": share >= 0.9}],
    }
    return layout, notes


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string is JSON's


def layout_toml(layout: dict[str, Any], notes: Sequence[str] = ()) -> str:
    """A `[layout]` table as TOML text, with `notes` as comments above it.

    Example:
        >>> print(layout_toml({"preset": "flat"}, ["no item folders"]))
        # no item folders
        [layout]
        preset = "flat"
        <BLANKLINE>
    """
    lines = [f"# {n}" for n in notes] + ["[layout]"]
    for key, value in layout.items():
        if key != "sidecars":
            lines.append(f"{key} = {_toml_value(value)}")
    for entry in layout.get("sidecars", ()):
        lines += ["", "[[layout.sidecars]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"
