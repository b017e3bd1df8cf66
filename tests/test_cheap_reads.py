"""Reads that cost little however often they come: /metrics at most once per
METRICS_CACHE_SECONDS and behind a token, token lookups kept briefly, and a
dead-letter page with a bounded number of Temporal calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from reportflow.api.token_cache import TokenCache
from reportflow.core.tokens import create_token, revoke_token
from tests.utils.counted_api import CountedApi, counted_api
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker
from tests.utils.wait import wait_until


@pytest.fixture
async def api(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> AsyncIterator[CountedApi]:
    async with counted_api(
        tmp_path, smtp.port, metrics_token="scrape-secret", metrics_cache_seconds=60.0
    ) as api:
        yield api


async def test_metrics_need_the_metrics_token_or_an_admin_token(api: CountedApi) -> None:
    admin = await api.new_token(admin=True)

    assert (await api.http.get("/metrics")).status_code == 401
    assert (await api.http.get("/metrics", headers=api.user.headers)).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await api.http.get("/metrics", headers=wrong)).status_code == 401
    scraper = {"Authorization": "Bearer scrape-secret"}
    assert (await api.http.get("/metrics", headers=scraper)).status_code == 200
    assert (await api.http.get("/metrics", headers=admin.headers)).status_code == 200


async def test_metrics_are_computed_once_however_many_scrape(api: CountedApi) -> None:
    scraper = {"Authorization": "Bearer scrape-secret"}
    api.calls.clear()

    answers = await asyncio.gather(*(api.http.get("/metrics", headers=scraper) for _ in range(20)))

    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert "reportflow_queue_backlog{" in answers[0].text
    # One computation: both halves of the task queue, the email queue's activity
    # half, and one count by status.
    assert dict(api.calls) == {"describe_task_queue": 3, "count_workflow_executions": 1}


@asynccontextmanager
async def started(cache: TokenCache, engine: AsyncEngine) -> AsyncIterator[TokenCache]:
    await cache.start(engine)
    try:
        yield cache
    finally:
        await cache.close()


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every statement `engine` runs inside the block (the list grows)."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_token_lookups_known_or_unknown_cost_no_read_while_kept(
    app_engine: AsyncEngine,
) -> None:
    user_id = await create_user(app_engine)
    token = await create_token(app_engine, user_id=user_id)
    async with started(TokenCache(ttl_seconds=60), app_engine) as cache:
        uncached = TokenCache(ttl_seconds=0)
        assert await cache.lookup(app_engine, token) == await uncached.lookup(app_engine, token)
        assert await cache.lookup(app_engine, "rf_unknown") is None
        with statements(app_engine) as reads:
            for _ in range(5):
                known = await cache.lookup(app_engine, token)
                assert known is not None and known.user_id == user_id
                assert await cache.lookup(app_engine, "rf_unknown") is None
            assert reads == []  # neither the known token nor the unknown one was read
            await uncached.lookup(app_engine, token)
            assert reads  # (the counter counts)


async def test_a_revoked_token_is_forgotten_at_once_by_a_cache_that_kept_it(
    app_engine: AsyncEngine,
) -> None:
    """The cache keeps tokens for a minute here; revocation still takes effect at once
    (PostgreSQL: NOTIFY to the cache's LISTEN; SQLite: the file's data_version)."""
    user_id = await create_user(app_engine)
    token = await create_token(app_engine, user_id=user_id)
    async with started(TokenCache(ttl_seconds=60), app_engine) as cache:
        assert await cache.lookup(app_engine, token) is not None
        assert await cache.lookup(app_engine, token) is not None  # kept
        await revoke_token(app_engine, token)
        await wait_until(
            partial(cache.lookup, app_engine, token),
            lambda caller: caller is None,
            timeout=1.0,
            what="the revoked token forgotten",
        )


async def test_a_kept_token_lookup_ends_at_the_tokens_expiry(app_engine: AsyncEngine) -> None:
    user_id = await create_user(app_engine)
    token = await create_token(app_engine, user_id=user_id, lifetime=timedelta(seconds=1))
    async with started(TokenCache(ttl_seconds=60), app_engine) as cache:
        assert await cache.lookup(app_engine, token) is not None
        # Past its expiry the token is read again, and refused: the minute-long TTL
        # does not keep it.
        await wait_until(
            partial(cache.lookup, app_engine, token),
            lambda caller: caller is None,
            timeout=5,
            what="the expired token refused",
        )


async def test_dead_letter_page_costs_a_bounded_number_of_calls(
    api: CountedApi, temporal_client: Client
) -> None:
    admin = await api.new_token(admin=True)
    users = [await api.new_token(email=None) for _ in range(3)]  # no address: fails at once
    async with in_process_worker(api.settings, temporal_client):
        ids = []
        for user in users:
            created = await api.http.post("/reports", json={}, headers=user.headers)
            ids.append(created.json()["report_id"])
        for user, report_id in zip(users, ids, strict=True):
            assert (await wait_status(api.http, user, report_id, FINAL))["status"] == "failed"

    async def page() -> dict[str, dict[str, object]]:
        api.calls.clear()
        response = await api.http.get("/admin/reports?status=failed", headers=admin.headers)
        assert response.status_code == 200, response.text
        return {r["report_id"]: r for r in response.json()["reports"]}

    listed = await wait_until(page, lambda got: set(ids) <= set(got), what="the DLQ entries")

    assert all(listed[i]["reason"] == "NoEmailAddress" for i in ids)
    assert all(listed[i]["attempts"] == 1 for i in ids)
    assert api.calls["describe_workflow_execution"] == 0, api.calls
    assert api.calls["get_workflow_execution_history"] == 0, api.calls
    assert api.calls["list_workflow_executions"] == 2, api.calls
    # One short tail read per listed report (its attempts), nothing per run beyond.
    assert api.calls["get_workflow_execution_history_reverse"] == len(listed), api.calls


async def test_readiness_is_checked_once_however_many_probe(api: CountedApi) -> None:
    """Load balancers, every replica's probes and a burst of curls: one check of
    Temporal (and of the database) per READY_FOR_SECONDS, shared by all of them."""
    api.calls.clear()
    answers = await asyncio.gather(*(api.http.get("/readyz") for _ in range(20)))
    answers += [await api.http.get("/readyz") for _ in range(5)]

    assert {a.status_code for a in answers} == {200}
    assert api.calls["count_workflow_executions"] == 1
