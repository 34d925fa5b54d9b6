"""Every command over a hostile collection: names that break careless code (NFC and NFD,
newlines, 255 bytes, leading dashes, `$()`, quotes), links into and out of the source and
loops, decompression bombs, files cut short in six formats, lying headers and extensions,
archives dressed as images, empty files, a FIFO, unreadable files.

What must hold: the sources (and the folder their links point to) stay byte-identical, as
stat and content see them (every file hashed, every folder listed, before and after); no
command ends in a traceback, hangs, or writes (as Python sees it) under a source; the
sidecars go only into the sidecar folder, as .xmp files; nothing outside the sources is
recorded as an image of them.

When the suite runs as root, the commands run under `setpriv` without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH, so that the files with mode 0 are really unreadable.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.collections import build_hostile_collection, hostile_names, unlock
from tests.reliability.conftest import FULL, record
from tests.reliability.procs import lamina_env

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 600  # seconds one command may take before it counts as hung

COMMANDS: list[list[str]] = [
    ["scan", "{src}"],
    ["run", "{src}", "--labels", "{scratch}/labels.txt"],
    ["scan", "{src}"],
    ["status"],
    ["status", "--json"],
    ["sense"],
    ["flags"],
    ["flags", "--policy", "{scratch}/policy.toml", "--json"],
    ["flags", "--print-policy"],
    ["select", "--where", "status = 'ok'"],
    ["select", "--where", "status <> 'ok'", "-o", "{scratch}/selected.txt"],
    ["select", "--where", "true", "--ids", "--one-per-image"],
    ["thumbs"],
    ["embed"],
    ["cluster"],
    ["similar", "{image_id}"],
    ["similar", "{hostile_file}", "--json"],
    ["similar", "{outside}/secret.jpg"],
    ["search", "cat"],
    ["tag", "--labels", "{scratch}/labels.txt"],
    ["score", "--labels", "{scratch}/labels.txt", "--json"],
    ["approve", "{image_id}", "--label", "cat"],
    ["approve", "--where", "status = 'ok'", "--over-threshold"],
    ["approve", "--history"],
    ["export", "-o", "{scratch}/tags.csv"],
    ["export", "-o", "{scratch}/tags.parquet"],
    ["export", "-o", "{scratch}/tags.jsonl"],
    ["export", "-o", "{scratch}/tags.json", "--json"],
    ["sidecars", "--use", "over-threshold", "--sidecar-dir", "{scratch}/sidecars"],
    [
        "sidecars",
        "--use",
        "over-threshold",
        "--style",
        "darktable",
        "--sidecar-dir",
        "{scratch}/sidecars_darktable",
    ],
    ["sidecars", "--use", "over-threshold", "--dry-run"],
    ["medoids", "-o", "{scratch}/folder_medoids.csv"],
    ["report"],
    ["report", "-o", "{scratch}/report"],
    ["verify"],
    ["verify", "--sample", "5", "--json"],
    ["reconcile", "{store}", "{store}", "--json"],
    ["reconcile", "{store}", "{scratch}/listing.csv", "-o", "{scratch}/reconciled.csv"],
    ["attach", "{scratch}/meta.csv", "--on", "name", "--key", "name"],
    ["sql", "select rel_path, status, reason from files order by 1"],
    ["sql", "select * from files", "--format", "csv", "-o", "{scratch}/files.csv"],
    ["runs"],
    ["runs", "--json"],
]
# What the bounded form leaves out: a second report (a minute of plots) in another folder.
FULL_ONLY = (["report", "-o", "{scratch}/report"],)


def commands() -> list[list[str]]:
    """The commands of this form. The full one runs them all twice over the same store:
    a re-run over hostile input must be as clean as the first."""
    if FULL:
        return COMMANDS + COMMANDS
    return [c for c in COMMANDS if c not in FULL_ONLY]  # fmt: skip


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under `root` (links not followed): type, mode, owner, size, mtime, and
    the SHA-256 of a file, the target of a link, the sorted names of a folder."""
    state: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                content = "\0".join(sorted(os.listdir(path)))
            else:
                content = "special"
            state[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, content)
    top = root.lstat()
    state["."] = (top.st_mode, top.st_mtime_ns, "\0".join(sorted(os.listdir(root))))
    return state


def _changed(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> list[str]:
    out = [f"removed: {p!r}" for p in sorted(before.keys() - after.keys())]
    out += [f"added: {p!r}" for p in sorted(after.keys() - before.keys())]
    out += [f"changed: {p!r}" for p in sorted(before.keys() & after.keys())
            if before[p] != after[p]]  # fmt: skip
    return out


def _write_inputs(scratch: Path, src: Path) -> None:
    (scratch / "labels.txt").write_text("cat\ncup of coffee\nrocket\n$(touch pwned)\n")
    (scratch / "policy.toml").write_text("[dark]\nthreshold = 0.5\n")
    names = hostile_names()
    with (scratch / "meta.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "caption"])
        for name in names:
            writer.writerow([name, f"caption of {name}"])
    with (scratch / "listing.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path"])
        for name in names:
            writer.writerow([f"/elsewhere/names/{name}"])


def _reduced_privileges() -> list[str]:
    """setpriv without the capabilities that let root read any file (when root)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return []
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def run_every_command(src: Path, outside: Path, store: Path, scratch: Path) -> dict[str, Any]:
    plan = {
        "src": str(src),
        "outside": str(outside),
        "store": str(store),
        "scratch": str(scratch),
        "commands": commands(),
        "timeout": COMMAND_TIMEOUT,
    }
    (scratch / "plan.json").write_text(json.dumps(plan))
    env = lamina_env({"HOME": str(scratch / "home"), "MPLCONFIGDIR": str(scratch / "mpl")})
    env["PYTHONPATH"] = f"{env['PYTHONPATH']}{os.pathsep}{REPO}"
    command = [*_reduced_privileges(), sys.executable, "-m", "tests.reliability.hostile_driver",
               str(scratch / "plan.json"), str(scratch / "result.json")]  # fmt: skip
    done = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT * 4, errors="replace")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads((scratch / "result.json").read_text())


def test_every_command_over_a_hostile_collection_leaves_the_sources_untouched(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    scratch = tmp_path / "work"
    scratch.mkdir()
    if FULL:
        # A collection and a store of its own: every command does its work from scratch.
        src, outside, store = tmp_path / "src", tmp_path / "outside", tmp_path / "store"
        kinds = build_hostile_collection(src, outside)
    else:
        # The bounded form saves the heavy work (embeddings, class-name vectors, report):
        # the reference run went over the same hostile files (in hostile/ of its source);
        # the commands run on a copy of its store.
        reference = request.getfixturevalue("reference")
        src, outside, kinds = reference.src, reference.outside, reference.hostile_kinds
        store = tmp_path / "store"
        shutil.copytree(reference.store, store, symlinks=True)
    _write_inputs(scratch, src)
    before = tree_state(src), tree_state(outside)
    try:
        result = run_every_command(src, outside, store, scratch)
        after = tree_state(src), tree_state(outside)
    finally:
        if FULL:
            unlock(src)
    problems = [f"source {c}" for c in _changed(before[0], after[0])]
    problems += [f"link target {c}" for c in _changed(before[1], after[1])]
    for entry in result["commands"]:
        args = " ".join(entry["args"])[:160]
        if entry["hang"]:
            problems.append(f"`lamina {args}` hung for {COMMAND_TIMEOUT} s")
        elif entry["traceback"]:
            problems.append(f"`lamina {args}` ended in a traceback:\n"
                            f"{entry.get('exception') or entry['output']}")  # fmt: skip
        elif entry["exit_code"] not in (0, 1, 2):
            problems.append(f"`lamina {args}` exited {entry['exit_code']}: {entry['output']}")
    for violation in result["violations"]:
        problems.append(f"a write under a source: {violation}")
    for folder in ("sidecars", "sidecars_darktable"):
        for path in (scratch / folder).rglob("*"):
            if path.is_file() and path.suffix != ".xmp":
                problems.append(f"the sidecar folder holds a file that is not a sidecar: {path}")
    problems += _outside_in_manifest(store, outside)
    record(
        "hostile",
        fresh_store=FULL,
        files=sum(kinds.values()),
        kinds=kinds,
        commands=len(result["commands"]),
        exit_codes=[e["exit_code"] for e in result["commands"]],
        seconds=sum(e["seconds"] for e in result["commands"]),
        reduced_privileges=bool(_reduced_privileges()),
        entries_checked=len(before[0]) + len(before[1]),
        writes_seen=result["writes_seen"],
        problems=problems[:50],
    )
    assert not problems, "\n".join(problems)


def _outside_in_manifest(store: Path, outside: Path) -> list[str]:
    """Files outside the source that the manifest holds as images of it."""
    import lamina

    digests = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in outside.rglob("*")
               if p.is_file()}  # fmt: skip
    rows = (
        lamina.open(store)
        .sql("select rel_path, status, sha256 from files where sha256 is not null")
        .to_pylist()
    )
    return [f"{r['rel_path']!r} ({r['status']}) is {digests[r['sha256']]}, outside the source"
            for r in rows if r["sha256"] in digests]  # fmt: skip
