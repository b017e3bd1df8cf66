"""What operators look at and do: the dead-letter list, redrive, queue depth.

Shared by the admin API, `/metrics` and `reportflow dlq`; everything comes from
Temporal, so it is true whichever API or worker process asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution as ProtoExecution
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.failure.v1 import Failure
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    GetWorkflowExecutionHistoryReverseRequest,
)
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from reportflow.codec import readable_failure
from reportflow.config import Settings
from reportflow.models import WORKFLOW_TYPE
from reportflow.starter import BACKGROUND, start_report

# The visibility filter for each status word of the contract ("queued" and
# "running" are both open runs; the memo's stage tells them apart).
STATUS_FILTERS = {
    "queued": "ExecutionStatus = 'Running'",
    "running": "ExecutionStatus = 'Running'",
    "completed": "ExecutionStatus = 'Completed'",
    "failed": "ExecutionStatus IN ('Failed', 'TimedOut', 'Terminated')",
    "cancelled": "ExecutionStatus = 'Canceled'",
}
FAILED_QUERY = f"WorkflowType = '{WORKFLOW_TYPE}' AND {STATUS_FILTERS['failed']}"

# Temporal execution status -> the status word of the contract.
STATUS_WORDS = {
    "Running": "running",
    "Completed": "completed",
    "Failed": "failed",
    "TimedOut": "failed",
    "Terminated": "failed",
    "Canceled": "cancelled",
    "ContinuedAsNew": "running",
}


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


@dataclass
class QueueStats:
    task_queue: str
    backlog_count: int = 0
    oldest_backlog_age_seconds: float = 0.0
    pollers: dict[str, int] = field(default_factory=dict)
    reports_by_status: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ActivityStart:
    """An ActivityTaskStarted event: which activity, which attempt, on which worker,
    and how the attempt before it failed (empty for a first attempt).

    Temporal writes the started event of a retried activity once, when the
    activity closes, carrying the attempt that closed it: `attempt` is the
    number of tries.
    """

    activity: str
    attempt: int
    identity: str
    last_failure: Failure


async def activity_starts(
    client: Client, report_id: str, run_id: str | None = None
) -> list[ActivityStart]:
    """Every activity start of a report's run, from its history."""
    scheduled: dict[int, str] = {}
    starts: list[ActivityStart] = []
    handle = client.get_workflow_handle(report_id, run_id=run_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            starts.append(
                ActivityStart(
                    activity=scheduled.get(started.scheduled_event_id, "?"),
                    attempt=started.attempt,
                    identity=started.identity,
                    last_failure=await readable_failure(
                        client.data_converter, started.last_failure
                    ),
                )
            )
    return starts


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


class NotRedrivable(Exception):
    """The report does not exist or its latest run did not fail."""


async def redrive(client: Client, settings: Settings, report_id: str) -> str:
    """Run a failed report again under the same ID; returns the new run's ID."""
    handle = client.get_workflow_handle(report_id)
    try:
        description = await handle.describe()
    except Exception as err:
        raise NotRedrivable(f"no report {report_id}") from err
    failed = {
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.TIMED_OUT,
        WorkflowExecutionStatus.TERMINATED,
    }
    if description.status not in failed:
        state = description.status.name.lower() if description.status else "unknown"
        raise NotRedrivable(f"{report_id} is {state}; only failed reports can be redriven")
    memo = await description.memo()
    await start_report(
        client,
        settings,
        user_id=str(memo["user_id"]),
        start=date.fromisoformat(str(memo["start"])),
        end=date.fromisoformat(str(memo["end"])),
        recipients=[str(r) for r in memo.get("recipients") or []],
        priority_key=BACKGROUND,
    )
    return (await handle.describe()).run_id


async def reports_by_status(client: Client) -> dict[str, int]:
    counts = await client.count_workflows(
        f"WorkflowType = '{WORKFLOW_TYPE}' GROUP BY ExecutionStatus"
    )
    totals: dict[str, int] = dict.fromkeys(("running", "completed", "failed", "cancelled"), 0)
    for group in counts.groups:
        word = STATUS_WORDS.get(str(group.group_values[0]), "failed")
        totals[word] += group.count
    return totals


async def queue_stats(client: Client, task_queue: str) -> QueueStats:
    """Backlog (count, oldest age) and pollers of both halves of the task queue:
    workflow tasks (reports not yet picked up) and activity tasks (stages waiting)."""
    stats = QueueStats(task_queue=task_queue)
    for kind, queue_type in (
        ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=queue_type,
                report_stats=True,
            )
        )
        stats.pollers[kind] = len(response.pollers)
        if response.HasField("stats"):
            stats.backlog_count += response.stats.approximate_backlog_count
            age = response.stats.approximate_backlog_age.ToTimedelta().total_seconds()
            stats.oldest_backlog_age_seconds = max(stats.oldest_backlog_age_seconds, age)
    stats.reports_by_status = await reports_by_status(client)
    return stats
