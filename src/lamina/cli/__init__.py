"""The `lamina` command: thin verbs over the library, one module per stage.

Exit codes: 0 done, 1 done with errors (some chunks failed; re-run to retry them),
2 bad input (the message says the fix).
"""

# Importing a verb module adds its commands to `main`.
from lamina.cli import (  # noqa: F401
    cluster,
    diagnose,
    embed,
    exports,
    layout,
    manifest,
    ocr,
    report,
    review,
    run,
    search,
    segment,
    sense,
    store,
    tag,
    train,
)
from lamina.cli.app import main

__all__ = ["entry", "main"]


def entry() -> None:
    """The `lamina` command itself: `main` over `sys.argv`, supervised when it asks for
    the Ray executor (see `lamina.executors.supervisor`: Ray can end a driver silently)."""
    import sys

    from lamina.executors.supervisor import supervise

    supervise(sys.argv[1:])
    main()
