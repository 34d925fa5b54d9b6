"""`lamina caption`: a sentence for the images that show what the collection holds, not
for every image. By default the cluster exemplars (medoid, far, edge and unique picks of
`lamina cluster`) and the images flagged `outlier`; `where` for anything else, `everything`
only when asked; at most `max_images`, with the estimated time said first (`plan`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store

DEFAULT_SELECTION = "exemplars + outliers"
# Seconds per image per MB of weights on one CPU core, greedy decoding of ~20 tokens: a
# rough prior for a model never run on this store (BLIP-base, ~1 GB: ~2 s an image).
SECONDS_PER_MB = 0.002


@dataclass(frozen=True)
class CaptionConfig:
    """What `lamina caption` takes: the model spec, the prompt, which images (`where`,
    else every image with `everything`, else the exemplars and outliers), at most
    `max_images` of them (by image id), the generation length, how to run."""

    model: str
    prompt: str = ""
    where: str | None = None
    everything: bool = False
    max_images: int | None = None
    max_new_tokens: int = 30
    min_new_tokens: int = 0
    batch_size: int = 8
    workers: int | None = 1
    offline: bool = False
    progress: bool = True


@dataclass
class CaptionPlan:
    """Which images would be captioned, how many are done already, and the estimated
    seconds for the rest (`basis` says where the per-image time comes from)."""

    selection: str
    image_ids: list[str]
    todo: int
    estimate_s: float
    basis: str


@dataclass
class CaptionResult:
    """What the run did."""

    run_id: str
    plan: CaptionPlan
    processed: int
    errors: int
    counts: dict[str, Any] = field(default_factory=dict)


def pass_config(config: CaptionConfig) -> dict[str, Any]:
    """The captions pass's config from the job's.

    Example:
        >>> pass_config(CaptionConfig("hf:/m", prompt="a photo of"))["prompt"]
        'a photo of'
    """
    return {
        "model": config.model,
        "prompt": config.prompt,
        "max_new_tokens": config.max_new_tokens,
        "min_new_tokens": config.min_new_tokens,
        "batch_size": config.batch_size,
        "offline": config.offline,
    }


def _default_ids(store: Store) -> list[str]:
    tables = store.available_tables()
    parts = []
    if "exemplars" in tables:
        parts.append("select image_id from exemplars")
    if "flags" in tables:
        parts.append("select image_id from flags where outlier")
    if "exemplars" not in tables:
        raise LaminaError(
            "no cluster exemplars yet: captions go to the exemplars and outliers by default",
            hint="run `lamina cluster` first, or give --where CONDITION (or --all)",
        )
    rows = store.sql(" union ".join(parts) + " order by 1")
    return [i for i in rows.column(0).to_pylist() if i is not None]


def plan(store: Store, config: CaptionConfig) -> CaptionPlan:
    """The images `config` selects and the estimated time, before any work.

    Example:
        >>> plan(lamina.open(), CaptionConfig("hf:/models/blip", max_images=50))  # doctest: +SKIP
        CaptionPlan(selection='exemplars + outliers', image_ids=[…], todo=50, …)
    """
    import pyarrow.compute as pc

    from lamina.backends.captioners import model_bytes, model_folder, parse_spec
    from lamina.core.passes import get_pass
    from lamina.core.runner import done_keys, image_inputs
    from lamina.jobs.select import SelectConfig, select

    target = parse_spec(config.model)
    if target.startswith(("/", ".")):
        model_folder(target, config.offline)  # a folder that is not there: say so first
    if not store.table_files("images"):
        raise LaminaError(f"the store {store.root} has no images yet", hint="lamina scan SOURCE")
    if config.everything:
        selection, ids = "all", image_inputs(store)["image_id"].to_pylist()
    elif config.where:
        selection, ids = config.where, select(store, SelectConfig(config.where, ids=True)).lines
    else:
        selection, ids = DEFAULT_SELECTION, _default_ids(store)
    ids = sorted(set(ids))
    if config.max_images:
        ids = ids[: config.max_images]
    instance = get_pass("captions", pass_config(config))
    done = done_keys(store, instance)
    todo = len(ids) - (int(pc.sum(pc.is_in(ids, value_set=done)).as_py() or 0) if len(done) else 0)
    seconds, basis = None, ""
    if store.layer_dirs("captions"):
        # The model spec is a bound parameter, never spliced into the SQL.
        values = (
            store.connect()
            .execute(
                "select median(seconds), count(*) from captions where error is null and model = ?",
                [config.model],
            )
            .fetchone()
        ) or (None, 0)
        if values[1]:
            seconds, basis = float(values[0]), f"median of {values[1]} captions made before"
    if seconds is None:
        mb = model_bytes(model_folder(target, config.offline)) / 2**20
        seconds = max(0.05, SECONDS_PER_MB * mb)
        basis = f"rough: {mb:.0f} MB of weights x {SECONDS_PER_MB} s/MB on one CPU core"
    return CaptionPlan(selection, ids, todo, round(seconds * todo, 1), basis)


def caption(
    store: Store, config: CaptionConfig, planned: CaptionPlan | None = None
) -> CaptionResult:
    """Caption the planned images (resumable: captioned images are skipped).

    Example:
        >>> done = lamina.caption(lamina.open(), CaptionConfig("hf:/models/blip"))  # doctest: +SKIP
        >>> done.processed  # doctest: +SKIP
        42
    """
    from lamina.core.runner import run_passes

    planned = planned or plan(store, config)
    result = run_passes(
        store,
        [("captions", pass_config(config))],
        command="caption",
        workers=config.workers,
        progress=config.progress,
        image_ids=planned.image_ids,
    )
    counts = result["captions"]
    return CaptionResult(
        run_id=str(result["run_id"]),
        plan=planned,
        processed=int(counts.get("processed", 0)),
        errors=int(counts.get("error_rows", 0)),
        counts=counts,
    )


@dataclass(frozen=True)
class CompareConfig:
    """What `lamina caption --compare` takes: caption clusters (0: as many as the image
    clusters the captions cover)."""

    k: int = 0
    min_support: int = 3
    min_gain: float = 0.5
    progress: bool = True


def compare(store: Store, config: CompareConfig = CompareConfig()) -> Any:
    """Cluster the captions (all-MiniLM-L6-v2, offline) and compare them with the image
    clusters: an `lamina.analysis.language.Agreement` (ARI, NMI, per-cluster spread, and
    the `new_axes`: caption terms that split an image cluster).

    Example:
        >>> compare(lamina.open()).ari  # doctest: +SKIP
        0.42
    """
    from lamina.analysis.language import agreement
    from lamina.core.runner import run_passes

    axes = {"min_support": config.min_support, "min_gain": config.min_gain}
    run_passes(store, [("caption_clusters", {"k": config.k}), ("new_axes", axes)],
               command="caption-compare", progress=config.progress)  # fmt: skip
    t = store.table("caption_clusters")
    result = agreement(t["image_cluster"].to_pylist(), t["caption_cluster"].to_pylist())
    result.new_axes = store.table("new_axes").to_pylist()
    return result
