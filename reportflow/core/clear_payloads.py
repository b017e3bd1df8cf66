"""Workers outside `reportflow dev` refuse starts, signals and updates written in clear.

Anyone who reaches the Temporal frontend can start `GenerateReport` or signal
`add_recipient` without the keyring; only the encryption proves a payload came
from reportflow (the API, a schedule, or ops through the codec endpoint). What
the SDK writes itself stays in clear (a cancelled activity's details, say), so
the codec cannot refuse by encoding alone, and raising there would fail the
whole workflow task, which Temporal retries without end: a forged signal would
wedge the run it targets.

So the worker's codec tags each payload it decrypted, and `refuse_clear`
(run by the worker's workflow runner on each activation) looks only at what
an outsider can write: a start's arguments, a signal's or an update's input.
An untagged payload there is swapped for a marker whose conversion raises a
non-retryable `ApplicationError`, and the SDK does the rest: a start in clear
fails its run before any step (nobody is emailed), a signal in clear is
dropped and logged while the run goes on, an update in clear is rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from temporalio.api.common.v1 import Payload
from temporalio.bridge.proto.workflow_activation import WorkflowActivation

from reportflow.core.codec import DECRYPTED, refused

log = logging.getLogger(__name__)


def _outsider_writable(act: WorkflowActivation) -> Iterable[Sequence[Payload]]:
    for job in act.jobs:
        if job.HasField("initialize_workflow"):
            yield job.initialize_workflow.arguments
        elif job.HasField("signal_workflow"):
            yield job.signal_workflow.input
        elif job.HasField("do_update"):
            yield job.do_update.input


def refuse_clear(act: WorkflowActivation) -> int:
    """Swap each payload of `act` an outsider could have written in clear for the
    refusal marker, in place; returns how many were refused."""
    count = 0
    for payloads in _outsider_writable(act):
        for payload in payloads:
            if DECRYPTED not in payload.metadata:
                payload.CopyFrom(refused(payload))
                count += 1
    if count:
        log.warning(
            "refused %d payload(s) written in clear (not with PAYLOAD_ENCRYPTION_KEYS)",
            count,
            extra={"report_id": _workflow_id(act), "run_id": act.run_id},
        )
    return count


def _workflow_id(act: WorkflowActivation) -> str | None:
    for job in act.jobs:
        if job.HasField("initialize_workflow"):
            return job.initialize_workflow.workflow_id
    return None
