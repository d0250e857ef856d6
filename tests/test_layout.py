"""The house's rules, read from the source: no import cycles, no room importing upward, a core
whose top level a newcomer can take in at a glance (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("emotion", "app", "training", "hub", "bench")
# What each room may import besides itself and third-party code.
MAY_IMPORT = {
    "emotion": set(),
    "training": {"emotion"},
    "hub": {"emotion"},
    "app": {"emotion", "training.demo"},
    "bench": {"emotion", "training"},
}
CORE_TOP_LEVEL_MAX = 10


def project_modules() -> dict[str, Path]:
    out = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, at its top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = project_modules()
    return {name: imported(path, known) - {name} for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for name, deps in graph.items():
        room = name.split(".")[0]
        for dep in deps:
            allowed = dep.split(".")[0] == room or any(
                dep == a or dep.startswith(a + ".") for a in MAY_IMPORT[room]
            )
            if not allowed:
                bad.append(f"{name} imports {dep}")
    return sorted(bad)


def test_no_module_is_part_of_an_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    # the control: the same check on a graph with a cycle and a self-contained branch
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_room_imports_upward():
    assert upward(import_graph()) == []


def test_the_upward_check_catches_one():
    assert upward({"bench.load": {"app.ui"}, "hub.push": {"emotion.model"}}) == ["bench.load imports app.ui"]


def test_the_core_top_level_is_small():
    top = sorted(p.name for p in (ROOT / "emotion").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= CORE_TOP_LEVEL_MAX, top
