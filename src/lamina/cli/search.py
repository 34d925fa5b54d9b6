"""Verbs over the vector index: similar (by image) and search (by text)."""

from __future__ import annotations

from typing import Any

import click

from lamina.cli.app import echo_json, handle_errors, main, open_store
from lamina.cli.options import OFFLINE_HELP, go_offline


def _echo_hits(model: str, query: str, k: int, hits: list[Any], as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "model": model,
                "query": query,
                "k": k,
                "results": [{"rank": r, **h.to_dict()} for r, h in enumerate(hits, 1)],
            }
        )
        return
    if not hits:
        click.echo("no results")
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank:>3}  {hit.score:.4f}  {hit.image_id}  {hit.path or '(not in manifest)'}")


@main.command()
@click.argument("query")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="Results.")
@click.option("--model", help="Embedding model (default: the one embedded most recently).")
@click.option("--offline", is_flag=True, help=OFFLINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
@handle_errors
def similar(
    ctx: click.Context, query: str, k: int, model: str | None, offline: bool, as_json: bool
) -> None:
    """The K images most similar to QUERY: an image id, a path in the manifest (absolute or
    relative to its source), or any image file (embedded with the model on the fly).

    The first query after an embed builds the model's index (exact search up to 50,000
    images, FAISS IVF above) and keeps it in the store; later queries reuse it.

    \b
    Example:
        lamina similar cats/a.jpg -k 5
        lamina similar ~/Downloads/found.jpg --model efficientnet_lite0:imagenet --json
    """
    from lamina.index import open_index
    from lamina.index import similar as find_similar

    go_offline(offline)
    store = open_store(ctx)
    index = open_index(store, model)
    hits = find_similar(store, query, k=k, model=index.model)
    _echo_hits(index.model, query, k, hits, as_json)


@main.command()
@click.argument("text")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="Results.")
@click.option("--model", help="A text-capable model (CLIP / SigLIP) with embeddings.")
@click.option("--offline", is_flag=True, help=OFFLINE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
@handle_errors
def search(
    ctx: click.Context, text: str, k: int, model: str | None, offline: bool, as_json: bool
) -> None:
    """The K images that best match TEXT, with a model that embeds text and images in one
    space (open_clip:…, or hf: CLIP / SigLIP models). `lamina embed` without --model picks
    one when it is cached or can be downloaded.

    \b
    Example:
        lamina search "a red car" -k 20 --offline
        lamina search "a dog on a beach" --model open_clip:ViT-B-32/laion2b_s34b_b79k --json
    """
    from lamina.index import open_index, search_text

    go_offline(offline)
    store = open_store(ctx)
    index = open_index(store, model)
    hits = search_text(store, text, k=k, model=index.model)
    _echo_hits(index.model, text, k, hits, as_json)
