"""The main job, `lamina run`: scan → sense → embed → cluster → tag → export → report, driven
by one flat TOML config.

Every stage is one of the resumable steps the single verbs run (`lamina scan`, `sense`,
`embed`, `cluster`, `tag`, `export`, `report`), so a run killed at any moment continues
where it stopped, and a run over an unchanged collection recomputes nothing and says so.
The resolved config is frozen into the run record (`runs/<run_id>/config.json`) and next
to the exports (`run_dir/config.json`).

The keys `root, labels_file, model_name, pretrained, batch_images, batch_labels, threshold,
topk, max_images, run_dir` are the ones Photo-Tagger users know; the rest are lamina's.

Example:
    >>> config = resolve_config(Path("lamina.toml"), {"root": ["photos"]})  # doctest: +SKIP
    >>> run_pipeline(Store.open("store", create=True), config)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.core.errors import ConfigError, LaminaError
from lamina.core.ledger import Run
from lamina.core.store import Store, atomic_write_json

# Stages in run order. `sidecars` writes files next to the originals (or into a mirror
# tree), so it runs only when asked for.
STAGES = ("scan", "sense", "embed", "cluster", "tag", "export", "sidecars", "report")
DEFAULT_STAGES = ("scan", "sense", "embed", "cluster", "tag", "export", "report")

# Keys holding paths: relative ones are read from the config file's folder.
PATH_KEYS = ("labels_file", "run_dir", "policy", "sidecar_dir")


@dataclass
class PipelineConfig:
    """Everything `lamina run` can be told; `lamina run --print-config` shows it resolved.

    Example:
        >>> PipelineConfig(root=["photos"]).embed_model()
        'efficientnet_lite0:imagenet'
    """

    root: list[str] = field(default_factory=list)  # source folders
    labels_file: str = ""  # one label per line; tags are made only when given
    model: str = "default"  # embedder spec (see `lamina embed --help`)
    model_name: str = ""  # open_clip architecture (Photo-Tagger); overrides `model`
    pretrained: str = ""  # its pretrained tag or checkpoint path
    tag_model: str = ""  # "" = the embedder when it has a text tower, else "offline"
    templates: list[str] = field(default_factory=lambda: ["a photo of {}"])
    batch_images: int = 32
    batch_labels: int = 256
    threshold: float | str = "auto"  # "auto" = the tagger's own default
    topk: int = 5
    max_images: int = 0  # 0 = every image; else the first N by image id (a stable sample)
    run_dir: str = ""  # exports and config.json; "" = <store>/exports
    workers: int = 0  # 0 = every core
    invariant: bool = False  # group mirrored / rotated copies too
    policy: str = ""  # flags policy TOML laid over the defaults
    clusters: int = 0  # k for k-means; 0 = round(sqrt(N / 2))
    sidecar_use: str = "approved"  # approved | over_threshold
    sidecar_style: str = "adobe"  # adobe (name.xmp) | darktable (name.ext.xmp)
    sidecar_dir: str = ""  # a mirror tree instead of next to the originals
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))

    def embed_model(self) -> str:
        """The canonical embedder spec: `open_clip:<model_name>/<pretrained>` when the
        Photo-Tagger keys are set, else `model`."""
        from lamina.backends.embedders import parse_spec

        spec = self.model
        if self.model_name:
            spec = self.model_name
            if ":" not in spec:
                if not self.pretrained:
                    raise ConfigError(
                        f"model_name = {self.model_name!r} needs `pretrained` (a tag such as "
                        "'openai' or a checkpoint file)",
                        hint="set pretrained in the config, or give a full spec as `model`",
                    )
                spec = f"open_clip:{self.model_name}/{self.pretrained}"
        return parse_spec(spec).canonical

    def tagger(self) -> str:
        """The model that scores labels: `tag_model`, else the embedder when it can embed
        text, else the offline tagger."""
        if self.tag_model:
            return self.tag_model
        model = self.embed_model()
        return model if model.startswith(("open_clip:", "hf:")) else "offline"

    def threshold_value(self) -> float | None:
        return None if self.threshold == "auto" else float(self.threshold)


def _check_type(key: str, value: Any, default: Any) -> Any:
    if key == "root" and isinstance(value, str):
        return [value]
    if key == "threshold":
        if value == "auto" or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        raise ConfigError(f"threshold must be a number or 'auto', not {value!r}")
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(
            f"config key {key!r} must be {type(default).__name__}, not {value!r}",
            hint=f"default: {key} = {_toml_value(default)}",
        )
    return value


def resolve_config(path: str | Path | None, overrides: dict[str, Any]) -> PipelineConfig:
    """Defaults, then the TOML file at `path`, then `overrides` (the command line).
    Unknown keys are refused by name; relative paths in the file are read from its folder.

    Example:
        >>> resolve_config(None, {"root": ["photos"], "topk": 3}).topk
        3
    """
    defaults = PipelineConfig()
    values: dict[str, Any] = {}
    known = [f.name for f in dataclasses.fields(PipelineConfig)]
    if path is not None:
        file = Path(path).expanduser()
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"the config file {file} does not exist",
                hint="`lamina run --print-config > lamina.toml` writes one to edit",
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"the config file {file} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read the config file {file}: {exc.strerror or exc}",
                hint="check its permissions",
            ) from None
        base = file.absolute().parent
        for key, value in data.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                raise ConfigError(
                    f"unknown key {key!r} in {file}",
                    hint=f"did you mean {close[0]!r}?" if close else f"keys: {', '.join(known)}",
                )
            value = _check_type(key, value, getattr(defaults, key))
            if key == "root":
                value = [os.path.normpath(base / Path(v).expanduser()) for v in value]
            elif (key in PATH_KEYS and value) or (key == "pretrained" and _is_path(value)):
                value = os.path.normpath(base / Path(value).expanduser())
            values[key] = value
    for key, value in overrides.items():
        if value is not None and value != () and value != []:
            value = list(value) if isinstance(value, tuple) else value
            value = _check_type(key, value, getattr(defaults, key))
            # Paths from the command line are read from the working folder: frozen
            # absolute, so the recorded config means the same from anywhere.
            if key == "root":
                value = [os.path.abspath(os.path.expanduser(v)) for v in value]
            elif key in PATH_KEYS and value:
                value = os.path.abspath(os.path.expanduser(value))
            values[key] = value
    config = dataclasses.replace(defaults, **values)
    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}", hint=f"stages: {', '.join(STAGES)}")
    _check_ranges(config)
    config.embed_model()  # a bad model spec fails here, before any work
    return config


def _is_path(value: str) -> bool:
    """A `pretrained` value that names a checkpoint file rather than a tag."""
    return "/" in value or value.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _check_ranges(config: PipelineConfig) -> None:
    at_least = {"topk": 1, "batch_images": 1, "batch_labels": 1, "max_images": 0,
                "workers": 0, "clusters": 0}  # fmt: skip
    for key, low in at_least.items():
        if getattr(config, key) < low:
            raise ConfigError(f"{key} must be at least {low}, not {getattr(config, key)}")
    if config.threshold != "auto" and not -1.0 <= float(config.threshold) <= 1.0:
        raise ConfigError(
            f"threshold must lie in [-1, 1] (a cosine or a score), not {config.threshold}",
            hint='threshold = "auto" takes the tagger\'s own default',
        )
    choices = {"sidecar_use": ("approved", "over_threshold"),
               "sidecar_style": ("adobe", "darktable")}  # fmt: skip
    for key, allowed in choices.items():
        if getattr(config, key) not in allowed:
            raise ConfigError(
                f"{key} must be one of {', '.join(allowed)}, not {getattr(config, key)!r}"
            )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML string


def config_toml(config: PipelineConfig) -> str:
    """The config as TOML (what `lamina run --print-config` prints), with a comment per key.

    Example:
        >>> "topk = 5" in config_toml(PipelineConfig())
        True
    """
    import inspect

    comments: dict[str, str] = {}
    for line in inspect.getsource(PipelineConfig).splitlines():
        name, _, rest = line.strip().partition(":")
        if "#" in rest and name.isidentifier():
            comments[name] = rest.split("#", 1)[1].strip()
    lines = ["# lamina run: the resolved pipeline config (lamina run --config FILE reads it)"]
    for f in dataclasses.fields(config):
        note = comments.get(f.name)
        lines.append(f"{f.name} = {_toml_value(getattr(config, f.name))}")
        if note:
            lines[-1] += f"  # {note}"
    return "\n".join(lines) + "\n"


# -- stages --------------------------------------------------------------------------------


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
    from lamina.passes.scan import scan

    s = scan(store, config.root, workers=_workers(config), progress=progress)
    worked = bool(s["hashed"] or s["new_images"] or s["events"])
    status = ", ".join(f"{k} {v}" for k, v in s["status"].items()) or "no files"
    return StageResult(
        "scan",
        worked,
        0.0,
        s,
        f"{s['files']} files ({status}); {s['new_images']} new images",
        s["failed_chunks"],
    )


def stage_sense(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.analysis.flags import flag_summary, flags_config, load_policy
    from lamina.core.runner import run_passes
    from lamina.passes.thumbs import thumbs_config

    policy = load_policy(config.policy or None)
    result = run_passes(
        store,
        [
            ("signals", None),
            ("hashes", None),
            ("thumbs", thumbs_config(store)),  # shares the decode with signals and hashes
            ("duplicates", {"invariant": config.invariant}),
            ("flags", flags_config(policy)),
        ],
        command="sense",
        workers=_workers(config),
        progress=progress,
        max_images=config.max_images or None,
    )
    summary = flag_summary(store)
    flagged = {k: v for k, v in summary.get("flags", {}).items() if v}
    top = ", ".join(f"{k} {v}" for k, v in sorted(flagged.items(), key=lambda kv: -kv[1])[:5])
    message = (
        f"{result['signals']['processed']} images sensed "
        f"({result['signals']['already_done']} already done, "
        f"{result['signals']['error_rows']} undecodable); flags: {top or 'none'}"
    )
    return StageResult(
        "sense",
        _did_work(result),
        0.0,
        {**summary, "run_id": result["run_id"]},
        message,
        _failed(result),
    )


def stage_embed(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.cli.embed import default_workers_for, embed_configs
    from lamina.core.runner import run_passes

    workers = _workers(config) or default_workers_for("auto")
    passes: list[tuple[str, dict[str, Any] | None]] = list(
        embed_configs((config.embed_model(),), config.batch_images, "auto", workers)
    )
    if "tag" in config.stages and config.labels_file and config.tagger() == "offline":
        # The offline tagger's ImageNet classes come from the same decode as the vectors
        # (the config `tag_images` runs, so the tag stage finds them done).
        threads = passes[0][1]["threads"] if passes[0][1] else 0
        passes.append(("classify", {"batch_size": config.batch_images, "threads": threads}))
    result = run_passes(
        store,
        passes,
        command="embed",
        workers=workers,
        progress=progress,
        max_images=config.max_images or None,
    )
    counts = result["embed"]
    message = (
        f"{config.embed_model()}: {counts['processed'] - counts['error_rows']} embedded, "
        f"{counts['error_rows']} errors, {counts['already_done']} already done"
    )
    return StageResult(
        "embed",
        _did_work(result),
        0.0,
        {**counts, "run_id": result["run_id"]},
        message,
        _failed(result),
    )


def stage_cluster(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.analysis.cluster_report import cluster_summary
    from lamina.cli.cluster import semantic_configs
    from lamina.core.runner import run_passes

    configs = semantic_configs(config.embed_model(), config.clusters, "kmeans")
    result = run_passes(store, list(configs.items()), command="cluster", progress=False)
    summary = cluster_summary(
        store, configs["clusters"], configs["outliers"], configs["semantic_duplicates"], top=5
    )
    dups = summary.get("semantic_duplicates") or {}
    message = (
        f"{summary['images']} images in {len(summary['clusters'])} clusters; "
        f"{dups.get('groups', 0)} semantic duplicate groups"
    )
    return StageResult(
        "cluster", _did_work(result), 0.0, {**summary, "run_id": result["run_id"]}, message
    )


def stage_tag(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    if not config.labels_file:
        return StageResult("tag", False, 0.0, {}, "no labels_file: tags skipped")
    from lamina.tagging import tag_images

    tagger = config.tagger()
    s = tag_images(
        store,
        config.labels_file,
        model=tagger,
        # The offline tagger compares label words with class names: prompts do not apply.
        templates=None if tagger == "offline" else tuple(config.templates),
        threshold=config.threshold_value(),
        topk=config.topk,
        batch_images=config.batch_images,
        batch_labels=config.batch_labels,
        workers=_workers(config),
        progress=progress,
        max_images=config.max_images or None,
    )
    worked = _did_work(s.get("passes", {})) if "passes" in s else True
    missing = len(s.get("missing") or [])
    message = (
        f"{s.get('images', 0)} images tagged with {s.get('labels', 0)} labels "
        f"({s.get('model_name', config.tagger())})"
        + (f"; {missing} without an embedding" if missing else "")
    )
    return StageResult("tag", worked, 0.0, s, message)


def _run_dir(store: Store, config: PipelineConfig) -> Path:
    return Path(config.run_dir).expanduser() if config.run_dir else store.root / "exports"


def stage_export(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.exports.medoids import write_folder_medoids
    from lamina.exports.tables import export

    out = _run_dir(store, config)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot make the exports folder {out}: {exc.strerror or exc}",
            hint="set run_dir to a folder you can write (default: <store>/exports)",
        ) from None
    written = []
    if "images" in store.available_tables():
        export(store, out / "tags.csv")
        export(store, out / "tags.parquet")
        written += ["tags.csv", "tags.parquet"]
    if "medoids" in store.available_tables():
        write_folder_medoids(store, out / "folder_medoids.csv", model=config.embed_model())
        written.append("folder_medoids.csv")
    return StageResult(
        "export",
        True,
        0.0,
        {"dir": str(out), "files": written},
        f"{', '.join(written) or 'nothing to export'} -> {out}",
    )


def stage_sidecars(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.exports.sidecars import write_sidecars

    s = write_sidecars(
        store,
        use=config.sidecar_use,
        style=config.sidecar_style,
        sidecar_dir=config.sidecar_dir or None,
    )
    written = s["created"] + s["updated"]
    failed = s["failed"]
    message = f"{written} sidecars written ({s['unchanged']} unchanged), {failed} failed"
    return StageResult("sidecars", bool(written), 0.0, s, message, failed)


def stage_report(store: Store, config: PipelineConfig, progress: bool) -> StageResult:
    from lamina.report import build_report

    # The sense stage makes the thumbnails (of the max_images sample, if one is set);
    # the report then only links them.
    path = build_report(store, thumbnails="sense" not in config.stages)
    return StageResult("report", True, 0.0, {"path": str(path)}, f"file://{path}")


STAGE_FUNCTIONS: dict[str, Callable[[Store, PipelineConfig, bool], StageResult]] = {
    "scan": stage_scan,
    "sense": stage_sense,
    "embed": stage_embed,
    "cluster": stage_cluster,
    "tag": stage_tag,
    "export": stage_export,
    "sidecars": stage_sidecars,
    "report": stage_report,
}


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
    out = _run_dir(store, config)
    return [str(out / name) for name in ("tags.csv", "tags.parquet", "folder_medoids.csv")
            if (out / name).is_file()]  # fmt: skip


def _skip_reason(store: Store, config: PipelineConfig, stage: str) -> str | None:
    """Why a stage cannot or need not run now, else None."""
    if stage in ("sense", "embed", "cluster", "tag", "sidecars") and not _has_images(store):
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
                and done.get("run_dir") == str(_run_dir(store, config))
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
        "run_dir": str(_run_dir(store, config)),
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


def check_before_work(config: PipelineConfig) -> None:
    """Refuse, before hours of scanning and embedding, what would stop the run at a later
    stage: a bad label file, an exports folder inside a source.

    Example:
        >>> check_before_work(PipelineConfig(labels_file="nope.txt"))  # doctest: +SKIP
        ConfigError: the label file nope.txt does not exist ...
    """
    if config.labels_file and "tag" in config.stages:
        from lamina.tagging.labels import load_labels

        load_labels(config.labels_file)
    if config.run_dir and "export" in config.stages:
        out = Path(config.run_dir).expanduser().absolute().resolve()
        for root in config.root:
            src = Path(root).expanduser().absolute().resolve()
            if out == src or src in out.parents:
                raise ConfigError(
                    f"run_dir {config.run_dir} lies inside the source {root}; lamina never "
                    "writes inside a source",
                    hint="choose a run_dir outside it (default: <store>/exports)",
                )


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
    resolved = dataclasses.asdict(config)
    resolved["embed_model"] = config.embed_model()
    resolved["tagger"] = config.tagger() if config.labels_file else None
    results: dict[str, StageResult] = {}
    with Run(store, "run", {"pipeline": resolved}) as run:
        atomic_write_json(store.run_dir(run.run_id) / "config.json", resolved)
        for i, name in enumerate(stages, 1):
            head = f"[{i}/{len(stages)}] {name}"
            reason = _skip_reason(store, config, name)
            if reason:
                echo(f"{head}: skipped ({reason})")
                results[name] = StageResult(name, False, 0.0, {}, reason)
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
        if "export" in results and results["export"].worked:
            # The export stage made the folder, so this write can only fail as any store
            # write does (StoreError, with its fix).
            out = _run_dir(store, config)
            atomic_write_json(out / "config.json", {**resolved, "run_id": run.run_id})
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
