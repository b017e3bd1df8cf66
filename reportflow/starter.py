"""Starting GenerateReport: the one place that knows how a report run begins.

Used by `POST /reports`, the admin redrive and `reportflow dlq redrive`, so a
redriven report carries the same memo, search attribute and summary as a new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from temporalio.client import Client
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from reportflow.config import Settings
from reportflow.models import WORKFLOW_TYPE, GenerateReportInput
from reportflow.temporal import USER_ID_KEY

log = logging.getLogger(__name__)

# Temporal's priority keys: lower runs first (1-5, default 3). A report someone
# is waiting for (the page, the API, `reportflow request`) outranks scheduled
# and bulk ones; among equals, each user is a fairness key, so one user's 300
# reports do not hold up another user's one.
INTERACTIVE = 1
BACKGROUND = 3


def priority_for(user_id: str, priority_key: int) -> Priority:
    # The fairness key is at most 64 bytes; the activities inherit both.
    return Priority(
        priority_key=priority_key, fairness_key=user_id.encode()[:64].decode(errors="ignore")
    )


def report_id_for(user_id: str, start: date, end: date) -> str:
    """Deterministic: the same user and range always name the same report."""
    return f"report-{user_id}-{start.isoformat()}-{end.isoformat()}"


@dataclass(frozen=True)
class ReportStart:
    report_id: str
    # The run this start made, when it made one (None: an open or completed run stays).
    new_run_id: str | None
    # False only when a completed run keeps the ID.
    joined_or_started: bool


async def start_report(
    client: Client,
    settings: Settings,
    *,
    user_id: str,
    start: date,
    end: date,
    regenerate: bool = False,
    recipients: list[str] | None = None,
    priority_key: int = INTERACTIVE,
) -> tuple[str, bool]:
    """Start the report's workflow unless one is open or completed; (report ID, started?).

    "started" is also true when an open run was joined."""
    begun = await start_report_run(
        client,
        settings,
        user_id=user_id,
        start=start,
        end=end,
        regenerate=regenerate,
        recipients=recipients,
        priority_key=priority_key,
    )
    return begun.report_id, begun.joined_or_started


async def start_report_run(
    client: Client,
    settings: Settings,
    *,
    user_id: str,
    start: date,
    end: date,
    regenerate: bool = False,
    recipients: list[str] | None = None,
    priority_key: int = INTERACTIVE,
) -> ReportStart:
    """Start the report's workflow unless one is open or completed.

    Four clicks, one run: an open run is returned as it is (USE_EXISTING); a
    completed one is kept (its ID may not be reused); a failed, timed-out,
    terminated or cancelled one starts afresh. `regenerate` lets a completed
    report run again, still never beside an open run.
    """
    report_id = report_id_for(user_id, start, end)
    try:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            GenerateReportInput(
                report_id=report_id,
                user_id=user_id,
                start=start.isoformat(),
                end=end.isoformat(),
                retry=settings.retry,
                timeouts=settings.timeouts,
                recipients=list(recipients or []),
            ),
            id=report_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=(
                WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if regenerate
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
            ),
            memo={
                "user_id": user_id,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "stage": "queued",
                "progress": 0,
                **({"recipients": list(recipients)} if recipients else {}),
            },
            search_attributes=TypedSearchAttributes([SearchAttributePair(USER_ID_KEY, user_id)]),
            static_summary=f"Report for user {user_id}: {start} to {end}",
            priority=priority_for(user_id, priority_key),
        )
    except WorkflowAlreadyStartedError:
        log.info("report already completed", extra={"report_id": report_id})
        return ReportStart(report_id, new_run_id=None, joined_or_started=False)
    # The server says whether it started a run or an open one was kept
    # (USE_EXISTING); the SDK keeps its answer on the handle. Unknown = kept,
    # and the caller describes the run.
    response = getattr(handle, "_start_workflow_response", None)
    started = bool(getattr(response, "started", False))
    log.info(
        "report run started" if started else "report run joined",
        extra={"report_id": report_id, "user_id": user_id, "run_id": handle.result_run_id},
    )
    return ReportStart(
        report_id,
        new_run_id=handle.result_run_id if started else None,
        joined_or_started=True,
    )
