"""Fair under load: a per-user cap on running reports, and task-queue fairness so
one user's 300 reports do not hold up another user's one (figures printed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from temporalio import activity
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from reportflow.core.config import Settings
from reportflow.core.db import report_slots, users
from reportflow.core.temporal import FAIRNESS_DEV_ARGS, USER_ID_KEY, temporal_cli_path
from reportflow.models import (
    CleanupInput,
    EmailInput,
    EmailResult,
    QueryInput,
    RenderInput,
    RenderResult,
    ReportData,
    SlotInput,
    WebhookTargets,
    WebhookTargetsInput,
    email_queue,
)
from reportflow.service.reports import BACKGROUND, INTERACTIVE, start_report
from reportflow.workflows.deliver_webhooks import DeliverWebhooks
from reportflow.workflows.generate_report import GenerateReport
from tests.conftest import make_settings
from tests.utils.reportflow_http import FINAL, wait_status
from tests.utils.service import stack
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until

log = logging.getLogger(__name__)


async def test_reports_over_the_per_user_cap_stay_queued_until_one_ends(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    async with stack(tmp_path, smtp, temporal_client, max_running_reports_per_user=2) as s:
        user_id, user = await s.user()
        ranges = [(date(2026, 1, d), date(2026, 1, d + 6)) for d in (1, 8, 15, 22)]
        ids = [f"report-{user_id}-{a}-{b}" for a, b in ranges]
        with contextlib.ExitStack() as held:
            for report_id in ids:
                held.enter_context(s.hold_render(report_id))
            for a, b in ranges:
                response = await s.http.post(
                    "/reports", json={"start": str(a), "end": str(b)}, headers=user.headers
                )
                assert response.status_code == 202, response.text

            async def docs() -> list[dict[str, Any]]:
                return [
                    (await s.http.get(f"/reports/{r}", headers=user.headers)).json() for r in ids
                ]

            def stages(got: list[dict[str, Any]]) -> list[str]:
                return sorted(d["status"] + ":" + d["stage"] for d in got)

            # Two render (held); two wait, visibly queued, and keep waiting.
            want = ["queued:queued"] * 2 + ["running:rendering"] * 2
            await wait_until(docs, lambda got: stages(got) == want, what="two running, two queued")
            # Each waiting report tries for a slot twice more (Temporal's retries of
            # acquire_slot, as describe counts them): had one got through, it would
            # be rendering now.
            waiting = [d["report_id"] for d in await docs() if d["status"] == "queued"]
            tried = [(await _slot_attempt(temporal_client, r))[0] for r in waiting]

            async def attempts() -> list[int]:
                return [(await _slot_attempt(temporal_client, r))[0] for r in waiting]

            await wait_until(
                attempts,
                lambda now: all(n >= t + 2 for n, t in zip(now, tried, strict=True)),
                what="two more tries for a slot by each waiting report",
            )
            now = await docs()
            assert stages(now) == want
            queued = [d for d in now if d["status"] == "queued"]
            assert all("running reports to finish" in (d["waiting"] or "") for d in queued), queued
            assert all(d["last_error"] is None for d in queued), queued

            # A queued report can be cancelled while it waits.
            cancelled = queued[0]["report_id"]
            assert (
                await s.http.post(f"/reports/{cancelled}/cancel", headers=user.headers)
            ).status_code == 202
            doc = await wait_status(s.http, user, cancelled, FINAL)
            assert doc["status"] == "cancelled", doc
        # The holds are gone: the others complete, the queued one after a slot frees.
        for report_id in ids:
            doc = await wait_status(s.http, user, report_id, FINAL, timeout=90)
            assert doc["status"] == ("cancelled" if report_id == cancelled else "completed"), doc
        async with s.engine.connect() as conn:
            left = await conn.scalar(select(func.count()).select_from(report_slots))
        assert left == 0


async def _slot_attempt(client: Client, report_id: str) -> tuple[int, bool]:
    """The pending acquire_slot activity's attempt number, and whether one is running."""
    description = await client.get_workflow_handle(report_id).describe()
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name == "acquire_slot":
            started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            return pending.attempt, started
    return 0, False


async def test_a_cancel_that_races_the_grant_of_a_slot_gives_it_back(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client, database_url: str
) -> None:
    """The cancel reaches an acquire_slot attempt that then takes the slot: the run
    gives it back as it ends, not when the user next hits the cap."""
    async with stack(
        tmp_path,
        smtp,
        temporal_client,
        max_running_reports_per_user=1,
        database_url=database_url,
    ) as s:
        user_id, user = await s.user()
        (a_start, a_end), (b_start, b_end) = [
            (date(2026, 2, d), date(2026, 2, d + 6)) for d in (1, 8)
        ]
        running, racing = (
            f"report-{user_id}-{a}-{b}" for a, b in [(a_start, a_end), (b_start, b_end)]
        )
        with s.hold_render(running):
            for a, b in [(a_start, a_end), (b_start, b_end)]:
                response = await s.http.post(
                    "/reports", json={"start": str(a), "end": str(b)}, headers=user.headers
                )
                assert response.status_code == 202, response.text
            # The second waits for the first's slot, between two acquire_slot tries:
            # the next try is `next_try` and has not begun.
            next_try, _ = await wait_until(
                lambda: _slot_attempt(temporal_client, racing),
                lambda got: got[0] >= 2 and not got[1],
                what="the second report waiting for its next try",
            )
            async with s.engine.connect() as conn:
                # Hold the user's row (on SQLite: the database's write lock) and free
                # the slot inside that transaction: the next try blocks, then takes
                # the slot the moment the transaction commits. (A try that began
                # before the hold is over once the UPDATE returns: it went first.)
                held = await conn.begin()
                await conn.execute(
                    update(users).where(users.c.id == user_id).values(name=users.c.name)
                )
                await conn.execute(delete(report_slots).where(report_slots.c.report_id == running))
                await wait_until(
                    lambda: _slot_attempt(temporal_client, racing),
                    lambda got: got[0] >= next_try and got[1],
                    what="a try blocked on the held row",
                )
                await temporal_client.get_workflow_handle(racing).cancel()
                await wait_until(
                    lambda: temporal_client.get_workflow_handle(racing).fetch_history(),
                    lambda h: any(
                        e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
                        for e in h.events
                    ),
                    what="the workflow cancelling the attempt",
                )
                await held.commit()
            done = await wait_status(s.http, user, racing, FINAL)
            assert done["status"] == "cancelled", done

            async def slot_rows() -> int:
                async with s.engine.connect() as conn:
                    count = await conn.scalar(
                        select(func.count())
                        .select_from(report_slots)
                        .where(report_slots.c.report_id == racing)
                    )
                return int(count or 0)

            async def attempt_over() -> bool:
                """The blocked attempt has ended: the run recorded its end (it waited
                for it), or the slot it took is there (a run that did not wait)."""
                history = await temporal_client.get_workflow_handle(racing).fetch_history()
                acquire = {
                    e.event_id
                    for e in history.events
                    if e.activity_task_scheduled_event_attributes.activity_type.name
                    == "acquire_slot"
                }
                ends = [
                    e.activity_task_completed_event_attributes.scheduled_event_id
                    or e.activity_task_failed_event_attributes.scheduled_event_id
                    or e.activity_task_canceled_event_attributes.scheduled_event_id
                    for e in history.events
                ]
                return bool(acquire & set(ends)) or await slot_rows() > 0

            await wait_until(attempt_over, bool, what="the blocked attempt to end")
            # The attempt took the slot after the cancel; the run's end gave it back.
            assert await slot_rows() == 0, "the cancelled run's slot leaked"
        assert (await wait_status(s.http, user, running, FINAL))["status"] == "completed"


async def test_a_free_slot_is_taken_and_given_back_without_tasks_of_their_own(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    """With a slot free, taking and giving it back are local activities (and so is a
    quick query): the history schedules only the render and the email, and the slot
    is free again at the end."""
    async with stack(tmp_path, smtp, temporal_client, max_running_reports_per_user=2) as s:
        _, user = await s.user()
        report_id = (await s.http.post("/reports", json={}, headers=user.headers)).json()[
            "report_id"
        ]
        assert (await wait_status(s.http, user, report_id, FINAL))["status"] == "completed"
        history = await temporal_client.get_workflow_handle(report_id).fetch_history()
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert scheduled == ["render", "send_email"]
        local = [
            json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
            for e in history.events
            if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ]
        assert [m["activity_type"] for m in local] == ["acquire_slot", "query", "release_slot"]
        async with s.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(report_slots)) == 0


# ------------------------------------------------------------------- fairness


class StandIns:
    """Cheap activities under the real names (STYLE habit 9): the workflow is real,
    the work is a short sleep, and each report's first activity start is noted."""

    def __init__(self, work_seconds: float) -> None:
        self.work = work_seconds
        self.first_activity: dict[str, float] = {}

    @activity.defn(name="acquire_slot")
    async def acquire_slot(self, input: SlotInput) -> None:
        self.first_activity.setdefault(input.report_id, time.monotonic())

    @activity.defn(name="release_slot")
    async def release_slot(self, input: SlotInput) -> None:
        return None

    @activity.defn(name="query")
    async def query(self, input: QueryInput) -> ReportData:
        self.first_activity.setdefault(input.report_id, time.monotonic())
        await asyncio.sleep(self.work)
        return ReportData(
            report_id=input.report_id,
            user_id=input.user_id,
            user_name="x",
            start=input.start,
            end=input.end,
            currency="EUR",
            transaction_count=0,
            money_in_cents=0,
            money_out_cents=0,
            net_cents=0,
        )

    @activity.defn(name="render")
    async def render(self, input: RenderInput) -> RenderResult:
        await asyncio.sleep(self.work)
        return RenderResult(key=f"{input.data.report_id}/x.pdf", pages=1, bytes=1)

    @activity.defn(name="send_email")
    async def send_email(self, input: EmailInput) -> EmailResult:
        await asyncio.sleep(self.work)
        return EmailResult(message_id="<x@test>", recipients=["x@example.com"])

    @activity.defn(name="cleanup")
    async def cleanup(self, input: CleanupInput) -> None:
        return None

    @activity.defn(name="webhook_targets")
    async def webhook_targets(self, input: WebhookTargetsInput) -> WebhookTargets:
        return WebhookTargets([])

    @property
    def all(self) -> list[Any]:
        return [
            self.acquire_slot,
            self.release_slot,
            self.query,
            self.render,
            self.send_email,
            self.cleanup,
            self.webhook_targets,
        ]


@contextlib.asynccontextmanager
async def dev_server(fairness: bool) -> AsyncIterator[Client]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=[USER_ID_KEY],
        dev_server_log_level="error",
        dev_server_extra_args=FAIRNESS_DEV_ARGS
        if fairness
        else [
            "--dynamic-config-value",
            "matching.numTaskqueueReadPartitions=1",
            "--dynamic-config-value",
            "matching.numTaskqueueWritePartitions=1",
        ],
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


async def _wait_of_b(client: Client, settings: Settings, backlog: int) -> tuple[float, int]:
    """Start `backlog` reports of user A, then one of B, with one worker running:
    B's seconds from its start to its first activity, and how many of A's had
    started their first activity before B's did."""
    stand_ins = StandIns(work_seconds=0.01)
    day = date(2025, 1, 1)
    a_ids = []
    for i in range(0, backlog, 50):
        batch = [
            start_report(
                client,
                settings,
                user_id="userA",
                start=day + timedelta(days=n),
                end=day + timedelta(days=n),
                priority_key=BACKGROUND,
            )
            for n in range(i, min(i + 50, backlog))
        ]
        a_ids += [begun.report_id for begun in await asyncio.gather(*batch)]
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[GenerateReport, DeliverWebhooks],
        activities=stand_ins.all,
        max_concurrent_activities=4,
        max_concurrent_workflow_tasks=4,
    )
    email_worker = Worker(
        client,
        task_queue=email_queue(settings.task_queue),
        activities=[stand_ins.send_email],
        max_concurrent_activities=4,
    )
    async with worker, email_worker:
        await wait_until(
            lambda: asyncio.sleep(0, len(stand_ins.first_activity)),
            lambda n: n >= 5,
            what="A's reports under way",
        )
        b_started = time.monotonic()
        b_id = (
            await start_report(
                client,
                settings,
                user_id="userB",
                start=day,
                end=day,
                priority_key=BACKGROUND,
            )
        ).report_id
        await wait_until(
            lambda: asyncio.sleep(0, b_id in stand_ins.first_activity),
            bool,
            timeout=300,
            what="B's first activity",
        )
        b_first = stand_ins.first_activity[b_id]
        ahead = sum(1 for r in a_ids if stand_ins.first_activity.get(r, 1e18) < b_first)
    # The dev server, with what is left of the backlog, goes away with the test.
    return b_first - b_started, ahead


@pytest.mark.timeout(900)
async def test_one_users_backlog_does_not_starve_another_user(tmp_path: Path) -> None:
    backlog = 300
    figures: dict[str, tuple[float, int]] = {}
    for fairness in (True, False):
        settings = make_settings(
            tmp_path, 1, task_queue=f"fair-{uuid.uuid4().hex[:8]}", max_running_reports_per_user=0
        )
        async with dev_server(fairness) as client:
            figures["on" if fairness else "off"] = await _wait_of_b(client, settings, backlog)
    for name, (waited, ahead) in figures.items():
        log.warning(
            "fairness %s: user B waited %.2f s before its first activity; "
            "%d of user A's %d reports went first",
            name,
            waited,
            ahead,
            backlog,
        )
    on_ahead, off_ahead = figures["on"][1], figures["off"][1]
    # B is not served last (behind the whole backlog) with fairness on.
    assert on_ahead < backlog // 2, figures
    assert on_ahead < off_ahead, figures


def test_interactive_outranks_background() -> None:
    assert INTERACTIVE < BACKGROUND
