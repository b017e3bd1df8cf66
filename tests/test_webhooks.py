"""Webhooks on real components: a signed delivery per report outcome, counted by a
receiver that verifies signatures; retries, 429/Retry-After, 410, SSRF, redirects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow.models import Backoff, RetrySchedule, Timeouts
from reportflow.service import webhooks
from tests.conftest import FAST_BACKOFF, MakeUser, make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, HasHeaders, report_id_for, wait_status
from tests.utils.service import PATIENT_RENDER, Stack, stack
from tests.utils.smtp import SmtpServer
from tests.utils.stack import WorkerProcess, serve_api
from tests.utils.wait import wait_until
from tests.utils.webhook_receiver import Receiver, serve_receiver

QUICK_WEBHOOK = Backoff(initial_seconds=0.3, coefficient=2.0, maximum_seconds=2.0,
                        maximum_attempts=6)  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as r:
        yield r


@pytest.fixture(scope="module")
async def hooked(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer, temporal_client: Client
) -> AsyncIterator[Stack]:
    """A service that may deliver to 127.0.0.1 (WEBHOOK_ALLOWED_HOSTS), retrying fast."""
    retry = RetrySchedule(
        query=FAST_BACKOFF, render=PATIENT_RENDER, email=FAST_BACKOFF, webhook=QUICK_WEBHOOK
    )
    async with stack(
        tmp_path_factory.mktemp("hooked"),
        smtp,
        temporal_client,
        retry=retry,
        webhook_allowed_hosts="127.0.0.1",
    ) as s:
        yield s


async def _register(
    http: httpx.AsyncClient, user: HasHeaders, receiver: Receiver, path: str
) -> dict[str, Any]:
    response = await http.post("/webhooks", json={"url": receiver.url(path)}, headers=user.headers)
    assert response.status_code == 201, response.text
    doc: dict[str, Any] = response.json()
    receiver.secrets[path] = doc["secret"]
    return doc


async def _deliveries(client: Client, report_id: str, outcome: str) -> dict[str, Any]:
    """The DeliverWebhooks run of this outcome, once it has finished (retries included)."""
    run_id = (await client.get_workflow_handle(report_id).describe()).run_id
    child = client.get_workflow_handle(f"webhooks-{report_id}-{outcome}-{run_id}")
    result: dict[str, Any] = await wait_until(
        child.result, lambda _: True, timeout=60, what=f"webhooks of {report_id}"
    )
    return result


async def _report(s: Stack, user: HasHeaders, body: dict[str, Any] | None = None) -> str:
    response = await s.http.post("/reports", json=body or {}, headers=user.headers)
    assert response.status_code == 202, response.text
    report_id: str = response.json()["report_id"]
    return report_id


@pytest.mark.usefixtures("worker")
async def test_webhook_endpoints_are_the_callers_and_the_secret_is_shown_once(
    http: httpx.AsyncClient, make_user: MakeUser, receiver: Receiver
) -> None:
    user, other = await make_user(), await make_user()
    # A public name: this service allows no private hosts. This user starts no
    # report, so nothing is ever sent there.
    url = "https://hooks.example.com/a"
    response = await http.post("/webhooks", json={"url": url}, headers=user.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_") and created["id"].startswith("wh_")
    listed = (await http.get("/webhooks", headers=user.headers)).json()
    assert [(w["id"], w["url"], w["disabled"]) for w in listed] == [(created["id"], url, False)]
    assert "secret" not in listed[0]
    assert (await http.get("/webhooks", headers=other.headers)).json() == []
    path = f"/webhooks/{created['id']}"
    assert (await http.delete(path, headers=other.headers)).status_code == 404
    assert (await http.delete(path, headers=user.headers)).status_code == 204
    assert (await http.delete(path, headers=user.headers)).status_code == 404
    for url in ("ftp://example.com/x", "not a url", "http:///nohost", "https://h:99999/"):
        bad = await http.post("/webhooks", json={"url": url}, headers=user.headers)
        assert bad.status_code == 422, (url, bad.text)
        assert "URL" in bad.json()["detail"] or "port" in bad.json()["detail"]


async def test_one_signed_delivery_per_outcome_even_across_a_retry(
    hooked: Stack, receiver: Receiver, smtp: SmtpServer, temporal_client: Client
) -> None:
    done_user = await hooked.user()
    await _register(hooked.http, done_user[1], receiver, "/done")
    receiver.answer("/done", (500, {}))  # the first delivery fails, the retry succeeds
    # A user with no email address: the report fails (NoEmailAddress).
    no_email = await create_user(hooked.engine, email=None)
    failed_user = (no_email, Bearer(await create_token(hooked.engine, user_id=no_email)))
    await _register(hooked.http, failed_user[1], receiver, "/failed")
    cancel_user = await hooked.user()
    await _register(hooked.http, cancel_user[1], receiver, "/cancelled")

    done = await _report(hooked, done_user[1])
    failed = await _report(hooked, failed_user[1])
    with hooked.hold_render(report_id_for(cancel_user[0])):
        cancelled = await _report(hooked, cancel_user[1])
        # The render is held: it fails and is retried until the cancel arrives.
        await wait_until(
            temporal_client.get_workflow_handle(cancelled).describe,
            lambda d: any(a.attempt >= 2 for a in d.raw_description.pending_activities),
            what="the held render retrying",
        )
        await temporal_client.get_workflow_handle(cancelled).cancel()
        await wait_status(hooked.http, cancel_user[1], cancelled, FINAL)
    for report_id, user in ((done, done_user), (failed, failed_user)):
        await wait_status(hooked.http, user[1], report_id, FINAL)

    for report_id, outcome, path in (
        (done, "completed", "/done"),
        (failed, "failed", "/failed"),
        (cancelled, "cancelled", "/cancelled"),
    ):
        result = await _deliveries(temporal_client, report_id, outcome)
        assert len(result["delivered"]) == 1 and result["failed"] == [], result
        got = receiver.got(path)
        assert len(got) == 1, (path, got)
        run_id = (await temporal_client.get_workflow_handle(report_id).describe()).run_id
        assert got[0].event_id == f"{report_id}.{outcome}.{run_id}"
        assert got[0].payload["type"] == f"report.{outcome}"
        assert got[0].payload["data"]["report_id"] == report_id
    assert [a.status for a in receiver.tries("/done")] == [500, 200]
    # The retry carried the same webhook-id, freshly timestamped and signed.
    first, second = receiver.tries("/done")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    told = receiver.got("/failed")[0].payload["data"]["error"]
    assert told["type"] == "NoEmailAddress" and told["code"] == "no_email_address"
    assert told["message"].startswith("your account has no email address")
    assert receiver.bad_signatures == 0


async def test_429_waits_retry_after_and_410_disables_the_endpoint(
    hooked: Stack, receiver: Receiver, temporal_client: Client
) -> None:
    _, user = await hooked.user()
    await _register(hooked.http, user, receiver, "/busy")
    gone = await _register(hooked.http, user, receiver, "/gone")
    receiver.answer("/busy", (429, {"Retry-After": "2"}))
    receiver.answer("/gone", (410, {}))
    report_id = await _report(hooked, user)
    await wait_status(hooked.http, user, report_id, FINAL)
    result = await _deliveries(temporal_client, report_id, "completed")
    assert sorted(result["delivered"]) == sorted(w["id"] for w in await _list(hooked, user))

    busy = receiver.tries("/busy")
    assert [a.status for a in busy] == [429, 200]
    waited = busy[1].at - busy[0].at
    assert waited >= 1.8, f"retried after {waited:.2f}s despite Retry-After: 2"
    assert [a.status for a in receiver.tries("/gone")] == [410]
    listed = {w["id"]: w["disabled"] for w in await _list(hooked, user)}
    assert listed[gone["id"]] is True

    # The disabled endpoint hears nothing of the next report.
    again = await _report(hooked, user, {"start": "2026-01-01", "end": "2026-01-31"})
    await wait_status(hooked.http, user, again, FINAL)
    await _deliveries(temporal_client, again, "completed")
    assert len(receiver.tries("/gone")) == 1
    assert len(receiver.got("/busy")) == 2


async def _list(s: Stack, user: HasHeaders) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await s.http.get("/webhooks", headers=user.headers)).json()
    return listed


async def test_a_redirect_is_not_followed(
    hooked: Stack, receiver: Receiver, temporal_client: Client
) -> None:
    _, user = await hooked.user()
    await _register(hooked.http, user, receiver, "/moved")
    receiver.answer("/moved", (302, {"Location": receiver.url("/elsewhere")}))
    report_id = await _report(hooked, user)
    await wait_status(hooked.http, user, report_id, FINAL)
    result = await _deliveries(temporal_client, report_id, "completed")
    assert result["delivered"] == [] and len(result["failed"]) == 1
    assert [a.status for a in receiver.tries("/moved")] == [302]
    assert receiver.tries("/elsewhere") == []


@pytest.mark.usefixtures("worker")
async def test_loopback_is_refused_unless_allowed(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    receiver: Receiver,
    temporal_client: Client,
    app_engine: AsyncEngine,
) -> None:
    """The session's service has no WEBHOOK_ALLOWED_HOSTS: 127.0.0.1 and a name that
    resolves to it are refused at delivery time, and the receiver hears nothing.
    POST /webhooks refuses both at once (test_webhook_limits); these rows stand
    for endpoints whose name came to resolve to loopback after registration."""
    user = await make_user()
    for path, host in (("/ip", "127.0.0.1"), ("/name", "localhost")):
        await webhooks.create_webhook(
            app_engine,
            user_id=user.id,
            url=f"http://{host}:{receiver.port}{path}",
            allowed=frozenset({host}),
        )
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    await wait_status(http, user, report_id, FINAL)
    result = await _deliveries(temporal_client, report_id, "completed")
    assert result["delivered"] == [] and len(result["failed"]) == 2
    assert receiver.tries("/ip") == [] and receiver.tries("/name") == []


async def test_a_worker_killed_mid_delivery_leaves_one_event_delivered(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client, receiver: Receiver
) -> None:
    """SIGKILL the worker while the receiver holds its delivery: another worker
    delivers again after the attempt's limit, under the same webhook-id, so the
    receiver that deduplicates on it acts once. (The first copy arrived: a sender
    that dies before the answer cannot know, so this is at least once, by id once.)"""
    settings = make_settings(
        tmp_path,
        smtp.port,
        webhook_allowed_hosts="127.0.0.1",
        retry=RetrySchedule(
            query=FAST_BACKOFF, render=FAST_BACKOFF, email=FAST_BACKOFF, webhook=QUICK_WEBHOOK
        ),
        timeouts=Timeouts(query=10, render=30, render_heartbeat=5, email=10, webhook=3),
    )
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    await engine.dispose()
    target = temporal_client.service_client.config.target_host
    first = WorkerProcess.start(settings, target, tmp_path / "worker-1.log")
    second: WorkerProcess | None = None
    try:
        await first.wait_ready()
        async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as http:
            await _register(http, user, receiver, "/kill")
            receiver.stalls["/kill"] = 8.0
            report_id = (await http.post("/reports", json={}, headers=user.headers)).json()[
                "report_id"
            ]
            await wait_until(
                lambda: asyncio.sleep(0, receiver.tries("/kill")), bool, what="the delivery"
            )
            first.kill_all()
            second = WorkerProcess.start(settings, target, tmp_path / "worker-2.log")
            await second.wait_ready()
            result = await _deliveries(temporal_client, report_id, "completed")
            doc = (await http.get(f"/reports/{report_id}", headers=user.headers)).json()
    finally:
        for process in (first, second):
            if process is not None and process.alive:
                process.kill_all()
    assert doc["status"] == "completed", doc
    assert len(result["delivered"]) == 1, result
    tries = receiver.tries("/kill")
    assert len(tries) == 2, tries
    assert len({t.headers["webhook-id"] for t in tries}) == 1
    await wait_until(
        lambda: asyncio.sleep(0, receiver.got("/kill")), lambda got: len(got) == 2, what="both"
    )
    assert len({a.event_id for a in receiver.got("/kill")}) == 1
    assert receiver.bad_signatures == 0
