"""Scheduled reports: one Temporal Schedule per user schedule (the API and the CLI use this).

A schedule's runs are `ScheduledReport` workflows (ID `<schedule id>-<nominal time>`,
which Temporal chooses). Each one works out the previous full period from its
nominal time in the schedule's time zone and starts the real report under its
deterministic report ID (`reportflow.service.reports.start_report`, USE_EXISTING), so a
scheduled and a manual report for the same range are one report and one email.

Policies: overlap SKIP (a run still going when the next is due makes the next
one skip), and a catch-up window of one hour, so an outage of Temporal or the
workers shorter than that still sends the report, while a schedule paused for a
month sends no burst of old reports when unpaused. Past periods are sent only
when asked (`backfill`).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleBackfill,
    ScheduleCalendarSpec,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from reportflow.contract import (
    WEEKDAYS,
    ScheduleDocument,
    ScheduleRequest,
    parse_time,
)
from reportflow.core.config import Settings
from reportflow.core.temporal import USER_ID_KEY
from reportflow.models import DEFAULT_KIND, SCHEDULED_WORKFLOW_TYPE, ScheduledReportInput

log = logging.getLogger(__name__)

CATCHUP_WINDOW = timedelta(hours=1)
ID_PREFIX = "schedule-"


class ScheduleNotFound(LookupError):
    """No schedule with this ID belongs to the caller."""


# ------------------------------------------------------------------ the period


def previous_period(every: str, run_day: date) -> tuple[date, date]:
    """The last full period before `run_day` (the run's local date): the 7 days
    ending the day before (Monday-Sunday for a Monday schedule), or last month."""
    if every == "week":
        end = run_day - timedelta(days=1)
        return end - timedelta(days=6), end
    end = run_day.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def period_of_run(every: str, nominal: datetime, timezone: str) -> tuple[date, date]:
    return previous_period(every, nominal.astimezone(ZoneInfo(timezone)).date())


def _covers(every: str) -> str:
    if every == "week":
        return "the 7 days before the run's date"
    return "the calendar month before the run's month"


# ------------------------------------------------------------------ operations


def _spec(request: ScheduleRequest) -> ScheduleSpec:
    hour, minute = parse_time(request.time)
    if request.every == "week":
        # Temporal counts weekdays from Sunday = 0.
        weekday = (WEEKDAYS.index(str(request.day)) + 1) % 7
        calendar = ScheduleCalendarSpec(
            day_of_week=[ScheduleRange(weekday)],
            hour=[ScheduleRange(hour)],
            minute=[ScheduleRange(minute)],
        )
    else:
        calendar = ScheduleCalendarSpec(
            day_of_month=[ScheduleRange(int(request.day))],
            hour=[ScheduleRange(hour)],
            minute=[ScheduleRange(minute)],
        )
    return ScheduleSpec(calendars=[calendar], time_zone_name=request.timezone)


def _memo(user_id: str, request: ScheduleRequest) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "every": request.every,
        "day": request.day,
        "time": request.time,
        "timezone": request.timezone,
        "kind": request.kind,
        "params": request.params,
    }


def _document(schedule_id: str, memo: Any, paused: bool, next_runs: Any) -> ScheduleDocument:
    upcoming = list(next_runs or [])
    return ScheduleDocument(
        id=schedule_id,
        every=memo["every"],
        day=memo["day"],
        time=memo["time"],
        timezone=memo["timezone"],
        paused=paused,
        next_run_at=upcoming[0].astimezone(UTC) if upcoming else None,
        covers=_covers(memo["every"]),
        kind=memo.get("kind") or DEFAULT_KIND,
        params=memo.get("params") or {},
    )


class TooManySchedules(Exception):
    """The user holds MAX_SCHEDULES_PER_USER schedules already."""


async def create_schedule(
    client: Client, settings: Settings, *, user_id: str, request: ScheduleRequest
) -> ScheduleDocument:
    """Create the user's schedule; with `backfill`, also run that many past periods now.
    TooManySchedules past MAX_SCHEDULES_PER_USER (counted from visibility, so a
    burst faster than it may pass by a few: the API limits creation per minute too)."""
    if len(await list_schedules(client, user_id=user_id)) >= settings.max_schedules_per_user:
        raise TooManySchedules(user_id)
    schedule_id = f"{ID_PREFIX}{user_id}-{uuid.uuid4().hex[:10]}"
    backfill = []
    if request.backfill:
        span = timedelta(days=7 if request.every == "week" else 31) * request.backfill
        now = datetime.now(UTC)
        backfill = [
            ScheduleBackfill(
                start_at=now - span, end_at=now, overlap=ScheduleOverlapPolicy.ALLOW_ALL
            )
        ]
    handle = await client.create_schedule(
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow(
                SCHEDULED_WORKFLOW_TYPE,
                ScheduledReportInput(
                    user_id=user_id,
                    every=request.every,
                    timezone=request.timezone,
                    kind=request.kind,
                    params=json.dumps(request.params, sort_keys=True),
                ),
                id=schedule_id,
                task_queue=settings.task_queue,
            ),
            spec=_spec(request),
            policy=SchedulePolicy(
                overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW
            ),
        ),
        backfill=backfill,
        memo=_memo(user_id, request),
        search_attributes=TypedSearchAttributes([SearchAttributePair(USER_ID_KEY, user_id)]),
    )
    log.info(
        "schedule created",
        extra={"schedule_id": schedule_id, "user_id": user_id, "backfill": request.backfill},
    )
    return await describe_schedule(handle)


async def describe_schedule(handle: ScheduleHandle) -> ScheduleDocument:
    desc = await handle.describe()
    return _document(
        handle.id,
        await desc.memo(),
        desc.schedule.state.paused,
        desc.info.next_action_times,
    )


async def list_schedules(client: Client, *, user_id: str | None) -> list[ScheduleDocument]:
    """The user's schedules (all reportflow schedules for an operator), from visibility:
    a schedule created a moment ago may show up a moment late."""
    query = None
    if user_id is not None:
        query = f"{USER_ID_KEY.name} = '{user_id.replace(chr(39), '')}'"
    docs = []
    async for entry in await client.list_schedules(query):
        memo = await entry.memo()
        if "every" not in memo or (user_id is not None and memo.get("user_id") != user_id):
            continue
        paused = entry.schedule.state.paused if entry.schedule else False
        next_runs = entry.info.next_action_times if entry.info else []
        docs.append(_document(entry.id, memo, paused, next_runs))
    return sorted(docs, key=lambda d: d.id)


async def owned_schedule(
    client: Client, schedule_id: str, *, user_id: str | None
) -> ScheduleHandle:
    """The schedule's handle if it is a reportflow schedule of `user_id` (any user's
    when None); else ScheduleNotFound, exactly as if it did not exist."""
    handle = client.get_schedule_handle(schedule_id)
    try:
        memo = await (await handle.describe()).memo()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ScheduleNotFound(schedule_id) from None
        raise
    if "every" not in memo or (user_id is not None and memo.get("user_id") != user_id):
        raise ScheduleNotFound(schedule_id)
    return handle


async def pause_schedule(
    client: Client, schedule_id: str, *, user_id: str | None, paused: bool
) -> ScheduleDocument:
    handle = await owned_schedule(client, schedule_id, user_id=user_id)
    if paused:
        await handle.pause(note=f"paused by {user_id or 'an operator'}")
    else:
        await handle.unpause(note=f"unpaused by {user_id or 'an operator'}")
    log.info("schedule %s", "paused" if paused else "unpaused", extra={"schedule_id": schedule_id})
    return await describe_schedule(handle)


async def delete_schedule(client: Client, schedule_id: str, *, user_id: str | None) -> None:
    handle = await owned_schedule(client, schedule_id, user_id=user_id)
    await handle.delete()
    log.info("schedule deleted", extra={"schedule_id": schedule_id})
