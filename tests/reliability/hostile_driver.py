"""Run every `lamina` command, in one process, over a hostile collection; write what each did.

    python -m tests.reliability.hostile_driver PLAN.json RESULT.json

PLAN.json: {"store", "src", "outside", "scratch", "commands": [[arg, ...], ...],
"timeout"}. Arguments may hold `{src}`, `{store}`, `{scratch}`, `{outside}` and, once the
scan has run, `{image_id}` (an ok image) and `{hostile_file}` (a file with a hostile name).

Each command runs through click's CliRunner (one interpreter: imports and models are
loaded once), under an alarm (a command that blocks, on a FIFO say, is a failure). An audit
hook sees every write Python makes (open for writing, rename, remove, mkdir, chmod, utime,
…): one under the source or under the folder its links point to is a violation. The test
(test_hostile.py) runs this under `setpriv` without CAP_DAC_OVERRIDE when it is root, so
that files with mode 0 are really unreadable.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

WRITE_EVENTS = {
    "os.rename": (0, 1),
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.symlink": (1,),
    "os.link": (1,),
    "shutil.copyfile": (1,),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
    "shutil.rmtree": (0,),
    "shutil.move": (0, 1),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class Audit:
    """Every path Python writes to, and which of them lie under a forbidden folder."""

    def __init__(self, forbidden: list[str]) -> None:
        self.forbidden = [os.path.abspath(p) + os.sep for p in forbidden]
        self.violations: list[dict[str, str]] = []
        self.command = ""
        self.writes = 0

    def _check(self, event: str, path: Any) -> None:
        if isinstance(path, int) or path is None:
            return
        try:
            text = os.path.abspath(os.fsdecode(os.fspath(path)))
        except (TypeError, ValueError):
            return
        self.writes += 1
        if any((text + os.sep).startswith(f) for f in self.forbidden):
            self.violations.append({"command": self.command, "event": event, "path": text})

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing:
                self._check(event, path)
        elif event in WRITE_EVENTS:
            for index in WRITE_EVENTS[event]:
                if index < len(args):
                    self._check(event, args[index])


class Hang(BaseException):
    """A command ran past its time (BaseException: lamina's handlers must not swallow it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang


def _fill(arg: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


def _found(store: str) -> dict[str, str]:
    """An ok image's id and a file with a hostile name, from the scanned store."""
    import lamina

    con = lamina.open(store).connect()
    found = {}
    row = con.execute(
        "select image_id from files where status = 'ok' and image_id is not null "
        "order by rel_path like '%good/%' desc, rel_path limit 1"
    ).fetchone()
    if row:
        found["image_id"] = row[0]
    row = con.execute(
        "select source || '/' || rel_path from files where status = 'ok' "
        "and rel_path like '%names/%' order by length(rel_path) desc limit 1"
    ).fetchone()
    if row:
        found["hostile_file"] = row[0]
    return found


def main(plan_path: str, result_path: str) -> int:
    from click.testing import CliRunner

    from lamina.cli import main as lamina_main

    plan = json.loads(Path(plan_path).read_text())
    values = {k: plan[k] for k in ("src", "store", "scratch", "outside")}
    audit = Audit([plan["src"], plan["outside"]])
    sys.addaudithook(audit)
    signal.signal(signal.SIGALRM, _alarm)
    results = []
    for args in plan["commands"]:
        if "image_id" not in values and any(
            "{image_id}" in a or "{hostile_file}" in a for a in args
        ):
            values.update(_found(plan["store"]))
        argv = ["--store", plan["store"], *(_fill(a, values) for a in args)]
        audit.command = " ".join(argv[2:])[:200]
        logging.root.handlers.clear()  # each command's own stderr gets its log lines
        t0 = time.monotonic()
        signal.alarm(int(plan["timeout"]))
        hang = False
        try:
            result = CliRunner().invoke(lamina_main, argv, catch_exceptions=True)
        except Hang:
            hang, result = True, None
        finally:
            signal.alarm(0)
        entry: dict[str, Any] = {"args": argv[2:], "seconds": round(time.monotonic() - t0, 2)}
        if hang or result is None:
            entry.update(exit_code=None, hang=True, traceback=True, output="")
        else:
            output = result.output
            exc = result.exception
            crashed = exc is not None and not isinstance(exc, SystemExit)
            tb = ""
            if crashed:
                tb = "".join(traceback.format_exception(type(exc), exc, result.exc_info[2]))
            entry.update(
                exit_code=result.exit_code,
                hang=False,
                traceback=crashed or "Traceback (most recent call last)" in output,
                exception=tb[-4000:],
                output=output[-3000:],
            )
        results.append(entry)
        print(f"{entry['exit_code']!s:>4} {entry['seconds']:6.1f} s  {audit.command}", flush=True)
    Path(result_path).write_text(
        json.dumps(
            {"commands": results, "violations": audit.violations, "writes_seen": audit.writes},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
