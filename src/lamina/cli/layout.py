"""`lamina layout` (init, apply) and `lamina audit`: collections with a shape."""

from __future__ import annotations

import click

from lamina.cli.app import LaminaGroup, echo_json, handle_errors, main, open_store


class _Subcommands(LaminaGroup):
    """`lamina layout`'s verbs, which take the global options too (as LaminaGroup's do)."""

    def sections(self) -> list[tuple[str, list[str]]]:
        return [("Commands", sorted(self.commands))]


@main.group(cls=_Subcommands)
def layout() -> None:
    """Describe a collection's shape (items, their images and sidecars) and compute its items.

    A `[layout]` in the store's lamina.toml (or lamina-layout.toml at a source's root)
    says what an item is; `lamina scan` then also fills the `items`, `item_files` and
    `item_meta` tables, and `image_meta` in `lamina sql` joins each image to its item's
    manifest fields.

    \b
    Example:
        lamina layout init ~/Pictures --write
        lamina layout apply
    """


@layout.command("init")
@click.argument("source", type=click.Path(file_okay=False))
@click.option(
    "--preset",
    type=click.Choice(["imagefolder", "item-folder-with-manifest", "flat"]),
    default=None,
    help="Use this shape instead of guessing it from the tree.",
)
@click.option("--write", is_flag=True, help="Add the layout to the store's lamina.toml.")
@click.option("--force", is_flag=True, help="With --write: replace the store's [layout].")
@click.option("--json", "as_json", is_flag=True, help="Print the proposal as JSON.")
@click.pass_context
@handle_errors
def layout_init(
    ctx: click.Context, source: str, preset: str | None, write: bool, force: bool, as_json: bool
) -> None:
    """Propose a [layout] for the tree at SOURCE (file names only; nothing is written there).

    Prints the TOML; --write adds it to the store's lamina.toml (the store is made if
    need be). Review it: the guess names item folders by a shared manifest file name,
    their image folder, and the other folders inside items as outputs to ignore.

    \b
    Example:
        lamina layout init ~/herbarium
        lamina layout init ~/herbarium --write
        lamina layout init ~/datasets/train --preset imagefolder
    """
    from lamina.jobs.layout import init_layout

    store = open_store(ctx, create=True) if write else None
    done = init_layout(source, preset=preset, store=store, force=force)
    if as_json:
        echo_json({"layout": done.layout, "notes": done.notes, "written": done.written})
        return
    click.echo(done.toml, nl=False)
    if done.written:
        click.echo(f"# written to {done.written}; `lamina scan {source}` computes the items")


@layout.command("apply")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def layout_apply(ctx: click.Context, as_json: bool) -> None:
    """Compute the items of the scanned sources under their layout (reads sidecars only).

    `lamina scan` does this by itself when the store has a layout; run it after editing
    the layout.

    \b
    Example:
        lamina layout apply
    """
    from lamina.jobs.layout import apply_layout

    done = apply_layout(open_store(ctx))
    if as_json:
        echo_json(
            {
                "run_id": done.run_id,
                "items": done.items,
                "ok_items": done.ok_items,
                "violations": done.violations,
                "warnings": done.warnings,
            }
        )
        return
    for warning in done.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    broken = ", ".join(f"{k} {v}" for k, v in sorted(done.violations.items())) or "none"
    click.echo(f"{done.items} items, {done.ok_items} keep every rule; violations: {broken}")
    click.echo(f"run {done.run_id}; see `lamina audit`")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
@click.option(
    "--examples", type=int, default=10, show_default=True, help="Items named per broken rule."
)
@click.pass_context
@handle_errors
def audit(ctx: click.Context, as_json: bool, examples: int) -> None:
    """The repository audit of a collection with a layout (read-only, from the store).

    Top-level structure, item count, items missing a required file, items whose image
    count breaks the rule, sidecar field coverage, header statistics (megapixels, huge
    images, formats), schema failures, and which lamina layers cover how many items.

    \b
    Example:
        lamina audit
        lamina audit --json
    """
    from lamina.jobs.audit import AuditConfig
    from lamina.jobs.audit import audit as run_audit

    done = run_audit(open_store(ctx), AuditConfig(examples=max(examples, 0)))
    if as_json:
        echo_json(done.report)
    else:
        click.echo(done.text)
