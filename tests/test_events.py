"""Server-Sent Events: the status document on every change, closing after the final one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow.models import STAGES
from tests.conftest import MakeUser, make_settings
from tests.utils.data import create_user, sample_transactions
from tests.utils.reportflow_http import Bearer, last_90_days
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api
from tests.utils.wait import wait_for

pytestmark = pytest.mark.usefixtures("worker")


async def read_events(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], events: list[Any] | None = None
) -> list[Any]:
    """The stream's status documents, to its end (appended to `events` as they come)."""
    events = [] if events is None else events
    async with http.stream("GET", path, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert kind == "status"
                events.append(json.loads(line.removeprefix("data: ")))
    return events


async def test_events_stream_every_stage_as_an_event_of_its_own(
    tmp_path: Path, smtp: SmtpServer, database_url: str, temporal_client: Client
) -> None:
    """The stream opens while the report is queued (no worker polls its task queue
    yet), so every stage the run publishes must arrive, each in its own event. A
    query of milliseconds runs inside the workflow task that took the slot, so
    `querying` is published only by a query that lasts (tests/test_temporal_cost.py)."""
    settings = make_settings(tmp_path, smtp.port, database_url=database_url)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    start, _ = last_90_days()
    user_id = await create_user(engine, transactions=sample_transactions(start, 90, rng_seed=4))
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()
    events: list[Any] = []

    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]

        path = f"/reports/{report_id}/events"
        reader = asyncio.create_task(read_events(http, path, user.headers, events))
        await wait_for(lambda: bool(events), what="the queued report's first event")
        async with in_process_worker(settings, temporal_client), asyncio.timeout(60):
            await reader

    # The run records "done" a moment before it closes: that may be one more event.
    steps = [(e["stage"], e["progress"]) for e in events]
    published = [(stage, progress) for stage, progress in STAGES.items() if stage != "querying"]
    assert list(dict.fromkeys(steps)) == published, f"each stage on its own: {steps}"
    assert events[0]["status"] == "queued"
    assert {e["status"] for e in events[1:-1]} == {"running"}
    assert events[-1]["status"] == "completed"


async def test_events_stream_changes_only_and_close_after_completion(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=2))
    created = await http.post("/reports", json={}, headers=user.headers)
    report_id = created.json()["report_id"]

    events = await read_events(http, f"/reports/{report_id}/events", user.headers)

    assert events, "at least the current status"
    assert events[-1]["status"] == "completed"
    assert all(e["report_id"] == report_id for e in events)
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), "progress never goes back"
    assert len({json.dumps(e, sort_keys=True) for e in events}) == len(events), "only changes"
    # A finished report sends its final document once and closes.
    again = await read_events(http, f"/reports/{report_id}/events", user.headers)
    assert [e["status"] for e in again] == ["completed"]


async def test_events_of_another_users_report_are_404(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    owner, stranger = await make_user(), await make_user()
    report_id = (await http.post("/reports", json={}, headers=owner.headers)).json()["report_id"]
    response = await http.get(f"/reports/{report_id}/events", headers=stranger.headers)
    assert response.status_code == 404
