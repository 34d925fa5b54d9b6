"""Options shared by the verbs that write a file the user names (see lamina.core.outputs)."""

from __future__ import annotations

import os

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
