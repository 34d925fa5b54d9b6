"""`python -m lamina` is the `lamina` command (for a venv whose scripts are not on PATH)."""

import subprocess
import sys


def test_python_dash_m_lamina_runs_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lamina", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "scan" in out.stdout and "Usage:" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "lamina", "no-such-verb"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no-such-verb" in bad.stderr
