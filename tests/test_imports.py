"""The package's imports go one way: no module imports itself back through others (at module
level or inside a function), and the networks (``mcaclip/nn/``) import nothing of the runtime,
the training or the export (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mcaclip"
# what the networks may not import: they are the bottom layer of the package
NOT_FROM_NN = ("mcaclip.runtime", "mcaclip.training", "mcaclip.export")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``mcaclip.nn`` for its ``__init__.py``)."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` (module ``name``) imports anywhere in its code:
    ``import a.b``, ``from a import b`` (``b`` a submodule: that one, else ``a``) and relative
    imports resolved against ``name``'s package."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    # ``import mcaclip.nn.weights`` runs mcaclip.nn's __init__ too, but that is no edge of
    # ours: an edge is the module named; keep only the package's modules
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported(path, name, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """Module-level and function-level imports, ``from pkg import submodule``, relative ones."""
    modules = {n: Path() for n in ("mcaclip.nn", "mcaclip.nn.weights", "mcaclip.nn.stylegan2",
                                   "mcaclip.config", "mcaclip.runtime.backends.base")}  # fmt: skip
    source = tmp_path / "editor.py"
    source.write_text(
        "import mcaclip.config\n"
        "from . import weights\n"
        "def f():\n"
        "    from .stylegan2 import Generator\n"
        "    from mcaclip.runtime.backends import base\n"
    )
    got = imported(source, "mcaclip.nn.editor", modules)
    assert got == {"mcaclip.config", "mcaclip.nn.weights", "mcaclip.nn.stylegan2",
                   "mcaclip.runtime.backends.base"}  # fmt: skip
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_networks_import_no_runtime_training_or_export():
    wrong = [
        f"{name} imports {other}"
        for name, others in sorted(import_graph().items())
        if name == "mcaclip.nn" or name.startswith("mcaclip.nn.")
        for other in sorted(others)
        if other.startswith(NOT_FROM_NN)
    ]
    assert not wrong, "; ".join(wrong)


@pytest.mark.parametrize("name", ["mcaclip.nn.editor", "mcaclip.runtime.backends.torch"])
def test_known_modules_are_in_the_graph(name):
    """A guard on the test itself: the package is found and its imports are read."""
    graph = import_graph()
    assert name in graph and graph[name]
