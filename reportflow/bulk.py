"""`reportflow dlq redrive|cancel` with filters: many reports at once, counted first.

The filter becomes a Temporal visibility query (`--user`, `--since`, `--query`);
`--reason` picks failed reports by their reason code. Nothing happens without
`--yes`: the command prints how many reports match, and which. A cancel runs as
one Temporal batch operation over exactly the runs it counted; a redrive starts
each report again through the starter (a batch operation cannot start runs).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime

from temporalio.api.batch.v1 import BatchOperationCancellation
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import BatchOperationState
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    StartBatchOperationRequest,
)
from temporalio.client import Client

from reportflow.config import Settings
from reportflow.models import WORKFLOW_TYPE
from reportflow.ops import NotRedrivable, failed_reports, redrive
from reportflow.temporal import USER_ID_KEY, connect

SHOWN = 20


@dataclass
class Filter:
    user: str | None = None
    since: datetime | None = None
    reason: str | None = None
    query: str | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.user, self.since, self.reason, self.query))

    def visibility(self) -> str | None:
        """The clauses Temporal can filter on (the reason is read from each report)."""
        clauses = []
        if self.user is not None:
            clauses.append(f"{USER_ID_KEY.name} = '{self.user.replace(chr(39), '')}'")
        if self.since is not None:
            clauses.append(f"StartTime >= '{self.since.isoformat()}'")
        if self.query:
            clauses.append(f"({self.query})")
        return " AND ".join(clauses) or None


def _show(ids: list[str], what: str) -> None:
    sys.stdout.write(f"{len(ids)} {what}\n")
    for report_id in ids[:SHOWN]:
        sys.stdout.write(f"  {report_id}\n")
    if len(ids) > SHOWN:
        sys.stdout.write(f"  ... and {len(ids) - SHOWN} more\n")


async def matching_failed(client: Client, where: Filter) -> list[str]:
    ids, token = [], None
    while True:
        page, token = await failed_reports(
            client, page_size=100, page_token=token, narrower=where.visibility()
        )
        ids += [r.report_id for r in page if where.reason in {None, r.reason}]
        if not token:
            return ids


async def redrive_matching(settings: Settings, where: Filter, *, yes: bool) -> int:
    client = await connect()
    ids = await matching_failed(client, where)
    _show(ids, "failed reports match")
    if not ids or not yes:
        if ids:
            sys.stdout.write("nothing redriven: add --yes to redrive them\n")
        return 0
    redriven, code = 0, 0
    for report_id in ids:
        try:
            await redrive(client, settings, report_id)
            redriven += 1
        except NotRedrivable as err:
            sys.stderr.write(f"{report_id}: not redriven: {err}\n")
            code = 1
    sys.stdout.write(f"redriven: {redriven}\n")
    return code


async def matching_running(client: Client, where: Filter) -> list[WorkflowExecution]:
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
    narrower = where.visibility()
    if narrower:
        query += f" AND {narrower}"
    return [
        WorkflowExecution(workflow_id=e.id, run_id=e.run_id)
        async for e in client.list_workflows(query)
    ]


async def cancel_matching(settings: Settings, where: Filter, *, yes: bool) -> int:
    """Cancel the matching running reports as one batch operation; `where.reason`
    is the note the batch records (running reports have no failure reason)."""
    client = await connect()
    note = where.reason or "reportflow dlq cancel"
    where = Filter(user=where.user, since=where.since, query=where.query)
    runs = await matching_running(client, where)
    _show([r.workflow_id for r in runs], "running reports match")
    if not runs or not yes:
        if runs:
            sys.stdout.write("nothing cancelled: add --yes to cancel them\n")
        return 0
    job_id = f"reportflow-cancel-{uuid.uuid4().hex[:12]}"
    service = client.workflow_service
    await service.start_batch_operation(
        StartBatchOperationRequest(
            namespace=client.namespace,
            job_id=job_id,
            reason=note,
            executions=runs,
            cancellation_operation=BatchOperationCancellation(identity="reportflow dlq cancel"),
        )
    )
    async with asyncio.timeout(300):
        while True:
            batch = await service.describe_batch_operation(
                DescribeBatchOperationRequest(namespace=client.namespace, job_id=job_id)
            )
            if batch.state != BatchOperationState.BATCH_OPERATION_STATE_RUNNING:
                break
            await asyncio.sleep(0.5)
    sys.stdout.write(
        f"cancel requested: {batch.complete_operation_count} of {batch.total_operation_count} "
        f"(failed: {batch.failure_operation_count}; batch job {job_id}). A report already "
        "sending its email completes.\n"
    )
    return 1 if batch.failure_operation_count else 0
