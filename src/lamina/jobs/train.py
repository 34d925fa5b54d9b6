"""`lamina train` and `lamina experiments`: classifier heads on a stored embedding layer,
each run a row of the experiments table with its artefacts (see
`lamina.learning.experiments`)."""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

import lamina.catalog  # noqa: F401 - registers the built-in passes
from lamina.core.errors import LaminaError
from lamina.core.store import Store
from lamina.learning.heads import CLASS_WEIGHTS, HEADS, HeadConfig

# A rough speed for the grid's time estimate (multiply-adds per second of NumPy / torch
# on one laptop core, measured on bench/train.py's shapes to within about 3x).
_FLOPS = 2e9


@dataclass(frozen=True)
class TrainConfig:
    """What `lamina train` takes. `labels`: a label source (`lamina.learning.labels`);
    `models`: embedding models (empty: the latest embedded); `heads` x `class_weights` x
    `models` is the grid, one experiment each; `fractions`: train / val / test shares;
    `drop_below`: leave out classes under N images; `drop_missing`: leave out labelled
    images never embedded (else refused, naming the `lamina embed` that fixes it; images
    whose embedding failed, an undecodable file, are always left out and counted);
    `max_minutes`: a grid estimated to take longer is refused unless `force`; `where`: a
    SQL condition (as `lamina approve --where` takes it) that picks the images whose
    labels are used."""

    labels: str = "folder"
    where: str | None = None
    models: tuple[str, ...] = ()
    heads: tuple[str, ...] = ("logreg",)
    class_weights: tuple[str, ...] = ("balanced",)
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    drop_below: int = 0
    drop_missing: bool = False
    head: HeadConfig = field(default_factory=HeadConfig)
    max_minutes: float = 60.0
    force: bool = False


@dataclass
class TrainResult:
    """The class table, the split, and one row per experiment (the experiments table's)."""

    run_id: str
    class_table: str
    split_id: str
    split_sizes: dict[str, int]
    split_reused: bool
    leak_pairs: int
    experiments: list[dict[str, Any]]
    left_out: dict[str, int]

    def comparison(self) -> str:
        return comparison_table(self.experiments)


def comparison_table(rows: list[dict[str, Any]]) -> str:
    """One line per experiment: head, weighting, model, the test metrics, time; the best
    test balanced accuracy marked with *.

    Example:
        >>> print(comparison_table([]))
        no experiments
    """
    if not rows:
        return "no experiments"
    best = max(r["balanced_accuracy"] for r in rows)
    head = (
        f"{'experiment':<24} {'head':<6} {'weights':<8} {'model':<28} "
        f"{'bal_acc':>7} {'macroF1':>7} {'ECE':>6} {'prior':>6} {'train_s':>7}"
    )
    lines = [head]
    for r in rows:
        mark = "*" if r["balanced_accuracy"] == best else " "
        lines.append(
            f"{r['experiment_id']:<24} {r['head']:<6} {r['class_weight']:<8} {r['model'][:28]:<28} "
            f"{r['balanced_accuracy']:>7.4f} {r['macro_f1']:>7.4f} {r['ece']:>6.3f} "
            f"{r['baseline_balanced_accuracy']:>6.3f} {r['train_seconds']:>7.1f}{mark}"
        )
    return "\n".join(lines)


def estimate_seconds(head: HeadConfig, n_train: int, dim: int, classes: int) -> float:
    """A rough upper estimate of one head's training time, from its multiply-adds."""
    if head.head == "logreg":
        flops = 2 * 300 * n_train * dim * classes * len(head.c_values)
    else:
        flops = 6 * head.epochs * n_train * (dim * head.hidden + head.hidden * classes)
    return flops / _FLOPS


def _grid(config: TrainConfig) -> list[tuple[str | None, HeadConfig]]:
    for name in config.heads:
        if name not in HEADS:
            raise LaminaError(f"unknown head {name!r}", hint=f"use one of {', '.join(HEADS)}")
    for cw in config.class_weights:
        if cw not in CLASS_WEIGHTS:
            raise LaminaError(
                f"unknown class weighting {cw!r}", hint=f"use one of {', '.join(CLASS_WEIGHTS)}"
            )
    models: list[str | None] = list(config.models) or [None]
    return [
        (m, replace(config.head, head=h, class_weight=cw, seed=config.seed))
        for m, h, cw in itertools.product(models, config.heads, config.class_weights)
    ]


def _dim(store: Store, model: str) -> int:
    """The width of `model`'s vectors, from its layer's schema."""
    import pyarrow.parquet as pq

    from lamina.core.layers import readable_parts
    from lamina.core.vectors import embedding_layers

    parts = readable_parts(embedding_layers(store)[model])
    return int(pq.read_schema(parts[0]).field("vector").type.list_size)


def train(
    store: Store, config: TrainConfig = TrainConfig(), echo: Callable[[str], None] | None = None
) -> TrainResult:
    """Train the heads of `config`'s grid on the store's labelled images (one frozen,
    leak-checked split for all), write each experiment's row and artefacts.
    `echo` receives the class table and progress lines as they happen.

    Example:
        >>> r = lamina.train(lamina.open(), TrainConfig(labels="folder"))  # doctest: +SKIP
        >>> print(r.comparison())  # doctest: +SKIP
    """
    from lamina.core.ledger import Run
    from lamina.learning.heads import embedded_ids
    from lamina.learning.labels import class_table, load_labels
    from lamina.learning.splits import freeze_split

    say = echo or (lambda _text: None)
    grid = _grid(config)
    only = None
    if config.where:
        from lamina.jobs.approve import where_ids

        only = set(where_ids(store, config.where))
    labels = load_labels(store, config.labels, drop_below=config.drop_below, only=only)
    left_out: dict[str, int] = {}
    models: dict[str | None, str] = {}
    keep = set(labels.ids)
    for m in dict.fromkeys(m for m, _ in grid):
        model, good, failed = embedded_ids(store, m)
        models[m] = model
        # An image whose embedding failed (it does not decode) cannot be fixed by
        # embedding again: left out and counted. One never embedded can: refused.
        broken = [i for i in labels.ids if i in failed]
        never = [i for i in labels.ids if i not in good and i not in failed]
        if never and not config.drop_missing:
            raise LaminaError(
                f"{len(never)} labelled image(s) have no {model} embedding yet, e.g. "
                + ", ".join(never[:5]),
                hint=f"lamina embed --model {model} (it embeds only what is missing), or "
                "--drop-missing to leave them out",
            )
        keep -= set(broken) | set(never)
        if broken:
            left_out[f"{model} embedding failed (undecodable)"] = len(broken)
        if never:
            left_out[f"never embedded with {model}"] = len(never)
    if len(keep) < len(labels.ids):
        pairs = [
            (i, label) for i, label in zip(labels.ids, labels.labels, strict=True) if i in keep
        ]
        labels = replace(labels, ids=[i for i, _ in pairs], labels=[label for _, label in pairs])
    table = class_table(labels)
    if left_out:
        table += "\nleft out: " + "; ".join(f"{n} image(s): {why}" for why, n in left_out.items())
    say(table)
    n_classes = len(labels.classes)
    dims = {m: _dim(store, model) for m, model in models.items()}
    estimates = [
        estimate_seconds(h, int(len(labels.ids) * config.fractions[0]), dims[m], n_classes)
        for m, h in grid
    ]
    total_estimate = sum(estimates)
    if len(grid) > 1:
        say(f"grid: {len(grid)} configurations, estimated at most {total_estimate / 60:.1f} min")
    if total_estimate > config.max_minutes * 60 and not config.force:
        raise LaminaError(
            f"the grid has {len(grid)} configurations, estimated at up to "
            f"{total_estimate / 60:.0f} min (limit {config.max_minutes:.0f} min)",
            hint="give fewer --head / --class-weight / --model values, or --force to run it",
        )
    store.check_writable()
    record = {"train": json.loads(json.dumps(asdict(config), default=str))}
    with store.write_lock("train"), Run(store, "train", record) as run:
        split, leaks = freeze_split(store, labels, config.fractions, config.seed)
        sizes = split.sizes()
        say(
            f"split {split.split_id} ({'stored, reused' if split.reused else 'new, frozen'}): "
            f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; "
            f"cross-split duplicate pairs: {leaks}"
        )
        if leaks:
            say(
                f"warning: {leaks} pair(s) of duplicates fall in two splits (the duplicate "
                "groups changed since this split was frozen); test metrics may be optimistic"
            )
        rows = []
        features: dict[str | None, tuple[np.ndarray, str, str]] = {}
        for m, head in grid:
            if m not in features:
                from lamina.learning.heads import feature_matrix

                features = {m: feature_matrix(store, models[m], split.ids)}  # one map at a time
            row = _experiment(store, run.run_id, config, labels, split, leaks, features[m], head)
            rows.append(row)
            say(
                f"{row['experiment_id']}: {head.head}/{head.class_weight} on {row['model']}: "
                f"{row['scored_on']} balanced accuracy {row['balanced_accuracy']:.4f} "
                f"(prior {row['baseline_balanced_accuracy']:.4f}) in {row['train_seconds']:.1f}s"
            )
        run.count("experiments", len(rows))
    return TrainResult(
        run.run_id, table, split.split_id, sizes, split.reused, leaks, rows, left_out
    )


def _experiment(
    store: Store,
    run_id: str,
    config: TrainConfig,
    labels: Any,
    split: Any,
    leaks: int,
    feats: tuple[np.ndarray, str, str],
    head_config: HeadConfig,
) -> dict[str, Any]:
    """Train, evaluate and record one configuration."""
    import datetime as dt

    from lamina.core.layout import atomic_write_bytes
    from lamina.core.ledger import new_run_id
    from lamina.learning.experiments import experiment_dir, model_card, write_row
    from lamina.learning.heads import train_head
    from lamina.learning.metrics import classification_metrics, plot_confusion, prior_baseline
    from lamina.learning.predict import reference

    t0 = time.perf_counter()
    # Microseconds: experiments of one grid start within a second, and their order (what
    # `latest` means) must not depend on the random part of their ids.
    created = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    x, model, layer = feats
    classes = labels.classes
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[label] for label in split.labels], dtype=np.int64)
    tr, va, te = split.indices("train"), split.indices("val"), split.indices("test")
    head = train_head(head_config, x, y, tr, va, classes)
    metrics: dict[str, Any] = {}
    for name, rows in (("train", tr), ("val", va), ("test", te)):
        metrics[name] = classification_metrics(head.predict_proba(x[rows]), y[rows], classes)
    # A tiny collection can leave the test split empty (duplicate groups kept whole): the
    # row's metrics are then the validation split's (else the training one's), and say so.
    scored = "test" if len(te) else "val" if len(va) else "train"
    metrics["scored_on"] = scored
    held = {"test": te, "val": va, "train": tr}[scored]
    metrics["baseline"] = prior_baseline(y[tr], y[held], len(classes))
    experiment_id = new_run_id()
    folder = experiment_dir(store, experiment_id)
    folder.mkdir(parents=True, exist_ok=True)
    head.save(folder)
    buf = io.BytesIO()
    if head.kind == "mlp":
        import torch

        state = head.info.pop("state_dict")
        state["input_mean"] = torch.from_numpy(head.info.pop("input_mean"))
        state["input_std"] = torch.from_numpy(head.info.pop("input_std"))
        torch.save(state, buf)
        atomic_write_bytes(folder / "head.pt", buf.getvalue())
    else:
        import joblib

        joblib.dump(
            {
                "estimator": head.info.pop("estimator"),
                "input_mean": head.info.pop("input_mean"),
                "input_std": head.info.pop("input_std"),
            },
            buf,
        )
        atomic_write_bytes(folder / "head.joblib", buf.getvalue())
    onnx_bytes = head.to_onnx(model, {"experiment_id": experiment_id, "embed_layer": layer})
    atomic_write_bytes(folder / "head.onnx", onnx_bytes)
    diff = _onnx_diff(onnx_bytes, head, x, held)
    ref: dict[str, Any] = reference(x, y, tr, np.concatenate([va, te]), len(classes))
    buf = io.BytesIO()
    np.savez(buf, **ref)
    atomic_write_bytes(folder / "reference.npz", buf.getvalue())
    png = plot_confusion(
        metrics[scored]["confusion"],
        classes,
        f"{head.kind}/{head_config.class_weight} - {scored} split",
    )
    atomic_write_bytes(folder / "confusion.png", png)
    test = metrics[scored]
    sizes = split.sizes()
    row: dict[str, Any] = {
        "experiment_id": experiment_id,
        "created": created,
        "run_id": run_id,
        "labels": labels.source,
        "split_id": split.split_id,
        "model": model,
        "embed_layer": layer,
        "head": head.kind,
        "class_weight": head_config.class_weight,
        "config": json.dumps(asdict(head_config), sort_keys=True),
        "classes": classes,
        "n_train": sizes["train"],
        "n_val": sizes["val"],
        "n_test": sizes["test"],
        "scored_on": scored,
        "leak_pairs": leaks,
        "val_balanced_accuracy": metrics["val"]["balanced_accuracy"],
        "balanced_accuracy": test["balanced_accuracy"],
        "macro_f1": test["macro_f1"],
        "accuracy": test["accuracy"],
        "ece": test["ece"],
        "baseline_balanced_accuracy": metrics["baseline"]["balanced_accuracy"],
        "per_class": json.dumps(test["per_class"], sort_keys=True),
        "train_seconds": head.info["train_seconds"],
        "total_seconds": 0.0,
        "device": str(head.info.get("device", "cpu")),
        "onnx_max_abs_diff": diff,
        "artefacts": str(folder),
    }
    info = {k: v for k, v in head.info.items() if k != "config"}
    document = {"experiment": row, "training": info, **metrics}
    counts = dict(labels.counts())
    atomic_write_bytes(folder / "MODEL_CARD.md", model_card(row, metrics, counts).encode())
    row["total_seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_bytes(
        folder / "metrics.json",
        json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
    )
    write_row(store, row)
    return row


def _onnx_diff(onnx_bytes: bytes, head: Any, x: np.ndarray, rows: np.ndarray) -> float:
    """The largest |ONNX - lamina| probability over up to 2,048 rows: the export check."""
    import onnxruntime as ort

    sample = np.asarray(x[np.sort(rows)[:2048]], dtype=np.float32)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"embedding": sample})[0]
    diff = float(np.abs(got - head.predict_proba(sample)).max()) if len(sample) else 0.0
    if diff > 1e-3:
        raise LaminaError(f"the ONNX export differs from lamina's predictions by {diff:.2e}")
    return round(diff, 9)


@dataclass(frozen=True)
class ExperimentsConfig:
    """What `lamina experiments` takes: ids to compare (empty: all)."""

    ids: tuple[str, ...] = ()


def experiments(
    store: Store, config: ExperimentsConfig = ExperimentsConfig()
) -> list[dict[str, Any]]:
    """The experiments' rows (those of `config.ids`, else all), oldest first; an unknown
    id is an error naming the known ones.

    Example:
        >>> print(comparison_table(lamina.experiments(lamina.open())))  # doctest: +SKIP
    """
    from lamina.learning.experiments import get_experiment, list_experiments

    if config.ids:
        return [get_experiment(store, i) for i in config.ids]
    return list_experiments(store)
