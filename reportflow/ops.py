"""What operators look at and do: the dead-letter list, redrive, queue depth.

Shared by the admin API, `/metrics` and `reportflow dlq`; everything comes from
Temporal, so it is true whichever API or worker process asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.failure.v1 import Failure
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from reportflow.codec import readable_failure
from reportflow.config import Settings
from reportflow.models import WORKFLOW_TYPE
from reportflow.starter import start_report

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


async def _failed_report(client: Client, execution: WorkflowExecution) -> FailedReport:
    memo: dict[str, Any] = dict(await execution.memo())
    starts = await activity_starts(client, execution.id, execution.run_id)
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
        attempts=max((start.attempt for start in starts), default=0),
        failed_at=execution.close_time,
    )


async def failed_reports(
    client: Client, *, page_size: int = 50, page_token: bytes | None = None
) -> tuple[list[FailedReport], bytes | None]:
    """Failed reports of every user, newest first: the dead-letter queue.

    Only reports whose latest run failed are listed: a redriven report leaves it.
    """
    listing = client.list_workflows(FAILED_QUERY, page_size=page_size, next_page_token=page_token)
    await listing.fetch_next_page(page_size=page_size)
    reports = []
    for execution in listing.current_page or []:
        latest = await client.get_workflow_handle(execution.id).describe()
        if latest.run_id != execution.run_id or latest.status in {
            WorkflowExecutionStatus.RUNNING,
            WorkflowExecutionStatus.COMPLETED,
        }:
            continue
        reports.append(await _failed_report(client, execution))
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
