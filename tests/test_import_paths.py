"""Every name has one import path, and the package has no import circle (ARCHITECTURE.md, style 6).

Read from the sources' syntax trees, so the checks see what a newcomer reads:

- a module that is not a package ``__init__`` lists in ``__all__`` only names it defines
  (no re-export facades), and has no module-level ``__getattr__`` shim;
- inside ``src/sedma``, ``from sedma.X import N`` names the module that defines ``N`` (a
  package ``__init__`` may gather its own modules' names for users, but code in the
  package never imports through one, so each name's home is one module);
- the graph of module-level imports between sedma's modules has no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "sedma"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {
        _module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(ROOT.rglob("*.py"))
    }


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _top_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """Module-level statements, looking into ``if``/``try`` blocks but not ``TYPE_CHECKING``."""
    stack = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If):
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                continue
            stack.extend(reversed(node.body + node.orelse))
        elif isinstance(node, ast.Try):
            stack.extend(reversed(node.body + node.orelse + node.finalbody))
            for h in node.handlers:
                stack.extend(reversed(h.body))
        else:
            yield node


def _defined(tree: ast.Module) -> set[str]:
    """Names a module binds itself (def, class, assignment), not by importing."""
    out: set[str] = set()
    for node in _top_level(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
    return out


def _all(tree: ast.Module) -> list[str]:
    for node in _top_level(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            assert isinstance(node.value, ast.List | ast.Tuple)
            return [ast.literal_eval(e) for e in node.value.elts]
    return []


def _imports(
    name: str, path: Path, tree: ast.Module, *, all_levels: bool
) -> Iterator[tuple[str, str | None]]:
    """(module, imported name or None) for each sedma import; relative ones resolved."""
    nodes = ast.walk(tree) if all_levels else _top_level(tree)
    package = name if _is_package(path) else name.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "sedma":
                    yield a.name, None
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, mod] if mod else base)
            if mod.split(".")[0] != "sedma":
                continue
            for a in node.names:
                yield mod, a.name


def test_no_module_re_exports_a_name_it_does_not_define() -> None:
    bad = []
    for name, (path, tree) in _modules().items():
        if _is_package(path):
            continue
        missing = set(_all(tree)) - _defined(tree)
        bad += [f"{name}.__all__ lists {n!r}, defined elsewhere" for n in sorted(missing)]
        if "__getattr__" in _defined(tree):
            bad.append(f"{name} has a module-level __getattr__ (an import shim)")
    assert not bad, "\n".join(bad)


def test_sedma_code_imports_each_name_from_the_module_that_defines_it() -> None:
    modules = _modules()
    bad = []
    for name, (path, tree) in modules.items():
        if name == "sedma":
            continue  # the curated public API gathers names from their homes
        for mod, imported in _imports(name, path, tree, all_levels=True):
            if imported is None or mod not in modules:
                continue
            target_path, target = modules[mod]
            if f"{mod}.{imported}" in modules or (target_path.parent / f"{imported}.pyi").exists():
                continue  # a submodule (or a compiled one, with its stub)
            if _is_package(target_path):
                # a package __init__ gathers its modules' names for users; code inside the
                # package itself imports from the module that defines the name
                if name.startswith(mod + ".") or imported not in _defined(target):
                    bad.append(f"{name}: from {mod} import {imported} (import it from its home)")
            elif imported not in _defined(target):
                bad.append(f"{name}: from {mod} import {imported} ({mod} does not define it)")
    assert not bad, "\n".join(bad)


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, (path, tree) in modules.items():
        # every import counts, in functions and under TYPE_CHECKING too: a deferred import
        # hides a circle from the interpreter, not from the reader
        for mod, imported in _imports(name, path, tree, all_levels=True):
            target = f"{mod}.{imported}" if imported and f"{mod}.{imported}" in modules else mod
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_modules_import_each_other_without_circles() -> None:
    # A package __init__ importing its own modules is how it gathers their names; a module
    # importing a sibling goes to the sibling itself, so those edges never close a circle.
    graph = {
        m: {t for t in deps if not (t.startswith(m + ".") and m != "sedma")}
        for m, deps in _import_graph().items()
    }
    graph = {m: {t for t in deps if t != "sedma"} for m, deps in graph.items()}
    assert _cycles(graph) == []
