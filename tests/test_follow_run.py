"""Clients follow the run their POST started, whichever API replica answers.

Two API replicas behind one Temporal: replica B watches a report whose first run
completed (and keeps that document: its timed refresh is minutes away), while
replica A starts a new run of it. A client that polls or streams B with the new
run's `run_id` must see that run, never the previous run's final state.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from reportflow.cli.request.follow import follow
from reportflow.cli.request.progress import ProgressLine
from reportflow.client import ReportflowClient
from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from tests.conftest import make_settings
from tests.utils.data import create_user, sample_transactions
from tests.utils.reportflow_http import Bearer, last_90_days
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api
from tests.utils.wait import wait_for, wait_until


@dataclass
class Replicas:
    a: httpx.AsyncClient
    b: httpx.AsyncClient
    settings: Settings
    user: Bearer


@pytest.fixture
async def replicas(tmp_path: Path, smtp: SmtpServer, database_url: str) -> AsyncIterator[Replicas]:
    settings = make_settings(
        tmp_path,
        smtp.port,
        database_url=database_url,
        status_refresh_seconds=300.0,  # a closed run is not described again in a test
        status_watch_idle_seconds=300.0,  # and B's watcher outlives its readers
    )
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    start, _ = last_90_days()
    user_id = await create_user(engine, transactions=sample_transactions(start, 20, rng_seed=7))
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()
    async with (
        serve_api(settings) as url_a,
        serve_api(settings) as url_b,
        httpx.AsyncClient(base_url=url_a, timeout=60, headers=user.headers) as a,
        httpx.AsyncClient(base_url=url_b, timeout=60, headers=user.headers) as b,
    ):
        yield Replicas(a, b, settings, user)


async def _completed_then_new_run(
    replicas: Replicas, temporal_client: Client
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first run, completed and held by B's watcher; then the second run, started
    through A and left queued (no worker polls)."""
    async with in_process_worker(replicas.settings, temporal_client):
        first = (await replicas.a.post("/reports", json={})).json()
        report_id = first["report_id"]
        done = await wait_until(
            lambda: replicas.b.get(f"/reports/{report_id}"),
            lambda r: r.json()["status"] == "completed",
            timeout=60,
            what="the first run completed, as B sees it",
        )
    assert done.json()["run_id"] == first["run_id"]

    second = await replicas.a.post("/reports", json={"regenerate": True})
    assert second.status_code == 202, second.text
    new = second.json()
    assert new["run_id"] != first["run_id"]
    assert new["status"] == "queued"
    # B still holds the first run: what a client without run_id would be told.
    stale = (await replicas.b.get(f"/reports/{report_id}")).json()
    assert (stale["run_id"], stale["status"]) == (first["run_id"], "completed")
    return first, new


async def test_a_poll_on_another_replica_shows_the_run_its_post_started(
    replicas: Replicas, temporal_client: Client
) -> None:
    first, new = await _completed_then_new_run(replicas, temporal_client)
    path = f"/reports/{new['report_id']}"

    # Both the ASGI fast path and the route (through an If-None-Match miss) answer it.
    for headers in ({}, {"If-None-Match": '"other"'}):
        read = await replicas.b.get(path, params={"run_id": new["run_id"]}, headers=headers)
        assert read.status_code == 200, read.text
        assert (read.json()["run_id"], read.json()["status"]) == (new["run_id"], "queued")
        assert read.headers["Retry-After"]

    # The older run stays readable by its own ID, and a run ID that is not a
    # run of this report is "no such report", a malformed one a 422.
    old = await replicas.b.get(path, params={"run_id": first["run_id"]})
    assert (old.json()["run_id"], old.json()["status"]) == (first["run_id"], "completed")
    unknown = await replicas.b.get(path, params={"run_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12})
    assert unknown.status_code == 404
    malformed = await replicas.b.get(path, params={"run_id": "not-a-run"})
    assert malformed.status_code == 422
    assert "run_id" in malformed.text

    # A POST joining the open run through B answers with that run, not B's old document.
    joined = (await replicas.b.post("/reports", json={})).json()
    assert (joined["run_id"], joined["status"]) == (new["run_id"], "queued")


async def test_sse_and_the_cli_on_another_replica_follow_the_new_run_to_its_end(
    replicas: Replicas, temporal_client: Client
) -> None:
    first, new = await _completed_then_new_run(replicas, temporal_client)
    report_id, run_id = new["report_id"], new["run_id"]
    events: list[dict[str, Any]] = []

    async def read() -> None:
        path = f"/reports/{report_id}/events"
        async with replicas.b.stream("GET", path, params={"run_id": run_id}) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))

    async def cli() -> dict[str, Any]:
        progress = ProgressLine(io.StringIO(), tty=False)
        client = ReportflowClient(http=replicas.b)  # the replica's own httpx client
        return await follow(client, report_id, progress, run_id=run_id)

    reader = asyncio.create_task(read())
    followed = asyncio.create_task(cli())
    await wait_for(lambda: bool(events), timeout=30, what="the stream's first event")
    assert (events[0]["run_id"], events[0]["status"]) == (run_id, "queued")
    assert not followed.done(), "the CLI stopped at a run that is not the one it follows"

    async with in_process_worker(replicas.settings, temporal_client), asyncio.timeout(60):
        await reader
        doc = await followed

    assert {e["run_id"] for e in events} == {run_id}
    assert events[-1]["status"] == "completed"
    assert (doc["run_id"], doc["status"]) == (run_id, "completed")
    assert doc["completed_at"] != first.get("completed_at")
