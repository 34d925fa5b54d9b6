"""Options shared by the verbs that write a file the user names (see lamina.core.outputs)."""

from __future__ import annotations

import click

force_option = click.option(
    "--force", is_flag=True, help="Replace an existing file that lamina did not write."
)
force_into_source_option = click.option(
    "--force-into-source",
    is_flag=True,
    help="Allow the output inside a scanned source (never over a scanned file).",
)
