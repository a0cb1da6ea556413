"""No package cycles in ``spark_trainer``.

The unit is a package (``spark_trainer.jobs``, ``spark_trainer.runtime``, …; a top-level
module such as ``context`` or ``deps`` is a unit of its own), with one layering rule: a
package's HTTP modules (its routers and streams) form a unit above everything else, since
they take the app's wiring (``context``, ``deps``) that is built from the packages'
services. Every import counts, ``TYPE_CHECKING`` ones included. Modules must not import
each other in a cycle either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import spark_trainer

ROOT = Path(spark_trainer.__file__).parent
PACKAGE = "spark_trainer"
HTTP_MODULES = {"endpoints", "streams", "subscription"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The ``spark_trainer`` modules ``module`` imports (a name imported from a package
    counts as that package unless it is a module of its own)."""
    names: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    known = set(known)
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            found.add(name)
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return PACKAGE
    if len(parts) > 2 and parts[-1] in HTTP_MODULES:
        return f"{parts[1]} (http)"
    return parts[1]


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
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
                    work.append((child, iter(sorted(graph.get(child, ())))))
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


def _graphs() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[tuple[str, str], str]]:
    modules = _modules()
    by_module: dict[str, set[str]] = {}
    by_unit: dict[str, set[str]] = {}
    example: dict[tuple[str, str], str] = {}
    for module, path in modules.items():
        targets = _imports(module, path, modules)
        by_module[module] = targets
        for target in targets:
            edge = (_unit(module), _unit(target))
            if edge[0] != edge[1]:
                by_unit.setdefault(edge[0], set()).add(edge[1])
                example.setdefault(edge, f"{module} imports {target}")
    return by_module, by_unit, example


def test_no_module_imports_itself_through_others() -> None:
    by_module, _, _ = _graphs()
    assert _cycles(by_module) == []


def test_no_package_cycles() -> None:
    _, by_unit, example = _graphs()
    cycles = _cycles(by_unit)
    explained = [
        [example[(a, b)] for a in cycle for b in cycle if (a, b) in example] for cycle in cycles
    ]
    assert cycles == [], explained


def test_the_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
