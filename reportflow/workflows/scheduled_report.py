"""ScheduledReport: what a user's Schedule runs; it starts the real report.

A Schedule names its runs `<schedule id>-<nominal time>`, so the report cannot
be the scheduled workflow itself: this one works out the period from its
nominal time and starts GenerateReport under the deterministic report ID, the
same one a manual request for that range gets (see reportflow.service.schedules).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from reportflow.activities.schedule import ScheduleActivities
    from reportflow.models import ScheduledReportInput, ScheduledReportResult, StartScheduledInput
    from reportflow.workflows.policies import retry

# Set by the Schedule on every run it starts (also on a trigger and a backfill).
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


@workflow.defn(name="ScheduledReport")
class ScheduledReport:
    @workflow.run
    async def run(self, input: ScheduledReportInput) -> ScheduledReportResult:
        info = workflow.info()
        nominal = info.typed_search_attributes.get(SCHEDULED_START) or info.start_time
        return await workflow.execute_activity_method(
            ScheduleActivities.start_scheduled_report,
            StartScheduledInput(
                user_id=input.user_id,
                every=input.every,
                timezone=input.timezone,
                nominal_time=nominal.isoformat(),
                kind=input.kind,
                params=input.params,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry(
                attempts=20, first=timedelta(seconds=2), longest=timedelta(minutes=1)
            ),
        )
