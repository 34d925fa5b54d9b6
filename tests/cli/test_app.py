"""The `lamina` group: global options before or after the verb, and the grouped help."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lamina.cli import main
from lamina.cli.app import SECTIONS, LaminaGroup, global_options
from tests.conftest import write_photo


@pytest.fixture(autouse=True)
def _root_logger_level() -> Iterator[None]:
    """`-q` sets the root logger's level: put it back for the tests that follow."""
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def run(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_store_and_quiet_work_after_the_verb(tmp_path: Path) -> None:
    """The README's first line, `lamina scan ~/Pictures --store ~/pictures-store`."""
    write_photo(tmp_path / "photos" / "a.jpg", 1)
    store = tmp_path / "store"
    result = run("scan", str(tmp_path / "photos"), "--store", str(store), "-j", "1")
    assert result.exit_code == 0, result.output
    assert (store / "tables" / "files" / "files.parquet").is_file()
    result = run("status", "--json", f"--store={store}", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files"]["total"] == 1
    assert logging.getLogger().level == logging.WARNING  # -q after the verb took effect


def test_the_option_after_the_verb_wins(tmp_path: Path) -> None:
    write_photo(tmp_path / "photos" / "a.jpg", 1)
    good, other = tmp_path / "good", tmp_path / "other"
    assert run("--store", str(good), "scan", str(tmp_path / "photos"), "-j", "1").exit_code == 0
    result = run("--store", str(other), "status", "--json", "--store", str(good))
    assert json.loads(result.output)["store"] == str(good)
    # $LAMINA_STORE is a default, for the store given on either side to override.
    result = run("status", "--json", "--store", str(good), env={"LAMINA_STORE": str(other)})
    assert json.loads(result.output)["store"] == str(good)


def test_reconcile_takes_stores_as_arguments_and_store_as_an_option(tmp_path: Path) -> None:
    write_photo(tmp_path / "photos" / "a.jpg", 1)
    store = tmp_path / "store"
    run("scan", str(tmp_path / "photos"), "--store", str(store), "-j", "1")
    result = run("reconcile", str(store), str(store), "--store", str(store), "-q")
    assert result.exit_code == 0, result.output
    assert "matched 1" in result.output


def test_version_before_or_after_the_verb() -> None:
    before, after = run("--version").output, run("status", "--version").output
    assert before == after and re.fullmatch(r"\S+, version \S+\n", after)


def test_every_verb_takes_every_global_option() -> None:
    wanted = {tuple(o.opts) for o in global_options()}
    for name, command in main.commands.items():
        have = {tuple(p.opts) for p in command.params}
        assert wanted <= have, f"`lamina {name}` lacks a global option"
        opts = [o for p in command.params for o in (*p.opts, *p.secondary_opts)]
        assert len(opts) == len(set(opts)), f"`lamina {name}` defines an option twice"


def test_a_verb_whose_option_clashes_with_a_global_one_is_refused() -> None:
    group = LaminaGroup("g")

    @click.command()
    @click.option("-q", "--quick", is_flag=True)
    def fast(quick: bool) -> None:
        """Example: fast"""

    with pytest.raises(TypeError, match="`lamina fast` defines -q, a global option"):
        group.add_command(fast)


def test_help_lists_run_first_and_every_verb_once_in_its_section() -> None:
    out = run("--help").output
    listing = out[out.index("The main job") :]
    names = re.findall(r"^  (\S+)  ", listing, flags=re.MULTILINE)
    assert names[0] == "run"
    assert sorted(names) == sorted(main.commands)
    titles = [t for t, members in SECTIONS if set(members) & set(main.commands)]
    assert [line[:-1] for line in listing.splitlines() if line.endswith(":")] == titles
    # (the column is as wide as the section's longest verb)
    assert re.search(r"^  score +The same as `lamina tag`\.$", listing, flags=re.MULTILINE)


def test_a_verb_in_no_section_is_listed_under_other_commands() -> None:
    group = LaminaGroup("g", commands=[])
    group.add_command(click.Command("run", help="Run."))
    group.add_command(click.Command("zzz", help="New."))
    result = CliRunner().invoke(group, ["--help"])
    assert result.output.index("run  Run.") < result.output.index("Other commands:\n  zzz  New.")


def test_a_verb_argument_called_store_is_its_own() -> None:
    """`reconcile`-like verbs take store paths as arguments; --store stays the global one."""
    group = LaminaGroup("g", commands=[])
    seen: list[tuple[str, str]] = []

    @click.command()
    @click.argument("store")
    @click.pass_context
    def look(ctx: click.Context, store: str) -> None:
        """Example: g look A --store B"""
        seen.append((store, ctx.obj["store"]))

    group.add_command(look)
    result = CliRunner().invoke(group, ["look", "A", "--store", "B"], obj={})
    assert result.exit_code == 0, result.output
    assert seen == [("A", "B")]


def test_libraries_info_logs_stay_out_of_the_users_stderr(tmp_path: Path) -> None:
    # libvips reports every step of a huge image's shrink at INFO ("VIPS: shrinkv: using
    # vector path"): noise to a user, while lamina's own INFO progress lines stay.
    vips = logging.getLogger("pyvips")
    before = vips.level
    try:
        run("status", "--json", f"--store={tmp_path / 'store'}")  # no store: exit 2, logged
        assert vips.getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("lamina").getEffectiveLevel() == logging.INFO
    finally:
        vips.setLevel(before)
