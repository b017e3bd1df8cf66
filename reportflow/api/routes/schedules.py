"""The user's report schedules: create, list, pause, unpause, delete."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from reportflow.api.deps import CallerDep, SettingsDep, TemporalDep, user_of
from reportflow.api.kind_input import check_schedule_kind
from reportflow.api.ratelimit import RateLimiter, limit_creation
from reportflow.api.schemas import COMMON_ERRORS, problem
from reportflow.contract import ScheduleDocument, ScheduleRequest
from reportflow.core.tokens import Caller
from reportflow.service.schedules import (
    ScheduleNotFound,
    TooManySchedules,
    create_schedule,
    delete_schedule,
    list_schedules,
    pause_schedule,
)

router = APIRouter(
    prefix="/schedules",
    tags=["schedules"],
    responses={**COMMON_ERRORS, 403: problem("An admin token has no schedules of its own")},
)

NOT_FOUND = "no such schedule: check the ID, or list your schedules with GET /schedules"


async def _limit_backfill(request: Request, user_id: str, periods: int) -> None:
    """A backfill starts `periods` reports now: each one counts against the same
    per-user start limit as POST /reports (RATE_LIMIT_PER_MINUTE)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    for _ in range(periods):
        wait = await limiter.retry_after(user_id)
        if wait:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"a backfill of {periods} reports would start more reports than the "
                f"per-minute limit allows; try again in {wait} s, or ask for fewer periods",
                headers={"Retry-After": str(wait)},
            )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleDocument,
    responses={
        409: problem("The user holds MAX_SCHEDULES_PER_USER schedules already"),
        429: problem("Too many schedules created or reports started; wait `Retry-After`"),
    },
)
async def create(
    body: ScheduleRequest,
    request: Request,
    response: Response,
    caller: CallerDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> ScheduleDocument:
    """Send the report of the previous week or month on a schedule."""
    check_schedule_kind(request.app.state.kinds, body)
    user_id = user_of(caller, "schedules")
    await limit_creation(request, "schedules", user_id)
    await _limit_backfill(request, user_id, body.backfill)
    try:
        doc = await create_schedule(client, settings, user_id=user_id, request=body)
    except TooManySchedules:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"you have {settings.max_schedules_per_user} schedules, the most one user "
            "may hold; delete one (DELETE /schedules/{id}) before adding another",
        ) from None
    response.headers["Location"] = f"/schedules/{doc.id}"
    return doc


@router.get("", response_model=list[ScheduleDocument])
async def list_(caller: CallerDep, client: TemporalDep) -> list[ScheduleDocument]:
    """The caller's schedules (a new one may appear a moment late)."""
    return await list_schedules(client, user_id=user_of(caller, "schedules"))


async def _set_paused(
    schedule_id: str, caller: Caller, client: TemporalDep, paused: bool
) -> ScheduleDocument:
    try:
        return await pause_schedule(
            client, schedule_id, user_id=user_of(caller, "schedules"), paused=paused
        )
    except ScheduleNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None


@router.post(
    "/{schedule_id}/pause",
    response_model=ScheduleDocument,
    responses={404: problem("No such schedule")},
)
async def pause(schedule_id: str, caller: CallerDep, client: TemporalDep) -> ScheduleDocument:
    """Stop sending until unpaused; missed periods are not sent later."""
    return await _set_paused(schedule_id, caller, client, True)


@router.post(
    "/{schedule_id}/unpause",
    response_model=ScheduleDocument,
    responses={404: problem("No such schedule")},
)
async def unpause(schedule_id: str, caller: CallerDep, client: TemporalDep) -> ScheduleDocument:
    """Send again from the next scheduled time on."""
    return await _set_paused(schedule_id, caller, client, False)


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: problem("No such schedule")},
)
async def delete(schedule_id: str, caller: CallerDep, client: TemporalDep) -> Response:
    """Delete the schedule; reports it already started stay."""
    try:
        await delete_schedule(client, schedule_id, user_id=user_of(caller, "schedules"))
    except ScheduleNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
