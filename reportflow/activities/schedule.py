"""The activity a ScheduledReport runs: start the report of the period before the run."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from reportflow.core.config import Settings
from reportflow.kinds import KindRegistry, load_kinds
from reportflow.models import DEFAULT_KIND, ScheduledReportResult, StartScheduledInput
from reportflow.service.reports import BACKGROUND, kind_for_period, start_report
from reportflow.service.schedules import period_of_run

log = logging.getLogger(__name__)


class ScheduleActivities:
    def __init__(self, settings: Settings, kinds: KindRegistry | None = None) -> None:
        self.settings = settings
        self.kinds = kinds if kinds is not None else load_kinds(settings.report_kinds)

    @activity.defn(name="start_scheduled_report")
    async def start_scheduled_report(self, input: StartScheduledInput) -> ScheduledReportResult:
        """Start (or join) the report under its deterministic ID: safe to run twice."""
        start, end = period_of_run(
            input.every, datetime.fromisoformat(input.nominal_time), input.timezone
        )
        kind = None
        if input.kind != DEFAULT_KIND:
            try:
                found = self.kinds[input.kind]
            except KeyError:
                raise ApplicationError(
                    f"report kind {input.kind!r} is not registered on this worker; add it "
                    "to REPORT_KINDS and restart",
                    type="UnknownKind",
                ) from None
            kind = kind_for_period(found, json.loads(input.params or "{}"), start, end)
        begun = await start_report(
            activity.client(),
            self.settings,
            user_id=input.user_id,
            start=None if kind else start,
            end=None if kind else end,
            priority_key=BACKGROUND,
            kind=kind,
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
