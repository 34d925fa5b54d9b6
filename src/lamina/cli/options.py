"""Options shared by the verbs that write a file the user names (see lamina.core.outputs)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click

force_option = click.option(
    "--force", is_flag=True, help="Replace an existing file that lamina did not write."
)
force_into_source_option = click.option(
    "--force-into-source",
    is_flag=True,
    help="Allow the output inside a scanned source (never over a scanned file).",
)

OFFLINE_HELP = (
    "Never download model weights (same as HF_HUB_OFFLINE=1): weights missing from the "
    "cache are an error saying how to get them."
)


def go_offline(offline: bool) -> None:
    """`--offline`: no download in this process or its workers, from lamina or from the
    libraries it calls (huggingface_hub, transformers, timm, open_clip all read
    HF_HUB_OFFLINE)."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"


# -- the executor (`--executor ray`) -----------------------------------------------------------


def executor_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--executor local|ray` and `--ray-address` for a verb that runs passes: the verb
    runs inside `lamina.core.execution.use_executor`, so every run of its map passes goes
    to that executor (its `--workers`, when given, caps the Ray tasks run at once). Put it
    under `@handle_errors`, so that a missing `ray` is a message, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from lamina.core.execution import use_executor

        kind = kwargs.pop("executor")
        address = kwargs.pop("ray_address")
        with use_executor(kind, address, workers=kwargs.get("workers")):
            return fn(*args, **kwargs)

    wrapper = click.option(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="The Ray cluster for --executor ray (default: $RAY_ADDRESS, else a local Ray "
        "started for this command).",
    )(wrapper)
    return click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Run the per-image passes in a local process pool, or as Ray tasks on a "
        "cluster (needs `pip install 'lamina[scale]'`; the scan stays local).",
    )(wrapper)
