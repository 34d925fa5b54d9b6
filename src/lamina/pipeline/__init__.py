"""The main job, `lamina run`: scan → sense → embed → cluster → tag → export → report, driven
by one flat TOML config.

Every stage is one of the resumable steps the single verbs run (`lamina scan`, `sense`,
`embed`, `cluster`, `tag`, `export`, `report`), so a run killed at any moment continues
where it stopped, and a run over an unchanged collection recomputes nothing and says so.
The resolved config is frozen into the run record (`runs/<run_id>/config.json`) and next
to the exports (`run_dir/config.json`); `run.json` also names the executor that ran the
passes (`config.executor`: local, or Ray and its address without credentials).

Modules: `config` (the TOML, its defaults and checks), `stages` (what each stage does);
this one runs them in order, skips what is up to date and keeps the run record.

Example:
    >>> config = resolve_config(Path("lamina.toml"), {"root": ["photos"]})  # doctest: +SKIP
    >>> run_pipeline(Store.open("store", create=True), config)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lamina.core.errors import LaminaError
from lamina.core.execution import executor_record
from lamina.core.ledger import Run
from lamina.core.outputs import record_output
from lamina.core.store import Store, atomic_write_json
from lamina.pipeline.config import STAGES, PipelineConfig, check_before_work
from lamina.pipeline.stages import STAGE_FUNCTIONS, StageResult, check_run_dir, run_dir_of


def _has_images(store: Store) -> bool:
    if not store.table_files("images"):
        return False
    return bool(store.sql("select count(*) from images").column(0)[0].as_py())


def _outputs_record(store: Store, stage: str) -> Path:
    return store.root / "ledger" / "pipeline" / f"{stage}.json"


def _data_fingerprint(store: Store) -> str:
    """A fingerprint of every table and current layer (`files` by its row digest, so a
    rescan that changes nothing leaves it as it was)."""
    from lamina.core.runner import input_fingerprint

    tables = input_fingerprint(store, [t for t in store.available_tables() if t != "runs"])
    # `files` counts there by the rows that hold an image; the report and the exports also
    # show junk, so the digest of every row (the digest file's second line) counts here.
    digest = store.table_dir("files") / "files.digest"
    return tables + (digest.read_text().replace("\n", " ").strip() if digest.is_file() else "")


def _outputs_of(store: Store, config: PipelineConfig, stage: str) -> list[str]:
    """The files an export or report stage wrote (each must still be there to skip it)."""
    if stage == "report":
        folder = store.root / "report"
        return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    out = run_dir_of(store, config)
    return [str(out / name) for name in ("tags.csv", "tags.parquet", "folder_medoids.csv")
            if (out / name).is_file()]  # fmt: skip


def _skip_reason(store: Store, config: PipelineConfig, stage: str) -> str | None:
    """Why a stage cannot or need not run now, else None."""
    if stage == "tag" and not config.labels_file:
        return "no labels_file"
    if stage == "caption" and not config.caption_model:
        return "no caption_model"
    if stage == "depth" and not config.depth_model:
        return "no depth_model"
    busy = ("sense", "embed", "cluster", "segment", "motifs", "tag", "sidecars", "ocr",
            "modality", "caption", "depth")  # fmt: skip
    if stage in busy and not _has_images(store):
        return "no images to work on"
    if stage in ("export", "report"):
        # Up to date when made from the very same tables, and every file it wrote is
        # still there (one deleted by hand is made again).
        record = _outputs_record(store, stage)
        if record.is_file():
            done = json.loads(record.read_text())
            outputs = done.get("outputs") or []
            if (
                outputs
                and done.get("inputs") == _data_fingerprint(store)
                and done.get("run_dir") == str(run_dir_of(store, config))
                and all(Path(p).is_file() for p in outputs)
            ):
                return "up to date"
    return None


def notice_report(store: Store, notices: list[str]) -> Path | None:
    """Write the report with `notices` at its top (what stopped a run), and forget that
    the report was up to date, so the next good run replaces it. None when even that
    fails: the notice itself is what the user must see.

    Example:
        >>> notice_report(store, ["the source /photos does not exist"])  # doctest: +SKIP
    """
    from lamina.report import build_report

    _outputs_record(store, "report").unlink(missing_ok=True)
    try:
        return build_report(store, thumbnails=False, notices=notices)
    except Exception:  # a report of a failure must not hide the failure
        return None


def _mark_output(store: Store, config: PipelineConfig, stage: str) -> None:
    record = {
        "inputs": _data_fingerprint(store),
        "run_dir": str(run_dir_of(store, config)),
        "outputs": _outputs_of(store, config, stage),
    }
    atomic_write_json(_outputs_record(store, stage), record)


def collection_summary(store: Store) -> dict[str, Any]:
    """What the collection is, in a few numbers: files by status, images, flagged images,
    duplicate groups, clusters and tagged images (what the store has so far).

    Example:
        >>> collection_summary(lamina.open())["files"]  # doctest: +SKIP
        {'ok': 290, 'junk': 8, 'broken': 3}
    """
    from lamina.analysis.flags import flag_summary

    tables = set(store.available_tables())
    con = store.connect()
    out: dict[str, Any] = {"files": {}, "images": 0}
    if "files" in tables:
        out["files"] = dict(
            con.execute("select status, count(*) from files group by 1 order by 2 desc").fetchall()
        )
    if "images" in tables and "files" in tables:
        out["images"] = con.execute(
            "select count(distinct image_id) from files "
            "where image_id is not null and status <> 'missing'"
        ).fetchone()[0]
    flags = flag_summary(store)
    if "flags" in flags:
        out["flagged"] = {k: v for k, v in flags["flags"].items() if v}
        out["clean"] = flags["clean"]
    if "duplicates" in flags:
        out["duplicate_groups"] = flags["duplicates"]["near_groups"]
        out["redundant_files"] = flags["duplicates"]["redundant_files"]
    if "clusters" in tables:
        out["clusters"] = con.execute(
            "select count(distinct cluster) filter (where cluster >= 0) from clusters"
        ).fetchone()[0]
    if "tags" in tables:
        out["tagged"] = con.execute(
            "select count(*) filter (where top1 is not null) from tags"
        ).fetchone()[0]
    return out


def run_pipeline(
    store: Store,
    config: PipelineConfig,
    *,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the stages of `config` in order as one recorded run; returns the summary.

    A stage that fails for some images records them and the run goes on; a stage that
    cannot run at all (a model that cannot load) stops the run with its message, after
    the run record says which stage it was.

    Example:
        >>> store = Store.open("s", create=True)  # doctest: +SKIP
        >>> run_pipeline(store, PipelineConfig(root=["photos"]))  # doctest: +SKIP
        {'run_id': '2026…', 'stages': {...}, 'report': '/…/s/report/index.html'}
    """
    stages = [s for s in STAGES if s in config.stages]
    check_before_work(config)
    if "export" in config.stages:
        check_run_dir(store, config)
    resolved = dataclasses.asdict(config)
    resolved["embed_model"] = config.embed_model()
    resolved["tagger"] = config.tagger() if config.labels_file else None
    results: dict[str, StageResult] = {}
    # Which executor ran the passes' chunks (`--executor`, `--ray-address`), for whoever
    # reads the run record later; an address's credentials are never written.
    executor = executor_record()
    with Run(store, "run", {"pipeline": resolved, "executor": executor}) as run:
        atomic_write_json(store.run_dir(run.run_id) / "config.json", resolved)
        for i, name in enumerate(stages, 1):
            head = f"[{i}/{len(stages)}] {name}"
            reason = _skip_reason(store, config, name)
            if reason:
                echo(f"{head}: skipped: {reason}")
                results[name] = StageResult(name, False, 0.0, {}, f"skipped: {reason}")
                continue
            echo(f"{head} ...")
            t0 = time.monotonic()
            try:
                result = STAGE_FUNCTIONS[name](store, config, progress)
            except LaminaError as exc:
                run.error(kind="stage", stage=name, message=str(exc))
                if name != "report":
                    # What was done so far is kept (a re-run continues); the report says
                    # which stage stopped and why.
                    fix = f" (fix: {exc.hint})" if exc.hint else ""
                    path = notice_report(store, [f"the {name} stage stopped: {exc}{fix}"])
                    if path is not None:
                        echo(f"report: file://{path}")
                raise
            result.seconds = round(time.monotonic() - t0, 2)
            results[name] = result
            if name in ("export", "report"):
                _mark_output(store, config, name)
            if result.errors:
                run.error(kind="stage", stage=name, failed=result.errors)
            state = "" if result.worked or name in ("export", "report") else " (up to date)"
            echo(f"{head}: {result.message}{state} [{result.seconds:.1f} s]")
            run.count(
                name,
                {
                    "seconds": result.seconds,
                    "worked": result.worked,
                    "message": result.message,
                    "errors": result.errors,
                },
            )
        out = run_dir_of(store, config)
        # Also when the exports were up to date but config.json is not there: a run that
        # stopped after its export stage never wrote it.
        if "export" in results and (results["export"].worked or not (out / "config.json").exists()):
            # The export stage made the folder, so this write can only fail as any store
            # write does (StoreError, with its fix).
            atomic_write_json(out / "config.json", {**resolved, "run_id": run.run_id})
            record_output(store, out / "config.json")
    summary = {
        "run_id": run.run_id,
        "stages": {
            n: {"seconds": r.seconds, "worked": r.worked, "message": r.message, "errors": r.errors}
            for n, r in results.items()
        },
        "up_to_date": not any(
            r.worked for n, r in results.items() if n not in ("export", "report")
        ),
        "report": results["report"].summary.get("path") if "report" in results else None,
        "errors": sum(r.errors for r in results.values()),
        "collection": collection_summary(store),
    }
    summary["report"] = summary["report"] or (
        str(store.root / "report" / "index.html")
        if (store.root / "report" / "index.html").exists()
        else None
    )
    return summary
