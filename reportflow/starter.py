"""Starting GenerateReport: the one place that knows how a report run begins.

Used by `POST /reports`, the admin redrive and `reportflow dlq redrive`, so a
redriven report carries the same memo, search attribute and summary as a new one.
"""

from __future__ import annotations

import logging
from datetime import date

from temporalio.client import Client
from temporalio.common import (
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


def report_id_for(user_id: str, start: date, end: date) -> str:
    """Deterministic: the same user and range always name the same report."""
    return f"report-{user_id}-{start.isoformat()}-{end.isoformat()}"


async def start_report(
    client: Client,
    settings: Settings,
    *,
    user_id: str,
    start: date,
    end: date,
    regenerate: bool = False,
    recipients: list[str] | None = None,
) -> tuple[str, bool]:
    """Start the report's workflow unless one is open or completed; (report ID, started?).

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
        )
    except WorkflowAlreadyStartedError:
        log.info("report already completed", extra={"report_id": report_id})
        return report_id, False
    log.info(
        "report run started or joined",
        extra={"report_id": report_id, "user_id": user_id, "run_id": handle.result_run_id},
    )
    return report_id, True
