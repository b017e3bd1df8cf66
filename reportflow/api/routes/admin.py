"""Operators' view over HTTP: the dead-letter list, redrive, queue depth (admin token)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel

from reportflow.api.deps import AdminDep, SettingsDep, TemporalDep
from reportflow.api.paging import decode_page_token, encode_page_token
from reportflow.api.schemas import COMMON_ERRORS, problem
from reportflow.service.dead_letters import FAILED_QUERY, FailedReport, failed_reports
from reportflow.service.queue import QueueStats, queue_stats
from reportflow.service.reports import NotRedrivable, redrive

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    responses={**COMMON_ERRORS, 403: problem("Not an admin token")},
)


class FailedReportList(BaseModel):
    reports: list[FailedReport]
    next_page_token: str | None
    # Operators only (the status document does not show users this internal
    # address): append a report ID to open its runs in the Web UI.
    temporal_ui_workflows: str


class RedriveDoc(BaseModel):
    report_id: str
    run_id: str
    status_url: str


@router.get("/reports", response_model=FailedReportList)
async def list_failed(
    _: AdminDep,
    client: TemporalDep,
    settings: SettingsDep,
    status_filter: Annotated[Literal["failed"], Query(alias="status")] = "failed",
    page_size: Annotated[int, Query(ge=1, le=100)] = 50,
    page_token: Annotated[str | None, Query(max_length=4096)] = None,
    kind: Annotated[
        str | None, Query(max_length=40, description="Only this report kind (within the page)")
    ] = None,
) -> FailedReportList:
    """Failed reports of all users with reason, attempts and kind: the dead-letter view."""
    token = decode_page_token(page_token, FAILED_QUERY, settings.secret_key)
    reports, next_token = await failed_reports(client, page_size=page_size, page_token=token)
    if kind is not None:
        reports = [r for r in reports if r.kind == kind]
    return FailedReportList(
        reports=reports,
        next_page_token=encode_page_token(next_token, FAILED_QUERY, settings.secret_key),
        temporal_ui_workflows=f"{settings.temporal_ui_url}/namespaces/{client.namespace}/workflows/",
    )


@router.post(
    "/reports/{report_id}/redrive",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RedriveDoc,
    responses={409: problem("The report's latest run did not fail")},
)
async def redrive_report(
    report_id: str, request: Request, caller: AdminDep, client: TemporalDep, settings: SettingsDep
) -> RedriveDoc:
    """Run a failed report again under the same ID."""
    try:
        run_id = await redrive(client, settings, report_id, actor=caller.name)
    except NotRedrivable as err:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(err)) from None
    request.app.state.watchers.poke(report_id)
    return RedriveDoc(report_id=report_id, run_id=run_id, status_url=f"/reports/{report_id}")


@router.get("/queue", response_model=QueueStats)
async def queue(_: AdminDep, client: TemporalDep, settings: SettingsDep) -> QueueStats:
    """Backlog count, oldest backlog age, pollers and reports per status; the same
    figures of the email queue (held to EMAIL_RATE_PER_SECOND) in `email_queue`."""
    return await queue_stats(client, settings.task_queue)
