"""Nothing exposed by accident: headers, the dev outbox, event-stream limits,
`add_recipient` checks, and what an admin token may and may not do (with audit lines)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from reportflow.api.app import create_app
from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow.models import MAX_EXTRA_RECIPIENTS
from tests.conftest import MakeUser, make_settings
from tests.utils.data import create_user
from tests.utils.reportflow_http import FINAL, Bearer, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api


@dataclass
class QueuedStack:
    """An API with no worker on its task queue: reports stay queued."""

    settings: Settings
    http: httpx.AsyncClient
    user: Bearer
    user_id: str
    admin: Bearer


@pytest.fixture
async def queued(tmp_path: Path, smtp: SmtpServer) -> AsyncIterator[QueuedStack]:
    settings = make_settings(
        tmp_path, smtp.port, events_max_streams_per_token=1, events_max_stream_seconds=1.5
    )
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    user_id = await create_user(engine)
    user = Bearer(await create_token(engine, user_id=user_id))
    admin = Bearer(await create_token(engine, admin=True))
    await engine.dispose()
    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield QueuedStack(settings, http, user, user_id, admin)


async def test_page_and_api_send_security_headers(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    csp = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    for response in (page, await http.get("/healthz"), await http.get("/reports")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_outbox_serves_loopback_only_and_attachments_download(
    tmp_path: Path, settings: Settings
) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "x"
    message.set_content("hi")
    message.add_attachment(
        b"<html><script>alert(1)</script>", maintype="text", subtype="html", filename='r"1.html'
    )
    (outbox / "m1.eml").write_bytes(message.as_bytes())
    app = create_app(settings, dev_outbox=outbox)

    async def get(client_host: str, path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://dev") as client:
            return await client.get(path)

    attachment = await get("127.0.0.1", "/dev/outbox/m1.eml/attachment")
    assert attachment.status_code == 200
    assert attachment.headers["Content-Disposition"] == 'attachment; filename="r1.html"'
    assert "sandbox" in attachment.headers["Content-Security-Policy"]
    assert (await get("127.0.0.1", "/dev/outbox")).headers["Content-Security-Policy"]
    for path in ("/dev/outbox", "/dev/outbox/m1.eml/attachment"):
        assert (await get("192.0.2.10", path)).status_code == 404  # from the network


async def test_event_streams_are_capped_per_token_and_in_time(queued: QueuedStack) -> None:
    http, user = queued.http, queued.user
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    path = f"/reports/{report_id}/events"

    async def whole_stream() -> list[str]:
        async with http.stream("GET", path, headers=user.headers) as response:
            assert response.status_code == 200
            return [line async for line in response.aiter_lines() if line]

    async with http.stream("GET", path, headers=user.headers) as first:
        assert first.status_code == 200  # from here on it holds the token's one slot
        lines = first.aiter_lines()
        assert await anext(lines) == "event: status"
        refused = await http.get(path, headers=user.headers)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "event streams open" in refused.json()["detail"]
        # The queued report never finishes; the stream ends at its maximum lifetime.
        rest = await asyncio.wait_for(_collect(lines), timeout=20)
    assert rest[-1] == "retry: 1000"
    again = await asyncio.wait_for(whole_stream(), timeout=20)
    assert again[-1] == "retry: 1000"  # the slot was given back


async def _collect(lines: AsyncIterator[str]) -> list[str]:
    return [line async for line in lines if line]


async def test_add_recipient_takes_well_formed_addresses_and_a_handful(
    queued: QueuedStack, temporal_client: Client, smtp: SmtpServer
) -> None:
    http, user = queued.http, queued.user
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    handle = temporal_client.get_workflow_handle(report_id)
    bad = ["nobody", "a@b", "Eve <eve@example.com>", "x@example.com, y@example.com", "a b@c.com"]
    good = [f"cc{n}@example.com" for n in range(MAX_EXTRA_RECIPIENTS + 2)]
    for address in [*bad, good[0], good[0], *good[1:]]:
        await handle.signal("add_recipient", address)

    async with in_process_worker(queued.settings, temporal_client):
        done = await wait_status(http, user, report_id, FINAL)

    kept = good[:MAX_EXTRA_RECIPIENTS]
    assert done["result"]["emailed_to"] == [f"{queued.user_id}@example.com", *kept]
    for address in [*good[MAX_EXTRA_RECIPIENTS:], "eve@example.com", "y@example.com"]:
        assert smtp.messages_to(address) == []


@pytest.mark.usefixtures("worker")
async def test_admin_token_powers_and_audit_lines(
    http: httpx.AsyncClient,
    make_user: MakeUser,
    app_engine: AsyncEngine,
    queued: QueuedStack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reportflow.core.audit")
    user = await make_user(email=None)  # its report fails: something to redrive
    admin = Bearer(await create_token(app_engine, admin=True))
    report_id = (await http.post("/reports", json={}, headers=user.headers)).json()["report_id"]
    await wait_status(http, user, report_id, FINAL)

    # Admin: the admin routes, and any report's status.
    for path in ("/admin/queue", "/admin/reports?status=failed", f"/reports/{report_id}"):
        assert (await http.get(path, headers=admin.headers)).status_code == 200, path
    # ... but it never acts as a user: no reports of its own, none started in a user's name.
    started = await http.post("/reports", json={}, headers=admin.headers)
    assert started.status_code == 403 and "admin token has no reports" in started.json()["detail"]
    assert (await http.get("/reports", headers=admin.headers)).status_code == 403
    # A user token opens none of the admin doors.
    for method, path in (
        ("GET", "/admin/queue"),
        ("GET", "/admin/reports"),
        ("POST", f"/admin/reports/{report_id}/redrive"),
        ("POST", "/codec/decode"),
    ):
        body: dict[str, object] | None = {"payloads": []} if path.startswith("/codec") else None
        answer = await http.request(method, path, headers=user.headers, json=body)
        assert answer.status_code == 403, (path, answer.text)

    redriven = await http.post(f"/admin/reports/{report_id}/redrive", headers=admin.headers)
    assert redriven.status_code == 202, redriven.text
    queued_id = (await queued.http.post("/reports", json={}, headers=queued.user.headers)).json()[
        "report_id"
    ]
    cancelled = await queued.http.post(f"/reports/{queued_id}/cancel", headers=queued.admin.headers)
    assert cancelled.status_code == 202, cancelled.text
    # The owner's own cancel is not an admin action: no audit line.
    other = (
        await queued.http.post(
            "/reports",
            json={"start": "2026-01-01", "end": "2026-01-31"},
            headers=queued.user.headers,
        )
    ).json()["report_id"]
    assert (
        await queued.http.post(f"/reports/{other}/cancel", headers=queued.user.headers)
    ).status_code == 202

    audit = [
        (r.actor, r.action, r.target)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "reportflow.core.audit"
    ]
    assert [(action, target) for _, action, target in audit] == [
        ("redrive", report_id),
        ("cancel", queued_id),
    ]
    assert all(actor.endswith("(admin)") and actor.startswith("tok_") for actor, _, _ in audit)
    json.dumps(audit)  # plain strings, ready for a log pipeline
