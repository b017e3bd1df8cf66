"""Status reads that cost Temporal calls per change, not per reader: one watcher
per report in the API process, fed by the run's history long-poll.

Temporal calls are counted at the API's own client (every RPC goes through its
service client), so the counts are exactly what the API asked of Temporal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from reportflow.core.db import create_engine
from reportflow.core.tokens import create_token, revoke_token
from reportflow.service.status import owner_of
from tests.utils.counted_api import CountedApi, counted_api
from tests.utils.reportflow_http import Bearer
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker
from tests.utils.wait import wait_for, wait_until


@pytest.fixture
async def api(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> AsyncIterator[CountedApi]:
    # No timed refresh within a test: whatever the watcher learns, it learns
    # from the run's history.
    async with counted_api(
        tmp_path, smtp.port, status_watch_idle_seconds=1.0, status_refresh_seconds=120.0
    ) as api:
        yield api


async def test_post_of_a_new_report_makes_one_temporal_call(api: CountedApi) -> None:
    api.calls.clear()
    created = await api.http.post("/reports", json={}, headers=api.user.headers)

    assert created.status_code == 202, created.text
    assert api.calls["start_workflow_execution"] == 1
    assert api.calls["describe_workflow_execution"] == 0  # the start's watcher follows history
    doc = created.json()
    assert (doc["status"], doc["stage"], doc["progress"]) == ("queued", "queued", 0)
    assert doc["run_id"]
    assert created.headers["Location"] == f"/reports/{doc['report_id']}"

    # The same request again joins the open run, described afresh.
    described = api.calls["describe_workflow_execution"]
    again = await api.http.post("/reports", json={}, headers=api.user.headers)
    assert again.json()["run_id"] == doc["run_id"]
    assert api.calls["describe_workflow_execution"] > described


async def test_a_start_nobody_reads_costs_no_describe_and_its_watcher_ends(
    api: CountedApi,
) -> None:
    api.calls.clear()
    created = await api.http.post("/reports", json={}, headers=api.user.headers)
    assert created.status_code == 202, created.text
    assert len(api.watchers) == 1  # holding the start's document for the first read

    await wait_for(lambda: len(api.watchers) == 0, timeout=10, what="the unread watcher to end")
    assert api.calls["get_workflow_execution_history"] >= 1, api.calls  # it followed the run
    assert api.calls["describe_workflow_execution"] == 0, api.calls


async def test_a_first_read_long_after_the_start_shows_where_the_run_is(
    api: CountedApi,
) -> None:
    """A run that moved on after its start (here, ended from outside this API) is
    read as it is, never as the start's document."""
    created = await api.http.post("/reports", json={}, headers=api.user.headers)
    report_id = created.json()["report_id"]
    await api.app.state.temporal.get_workflow_handle(report_id).terminate("test: moved on")
    await wait_for(lambda: len(api.watchers) == 0, timeout=10, what="the unread watcher to end")

    read = await api.http.get(f"/reports/{report_id}", headers=api.user.headers)
    assert read.status_code == 200
    assert read.json()["status"] == "failed", read.json()


async def test_the_read_right_after_the_start_waits_for_no_temporal_call(
    api: CountedApi,
) -> None:
    """Fire, acknowledge, poll: the first status reads after the 202 answer with the
    start's own document however long Temporal takes to answer the watcher's
    history long-poll, and once it answers (the run still queued: no worker polls
    this task queue) the document is the same, ETag and all, with no describe."""
    service = api.app.state.temporal.service_client
    rpc_call = service._rpc_call
    answer, following = asyncio.Event(), asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> Any:
        if kwargs["rpc"] == "get_workflow_execution_history":
            following.set()
            await answer.wait()
        return await rpc_call(*args, **kwargs)

    api.calls.clear()
    service._rpc_call = held
    try:
        async with asyncio.timeout(10):
            created = await api.http.post("/reports", json={}, headers=api.user.headers)
            report_id = created.json()["report_id"]
            await following.wait()  # the watcher's first history fetch, held
            first = await api.http.get(f"/reports/{report_id}", headers=api.user.headers)
            second = await api.http.get(f"/reports/{report_id}", headers=api.user.headers)
    finally:
        answer.set()
        service._rpc_call = rpc_call
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == created.json()
    assert first.headers["ETag"] == second.headers["ETag"]

    # The history so far (the start, its first workflow task scheduled) changes
    # nothing a reader sees.
    await wait_for(
        lambda: api.calls["get_workflow_execution_history"] >= 2, what="the history long-poll"
    )
    followed = await api.http.get(f"/reports/{report_id}", headers=api.user.headers)
    assert followed.headers["ETag"] == first.headers["ETag"]
    assert followed.json() == created.json()
    assert api.calls["describe_workflow_execution"] == 0, api.calls


async def test_concurrent_gets_share_the_start_s_watcher_and_it_expires(api: CountedApi) -> None:
    api.calls.clear()
    report_id = (await api.http.post("/reports", json={}, headers=api.user.headers)).json()[
        "report_id"
    ]  # no worker polls this task queue: the report stays queued

    answers = await asyncio.gather(
        *(api.http.get(f"/reports/{report_id}", headers=api.user.headers) for _ in range(50))
    )

    assert {r.status_code for r in answers} == {200}
    assert {r.json()["status"] for r in answers} == {"queued"}
    # No describe at all: the start's watcher follows the run's history.
    assert api.calls["describe_workflow_execution"] == 0, api.calls
    assert api.calls["get_workflow_execution_history"] <= 2, api.calls
    assert len(api.watchers) == 1

    # Readers gone: the watcher ends after STATUS_WATCH_IDLE_SECONDS and asks nothing more.
    await wait_for(lambda: len(api.watchers) == 0, timeout=10, what="the idle watcher to end")
    settled = sum(api.calls.values())
    await asyncio.sleep(api.settings.status_watch_idle_seconds * 2)  # proving a silence
    assert sum(api.calls.values()) == settled


async def test_unchanged_status_is_a_304_without_body(api: CountedApi) -> None:
    report_id = (await api.http.post("/reports", json={}, headers=api.user.headers)).json()[
        "report_id"
    ]
    first = await api.http.get(f"/reports/{report_id}", headers=api.user.headers)
    etag = first.headers["ETag"]

    again = await api.http.get(
        f"/reports/{report_id}", headers={**api.user.headers, "If-None-Match": etag}
    )
    other = await api.http.get(
        f"/reports/{report_id}", headers={**api.user.headers, "If-None-Match": '"stale"'}
    )

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Retry-After"]
    assert other.status_code == 200
    assert other.json() == first.json()


async def test_someone_elses_report_is_404_even_when_watched(api: CountedApi) -> None:
    report_id = (await api.http.post("/reports", json={}, headers=api.user.headers)).json()[
        "report_id"
    ]
    assert (await api.http.get(f"/reports/{report_id}", headers=api.user.headers)).is_success
    stranger = await api.new_token()

    for path in (f"/reports/{report_id}", f"/reports/{report_id}/events"):
        assert (await api.http.get(path, headers=stranger.headers)).status_code == 404


async def test_a_watched_status_still_checks_the_token_on_every_read(api: CountedApi) -> None:
    """Reads that succeed are answered before routing (StatusReads); they carry
    the route's headers, and a revoked token is refused within TOKEN_CACHE_SECONDS."""
    reader = await api.new_token()
    report_id = (await api.http.post("/reports", json={}, headers=reader.headers)).json()[
        "report_id"
    ]
    read = await api.http.get(f"/reports/{report_id}", headers=reader.headers)
    assert read.status_code == 200
    assert read.headers["Content-Type"] == "application/json"
    assert read.headers["Cache-Control"] == "private, no-cache"
    assert read.headers["X-Content-Type-Options"] == "nosniff"
    assert read.headers["Retry-After"] == "2"
    assert int(read.headers["Content-Length"]) == len(read.content)

    engine = create_engine(api.settings.database_url)
    try:
        await revoke_token(engine, reader.token)
    finally:
        await engine.dispose()
    refused = await wait_until(
        partial(api.http.get, f"/reports/{report_id}", headers=reader.headers),
        lambda answer: answer.status_code == 401,
        timeout=api.settings.token_cache_seconds + 3,
        what="the revoked token refused",
    )
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    # Refused because this token was revoked, not because reads broke for everyone:
    # another token of the same user still reads the report, on the fast path and
    # through the route (an If-None-Match that misses).
    engine = create_engine(api.settings.database_url)
    try:
        sibling = Bearer(await create_token(engine, user_id=owner_of(report_id)))
    finally:
        await engine.dispose()
    for extra in ({}, {"If-None-Match": '"other"'}):
        still = await api.http.get(f"/reports/{report_id}", headers={**sibling.headers, **extra})
        assert still.status_code == 200, still.text
    assert (await api.http.get("/reports", headers=reader.headers)).status_code == 401
    lowercase = {"Authorization": f"bearer {api.user.token}"}
    assert (await api.http.get(f"/reports/{report_id}", headers=lowercase)).status_code == 404


async def test_sse_follows_each_stage_from_history_events(
    api: CountedApi, temporal_client: Client
) -> None:
    report_id = (await api.http.post("/reports", json={}, headers=api.user.headers)).json()[
        "report_id"
    ]
    events: list[dict[str, Any]] = []

    async def read() -> None:
        path = f"/reports/{report_id}/events"
        async with api.http.stream("GET", path, headers=api.user.headers) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))

    reader = asyncio.create_task(read())
    await wait_for(lambda: bool(events), what="the first event")
    assert events[0]["status"] == "queued"
    api.calls.clear()

    # The run moves only once a worker polls; the timed refresh is two minutes
    # away, so every further event comes from the history long-poll.
    async with in_process_worker(api.settings, temporal_client):
        async with asyncio.timeout(60):
            await reader

    assert events[-1]["status"] == "completed"
    stages = [e["stage"] for e in events]
    assert stages == sorted(
        stages, key=["queued", "querying", "rendering", "emailing", "done"].index
    )
    assert len(set(stages)) >= 3, stages
    # Stages come from the memo upserts in history; the close is described once.
    assert api.calls["describe_workflow_execution"] <= 3, api.calls
