"""A time-boxed fuzz run of lamina's parsers of untrusted input (the targets of
fuzz_targets.py): coverage-guided with atheris (libFuzzer) when it is installed, else
hypothesis at a high example count for the same time.

    python -m tests.reliability.fuzz --seconds 60              # every target, 60 s each
    python -m tests.reliability.fuzz --seconds 10 --target probe_file

Each target runs in its own process, starting from the real files of its seeds, with
lamina and Pillow instrumented. A finding (an exception other than the target's documented
ones, a broken promise, a write outside the scratch folder) stops that target; its input is
kept under `--out` as `crash-<sha1>` and printed as a repro command. Prints one JSON line
per target: inputs tried, findings, the engine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.reliability.fuzz_targets import TARGETS, check

REPO = Path(__file__).resolve().parents[2]


def _atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def fuzz_one_with_atheris(name: str, seconds: int, corpus: Path, out: Path) -> None:
    """Runs in the child: libFuzzer takes over the process and exits when time is up."""
    import atheris

    with atheris.instrument_imports(include=["lamina", "PIL"]):
        import PIL.Image  # noqa: F401

        import lamina.analysis.flags
        import lamina.core.headers
        import lamina.core.images
        import lamina.core.sqlsafe
        import lamina.pipeline.config
        import lamina.tagging.labels  # noqa: F401
    target = TARGETS[name]
    scratch = Path(tempfile.mkdtemp(prefix=f"lamina-fuzz-{name}-"))

    def one_input(data: bytes) -> None:
        check(target, data, scratch)

    # Each seed once before the clock starts: the lazy imports (pyarrow, pandas, Pillow's
    # plugins) would otherwise count against the first input's timeout.
    for data in target.seeds().values():
        one_input(data)

    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        "-rss_limit_mb=4096",
        "-timeout=120",
        f"-artifact_prefix={out}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def fuzz_one_with_hypothesis(name: str, seconds: int) -> dict[str, Any]:
    """The fallback: hypothesis rounds of fresh seeds until the time is up."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as with_seed

    from tests.reliability.test_properties import inputs

    target = TARGETS[name]
    scratch = Path(tempfile.mkdtemp(prefix=f"lamina-fuzz-{name}-"))
    tried = 0
    deadline = time.monotonic() + seconds
    round_seed = int.from_bytes(os.urandom(4), "big")
    while time.monotonic() < deadline:

        @with_seed(round_seed)
        @settings(max_examples=500, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(inputs(name))
        def holds(data: bytes) -> None:
            nonlocal tried
            tried += 1
            check(target, data, scratch)

        holds()
        round_seed += 1
    return {"target": name, "engine": "hypothesis", "inputs": tried, "findings": 0}


def run_target(name: str, seconds: int, out: Path) -> dict[str, Any]:
    """Fuzz one target in a child process and say what happened."""
    corpus = out / f"corpus-{name}"
    corpus.mkdir(parents=True, exist_ok=True)
    for seed_name, data in TARGETS[name].seeds().items():
        (corpus / seed_name).write_bytes(data)
    engine = "atheris" if _atheris_available() else "hypothesis"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "tests.reliability.fuzz", "--child", name,
               "--seconds", str(seconds), "--out", str(out), "--engine", engine]  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True,
                          errors="replace", timeout=seconds * 3 + 300)  # fmt: skip
    text = done.stdout + done.stderr
    result: dict[str, Any] = {
        "target": name,
        "engine": engine,
        "seconds": round(time.monotonic() - t0, 1),
    }
    if engine == "atheris":
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text) or re.findall(
            r"Done (\d+) runs", text
        )
        result["inputs"] = int(runs[-1]) if runs else 0
        crashes = sorted(out.glob("crash-*")) + sorted(out.glob("timeout-*"))
        crashes += sorted(out.glob("oom-*"))
        result["findings"] = 0 if done.returncode == 0 else 1
        if done.returncode != 0:
            tail = text[text.find("=== Uncaught") :] if "=== Uncaught" in text else text[-3000:]
            result["finding"] = tail[:4000]
            result["inputs_kept"] = [str(p) for p in crashes]
    else:
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        result.update(json.loads(lines[-1]) if lines else {"inputs": 0})
        result["findings"] = 0 if done.returncode == 0 else 1
        if done.returncode != 0:
            result["finding"] = text[-4000:]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.fuzz",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--out", type=Path, default=None, help="findings and corpora")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = (args.out or Path(tempfile.mkdtemp(prefix="lamina-fuzz-"))).absolute()
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        if args.engine == "atheris":
            fuzz_one_with_atheris(args.child, args.seconds, out / f"corpus-{args.child}", out)
            return 0  # not reached: libFuzzer exits the process
        print(json.dumps(fuzz_one_with_hypothesis(args.child, args.seconds)))
        return 0
    failed = 0
    for name in args.target or sorted(TARGETS):
        result = run_target(name, args.seconds, out / name)
        failed += result["findings"]
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
