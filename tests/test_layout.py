"""The package's layout rules, read from its source: imports run one way (no module imports, however
indirectly, a module that imports it back; nor does any subpackage), only the tracking module talks to MLflow,
and library code imports no engine and no server (the command line picks them)."""

from __future__ import annotations

import ast
from pathlib import Path

import churnguard

ROOT = Path(churnguard.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["churnguard", *path.relative_to(ROOT).with_suffix("").parts]
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _module_of(name: str) -> str | None:
    """The package module that an imported name lives in (``churnguard.features.kernel.day_numbers`` ->
    ``churnguard.features.kernel``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> set[str]:
    """Every name a module imports at run time, at any depth (in functions too); imports made only for type
    checkers (under ``if TYPE_CHECKING:``) are left out."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for branch in ast.walk(tree)
                   if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
                   for statement in branch.body for node in ast.walk(statement)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


IMPORTS = {module: _imports(path) for module, path in MODULES.items()}


def _graph(group=lambda module: module) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {group(m): set() for m in MODULES}
    for module, names in IMPORTS.items():
        for name in names:
            target = _module_of(name) if name.startswith("churnguard") else None
            if target is not None and group(target) != group(module):
                edges[group(module)].add(group(target))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_loop_and_only_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_module_imports_itself_back_through_others():
    assert _cycles(_graph()) == []


def test_no_subpackage_imports_itself_back_through_others():
    def subpackage(module: str) -> str:
        return ".".join(module.split(".")[:2])

    assert _cycles(_graph(subpackage)) == []


def test_only_the_tracking_module_and_the_mlflow_model_import_mlflow():
    users = {m for m, names in IMPORTS.items() if any(n == "mlflow" or n.startswith("mlflow.") for n in names)}
    assert users == {"churnguard.training.tracking", "churnguard.training._pyfunc"}


def test_library_code_imports_no_engine_and_no_server():
    for layer in ("churnguard.engines", "churnguard.serving"):
        users = {m for m, names in IMPORTS.items() if not m.startswith(layer)
                 and any(_module_of(n) is not None and _module_of(n).startswith(layer) for n in names)}
        assert users == {"churnguard.cli"}, layer
