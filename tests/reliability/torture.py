"""`make torture`: the full reliability suite, then docs/reliability.md from its figures.

    python -m tests.reliability.torture                       # what `make torture` runs
    python -m tests.reliability.torture --fuzz-seconds 300    # fuzz each target longer
    LAMINA_TORTURE_SEED=123 python -m tests.reliability.torture   # replay a run's choices

It runs tests/reliability in its full form (LAMINA_TORTURE=full: 20 kills, every fault
three times, thousands of property examples, every command twice over the hostile
collection), then the time-boxed fuzz run (fuzz.py), and rewrites docs/reliability.md: the
promises, then a table of what this run did and found, with the machine and the date. The
page is written whatever the outcome (a failure is a figure too); the exit code says
whether everything held.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"

PROMISES = """\
# Reliability: what lamina promises, and how it is checked

This page is written by `make torture` (`tests/reliability/torture.py`); edit the text in
that script, not here. The figures at the end are those of the run named there.

## What lamina guarantees

1. **The originals are never changed.** No lamina command writes, renames, deletes, touches
   the mode or the times of, or creates anything inside a source folder, with one
   exception you ask for by name: `lamina sidecars` without `--sidecar-dir` writes `.xmp`
   sidecars next to the photos (new files, or the `.xmp` files it finds there, merged).
   Output paths (`-o`, `run_dir`) are refused inside a source.
2. **`kill -9` at any moment, then the same command again, gives the tables of a run that
   was never interrupted**: no row lost, no row twice for one key, equal values. Model
   outputs (embeddings, class probabilities, label scores and what is computed from them)
   are equal within 1e-6 (`MODEL_FLOAT_TOLERANCE` in tests/reliability/tables.py); every
   other value is exactly equal. This holds whether the whole process group is killed or
   the parent alone: the pool workers die with it. A killed command leaves no lock behind.
3. **A full disk or a permission error on the store stops the command cleanly**: a
   message that names the path and the fix, exit code 2 (or 1 when it finished with some
   chunks failed), no traceback. What was committed stays committed; the next run goes on
   from there and ends with the tables of an uninterrupted run.
4. **Readers see a commit whole or not at all.** A change that spans several files (a
   scan's files, images and events) is staged, recorded, then renamed into place; a commit
   cut between its renames is rolled forward the next time the store is opened.
5. **Hostile input is a row, never a crash**: names with newlines, quotes, `$()`, leading
   dashes or 255 bytes; links (loops, dangling, leaving the source); decompression bombs;
   files cut short; lying headers and extensions; archives named like images; FIFOs;
   unreadable files. Label files, pipeline configs and flags policies that are malformed
   are refused with a message that names the file (and the line, where there is one).

## Where this holds

On a store on a local POSIX filesystem that has an atomic `rename(2)` within itself and
`flock(2)`: ext4, XFS, btrfs, tmpfs, APFS. Sources may be anywhere lamina can read,
network filesystems and memory cards included (they are only read).

## What lamina does not promise

- **Network filesystems for the store** (NFS, SMB/CIFS, sshfs): `flock` may be local to
  one client or not enforced (NFS emulates it with byte-range locks that a lost lease
  drops; SMB maps it to the server's locks, sshfs not at all), so two machines can write
  one store at once, and a rename is not atomic across a server failover or a reconnect.
  Keep the store on a local disk.
- **FAT and exFAT for the store** (memory cards, USB sticks): `flock` and `rename` work
  within one machine, but there is no journal (a card pulled mid-write can lose the folder
  entries of files written just before), FAT32 keeps modification times to 2 s and files
  under 4 GiB, and names may not hold `:`, `*`, `?`, `"`, `<`, `>`, `|`. The kill and
  fault promises are checked on ext4 and tmpfs only.
- **Power loss or a kernel crash.** lamina flushes its JSON records (ledger chunk records,
  run records, commit records, the text cache) to disk, but not the Parquet parts, the
  thumbnails or the folders that hold them. After a power cut a part can be empty or
  missing while its ledger record says it is done, and nothing detects it today
  (`lamina verify` checks the sources and finds a key held twice in a layer, not a part
  that is missing or cut short). A `kill -9` is not a power cut: the
  kernel still writes back what the process wrote.
- **Sources that change while they are read**: a file rewritten during the scan is recorded
  as it was read; the next scan sees the change.
- **A second writer waits**: it does not. It is refused with the holder's pid (readers
  never wait).

## How it is checked

`tests/reliability/` (marker `torture`) runs in `make test` in a bounded form (a few kills
and faults, a few hundred property examples, every command once over the hostile files)
and in `make torture` in full. `LAMINA_TORTURE_SEED` replays a run's random choices; every
failure names its seed.

- **Kills** (test_interruptions.py): `lamina run` over a small collection of real photos in
  nine formats plus the hostile files, killed with SIGKILL at random moments of every stage
  (the whole process group, or the parent alone, then re-run at once), in chains; the last
  re-run is compared with an uninterrupted run, table by table and layer by layer, rows by
  key (tables.py), and every process of a killed parent must be gone within 10 s.
- **Faults** (same file, `faultlayer/sitecustomize.py`): the k-th write under the store
  fails with ENOSPC or EACCES, a pool worker is SIGKILLed mid-chunk, the run is SIGKILLed
  between the renames of a commit, and (as root) the store's tmpfs fills up.
- **Properties and fuzzing** (test_properties.py, fuzz.py): lamina's JPEG/PNG header
  reader (and Pillow must agree with what it reads), format sniffing, the scan's probe on
  mutated real JPEG, PNG, GIF, TIFF, WebP, BMP and HEIC files, label files, `lamina run`
  configs and flags policies: only the documented errors, and no write outside a scratch
  folder.
- **Hostile collection** (test_hostile.py): every command over it; every file and folder
  of the sources (and of what their links point at) hashed and listed before and after.
"""


def machine() -> dict[str, str]:
    """Where the run ran: CPU, cores, memory, OS, Python, filesystems, user, commit."""
    import psutil

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = names[0] if names else cpu
    tmp = Path(tempfile.gettempdir()).resolve()
    fs = max((p for p in psutil.disk_partitions(all=True) if str(tmp).startswith(p.mountpoint)),
             key=lambda p: len(p.mountpoint), default=None)  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {psutil.cpu_count()} cores",
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "tmp filesystem": f"{fs.fstype} ({tmp})" if fs else str(tmp),
        "user": "root" if os.geteuid() == 0 else "not root",
        "commit": commit + (" (with local changes)" if dirty else ""),
    }


def run_pytest(figures: Path, seed: int, workers: int) -> tuple[int, str]:
    env = dict(os.environ)
    env.update(LAMINA_TORTURE="full", LAMINA_TORTURE_FIGURES=str(figures),
               LAMINA_TORTURE_SEED=str(seed))  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p",
               "no:cacheprovider", "-n", str(workers), "-rfE"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    print(done.stdout[-6000:], done.stderr[-2000:], sep="\n")
    summary = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return done.returncode, (summary[-1].strip("= ") if summary else "no summary")


def run_fuzz(seconds: int, out: Path) -> list[dict[str, Any]]:
    from tests.reliability.fuzz import run_target
    from tests.reliability.fuzz_targets import TARGETS

    results = []
    for name in sorted(TARGETS):
        result = run_target(name, seconds, out / name)
        print(json.dumps({k: v for k, v in result.items() if k != "finding"}), flush=True)
        results.append(result)
    return results


def _stages(steps: list[dict[str, Any]]) -> str:
    counts = Counter(s["stage_at"] or "?" for s in steps if s["happened"])
    return ", ".join(f"{stage} {n}" for stage, n in sorted(counts.items())) or "none"


def render(info: dict[str, str], seed: int, summary: str, records: list[dict[str, Any]],
           fuzz: list[dict[str, Any]]) -> str:  # fmt: skip
    chains = [r for r in records if r["kind"] == "chain"]
    steps = [s for r in chains for s in r["steps"]]
    kills = [s for s in steps if s["kind"].startswith("kill-")]
    faults = [s for s in steps if not s["kind"].startswith("kill-")]
    kill_chains = [r for r in chains if any(s["kind"].startswith("kill-") for s in r["steps"])]
    fault_chains = [r for r in chains if r not in kill_chains]
    hostile = [r for r in records if r["kind"] == "hostile"]
    props = [r for r in records if r["kind"] == "property"]
    lines = [PROMISES, "## Figures of the last run", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += [f"- seed: `LAMINA_TORTURE_SEED={seed}`", f"- pytest: {summary}", ""]
    lines += ["| check | what was done | what held |", "|---|---|---|"]
    landed = [s for s in kills if s["happened"]]
    by_mode = Counter(s["kind"] for s in landed)
    held = sum(not r["problems"] for r in kill_chains)
    orphans = sum(s["orphans"] for s in kills)
    rows = sum(r["rows"] for r in kill_chains)
    worst = max((r["max_model_float_difference"] for r in chains), default=0.0)
    lines.append(
        f"| kill -9 | {len(landed)} kills landed of {len(kills)} planned ({by_mode['kill-group']} "
        f"of the process group, {by_mode['kill-parent']} of the parent alone) in "
        f"{len(kill_chains)} chains; stages: {_stages(kills)} | {held} of {len(kill_chains)} "
        f"chains ended equal to the uninterrupted run ({rows} rows compared); {orphans} "
        f"processes outlived their killed parent by 10 s; largest model float difference "
        f"{worst:.1e} |"
    )
    fired = Counter(s["kind"] for s in faults if s["happened"])
    planned = Counter(s["kind"] for s in faults)
    held = sum(not r["problems"] for r in fault_chains)
    done = ", ".join(f"{k} {fired[k]}/{planned[k]}" for k in sorted(planned))
    lines.append(
        f"| faults | injected/planned: {done} | {held} of {len(fault_chains)} chains failed "
        "cleanly at each fault and ended equal to the uninterrupted run |"
    )
    for r in sorted(props, key=lambda r: r["target"]):
        lines.append(f"| property: {r['target']} | {r['examples']} examples (hypothesis) | held |")
    for f in fuzz:
        verdict = "no finding" if not f["findings"] else "**a finding** (below)"
        lines.append(f"| fuzz: {f['target']} | {f['inputs']} inputs in {f['seconds']:.0f} s "
                     f"({f['engine']}) | {verdict} |")  # fmt: skip
    for r in hostile:
        codes = Counter(str(c) for c in r["exit_codes"])
        lines.append(
            f"| hostile collection | {r['commands']} commands over {r['files']} hostile files "
            f"({', '.join(f'{k} {v}' for k, v in sorted(r['kinds'].items()))}); "
            f"{r['entries_checked']} entries hashed before and after; unreadable files "
            f"{'enforced' if r['reduced_privileges'] else 'readable (root with all capabilities)'}"
            f" | exit codes {dict(sorted(codes.items()))}; "
            f"{'no problem' if not r['problems'] else str(len(r['problems'])) + ' problems'} |"
        )
    problems = [(r.get("chain") or r["kind"], p) for r in chains + hostile for p in r["problems"]]
    problems += [(f"fuzz {f['target']}", f.get("finding", "")[-1500:]) for f in fuzz
                 if f["findings"]]  # fmt: skip
    lines += ["", "## What this run found", ""]
    if not problems:
        lines.append("Nothing: every check held.")
    for where, text in problems[:40]:
        lines += [f"- {where}:", "", "  ```", *("  " + t for t in str(text).splitlines()[:30]),
                  "  ```"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.torture",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--fuzz-seconds", type=int, default=60, help="per fuzz target")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument(
        "--render-only",
        type=Path,
        metavar="WORK",
        help="rewrite the page from an earlier run's folder (its figures)",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        # The page's text changed, the run did not: its figures, machine and outcome stay.
        run = json.loads((args.render_only / "run.json").read_text())
        records = [json.loads(line) for line in
                   (args.render_only / "figures.jsonl").read_text().splitlines()]  # fmt: skip
        args.doc.write_text(render(run["machine"], run["seed"], run["summary"], records,
                                   run["fuzz"]))  # fmt: skip
        print(f"wrote {args.doc} from {args.render_only}")
        return 0
    seed = int(os.environ.get("LAMINA_TORTURE_SEED") or random.SystemRandom().randrange(2**31))
    work = Path(tempfile.mkdtemp(prefix="lamina-torture-"))
    figures = work / "figures.jsonl"
    code, summary = run_pytest(figures, seed, args.workers)
    fuzz = run_fuzz(args.fuzz_seconds, work / "fuzz")
    records = (
        [json.loads(line) for line in figures.read_text().splitlines()] if figures.is_file() else []
    )
    info = machine()
    run = {"machine": info, "seed": seed, "summary": summary, "fuzz": fuzz, "code": code}
    (work / "run.json").write_text(json.dumps(run))
    args.doc.write_text(render(info, seed, summary, records, fuzz))
    print(f"{summary}; fuzz findings: {sum(f['findings'] for f in fuzz)}; wrote {args.doc}")
    print(f"figures and fuzz corpora: {work}")
    return 1 if code or any(f["findings"] for f in fuzz) else 0


if __name__ == "__main__":
    sys.exit(main())
