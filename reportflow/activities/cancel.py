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

log = logging.getLogger(__name__)

# The Workflow Update the API sends; its validator's refusal (type and sentence).
CANCEL_UPDATE = "cancel"
TOO_LATE_TO_CANCEL = "TooLateToCancel"
TOO_LATE_TO_CANCEL_MESSAGE = (
    "the email is already being sent, so it is too late to cancel; the report will complete"
)


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
