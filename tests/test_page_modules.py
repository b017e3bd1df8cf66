"""The page's ES modules import each other without a circle.

app.js is the top; report.js is the only module below it that knows recent.js,
stream.js and view.js, which take what they call back as callbacks. A circle
between modules is legal JavaScript but makes the load order matter and the
modules impossible to read alone, so this test reads the `import … from "./x.js"`
statements of every static JS file and fails on any cycle.
"""

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "reportflow" / "api" / "static"

# `import … from "./x.js"`, `import "./x.js"` and `export … from "./x.js"`, over several
# lines too; only relative specifiers name the page's own modules.
IMPORT = re.compile(
    r"""^\s*(?:import|export)\s*(?:[^;'"]*?\bfrom\s*)?["'](\./[^"']+)["']""",
    re.MULTILINE | re.DOTALL,
)
DYNAMIC = re.compile(r"""\bimport\s*\(\s*["'](\./[^"']+)["']""")


def imports_of(source: str) -> set[str]:
    """The static files a module imports, by file name."""
    found = IMPORT.findall(source) + DYNAMIC.findall(source)
    return {spec.removeprefix("./") for spec in found}


def module_graph(folder: Path) -> dict[str, set[str]]:
    return {path.name: imports_of(path.read_text()) for path in sorted(folder.glob("*.js"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, set())):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_parser_reads_single_and_multi_line_imports() -> None:
    source = """
import { a } from "./a.js";
import {
  b,
  c,
} from './b.js';
import "./side.js";
export { d } from "./d.js";
const later = () => import("./lazy.js");
import { other } from "https://example.com/x.js";
export function notAnImport() { return "./x.js"; }
"""
    assert imports_of(source) == {"a.js", "b.js", "side.js", "d.js", "lazy.js"}


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a.js": {"b.js"}, "b.js": {"c.js"}, "c.js": set()}) is None
    cycle = find_cycle({"a.js": {"b.js"}, "b.js": {"c.js"}, "c.js": {"a.js"}})
    assert cycle == ["a.js", "b.js", "c.js", "a.js"]
    assert find_cycle({"x.js": {"x.js"}}) == ["x.js", "x.js"]


def test_the_page_modules_have_no_import_circle() -> None:
    graph = module_graph(STATIC)
    # The graph was really read: the entry point and report.js import their parts.
    assert {"report.js", "recent.js", "schedules.js"} <= graph["app.js"]
    assert {"recent.js", "stream.js", "view.js"} <= graph["report.js"]
    missing = {(m, i) for m, deps in graph.items() for i in deps if i not in graph}
    assert not missing, f"imports of files that are not there: {sorted(missing)}"
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " → ".join(cycle or [])


@pytest.mark.parametrize("module", ["recent.js", "stream.js", "view.js"])
def test_the_report_parts_do_not_know_the_report(module: str) -> None:
    # They take callbacks from report.js / app.js instead of importing them.
    graph = module_graph(STATIC)
    assert not graph[module] & {"app.js", "report.js", "recent.js", "stream.js"} - {module}
