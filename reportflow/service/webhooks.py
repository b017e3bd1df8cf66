"""Webhook endpoints: register, list, delete, and one signed delivery.

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): headers
`webhook-id` (the same on every retry of one event), `webhook-timestamp` (this
attempt, Unix seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of
id.timestamp.body>`), signed and verifiable with the `standardwebhooks` package.

A delivery only goes to public addresses: the host is resolved at delivery time,
every address it resolves to must be public (or the host named in
WEBHOOK_ALLOWED_HOSTS), and the request connects to the checked address itself,
so a DNS answer cannot change between the check and the connection. Redirects
are not followed. "Public" looks through IPv6 forms that carry an IPv4 address
(IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16): Python's `is_global` calls
`64:ff9b::a9fe:a9fe` global, and a NAT64 gateway would carry it to 169.254.169.254.
A URL whose host is a literal address (or localhost) is judged at registration too,
where the embedded forms and IPv4-compatible `::/96` are refused outright.
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
from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from reportflow.contract import CreatedWebhook, WebhookDocument
from reportflow.core.db import users, webhooks
from reportflow.models import WebhookEvent
from reportflow.service.errors import public_error

log = logging.getLogger(__name__)


class WebhookNotFound(LookupError):
    """No endpoint with this ID belongs to the caller."""


class TooManyWebhooks(Exception):
    """The user holds MAX_WEBHOOKS_PER_USER endpoints already."""


class UrlRefused(ValueError):
    """The URL's host is a literal address (or name) deliveries may never reach."""


# ------------------------------------------------------------------ addresses

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in SIXTOFOUR:
        return address.sixtofour
    return None


def is_public(address: IPAddress) -> bool:
    """Whether a delivery may connect here: global, not multicast, and the IPv4
    address it embeds (if any) likewise; IPv4-compatible `::a.b.c.d` (deprecated,
    RFC 4291) never."""
    if address.is_multicast or not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address in IPV4_COMPATIBLE:
        return False
    inner = embedded_ipv4(address)
    return inner is None or is_public(inner)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, in any spelling a resolver takes
    (`127.0.0.1`, `2130706433`, `0x7f.1`, `::ffff:7f00:1`); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton's legacy forms: what getaddrinfo (and so the delivery) would accept.
    if host and all(c in "0123456789abcdefx." for c in host.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refuse_literal(url: str, allowed: frozenset[str]) -> None:
    """UrlRefused, with a sentence, when the URL's host is localhost or a literal
    non-public address (embedded IPv4 forms included), unless WEBHOOK_ALLOWED_HOSTS
    names it. No name is resolved and nothing is connected to here."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host in allowed:
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise UrlRefused(f"{host} is this machine; a webhook must be reachable from outside")
    address = literal_address(host)
    if address is None:
        return
    embeds = isinstance(address, ipaddress.IPv6Address) and (
        embedded_ipv4(address) is not None or address in IPV4_COMPATIBLE
    )
    if embeds or not is_public(address):
        raise UrlRefused(
            f"{host} is a private, loopback, link-local or IPv4-embedding address; "
            "a webhook URL must name a public host (e.g. https://example.com/hooks)"
        )


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def create_webhook(
    engine: AsyncEngine,
    *,
    user_id: str,
    url: str,
    allowed: frozenset[str] = frozenset(),
    limit: int | None = None,
) -> CreatedWebhook:
    """Register an endpoint; UrlRefused for a literal private host, TooManyWebhooks
    when the user already holds `limit` of them (disabled ones count until deleted)."""
    refuse_literal(url, allowed)
    webhook_id = f"wh_{uuid.uuid4().hex[:16]}"
    secret = new_secret()
    now = datetime.now(UTC)
    row = {"id": webhook_id, "user_id": user_id, "url": url, "secret": secret, "created_at": now}
    async with engine.begin() as conn:
        if limit is None:
            await conn.execute(insert(webhooks).values(**row))
        else:
            # PostgreSQL: the user's row locked, so two creates of one user take
            # turns and cannot both see room for one more. SQLite has one writer
            # at a time, and the count and insert below are one statement.
            await conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())
            held = (
                select(func.count())
                .select_from(webhooks)
                .where(webhooks.c.user_id == user_id)
                .scalar_subquery()
            )
            values = select(*(literal(v, webhooks.c[k].type).label(k) for k, v in row.items()))
            added = await conn.execute(
                insert(webhooks).from_select(list(row), values.where(held < limit))
            )
            if added.rowcount == 0:
                raise TooManyWebhooks(user_id)
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
        # The receiver is the user's: a code and a sentence, not the server's reply.
        data["error"] = public_error(event.error)  # type: ignore[assignment]
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
    # A scoped IPv6 address comes back as fe80::1%eth0: the scope is not the address.
    addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if host.lower() not in allowed:
        private = [a for a in addresses if not is_public(a)]
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
