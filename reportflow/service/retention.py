"""How long a PDF is kept (REPORT_RETENTION_DAYS), and the Schedule that expires them.

Every worker makes sure the Schedule exists when it starts, so a deployment
needs no extra step; operators see it with `temporal schedule list` and can
run it now with `temporal schedule trigger --schedule-id <id>`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from reportflow.models import ExpireInput

log = logging.getLogger(__name__)

EVERY = timedelta(hours=1)


def schedule_id(task_queue: str) -> str:
    return f"{task_queue}-retention"


def pdf_expires_at(completed_at: datetime, retention_days: float) -> datetime:
    return completed_at + timedelta(days=retention_days)


async def ensure_schedule(client: Client, task_queue: str) -> None:
    """Create the hourly ExpireReports schedule unless it exists."""
    sid = schedule_id(task_queue)
    try:
        await client.create_schedule(
            sid,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    "ExpireReports", ExpireInput(), id=sid, task_queue=task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=EVERY)]),
                # One cleanup at a time; a missed hour is simply covered by the next.
                policy=SchedulePolicy(
                    overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=10)
                ),
            ),
        )
    except ScheduleAlreadyRunningError:
        return
    log.info("created the retention schedule %r", sid)
