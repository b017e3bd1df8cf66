"""Bulk actions over the reports a filter matches: redrive failed ones, cancel running ones.

Both count first and act only when asked (`reportflow dlq redrive …` and
`reportflow reports cancel …` show the count without `--yes`), and both write
one `bulk …` audit line naming every report before they act.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from temporalio.api.batch.v1 import BatchOperationCancellation
from temporalio.api.common.v1 import WorkflowExecution as ProtoExecution
from temporalio.api.enums.v1 import BatchOperationState
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    StartBatchOperationRequest,
)
from temporalio.client import Client

from reportflow.core.audit import audit
from reportflow.core.config import Settings
from reportflow.models import WORKFLOW_TYPE
from reportflow.service.dead_letters import Filter, every_failed
from reportflow.service.reports import NotRedrivable, redrive


async def matching_failed(client: Client, where: Filter) -> list[str]:
    """The IDs of the failed reports `where` matches."""
    return [r.report_id for r in await every_failed(client, where)]


@dataclass
class BulkRedrive:
    redriven: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # report ID -> why not


async def redrive_all(
    client: Client, settings: Settings, ids: list[str], *, where: Filter, actor: str
) -> BulkRedrive:
    """Redrive each of `ids` (from `matching_failed`), audited as one bulk action."""
    audit(actor, "bulk redrive", f"{len(ids)} reports", where=str(where), report_ids=ids)
    result = BulkRedrive()
    for report_id in ids:
        try:
            await redrive(client, settings, report_id, actor=actor)
            result.redriven += 1
        except NotRedrivable as err:
            result.refused[report_id] = str(err)
    return result


async def matching_running(client: Client, where: Filter) -> list[ProtoExecution]:
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
    narrower = where.visibility()
    if narrower:
        query += f" AND {narrower}"
    return [
        ProtoExecution(workflow_id=e.id, run_id=e.run_id)
        async for e in client.list_workflows(query)
    ]


@dataclass(frozen=True)
class BatchCancel:
    job_id: str
    total: int
    completed: int
    failed: int


async def cancel_runs(client: Client, runs: list[ProtoExecution], *, note: str) -> BatchCancel:
    """Cancel exactly these runs as one Temporal batch operation (`note` is its reason),
    and wait (at most five minutes) until the batch has asked every one."""
    job_id = f"reportflow-cancel-{uuid.uuid4().hex[:12]}"
    service = client.workflow_service
    await service.start_batch_operation(
        StartBatchOperationRequest(
            namespace=client.namespace,
            job_id=job_id,
            reason=note,
            executions=runs,
            cancellation_operation=BatchOperationCancellation(identity="reportflow reports cancel"),
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
    return BatchCancel(
        job_id=job_id,
        total=batch.total_operation_count,
        completed=batch.complete_operation_count,
        failed=batch.failure_operation_count,
    )


async def cancel_all(
    client: Client, runs: list[ProtoExecution], *, where: Filter, note: str, actor: str
) -> BatchCancel:
    """Cancel `runs` (from `matching_running`) as one batch, audited as one bulk action."""
    audit(
        actor,
        "bulk cancel",
        f"{len(runs)} reports",
        where=str(where),
        note=note,
        report_ids=[r.workflow_id for r in runs],
    )
    return await cancel_runs(client, runs, note=note)
