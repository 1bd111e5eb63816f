"""The package's modules import each other without cycles, counting every import statement:
module level, inside functions and methods, and under ``if TYPE_CHECKING:``. A cycle makes the
import order matter and tempts imports into function bodies to dodge it, so a lazy import of
a mixforget module is an edge like any other; lazy imports of optional third-party packages
(matplotlib, pandas, tqdm, …) are not mixforget modules and are ignored."""

from __future__ import annotations

import ast
from pathlib import Path

import mixforget

PACKAGE_DIR = Path(mixforget.__file__).parent
PACKAGE = "mixforget"


def _module_names(package_dir: Path = PACKAGE_DIR, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted name → file of every module of the package (``pkg.sub`` for ``sub/__init__``)."""
    names = {}
    for path in package_dir.rglob("*.py"):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _parents(name: str) -> list[str]:
    """``a.b.c`` → ``["a.b", "a"]``: the packages that importing ``a.b.c`` runs first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _resolve_base(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module named by ``from <base> import …`` written in ``importer``."""
    if not node.level:
        return node.module or ""
    anchor = importer.split(".")
    if not is_package:
        anchor.pop()  # a plain module's ``.`` is its package
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _owning_module(target: str, modules: dict[str, Path]) -> str:
    """``target`` itself when it is a module, else the module it is an attribute of."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target


def _imported_modules(node: ast.Import | ast.ImportFrom, importer: str, modules, is_package):
    """The package modules one import statement in ``importer`` reads, as (module, explicit).

    Explicit: the module whose attribute or submodule the statement reads; a name imported
    from a package's ``__init__`` (a re-export) reads that ``__init__``, which imports the
    modules it re-exports from, so the edge goes to the package and on from there. Implicit:
    the parent packages that importing a submodule runs first; they are skipped when they
    enclose the importer (already being imported), while an explicit read of an enclosing
    package's name is kept, since it reads a half-initialised module.
    """
    if isinstance(node, ast.Import):
        explicit = [_owning_module(alias.name, modules) for alias in node.names]
    else:
        base = _resolve_base(node, importer, is_package)
        explicit = []
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            explicit.append(submodule if submodule in modules else _owning_module(base, modules))
    found = []
    for target in explicit:
        if not target:
            continue  # not a mixforget module (stdlib, third party, the compiled _core)
        found.append((target, True))
        found.extend((parent, False) for parent in _parents(target))
    enclosing = set(_parents(importer))
    return [
        target
        for target, is_explicit in found
        if target in modules and target != importer and (is_explicit or target not in enclosing)
    ]


def import_graph(package_dir: Path = PACKAGE_DIR, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module → the package modules it imports anywhere in its file (every ``Import`` and
    ``ImportFrom`` node of its syntax tree, whatever block or function holds it)."""
    modules = _module_names(package_dir, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name].update(_imported_modules(node, name, modules, is_package))
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles' strongly connected components (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components, key=lambda c: (-len(c), c))


def find_cycle(graph: dict[str, set[str]], members: list[str] | None = None) -> list[str]:
    """One cycle of ``graph`` (within ``members`` when given) as nodes, first = last, or []."""
    allowed = set(members) if members is not None else set(graph)
    for start in sorted(allowed):
        parent: dict[str, str] = {}
        frontier = [start]
        while frontier:  # breadth first: the shortest cycle through ``start``
            following = []
            for node in frontier:
                for nxt in sorted(graph.get(node, ())):
                    if nxt not in allowed:
                        continue
                    if nxt == start:
                        path = [node]
                        while path[-1] != start:
                            path.append(parent[path[-1]])
                        return [start, *reversed(path[:-1]), start]
                    if nxt not in parent:
                        parent[nxt] = node
                        following.append(nxt)
            frontier = following
    return []


def describe_cycles(graph: dict[str, set[str]]) -> str:
    """One paragraph per cyclic component: its modules and one cycle through them."""
    lines = []
    for component in strongly_connected(graph):
        lines.append(f"{len(component)} modules in one cycle: {', '.join(component)}")
        lines.append("  e.g. " + " -> ".join(find_cycle(graph, component)))
    return "\n".join(lines)


def _graph_of(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for relative, text in files.items():
        path = tmp_path / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return import_graph(tmp_path / "pkg", "pkg")


def test_graph_reads_imports_in_functions_and_resolves_relative_ones(tmp_path):
    graph = _graph_of(
        tmp_path,
        {
            "__init__.py": "from . import a\n",
            "a.py": "def f():\n    from .sub import g\n    import matplotlib\n",
            "sub/__init__.py": "from .impl import g\n",
            "sub/impl.py": "from .. import b\nfrom ..b import x\n",
            "sub/other.py": "from . import impl\n",
            "sub/reads_init.py": "from . import g\n",
            "b.py": "class C:\n    def m(self):\n        from pkg import a\n",
        },
    )
    assert graph["pkg"] == {"pkg.a"}
    # a name re-exported by a package's __init__ reads the __init__ (which imports impl)
    assert graph["pkg.a"] == {"pkg.sub"}
    assert graph["pkg.sub"] == {"pkg.sub.impl"}
    assert graph["pkg.sub.impl"] == {"pkg.b"}
    # a sibling submodule is not an import of the enclosing package …
    assert graph["pkg.sub.other"] == {"pkg.sub.impl"}
    # … but reading a name of the half-initialised enclosing package is
    assert graph["pkg.sub.reads_init"] == {"pkg.sub"}
    # an absolute import of the top package inside a method counts
    assert graph["pkg.b"] == {"pkg.a"}
    assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.impl"]]
    assert find_cycle(graph) == ["pkg.a", "pkg.sub", "pkg.sub.impl", "pkg.b", "pkg.a"]
    assert "4 modules in one cycle" in describe_cycles(graph)


def test_graph_sees_the_package_imports():
    # the parser must resolve the real package, or an empty graph would pass trivially
    graph = import_graph()
    assert "mixforget._kernels" in graph["mixforget.mixture"]
    assert "mixforget._problem" in graph["mixforget.kernels"]
    assert "mixforget.results" in graph["mixforget.theory"]
    assert "mixforget.theory" in graph["mixforget.plot"]
    assert "mixforget._plotting" in graph["mixforget.results"]
    assert "mixforget.reference._engine" in graph["mixforget.reference"]
    assert "mixforget.objectives" in graph["mixforget.reference.forward_kl"]
    assert "mixforget.sweeps" in graph["mixforget.cli"]  # imported inside a function


def test_no_import_cycle_anywhere_in_the_package():
    graph = import_graph()
    assert not strongly_connected(graph), "import cycles:\n" + describe_cycles(graph)
