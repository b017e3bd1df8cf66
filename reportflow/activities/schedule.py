"""The activity a ScheduledReport runs: start the report of the period before the run."""

from __future__ import annotations

import logging
from datetime import datetime

from temporalio import activity

from reportflow.core.config import Settings
from reportflow.models import ScheduledReportResult, StartScheduledInput
from reportflow.service.reports import BACKGROUND, start_report
from reportflow.service.schedules import period_of_run

log = logging.getLogger(__name__)


class ScheduleActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="start_scheduled_report")
    async def start_scheduled_report(self, input: StartScheduledInput) -> ScheduledReportResult:
        """Start (or join) the report under its deterministic ID: safe to run twice."""
        start, end = period_of_run(
            input.every, datetime.fromisoformat(input.nominal_time), input.timezone
        )
        begun = await start_report(
            activity.client(),
            self.settings,
            user_id=input.user_id,
            start=start,
            end=end,
            priority_key=BACKGROUND,
        )
        log.info(
            "scheduled report %s",
            "started" if begun.joined_or_started else "already there",
            extra={"report_id": begun.report_id, "schedule_run": activity.info().workflow_id},
        )
        return ScheduledReportResult(
            report_id=begun.report_id,
            started=begun.joined_or_started,
            start=start.isoformat(),
            end=end.isoformat(),
        )
