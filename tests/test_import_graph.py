"""The package's modules import each other without cycles, counting every import: those at
module level and those inside functions, methods and ``if TYPE_CHECKING:`` blocks. A cycle
makes the import order matter and is usually hidden by moving an import into a function body,
so a function-level import of a package module counts like any other. Lazy imports of
optional third-party packages (matplotlib, pandas, tqdm) are not package modules and do not
appear in the graph."""

from __future__ import annotations

import ast
from pathlib import Path

import mixforget

PACKAGE_DIR = Path(mixforget.__file__).parent
PACKAGE = "mixforget"


def module_files() -> dict[str, Path]:
    """Dotted name → file of every module of the package (``pkg.sub`` for ``sub/__init__``);
    a compiled extension counts by its ``.pyi`` stub (``mixforget._core``)."""
    names = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi") or (
            path.suffix == ".pyi" and path.with_suffix(".py").exists()
        ):
            continue
        parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _absolute_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module that ``from <base> import ...`` names, relative levels resolved
    against ``module`` (a package's ``__init__`` is its own anchor)."""
    if not node.level:
        return node.module or ""
    anchor = module.split(".")
    if not is_package:
        anchor.pop()
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute dotted names that any import statement of ``tree`` names (the whole tree is
    walked: function bodies included). ``import a.b`` names ``a.b``; ``from a import b``
    names ``a.b`` (a submodule, or an attribute of ``a``); ``from a import *`` names ``a``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute_base(node, module, is_package)
            for alias in node.names:
                names.add(base if alias.name == "*" else f"{base}.{alias.name}")
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports. A name that is not a module (a function, a
    class, a name a package re-exports from its ``__init__``) resolves to the module that
    holds it. Importing a submodule also runs its parent packages, so they count too, except
    the importer's own parent packages: they are already running when it runs, and ``from .
    import sibling`` needs only the sibling. An importer's parent package does count when it
    is used for its attributes (``import mixforget as mf`` or ``from . import TwoMode`` inside
    a function: the classic way to hide a cycle)."""
    modules = module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target in imported_names(tree, name, path.name == "__init__.py"):
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue  # third-party or standard library
            holder = target
            while holder not in modules:
                holder = holder.rpartition(".")[0]  # attribute of a module: the module
            if holder != name:
                graph[name].add(holder)  # the module itself, even an ancestor of the importer
            parent = holder.rpartition(".")[0]
            while parent:
                if parent != name and not name.startswith(parent + "."):
                    graph[name].add(parent)
                parent = parent.rpartition(".")[0]
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one node (each a cycle
    or a knot of cycles), sorted; Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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
    return sorted(found)


def test_graph_sees_the_package_imports():
    # the parser must resolve relative imports, or an empty graph would pass trivially
    graph = import_graph()
    assert "mixforget._kernels" in graph["mixforget.mixture"]
    assert "mixforget._problem" in graph["mixforget.kernels"]
    assert "mixforget._core" in graph["mixforget.engine._rust"]  # the extension, by its stub
    assert "mixforget.results" in graph["mixforget.theory.starvation"]
    # a package's __init__ re-exporting its submodules imports them
    assert "mixforget.theory.starvation" in graph["mixforget.theory"]
    assert "mixforget.sweeps.run" in graph["mixforget.sweeps"]
    # a name re-exported by a package resolves to the package (which imports the rest)
    assert "mixforget.theory" in graph["mixforget.studies.starvation_replay"]
    assert "mixforget.theory" in graph["mixforget._starvation_plot"]
    assert "mixforget._starvation_plot" in graph["mixforget.plot"]
    assert "mixforget._plotting" in graph["mixforget.results"]
    assert "mixforget.reference._engine" in graph["mixforget.reference"]
    assert "mixforget.objectives" in graph["mixforget.reference.forward_kl"]
    # a function-level "from .. import __version__" is an edge to the package itself
    assert "mixforget" in graph["mixforget.cli.main"]
    assert "mixforget.bench" in graph["mixforget.cli.bench_command"]
    # third-party imports (numpy everywhere, matplotlib lazily) are not nodes
    assert all(target.startswith(PACKAGE) for targets in graph.values() for target in targets)


def test_function_level_and_reexported_imports_count():
    source = (
        "from . import a\n"
        "from .pkg import exported\n"
        "def f():\n"
        "    from .b import g\n"
        "    import matplotlib.pyplot\n"
        "    return g\n"
    )
    names = imported_names(ast.parse(source), "mixforget.mod", is_package=False)
    assert {"mixforget.a", "mixforget.pkg.exported", "mixforget.b.g"} <= names
    assert "mixforget" not in names  # "from . import a" needs the submodule a only
    assert "matplotlib.pyplot" in names  # seen, then dropped by import_graph as third-party
    # a relative import inside a package's __init__ is anchored at the package itself
    inner = imported_names(ast.parse("from .x import y\n"), "mixforget.pkg", is_package=True)
    assert "mixforget.pkg.x.y" in inner


def test_cycle_finder_finds_cycles():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    cycles = strongly_connected(import_graph())
    assert not cycles, "import cycles (function-level imports included): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )
