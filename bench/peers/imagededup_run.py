"""Run one imagededup hash method with its defaults over a folder; print JSON.

Run with imagededup's own venv (bench/work/venv-imagededup/bin/python)::

    python bench/peers/imagededup_run.py CORPUS PHash|DHash|WHash|AHash

``find_duplicates(image_dir=CORPUS, recursive=True)``: every other argument (the Hamming
threshold of 10, the search method, the worker counts) is the default. Output: one JSON
object on stdout after the marker ``@@RESULT@@ ``: ``{"tool", "version", "method", "files",
"pairs": [[a, b, "near"]], "not_encoded": [rel...]}``
where not_encoded lists the files under CORPUS that got no hash (imagededup logs a warning
for each and leaves it out of the result).
"""

import contextlib
import json
import os
import sys

MARKER = "@@RESULT@@ "


def emit(out: dict) -> None:
    """The result, as one line after a marker: the tool may write to stdout itself."""
    sys.stdout.flush()
    print("\n" + MARKER + json.dumps(out), flush=True)


def main(corpus: str, method: str) -> int:
    from importlib.metadata import version

    from imagededup import methods

    root = os.path.abspath(corpus)
    hasher = getattr(methods, method)()
    with contextlib.redirect_stdout(sys.stderr):
        dups = hasher.find_duplicates(image_dir=root, recursive=True)
    keys = {k.replace(os.sep, "/") for k in dups}
    pairs = set()
    for a, found in dups.items():
        for b in found:
            a2, b2 = sorted((a.replace(os.sep, "/"), b.replace(os.sep, "/")))
            pairs.add((a2, b2))
    everything = [
        os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
        for d, _, fs in os.walk(root)
        for f in fs
    ]
    out = {
        "tool": f"imagededup-{method}",
        "version": version("imagededup"),
        "method": method,
        "files": len(keys),
        "pairs": [[a, b, "near"] for a, b in sorted(pairs)],
        "not_encoded": sorted(set(everything) - keys),
    }
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
