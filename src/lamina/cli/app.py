"""The `lamina` command group and what every verb shares. Exit codes: 0 done, 1 done with
errors (some chunks failed; re-run to retry them), 2 bad input (the message says the fix).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from lamina.core.errors import LaminaError
from lamina.core.store import Store

EXIT_ERRORS = 1
EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(EXIT_BAD_INPUT)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a LaminaError into its message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LaminaError as exc:
            fail(str(exc))

    return wrapper


def open_store(ctx: click.Context, *, create: bool = False) -> Store:
    return Store.open(ctx.obj["store"], create=create)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    envvar="LAMINA_STORE",
    type=click.Path(file_okay=False),
    help="Store folder (default: $LAMINA_STORE, else the nearest .lamina/ upwards, "
    "else ./.lamina).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(package_name="lamina")
@click.pass_context
def main(ctx: click.Context, store: str | None, quiet: bool) -> None:
    """lamina: a frozen, queryable manifest of a messy image collection.

    Sources are only ever read. Everything lamina learns goes into the store.

    \b
    Example:
        lamina scan ~/Pictures --store ~/pictures-store
        lamina --store ~/pictures-store status
    """
    # Off a terminal there is no progress bar, so progress goes out as log lines instead.
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # faiss logs which CPU build it loaded at INFO: noise to a user.
    logging.getLogger("faiss").setLevel(logging.WARNING)
    ctx.ensure_object(dict)
    ctx.obj["store"] = store
