"""The per-user start limit lives in the database: two API processes share it,
a restart keeps it, and concurrent requests through both never exceed it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from reportflow.api.ratelimit import RateLimiter
from reportflow.contract import today
from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow_dev.testing import ApiProcess
from tests.conftest import make_settings
from tests.utils.data import create_user
from tests.utils.postgres import scratch_database
from tests.utils.reportflow_http import Bearer
from tests.utils.smtp import SmtpServer

LIMIT = 4


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    async with scratch_database("rf_ratelimit") as url:
        yield url


@contextlib.contextmanager
def api_processes(
    settings: Settings, address: str, logs: Path, count: int
) -> Iterator[list[ApiProcess]]:
    apis = [ApiProcess.start(settings, address, logs / f"api-{n}.log") for n in range(count)]
    try:
        yield apis
    finally:
        for api in apis:
            api.stop()


async def _post(api: ApiProcess, user: Bearer, days_ago: int) -> httpx.Response:
    day = today() - timedelta(days=days_ago)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        return await http.post(
            "/reports", json={"start": str(day), "end": str(day)}, headers=user.headers
        )


async def _terminate_started(client: Client, user_id: str) -> None:
    """No worker runs these reports: end them so they do not linger on the server."""
    async for execution in client.list_workflows(f"WorkflowId STARTS_WITH 'report-{user_id}-'"):
        if execution.status == WorkflowExecutionStatus.RUNNING:
            await client.get_workflow_handle(execution.id).terminate("test over")


async def test_limit_holds_across_two_api_processes_and_a_restart(
    database: str,
    tmp_path: Path,
    smtp: SmtpServer,
    temporal_env: WorkflowEnvironment,
) -> None:
    settings = make_settings(
        tmp_path, smtp.port, database_url=database, rate_limit_per_minute=LIMIT
    )
    engine = create_engine(database)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    racer_id = await create_user(engine)
    racer = Bearer(await create_token(engine, user_id=racer_id))
    await engine.dispose()
    address = temporal_env.client.service_client.config.target_host

    try:
        with api_processes(settings, address, tmp_path, 2) as (a, b):
            await asyncio.gather(a.wait_ready(), b.wait_ready())
            # Twice the limit at once, through both replicas: exactly LIMIT get through.
            racing = await asyncio.gather(
                *(_post((a, b)[n % 2], racer, n + 1) for n in range(2 * LIMIT))
            )
            assert sorted(r.status_code for r in racing) == [202] * LIMIT + [429] * LIMIT

            # Alternating replicas: each saw only half, yet the fifth start is refused.
            codes = [(await _post((a, b)[n % 2], user, n + 1)).status_code for n in range(LIMIT)]
            assert codes == [202] * LIMIT
            refused = await _post(b, user, LIMIT + 1)
            assert refused.status_code == 429, refused.text
            assert 1 <= int(refused.headers["Retry-After"]) <= 60 // LIMIT
            burst_at = time.monotonic()
            assert (await _post(a, user, LIMIT + 2)).status_code == 429

        # Both replicas restarted (a deploy). Forgotten counts would let a whole new
        # burst of LIMIT through; kept ones only the slots refilled since (one per
        # 60/LIMIT s, so fewer than LIMIT within the minute).
        with api_processes(settings, address, tmp_path, 1) as (again,):
            await again.wait_ready()
            codes = [(await _post(again, user, LIMIT + 3 + n)).status_code for n in range(LIMIT)]
            elapsed = time.monotonic() - burst_at
            assert elapsed < 60, f"the restart took {elapsed:.0f} s, past the window under test"
            assert codes.count(202) < LIMIT, (codes, elapsed)
            # (+1: the slots count from the first start of the burst, a moment earlier)
            assert codes.count(202) <= elapsed // (60 / LIMIT) + 1, (codes, elapsed)
    finally:
        await _terminate_started(temporal_env.client, user_id)
        await _terminate_started(temporal_env.client, racer_id)


async def test_limiter_refills_one_start_per_interval(database: str) -> None:
    engine = create_engine(database)
    await create_schema(engine)
    # Two limiters on one database stand for two replicas: 2 starts per 2 s.
    first, second = (RateLimiter(engine, per_minute=2, window_seconds=2.0) for _ in range(2))
    try:
        assert await first.retry_after("u") == 0
        assert await second.retry_after("u") == 0
        wait = await first.retry_after("u")
        assert wait == 1
        assert await second.retry_after("other user") == 0
        deadline = time.monotonic() + 5
        while (await second.retry_after("u")) != 0:
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.1)
        assert await first.retry_after("u") == 1  # one slot came back, and it is taken
    finally:
        first.close()
        second.close()
        await engine.dispose()


async def test_a_start_read_a_moment_late_still_gets_the_last_slot(database: str) -> None:
    """Two replicas whose clocks (or lock waits) differ by 50 ms: the one that is
    behind still gets the last slot of a burst, and nobody gets one more."""
    engine = create_engine(database)
    await create_schema(engine)
    start = time.time()
    ahead = RateLimiter(engine, per_minute=LIMIT, clock=lambda: start + 0.05)
    behind = RateLimiter(engine, per_minute=LIMIT, clock=lambda: start)
    try:
        for _ in range(LIMIT - 1):
            assert await ahead.retry_after("u") == 0
        assert await behind.retry_after("u") == 0
        assert await behind.retry_after("u") > 0
        assert await ahead.retry_after("u") > 0
    finally:
        ahead.close()
        behind.close()
        await engine.dispose()


async def test_many_starts_at_once_through_two_limiters_get_exactly_the_limit(
    database: str,
) -> None:
    """Two replicas' limiters on one database, 25 starts at once through each: the
    database decides, so exactly the limit gets through, for each user alike."""
    engine = create_engine(database)
    await create_schema(engine)
    limiters = [RateLimiter(engine, per_minute=10) for _ in range(2)]
    try:
        for user in ("first", "second"):
            answers = await asyncio.gather(*(limiters[n % 2].retry_after(user) for n in range(50)))
            assert answers.count(0) == 10, answers
            assert all(1 <= wait <= 6 for wait in answers if wait), answers
    finally:
        for limiter in limiters:
            limiter.close()
        await engine.dispose()
