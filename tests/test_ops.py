"""Operators: the dead-letter view and redrive, queue depth, metrics."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema, users
from reportflow.core.tokens import create_token
from tests.conftest import MakeUser, make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import serve_api
from tests.utils.wait import wait_until

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="session")
async def admin(app_engine: AsyncEngine) -> dict[str, str]:
    return Bearer(await create_token(app_engine, admin=True)).headers


async def failed_ids(http: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    response = await http.get("/admin/reports?status=failed", headers=admin)
    assert response.status_code == 200, response.text
    return {r["report_id"]: r for r in response.json()["reports"]}


async def test_admin_views_need_an_admin_token(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    for path in ("/admin/reports?status=failed", "/admin/queue"):
        assert (await http.get(path)).status_code == 401
        assert (await http.get(path, headers=user.headers)).status_code == 403
    assert (await http.post("/admin/reports/x/redrive", headers=user.headers)).status_code == 403


async def test_failed_report_is_listed_with_reason_then_redriven_to_one_email(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    admin: dict[str, str],
    app_engine: AsyncEngine,
    smtp: SmtpServer,
) -> None:
    user = await make_user(email=None)
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    assert (await wait_status(http, user, report_id, FINAL))["status"] == "failed"

    listed = await wait_until(
        lambda: failed_ids(http, admin), lambda ids: report_id in ids, what="the DLQ entry"
    )
    entry = listed[report_id]
    assert entry["reason"] == "NoEmailAddress"
    assert entry["stage"] == "querying"
    assert entry["attempts"] == 1
    assert entry["user_id"] == user.id
    assert entry["failed_at"]

    # The operator fixes the cause, then redrives under the same ID.
    address = f"{user.id}@example.com"
    async with app_engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == user.id).values(email=address))
    redriven = await http.post(f"/admin/reports/{report_id}/redrive", headers=admin)

    assert redriven.status_code == 202, redriven.text
    assert redriven.json()["report_id"] == report_id
    assert (await wait_status(http, user, report_id, FINAL))["status"] == "completed"
    assert len(smtp.messages_to(address)) == 1
    await wait_until(
        lambda: failed_ids(http, admin), lambda ids: report_id not in ids, what="DLQ to clear"
    )
    again = await http.post(f"/admin/reports/{report_id}/redrive", headers=admin)
    assert again.status_code == 409
    assert "only failed reports" in again.json()["detail"]


async def test_smtp_rejection_is_a_dead_letter_with_its_reason(
    http: httpx.AsyncClient, make_user: MakeUser, admin: dict[str, str], smtp: SmtpServer
) -> None:
    user = await make_user()
    smtp.refuse(1, "550 5.1.1 Mailbox unavailable", to=user.email)
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    await wait_status(http, user, report_id, FINAL)

    listed = await wait_until(
        lambda: failed_ids(http, admin), lambda ids: report_id in ids, what="the DLQ entry"
    )
    assert listed[report_id]["reason"] == "SmtpRejected"
    assert "550" in listed[report_id]["message"]
    assert listed[report_id]["stage"] == "emailing"


async def test_queue_shows_backlog_when_no_worker_polls(
    tmp_path: Path, smtp: SmtpServer, temporal_env: object
) -> None:
    settings = make_settings(tmp_path, smtp.port)  # no worker on this task queue
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id)).headers
    admin = Bearer(await create_token(engine, admin=True)).headers
    await engine.dispose()

    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.post("/reports", json={}, headers=user)).status_code == 202
        queue = await wait_until(
            lambda: http.get("/admin/queue", headers=admin),
            lambda r: r.json()["backlog_count"] >= 1,
            what="the backlog to show",
        )
        metrics = await http.get("/metrics")

    doc = queue.json()
    assert doc["task_queue"] == settings.task_queue
    assert doc["pollers"] == {"workflow": 0, "activity": 0}
    assert doc["oldest_backlog_age_seconds"] >= 0
    assert doc["reports_by_status"]["running"] >= 1
    assert metrics.status_code == 200
    text = metrics.text
    assert f'reportflow_queue_backlog{{task_queue="{settings.task_queue}"}}' in text
    assert "reportflow_queue_oldest_backlog_age_seconds" in text
    assert 'reportflow_queue_pollers{kind="workflow"' in text
    assert 'reportflow_reports{status="running"}' in text


async def test_queue_shows_the_polling_worker(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    doc = (await http.get("/admin/queue", headers=admin)).json()
    assert doc["pollers"]["workflow"] >= 1
    assert doc["pollers"]["activity"] >= 1


async def reportflow_cli(*args: str, settings: Settings) -> tuple[int, str]:
    """The real `reportflow` command (Temporal's address comes from the environment)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reportflow.cli",
        *args,
        env={
            **os.environ,
            "TASK_QUEUE": settings.task_queue,
            "PAYLOAD_ENCRYPTION_KEYS": settings.payload_encryption_keys.get_secret_value(),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_dlq_command_lists_and_redrives(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    app_engine: AsyncEngine,
    smtp: SmtpServer,
    settings: Settings,
) -> None:
    user = await make_user(email=None)
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    await wait_status(http, user, report_id, FINAL)

    listed = await wait_until(
        lambda: reportflow_cli("dlq", "list", settings=settings),
        lambda result: report_id in result[1],
        what="the report in `reportflow dlq list`",
    )
    assert listed[0] == 0
    assert "NoEmailAddress" in listed[1]

    address = f"{user.id}@example.com"
    async with app_engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == user.id).values(email=address))
    code, out = await reportflow_cli("dlq", "redrive", report_id, settings=settings)

    assert code == 0, out
    assert f"{report_id}: redriven" in out
    audit = [json.loads(line) for line in out.splitlines() if '"reportflow.core.audit"' in line]
    assert [(a["action"], a["target"]) for a in audit] == [("redrive", report_id)]
    assert audit[0]["actor"].startswith("os-user ")
    # Another process started the run: the API's watcher sees it within
    # STATUS_REFRESH_SECONDS (its own starts and redrives it sees at once).
    assert (await wait_status(http, user, report_id, {"completed"}))["status"] == "completed"
    assert len(smtp.messages_to(address)) == 1
    code, out = await reportflow_cli("dlq", "redrive", report_id, settings=settings)
    assert code == 1 and "only failed reports" in out
