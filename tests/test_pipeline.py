"""The whole path, on real components: API -> Temporal -> worker -> SQL, Chromium, SMTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from reportflow.report import format_cents
from tests.conftest import MakeUser
from tests.utils.data import expected_totals, sample_transactions
from tests.utils.reportflow_http import (
    FINAL,
    download_pdf,
    last_90_days,
    latest_run,
    pdf_text,
    wait_status,
)
from tests.utils.smtp import SmtpServer

pytestmark = pytest.mark.usefixtures("worker")


async def test_report_completes_with_pdf_and_one_email(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer, app_engine: AsyncEngine
) -> None:
    start, end = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=7))

    response = await http.post("/reports", json={}, headers=user.headers)

    assert response.status_code == 202, response.text
    doc = response.json()
    report_id = doc["report_id"]
    assert report_id == f"report-{user.id}-{start}-{end}"
    assert response.headers["Location"] == f"/reports/{report_id}"
    assert response.headers["Retry-After"]
    done = await wait_status(http, user, report_id, FINAL)
    assert done["status"] == "completed", done
    assert done["stage"] == "done" and done["progress"] == 100

    pdf = await download_pdf(http, user, report_id)
    net, count = await expected_totals(app_engine, user.id, start, end)
    text = pdf_text(pdf)
    assert format_cents(net, "EUR") in text
    assert str(count) in text

    message = await smtp.wait_for_message(user.email or "")
    assert len(smtp.messages_to(user.email or "")) == 1
    attachments = list(message.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["application/pdf"]
    assert attachments[0].get_content() == pdf
    assert done["result"]["emailed_to"] == [user.email]
    assert done["result"]["message_id"] == message["Message-ID"]


async def test_four_concurrent_clicks_make_one_report_and_one_email(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer, temporal_client: Client
) -> None:
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=3))

    responses = await asyncio.gather(
        *(http.post("/reports", json={}, headers=user.headers) for _ in range(4))
    )

    assert [r.status_code for r in responses] == [202] * 4
    ids = {r.json()["report_id"] for r in responses}
    assert len(ids) == 1
    report_id = ids.pop()
    runs = {r.json()["run_id"] for r in responses}
    assert len(runs) == 1, "every click joined the same run"
    done = await wait_status(http, user, report_id, FINAL)
    assert done["status"] == "completed"
    await smtp.wait_for_message(user.email or "")
    assert await latest_run(temporal_client, report_id) == done["run_id"] == runs.pop()
    # A fifth click after completion returns the finished report and starts nothing.
    again = await http.post("/reports", json={}, headers=user.headers)
    assert again.status_code == 202
    assert again.json()["status"] == "completed"
    assert "Retry-After" not in again.headers
    assert await latest_run(temporal_client, report_id) == done["run_id"]
    assert len(smtp.messages_to(user.email or "")) == 1


async def test_regenerate_runs_a_completed_report_again(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer, temporal_client: Client
) -> None:
    start, _end = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=5))
    first = await http.post("/reports", json={}, headers=user.headers)
    report_id = first.json()["report_id"]
    await wait_status(http, user, report_id, {"completed"})

    again = await http.post("/reports", json={"regenerate": True}, headers=user.headers)

    assert again.status_code == 202
    assert again.json()["report_id"] == report_id
    assert again.json()["run_id"] != first.json()["run_id"], "a second run"
    assert again.json()["run_id"] == await latest_run(temporal_client, report_id)
    await wait_status(http, user, report_id, {"completed"})
    async with asyncio.timeout(30):
        while len(smtp.messages_to(user.email or "")) < 2:
            await asyncio.sleep(0.05)
    ids = {m["Message-ID"] for m in smtp.messages_to(user.email or "")}
    assert len(ids) == 2, "each run has its own Message-ID"


async def test_post_without_a_body_covers_the_last_90_days(
    http: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    start, end = last_90_days()

    response = await http.post("/reports", headers=user.headers)

    assert response.status_code == 202, response.text
    assert response.json()["start"] == str(start)
    assert response.json()["end"] == str(end)
    await wait_status(http, user, response.json()["report_id"], FINAL)
