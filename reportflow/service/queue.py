"""How busy the service is: the task queues' backlog and pollers, reports per status.

Two task queues carry a report: TASK_QUEUE (its workflow and every stage but the
email) and the email step's own queue (`email_queue`), which the server drains
at EMAIL_RATE_PER_SECOND: a backlog there is by design, and must be seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from reportflow.models import WORKFLOW_TYPE, email_queue
from reportflow.service.status import STATUS_WORDS, visibility_name

# The counts' group values spell Temporal's status as visibility does.
_WORDS = {visibility_name(status): word for status, word in STATUS_WORDS.items()}


@dataclass
class TaskQueueStats:
    task_queue: str
    backlog_count: int = 0
    oldest_backlog_age_seconds: float = 0.0
    pollers: dict[str, int] = field(default_factory=dict)


@dataclass
class QueueStats(TaskQueueStats):
    """The main task queue's figures, its email queue's beside them, reports per status."""

    email_queue: TaskQueueStats = field(default_factory=lambda: TaskQueueStats(task_queue=""))
    reports_by_status: dict[str, int] = field(default_factory=dict)


async def reports_by_status(client: Client) -> dict[str, int]:
    counts = await client.count_workflows(
        f"WorkflowType = '{WORKFLOW_TYPE}' GROUP BY ExecutionStatus"
    )
    totals: dict[str, int] = dict.fromkeys(("running", "completed", "failed", "cancelled"), 0)
    for group in counts.groups:
        word = _WORDS.get(str(group.group_values[0]), "failed")
        totals[word] += group.count
    return totals


async def _task_queue_stats(
    client: Client, stats: TaskQueueStats, kinds: dict[str, TaskQueueType.ValueType]
) -> None:
    for kind, queue_type in kinds.items():
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=stats.task_queue),
                task_queue_type=queue_type,
                report_stats=True,
            )
        )
        stats.pollers[kind] = len(response.pollers)
        if response.HasField("stats"):
            stats.backlog_count += response.stats.approximate_backlog_count
            age = response.stats.approximate_backlog_age.ToTimedelta().total_seconds()
            stats.oldest_backlog_age_seconds = max(stats.oldest_backlog_age_seconds, age)


async def queue_stats(client: Client, task_queue: str) -> QueueStats:
    """Backlog (count, oldest age) and pollers of both halves of the task queue:
    workflow tasks (reports not yet picked up) and activity tasks (stages waiting);
    and of the email queue, which holds activity tasks only (emails waiting)."""
    stats = QueueStats(task_queue=task_queue)
    await _task_queue_stats(
        client,
        stats,
        {
            "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        },
    )
    stats.email_queue = TaskQueueStats(task_queue=email_queue(task_queue))
    await _task_queue_stats(
        client, stats.email_queue, {"activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY}
    )
    stats.reports_by_status = await reports_by_status(client)
    return stats
