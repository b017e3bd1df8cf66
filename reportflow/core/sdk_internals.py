"""The Temporal SDK's private names reportflow cannot avoid, in one place.

`temporalio.worker.WorkflowRunner` and `WorkflowInstance` are public, but their
abstract methods are annotated with two private types: `prepare_workflow` takes a
`temporalio.workflow._Definition` and the payload-context methods take a
`temporalio.worker._command_aware_visitor.CommandInfo`. `core/workflow_runner.py`
implements that interface, so it names them, for its annotations only: nothing
here is imported at run time. temporalio is pinned exactly in pyproject.toml,
and tests/test_sdk_internals.py fails when an upgrade moves or reshapes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from temporalio.worker._command_aware_visitor import CommandInfo as CommandInfo
    from temporalio.workflow import _Definition as WorkflowDefinition

    __all__ = ["CommandInfo", "WorkflowDefinition"]

# Where the names live, for the test that checks an SDK upgrade still has them.
PRIVATE_NAMES: dict[str, tuple[str, str]] = {
    "CommandInfo": ("temporalio.worker._command_aware_visitor", "CommandInfo"),
    "WorkflowDefinition": ("temporalio.workflow", "_Definition"),
}
