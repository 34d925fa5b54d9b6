"""Choose the flags policy's thresholds on one corpus, judge them on another it never saw.

Two corpora from `bench/sense_corpus.py` share no source photo and no seed:

* *calibration*: ``--sources calibration`` (12 skimage photos), seed `SEED`;
* *held-out*: ``--sources heldout`` (the scikit-learn and matplotlib photos, and the skimage
  retina and gravel), seed `HELDOUT_SEED`, and only rendered documents as text.

Each is scanned and sensed by the CLI (`lamina sense --signals all`, the shipped policy) and
every file's flag scores are read from the `flags` table (`<flag>_score`). On the
calibration set alone, each tuned flag gets the threshold with the best F1 (ties: the middle
of the widest score gap that reaches it, so the threshold sits between the classes, not on
an example). The report gives, per flag: the threshold the policy ships, the threshold the
calibration set would choose, and precision / recall of the shipped policy on both sets (the
held-out figures are what `lamina sense` flagged, booleans from the flags table). Thresholds
are copied into `policy.toml` by hand, from the calibration table only; the held-out table
is never used to choose them.

Usage::

    .venv/bin/python bench/calibrate.py             # writes bench/results/calibration.md
    .venv/bin/python bench/calibrate.py --files 1500 --out /tmp/cal.md
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sense  # bench/ is not a package: found through sys.path
import sense_corpus

ROOT = sense.ROOT
SENSE = sense.SENSE
RESULTS = ROOT / "bench" / "results" / "calibration.md"
DEFECT_SHARE = 0.03  # ~45 files per defect type at 1,500 files
# flag -> ground-truth defect; the thresholds tuned here. tiny (< 64 px), huge (> 90 MP) and
# odd_aspect (> 3:1) are definitions, not tuned: they are judged, not chosen.
TUNED = {
    "dark": "dark",
    "light": "light",
    "blurry": "blurry",
    "low_information": "low_information",
    "grayscale": "grayscale",
    "noisy": "noisy",
    "text_heavy": "text_heavy",
    "odd_size": "odd_size",
}
JUDGED = {"odd_aspect": "odd_aspect", "tiny": "tiny", "huge": "huge", "junk": "broken"}


def sense_store(corpus: Path, store: Path, reuse: bool) -> list[dict[str, Any]]:
    """Scan and sense `corpus` into `store` (fresh unless `reuse`: then `sense` resumes and
    recomputes only what changed, e.g. the flags of an edited policy); every file's flags
    and scores."""
    exe = sense.lamina_exe()
    steps = [["sense", "--signals", "all"]]
    if not (reuse and store.exists()):
        shutil.rmtree(store, ignore_errors=True)
        steps.insert(0, ["scan", str(corpus)])
    for args in steps:
        proc = subprocess.run(
            [exe, "--store", str(store), *args, "--json"], capture_output=True, text=True
        )
        if proc.returncode not in (0, 1):
            raise SystemExit(f"lamina {args[0]} failed:\n{proc.stderr[-2000:]}")
    return sense.lamina_sql(
        store, "select f.rel_path, fl.* from files f left join flags fl using (image_id)"
    )


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    """The threshold (flag when score >= it) with the best F1 on these scores; among equals,
    the middle of the widest gap between consecutive scores."""
    values = np.unique(np.concatenate([pos, neg]))
    if len(values) < 2:
        return float(values[0]) if len(values) else 0.0
    cuts = (values[1:] + values[:-1]) / 2
    best: tuple[float, float, float] | None = None
    for cut, gap in zip(cuts, values[1:] - values[:-1], strict=True):
        tp = float((pos >= cut).sum())
        fp = float((neg >= cut).sum())
        f1 = 2 * tp / (2 * tp + fp + (len(pos) - tp)) if tp else 0.0
        key = (round(f1, 9), float(gap), -float(cut))
        if best is None or key > best:
            best = key
    assert best is not None
    return -best[2]


def pr(flagged: set[str], want: set[str]) -> tuple[float, float, int]:
    tp = len(flagged & want)
    p = tp / len(flagged) if flagged else float("nan")
    r = tp / len(want) if want else float("nan")
    return p, r, len(flagged)


def evaluate(truth: sense.Truth, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per flag: the shipped policy's P/R and the scores of positives and negatives."""
    universe = set(truth.files)
    out: dict[str, dict[str, Any]] = {}
    for flag, defect in {**TUNED, **JUDGED}.items():
        scored = truth.scored(defect, universe)
        want = truth.with_defect(defect, scored)
        if flag == "junk":  # a file the scan refuses has no image row: junk by status
            flagged = {r["rel_path"] for r in rows if r.get("junk") or r.get("image_id") is None}
        else:
            flagged = {r["rel_path"] for r in rows if r.get(flag)}
        score = {r["rel_path"]: float(r.get(f"{flag}_score") or 0.0) for r in rows}
        out[flag] = {
            "defect": defect,
            "pr": pr(flagged & scored, want),
            "pos": np.array([score.get(f, 0.0) for f in want]),
            "neg": np.array([score.get(f, 0.0) for f in scored - want]),
            "missed": sorted(want - flagged)[:5],
            "false": sorted((flagged & scored) - want)[:5],
        }
    return out


def _f(x: float) -> str:
    return "—" if x != x else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1500, help="files per corpus")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--reuse", action="store_true", help="keep the sensed stores (after a policy edit)"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    from lamina.analysis.flags import default_policy

    policy = default_policy()
    sets = {
        "calibration": (sense_corpus.SEED, SENSE / "calibration"),
        "held-out": (sense_corpus.HELDOUT_SEED, SENSE / "heldout"),
    }
    results = {}
    for label, (seed, corpus) in sets.items():
        sources = "calibration" if label == "calibration" else "heldout"
        print(f"{label}: building / sensing {corpus.relative_to(ROOT)}", flush=True)
        data = sense_corpus.ensure(corpus, args.files, seed, sources, DEFECT_SHARE)
        truth = sense.Truth(data)
        rows = sense_store(corpus, SENSE / "stores" / f"calibrate-{sources}", args.reuse)
        results[label] = (truth, evaluate(truth, rows))
    cal_truth, cal = results["calibration"]
    held_truth, held = results["held-out"]
    lines = [
        "# Flag thresholds: chosen on one set, judged on another",
        "",
        f"- Date: {date.today().isoformat()}; policy `{policy.name}` v{policy.version}; "
        f"command `.venv/bin/python bench/calibrate.py --files {args.files}` "
        f"({(time.perf_counter() - t0) / 60:.1f} min)",
        f"- Calibration set: `bench/sense_corpus.py --sources calibration --seed "
        f"{sense_corpus.SEED}` ({cal_truth.data['counts']['files']} files; photos: "
        f"{', '.join(cal_truth.data['photos'])}; the skimage `page` and `text` documents).",
        f"- Held-out set: `--sources heldout --seed {sense_corpus.HELDOUT_SEED}` "
        f"({held_truth.data['counts']['files']} files; photos: "
        f"{', '.join(held_truth.data['photos'])}; rendered documents only). No photo and no "
        "seed in common with the calibration set; never used to choose a threshold.",
        f"- Defects: {DEFECT_SHARE:.0%} of the files per type; both sets also hold "
        "duplicate groups, hard-negative crops, broken files, a 100 MP JPEG and a 200 MP PNG "
        "bomb. Borderline brightness is not scored (`sense_corpus._mark_borderline`: not made "
        "dark but luma p95 < 0.35; not made light but p05 > 0.65 or 20 % or more clipped; "
        "made light but neither p05 > 0.65 nor 30 % clipped): "
        + ", ".join(
            f"{d} {cal_truth.data['counts']['unscored'][d]} / "
            f"{held_truth.data['counts']['unscored'][d]}"
            for d in ("dark", "light")
        )
        + " files (calibration / held-out).",
        "- P / R = precision / recall of what `lamina sense --signals all` flagged with the "
        "shipped policy; (n) = files flagged. *chosen on calibration* = the threshold with "
        "the best F1 on the calibration scores (middle of the widest gap among equals).",
        "",
        "| flag | score | shipped threshold | chosen on calibration | calibration P / R (n) "
        "| held-out P / R (n) |",
        "|---|---|--:|--:|:-:|:-:|",
    ]
    for flag in (*TUNED, *JUDGED):
        rule = policy.rules[flag]
        c, h = cal[flag], held[flag]
        chosen = best_threshold(c["pos"], c["neg"]) if flag in TUNED else float("nan")
        cp, cr, cn = c["pr"]
        hp, hr, hn = h["pr"]
        lines.append(
            f"| {flag} | `{rule.score}` | {rule.threshold:g} | "
            f"{'(definition)' if flag in JUDGED else f'{chosen:.4g}'} | "
            f"{_f(cp)} / {_f(cr)} ({cn}) | {_f(hp)} / {_f(hr)} ({hn}) |"
        )
    below = [
        f"{flag} {_f(held[flag]['pr'][0])}/{_f(held[flag]['pr'][1])}"
        for flag in (*TUNED, *JUDGED)
        if not (held[flag]["pr"][0] >= 0.9 and held[flag]["pr"][1] >= 0.9)
    ]
    lines += [
        "",
        "**Every flag at P and R ≥ 0.9 on the held-out set.**"
        if not below
        else "**Below 0.9 on the held-out set: " + ", ".join(below) + ".**",
        "",
        "## Misses on the held-out set (first five each)",
        "",
    ]
    for flag in (*TUNED, *JUDGED):
        h = held[flag]
        if h["missed"]:
            lines.append(f"- `{flag}` missed: " + ", ".join(f"`{x}`" for x in h["missed"]))
        if h["false"]:
            lines.append(f"- `{flag}` false: " + ", ".join(f"`{x}`" for x in h["false"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
