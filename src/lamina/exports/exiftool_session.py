"""One exiftool `-stay_open` process (pyexiftool) for the XMP sidecars
(`lamina.exports.sidecars`): batched reads (`exiftool -j`, one call per `BATCH` files) and
batched writes (one pipe write with a command per file, each ending with an exit-status
marker, so every file gets its own status and error text). Arguments go one per line, and
no common arguments are given: pyexiftool's default `-G -n` would change what values look
like.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from lamina.core.errors import LaminaError

BATCH = 256
SUBJECT = "XMP-dc:Subject"
HIERARCHY = "XMP-lr:HierarchicalSubject"
# The star rating; -1 is "rejected" to Lightroom, Bridge and darktable.
RATING = "XMP-xmp:Rating"
INSTALL_HINT = (
    "install exiftool: `apt-get install libimage-exiftool-perl` (Debian/Ubuntu) or "
    "`brew install exiftool` (macOS)"
)


class ExifToolSession:
    """One exiftool `-stay_open` process with batched reads and writes."""

    def __init__(self) -> None:
        try:
            import exiftool
        except ImportError as exc:
            raise LaminaError(
                "writing sidecars needs the Python package pyexiftool",
                hint="pip install pyexiftool",
            ) from exc
        executable = shutil.which("exiftool")
        if executable is None:
            raise LaminaError("exiftool is not installed (or not on PATH)", hint=INSTALL_HINT)
        # No common args: pyexiftool's default `-G -n` would change what values look like.
        self.et = exiftool.ExifTool(executable=executable, common_args=[], encoding="utf-8")
        self.marker = f"@@lamina-{uuid.uuid4().hex[:12]}@@"

    def __enter__(self) -> ExifToolSession:
        try:
            self.et.run()
        except Exception as exc:  # FileNotFoundError, an exiftool too old for pyexiftool
            raise LaminaError(f"cannot start exiftool: {exc}", hint=INSTALL_HINT) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self.et.terminate()

    def read(self, paths: list[Path]) -> dict[str, dict[str, Any]]:
        """`FileType`, Subject, HierarchicalSubject and Rating of each readable file."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(paths), BATCH):
            batch = [os.fsencode(p) for p in paths[start : start + BATCH]]
            tags = ("-File:FileType", f"-{SUBJECT}", f"-{HIERARCHY}", f"-{RATING}")
            out = self.et.execute("-j", "-G1", *tags, *batch)
            if not out.strip():
                continue
            # Numbers and booleans come back unquoted (`1e5`, `true`): keep their text.
            for entry in json.loads(out, parse_int=str, parse_float=str):
                found[entry["SourceFile"]] = {
                    "type": entry.get("File:FileType"),
                    SUBJECT: _as_list(entry.get(SUBJECT)),
                    HIERARCHY: _as_list(entry.get(HIERARCHY)),
                    RATING: None if entry.get(RATING) is None else str(entry[RATING]),
                }
        return found

    def write(self, commands: list[tuple[Path, list[str]]]) -> list[tuple[int, str]]:
        """Run each (file, tag arguments) as its own command, `BATCH` per pipe write; the
        exit status and error text of each, in order."""
        results: list[tuple[int, str]] = []
        for start in range(0, len(commands), BATCH):
            params: list[bytes] = []
            batch = commands[start : start + BATCH]
            for k, (path, args) in enumerate(batch):
                if k:
                    params.append(b"-execute")
                params += [b"-overwrite_original", *(a.encode("utf-8") for a in args)]
                params += [os.fsencode(path), b"-echo4", f"=${{status}}={self.marker}".encode()]
            self.et.execute(*params)
            results += self._statuses(self.et.last_stderr, len(batch))
        return results

    def _statuses(self, stderr: str, n: int) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        text: list[str] = []
        for line in stderr.splitlines():
            if line.endswith(f"={self.marker}") and line.startswith("="):
                status = line[1 : -len(self.marker) - 1]
                out.append((int(status) if status.isdigit() else 1, "\n".join(text).strip()))
                text = []
            else:
                text.append(line)
        if len(out) != n:  # exiftool died or answered out of step: fail the rest clearly
            out += [(1, "exiftool gave no status for this file")] * (n - len(out))
        return out


def _as_list(value: Any) -> list[str]:
    """A tag value from `exiftool -j` as a list of strings (one item comes back bare)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [("true" if v else "false") if isinstance(v, bool) else str(v) for v in items]
