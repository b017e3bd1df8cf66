"""What a report run's history says about its activities: each start, its attempt and worker."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client

from reportflow.core.codec import readable_failure


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
