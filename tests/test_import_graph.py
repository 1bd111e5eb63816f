"""The package's modules import each other without cycles at module level (a cycle makes the
import order matter and forces imports into function bodies)."""

from __future__ import annotations

import ast
from pathlib import Path

import mixforget

PACKAGE_DIR = Path(mixforget.__file__).parent
PACKAGE = "mixforget"


def _module_names() -> dict[str, Path]:
    """Dotted name → file of every module of the package (``pkg.sub`` for ``sub/__init__``)."""
    names = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking_block(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports executed when the module is imported: the module body and the bodies of its
    top-level if/try blocks (not functions or classes; not ``if TYPE_CHECKING:``)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try)) and not _is_type_checking_block(node):
            for block in ("body", "orelse", "finalbody"):
                pending.extend(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports at module level. ``from . import x`` and
    ``from .x import y`` count as importing ``x`` (and ``x.y`` when that is a module); an
    import of a submodule also runs its parent packages, so they count too."""
    modules = _module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _top_level_imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    anchor = name.split(".")
                    if not is_package:
                        anchor.pop()
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]  # attribute of a module: the module
                while target:
                    if target in modules and target != name and not name.startswith(target + "."):
                        graph[name].add(target)
                    target = target.rpartition(".")[0]
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a list of nodes (first = last), or [] when acyclic."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_graph_sees_the_package_imports():
    # the parser must resolve relative imports, or an empty graph would pass trivially
    graph = import_graph()
    # edges that used to be hidden in function bodies to dodge cycles are module-level now
    assert "mixforget._kernels" in graph["mixforget.mixture"]
    assert "mixforget._problem" in graph["mixforget.kernels"]
    assert "mixforget.results" in graph["mixforget.theory"]
    assert "mixforget.theory" in graph["mixforget.plot"]
    assert "mixforget._plotting" in graph["mixforget.results"]
    assert "mixforget.reference._engine" in graph["mixforget.reference"]
    assert "mixforget.objectives" in graph["mixforget.reference.forward_kl"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_level_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "module-level import cycle: " + " -> ".join(cycle)
