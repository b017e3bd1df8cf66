"""The commands of docs/operating.md, run with the real `temporal` CLI from the lock file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from reportflow.core.db import create_engine, create_schema, users
from reportflow.core.tokens import create_token
from tests.conftest import MakeUser, make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api
from tests.utils.wait import wait_until


@pytest.mark.usefixtures("worker")
async def test_list_describe_query_and_reset_a_failed_report(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    app_engine: AsyncEngine,
    smtp: SmtpServer,
    temporal_cli: Any,
) -> None:
    user = await make_user(email=None)
    codec = (str(http.base_url).rstrip("/"), await create_token(app_engine, admin=True))
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    await wait_status(http, user, report_id, FINAL)

    query = (
        f"WorkflowType='GenerateReport' AND ExecutionStatus='Failed' AND ReportUserId='{user.id}'"
    )
    listed = await wait_until(
        lambda: temporal_cli("workflow", "list", "--query", query, "-o", "json"),
        lambda out: report_id in out,
        what="the failed report in `temporal workflow list`",
    )
    assert json.loads(listed)[0]["execution"]["workflowId"] == report_id

    described = await temporal_cli("workflow", "describe", "--workflow-id", report_id, codec=codec)
    assert f"Report for user {user.id}" in described  # the static summary
    assert "NoEmailAddress" in described
    # Without the codec, the summary and memo are ciphertext.
    assert "Report for user" not in await temporal_cli(
        "workflow", "describe", "--workflow-id", report_id
    )

    # What the Web UI shows as the run's current details.
    metadata = await temporal_cli("workflow", "metadata", "--workflow-id", report_id, codec=codec)
    assert "Stage:** querying" in metadata

    progress = json.loads(
        await temporal_cli(
            "workflow",
            "query",
            "--workflow-id",
            report_id,
            "--name",
            "progress",
            "-o",
            "json",
            codec=codec,
        )
    )
    assert progress["queryResult"][0]["stage"] == "querying"

    # Fix the cause, then reset the run to its start: same ID, same input, a new run.
    address = f"{user.id}@example.com"
    async with app_engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == user.id).values(email=address))
    await temporal_cli(
        "workflow",
        "reset",
        "--workflow-id",
        report_id,
        "--type",
        "FirstWorkflowTask",
        "--reason",
        "user email fixed",
        "--yes",
    )
    done = await wait_until(
        lambda: http.get(f"/reports/{report_id}", headers=user.headers),
        lambda r: r.json()["status"] == "completed",
        what="the reset run to complete",
    )
    assert done.json()["result"]["emailed_to"] == [address]
    assert len(smtp.messages_to(address)) == 1


async def test_signal_add_recipient_and_cancel(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client, temporal_cli: Any
) -> None:
    settings = make_settings(tmp_path, smtp.port)  # no worker yet: the reports wait queued
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    keep_id, drop_id = await create_user(engine), await create_user(engine)
    keep = Bearer(await create_token(engine, user_id=keep_id))
    drop = Bearer(await create_token(engine, user_id=drop_id))
    admin = await create_token(engine, admin=True)
    await engine.dispose()

    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
        kept = (await http.post("/reports", json={}, headers=keep.headers)).json()["report_id"]
        dropped = (await http.post("/reports", json={}, headers=drop.headers)).json()["report_id"]

        await temporal_cli(
            "workflow",
            "signal",
            "--workflow-id",
            kept,
            "--name",
            "add_recipient",
            "--input",
            '"ops@example.com"',
            codec=(url, admin),  # the address is encrypted on its way in
        )
        await temporal_cli("workflow", "cancel", "--workflow-id", dropped)
        async with in_process_worker(settings, temporal_client):
            kept_doc = await wait_status(http, keep, kept, FINAL)
            dropped_doc = await wait_status(http, drop, dropped, FINAL)

    assert kept_doc["status"] == "completed"
    assert kept_doc["result"]["emailed_to"] == [f"{keep_id}@example.com", "ops@example.com"]
    message = smtp.messages_to("ops@example.com")[-1]
    assert message["Message-ID"] == kept_doc["result"]["message_id"]
    assert dropped_doc["status"] == "cancelled"
    assert smtp.messages_to(f"{drop_id}@example.com") == []
