"""MAX_RUNNING_REPORTS_PER_USER: a slot per running report, in the database.

The workflow takes a slot before its first step and gives it back as it ends;
taking it also says whether the user has webhook endpoints to announce to.
Taking one serializes on the user's row (an UPDATE first, so two workers cannot
both see a free slot), so the cap holds across every worker. With no free slot
the activity fails as `UserAtCapacity` (benign: logged at debug) and Temporal
retries it with backoff, which adds nothing to the history: the report stays
`queued` meanwhile. A slot older than STALE_AFTER whose run has ended (say it
was terminated, so it never gave the slot back) is freed by asking Temporal.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode

from reportflow.core.db import report_slots, users
from reportflow.models import USER_AT_CAPACITY, SlotGrant, SlotInput
from reportflow.service.webhooks import active_endpoints

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(seconds=60)


def _key(input: SlotInput) -> str:
    return f"{input.report_id}/{input.run_id}"


class SlotActivities:
    def __init__(self, *, engine: AsyncEngine, per_user: int) -> None:
        self.engine = engine
        self.per_user = per_user

    @activity.defn(name="acquire_slot")
    async def acquire_slot(self, input: SlotInput) -> SlotGrant:
        if self.per_user > 0:
            await self._take(input)
        return SlotGrant(webhooks=bool(await active_endpoints(self.engine, input.user_id)))

    async def _take(self, input: SlotInput) -> None:
        holders = await self._try_take(input)
        if holders is None:
            return
        if await self._free_ended(holders) and await self._try_take(input) is None:
            return
        raise ApplicationError(
            f"user {input.user_id} has {self.per_user} reports running "
            f"(MAX_RUNNING_REPORTS_PER_USER); this one starts when one of them ends",
            type=USER_AT_CAPACITY,
            category=ApplicationErrorCategory.BENIGN,
        )

    @activity.defn(name="release_slot")
    async def release_slot(self, input: SlotInput) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(report_slots).where(report_slots.c.run_key == _key(input)))

    async def _try_take(self, input: SlotInput) -> list[tuple[str, str, datetime]] | None:
        """None once this run holds a slot; else the runs holding the user's slots."""
        async with self.engine.begin() as conn:
            # Lock the user's row first: takers of one user's slots go one at a time.
            await conn.execute(
                update(users).where(users.c.id == input.user_id).values(name=users.c.name)
            )
            rows = (
                await conn.execute(
                    select(
                        report_slots.c.run_key,
                        report_slots.c.report_id,
                        report_slots.c.run_id,
                        report_slots.c.acquired_at,
                    ).where(report_slots.c.user_id == input.user_id)
                )
            ).all()
            if any(r.run_key == _key(input) for r in rows):
                return None
            if len(rows) < self.per_user:
                await conn.execute(
                    insert(report_slots).values(
                        run_key=_key(input),
                        user_id=input.user_id,
                        report_id=input.report_id,
                        run_id=input.run_id,
                        acquired_at=datetime.now(UTC),
                    )
                )
                return None
        return [(r.report_id, r.run_id, r.acquired_at) for r in rows]

    async def _free_ended(self, holders: list[tuple[str, str, datetime]]) -> bool:
        """Remove the slots of old holders whose run is no longer running."""
        now, freed = datetime.now(UTC), False
        for report_id, run_id, acquired_at in holders:
            if acquired_at.tzinfo is None:
                acquired_at = acquired_at.replace(tzinfo=UTC)
            if now - acquired_at < STALE_AFTER:
                continue
            try:
                desc = (
                    await activity.client().get_workflow_handle(report_id, run_id=run_id).describe()
                )
                ended = desc.status != WorkflowExecutionStatus.RUNNING
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                ended = True
            if ended:
                await self.release_slot(SlotInput("", report_id, run_id))
                log.warning(
                    "freed the slot of a run that ended without giving it back",
                    extra={"report_id": report_id, "run_id": run_id},
                )
                freed = True
        return freed
