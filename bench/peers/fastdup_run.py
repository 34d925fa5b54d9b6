"""Run fastdup with its defaults over a folder and print what it found as JSON.

Run with fastdup's own venv (bench/work/venv-fastdup/bin/python)::

    python bench/peers/fastdup_run.py CORPUS WORK_DIR

``fastdup.create(work_dir=WORK_DIR, input_dir=CORPUS).run()`` with every default (its
bundled ONNX model, similarity threshold 0.9, 2 nearest neighbours, connected components
at 0.96). SENTRY_OPT_OUT is set: no crash reports or metrics are sent (there is no network
here anyway, and the attempts would only add waiting). Quality flags use the thresholds of
fastdup's own ``summary()``: blur < 150 (blurry), mean > 253 (bright), mean < 4 (dark).
Output: one JSON object on stdout after the marker ``@@RESULT@@ `` (fastdup's C++ core
writes its progress to stdout too): ``{"tool", "version", "files",
"pairs": [[a, b, "similarity"]], "cc_pairs": [[a, b, "component"]], "flags": {...},
"invalid": [[rel, reason]]}``.
"""

import contextlib
import json
import os
import sys

MARKER = "@@RESULT@@ "

os.environ.setdefault("SENTRY_OPT_OUT", "1")

BLUR, BRIGHT, DARK = 150.0, 253.0, 4.0  # fastdup.Fastdup.summary() defaults


def emit(out: dict) -> None:
    """The result, as one line after a marker: the tool may write to stdout itself."""
    sys.stdout.flush()
    print("\n" + MARKER + json.dumps(out), flush=True)


def main(corpus: str, work_dir: str) -> int:
    import fastdup

    root = os.path.abspath(corpus)

    def rel(p: str) -> str:
        # fastdup reports paths as it was given them (absolute here), relative for some
        # outputs: resolve against the working directory first, then against the corpus.
        p = str(p)
        if not os.path.isabs(p):
            p = os.path.abspath(p) if os.path.exists(p) else os.path.join(root, p)
        return os.path.relpath(p, root).replace(os.sep, "/")

    with contextlib.redirect_stdout(sys.stderr):
        fd = fastdup.create(work_dir=os.path.abspath(work_dir), input_dir=root)
        fd.run()
        sim = fd.similarity()
        invalid = fd.invalid_instances()
        stats = fd.img_stats()
        try:
            cc = fd.connected_components()
            cc = cc[0] if isinstance(cc, tuple) else cc
        except Exception as exc:  # fastdup raises when there is no component
            print(f"connected_components failed: {exc!r}", file=sys.stderr)
            cc = None
    pairs = sorted(
        {
            tuple(sorted((rel(a), rel(b))))
            for a, b in zip(sim["filename_from"], sim["filename_to"], strict=True)
        }
    )
    cc_pairs: set[tuple[str, str]] = set()
    if cc is not None and len(cc):
        col = "component_id"
        sizes = cc.groupby(col)["filename"].transform("count")
        for _, grp in cc[sizes > 1].groupby(col):
            members = sorted(rel(f) for f in grp["filename"])
            cc_pairs |= {(a, b) for i, a in enumerate(members) for b in members[i + 1 :]}
    flags = {
        "blurry": sorted(rel(f) for f in stats.loc[stats["blur"] < BLUR, "filename"]),
        "light": sorted(rel(f) for f in stats.loc[stats["mean"] > BRIGHT, "filename"]),
        "dark": sorted(rel(f) for f in stats.loc[stats["mean"] < DARK, "filename"]),
    }
    reason_col = next((c for c in ("error_code", "reason") if c in invalid.columns), None)
    out = {
        "tool": "fastdup",
        "version": fastdup.__version__,
        "files": len(stats),
        "pairs": [[a, b, "similarity"] for a, b in pairs],
        "cc_pairs": [[a, b, "component"] for a, b in sorted(cc_pairs)],
        "flags": flags,
        "invalid": [
            [rel(f), str(r) if reason_col else ""]
            for f, r in zip(
                invalid["filename"],
                invalid[reason_col] if reason_col else [""] * len(invalid),
                strict=True,
            )
        ],
        "columns": {
            "similarity": list(sim.columns),
            "invalid": list(invalid.columns),
            "stats": list(stats.columns),
            "components": list(cc.columns) if cc is not None else None,
        },
    }
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
