"""`lamina export`, `lamina medoids`, `lamina sidecars` and the pipeline's export and
sidecars stages: the store's results handed to people and other tools (tables in
`lamina.exports.tables`, folder medoids in `lamina.exports.medoids`, XMP sidecars in
`lamina.exports.sidecars`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import ConfigError
from lamina.core.store import Store


@dataclass(frozen=True)
class ExportConfig:
    """What `lamina export` takes: the file to write (`fmt` None: from its suffix);
    `force` / `force_into_source` as `lamina.core.outputs.check_output_path` takes them,
    `fix` the hint for a file in the way (None: the --force hint)."""

    output: str | os.PathLike[str]
    fmt: str | None = None
    force: bool = False
    force_into_source: bool = False
    fix: str | None = None


@dataclass
class ExportResult:
    """Rows written, of them tagged and with approved labels; `summary` is
    `lamina.exports.tables.export`'s (path, format, rows, tagged, approved, warnings)."""

    path: str
    rows: int
    tagged: int
    approved: int
    warnings: list[str]
    summary: dict[str, Any]


def export(store: Store, config: ExportConfig) -> ExportResult:
    """Export every present file with its size, tags and approved labels to one file.

    Example:
        >>> lamina.export(lamina.open(), ExportConfig("tags.csv")).rows  # doctest: +SKIP
        312
    """
    from lamina.exports.tables import export as export_tags

    if config.fmt == "coco":  # the segments, not the files (lamina.exports.coco)
        from lamina.exports.coco import export_coco

        c = export_coco(store, config.output, force=config.force,
                        force_into_source=config.force_into_source, fix=config.fix)  # fmt: skip
        return ExportResult(c["path"], c["annotations"], 0, 0, c["warnings"], c)
    s = export_tags(
        store,
        config.output,
        fmt=config.fmt,
        force=config.force,
        force_into_source=config.force_into_source,
        fix=config.fix,
    )
    return ExportResult(s["path"], s["rows"], s["tagged"], s["approved"], s["warnings"], s)


@dataclass(frozen=True)
class DiscardListConfig:
    """What `lamina export --discard-list FILE` takes: the file to write, and `force` /
    `force_into_source` as `lamina.core.outputs.check_output_path` takes them."""

    output: str | os.PathLike[str]
    force: bool = False
    force_into_source: bool = False


@dataclass
class DiscardListResult:
    """The file written, how many paths it lists, and paths left out (a line break in the
    name would split it into two lines of the list)."""

    path: str
    files: int
    left_out: list[str] = field(default_factory=list)


def discard_list(store: Store, config: DiscardListConfig) -> DiscardListResult:
    """Write the files a person chose to drop (a `reject` mark, or `discard` in a
    duplicate group and no later `keep` mark: `lamina.tagging.decisions.discard_paths`),
    one absolute path per line, UTF-8. Nothing is deleted or moved.

    Example:
        >>> discard_list(store, DiscardListConfig("drop.txt")).files  # doctest: +SKIP
        12
    """
    from lamina.core.outputs import write_output
    from lamina.tagging.decisions import discard_paths

    paths = discard_paths(store)
    kept = [p for p in paths if "\n" not in p and "\r" not in p]
    left_out = [p for p in paths if p not in kept]
    text = "".join(f"{p}\n" for p in kept)
    out = write_output(
        store, config.output, text, force=config.force, force_into_source=config.force_into_source
    )
    return DiscardListResult(str(out), len(kept), left_out)


@dataclass(frozen=True)
class MedoidsConfig:
    """What `lamina medoids` takes (`model` None: the newest medoids)."""

    output: str | os.PathLike[str] = "folder_medoids.csv"
    model: str | None = None
    force: bool = False
    force_into_source: bool = False
    fix: str | None = None


@dataclass
class MedoidsResult:
    path: str
    folders: int


def medoids(store: Store, config: MedoidsConfig = MedoidsConfig()) -> MedoidsResult:
    """Write folder_medoids.csv: each folder's most typical image, from `lamina cluster`'s
    medoids.

    Example:
        >>> lamina.medoids(lamina.open()).folders  # doctest: +SKIP
        14
    """
    from lamina.exports.medoids import write_folder_medoids

    n = write_folder_medoids(
        store,
        config.output,
        model=config.model,
        force=config.force,
        force_into_source=config.force_into_source,
        fix=config.fix,
    )
    return MedoidsResult(str(config.output), n)


@dataclass(frozen=True)
class ExportFolderConfig:
    """What the pipeline's export stage takes: the folder (checked by the caller, see
    `lamina.pipeline.stages.check_run_dir`), the medoids' model, the hint for a file in
    the way, and the hint for a folder that cannot be made."""

    dir: str | os.PathLike[str]
    model: str | None = None
    fix: str | None = None
    mkdir_fix: str = "give a folder you can write"


@dataclass
class ExportFolderResult:
    dir: str
    files: list[str] = field(default_factory=list)


def export_folder(store: Store, config: ExportFolderConfig) -> ExportFolderResult:
    """Write tags.csv and tags.parquet (when the store has images) and folder_medoids.csv
    (when it has medoids) into `config.dir`, made if need be.

    Example:
        >>> lamina.export_folder(lamina.open(), ExportFolderConfig("out")).files  # doctest: +SKIP
        ['tags.csv', 'tags.parquet', 'folder_medoids.csv']
    """
    from lamina.exports.medoids import write_folder_medoids
    from lamina.exports.tables import export as export_tags

    out = Path(config.dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot make the exports folder {out}: {exc.strerror or exc}",
            hint=config.mkdir_fix,
        ) from None
    written = []
    if "images" in store.available_tables():
        export_tags(store, out / "tags.csv", fix=config.fix)
        export_tags(store, out / "tags.parquet", fix=config.fix)
        written += ["tags.csv", "tags.parquet"]
    if "medoids" in store.available_tables():
        write_folder_medoids(store, out / "folder_medoids.csv", model=config.model, fix=config.fix)
        written.append("folder_medoids.csv")
    return ExportFolderResult(str(out), written)


@dataclass(frozen=True)
class SidecarsConfig:
    """What `lamina sidecars` takes (its defaults). use: "approved" labels or
    "over_threshold" tags; style: "adobe" (photo.xmp) or "darktable" (photo.jpg.xmp);
    sidecar_dir: a mirror tree instead of next to the photos; with_decisions: also the
    reject / keep marks (`XMP-xmp:Rating` -1 for rejected)."""

    use: str = "approved"
    style: str = "adobe"
    sidecar_dir: str | os.PathLike[str] | None = None
    replace: bool = False
    dry_run: bool = False
    with_decisions: bool = False


@dataclass
class SidecarsResult:
    """Sidecars written (created + updated), failed; `summary` is
    `lamina.exports.sidecars.write_sidecars`'s (counts by action, results, problems, …)."""

    written: int
    failed: int
    summary: dict[str, Any]


def sidecars(store: Store, config: SidecarsConfig = SidecarsConfig()) -> SidecarsResult:
    """Write the labels into XMP sidecars with exiftool (originals are never modified).

    Example:
        >>> lamina.sidecars(lamina.open(), SidecarsConfig(dry_run=True)).written  # doctest: +SKIP
        0
    """
    from lamina.exports.sidecars import write_sidecars

    s = write_sidecars(
        store,
        use=config.use,
        style=config.style,
        sidecar_dir=config.sidecar_dir,
        replace=config.replace,
        dry_run=config.dry_run,
        with_decisions=config.with_decisions,
    )
    return SidecarsResult(s["created"] + s["updated"], s["failed"], s)
