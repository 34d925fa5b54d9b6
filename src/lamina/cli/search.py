"""Verbs over the vector index: similar (by image) and search (by text)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lamina.cli.app import echo_json, handle_errors, main, open_store
from lamina.cli.options import OFFLINE_HELP

if TYPE_CHECKING:
    from lamina.jobs.search import SearchResult


def _echo_hits(result: SearchResult, as_json: bool) -> None:
    if as_json:
        echo_json(result.to_dict())
        return
    if not result.hits:
        click.echo("no results")
        return
    for rank, hit in enumerate(result.hits, 1):
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
    from lamina.jobs.search import SimilarConfig
    from lamina.jobs.search import similar as find_similar

    config = SimilarConfig(query, k=k, model=model, offline=offline)
    _echo_hits(find_similar(open_store(ctx), config), as_json)


@main.command()
@click.argument("text", required=False)
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True, help="Results.")
@click.option("--model", help="A text-capable model (CLIP / SigLIP) with embeddings.")
@click.option("--offline", is_flag=True, help=OFFLINE_HELP)
@click.option(
    "--text",
    "printed",
    metavar="PHRASE",
    help="Search the text printed in the images (`lamina ocr`) for PHRASE instead.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
@handle_errors
def search(
    ctx: click.Context,
    text: str | None,
    k: int,
    model: str | None,
    offline: bool,
    printed: str | None,
    as_json: bool,
) -> None:
    """The K images that best match TEXT, with a model that embeds text and images in one
    space (open_clip:…, or hf: CLIP / SigLIP models). `lamina embed` without --model picks
    one when it is cached or can be downloaded.

    With --text PHRASE: the images whose OCR text holds PHRASE (case, accents and line
    breaks ignored), most matches first, with the lines that hold it.

    \b
    Example:
        lamina search "a red car" -k 20 --offline
        lamina search "a dog on a beach" --model open_clip:ViT-B-32/laion2b_s34b_b79k --json
        lamina search --text "species plantarum"
    """
    if printed is not None:
        if text is not None:
            raise click.UsageError("give TEXT (by meaning) or --text PHRASE (printed), not both")
        _search_printed(ctx, printed, k, as_json)
        return
    if text is None:
        raise click.UsageError('give TEXT to search for, or --text PHRASE (e.g. --text "1753")')
    from lamina.jobs.search import SearchConfig
    from lamina.jobs.search import search as search_text

    config = SearchConfig(text, k=k, model=model, offline=offline)
    _echo_hits(search_text(open_store(ctx), config), as_json)


def _search_printed(ctx: click.Context, phrase: str, k: int, as_json: bool) -> None:
    from lamina.jobs.ocr import TextSearchConfig, search_text

    hits = search_text(open_store(ctx), TextSearchConfig(phrase, k=k))
    if as_json:
        echo_json([hit.to_dict() for hit in hits])
        return
    if not hits:
        click.echo("no results")
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank:>3}  {hit.matches}x  {hit.image_id}  {hit.path or '(not in manifest)'}")
        for line in hit.lines[:3]:
            click.echo(f"       {line[:100]}")
