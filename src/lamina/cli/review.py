"""The `app` verb: the review app, a local web app over the store."""

from __future__ import annotations

from typing import Any

import click

from lamina.cli.app import fail, handle_errors, main, open_store


@main.command("app")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8765,
    show_default=True,
    help="Port to serve on.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Anything but loopback lets others on the network see the images "
    "and record decisions (there is no login); lamina warns when you do.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the app in the web browser.")
@click.pass_context
@handle_errors
def app(ctx: click.Context, port: int, host: str, open_browser: bool) -> None:
    """Review the store in a web browser: filter, look, decide.

    A paginated grid with filters (status, flag, duplicates, cluster, tag, approval,
    decision, folder, a SQL condition as `approve --where` takes it); an image view
    (preview, signals, flags and their reasons, duplicate group, nearest neighbours, tags,
    history); duplicate groups with the suggested keeper; clusters. Label approvals go to
    the approvals table (as `lamina approve`); reject / keep marks and duplicate decisions
    to the `decisions` table: both append-only, with who and when, visible to `lamina sql`.
    Nothing is deleted or moved: `lamina export --discard-list FILE` lists what you chose
    to drop. Ctrl-C stops the app.

    \b
    Example:
        lamina app
        lamina app --port 8800 --open
    """
    start_app(open_store(ctx), host=host, port=port, open_browser=open_browser)


def start_app(
    store: Any, *, host: str, port: int, open_browser: bool, to_stderr: bool = False
) -> None:
    """Serve the review app on `store` until Ctrl-C (what `lamina app` and `lamina run
    --open` do): the URL is printed first (to stderr with `to_stderr`, after JSON), so it
    can be opened by hand where no browser starts.

    Example:
        >>> start_app(store, host="127.0.0.1", port=8765, open_browser=False)  # doctest: +SKIP
        lamina app on http://127.0.0.1:8765/ (store /photos-store); Ctrl-C stops it
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        fail(f"lamina app needs {exc.name}: pip install 'lamina[app]'")
    from lamina.review import server

    if host not in server.LOOPBACK:
        click.secho(
            f"warning: serving on {host}: anyone who can reach it can see the images and "
            "record decisions (there is no login)",
            fg="yellow",
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/"
    click.echo(f"lamina app on {address} (store {store.root}); Ctrl-C stops it", err=to_stderr)
    server.serve(store, host=host, port=port, open_browser=open_browser)
