"""When things go wrong: retries with backoff, permanent failures, cancellation."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest
from temporalio.client import Client

from reportflow.service.history import activity_starts
from tests.conftest import FAST_BACKOFF, MakeUser
from tests.utils.data import sample_transactions
from tests.utils.reportflow_http import FINAL, last_90_days, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until

pytestmark = pytest.mark.usefixtures("worker")


async def activity_attempts(client: Client, report_id: str, activity: str) -> list[int]:
    """The attempt number of every start of `activity` in the report's history."""
    return [s.attempt for s in await activity_starts(client, report_id) if s.activity == activity]


async def test_smtp_refusing_for_a_while_is_retried_then_one_email(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer
) -> None:
    start, _ = last_90_days()
    user = await make_user(sample_transactions(start, 30, rng_seed=11))
    smtp.refuse(2, "421 4.3.2 Service not available, try again later", to=user.email)

    created = await http.post("/reports", json={}, headers=user.headers)
    report_id = created.json()["report_id"]
    retrying = await wait_until(
        lambda: http.get(f"/reports/{report_id}", headers=user.headers),
        lambda r: r.json()["retry"] is not None or r.json()["status"] in FINAL,
        what="the retry to show in the status",
    )
    doc = retrying.json()
    done = await wait_status(http, user, report_id, FINAL)

    assert done["status"] == "completed", done
    if doc["status"] == "running":
        assert doc["stage"] == "emailing"
        assert doc["retry"]["activity"] == "send_email"
        # What is being retried, not the server's reply (that is the operators').
        assert doc["retry"]["last_error"] == "sending the email failed; trying again"
    assert len(smtp.messages_to(user.email or "")) == 1
    tries = smtp.attempts_to(user.email or "")
    assert len(tries) == 3
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    # Exponential backoff: at least the initial interval, then longer.
    assert gaps[0] >= FAST_BACKOFF.initial_seconds * 0.9
    assert gaps[1] >= FAST_BACKOFF.initial_seconds * FAST_BACKOFF.coefficient * 0.9


async def test_user_without_email_fails_at_once_and_says_why(
    http: httpx.AsyncClient, make_user: MakeUser, temporal_client: Client
) -> None:
    user = await make_user(email=None)

    created = await http.post("/reports", json={}, headers=user.headers)
    done = await wait_status(http, user, created.json()["report_id"], FINAL)

    assert done["status"] == "failed"
    assert done["error"]["type"] == "NoEmailAddress"
    assert done["error"]["code"] == "no_email_address"
    assert "no email address" in done["error"]["message"]
    assert done["last_error"] == done["error"]["message"]
    assert await activity_attempts(temporal_client, done["report_id"], "query") == [1]


async def test_smtp_permanent_rejection_fails_without_retrying(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer, temporal_client: Client
) -> None:
    user = await make_user()
    smtp.refuse(1, "554 5.7.1 Message rejected as spam", to=user.email)

    created = await http.post("/reports", json={}, headers=user.headers)
    done = await wait_status(http, user, created.json()["report_id"], FINAL)

    assert done["status"] == "failed"
    assert done["error"]["type"] == "SmtpRejected"
    assert done["error"]["code"] == "email_rejected"
    # The relay's reply (and its host) stays with operators and logs.
    assert "554" not in json.dumps(done) and "127.0.0.1" not in json.dumps(done)
    assert done["links"]["temporal_ui"] is None
    assert await activity_attempts(temporal_client, done["report_id"], "send_email") == [1]
    assert smtp.messages_to(user.email or "") == []


async def test_failed_report_is_started_again_by_the_next_request(
    http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer
) -> None:
    user = await make_user()
    smtp.refuse(1, "554 5.7.1 Message rejected", to=user.email)
    created = await http.post("/reports", json={}, headers=user.headers)
    report_id = created.json()["report_id"]
    assert (await wait_status(http, user, report_id, FINAL))["status"] == "failed"

    again = await http.post("/reports", json={}, headers=user.headers)

    assert again.json()["report_id"] == report_id
    assert again.json()["status"] in {"queued", "running"}
    assert (await wait_status(http, user, report_id, FINAL))["status"] == "completed"
    assert len(smtp.messages_to(user.email or "")) == 1
