"""The dead-letter queue: the failed reports, and the reports a filter picks for bulk action.

Shared by the admin API and `reportflow dlq` (which redrives each one with
`reports.redrive`); everything comes from Temporal, so it is true whichever API
or worker process asks. A filter becomes a Temporal visibility query (user,
since, any clause); the failure reason is read from each report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution as ProtoExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryReverseRequest,
)
from temporalio.client import Client, WorkflowExecution

from reportflow.core.temporal import USER_ID_KEY
from reportflow.models import DEFAULT_KIND, WORKFLOW_TYPE
from reportflow.service.reports import STATUS_FILTERS

FAILED_QUERY = f"WorkflowType = '{WORKFLOW_TYPE}' AND {STATUS_FILTERS['failed']}"


@dataclass
class FailedReport:
    report_id: str
    user_id: str | None
    reason: str
    message: str
    stage: str | None
    retry_state: str | None
    attempts: int
    failed_at: datetime | None
    kind: str = DEFAULT_KIND


# How far back from a failed run's end to look for its failing activity's last
# start (the stage's activity, then at most a cleanup and the close).
_TAIL_EVENTS = 50
_STAGE_ACTIVITIES = {"query", "render", "send_email"}


async def _attempts(client: Client, execution: WorkflowExecution) -> int:
    """Tries of the activity the run failed in: one reverse read of its history's tail."""
    response = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=ProtoExecution(workflow_id=execution.id, run_id=execution.run_id),
            maximum_page_size=_TAIL_EVENTS,
        )
    )
    activity_of: dict[int, str] = {}
    starts: list[tuple[int, int]] = []  # (scheduled event id, attempt), newest first
    for event in response.history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            activity_of[event.event_id] = attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            starts.append((started.scheduled_event_id, started.attempt))
    return next(
        (attempt for sid, attempt in starts if activity_of.get(sid) in _STAGE_ACTIVITIES), 0
    )


async def _failed_report(client: Client, execution: WorkflowExecution) -> FailedReport:
    memo: dict[str, Any] = dict(await execution.memo())
    error = memo.get("error") or {}
    if not error:
        status = execution.status
        reason = status.name.title().replace("_", "") if status else "Failed"
        error = {"type": reason, "message": f"the run was {reason.lower()} without a reason"}
    return FailedReport(
        report_id=execution.id,
        user_id=memo.get("user_id"),
        reason=str(error.get("type")),
        message=str(error.get("message")),
        stage=error.get("stage"),
        retry_state=error.get("retry_state"),
        attempts=await _attempts(client, execution),
        failed_at=execution.close_time,
        kind=str(memo.get("kind") or DEFAULT_KIND),
    )


async def _superseded(client: Client, page: list[WorkflowExecution]) -> set[tuple[str, str]]:
    """(report ID, run ID) of the listed runs that a later run of the same report
    replaced: one visibility listing of every run of the page's reports."""
    ids = sorted({e.id for e in page if "'" not in e.id})
    if not ids:
        return set()
    quoted = ", ".join(f"'{i}'" for i in ids)
    latest: dict[str, datetime] = {}
    async for run in client.list_workflows(
        f"WorkflowType = '{WORKFLOW_TYPE}' AND WorkflowId IN ({quoted})",
        page_size=1000,
        limit=_RUNS_LOOKED_AT,
    ):
        if run.id not in latest or run.start_time > latest[run.id]:
            latest[run.id] = run.start_time
    return {(e.id, e.run_id) for e in page if latest.get(e.id, e.start_time) > e.start_time}


# The newest runs of one page's reports read to tell which failed run is latest.
_RUNS_LOOKED_AT = 2000


async def failed_reports(
    client: Client,
    *,
    page_size: int = 50,
    page_token: bytes | None = None,
    narrower: str | None = None,
) -> tuple[list[FailedReport], bytes | None]:
    """Failed reports of every user, newest first: the dead-letter queue.

    Only reports whose latest run failed are listed: a redriven report leaves it.
    A page costs one listing, one listing of the same reports' other runs, and
    one short reverse history read per failed report (its attempts).

    `narrower` is a visibility clause ANDed to the query (`reportflow dlq` filters).
    """
    query = f"{FAILED_QUERY} AND ({narrower})" if narrower else FAILED_QUERY
    listing = client.list_workflows(query, page_size=page_size, next_page_token=page_token)
    await listing.fetch_next_page(page_size=page_size)
    page = list(listing.current_page or [])
    superseded = await _superseded(client, page)
    latest = [e for e in page if (e.id, e.run_id) not in superseded]
    reports = [await _failed_report(client, e) for e in latest]
    return reports, listing.next_page_token


@dataclass
class Filter:
    user: str | None = None
    since: datetime | None = None
    reason: str | None = None
    query: str | None = None
    kind: str | None = None  # read from each report's memo, like the reason

    @property
    def any(self) -> bool:
        values = (self.user, self.since, self.reason, self.query, self.kind)
        return any(v is not None for v in values)

    def visibility(self) -> str | None:
        """The clauses Temporal can filter on (the reason is read from each report)."""
        clauses = []
        if self.user is not None:
            clauses.append(f"{USER_ID_KEY.name} = '{self.user.replace(chr(39), '')}'")
        if self.since is not None:
            clauses.append(f"StartTime >= '{self.since.isoformat()}'")
        if self.query:
            clauses.append(f"({self.query})")
        return " AND ".join(clauses) or None


async def every_failed(client: Client, where: Filter | None = None) -> list[FailedReport]:
    """Every failed report (that matches `where`), page after page."""
    where = where or Filter()
    rows: list[FailedReport] = []
    token: bytes | None = None
    while True:
        page, token = await failed_reports(
            client, page_size=100, page_token=token, narrower=where.visibility()
        )
        rows += [
            r for r in page if where.reason in {None, r.reason} and where.kind in {None, r.kind}
        ]
        if not token:
            return rows
