"""The architecture, enforced: packages along the data path, no cycles, no upward import, small modules.

    pages, cli, bench -> runs, views -> explain -> fusion -> model -> data -> ingest -> store
                      -> base (errors, schema, _checks, progress, access)

A module may import modules of its own package and of packages below it; ``runs`` and
``views`` share a level and do not import each other. ``core/__init__.py`` is the public
façade (it resolves its names lazily) and is the one exception. Imports inside functions
count like any other: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core"
BASE = ("errors", "schema", "_checks", "progress", "access")  # one layer: the exception tree, names, shared checks
LEVELS: dict[str, int] = {
    "base": 0,
    "store": 1,
    "ingest": 2,
    "data": 3,
    "model": 4,
    "fusion": 5,
    "explain": 6,
    "runs": 7,
    "views": 7,
    "cli": 8,
}
MAX_MODULE_LINES = 300
MAX_SHARED_PAGE_LINES = 150


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports_of(path: Path) -> Iterator[str]:
    """Every ``core`` module ``path`` imports, at module level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "core")
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "core"
        ):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in MODULES else node.module


GRAPH: dict[str, set[str]] = {name: set(imports_of(path)) - {name} for name, path in MODULES.items()}


def package(module: str) -> str | None:
    """The layer a module belongs to: its package under ``core``, ``base`` for the base modules, None for ``core``."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return "base" if parts[1] in BASE else parts[1]


def test_every_core_module_belongs_to_a_known_layer() -> None:
    unknown = sorted({package(m) for m in MODULES} - set(LEVELS) - {None})
    assert not unknown, f"packages without a layer (add them to LEVELS and the README diagram): {unknown}"


def test_no_package_imports_a_package_above_it_or_beside_it() -> None:
    bad = []
    for module, targets in GRAPH.items():
        own = package(module)
        if own is None:  # core/__init__.py: the public façade
            continue
        for target in sorted(targets):
            other = package(target)
            if other is None:
                bad.append(f"{module} imports the façade core")
            elif other != own and LEVELS[other] >= LEVELS[own]:
                bad.append(f"{module} ({own}, level {LEVELS[own]}) imports {target} ({other}, level {LEVELS[other]})")
    assert not bad, "\n".join(bad)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_core() -> None:
    assert strongly_connected(GRAPH) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_in_core_is_over_300_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{MODULES[name].relative_to(REPO)} has {lines} lines"


def test_the_pages_shared_module_stays_small() -> None:
    lines = len((REPO / "pages" / "_shared.py").read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_SHARED_PAGE_LINES, f"pages/_shared.py has {lines} lines"


def test_core_never_imports_streamlit() -> None:
    """Every module of core imported in a fresh interpreter: streamlit stays out of ``sys.modules``."""
    names = sorted(m for m in MODULES if not m.endswith("__main__"))
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_pages_import_core_only_through_modules_that_exist() -> None:
    """Pages, the app and the bench scripts name real modules of core (no stale import path)."""
    missing = []
    for path in [REPO / "app.py", *sorted((REPO / "pages").glob("*.py")), *sorted((REPO / "bench").glob("*.py"))]:
        for target in imports_of(path):
            if target not in MODULES:
                missing.append(f"{path.relative_to(REPO)} imports {target}")
    assert not missing, "\n".join(missing)
