"""How busy the service is: the task queue's backlog and pollers, reports per status."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from reportflow.models import WORKFLOW_TYPE

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
class QueueStats:
    task_queue: str
    backlog_count: int = 0
    oldest_backlog_age_seconds: float = 0.0
    pollers: dict[str, int] = field(default_factory=dict)
    reports_by_status: dict[str, int] = field(default_factory=dict)


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
