"""Verbs over the embedding space: cluster (clusters, map, outliers, semantic duplicates)
and its comparison of two spaces."""

from __future__ import annotations

from typing import Any

import click

from lamina.cli.app import echo_json, fail, handle_errors, main, open_store


def _echo_summary(summary: dict[str, Any]) -> None:
    clusters = summary["clusters"]
    click.echo(f"{summary['images']} images in {len(clusters)} clusters ({summary['model']})")
    click.echo(f"  {'cluster':>7} {'size':>6}  medoid")
    for row in clusters:
        click.echo(f"  {row['cluster']:>7} {row['size']:>6}  {row['path'] or row['medoid']}")
    if summary.get("outliers"):
        click.echo("most unique (mean cosine distance to 10 nearest, robust z):")
        for row in summary["outliers"]:
            where = row["path"] or row["image_id"]
            click.echo(f"  {row['knn_distance']:.3f}  z {row['outlier_z']:6.1f}  {where}")
    dups = summary.get("semantic_duplicates")
    if dups:
        click.echo(
            f"semantic duplicates: {dups['groups']} groups ({dups['images']} images, "
            f"{dups['semantic_members']} linked by embeddings only); "
            f"{dups['redundant_images']} images could go"
        )


@main.command()
@click.option("--model", default="", help="Embedding model id (default: the newest embedded).")
@click.option("--k", type=int, default=0, help="Clusters (default: round(sqrt(N / 2))).")
@click.option(
    "--method",
    type=click.Choice(["kmeans", "hdbscan"]),
    default="kmeans",
    help="kmeans (default) or hdbscan (finds k itself, noise = cluster -1).",
)
@click.option(
    "--compare",
    nargs=2,
    metavar="MODEL_A MODEL_B",
    help="Only compare two embedding spaces: ARI / NMI of their clusterings and each "
    "one's stability across k-means seeds. Writes nothing.",
)
@click.option("--seeds", type=int, default=3, help="k-means seeds for --compare stability.")
@click.option("--top", type=int, default=5, help="Most unique images to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def cluster(
    ctx: click.Context,
    model: str,
    k: int,
    method: str,
    compare: tuple[str, str] | None,
    seeds: int,
    top: int,
    as_json: bool,
) -> None:
    """Cluster the embeddings; find medoids, exemplars, outliers and semantic duplicates;
    lay out a 2-D map. One run; re-running with unchanged embeddings does nothing.

    Writes the tables clusters, medoids, exemplars, outliers, semantic_duplicates and
    semantic_map (query them with `lamina sql` or `store.table(...)`), then recomputes the
    flags (same policy) so the outlier flag matches the outliers table. With --compare it
    only reports how far two models' clusterings agree (ARI / NMI) and how stable each is
    across seeds: stop changing the model or k once these stop moving.

    \b
    Example:
        lamina embed && lamina cluster
        lamina cluster --model efficientnet_lite0:imagenet --k 40 --json
        lamina cluster --compare efficientnet_lite0:imagenet open_clip:ViT-B-32/openai
    """
    from lamina.analysis.cluster_report import compare_models
    from lamina.core.vectors import list_models
    from lamina.jobs.cluster import ClusterConfig
    from lamina.jobs.cluster import cluster as run_cluster

    store = open_store(ctx)
    if compare:
        if not list_models(store):
            fail(f"the store {store.root} has no embeddings yet: run `lamina embed` first")
        result = compare_models(store, compare[0], compare[1], k=k, seeds=tuple(range(seeds)))
        if as_json:
            echo_json(result)
            return
        a, b = result["models"]
        click.echo(f"{result['images']} images, k = {result['k']}")
        click.echo(f"{a} vs {b}: ARI {result['ari']:.3f}, NMI {result['nmi']:.3f}")
        for name, stab in result["stability"].items():
            click.echo(
                f"  {name}: ARI across {len(stab['seeds'])} seeds "
                f"mean {stab['ari_mean']:.3f}, min {stab['ari_min']:.3f}"
            )
        return
    done = run_cluster(store, ClusterConfig(model=model, k=k, method=method, top=top))
    summary = {**done.summary, "run_id": done.run_id, "passes": done.passes}
    if as_json:
        echo_json(summary)
    else:
        _echo_summary(summary)
        click.echo(f"run {done.run_id}")
