"""The docstring examples of src/lamina (run by src/conftest.py, each in its own folder)
write only there: a fixed path such as /tmp/f.png is shared by every test run on the
machine, and one run's file is another's stale answer, or a permission error."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import lamina

SRC = Path(lamina.__file__).parent
SKIP = doctest.OPTIONFLAGS_BY_NAME["SKIP"]


def _run_examples() -> list[tuple[str, int, str]]:
    """(module path, line, source) of every example that runs (not marked +SKIP)."""
    parser = doctest.DocTestParser()
    out = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                continue
            doc = ast.get_docstring(node, clean=False)
            if not doc or ">>>" not in doc:
                continue
            for example in parser.get_examples(doc):
                if not example.options.get(SKIP):
                    out.append((str(path.relative_to(SRC)), example.lineno, example.source))
    return out


def test_no_running_example_writes_to_a_fixed_temporary_path() -> None:
    examples = _run_examples()
    assert len(examples) > 300  # the examples were found
    shared = [(p, n, s.strip()) for p, n, s in examples if 'Path("/tmp' in s]
    assert shared == []
