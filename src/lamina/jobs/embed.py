"""`lamina embed` and the pipeline's embed stage: image vectors from one or more models,
one layer per model, from one decode per image (and, with the default model, the offline
tagger's ImageNet classes from the same forward pass)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store


@dataclass(frozen=True)
class EmbedConfig:
    """What `lamina embed` takes (its defaults).

    models: model specs (none: `auto`). workers: None = every core on a CPU-only machine,
    else 2. classify: also run the classify pass (the offline tagger's classes) when no
    model is the default one, on the same decode.
    """

    models: tuple[str, ...] = ()
    batch_size: int = 32
    device: str = "auto"
    workers: int | None = None
    offline: bool = False
    classify: bool = False
    max_images: int | None = None
    progress: bool = True


@dataclass
class EmbedResult:
    """Per model: model id, dim, layer, embedded, errors, already_done, failed_chunks;
    the classify pass's counts (and layer) when it ran; every pass's raw counts."""

    run_id: str
    models: list[dict[str, Any]]
    classify: dict[str, Any] | None
    passes: dict[str, dict[str, Any]]
    # The default model's embed counts when it ran in this run (classify shared its pass).
    shared: dict[str, Any] | None = None

    @property
    def failed_chunks(self) -> int:
        return sum(int(v.get("failed_chunks") or 0) for v in self.passes.values())


def embed_configs(
    models: tuple[str, ...],
    batch_size: int,
    device: str,
    workers: int | None,
    offline: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """The embed pass configs for `models`, each model once (by canonical spec); `auto`
    (and no model at all) is resolved first (`lamina.backends.embedders.fetch`).

    Example:
        >>> [c["model"] for _, c in embed_configs(("default", "efficientnet_lite0"), 32, "auto", 1)]
        ['efficientnet_lite0:imagenet']
    """
    from lamina.backends.embedders.fetch import resolve_model
    from lamina.executors.local import default_workers

    # Each worker process gets its share of the cores for torch's threads.
    threads = max(1, default_workers() // workers) if workers else 0
    seen: dict[str, dict[str, Any]] = {}
    for model in models or ("auto",):
        canonical = resolve_model(model, offline)  # a bad spec fails here, before any work
        seen.setdefault(
            canonical,
            {
                "model": canonical,
                "batch_size": batch_size,
                "device": device,
                "threads": threads,
                "offline": offline,
            },
        )
    return [("embed", config) for config in seen.values()]


def auto_model_line(models: tuple[str, ...], offline: bool) -> str | None:
    """The line saying which model `auto` (or no model) stands for and why, else None.

    Example:
        >>> auto_model_line(("default",), False) is None
        True
    """
    from lamina.backends.embedders.fetch import choose_default, offline_mode

    if models and all(m.strip() != "auto" for m in models):
        return None
    return choose_default(offline_mode(offline)).line()


def with_classes(
    passes: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """`passes` plus the classify pass when the default model is among them: the offline
    tagger's ImageNet classes come from the same forward pass as its vectors, so they are
    kept now rather than computed by a second pass when labels come.

    Example:
        >>> [n for n, _ in with_classes(embed_configs(("default",), 32, "auto", 1))]
        ['embed', 'classify']
    """
    from lamina.backends.embedders import DEFAULT_SPEC

    for _, config in passes:
        if config["model"] == DEFAULT_SPEC:
            run = {k: config[k] for k in ("batch_size", "device", "threads")}
            return [*passes, ("classify", run)]
    return passes


OWN_PASS = "by a forward pass of their own (embedded before lamina kept classes with vectors)"


def classify_message(classify: dict[str, Any], embed: dict[str, Any] | None) -> str:
    """What the classify pass did, and how: `embed` is the default model's embed counts
    when it ran in the same run (so the two shared each image's forward pass).

    Example:
        >>> c = {"processed": 5, "error_rows": 1, "already_done": 0}
        >>> classify_message(c, {"processed": 5})
        'classify: 4 classified, 1 errors, from the embed forward pass'
        >>> classify_message(c, {"processed": 0}).split(", ")[2][:30]
        'by a forward pass of their own'
    """
    done, errors = classify["processed"], classify["error_rows"]
    if not done:
        return f"classify: {classify['already_done']} already done"
    head = f"classify: {done - errors} classified, {errors} errors"
    if embed is None:
        return f"{head}, by EfficientNet-Lite0 (the offline tagger's ImageNet classes)"
    shared = min(done, embed["processed"])
    if shared == done:
        return f"{head}, from the embed forward pass"
    if not shared:
        return f"{head}, {OWN_PASS}"
    return f"{head}; {shared} from the embed forward pass, {done - shared} {OWN_PASS}"


def default_workers_for(device: str) -> int | None:
    """Worker processes when none are asked for: every core on a CPU-only machine (None);
    2 where a GPU may be in use, since each worker holds its own copy of each model on the
    device (one decodes while the other runs the model).

    Example:
        >>> default_workers_for("cpu") is None
        True
    """
    from lamina.backends.embedders._common import surely_cpu_only

    if device == "cpu" or (device == "auto" and surely_cpu_only()):
        return None
    return 2


def embed_passes(
    config: EmbedConfig, workers: int | None
) -> list[tuple[str, dict[str, Any] | None]]:
    """The passes embedding runs: one embed pass per model, classify with the default
    model (or when `config.classify`, as a second model on the same decode)."""
    passes = with_classes(
        embed_configs(config.models, config.batch_size, config.device, workers, config.offline)
    )
    if config.classify and not any(name == "classify" for name, _ in passes):
        threads = passes[0][1]["threads"]
        passes.append(("classify", {"batch_size": config.batch_size, "threads": threads}))
    return list(passes)


def _run_record(store: Store, run_id: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((store.run_dir(run_id) / "run.json").read_text())
    return dict(record.get("config", {}))


def embed(store: Store, config: EmbedConfig = EmbedConfig()) -> EmbedResult:
    """Embed every scanned image with each model of `config` (resumable).

    Example:
        >>> result = lamina.embed(lamina.open(), EmbedConfig(models=("default",)))  # doctest: +SKIP
        >>> result.models[0]["embedded"]  # doctest: +SKIP
        312
    """
    from lamina.backends.embedders import DEFAULT_SPEC
    from lamina.backends.embedders.fetch import offline_env
    from lamina.core.runner import run_passes

    if not store.table_files("images"):
        raise LaminaError(
            f"the store {store.root} has no images yet: run `lamina scan SOURCE` first"
        )
    workers = config.workers or default_workers_for(config.device)
    with offline_env(config.offline):
        passes = embed_passes(config, workers)
        result = run_passes(
            store,
            passes,
            command="embed",
            workers=workers,
            progress=config.progress,
            max_images=config.max_images,
        )
    run_id = str(result["run_id"])
    record = _run_record(store, run_id)
    models = []
    classes = None
    for key, info in record.get("passes", {}).items():
        counts = result.get(key, {})
        if key == "classify":
            classes = {**counts, "layer": f"classify/{info['layer']}"}
            continue
        model = info.get("model", {})
        models.append(
            {
                "model": model.get("id", info["config"]["model"]),
                "dim": model.get("dim"),
                "layer": f"embed/{info['layer']}",
                "embedded": counts.get("processed", 0) - counts.get("error_rows", 0),
                "errors": counts.get("error_rows", 0),
                "already_done": counts.get("already_done", 0),
                "failed_chunks": counts.get("failed_chunks", 0),
            }
        )
    default = next((k for k, v in record.get("passes", {}).items()
                    if v["config"].get("model") == DEFAULT_SPEC), None)  # fmt: skip
    return EmbedResult(
        run_id=run_id,
        models=models,
        classify=classes,
        passes={k: v for k, v in result.items() if k != "run_id"},
        shared=result.get(default) if default else None,
    )
