"""Webhooks an outsider could abuse: a cap per user that holds under a race on
both databases, creation rate limited, and URLs aimed at private space refused
at registration and at delivery, before any connection is made."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from reportflow.contract import CreatedWebhook
from reportflow.core.db import create_engine, create_schema, webhooks
from reportflow.models import WebhookEvent
from reportflow.service import webhooks as service
from tests.utils.data import create_user
from tests.utils.no_connect import watch_sockets
from tests.utils.postgres import scratch_database
from tests.utils.service import stack
from tests.utils.smtp import SmtpServer

# Each names 169.254.169.254 (the cloud metadata service), 10.0.0.5 or loopback:
# literally, through an IPv6 form that embeds it, or in a legacy IPv4 spelling.
PRIVATE_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/",
    "http://192.168.1.1:8080/x",
    "http://127.0.0.1:9/",
    "http://[::1]/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[64:ff9b::a00:5]/",  # NAT64 of 10.0.0.5
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://[::ffff:a00:5]/",
    "http://[::a9fe:a9fe]/",  # IPv4-compatible (::/96)
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f.1/",
    "http://0251.0376.0251.0376/",  # 169.254.169.254 in octal
    "http://localhost:8000/",
    "http://api.localhost/",
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}"
        return
    async with scratch_database("rf_hooks") as url:
        yield url


async def test_the_webhook_cap_holds_when_creates_race(database: str) -> None:
    """30 creates at once against a cap of 10: 10 endpoints, 20 refusals."""
    engine = create_engine(database)
    await create_schema(engine)
    try:
        user_id = await create_user(engine)
        results = await asyncio.gather(
            *(
                service.create_webhook(
                    engine, user_id=user_id, url=f"https://example.com/{n}", limit=10
                )
                for n in range(30)
            ),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, service.TooManyWebhooks)]
        made = [r for r in results if isinstance(r, CreatedWebhook)]
        assert (len(made), len(refused)) == (10, 20), [
            r for r in results if isinstance(r, BaseException) and r not in refused
        ]
        async with engine.connect() as conn:
            held = await conn.scalar(
                select(func.count()).select_from(webhooks).where(webhooks.c.user_id == user_id)
            )
        assert held == 10
    finally:
        await engine.dispose()


async def test_post_webhooks_caps_rate_limits_and_refuses_private_hosts(
    tmp_path: Path, smtp: SmtpServer, temporal_client: Client
) -> None:
    async with stack(
        tmp_path,
        smtp,
        temporal_client,
        worker=False,
        max_webhooks_per_user=3,
        create_rate_per_minute=5,
    ) as s:
        _, user = await s.user()
        for url in PRIVATE_URLS:
            refused = await s.http.post("/webhooks", json={"url": url}, headers=user.headers)
            assert refused.status_code == 422, (url, refused.text)
            assert (
                "public host" in refused.json()["detail"]
                or "this machine" in (refused.json()["detail"])
            ), url
        made = []
        for n in range(3):
            created = await s.http.post(
                "/webhooks", json={"url": f"https://example.com/{n}"}, headers=user.headers
            )
            assert created.status_code == 201, created.text
            made.append(created.json()["id"])
        over = await s.http.post(
            "/webhooks", json={"url": "https://example.com/3"}, headers=user.headers
        )
        assert over.status_code == 409
        assert "3 webhooks, the most one user may hold" in over.json()["detail"]
        # Deleting makes room; the fifth creation this minute is the last one allowed.
        assert (await s.http.delete(f"/webhooks/{made[0]}", headers=user.headers)).status_code
        again = await s.http.post(
            "/webhooks", json={"url": "https://example.com/4"}, headers=user.headers
        )
        assert again.status_code == 201, again.text
        await s.http.delete(f"/webhooks/{again.json()['id']}", headers=user.headers)
        limited = await s.http.post(
            "/webhooks", json={"url": "https://example.com/5"}, headers=user.headers
        )
        assert limited.status_code == 429, limited.text
        assert int(limited.headers["retry-after"]) >= 1
        assert "too many webhooks created" in limited.json()["detail"]


def test_registration_refuses_private_literals_without_a_lookup() -> None:
    with watch_sockets() as seen:
        for url in PRIVATE_URLS:
            with pytest.raises(service.UrlRefused):
                service.refuse_literal(url, frozenset())
        # WEBHOOK_ALLOWED_HOSTS lets a named host through (tests' loopback receivers).
        service.refuse_literal("http://127.0.0.1:9/", frozenset({"127.0.0.1"}))
        service.refuse_literal("https://example.com/hooks", frozenset())
        service.refuse_literal("http://[2606:4700::1111]/", frozenset())  # a public IPv6
    assert seen == type(seen)(), "registration looked up or connected to something"


def test_public_means_public_inside_embedded_forms() -> None:
    """Python's is_global alone lets NAT64 and 6to4 of private space through."""
    nat64 = ipaddress.ip_address("64:ff9b::a9fe:a9fe")
    assert nat64.is_global  # the hole this closes
    assert not service.is_public(nat64)
    assert not service.is_public(ipaddress.ip_address("2002:a00:5::1"))
    assert not service.is_public(ipaddress.ip_address("::ffff:10.0.0.5"))
    assert service.is_public(ipaddress.ip_address("64:ff9b::808:808"))  # NAT64 of 8.8.8.8
    assert service.is_public(ipaddress.ip_address("93.184.215.14"))


def _event() -> WebhookEvent:
    return WebhookEvent(
        report_id="report-u1-2026-01-01-2026-01-31",
        run_id="run",
        user_id="u1",
        outcome="completed",
        start="2026-01-01",
        end="2026-01-31",
        occurred_at="2026-02-01T00:00:00Z",
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::a9fe:a9fe]/",
        "http://169.254.169.254/",
        "http://10.0.0.5/",
        "http://2130706433/",
    ],
)
async def test_delivery_refuses_every_private_address_before_connecting(url: str) -> None:
    """At delivery the resolved address is checked, embedded IPv4 included (an
    endpoint registered before, or a name whose answer changed): AddressRefused,
    and the socket guard saw no connection attempt."""
    event = _event()
    with watch_sockets() as seen, pytest.raises(service.AddressRefused):
        await service.post_event(
            url, "whsec_" + "A" * 32, event, allowed=frozenset(), timeout_seconds=2
        )
    assert seen.connects == []


async def test_delivery_to_an_allowed_loopback_host_connects() -> None:
    """The control: the same path connects where WEBHOOK_ALLOWED_HOSTS allows it."""
    event = _event()
    with watch_sockets() as seen, pytest.raises(httpx.ConnectError):
        # Port 9 (discard) on loopback: nothing listens, the connect is refused.
        await service.post_event(
            "http://127.0.0.1:9/",
            "whsec_" + "A" * 32,
            event,
            allowed=frozenset({"127.0.0.1"}),
            timeout_seconds=2,
        )
    assert seen.connects == ["127.0.0.1"]
