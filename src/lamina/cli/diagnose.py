"""The `diagnose` verb: the stop-condition diagnostics (`lamina.jobs.diagnose`)."""

from __future__ import annotations

import click

from lamina.cli.app import echo_json, handle_errors, main, open_store


def _values(values: dict) -> str:
    """`key value` pairs of a check's numbers, lists joined, in one line."""
    parts = []
    for key, value in values.items():
        if isinstance(value, list):
            value = (
                " vs ".join(str(v) for v in value)
                if key in ("models", "motifs")
                else (", ".join(str(v) for v in value))
            )
        parts.append(f"{key} {value}")
    return "; ".join(parts)


@main.command()
@click.option("-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="Clusters of the topology check (0: the current clustering's k, else "
              "sqrt(N / 2)).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="k-means seed.")
@click.option("--segment-weight", type=float, default=0.5, show_default=True,
              help="Share of the squared norm the segment features get when added to the "
              "image embeddings.")  # fmt: skip
@click.option("--outlier-share", type=float, default=0.05, show_default=True,
              help="Share of the most unique images counted as outliers.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_context
@handle_errors
def diagnose(
    ctx: click.Context, k: int, seed: int, segment_weight: float, outlier_share: float,
    as_json: bool,
) -> None:  # fmt: skip
    """Say whether more passes still change the picture (the stop condition).

    Four checks, from the layers in the store (nothing is written): do the motifs of two
    crop embedders agree (ARI / NMI); do the image clusters change when segment features
    are added (ARI against k-means' own seed-to-seed ARI); do outliers stay outliers
    across two models (Jaccard of the top share); do captions agree with the image
    clusters, and how many new axes they add. Each line names its inputs, or what is
    missing and the command that makes it.

    \b
    Example:
        lamina diagnose
        lamina diagnose --json
    """
    from lamina.jobs.diagnose import DiagnoseConfig
    from lamina.jobs.diagnose import diagnose as run_diagnose

    config = DiagnoseConfig(
        k=k, seed=seed, segment_weight=segment_weight, outlier_share=outlier_share
    )
    result = run_diagnose(open_store(ctx), config)
    if as_json:
        echo_json(result.as_dict())
        return
    for check in result.checks:
        if check.status == "ok":
            click.echo(f"{check.title}: {check.verdict} ({_values(check.values)})")
            click.echo(f"    from {', '.join(check.inputs)}")
            if check.command:
                click.echo(f"    more: {check.command}")
        else:
            click.echo(f"{check.title}: missing: {check.missing}")
            click.echo(f"    run: {check.command}")
