"""The `lamina` command group and what every verb shares. Exit codes: 0 done, 1 done with
errors (some chunks failed; re-run to retry them), 2 bad input (the message says the fix).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from lamina.core.errors import LaminaError
from lamina.core.remote import is_url
from lamina.core.store import ENV_STORE, Store

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
    """The store of `--store`. A URL (`s3://bucket/prefix`) is a store on an object store
    (`lamina.core.objectstore`): its working copy is brought up to the newest commit now,
    and what the command committed is published when the command ends."""
    named = ctx.obj["store"] or os.environ.get(ENV_STORE)
    if not is_url(named):
        return Store.open(named, create=create)
    from lamina.core import objectstore

    store = objectstore.pull(named, create=create)
    root = ctx.find_root()
    if not root.meta.get("lamina.push"):
        root.meta["lamina.push"] = named
        # On the way out, also after an error: what is committed locally is consistent
        # (a killed command never gets here; its next run resumes and publishes).
        root.call_on_close(lambda: _publish(named))
    return store


def _publish(url: str) -> None:
    from lamina.core import objectstore

    try:
        number = objectstore.push(url)
    except LaminaError as exc:
        fail(str(exc))
    if number is not None:
        logging.getLogger("lamina").info("published commit %d of %s", number, url)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


# `lamina --help` lists the verbs by what they are for, the main job first. A verb in no
# section (a new one) is listed under "Other commands", so none is ever hidden.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("The main job: every stage below, then the report", ("run",)),
    (
        "The manifest: what files there are",
        ("scan", "status", "sql", "runs", "verify", "reconcile", "attach"),
    ),
    ("Collections with a shape: items and their rules", ("layout", "audit")),
    ("Quality, duplicates and flags", ("sense", "flags", "select", "thumbs")),
    ("Embeddings: similar images, search, clusters", ("embed", "similar", "search", "cluster")),
    ("Stop-condition diagnostics", ("diagnose",)),
    ("Segments and motifs", ("segment", "motifs")),
    (
        "Tags and exports",
        ("tag", "score", "approve", "export", "import-approvals", "sidecars", "medoids"),
    ),
    ("The report and the review app", ("report", "app")),
    ("Learning on the embeddings", ("train", "experiments", "predict")),
    (
        "Language: text in the images, captions, depth",
        ("ocr", "modality", "caption", "agreement", "depth"),
    ),
    ("Keeping the store", ("gc",)),
)

STORE_HELP = (
    "Store folder (default: $LAMINA_STORE, else the nearest .lamina/ upwards, else ./.lamina), "
    "or an s3:// URL: a store on S3, worked on in a local copy and published per command."
)
QUIET_HELP = "Only warnings and errors on stderr."


class _GlobalOption(click.Option):
    """A global option given after the verb (`lamina scan ~/Pictures --store S`): it sets
    `ctx.obj[key]`, as the same option before the verb does, and wins over it. Its own
    name is `global_<key>`, so a verb's argument called `store` is another parameter."""

    def __init__(self, decls: list[str], key: str, **attrs: Any) -> None:
        super().__init__([*decls, f"global_{key}"], expose_value=False, **attrs)
        self.key = key


def _late_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    assert isinstance(param, _GlobalOption) and param.name is not None
    if ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
        return  # not given after the verb: what was given before it stands
    obj = ctx.ensure_object(dict)
    obj[param.key] = value
    _configure(obj)


def _late_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        # The words of click's own `--version` (before the verb), so both print the same.
        prog = ctx.find_root().info_name
        click.echo(f"{prog}, version {importlib.metadata.version('lamina')}")
        ctx.exit()


def global_options() -> list[click.Option]:
    """The global options as each verb also takes them, after its own arguments.

    Example:
        >>> [o.opts for o in global_options()]
        [['--store'], ['-q', '--quiet'], ['--version']]
    """
    return [
        _GlobalOption(
            ["--store"],
            "store",
            type=click.Path(file_okay=False),
            help=STORE_HELP,
            callback=_late_global,
        ),
        _GlobalOption(
            ["-q", "--quiet"], "quiet", is_flag=True, help=QUIET_HELP, callback=_late_global
        ),
        _GlobalOption(
            ["--version"],
            "version",
            is_flag=True,
            is_eager=True,
            hidden=True,
            callback=_late_version,
        ),
    ]


def _configure(obj: dict[str, Any]) -> None:
    """Apply the global options that act at once (logging)."""
    # Off a terminal there is no progress bar, so progress goes out as log lines instead.
    level = logging.WARNING if obj.get("quiet") else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger().setLevel(level)
    # faiss logs which CPU build it loaded at INFO, libvips every step of a huge image's
    # shrink ("VIPS: shrinkv: using vector path"): noise to a user.
    for library in ("faiss", "pyvips"):
        logging.getLogger(library).setLevel(logging.WARNING)


class LaminaGroup(click.Group):
    """The `lamina` group: every verb also takes the global options (before or after its
    own arguments), and `lamina --help` lists the verbs in `SECTIONS`."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(isinstance(p, _GlobalOption) for p in cmd.params):  # an alias: once
            taken = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
            for option in global_options():
                clash = taken & {*option.opts, *option.secondary_opts}
                if clash:
                    raise TypeError(
                        f"`lamina {name or cmd.name}` defines {', '.join(sorted(clash))}, "
                        "a global option of lamina: rename the verb's option"
                    )
                cmd.params.append(option)
        super().add_command(cmd, name)

    def sections(self) -> list[tuple[str, list[str]]]:
        """(title, verb names) in help order, with "Other commands" for the rest."""
        out = [(title, [n for n in names if n in self.commands]) for title, names in SECTIONS]
        listed = {n for _, names in out for n in names}
        out.append(("Other commands", sorted(n for n in self.commands if n not in listed)))
        return [(title, names) for title, names in out if names]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for _, names in self.sections() for n in names]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [n for n in self.list_commands(ctx) if not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        first: dict[int, str] = {}  # a verb registered under two names is described once
        for name in names:
            first.setdefault(id(self.commands[name]), name)
        for title, section in self.sections():
            rows = []
            for name in section:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                same = first[id(cmd)]
                text = f"The same as `lamina {same}`." if same != name else None
                rows.append((name, text or cmd.get_short_help_str(limit)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


@click.group(cls=LaminaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", envvar="LAMINA_STORE", type=click.Path(file_okay=False), help=STORE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=QUIET_HELP)
@click.version_option(package_name="lamina")
@click.pass_context
def main(ctx: click.Context, store: str | None, quiet: bool) -> None:
    """lamina: a frozen, queryable manifest of a messy image collection.

    Sources are only ever read. Everything lamina learns goes into the store. The options
    below may also follow the command (`lamina status --store S`).

    \b
    Example:
        lamina scan ~/Pictures --store ~/pictures-store
        lamina --store ~/pictures-store run ~/Pictures
        lamina status --store ~/pictures-store -q
    """
    obj = ctx.ensure_object(dict)
    obj.update(store=store, quiet=quiet)
    _configure(obj)
