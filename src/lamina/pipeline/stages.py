"""The stages of `lamina run`, in run order: each calls what its single verb calls
(`lamina scan`, `sense`, `embed`, `cluster`, `tag`, `export`, `sidecars`, `report`) and
says what it did (`StageResult`). The orchestration (skips, run record) is in
`lamina.pipeline`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.core.config import expand_user
from lamina.core.errors import ConfigError
from lamina.core.store import Store
from lamina.pipeline.config import PipelineConfig

log = logging.getLogger("lamina")


@dataclass
class StageResult:
    """What one stage did: `worked` is False when everything was already up to date."""

    name: str
    worked: bool
    seconds: float
    summary: dict[str, Any]
    message: str
    errors: int = 0


def _did_work(result: dict[str, Any]) -> bool:
    for key, value in result.items():
        if key == "run_id" or not isinstance(value, dict):
            continue
        if value.get("processed") or value.get("skipped") is False:
            return True
    return False


def _failed(result: dict[str, Any]) -> int:
    return sum(v.get("failed_chunks", 0) or 0 for v in result.values() if isinstance(v, dict))


def _workers(config: PipelineConfig) -> int | None:
    return config.workers or None


def stage_scan(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.scan import ScanConfig, scan

    done = scan(
        store,
        ScanConfig(
            sources=tuple(config.root),
            workers=_workers(config),
            progress=progress,
            follow_links=config.follow_links,
            archive_depth=config.archive_depth,
        ),
    )
    status = ", ".join(f"{k} {v}" for k, v in done.status.items()) or "no files"
    return StageResult(
        "scan",
        done.worked,
        0.0,
        done.summary,
        f"{done.files} files ({status}); {done.new_images} new images",
        done.failed_chunks,
    )


def stage_sense(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.sense import SenseConfig, sense

    done = sense(
        store,
        SenseConfig(
            policy=config.policy or None,
            invariant=config.invariant,
            workers=_workers(config),
            max_images=config.max_images or None,
            progress=progress,
        ),
    )
    flagged = {k: v for k, v in done.summary.get("flags", {}).items() if v}
    top = ", ".join(f"{k} {v}" for k, v in sorted(flagged.items(), key=lambda kv: -kv[1])[:5])
    counts = done.decode
    message = (
        f"{done.sensed} images sensed ({done.already_done} already done); {counts['broken']} "
        f"broken files ({counts['undecodable']} undecodable); flags: {top or 'none'}"
    )
    return StageResult(
        "sense",
        _did_work(done.passes),
        0.0,
        {**done.summary, "run_id": done.run_id},
        message,
        done.failed_chunks,
    )


def stage_embed(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.backends.embedders import DEFAULT_SPEC
    from lamina.jobs.embed import EmbedConfig, auto_model_line, classify_message, embed

    model = config.embed_model()
    if not config.model_name:
        line = auto_model_line((config.model.strip() or "auto",), config.offline)
        if line:
            log.info(line)
    offline_tags = "tag" in config.stages and config.labels_file and config.tagger() == "offline"
    done = embed(
        store,
        EmbedConfig(
            models=(model,),
            batch_size=config.batch_images,
            workers=_workers(config),
            offline=config.offline,
            # Tagging offline with another embed model needs the ImageNet classes of
            # EfficientNet-Lite0 too: a second model on the same decode.
            classify=bool(offline_tags and model != DEFAULT_SPEC),
            max_images=config.max_images or None,
            progress=progress,
        ),
    )
    counts = done.passes["embed"]
    message = (
        f"{model}: {counts['processed'] - counts['error_rows']} embedded, "
        f"{counts['error_rows']} errors, {counts['already_done']} already done"
    )
    if done.classify is not None:
        message += f"; {classify_message(done.classify, done.shared)}"
    return StageResult(
        "embed",
        _did_work(done.passes),
        0.0,
        {**counts, "run_id": done.run_id},
        message,
        done.failed_chunks,
    )


def stage_cluster(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.cluster import ClusterConfig, cluster

    done = cluster(
        store,
        ClusterConfig(model=config.embed_model(), k=config.clusters, policy=config.policy or None),
    )
    summary = done.summary
    dups = summary.get("semantic_duplicates") or {}
    message = (
        f"{summary['images']} images in {len(summary['clusters'])} clusters; "
        f"{dups.get('groups', 0)} semantic duplicate groups"
    )
    return StageResult(
        "cluster", _did_work(done.passes), 0.0, {**summary, "run_id": done.run_id}, message
    )


def stage_tag(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    # Without a labels_file the run skips this stage (`lamina.pipeline._skip_reason`).
    from lamina.jobs.embed import classify_message
    from lamina.jobs.tag import TagConfig, tag

    tagger = config.tagger()
    done = tag(
        store,
        TagConfig(
            labels=config.labels_file,
            model=tagger,
            # The offline tagger compares label words with class names: prompts do not apply.
            templates=None if tagger == "offline" else tuple(config.templates),
            threshold=config.threshold_value(),
            topk=config.topk,
            batch_images=config.batch_images,
            batch_labels=config.batch_labels,
            workers=_workers(config),
            offline=config.offline,
            max_images=config.max_images or None,
            progress=progress,
        ),
    )
    s = done.summary
    worked = _did_work(s.get("passes", {})) if "passes" in s else True
    missing = len(s.get("missing") or [])
    message = (
        f"{s.get('images', 0)} images tagged with {s.get('labels', 0)} labels "
        f"({s.get('model_name', config.tagger())})"
        + (f"; {missing} without an embedding" if missing else "")
    )
    if (s.get("classify") or {}).get("processed"):
        message += f"; {classify_message(s['classify'], None)}"
    return StageResult("tag", worked, 0.0, s, message)


def run_dir_of(store: Store, config: PipelineConfig) -> Path:
    return expand_user(config.run_dir) if config.run_dir else store.root / "exports"


# What the export stage writes into run_dir, and the fix when one of them is in the way.
RUN_DIR_FILES = ("tags.csv", "tags.parquet", "folder_medoids.csv", "config.json")
RUN_DIR_FIX = "move it away, or set run_dir to another folder"


def check_run_dir(store: Store, config: PipelineConfig) -> Path:
    """run_dir and the files the export stage writes there, checked as any output
    (`lamina.core.outputs`): not inside a source or the store's tables, not over a
    recorded file or a file lamina did not write.

    Example:
        >>> config = PipelineConfig(root=["photos"], run_dir="photos/out")
        >>> check_run_dir(store, config)  # doctest: +SKIP
        OutputError: the output folder …/photos/out lies inside the source photos; …
    """
    from lamina.core.outputs import check_output_path

    out = run_dir_of(store, config)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"cannot make the exports folder {out}: a file of that name is in the way",
            hint="set run_dir to a folder (default: <store>/exports)",
        )
    check_output_path(store, out, folder=True, sources=config.root)
    for name in RUN_DIR_FILES:
        check_output_path(store, out / name, sources=config.root, fix=RUN_DIR_FIX)
    return out


def stage_export(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.exports import ExportFolderConfig, export_folder

    out = check_run_dir(store, config)
    done = export_folder(
        store,
        ExportFolderConfig(
            out,
            model=config.embed_model(),
            fix=RUN_DIR_FIX,
            mkdir_fix="set run_dir to a folder you can write (default: <store>/exports)",
        ),
    )
    written = done.files
    return StageResult(
        "export",
        True,
        0.0,
        {"dir": str(out), "files": written},
        f"{', '.join(written) or 'nothing to export'} -> {out}",
    )


def stage_sidecars(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.exports import SidecarsConfig, sidecars

    done = sidecars(
        store,
        SidecarsConfig(
            use=config.sidecar_use,
            style=config.sidecar_style,
            sidecar_dir=config.sidecar_dir or None,
        ),
    )
    s = done.summary
    written = done.written
    failed = done.failed
    message = f"{written} sidecars written ({s['unchanged']} unchanged), {failed} failed"
    return StageResult("sidecars", bool(written), 0.0, s, message, failed)


def stage_report(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.report import build_report

    # The sense stage makes the thumbnails (of the max_images sample, if one is set);
    # the report then only links them.
    path = build_report(store, thumbnails="sense" not in config.stages)
    return StageResult("report", True, 0.0, {"path": str(path)}, f"file://{path}")


def stage_ocr(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.ocr import OcrConfig, ocr

    done = ocr(store, OcrConfig(engine=config.ocr_engine, workers=_workers(config),
                                progress=progress))  # fmt: skip
    message = f"{done.selected} {done.selection} images, {done.with_text} with text"
    return StageResult("ocr", done.processed > 0, 0.0, {**done.__dict__}, message, done.errors)


def stage_modality(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.modality import ModalityJobConfig, modality

    done = modality(store, ModalityJobConfig(workers=_workers(config), progress=progress))
    message = ", ".join(f"{n} {k}" for k, n in done.counts.items())
    return StageResult("modality", _did_work(done.passes), 0.0, {**done.counts}, message)


def stage_caption(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    # Without a caption_model the run skips this stage (`lamina.pipeline._skip_reason`).
    from lamina.jobs.caption import CaptionConfig, caption, plan

    job = CaptionConfig(model=config.caption_model, max_images=config.caption_max,
                        offline=config.offline, progress=progress)  # fmt: skip
    planned = plan(store, job)
    log.info("caption: %d to caption, about %.0f s (%s)", planned.todo, planned.estimate_s,
             planned.basis)  # fmt: skip
    done = caption(store, job, planned)
    summary = {"run_id": done.run_id, "processed": done.processed, "errors": done.errors}
    message = f"{done.processed} captioned ({planned.selection}), {done.errors} errors"
    return StageResult("caption", done.processed > 0, 0.0, summary, message, done.errors)


def stage_depth(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    # Without a depth_model the run skips this stage (`lamina.pipeline._skip_reason`); on the
    # images `modality` calls photos, so it needs that layer (the modality stage, or before).
    from lamina.jobs.depth import DepthJobConfig, depth

    job = DepthJobConfig(model=config.depth_model, max_images=config.max_images or None,
                         workers=_workers(config), offline=config.offline,
                         progress=progress)  # fmt: skip
    done = depth(store, job)
    summary = {"run_id": done.run_id, "selected": done.selected, "processed": done.processed,
               "errors": done.errors}  # fmt: skip
    message = (
        f"{done.processed} measured of {done.selected} ({done.selection}), {done.errors} errors"
    )
    return StageResult("depth", done.processed > 0, 0.0, summary, message, done.errors)


def stage_segment(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.segment import SegmentConfig, segment

    done = segment(
        store,
        SegmentConfig(offline=config.offline, workers=_workers(config),
                      max_images=config.max_images or None, progress=progress),
    )  # fmt: skip
    message = f"{done.segments} segments in {done.images} images, {done.errors} errors"
    return StageResult("segment", _did_work(done.passes), 0.0, {"run_id": done.run_id}, message)


def stage_motifs(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.jobs.motifs import MotifsConfig, motifs

    done = motifs(
        store, MotifsConfig(offline=config.offline, workers=_workers(config), progress=progress)
    )
    message = f"{done.motifs} motifs from {done.segments} segments"
    return StageResult("motifs", _did_work(done.passes), 0.0, {"run_id": done.run_id}, message)


STAGE_FUNCTIONS: dict[str, Callable[[Store, PipelineConfig, bool], StageResult]] = {
    "scan": stage_scan,
    "sense": stage_sense,
    "ocr": stage_ocr,
    "modality": stage_modality,
    "caption": stage_caption,
    "depth": stage_depth,
    "embed": stage_embed,
    "cluster": stage_cluster,
    "segment": stage_segment,
    "motifs": stage_motifs,
    "tag": stage_tag,
    "export": stage_export,
    "sidecars": stage_sidecars,
    "report": stage_report,
}
