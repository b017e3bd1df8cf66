"""The promises under races, each provoked on real components.

One email even when an attempt times out mid-send or its ledger write fails;
a cancel that tells the truth; nothing orphaned and nothing wrongly deleted;
a redrive that keeps what operators added.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from reportflow.activities.report import ReportActivities
from reportflow.core.browser import Browser, find_chromium
from reportflow.core.db import create_engine, create_schema, deliveries
from reportflow.core.mailer import Mailer
from reportflow.core.store import FileStore
from reportflow.core.tokens import create_token
from reportflow.models import Backoff, RenderInput, RetrySchedule, Timeouts
from reportflow.service.retention import schedule_id
from tests.conftest import FAST_BACKOFF, make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import (
    FINAL,
    Bearer,
    download_pdf,
    report_id_for,
    wait_status,
)
from tests.utils.reports import make_report_data
from tests.utils.service import Stack, stack
from tests.utils.smtp import SmtpServer
from tests.utils.stack import WorkerProcess, serve_api
from tests.utils.wait import wait_for, wait_until


@pytest.fixture(scope="module")
async def patient(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer, temporal_client: Client
) -> AsyncIterator[Stack]:
    async with stack(tmp_path_factory.mktemp("patient"), smtp, temporal_client) as s:
        yield s


async def _stage(s: Stack, user: Bearer, report_id: str, stage: str) -> dict[str, Any]:
    return await wait_until(
        lambda: _status(s, user, report_id), lambda d: d["stage"] == stage, what=f"stage {stage}"
    )


async def _post(s: Stack, user: Bearer, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await s.http.post("/reports", json=body or {}, headers=user.headers)
    assert response.status_code == 202, response.text
    doc: dict[str, Any] = response.json()
    return doc


# ------------------------------------------------------------- exactly one email


async def test_send_stalled_past_the_attempt_limit_with_two_workers_delivers_once(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    """The server sits on the first message longer than the email attempt may run.
    The attempt's deadline ends its SMTP transaction before the attempt times out,
    so no send outlives its attempt, and the retry (on either worker) sends once."""
    settings = make_settings(
        tmp_path,
        smtp.port,
        timeouts=Timeouts(query=10, render=30, render_heartbeat=5, email=3),
        retry=RetrySchedule(
            query=FAST_BACKOFF, render=FAST_BACKOFF, email=Backoff(0.2, 2.0, 1.0, 10)
        ),
        smtp_timeout_seconds=30.0,  # aiosmtplib's limit is per command: far longer
    )
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    address = f"{user_id}@example.com"
    smtp.stall_after_data(1, seconds=6.0, to=address)
    target = temporal_env.client.service_client.config.target_host
    workers = [WorkerProcess.start(settings, target, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    try:
        for process in workers:
            await process.wait_ready()
        async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
            report_id = (await http.post("/reports", json={}, headers=user.headers)).json()[
                "report_id"
            ]
            done = await wait_status(http, user, report_id, FINAL, timeout=90)
            # The stalled transaction ends on the server's side after the retry:
            # had its client still been there, its 250 would count as a copy.
            await wait_for(lambda: smtp.idle, what="the stalled transaction to end")
    finally:
        for process in workers:
            process.process.terminate()
        for process in workers:
            process.process.wait(timeout=60)
    await engine.dispose()

    assert done["status"] == "completed", done
    assert len(smtp.attempts_to(address)) == 2, "the stalled try and one retry"
    messages = smtp.messages_to(address)
    assert len(messages) == 1, "the stalled transaction was ended, not left to finish"
    assert messages[0]["Message-ID"] == done["result"]["message_id"]


async def test_ledger_write_failing_after_the_250_still_sends_once(
    patient: Stack, smtp: SmtpServer
) -> None:
    """The server accepted the message; recording it fails once. Still one email."""
    user_id, user = await patient.user()
    report_id = report_id_for(user_id)
    failures: list[str] = []

    def fail_once(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        marks_sent = statement.startswith("UPDATE deliveries") and "sent" in repr(parameters)
        if marks_sent and report_id in repr(parameters) and not failures:
            failures.append(statement)
            raise OperationalError(statement, parameters, Exception("disk I/O error (injected)"))

    event.listen(Engine, "before_cursor_execute", fail_once)
    try:
        await _post(patient, user)
        done = await wait_status(patient.http, user, report_id, FINAL)
    finally:
        event.remove(Engine, "before_cursor_execute", fail_once)

    assert failures, "the ledger write failed once"
    assert done["status"] == "completed", done
    assert len(smtp.messages_to(f"{user_id}@example.com")) == 1
    async with patient.engine.connect() as conn:
        row = (
            await conn.execute(select(deliveries).where(deliveries.c.report_id == report_id))
        ).one()
    assert row.status == "sent"


# ------------------------------------------------------------- cancel tells the truth


async def test_cancel_while_the_email_is_sent_is_refused_and_the_report_completes(
    patient: Stack, smtp: SmtpServer, temporal_client: Client
) -> None:
    user_id, user = await patient.user()
    address = f"{user_id}@example.com"
    smtp.stall_after_data(1, seconds=3.0, to=address)  # slow, but inside the deadline
    report_id = (await _post(patient, user))["report_id"]
    await wait_for(lambda: bool(smtp.attempts_to(address)), what="the SMTP transaction")

    refused = await patient.http.post(f"/reports/{report_id}/cancel", headers=user.headers)
    # What `temporal workflow cancel` does: the workflow shields its email step.
    await temporal_client.get_workflow_handle(report_id).cancel()
    done = await wait_status(patient.http, user, report_id, FINAL)

    assert refused.status_code == 409
    assert "the email is already being sent" in refused.json()["detail"]
    assert done["status"] == "completed", done
    assert len(smtp.messages_to(address)) == 1
    assert (await download_pdf(patient.http, user, report_id)).startswith(b"%PDF")


async def test_cancel_before_the_email_step_sends_nothing_and_leaves_no_pdf(
    patient: Stack, smtp: SmtpServer
) -> None:
    """SMTP accepts everything here: only the cancel stands between the run and an email."""
    user_id, user = await patient.user()
    report_id = report_id_for(user_id)
    with patient.hold_render(report_id):
        created = await _post(patient, user)
        await _stage(patient, user, report_id, "rendering")
        cancel = await patient.http.post(f"/reports/{report_id}/cancel", headers=user.headers)
    # The render can now succeed: were the cancel ignored, the email would go out.
    done = await wait_status(patient.http, user, report_id, FINAL)

    assert cancel.status_code == 202, cancel.text
    assert cancel.json()["run_id"] == created["run_id"]
    assert done["status"] == "cancelled"
    assert done["error"]["message"] == "the report was cancelled; no email was sent"
    assert smtp.attempts_to(f"{user_id}@example.com") == []
    assert not patient.report_dir(report_id).exists(), "no PDF, no folder left behind"
    pdf = await patient.http.get(f"/reports/{report_id}/pdf", headers=user.headers)
    assert pdf.status_code == 409


async def test_a_failed_regeneration_keeps_the_previous_runs_pdf(
    patient: Stack, smtp: SmtpServer
) -> None:
    user_id, user = await patient.user()
    first = await _post(patient, user)
    report_id = first["report_id"]
    completed = await wait_status(patient.http, user, report_id, FINAL)
    assert completed["status"] == "completed"
    first_pdf = patient.report_dir(report_id) / f"{completed['run_id']}.pdf"
    assert first_pdf.is_file()

    smtp.refuse(1000, "550 5.1.1 Mailbox unavailable", to=f"{user_id}@example.com")
    again = await _post(patient, user, {"regenerate": True})
    failed = await wait_status(patient.http, user, report_id, FINAL)

    assert failed["status"] == "failed"
    assert again["run_id"] != completed["run_id"]
    assert not (patient.report_dir(report_id) / f"{again['run_id']}.pdf").exists(), (
        "the failed run removed its own PDF"
    )
    assert first_pdf.is_file(), "and left the completed run's PDF alone"


# ------------------------------------------------------------- redrive


async def test_redrive_keeps_the_recipients_operators_added(
    patient: Stack, smtp: SmtpServer, temporal_client: Client
) -> None:
    user_id, user = await patient.user()
    owner = f"{user_id}@example.com"
    ops = f"ops-{user_id}@example.com"
    report_id = report_id_for(user_id)
    smtp.refuse(1000, "550 5.1.1 Mailbox unavailable", to=owner)
    with patient.hold_render(report_id):
        await _post(patient, user)
        await _stage(patient, user, report_id, "rendering")
        handle = temporal_client.get_workflow_handle(report_id)
        await handle.signal("add_recipient", ops)

        async def recipients() -> Any:
            return (await (await handle.describe()).memo()).get("recipients")

        await wait_until(recipients, lambda r: r == [ops], what="the recipient in the memo")
    failed = await wait_status(patient.http, user, report_id, FINAL)
    assert failed["status"] == "failed", failed
    assert smtp.messages_to(ops) == []

    smtp.reset()  # the operator fixed the mailbox
    admin = await patient.admin()
    redriven = await patient.http.post(f"/admin/reports/{report_id}/redrive", headers=admin.headers)
    assert redriven.status_code == 202, redriven.text
    done = await wait_status(patient.http, user, report_id, {"completed", "failed"})

    assert done["status"] == "completed", done
    assert done["result"]["emailed_to"] == [owner, ops]
    assert len(smtp.messages_to(ops)) == 1
    assert len(smtp.messages_to(owner)) == 1


# ------------------------------------------------------------- retention


async def test_an_expired_pdf_answers_410_and_the_email_stays_sent(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    retention_days = 2 / 86400  # two seconds
    async with stack(tmp_path, smtp, temporal_client, report_retention_days=retention_days) as s:
        user_id, user = await s.user()
        report_id = (await _post(s, user))["report_id"]
        done = await wait_status(s.http, user, report_id, FINAL)
        assert done["status"] == "completed"
        assert done["result"]["pdf_expires_at"]
        pdf = s.report_dir(report_id) / f"{done['run_id']}.pdf"
        assert pdf.is_file()

        # The hourly schedule, run now (as `temporal schedule trigger` would).
        handle = temporal_client.get_schedule_handle(schedule_id(s.settings.task_queue))
        await wait_for(
            lambda: _older_than(pdf, retention_days * 86400),
            what="the PDF to pass retention",
        )
        await handle.trigger()
        await wait_for(lambda: not pdf.exists(), what="the schedule to remove the PDF")
        # The store dates a PDF by its write, the status by the report's completion
        # (a moment later): wait for the status to agree.
        status = await wait_until(
            lambda: _status(s, user, report_id),
            lambda doc: doc["result"]["pdf_expired"],
            what="the status to say the PDF expired",
        )
        download = await s.http.get(f"/reports/{report_id}/pdf", headers=user.headers)

    assert download.status_code == 410
    assert "expired" in download.json()["detail"]
    assert status["status"] == "completed"
    assert status["result"]["pdf_expired"] is True
    assert status["result"]["emailed_to"] == [f"{user_id}@example.com"]
    assert len(smtp.messages_to(f"{user_id}@example.com")) == 1


async def _status(s: Stack, user: Bearer, report_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = (await s.http.get(f"/reports/{report_id}", headers=user.headers)).json()
    return doc


def _older_than(path: Path, seconds: float) -> bool:
    return time.time() - path.stat().st_mtime > seconds


# ------------------------------------------------------------- nothing outlives its attempt


async def test_worker_shutdown_waits_for_an_email_finishing_past_the_grace(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    """SIGTERM while the server sits on a message longer than the worker's grace.
    The send runs on (inside its deadline), records itself, and only then does the
    worker close its database and exit, so the retry elsewhere finds the record.
    This server commits before it replies: cutting the send short would have
    delivered a message nobody recorded, and the retry would send a second one."""
    settings = make_settings(tmp_path, smtp.port, worker_grace_seconds=0.5)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    address = f"{user_id}@example.com"
    smtp.stall_after_data(1, seconds=4.0, to=address, delivers_anyway=True)
    target = temporal_env.client.service_client.config.target_host
    first = WorkerProcess.start(settings, target, tmp_path / "worker-1.log")
    second: WorkerProcess | None = None
    try:
        await first.wait_ready()
        async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
            report_id = (await http.post("/reports", json={}, headers=user.headers)).json()[
                "report_id"
            ]
            await wait_for(lambda: bool(smtp.attempts_to(address)), what="the send to start")
            first.process.terminate()
            await wait_for(lambda: not first.alive, timeout=30, what="the worker to exit")
            idle_at_exit = smtp.idle
            second = WorkerProcess.start(settings, target, tmp_path / "worker-2.log")
            done = await wait_status(http, user, report_id, FINAL, timeout=90)
    finally:
        for process in (first, second):
            if process is not None and process.alive:
                process.process.kill()
    async with engine.connect() as conn:
        ledger = (
            await conn.execute(select(deliveries).where(deliveries.c.report_id == report_id))
        ).one()
    await engine.dispose()

    assert ledger.status == "sent"
    assert idle_at_exit, "the worker exited only after the stalled send had its 250"
    assert first.process.returncode == 0, first.log_tail()
    assert done["status"] == "completed", done
    assert len(smtp.messages_to(address)) == 1


class SlowStore(FileStore):
    """A real file store whose writes take a while, so a cancel can land mid-write."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writing = threading.Event()

    def _put(self, key: str, data: bytes) -> None:
        self.writing.set()
        time.sleep(1.0)
        super()._put(key, data)


async def test_a_cancel_during_the_pdf_write_leaves_no_file(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "reports")
    browser = Browser(find_chromium(os.environ.get("CHROMIUM_EXECUTABLE")))
    activities = ReportActivities(
        engine=create_engine(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"),
        browser=browser,
        store=store,
        mailer=Mailer(host="127.0.0.1", port=9, mail_from="r <r@example.com>"),
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_run_id="run-1")
    try:
        rendering = asyncio.create_task(
            env.run(activities.render, RenderInput(make_report_data(report_id="report-x")))
        )
        await wait_for(store.writing.is_set, what="the PDF write to begin")
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rendering
    finally:
        await browser.close()
        await activities.engine.dispose()

    assert not list((tmp_path / "reports").rglob("*")), "no PDF, no partial file, no folder"
