"""The status document of a report (what `GET /reports/{id}` shows), read from Temporal alone.

`describe` works with every worker down: the execution status, the memo the
workflow keeps current (stage, progress, result, error) and the pending
activities (attempt, last failure, next retry) are all held by the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHistoryEventFilterType,
)
from temporalio.service import RPCError, RPCStatusCode

from reportflow.contract import (
    ErrorDoc,
    Links,
    ReportResultDoc,
    RetryDoc,
    Status,
    StatusDocument,
)
from reportflow.core.codec import readable_failure
from reportflow.core.config import Settings
from reportflow.models import DEFAULT_KIND, STAGES, WORKFLOW_TYPE
from reportflow.report.builtin_kinds import transactions_pdf
from reportflow.service.errors import retry_sentence, user_error
from reportflow.service.retention import pdf_expires_at

if TYPE_CHECKING:
    from reportflow.core.tokens import Caller

REPORT_ID = re.compile(
    r"^report-(?P<user>[A-Za-z0-9_.]{1,64})-(?P<start>\d{4}-\d{2}-\d{2})-(?P<end>\d{4}-\d{2}-\d{2})$"
)
# Another kind's report: report-<user>-<kind>-<hash of its canonical parameters>.
KIND_REPORT_ID = re.compile(
    r"^report-(?P<user>[A-Za-z0-9_.]{1,64})-(?P<kind>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)-[0-9a-f]{12}$"
)

# Temporal's execution status -> the status word of the contract, the one map:
# the status document, the listing filters, redrive and the queue counts use it.
# An open run is "running" here; the document tells "queued" from its stage.
STATUS_WORDS: dict[WorkflowExecutionStatus, Status] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}
_OPEN = {WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW}
_FINAL = {status: word for status, word in STATUS_WORDS.items() if status not in _OPEN}


def visibility_name(status: WorkflowExecutionStatus) -> str:
    """The status as list filters and counts spell it: TIMED_OUT -> TimedOut."""
    return "".join(part.capitalize() for part in status.name.split("_"))


def statuses_of(word: Status) -> list[WorkflowExecutionStatus]:
    """The execution statuses a status word covers (a continued-as-new run is closed:
    its chain's newest run is the one that counts)."""
    return [
        status
        for status, mapped in STATUS_WORDS.items()
        if mapped == word and status != WorkflowExecutionStatus.CONTINUED_AS_NEW
    ]


def status_filter(word: Status) -> str:
    """The visibility filter of a status word ("queued" is an open run too)."""
    names = [
        f"'{visibility_name(s)}'" for s in statuses_of("running" if word == "queued" else word)
    ]
    if len(names) == 1:
        return f"ExecutionStatus = {names[0]}"
    return f"ExecutionStatus IN ({', '.join(names)})"


class Execution(Protocol):
    """What a status document needs of a run: a described or listed execution,
    or one `POST /reports` has just started."""

    @property
    def id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def status(self) -> WorkflowExecutionStatus | None: ...
    @property
    def start_time(self) -> datetime: ...
    @property
    def close_time(self) -> datetime | None: ...


@dataclass(frozen=True)
class StartedExecution:
    """A run `POST /reports` has just started: its status is known without a describe."""

    id: str
    run_id: str
    namespace: str
    start_time: datetime
    status: WorkflowExecutionStatus | None = WorkflowExecutionStatus.RUNNING
    close_time: datetime | None = None


def owner_of(report_id: str) -> str | None:
    match = REPORT_ID.match(report_id) or KIND_REPORT_ID.match(report_id)
    return match["user"] if match else None


def may_see_owned(caller: Caller, owner: str | None) -> bool:
    """The ownership rule: a report is seen by its owner or by an admin."""
    return caller.is_admin or (caller.user_id is not None and owner == caller.user_id)


def may_see(caller: Caller, report_id: str) -> bool:
    return may_see_owned(caller, owner_of(report_id))


def _status(execution: WorkflowExecutionStatus | None, stage: str) -> Status:
    if execution in _FINAL:
        return _FINAL[execution]
    return "queued" if stage == "queued" else "running"


def _retry(pending: PendingActivityInfo | None) -> tuple[int, str | None, RetryDoc | None]:
    # Waiting for a slot is retried by design, not failing: `waiting` says so.
    if pending is None or pending.activity_type.name == "acquire_slot":
        return 1, None, None
    # The failure's text names hosts, ports and server replies: users get a sentence.
    failed = pending.HasField("last_failure") and bool(pending.last_failure.message)
    last_error = retry_sentence(pending.activity_type.name) if failed else None
    next_at = (
        pending.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)
        if pending.HasField("next_attempt_schedule_time")
        else None
    )
    retry = None
    if pending.attempt > 1 or last_error:
        retry = RetryDoc(
            activity=pending.activity_type.name,
            attempt=pending.attempt,
            maximum_attempts=pending.maximum_attempts,
            last_error=last_error,
            next_attempt_at=next_at,
        )
    return max(pending.attempt, 1), last_error, retry


def _waiting(pending: PendingActivityInfo | None, settings: Settings) -> str | None:
    """A sentence for a report held back on purpose (not failing)."""
    if pending is None:
        return None
    kind = pending.activity_type.name
    if kind == "acquire_slot":
        return (
            f"waiting for one of this user's running reports to finish "
            f"(at most {settings.max_running_reports_per_user} run at once)"
        )
    scheduled = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
    if kind == "send_email" and scheduled and pending.attempt <= 1:
        return (
            f"waiting for its turn to send: emails go out at most "
            f"{settings.email_rate_per_second:g} a second"
        )
    return None


def build_document(
    execution: Execution,
    memo: Mapping[str, Any],
    *,
    settings: Settings,
    pending: PendingActivityInfo | None = None,
    close_error: ErrorDoc | None = None,
) -> StatusDocument:
    report_id = execution.id
    stage = str(memo.get("stage", "queued"))
    status = _status(execution.status, stage)
    progress = int(memo.get("progress", STAGES.get(stage, 0)))
    if status == "completed":
        stage, progress = "done", 100
    attempt, last_error, retry = _retry(pending)
    error = None
    if status == "failed":
        raw = memo.get("error")
        kind = str(raw.get("type")) if isinstance(raw, dict) else None
        kind = kind or (close_error.type if close_error else "Unknown")
        told = user_error(kind)
        error = ErrorDoc(type=kind, code=told.code, message=told.message)
        last_error = told.message
    elif status == "cancelled":
        told = user_error("Cancelled")
        error = ErrorDoc(type="Cancelled", code=told.code, message=told.message)
    result = None
    raw_result = memo.get("result")
    if status == "completed" and isinstance(raw_result, dict):
        expires = (
            pdf_expires_at(execution.close_time, settings.report_retention_days)
            if execution.close_time
            else None
        )
        raw_result = {k: v for k, v in raw_result.items() if k != "key"}
        file_format = str(raw_result.get("format", "pdf"))
        result = ReportResultDoc(
            pdf_url=f"/reports/{report_id}/pdf" if file_format == "pdf" else None,
            file_url=f"/reports/{report_id}/file",
            pdf_expires_at=expires,
            pdf_expired=expires is not None and expires <= datetime.now(UTC),
            **raw_result,
        )
    base = f"/reports/{report_id}"
    updated = memo.get("updated_at")
    # The API's clock when it took the request (a run it started says so in its memo,
    # so the 202 and every read agree), else the run's start on Temporal's.
    created = memo.get("created_at")
    created_at = datetime.fromisoformat(created) if created else execution.start_time
    default_start, default_end = owner_start_end(report_id)
    kind = str(memo.get("kind") or DEFAULT_KIND)
    raw_params = memo.get("params")
    return StatusDocument(
        report_id=report_id,
        kind=kind,
        title=str(memo.get("title") or (transactions_pdf.title if kind == DEFAULT_KIND else kind)),
        params=raw_params if isinstance(raw_params, dict) else None,
        format=str(memo.get("format") or "pdf"),
        status=status,
        stage=stage,  # type: ignore[arg-type]
        progress=progress,
        attempt=attempt,
        last_error=last_error,
        start=_day(memo.get("start") or default_start),
        end=_day(memo.get("end") or default_end),
        created_at=created_at,
        updated_at=datetime.fromisoformat(updated) if updated else created_at,
        completed_at=execution.close_time,
        result=result,
        error=error,
        retry=retry if status in {"queued", "running"} else None,
        waiting=_waiting(pending, settings) if status in {"queued", "running"} else None,
        links=Links(
            self=base,
            events=f"{base}/events",
            pdf=f"{base}/pdf",
            file=f"{base}/file",
        ),
        run_id=execution.run_id,
    )


def owner_start_end(report_id: str) -> tuple[str | None, str | None]:
    """The range a transactions report's ID names (None for another kind's ID)."""
    match = REPORT_ID.match(report_id)
    return (match["start"], match["end"]) if match else (None, None)


def _day(value: object) -> date | None:
    return date.fromisoformat(str(value)) if value else None


async def _close_error(client: Client, report_id: str, run_id: str) -> ErrorDoc | None:
    """The reason of a run that ended without writing one (terminated, timed out)."""
    handle = client.get_workflow_handle(report_id, run_id=run_id)
    async for event in handle.fetch_history_events(
        event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
    ):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            reason = event.workflow_execution_terminated_event_attributes.reason
            return ErrorDoc(
                type="Terminated", code="terminated", message=reason or "terminated by an operator"
            )
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            return ErrorDoc(
                type="TimedOut", code="timed_out", message="the run exceeded its time limit"
            )
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            failure = await readable_failure(
                client.data_converter, event.workflow_execution_failed_event_attributes.failure
            )
            kind = failure.application_failure_info.type or "Failed"
            return ErrorDoc(type=kind, code=user_error(kind).code, message=failure.message)
    return None


@dataclass(frozen=True)
class Described:
    """One describe of a report, before any caller is checked against it."""

    doc: StatusDocument
    owner: str | None
    execution: Execution
    memo: Mapping[str, Any]
    history_length: int
    # When a pending activity's next attempt is due (nothing in history marks it).
    next_attempt_at: datetime | None
    activity_pending: bool

    def visible_to(self, caller: Caller) -> bool:
        return may_see_owned(caller, self.owner)


async def read_status(
    client: Client, report_id: str, *, settings: Settings, run_id: str | None = None
) -> Described | None:
    """Describe the report's latest run, or the run `run_id` (and read the close
    event of a run that failed without a recorded reason); None when no such
    report or run exists."""
    try:
        description: WorkflowExecutionDescription = await client.get_workflow_handle(
            report_id, run_id=run_id
        ).describe()
    except RPCError as err:
        if err.status in {RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT}:
            return None
        raise
    if description.workflow_type != WORKFLOW_TYPE:
        return None
    memo = await description.memo()
    pending = list(description.raw_description.pending_activities[:1])
    if pending and pending[0].HasField("last_failure"):
        # Failure messages are encrypted like payloads: decrypt a copy to show it.
        decrypted = PendingActivityInfo()
        decrypted.CopyFrom(pending[0])
        decrypted.last_failure.CopyFrom(
            await readable_failure(client.data_converter, decrypted.last_failure)
        )
        pending = [decrypted]
    close_error = None
    failed = description.status is not None and _FINAL.get(description.status) == "failed"
    if failed and not memo.get("error"):
        close_error = await _close_error(client, report_id, description.run_id)
    first = pending[0] if pending else None
    next_at = (
        first.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)
        if first is not None and first.HasField("next_attempt_schedule_time")
        else None
    )
    owner = memo.get("user_id")
    return Described(
        doc=build_document(
            description, memo, settings=settings, pending=first, close_error=close_error
        ),
        owner=str(owner) if owner is not None else None,
        execution=description,
        memo=memo,
        history_length=description.raw_description.workflow_execution_info.history_length,
        next_attempt_at=next_at,
        activity_pending=first is not None,
    )


async def describe_report(
    client: Client, report_id: str, *, caller: Caller, settings: Settings
) -> StatusDocument | None:
    """The report's status, or None when it does not exist or is not the caller's."""
    if not may_see(caller, report_id):
        return None
    described = await read_status(client, report_id, settings=settings)
    if described is None or not described.visible_to(caller):
        return None
    return described.doc
