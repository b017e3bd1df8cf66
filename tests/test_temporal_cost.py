"""What one report costs Temporal, counted by the server itself: actions (Temporal
Cloud's billing unit) and history events, with every stage still published.

A quick query runs as a local attempt inside the workflow task that took the
slot, and the email step heartbeats only when its ledger is slow; a slow query
still shows `querying` in the status, and runs as an activity with its retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.service import RPCError

from reportflow.core.temporal import DEV_NAMESPACE, with_codec
from reportflow.dev import start_temporal
from reportflow.models import Timeouts
from reportflow.service.retention import schedule_id
from reportflow_dev.testing import TemporalDevServer, free_port
from tests.conftest import make_settings
from tests.utils.reportflow_http import FINAL, wait_status
from tests.utils.service import stack
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until

REPORTS = 3
MAX_ACTIONS = 8
MAX_EVENTS = 25


@pytest.fixture
async def counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Client, str]]:
    """A dev server of this test's own, with its metrics, which the API uses too:
    (client, metrics URL)."""
    server = TemporalDevServer(tmp_path / "temporal.db", tmp_path / "temporal.log",
                               metrics_port=free_port())  # fmt: skip
    await server.start()
    monkeypatch.setenv("TEMPORAL_ADDRESS", server.address)
    try:
        client = await Client.connect(server.address, namespace=DEV_NAMESPACE)
        yield (
            with_codec(client, make_settings(tmp_path, 0)),
            (f"http://127.0.0.1:{server.metrics_port}/metrics"),
        )
    finally:
        await server.stop()


async def _actions(metrics: str) -> Counter[str]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(metrics)).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples if family.name == "action" else []:
            if sample.labels.get("namespace") == DEV_NAMESPACE and sample.value:
                counts[sample.labels.get("action_type", "")] += int(sample.value)
    return counts


async def _settled(metrics: str) -> Counter[str]:
    """The action counter once it holds still: the server publishes its metrics about
    once a second, so two reads 1.5 s apart that agree have everything so far."""
    last: list[Counter[str]] = [await _actions(metrics)]

    async def moved_on() -> bool:
        await asyncio.sleep(1.5)
        now = await _actions(metrics)
        still = now == last[-1]
        last.append(now)
        return still

    await wait_until(moved_on, bool, timeout=60, interval=0, what="the action counter to settle")
    return last[-1]


def _scheduled(events: Sequence[HistoryEvent]) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_a_report_costs_at_most_eight_actions_and_25_events(
    tmp_path: Path, smtp: SmtpServer, counted: tuple[Client, str]
) -> None:
    client, metrics = counted
    # A render heartbeats only past a quarter of its heartbeat timeout (15 s here).
    async with stack(tmp_path, smtp, client, timeouts=Timeouts(render_heartbeat=60)) as s:
        users = [await s.user() for _ in range(REPORTS)]

        # The stack's own start (the retention schedule) is not a report's.
        async def scheduled() -> bool:
            try:
                await client.get_schedule_handle(schedule_id(s.settings.task_queue)).describe()
            except RPCError:
                return False
            return True

        await wait_until(scheduled, bool, what="the retention schedule")
        before = await _settled(metrics)
        ids = []
        for _, user in users:
            posted = await s.http.post("/reports", json={}, headers=user.headers)
            ids.append(posted.json()["report_id"])
        for report_id, (_, user) in zip(ids, users, strict=True):
            done = await wait_status(s.http, user, report_id, FINAL, timeout=120)
            assert done["status"] == "completed", done
            assert (done["stage"], done["progress"]) == ("done", 100)
        spent = (await _settled(metrics)) - before
        histories = [await client.get_workflow_handle(i).fetch_history() for i in ids]

    per_report = spent.total() / REPORTS
    assert per_report <= MAX_ACTIONS, f"{per_report:.2f} actions a report: {dict(spent)}"
    # A ledger that answers in time: the email step sends no heartbeat either.
    assert not spent["grpc_RecordActivityTaskHeartbeat"], dict(spent)
    for history in histories:
        events = history.events
        assert len(events) <= MAX_EVENTS, f"{len(events)} events"
        # The query ran inside the first workflow task; render and email are activities.
        assert _scheduled(events) == ["render", "send_email"]
    for user_id, _ in users:
        assert len(smtp.messages_to(f"{user_id}@example.com")) == 1


async def test_a_slow_query_shows_querying_and_runs_as_an_activity(
    tmp_path: Path, smtp: SmtpServer, counted: tuple[Client, str]
) -> None:
    """Past its local attempt (2 s) the query is published as `querying` while it
    runs, and finishes as an activity: one email, and the history says so."""
    client, _ = counted
    async with stack(tmp_path, smtp, client, report_kinds="tests.kinds.slow_kind:slow") as s:
        user_id, user = await s.user()
        posted = await s.http.post(
            "/reports", json={"kind": "slow-query", "params": {"seconds": 5}}, headers=user.headers
        )
        assert posted.status_code == 202, posted.text
        report_id = posted.json()["report_id"]
        seen = await wait_status(s.http, user, report_id, {"running"} | FINAL, timeout=60)
        querying = await wait_until(
            lambda: s.http.get(f"/reports/{report_id}", headers=user.headers),
            lambda r: r.json()["stage"] != "queued",
            timeout=30,
            what="the status to leave `queued`",
        )
        done = await wait_status(s.http, user, report_id, FINAL, timeout=120)
        history = await client.get_workflow_handle(report_id).fetch_history()

    assert seen["stage"] in {"queued", "querying"}
    assert querying.json()["stage"] == "querying", querying.json()
    assert done["status"] == "completed", done
    assert _scheduled(history.events) == ["query_kind", "render_kind", "send_email"]
    assert len(smtp.messages_to(f"{user_id}@example.com")) == 1


async def test_reportflow_devs_temporal_keeps_its_file_in_wal_mode(tmp_path: Path) -> None:
    """`reportflow dev`'s Temporal server writes a write-ahead log, each commit synced:
    the same durability as its default journal at a third less CPU a report."""
    env = await start_temporal(port=free_port(), ui_port=free_port(), var=tmp_path)
    try:
        await env.client.count_workflows()  # it serves, so the file is open
        with contextlib.closing(sqlite3.connect(tmp_path / "temporal.db")) as db:
            assert db.execute("pragma journal_mode").fetchone() == ("wal",)
    finally:
        await env.shutdown()
