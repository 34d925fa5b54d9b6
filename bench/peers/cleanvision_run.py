"""Run CleanVision with its defaults over a folder and print what it found as JSON.

Run with CleanVision's own venv (bench/work/venv-cleanvision/bin/python)::

    python bench/peers/cleanvision_run.py CORPUS            # Imagelab(data_path=CORPUS)
    python bench/peers/cleanvision_run.py CORPUS LIST.txt   # Imagelab(filepaths=[...])

The first form is the one CleanVision's docs show. The second passes an explicit list of
files (one path relative to CORPUS a line), used to score CleanVision on the decodable
files when the first form stops at an undecodable one. Output: one JSON object on stdout,
after the marker ``@@RESULT@@ `` (the tool prints its own progress too):
``{"tool", "version", "files", "pairs": [[a, b, kind]], "flags": {issue: [rel...]},
"crash": null | {"type", "message", "traceback"}}`` with paths relative to CORPUS.
"""

import contextlib
import json
import os
import sys
import traceback

MARKER = "@@RESULT@@ "

# Flags reported per image (is_<name>_issue columns); duplicates become pairs.
FLAG_ISSUES = (
    "dark", "light", "blurry", "low_information", "grayscale", "odd_aspect_ratio", "odd_size",
    "exact_duplicates", "near_duplicates",
)  # fmt: skip


def emit(out: dict) -> None:
    """The result, as one line after a marker: the tool may write to stdout itself."""
    sys.stdout.flush()
    print("\n" + MARKER + json.dumps(out), flush=True)


def main(corpus: str, listing: str | None) -> int:
    import cleanvision
    from cleanvision import Imagelab

    root = os.path.abspath(corpus)
    out: dict = {"tool": "cleanvision", "version": cleanvision.__version__, "crash": None}

    def rel(p: str) -> str:
        return os.path.relpath(os.path.abspath(p), root).replace(os.sep, "/")

    try:
        # CleanVision prints progress on stdout: keep stdout for the JSON.
        with contextlib.redirect_stdout(sys.stderr):
            if listing:
                with open(listing) as f:
                    paths = [os.path.join(root, line.strip()) for line in f if line.strip()]
                lab = Imagelab(filepaths=paths)
            else:
                lab = Imagelab(data_path=root)
            lab.find_issues()
    except Exception as exc:  # a crash is a result to report
        out["crash"] = {
            "type": type(exc).__name__,
            "message": str(exc)[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
        emit(out)
        return 1
    issues = lab.issues
    out["files"] = len(issues)
    out["flags"] = {
        name: sorted(rel(p) for p in issues.index[issues[f"is_{name}_issue"].astype(bool)])
        for name in FLAG_ISSUES
        if f"is_{name}_issue" in issues.columns
    }
    pairs = []
    for kind in ("exact_duplicates", "near_duplicates"):
        for group in lab.info.get(kind, {}).get("sets", []):
            members = sorted(rel(p) for p in group)
            pairs += [[a, b, kind] for i, a in enumerate(members) for b in members[i + 1 :]]
    out["pairs"] = pairs
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
