"""The import graph of reportflow/: layers only point down, and no module circle.

Every module under reportflow/ is parsed (never imported) and each `import` and
`from … import` of a reportflow module is an arrow, wherever it stands: at the
top, inside a function, under `if TYPE_CHECKING:`. `from reportflow.x import y`
points at the module `reportflow.x.y` when that is a module, else at
`reportflow.x`. docs/layout.md has the same table in words.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reportflow"

# Lowest first. A module may import its own layer and the layers below it.
# Each entry is a module or a package (the package and everything under it).
LAYERS: list[tuple[str, list[str]]] = [
    ("contract", ["reportflow", "reportflow.models", "reportflow.contract", "reportflow.client"]),
    ("core", ["reportflow.core", "reportflow.migrations"]),
    ("kinds", ["reportflow.report", "reportflow.kinds"]),
    ("service", ["reportflow.service", "reportflow.seed", "reportflow.smtp_sink"]),
    ("activities", ["reportflow.activities"]),
    ("workflows", ["reportflow.workflows"]),
    (
        "processes",
        [
            "reportflow.api",
            "reportflow.worker",
            "reportflow.local_render",
            "reportflow.browser_setup",
        ],
    ),
    ("dev", ["reportflow.dev"]),
    ("cli", ["reportflow.cli"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The reportflow module `name` lands in (the nearest enclosing one that exists)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, path: Path) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` points at the module; `from mod import name` at mod.
            names = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name == "reportflow" or name.startswith("reportflow."):
                target = _resolve(name)
                if target is not None and target != module:
                    yield target


def import_graph() -> dict[str, set[str]]:
    return {module: set(_targets(module, path)) for module, path in MODULES.items()}


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None  # (length of the matching prefix, layer)
    for rank, (_, members) in enumerate(LAYERS):
        for member in members:
            inside = module == member or module.startswith(member + ".")
            if inside and (best is None or len(member) > best[0]):
                best = (len(member), rank)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/layout.md"
    return best[1]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    # A lazy import inside a function is an arrow too.
    assert "reportflow.local_render" in graph["reportflow.cli.reports"]
    # `from reportflow import migrations` points at the package's module.
    assert "reportflow.migrations" in graph["reportflow.core.db"]
    assert "reportflow.core.db" in graph["reportflow.migrations.env"]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_imports_only_point_down_the_layers() -> None:
    up = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not up, "imports pointing up a layer:\n" + "\n".join(up)


def test_no_import_circle() -> None:
    assert strongly_connected(import_graph()) == []


def test_tarjan_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_the_named_arrows_are_gone() -> None:
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("reportflow.service"):
            assert not any(t.startswith("reportflow.api") for t in targets), module
            assert not any(t.startswith("reportflow.activities") for t in targets), module
        if module.startswith("reportflow.core"):
            assert not any(t.startswith("reportflow.activities") for t in targets), module
    assert "reportflow.api.downloads" not in graph["reportflow.activities.email_file"]
    assert "reportflow.api.schemas" not in graph["reportflow.cli.reports"]
