"""A cancel that meets an outage, and a cancel whose answer comes from the workflow.

The report store refuses to delete (its folder made immutable, which binds root
too): a cancelled run still ends `cancelled`, announces it and stays out of the
dead-letter view; a failed run still announces `failed`; what is left behind is
the retention schedule's. The `cancel` Workflow Update refuses once the run is
emailing even when the API's read was older than that, and with no worker up the
API still answers, by the plain cancel request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from reportflow.contract import StatusDocument
from reportflow.core.tokens import Caller
from reportflow.models import Backoff, RetrySchedule
from reportflow.service import reports
from reportflow.service.retention import schedule_id
from reportflow.service.status import describe_report
from tests.conftest import FAST_BACKOFF
from tests.utils.reportflow_http import FINAL, Bearer, report_id_for, wait_status
from tests.utils.service import PATIENT_RENDER, Stack, stack
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker
from tests.utils.wait import wait_for, wait_until
from tests.utils.webhook_receiver import Receiver, serve_receiver

log = logging.getLogger(__name__)

RETENTION_DAYS = 2 / 86400  # two seconds: the leftover expires within the test
QUICK_WEBHOOK = Backoff(initial_seconds=0.3, coefficient=2.0, maximum_seconds=2.0,
                        maximum_attempts=6)  # fmt: skip
# The email is retried for a few seconds: time to take the store away meanwhile.
SLOW_EMAIL = Backoff(initial_seconds=0.5, coefficient=1.5, maximum_seconds=1.0,
                     maximum_attempts=6)  # fmt: skip


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """The report store refuses writes and deletes in `folder`, as one that is away
    does: immutable for root (chattr +i), read-only for anyone else."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("chattr is needed to make a folder unwritable for root")
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as r:
        yield r


@pytest.fixture
async def outage(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client, database_url: str
) -> AsyncIterator[Stack]:
    """A service on the suite's database (SQLite, and PostgreSQL when configured)."""
    retry = RetrySchedule(
        query=FAST_BACKOFF, render=PATIENT_RENDER, email=SLOW_EMAIL, webhook=QUICK_WEBHOOK
    )
    async with stack(
        tmp_path,
        smtp,
        temporal_client,
        retry=retry,
        webhook_allowed_hosts="127.0.0.1",
        report_retention_days=RETENTION_DAYS,
        database_url=database_url,
    ) as s:
        yield s


async def _hooked_user(s: Stack, receiver: Receiver, path: str) -> tuple[str, Bearer]:
    user_id, user = await s.user()
    response = await s.http.post(
        "/webhooks", json={"url": receiver.url(path)}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    receiver.secrets[path] = response.json()["secret"]
    return user_id, user


async def _doc(s: Stack, user: Bearer, report_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = (await s.http.get(f"/reports/{report_id}", headers=user.headers)).json()
    return doc


async def _expired_by_the_schedule(s: Stack, temporal_client: Client, leftover: Path) -> None:
    """The hourly retention schedule, run now, removes what the run left behind."""
    await wait_for(
        lambda: time.time() - leftover.stat().st_mtime > RETENTION_DAYS * 86400,
        what="the leftover to pass retention",
    )
    await temporal_client.get_schedule_handle(schedule_id(s.settings.task_queue)).trigger()
    await wait_for(lambda: not leftover.exists(), what="the retention schedule to remove it")


async def _not_in_the_dead_letter_view(s: Stack, user: Bearer, report_id: str) -> None:
    # Visibility lags: once the user's list shows the report cancelled, the
    # dead-letter listing (the same index) is as current as that.
    await wait_until(
        lambda: s.http.get("/reports", params={"status": "cancelled"}, headers=user.headers),
        lambda r: report_id in {d["report_id"] for d in r.json()["reports"]},
        what="the report listed as cancelled",
    )
    admin = await s.admin()
    failed = await s.http.get("/admin/reports", params={"status": "failed"}, headers=admin.headers)
    assert failed.status_code == 200, failed.text
    assert report_id not in {r["report_id"] for r in failed.json()["reports"]}


async def test_a_cancel_whose_cleanup_fails_still_ends_cancelled_and_announces_it(
    outage: Stack, receiver: Receiver, smtp: SmtpServer, temporal_client: Client
) -> None:
    user_id, user = await _hooked_user(outage, receiver, "/cancelled")
    report_id = report_id_for(user_id)
    with outage.hold_render(report_id):
        created = (await outage.http.post("/reports", json={}, headers=user.headers)).json()
        await wait_until(
            lambda: _doc(outage, user, report_id),
            lambda d: d["stage"] == "rendering",
            what="rendering",
        )
    # The render's place: what a render left behind, in a store that is now away
    # (the render keeps failing to write there, the cleanup fails to delete).
    folder = outage.report_dir(report_id)
    folder.mkdir()
    leftover = folder / f"{created['run_id']}.pdf"
    leftover.write_bytes(b"%PDF- partial")
    with unwritable(folder):
        cancel = await outage.http.post(f"/reports/{report_id}/cancel", headers=user.headers)
        assert cancel.status_code == 202, cancel.text
        # The cleanup is retried (five attempts) before the run gives up on it.
        done = await wait_status(outage.http, user, report_id, FINAL, timeout=90)
        assert done["status"] == "cancelled", done
        assert leftover.exists(), "the store refused: the cleanup could not remove it"
        await wait_for(lambda: bool(receiver.got("/cancelled")), what="the cancelled webhook")

    [event] = receiver.got("/cancelled")
    assert event.payload["type"] == "report.cancelled", event.payload
    assert smtp.attempts_to(f"{user_id}@example.com") == []
    await _not_in_the_dead_letter_view(outage, user, report_id)
    await _expired_by_the_schedule(outage, temporal_client, leftover)


async def test_a_failed_run_whose_pdf_removal_fails_still_announces_failed(
    outage: Stack, receiver: Receiver, smtp: SmtpServer, temporal_client: Client
) -> None:
    user_id, user = await _hooked_user(outage, receiver, "/failed")
    address = f"{user_id}@example.com"
    smtp.refuse(1000, to=address)  # temporary refusals until the email step gives up
    report_id = (await outage.http.post("/reports", json={}, headers=user.headers)).json()[
        "report_id"
    ]
    await wait_for(lambda: bool(smtp.attempts_to(address)), what="the first email attempt")
    doc = await _doc(outage, user, report_id)
    pdf = outage.report_dir(report_id) / f"{doc['run_id']}.pdf"
    assert pdf.is_file(), "the render wrote the PDF before the email step"
    with unwritable(pdf.parent):
        done = await wait_status(outage.http, user, report_id, FINAL, timeout=90)
        assert done["status"] == "failed", done
        await wait_for(lambda: bool(receiver.got("/failed")), what="the failed webhook")
        assert pdf.exists(), "the store refused: the failed run could not remove its PDF"
    smtp.reset()

    [event] = receiver.got("/failed")
    assert event.payload["type"] == "report.failed", event.payload
    assert done["error"]["type"] == "SmtpUnavailable", done
    assert event.payload["data"]["error"]["type"] == "SmtpUnavailable", event.payload
    await _expired_by_the_schedule(outage, temporal_client, pdf)


# ------------------------------------------------------ the answer from the workflow


async def test_a_cancel_after_a_stale_read_is_refused_once_the_email_step_started(
    outage: Stack, smtp: SmtpServer, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API read `rendering`, then the run entered `emailing`: the workflow's
    validator, not that read, answers, and the one email goes out."""
    user_id, user = await outage.user()
    address = f"{user_id}@example.com"
    report_id = report_id_for(user_id)
    with outage.hold_render(report_id):
        await outage.http.post("/reports", json={}, headers=user.headers)
        caller = Caller(user_id=user_id, is_admin=False)
        stale = await wait_until(
            lambda: describe_report(
                temporal_client, report_id, caller=caller, settings=outage.settings
            ),
            lambda d: d is not None and d.stage == "rendering",
            what="the read that saw rendering",
        )
        assert stale is not None
        smtp.stall_after_data(1, seconds=3.0, to=address)  # slow, inside the deadline
    await wait_for(lambda: bool(smtp.attempts_to(address)), what="the email being sent")

    async def stale_read(*args: object, **kwargs: object) -> StatusDocument:
        return stale

    # The race, made to happen every time: the service's read is the one from before.
    monkeypatch.setattr(reports, "describe_report", stale_read)
    with pytest.raises(reports.CannotCancel, match="the email is already being sent"):
        await reports.cancel_report(temporal_client, outage.settings, report_id, caller=caller)
    monkeypatch.undo()

    done = await wait_status(outage.http, user, report_id, FINAL)
    assert done["status"] == "completed", done
    assert len(smtp.messages_to(address)) == 1


async def test_temporal_workflow_cancel_still_cancels_and_the_update_answers_202(
    outage: Stack, smtp: SmtpServer, temporal_client: Client
) -> None:
    """The update's run ends CANCELLED by the same path as a cancel request, with
    the update's own events in the history and the request recorded by the run."""
    user_id, user = await outage.user()
    report_id = report_id_for(user_id)
    with outage.hold_render(report_id):
        await outage.http.post("/reports", json={}, headers=user.headers)
        await wait_until(
            lambda: _doc(outage, user, report_id),
            lambda d: d["stage"] == "rendering",
            what="rendering",
        )
        began = time.monotonic()
        cancel = await outage.http.post(f"/reports/{report_id}/cancel", headers=user.headers)
        answered = time.monotonic() - began
        done = await wait_status(outage.http, user, report_id, FINAL)
    log.warning("cancel by the update answered in %.3f s", answered)
    assert cancel.status_code == 202, cancel.text
    assert done["status"] == "cancelled", done
    assert answered < reports.CANCEL_UPDATE_WAIT_SECONDS, "answered by the update, no fallback"
    history = await temporal_client.get_workflow_handle(report_id).fetch_history()
    kinds = [e.WhichOneof("attributes") for e in history.events]
    assert "workflow_execution_update_accepted_event_attributes" in kinds
    assert "workflow_execution_cancel_requested_event_attributes" in kinds
    assert kinds[-1] == "workflow_execution_canceled_event_attributes"
    assert smtp.attempts_to(f"{user_id}@example.com") == []


async def test_with_no_worker_up_a_cancel_is_recorded_and_obeyed_later(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    """An update needs a worker; with none, the API answers 202 after a short wait
    with the plain cancel request, and the run obeys it once a worker is back."""
    async with stack(tmp_path, smtp, temporal_client, worker=False) as s:
        user_id, user = await s.user()
        report_id = (await s.http.post("/reports", json={}, headers=user.headers)).json()[
            "report_id"
        ]
        began = time.monotonic()
        cancel = await s.http.post(f"/reports/{report_id}/cancel", headers=user.headers)
        answered = time.monotonic() - began
        assert cancel.status_code == 202, cancel.text
        assert (await _doc(s, user, report_id))["status"] == "queued"
        async with in_process_worker(s.settings, temporal_client):
            done = await wait_status(s.http, user, report_id, FINAL)
    log.warning("cancel with no worker up answered in %.3f s", answered)
    assert done["status"] == "cancelled", done
    assert reports.CANCEL_UPDATE_WAIT_SECONDS <= answered < reports.CANCEL_UPDATE_WAIT_SECONDS + 5
    assert smtp.attempts_to(f"{user_id}@example.com") == []
