"""The whole path, on real components: API -> Temporal -> worker -> SQL, Chromium, SMTP."""

from __future__ import annotations

import io
from datetime import date, timedelta

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.render import format_cents
from tests.conftest import MakeUser, User
from tests.utils.data import expected_totals, sample_transactions
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until

pytestmark = pytest.mark.usefixtures("worker")

FINAL = {"completed", "failed", "cancelled"}


def last_90_days() -> tuple[date, date]:
    end = date.today()
    return end - timedelta(days=89), end


async def wait_status(
    http: httpx.AsyncClient, user: User, report_id: str, statuses: set[str], timeout: float = 60
) -> dict[str, object]:
    async def probe() -> dict[str, object]:
        response = await http.get(f"/reports/{report_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        doc: dict[str, object] = response.json()
        return doc

    return await wait_until(
        probe, lambda d: d["status"] in statuses, timeout=timeout, what=f"{report_id} {statuses}"
    )


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


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

    pdf = await http.get(f"/reports/{report_id}/pdf", headers=user.headers)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    net, count = await expected_totals(app_engine, user.id, start, end)
    text = pdf_text(pdf.content)
    assert format_cents(net, "EUR") in text
    assert str(count) in text

    message = await smtp.wait_for_message(user.email or "")
    assert len(smtp.messages_to(user.email or "")) == 1
    attachments = list(message.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["application/pdf"]
    assert attachments[0].get_content() == pdf.content
    assert done["result"]["emailed_to"] == [user.email]  # type: ignore[index]
    assert done["result"]["message_id"] == message["Message-ID"]  # type: ignore[index]
