"""The package's import structure: every module imports, no module reaches itself through imports (top-level or
inside functions), and only the CLI layer (edgekd/cli.py, edgekd/commands/ and the `python -m edgekd` entry
point, edgekd/__main__.py) imports the CLI layer."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import edgekd

ROOT = Path(edgekd.__file__).parent
CLI_LAYER = ("edgekd.__main__", "edgekd.cli", "edgekd.commands")
ENTRY_POINT = "edgekd.__main__"  # importing it runs the CLI


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name, with its file."""
    found = {"edgekd": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="edgekd."):
        spec = importlib.util.find_spec(info.name)
        found[info.name] = Path(spec.origin)
    return found


MODULES = _modules()


def _in_cli_layer(name: str) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in CLI_LAYER)


def _imported(name: str, path: Path) -> set[str]:
    """The package modules `name` imports anywhere in its file: `import edgekd.x`, `from edgekd.x import y` (y
    itself when it is a module) and relative imports, at top level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in MODULES and target != name}


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import cycle as a list of modules (the first repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        stack.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[name] = "done"
        return None

    for name in sorted(GRAPH):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


@pytest.mark.parametrize("name", sorted(set(MODULES) - {ENTRY_POINT}))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_graph_sees_function_level_imports():
    assert "edgekd.runtime.torch_runner" in GRAPH["edgekd.runtime.backends"]  # imported inside an opener
    assert "edgekd.runtime.metadata" in GRAPH["edgekd.runtime.runner"]


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_library_never_imports_the_cli_layer():
    offenders = [
        f"{name} imports {target}"
        for name, targets in sorted(GRAPH.items())
        if not _in_cli_layer(name)
        for target in sorted(targets)
        if _in_cli_layer(target)
    ]
    assert not offenders, "; ".join(offenders)
