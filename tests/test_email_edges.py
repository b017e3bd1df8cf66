"""The email after the server said yes: once the SMTP server answered 250 to the
message, it is sent. A hang-up or a 5xx to QUIT after it, or a database that
cannot record it for longer than the attempt may run, sends no second copy and
fails nothing. Recipients refused inside the accepted transaction are reported
as refused, not as emailed. Each on a real aiosmtpd server and a real worker.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from reportflow.core.db import create_engine, create_schema, deliveries
from reportflow.core.tokens import create_token
from reportflow.models import Backoff, RetrySchedule, Timeouts
from tests.conftest import FAST_BACKOFF, MakeUser, make_settings
from tests.utils.data import create_user
from tests.utils.postgres import scratch_database
from tests.utils.reportflow_http import FINAL, Bearer, report_id_for, wait_status
from tests.utils.service import PATIENT_RENDER, Stack, stack
from tests.utils.smtp import SmtpServer
from tests.utils.stack import WorkerProcess, serve_api
from tests.utils.wait import wait_for, wait_until
from tests.utils.webhook_receiver import Receiver, serve_receiver


async def _ledger_status(engine: AsyncEngine, report_id: str) -> str:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(deliveries.c.status).where(deliveries.c.report_id == report_id)
            )
        ).one()
    return str(row.status)


# ------------------------------------------------------------- after the 250


@pytest.mark.usefixtures("worker")
async def test_hang_up_right_after_the_250_gives_one_email_and_a_completed_report(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer, app_engine: AsyncEngine
) -> None:
    user = await make_user()
    address = user.email or ""
    smtp.hang_up_after_250(1, to=address)

    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    done = await wait_status(http, user, report_id, FINAL)

    assert done["status"] == "completed", done
    copies = smtp.messages_to(address)
    assert len(copies) == 1, "the QUIT that met a closed socket is not a failed send"
    assert len(smtp.attempts_to(address)) == 1
    assert copies[0]["Message-ID"] == done["result"]["message_id"]
    assert done["result"]["emailed_to"] == [address]
    assert await _ledger_status(app_engine, report_id) == "sent"


@pytest.mark.usefixtures("worker")
async def test_quit_answered_with_a_5xx_gives_one_email_and_a_completed_report(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer, app_engine: AsyncEngine
) -> None:
    user = await make_user()
    address = user.email or ""
    smtp.answer_quit("554 5.3.0 Closing with an error", to=address)

    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    done = await wait_status(http, user, report_id, FINAL)

    assert done["status"] == "completed", done
    assert done["error"] is None
    copies = smtp.messages_to(address)
    assert len(copies) == 1
    assert len(smtp.attempts_to(address)) == 1
    assert copies[0]["Message-ID"] == done["result"]["message_id"]
    assert await _ledger_status(app_engine, report_id) == "sent"


# ------------------------------------------------------------- refused recipients


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as r:
        yield r


@pytest.fixture(scope="module")
async def hooked(
    tmp_path_factory: pytest.TempPathFactory,
    smtp: SmtpServer,
    temporal_client: Client,
    stack_database_url: str,
) -> AsyncIterator[Stack]:
    """A service that may deliver webhooks to 127.0.0.1, on the stack's database."""
    async with stack(
        tmp_path_factory.mktemp("edges"),
        smtp,
        temporal_client,
        database_url=stack_database_url,
        retry=RetrySchedule(query=FAST_BACKOFF, render=PATIENT_RENDER, email=FAST_BACKOFF),
        webhook_allowed_hosts="127.0.0.1",
    ) as s:
        yield s


async def test_a_refused_recipient_is_reported_as_refused_and_not_as_emailed(
    hooked: Stack, smtp: SmtpServer, temporal_client: Client, receiver: Receiver
) -> None:
    user_id, user = await hooked.user()
    owner, ops = f"{user_id}@example.com", f"ops-{user_id}@example.com"
    smtp.refuse_recipient(ops, "550 5.1.1 Recipient address rejected")
    created = await hooked.http.post(
        "/webhooks", json={"url": receiver.url("/done")}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    receiver.secrets["/done"] = created.json()["secret"]
    report_id = report_id_for(user_id)
    with hooked.hold_render(report_id):
        started = await hooked.http.post("/reports", json={}, headers=user.headers)
        assert started.status_code == 202, started.text
        handle = temporal_client.get_workflow_handle(report_id)
        await handle.signal("add_recipient", ops)

        async def recipients() -> Any:
            return (await (await handle.describe()).memo()).get("recipients")

        await wait_until(recipients, lambda r: r == [ops], what="the recipient in the memo")
    done = await wait_status(hooked.http, user, report_id, FINAL)
    await wait_for(lambda: bool(receiver.got("/done")), what="the completed webhook")

    refused = [{"address": ops, "code": 550, "message": "5.1.1 Recipient address rejected"}]
    assert done["status"] == "completed", done
    assert done["result"]["emailed_to"] == [owner]
    assert done["result"]["refused"] == refused
    assert len(smtp.messages_to(owner)) == 1
    assert smtp.messages_to(ops) == []
    event = receiver.got("/done")[0].payload
    assert event["type"] == "report.completed"
    assert event["data"]["refused"] == refused


# ------------------------------------------------------------- the 250 nobody could record


@contextlib.asynccontextmanager
async def _own_database(tmp_path: Path) -> AsyncIterator[str]:
    """PostgreSQL when TEST_DATABASE_URL is set (a scratch database), else SQLite."""
    if os.environ.get("TEST_DATABASE_URL"):
        async with scratch_database("rf_edges") as url:
            yield url
        return
    yield f"sqlite+aiosqlite:///{tmp_path / 'reportflow.db'}"


@contextlib.asynccontextmanager
async def _ledger_unwritable(url: str, engine: AsyncEngine) -> AsyncIterator[None]:
    """Nobody can write the deliveries table meanwhile (reads go on): a real lock,
    as a long transaction or a migration holds it, not a stand-in for the database."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path is not None
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")  # the write lock; WAL readers are not blocked
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    async with engine.connect() as pg:
        await pg.execute(text("LOCK TABLE deliveries IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            await pg.rollback()


async def _email_attempt(client: Client, report_id: str) -> int:
    pending = (await client.get_workflow_handle(report_id).describe()).raw_description
    return max((a.attempt for a in pending.pending_activities), default=0)


async def test_a_250_the_database_cannot_record_past_the_attempt_is_not_sent_again(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment, temporal_client: Client
) -> None:
    """The server accepts; the ledger is locked from that moment for longer than the
    attempt (3 s) and its claim's lease (3.75 s) last. The retry finds the 250 in the
    attempt's heartbeat and sends nothing; without it the retry took the expired
    claim over and sent a second copy once the lock went."""
    attempt_seconds = 3.0
    async with _own_database(tmp_path) as url:
        settings = make_settings(
            tmp_path,
            smtp.port,
            database_url=url,
            timeouts=Timeouts(query=10, render=30, render_heartbeat=5, email=attempt_seconds),
            retry=RetrySchedule(
                query=FAST_BACKOFF, render=FAST_BACKOFF, email=Backoff(0.2, 2.0, 1.0, 30)
            ),
        )
        engine = create_engine(url)
        await create_schema(engine)
        user_id = await create_user(engine)
        user = Bearer(await create_token(engine, user_id=user_id))
        address = f"{user_id}@example.com"
        gate = smtp.gate_250(to=address)
        target = temporal_env.client.service_client.config.target_host
        worker = WorkerProcess.start(settings, target, tmp_path / "worker.log")
        try:
            await worker.wait_ready()
            async with serve_api(settings) as api, httpx.AsyncClient(base_url=api) as http:
                posted = await http.post("/reports", json={}, headers=user.headers)
                report_id = posted.json()["report_id"]
                await gate.wait_reached()
                async with _ledger_unwritable(url, engine):
                    locked_at = time.monotonic()
                    gate.open()
                    lease = 1.25 * attempt_seconds

                    async def held_long_enough() -> bool:
                        # Past the lease, and either the retry found the heartbeat or
                        # the retries went on far enough to take the claim over.
                        if time.monotonic() - locked_at < lease + 1.0:
                            return False
                        if "recorded in its heartbeat" in worker.log_text():
                            return True
                        return await _email_attempt(temporal_client, report_id) >= 4

                    await wait_until(
                        held_long_enough, bool, timeout=90, what="the retries to meet the lock"
                    )
                    held = time.monotonic() - locked_at
                done = await wait_status(http, user, report_id, FINAL, timeout=120)
                ledger = await wait_until(
                    lambda: _ledger_status(engine, report_id),
                    lambda status: status == "sent",
                    timeout=60,
                    what="the first attempt to record its 250 once the lock went",
                )
        finally:
            worker.process.terminate()
            worker.process.wait(timeout=60)
            await engine.dispose()

    assert held > attempt_seconds * 1.25, "the ledger was locked past the attempt and its lease"
    assert done["status"] == "completed", done
    copies = smtp.messages_to(address)
    assert len(copies) == 1, f"{len(copies)} copies: the retry sent again"
    assert copies[0]["Message-ID"] == done["result"]["message_id"]
    assert "recorded in its heartbeat" in worker.log_text()
    assert ledger == "sent"
