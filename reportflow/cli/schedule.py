"""`reportflow schedule create|list|pause|unpause|delete`: operators' front door to
reportflow.service.schedules (straight to Temporal, like dlq)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from reportflow.core.config import get_settings

if TYPE_CHECKING:
    from temporalio.client import Client

    from reportflow.contract import ScheduleDocument

app = typer.Typer()
schedule = typer.Typer(no_args_is_help=True)
app.add_typer(
    schedule,
    name="schedule",
    short_help="reports sent every week or month: create, list, pause, unpause, delete",
    help="Talks to Temporal directly (TEMPORAL_ADDRESS etc.), like dlq.",
)

ScheduleId = Annotated[str, typer.Argument(metavar="ID", help="the schedule ID")]


def _on_temporal(action: Callable[[Client], Awaitable[list[ScheduleDocument] | None]]) -> None:
    """Run `action` on a Temporal client; print the schedules it returns."""
    from reportflow.core.temporal import connect
    from reportflow.service import schedules

    async def go() -> list[ScheduleDocument] | None:
        return await action(await connect())

    try:
        docs = asyncio.run(go())
    except schedules.ScheduleNotFound as err:
        sys.stderr.write(
            f"reportflow schedule: no schedule {err.args[0]!r}; see `reportflow schedule list`\n"
        )
        raise typer.Exit(1) from None
    if docs is None:
        return
    for doc in docs:
        when = doc.next_run_at.strftime("%Y-%m-%d %H:%M UTC") if doc.next_run_at else "-"
        state = "paused" if doc.paused else f"next {when}"
        sys.stdout.write(
            f"{doc.id}  every {doc.every} on {doc.day} at {doc.time} {doc.timezone}  {state}\n"
        )
    if not docs:
        sys.stdout.write("no schedules\n")


@schedule.command("create", help="schedule a user's report")
def create(
    user: Annotated[str, typer.Option(help="whose report")],
    every: Annotated[Literal["week", "month"], typer.Option()],
    day: Annotated[str, typer.Option(help="monday..sunday, or 1-28 for a month")],
    time: Annotated[str, typer.Option(help="local time HH:MM")] = "06:00",
    timezone: Annotated[str, typer.Option(help="IANA zone")] = "UTC",
    backfill: Annotated[
        int,
        typer.Option(metavar="N", help="also send the N past periods now (0: none)"),
    ] = 0,
) -> None:
    from pydantic import ValidationError

    from reportflow.contract import ScheduleRequest
    from reportflow.service import schedules

    try:
        request = ScheduleRequest(
            every=every, day=day, time=time, timezone=timezone, backfill=backfill
        )
    except ValidationError as err:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        sys.stderr.write(f"reportflow schedule: {reasons}\n")
        raise typer.Exit(2) from None

    async def go(client: Client) -> list[ScheduleDocument]:
        created = await schedules.create_schedule(
            client, get_settings(), user_id=user, request=request
        )
        return [created]

    _on_temporal(go)


@schedule.command("list", help="schedules (one user's with --user)")
def list_(user: Annotated[str | None, typer.Option(help="only this user's")] = None) -> None:
    from reportflow.service import schedules

    async def go(client: Client) -> list[ScheduleDocument]:
        return await schedules.list_schedules(client, user_id=user)

    _on_temporal(go)


def _pause(schedule_id: str, paused: bool) -> None:
    from reportflow.service import schedules

    async def go(client: Client) -> list[ScheduleDocument]:
        return [await schedules.pause_schedule(client, schedule_id, user_id=None, paused=paused)]

    _on_temporal(go)


@schedule.command("pause", help="pause a schedule")
def pause(schedule_id: ScheduleId) -> None:
    _pause(schedule_id, True)


@schedule.command("unpause", help="unpause a schedule")
def unpause(schedule_id: ScheduleId) -> None:
    _pause(schedule_id, False)


@schedule.command("delete", help="delete a schedule")
def delete(schedule_id: ScheduleId) -> None:
    from reportflow.service import schedules

    async def go(client: Client) -> None:
        await schedules.delete_schedule(client, schedule_id, user_id=None)
        sys.stdout.write(f"{schedule_id}: deleted\n")

    _on_temporal(go)
