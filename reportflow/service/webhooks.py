"""Webhook endpoints: register, list, delete, and one signed delivery.

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): headers
`webhook-id` (the same on every retry of one event), `webhook-timestamp` (this
attempt, Unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of
id.timestamp.body>`), signed and verifiable with the `standardwebhooks` package.

A delivery only goes to public addresses: the host is resolved at delivery time,
every address it resolves to must be public (or the host named in
WEBHOOK_ALLOWED_HOSTS), and the request connects to the checked address itself,
so a DNS answer cannot change between the check and the connection. Redirects
are not followed.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import json
import logging
import secrets
import socket
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from reportflow.core.db import webhooks
from reportflow.models import WebhookEvent

log = logging.getLogger(__name__)

MAX_URL = 2000


class WebhookRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"url": "https://example.com/hooks"}]}
    )

    url: str = Field(description="an http(s) URL that receives a POST per report outcome")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if len(value) > MAX_URL or parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(
                f"{value[:100]!r} is not an http(s) URL with a host, e.g. https://example.com/hooks"
            )
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise ValueError(f"{value[:100]!r} has an invalid port") from None
        return value


class WebhookDocument(BaseModel):
    id: str
    url: str
    created_at: datetime | None = None
    disabled: bool = Field(description="true once the receiver answered 410 Gone")


class CreatedWebhook(WebhookDocument):
    secret: str = Field(description="verifies deliveries' signatures; shown only now")


class WebhookNotFound(LookupError):
    """No endpoint with this ID belongs to the caller."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def create_webhook(engine: AsyncEngine, *, user_id: str, url: str) -> CreatedWebhook:
    webhook_id = f"wh_{uuid.uuid4().hex[:16]}"
    secret = new_secret()
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(webhooks).values(
                id=webhook_id, user_id=user_id, url=url, secret=secret, created_at=now
            )
        )
    log.info("webhook registered", extra={"webhook_id": webhook_id, "user_id": user_id})
    return CreatedWebhook(id=webhook_id, url=url, created_at=now, disabled=False, secret=secret)


async def list_webhooks(engine: AsyncEngine, *, user_id: str) -> list[WebhookDocument]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(webhooks).where(webhooks.c.user_id == user_id).order_by(webhooks.c.created_at)
        )
    return [
        WebhookDocument(
            id=r.id,
            url=r.url,
            # SQLite hands back naive datetimes: they were written in UTC.
            created_at=r.created_at.replace(tzinfo=r.created_at.tzinfo or UTC),
            disabled=r.disabled_at is not None,
        )
        for r in rows
    ]


async def delete_webhook(engine: AsyncEngine, *, user_id: str, webhook_id: str) -> None:
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.user_id == user_id)
        )
    if result.rowcount == 0:
        raise WebhookNotFound(webhook_id)


async def active_endpoints(engine: AsyncEngine, user_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(webhooks.c.id)
            .where(webhooks.c.user_id == user_id, webhooks.c.disabled_at.is_(None))
            .order_by(webhooks.c.id)
        )
    return [r.id for r in rows]


async def endpoint(engine: AsyncEngine, webhook_id: str) -> tuple[str, str] | None:
    """(url, secret) of an active endpoint; None once deleted or disabled."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(webhooks.c.url, webhooks.c.secret).where(
                    webhooks.c.id == webhook_id, webhooks.c.disabled_at.is_(None)
                )
            )
        ).first()
    return (row.url, row.secret) if row else None


async def disable(engine: AsyncEngine, webhook_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(webhooks)
            .where(webhooks.c.id == webhook_id)
            .values(disabled_at=datetime.now(UTC))
        )


# ------------------------------------------------------------------ delivery


def event_body(event: WebhookEvent) -> str:
    data = {
        "report_id": event.report_id,
        "kind": event.kind,
        "run_id": event.run_id,
        "status": event.outcome,
        "start": event.start,
        "end": event.end,
    }
    if event.error:
        data["error"] = event.error  # type: ignore[assignment]
    if event.refused:
        data["refused"] = [dataclasses.asdict(r) for r in event.refused]  # type: ignore[assignment]
    payload = {"type": f"report.{event.outcome}", "timestamp": event.occurred_at, "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def signed_headers(secret: str, event_id: str, body: str, at: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, body),
    }


class AddressRefused(Exception):
    """The URL's host resolves to an address deliveries may not reach."""


async def resolve_public(host: str, port: int, allowed: frozenset[str]) -> str:
    """The address to connect to: every address the host resolves to must be public,
    unless the host is named in WEBHOOK_ALLOWED_HOSTS."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as err:
        raise OSError(f"cannot resolve {host!r}: {err}") from err
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if host.lower() not in allowed:
        private = [a for a in addresses if not a.is_global or a.is_multicast]
        if private:
            raise AddressRefused(
                f"{host} resolves to {private[0]}, a private, loopback or link-local address; "
                "name the host in WEBHOOK_ALLOWED_HOSTS to allow it"
            )
    return str(addresses[0])


async def post_event(
    url: str,
    secret: str,
    event: WebhookEvent,
    *,
    allowed: frozenset[str],
    timeout_seconds: float,
) -> httpx.Response:
    """One signed POST to the checked address of `url`'s host; no redirects."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = await resolve_public(host, port, allowed)
    literal = f"[{address}]" if ":" in address else address
    target = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    body = event_body(event)
    headers = signed_headers(secret, event.event_id, body, datetime.now(UTC))
    headers["host"] = parts.netloc.rsplit("@", 1)[-1]
    headers["user-agent"] = "reportflow-webhooks/1"
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=timeout_seconds, trust_env=False
    ) as http:
        return await http.post(
            target, content=body, headers=headers, extensions={"sni_hostname": host}
        )


def retry_after(response: httpx.Response, default: timedelta) -> timedelta:
    """A 429's or 503's Retry-After (seconds or an HTTP date), capped at a day."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(timedelta(seconds=int(value)), timedelta(days=1))
    if value:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        return max(timedelta(0), min(when - datetime.now(UTC), timedelta(days=1)))
    return default
