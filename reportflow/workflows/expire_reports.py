"""ExpireReports: remove PDFs past REPORT_RETENTION_DAYS; a Temporal Schedule runs it.

The emails stay sent; the status of an expired report says its PDF has
expired and the download answers 410.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from reportflow.activities.report import ReportActivities
    from reportflow.models import ExpireInput, ExpireResult
    from reportflow.workflows.policies import retry


@workflow.defn(name="ExpireReports")
class ExpireReports:
    @workflow.run
    async def run(self, input: ExpireInput) -> ExpireResult:
        return await workflow.execute_activity_method(
            ReportActivities.expire_reports,
            input,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=retry(
                attempts=5, first=timedelta(seconds=10), longest=timedelta(minutes=5)
            ),
        )
