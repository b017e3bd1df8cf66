"""Tokens expire, can be listed and revoked, and record their last use; a revoked or
expired token gets 401 on every API replica at once, though each keeps lookups for
TOKEN_CACHE_SECONDS, and an open event stream of it ends within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.config import Settings
from reportflow.core.db import api_tokens
from reportflow.core.tokens import (
    TokenError,
    create_token,
    hash_token,
    list_tokens,
    lookup,
    token_id,
)
from tests.conftest import MakeUser, make_settings
from tests.utils.data import create_user
from tests.utils.smtp import SmtpServer
from tests.utils.stack import serve_api
from tests.utils.wait import wait_until


async def reportflow(settings: Settings, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reportflow.cli",
        *args,
        env={**os.environ, "DATABASE_URL": settings.database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_token_create_list_revoke_through_the_command(
    settings: Settings, app_engine: AsyncEngine, http: httpx.AsyncClient
) -> None:
    user_id = await create_user(app_engine)
    code, out, err = await reportflow(
        settings, "token", "create", "--user", user_id, "--label", "ci laptop"
    )
    assert code == 0, err
    token = out.strip()
    assert token.startswith("rf_") and "\n" not in token  # alone on stdout, for scripts
    tid = token_id(hash_token(token))
    assert f"token ID {tid}, expires in 90 days" in err

    code, out, err = await reportflow(settings, "token", "create", "--admin")
    assert code == 0, err
    assert "expires in 7 days" in err

    headers = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/reports", headers=headers)).status_code == 200
    code, listing, _ = await reportflow(settings, "token", "list")
    assert code == 0
    header, *rows = listing.splitlines()
    assert header.split()[:4] == ["ID", "FOR", "STATE", "CREATED"]
    assert "LAST USED" in header and "EXPIRES" in header
    [row] = [r for r in rows if r.startswith(tid)]
    assert f"user {user_id}" in row and "active" in row and row.endswith("ci laptop")
    expires = datetime.now(UTC) + timedelta(days=90)
    assert expires.strftime("%Y-%m-%d") in row
    assert row.count(datetime.now(UTC).strftime("%Y-%m-%d")) == 2  # created and last used today

    code, out, err = await reportflow(settings, "token", "revoke", tid)
    assert code == 0, err
    assert out.strip() == f"revoked {tid}"
    [line] = [json.loads(x) for x in err.splitlines() if '"reportflow.core.audit"' in x]
    assert (line["action"], line["target"]) == ("token revoke", tid)
    assert line["actor"].startswith("os-user ")
    # Refused on this replica within its TOKEN_CACHE_SECONDS.
    refused = await wait_until(
        partial(http.get, "/reports", headers=headers),
        lambda answer: answer.status_code == 401,
        timeout=settings.token_cache_seconds + 3,
        what="the revoked token refused",
    )
    assert "revoked" in refused.json()["detail"]
    code, listing, _ = await reportflow(settings, "token", "list")
    assert "revoked" in next(r for r in listing.splitlines() if r.startswith(tid))

    code, _, err = await reportflow(settings, "token", "revoke", "tok_000000000000")
    assert code == 2 and "no token" in err and "reportflow token list" in err


@asynccontextmanager
async def replicas(settings: Settings, n: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`n` API processes on one database, each keeping token lookups a minute."""
    kept = settings.model_copy(update={"token_cache_seconds": 60.0})
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(n):
            url = await stack.enter_async_context(serve_api(kept))
            clients.append(
                await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
            )
        yield clients


async def test_revoked_and_expired_tokens_get_401_on_every_replica_at_once(
    settings: Settings, app_engine: AsyncEngine, make_user: MakeUser
) -> None:
    """However recently each replica recognised them, and though each keeps lookups a
    minute: revocation reaches every replica's cache at once (PostgreSQL NOTIFY to
    each replica's LISTEN; SQLite's data_version), expiry ends an entry by itself."""
    revoked = await make_user()
    expiring = await create_token(
        app_engine, user_id=await create_user(app_engine), lifetime=timedelta(seconds=3)
    )
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    async with replicas(settings, 2) as apis:
        for api in apis:
            for token in (revoked.token, expiring):
                answer = await api.get("/reports", headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 200

        code, _, err = await reportflow(settings, "token", "revoke", revoked.token)
        assert code == 0, err
        for api in apis:
            answer = await wait_until(
                partial(api.get, "/reports", headers=revoked.headers),
                lambda answer: answer.status_code == 401,
                timeout=1.0,
                what="the revoked token refused",
            )
            assert answer.headers["WWW-Authenticate"] == "Bearer"

        wait = (expires_at - datetime.now(UTC)).total_seconds()
        for api in apis:
            await wait_until(
                partial(api.get, "/reports", headers={"Authorization": f"Bearer {expiring}"}),
                lambda answer: answer.status_code == 401,
                timeout=max(wait, 0.0) + 1.5,
                what="the expired token refused",
            )


async def _open_stream(
    api: httpx.AsyncClient, token: str, report_id: str, stack: contextlib.AsyncExitStack
) -> AsyncIterator[str]:
    response = await stack.enter_async_context(
        api.stream(
            "GET", f"/reports/{report_id}/events", headers={"Authorization": f"Bearer {token}"}
        )
    )
    assert response.status_code == 200
    lines = response.aiter_lines()
    async for line in lines:
        if line.startswith("event: status"):
            break
    return lines


async def _ends_within(lines: AsyncIterator[str], seconds: float) -> float:
    began = time.monotonic()
    async with asyncio.timeout(seconds):
        async for _ in lines:
            pass
    return time.monotonic() - began


async def test_an_open_event_stream_ends_when_its_token_is_revoked_or_expires(
    tmp_path: Path, settings: Settings, app_engine: AsyncEngine, smtp: SmtpServer
) -> None:
    # No worker on this task queue: the reports stay queued and their streams open
    # for EVENTS_MAX_STREAM_SECONDS (two minutes) but for the token.
    own = make_settings(
        tmp_path, smtp.port, database_url=settings.database_url, events_max_stream_seconds=120
    )
    user_id = await create_user(app_engine)
    revoked = await create_token(app_engine, user_id=user_id)
    expiring = await create_token(app_engine, user_id=user_id, lifetime=timedelta(seconds=4))
    async with replicas(own, 1) as [api], contextlib.AsyncExitStack() as stack:
        posted = await api.post("/reports", json={}, headers={"Authorization": f"Bearer {revoked}"})
        report_id = posted.json()["report_id"]
        by_revoked = await _open_stream(api, revoked, report_id, stack)
        by_expiring = await _open_stream(api, expiring, report_id, stack)

        code, _, err = await reportflow(own, "token", "revoke", revoked)
        assert code == 0, err
        assert await _ends_within(by_revoked, 4.0) < 4.0
        assert await _ends_within(by_expiring, 8.0) < 8.0
        again = await api.get(
            f"/reports/{report_id}/events", headers={"Authorization": f"Bearer {expiring}"}
        )
        assert again.status_code == 401


async def test_last_use_is_written_at_most_once_a_minute(engine: AsyncEngine) -> None:
    user_id = await create_user(engine)
    token = await create_token(engine, user_id=user_id)
    tid = token_id(hash_token(token))

    async def last_used() -> datetime | None:
        return next(t for t in await list_tokens(engine) if t.id == tid).last_used_at

    assert await last_used() is None
    caller = await lookup(engine, token)
    assert caller is not None and caller.token_id == tid and caller.user_id == user_id
    first = await last_used()
    assert first is not None
    await lookup(engine, token)
    assert await last_used() == first  # within the minute: no write
    async with engine.begin() as conn:
        await conn.execute(
            update(api_tokens)
            .where(api_tokens.c.token_hash == hash_token(token))
            .values(last_used_at=datetime.now(UTC) - timedelta(minutes=2))
        )
    await lookup(engine, token)
    later = await last_used()
    assert later is not None and later > first - timedelta(seconds=1)


async def test_token_lifetimes_and_legacy_rows(engine: AsyncEngine) -> None:
    user_id = await create_user(engine)
    now = datetime.now(UTC)
    user_token = await create_token(engine, user_id=user_id)
    admin_token = await create_token(engine, admin=True)
    short = await create_token(engine, user_id=user_id, lifetime=timedelta(days=1))
    tokens = {t.id: t for t in await list_tokens(engine)}

    def days_left(token: str) -> float:
        return (tokens[token_id(hash_token(token))].expires_at - now) / timedelta(days=1)

    assert round(days_left(user_token)) == 90
    assert round(days_left(admin_token)) == 7
    assert round(days_left(short)) == 1

    # A token minted before expiry existed: created_at + its kind's default lifetime.
    old, new = secrets.token_hex(32), secrets.token_hex(32)  # the database outlives runs
    async with engine.begin() as conn:
        for digest, created in ((old, now - timedelta(days=91)), (new, now)):
            await conn.execute(
                insert(api_tokens).values(
                    token_hash=digest, user_id=user_id, is_admin=False, label="", created_at=created
                )
            )
    states = {t.id: t.state(now) for t in await list_tokens(engine)}
    assert states[token_id(old)] == "expired"
    assert states[token_id(new)] == "active"

    for bad in (
        {"user_id": user_id, "lifetime": timedelta(0)},
        {"admin": True, "user_id": user_id},
    ):
        try:
            await create_token(engine, **bad)  # type: ignore[arg-type]
        except TokenError:
            continue
        raise AssertionError(f"create_token accepted {bad}")
