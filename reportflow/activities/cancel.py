"""The `cancel` Workflow Update's second half: record a cancel request on the run.

A workflow cannot end itself as CANCELLED: the SDK closes a run as cancelled
only after Temporal delivered a cancel request to it, and the server refuses a
run's request to cancel itself (ExternalWorkflowExecutionNotFound). So the
update handler, once its validator has accepted the cancel, runs this as a local
activity: the worker's own client asks Temporal to cancel the run, exactly what
`temporal workflow cancel` does, and the run ends through the same path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

# The update's names live in models (the service sends the update, the workflow
# answers it); re-exported for the workflow that imports them from here.
from reportflow.models import CANCEL_UPDATE, TOO_LATE_TO_CANCEL, TOO_LATE_TO_CANCEL_MESSAGE

__all__ = [
    "CANCEL_UPDATE",
    "TOO_LATE_TO_CANCEL",
    "TOO_LATE_TO_CANCEL_MESSAGE",
    "CancelRunInput",
    "request_cancel",
]

log = logging.getLogger(__name__)


@dataclass
class CancelRunInput:
    report_id: str
    run_id: str


@activity.defn(name="request_cancel")
async def request_cancel(input: CancelRunInput) -> None:
    handle = activity.client().get_workflow_handle(input.report_id, run_id=input.run_id)
    try:
        await handle.cancel()
    except RPCError as err:
        # The run closed meanwhile: there is nothing left to cancel.
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    log.info("cancel recorded for the update", extra={"report_id": input.report_id})
