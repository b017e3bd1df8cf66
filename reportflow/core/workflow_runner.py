"""The workflow sandbox, without a trip into it for every payload the codec sees.

Before the worker encrypts a workflow task's payloads (and decrypts an
activation's), the SDK asks the workflow instance which serialization context
each payload belongs to (the workflow, or the activity a command schedules), so a
codec that cares can tell them apart. In the sandbox each question compiles and
runs a snippet of code inside it, two per payload: profiled during a burst of
reports that was about a sixth of the worker's own Python, more than the
workflow's code itself.

reportflow's converter gives every context the same answer: the encryption codec
and the JSON converter ignore it, and there is no external payload storage. So
`ContextFreeRunner` answers "no context" outside the sandbox, and checks at
start that the converter really is context-free, so a later context-aware codec
cannot be silently fed the wrong one. The workflow's code itself still runs
sandboxed, with every determinism check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import temporalio.workflow
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import (
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    WorkflowSerializationContext,
)
from temporalio.worker import (
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from reportflow.core.clear_payloads import refuse_clear

if TYPE_CHECKING:
    # The runner interface's own annotations name private SDK types: see sdk_internals.
    from reportflow.core.sdk_internals import CommandInfo, WorkflowDefinition


def context_free(converter: DataConverter) -> bool:
    """Whether `converter` encodes every payload the same whatever its context."""
    probe = WorkflowSerializationContext(namespace="probe", workflow_id="probe")
    return converter.external_storage is None and converter.with_context(probe) is converter


class ContextFreeRunner(WorkflowRunner):
    """The sandboxed runner, for a data converter that ignores serialization context."""

    def __init__(self, converter: DataConverter, *, refuse_clear: bool = False) -> None:
        """`refuse_clear`: starts, signals and updates written in clear are refused
        (reportflow.core.clear_payloads; the codec must mark what it decrypted)."""
        if not context_free(converter):
            raise ValueError(
                "this data converter uses serialization contexts or external storage; "
                "run workflows with the SDK's SandboxedWorkflowRunner instead"
            )
        self._inner = SandboxedWorkflowRunner()
        self._refuse_clear = refuse_clear

    def prepare_workflow(self, defn: WorkflowDefinition) -> None:
        self._inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _ContextFreeInstance(self._inner.create_instance(det), self._refuse_clear)

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self._inner.set_worker_level_failure_exception_types(types)


class _ContextFreeInstance(WorkflowInstance):
    def __init__(self, inner: WorkflowInstance, refuse_clear: bool) -> None:
        self._inner = inner
        self._refuse_clear = refuse_clear

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        if self._refuse_clear:
            refuse_clear(act)
        return self._inner.activate(act)

    def get_serialization_context(
        self, command_info: CommandInfo | None
    ) -> SerializationContext | None:
        return None

    def get_external_store_context(
        self, command_info: CommandInfo | None
    ) -> StorageDriverStoreContext:
        return StorageDriverStoreContext()

    def get_info(self) -> temporalio.workflow.Info:
        return self._inner.get_info()

    def get_thread_id(self) -> int | None:
        return self._inner.get_thread_id()
