"""The patch rule (reportflow/workflows/patches.py): every patch is registered, and
none outlives its window: once old runs are gone, the patch is removed."""

from __future__ import annotations

import ast
from datetime import date, timedelta
from pathlib import Path

import reportflow
from reportflow.workflows.patches import PATCH_WINDOW_DAYS, PATCHES

SOURCES = Path(reportflow.__file__).parent


def _patch_calls(root: Path = SOURCES) -> list[tuple[Path, int, str, str | None]]:
    """Every call of `patched`/`deprecate_patch` in the package: where, which
    function, and its ID when it is a literal or a module-level constant."""
    calls = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name not in {"patched", "deprecate_patch"}:
                continue
            qualified = ast.unparse(func)
            arg = node.args[0] if node.args else None
            patch_id = None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                patch_id = arg.value
            elif isinstance(arg, ast.Name):
                patch_id = constants.get(arg.id)
            calls.append((path.relative_to(root), node.lineno, qualified, patch_id))
    return calls


def test_every_patch_call_goes_through_the_registry() -> None:
    calls = [c for c in _patch_calls() if c[0] != Path("workflows/patches.py")]
    direct = [c for c in calls if c[2].startswith("workflow.")]
    assert not direct, f"call reportflow.workflows.patches.patched instead: {direct}"
    unknown = [c for c in calls if c[3] is None or c[3] not in PATCHES]
    assert not unknown, f"patch IDs not registered (or not a literal/constant): {unknown}"


def test_no_patch_outlives_its_window() -> None:
    oldest = date.today() - timedelta(days=PATCH_WINDOW_DAYS)
    stale = {patch_id: added for patch_id, added in PATCHES.items() if added < oldest}
    assert not stale, (
        f"patches older than {PATCH_WINDOW_DAYS} days: old runs are gone, remove them "
        f"(the `if`, the old branch, the entry): {stale}"
    )


def test_registered_patches_are_used() -> None:
    used = {c[3] for c in _patch_calls()}
    assert set(PATCHES) <= used, f"registered but never called: {set(PATCHES) - used}"


def test_the_walk_finds_a_direct_call(tmp_path: Path) -> None:
    """As the code before Worker Versioning had them: `workflow.patched(CONSTANT)`."""
    (tmp_path / "wf.py").write_text(
        "OLD = \"truthful-cancel\"\ndef f():\n    return workflow.patched(OLD) or patched('x')\n"
    )
    found = {(c[2], c[3]) for c in _patch_calls(tmp_path)}
    assert found == {("workflow.patched", "truthful-cancel"), ("patched", "x")}
