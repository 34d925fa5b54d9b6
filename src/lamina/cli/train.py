"""The learning verbs: `train` (heads on a stored embedding layer), `experiments` (list,
compare) and `predict` (an experiment's head over every image, as a layer)."""

from __future__ import annotations

import click

from lamina.cli.app import echo_json, handle_errors, main, open_store


@main.command()
@click.option(
    "--labels",
    default="folder",
    show_default=True,
    help="Where labels come from: folder (each image's folder name), folder:N (the N-th "
    "folder below the source; -N counts up from the image), meta:COLUMN (a column "
    "`lamina attach` added) or approvals (images with exactly one approved label).",
)
@click.option(
    "--where",
    default=None,
    help="Use the labels of the images this SQL condition selects only (the columns "
    "`lamina approve --where` reads), e.g. \"folder like 'photos/%'\".",
)
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    help="Embedding model (backbone); repeat for a grid. Default: the latest embedded.",
)
@click.option(
    "--head",
    "heads",
    multiple=True,
    type=click.Choice(["logreg", "mlp"]),
    help="logreg (scikit-learn) or mlp (torch); repeat for a grid. Default: logreg.",
)
@click.option(
    "--class-weight",
    "class_weights",
    multiple=True,
    type=click.Choice(["balanced", "none"]),
    help="Weigh classes by their rarity (balanced) or not; repeat for a grid. Default: balanced.",
)
@click.option(
    "--grid",
    is_flag=True,
    help="Ablation: every head x both weightings (x each --model), one experiment each, "
    "then a comparison table.",
)
@click.option(
    "--split",
    "fractions",
    nargs=3,
    type=float,
    default=(0.7, 0.15, 0.15),
    show_default=True,
    help="Train, validation and test shares.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the split and the training."
)
@click.option(
    "--drop-below",
    type=int,
    default=0,
    help="Leave out classes with fewer images than this (default: a one-image class is refused).",
)
@click.option(
    "--drop-missing",
    is_flag=True,
    help="Leave out labelled images without a vector (else refused).",
)
@click.option(
    "--epochs",
    type=int,
    default=100,
    show_default=True,
    help="MLP: most epochs (it stops early on the validation score).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "cpu", "cuda"]),
    help="MLP: auto uses CUDA with mixed precision when present.",
)
@click.option(
    "--gpu-memory-mb",
    type=int,
    default=4096,
    show_default=True,
    help="MLP: the GPU memory share to stay within.",
)
@click.option(
    "--max-minutes",
    type=float,
    default=60.0,
    show_default=True,
    help="Refuse a grid estimated to take longer (its size and estimate are printed).",
)
@click.option("--force", is_flag=True, help="Run a grid over --max-minutes anyway.")
@click.option("--json", "as_json", is_flag=True, help="Print the experiments as JSON.")
@click.pass_context
@handle_errors
def train(
    ctx: click.Context,
    labels: str,
    where: str | None,
    models: tuple[str, ...],
    heads: tuple[str, ...],
    class_weights: tuple[str, ...],
    grid: bool,
    fractions: tuple[float, float, float],
    seed: int,
    drop_below: int,
    drop_missing: bool,
    epochs: int,
    device: str,
    gpu_memory_mb: int,
    max_minutes: float,
    force: bool,
    as_json: bool,
) -> None:
    """Train a classifier head on stored embeddings, one experiment per configuration.

    Prints the class counts and imbalance first, freezes a stratified train / val / test
    split that keeps duplicates (exact, near, semantic) on one side and counts any
    cross-split pairs, then trains, evaluates on the test split (balanced accuracy,
    macro-F1, ECE, against the class-prior baseline) and writes each experiment's row
    (`lamina sql "select * from experiments"`) and folder (head, ONNX, metrics.json,
    confusion.png, MODEL_CARD.md) under <store>/experiments/.

    \b
    Example:
        lamina train --labels folder --drop-below 2
        lamina train --labels folder --where "folder like 'photos/%'" --drop-below 2 --grid
    """
    from lamina.jobs.train import TrainConfig
    from lamina.jobs.train import train as run_train
    from lamina.learning.heads import HeadConfig

    if grid:
        heads = heads or ("logreg", "mlp")
        class_weights = class_weights or ("balanced", "none")
    config = TrainConfig(
        labels=labels,
        where=where,
        models=models,
        heads=heads or ("logreg",),
        class_weights=class_weights or ("balanced",),
        fractions=fractions,
        seed=seed,
        drop_below=drop_below,
        drop_missing=drop_missing,
        head=HeadConfig(epochs=epochs, device=device, gpu_memory_mb=gpu_memory_mb),
        max_minutes=max_minutes,
        force=force,
    )
    result = run_train(open_store(ctx), config, echo=None if as_json else click.echo)
    if as_json:
        echo_json(
            {
                "run_id": result.run_id,
                "split_id": result.split_id,
                "split": result.split_sizes,
                "leak_pairs": result.leak_pairs,
                "left_out": result.left_out,
                "experiments": result.experiments,
            }
        )
        return
    click.echo(result.comparison())
    best = max(result.experiments, key=lambda r: r["balanced_accuracy"])
    click.echo(f"artefacts: {best['artefacts']}")
    click.echo(f"next: lamina predict --experiment {best['experiment_id']}")


@main.command()
@click.argument("ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_context
@handle_errors
def experiments(ctx: click.Context, ids: tuple[str, ...], as_json: bool) -> None:
    """List the training experiments, or compare the ones named (ids, `latest`, `best`).

    \b
    Example:
        lamina experiments
        lamina experiments best latest --json
    """
    from lamina.jobs.train import ExperimentsConfig, comparison_table
    from lamina.jobs.train import experiments as list_them

    rows = list_them(open_store(ctx), ExperimentsConfig(ids=ids))
    if as_json:
        echo_json(rows)
    else:
        click.echo(comparison_table(rows))


@main.command()
@click.option(
    "--experiment",
    "-e",
    required=True,
    help="Experiment id, or `best` / `latest` (see `lamina experiments`).",
)
@click.option("--workers", "-j", type=int, default=1, show_default=True, help="Processes.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def predict(ctx: click.Context, experiment: str, workers: int, as_json: bool) -> None:
    """Apply an experiment's head to every image's stored vector: the `predictions` layer
    (label, score, top_k, top_k_scores, entropy, centroid_distance, experiment_id), for
    `select` / `approve --where` (as pred_label, pred_score, ...) and `lamina sql`.
    Resumes after a kill. Also reports drift: the share of images farther from every
    training class than 95% of the held-out images were (about 5% when alike).

    \b
    Example:
        lamina predict --experiment best
        lamina select --where "pred_label = 'cats' and pred_score > 0.9"
    """
    from lamina.jobs.predict import PredictConfig
    from lamina.jobs.predict import predict as run_predict

    result = run_predict(
        open_store(ctx), PredictConfig(experiment, workers=workers, progress=not as_json)
    )
    if as_json:
        echo_json(result.__dict__)
        return
    click.echo(f"experiment {result.experiment_id}: {result.predicted} images predicted, "
               f"{result.missing} without a vector; run {result.run_id}")  # fmt: skip
    for label, n in list(result.labels.items())[:20]:
        click.echo(f"  {label:<24} {n:>7}")
    click.echo(f"drift rate {result.drift_rate:.3f} (threshold {result.drift_threshold:.4f}; "
               "about 0.05 on images like the training ones)")  # fmt: skip
    if result.drift_warning:
        click.secho(f"warning: {result.drift_warning}", fg="yellow", err=True)
