"""Exactly-once email, as far as SMTP allows.

The ledger (a `deliveries` row checked before sending and written after) makes a
retried email step skip a message the server acknowledged. One window remains:
the server takes the message and the connection dies before its `250` reply
arrives. The sender cannot tell "delivered" from "lost", so it sends again
(at-least-once); both copies carry the same deterministic Message-ID, which
mail clients and relays use to collapse duplicates. This test measures that.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.activities.email import Limits, send_report_email
from reportflow.core.mailer import Mailer
from reportflow.core.store import FileStore
from reportflow.models import EmailInput
from tests.conftest import MakeUser
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, wait_status
from tests.utils.smtp import SmtpServer


@pytest.mark.usefixtures("worker")
async def test_reply_lost_after_data_gives_one_duplicate_with_the_same_message_id(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer
) -> None:
    user = await make_user()
    smtp.drop_after_data(1, to=user.email)

    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    done = await wait_status(http, user, report_id, FINAL)

    assert done["status"] == "completed"
    copies = smtp.messages_to(user.email or "")
    assert len(copies) == 2, "the lost reply makes the retry send once more"
    assert {m["Message-ID"] for m in copies} == {done["result"]["message_id"]}


async def test_email_step_run_twice_for_one_run_sends_once(
    tmp_path: Path, engine: AsyncEngine, smtp: SmtpServer
) -> None:
    """The ledger: a retried email step (same run) finds its delivery and skips it."""
    limits = Limits.for_attempt(10.0)
    user_id = await create_user(engine)
    store = FileStore(tmp_path)
    await store.put("r.pdf", b"%PDF-1.4 test")
    mailer = Mailer(host="127.0.0.1", port=smtp.port, mail_from="r <r@example.com>")
    data = EmailInput(
        report_id=f"report-{user_id}-2026-01-01-2026-01-31",
        user_id=user_id,
        pdf_key="r.pdf",
        start="2026-01-01",
        end="2026-01-31",
    )

    first = await send_report_email(
        engine=engine, mailer=mailer, store=store, data=data, run_id="run-1", limits=limits
    )
    second = await send_report_email(
        engine=engine, mailer=mailer, store=store, data=data, run_id="run-1", limits=limits
    )

    assert not first.already_sent
    assert second.already_sent
    assert second.message_id == first.message_id
    assert len(smtp.messages_to(f"{user_id}@example.com")) == 1
