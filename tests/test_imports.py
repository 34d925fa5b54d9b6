"""The import graph of src/lamina: no cycle, imports only flow down the layers, every
module imports on its own, and no CLI module reaches into another's private names.

Read from the source with `ast`, function-level imports included (an import inside a
function still closes a loop the moment it runs)."""

from __future__ import annotations

import ast
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


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = sorted(m for m in MODULES if not m.endswith("__main__"))
    script = (
        "import importlib, subprocess, sys\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True,"
        " text=True)\n"
        "    if r.returncode:\n"
        "        bad.append((name, r.stderr.strip().splitlines()[-1:]))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


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
