"""The import graph of src/lamina: no cycle, imports only flow down the layers, every
module imports on its own, and no CLI module reaches into another's private names.

Read from the source with `ast`, function-level imports included (an import inside a
function still closes a loop the moment it runs)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import lamina

SRC = Path(lamina.__file__).parent

# Highest first: a module may import from its own layer or any layer below it, never
# from one above. `lamina` is the package itself (its jobs are imported lazily).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lamina", "lamina.cli"),
    ("lamina.pipeline",),
    ("lamina.report", "lamina.review"),
    ("lamina.jobs", "lamina.catalog"),
    (
        "lamina.passes",
        "lamina.analysis",
        "lamina.tagging",
        "lamina.manifest",
        "lamina.exports",
        "lamina.sample",
        "lamina.learning",
    ),
    ("lamina.index", "lamina.backends"),
    ("lamina.core",),
    ("lamina.executors",),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(modules imported when it runs, modules imported for type checking only)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    runtime: set[str] = set()
    typed: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found = [node.args[0].value]
        for name in found:
            target = _resolve(name) if name.startswith("lamina") else None
            if target and target != module:
                (typed if id(node) in typing_only else runtime).add(target)
    return runtime, typed


def layer_of(module: str) -> int:
    best = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[1]
            ):
                best = (level, len(prefix))
    assert best is not None, f"{module} is in no layer of LAYERS: add it"
    return best[0]


def _cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    edges = {m: imports_of(m)[0] for m in MODULES}
    cycles = set(_cycles(edges))
    assert cycles == set(), [sorted(c) for c in cycles]


def test_imports_only_flow_down_the_layers() -> None:
    upward = []
    for module in MODULES:
        runtime, typed = imports_of(module)
        for target in runtime | typed:
            if layer_of(target) < layer_of(module):
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_the_checker_sees_function_level_imports_and_their_layers() -> None:
    # The job imports the runner inside its function; a pass module sits below the jobs.
    assert "lamina.core.runner" in imports_of("lamina.jobs.sense")[0]
    assert layer_of("lamina.jobs.sense") < layer_of("lamina.passes.thumbs")
    assert layer_of("lamina.cli.app") < layer_of("lamina.pipeline.stages")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [frozenset({"a", "b"})]


# Imports each module in a child forked from an interpreter that has run `import lamina`
# only. That is the state every fresh `python -c "import lamina.x"` reaches first (the
# package's __init__ runs to its end before any submodule), so the child imports the module
# as a fresh interpreter would, without paying the interpreter's start and
# `import lamina` again for each of ~200 modules (59 s of a 2-core CI run as one
# interpreter each). The child exits as a fresh interpreter does (atexit, finalisation), so
# a failure at exit still counts. Where there is no fork, one interpreter per module.
IMPORT_EACH = """
import os, sys
names = sys.argv[1:]
if not hasattr(os, "fork"):
    import subprocess
    bad = [n for n in names if subprocess.run([sys.executable, "-c", f"import {n}"]).returncode]
    print(bad)
    sys.exit(1 if bad else 0)
import lamina
bad = []
for name in names:
    pid = os.fork()
    if pid == 0:
        import importlib
        importlib.import_module(name)
        sys.exit(0)
    if os.waitpid(pid, 0)[1]:
        bad.append(name)
print(bad)
sys.exit(1 if bad else 0)
"""


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = sorted(m for m in MODULES if not m.endswith("__main__"))
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *names], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_check_catches_a_module_that_fails_on_its_own(tmp_path: Path) -> None:
    """A module that imports only after another has run (a cycle entered from the wrong
    side) fails in the check, though importing the other first would hide it."""
    package = tmp_path / "lamina_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    # `a` first: b asks a for A before a has it. `b` first: a finds b half-made in
    # sys.modules (enough for `from lamina_probe import b`), ends, and b gets A.
    (package / "a.py").write_text("from lamina_probe import b\nA = 1\n")
    (package / "b.py").write_text("from lamina_probe.a import A\nB = A\n")
    (package / "c.py").write_text("C = 1\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    names = ["lamina_probe.b", "lamina_probe.a", "lamina_probe.c"]  # b first would hide a
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *names], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == "['lamina_probe.a']"
    assert "ImportError: cannot import name 'A'" in result.stderr


def test_no_cli_module_imports_another_cli_modules_private_names() -> None:
    private = []
    for module, path in MODULES.items():
        if not module.startswith("lamina.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lamina"):
                for alias in node.names:
                    if alias.name.startswith("_") and node.module != module:
                        private.append(f"{module}: from {node.module} import {alias.name}")
    assert private == []
