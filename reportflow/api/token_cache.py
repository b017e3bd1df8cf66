"""Token lookups kept a few seconds in each API process (TOKEN_CACHE_SECONDS),
and forgotten at once, on every replica, when a token is revoked.

A client polling its report's status once a second would otherwise cost one
database query per poll just to be recognised: more than half of the API's CPU
for a status read. Known tokens are kept for the TTL (never past their
expiry), unknown ones too (a client retrying a bad or revoked token costs no
read each; a new token is random, so no entry stands for it), and both are
dropped the moment the tokens table says so:

- PostgreSQL: `revoke_token` sends `NOTIFY reportflow_tokens` (the token's
  hash) in its transaction; each API process LISTENs on a connection of its own
  and drops the entry when the notification arrives. While that connection is
  down (or does not answer its keep-alive) the cache is not used at all, so a
  notification lost in an outage cannot leave a revoked token working.
- SQLite (one host): before each cached answer, `PRAGMA data_version` on a
  connection of the cache's own says whether any other connection committed;
  only then it reads the table's count and latest revocation, and clears the
  cache if either moved. Both are microseconds, on the caller's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.db import POSTGRES_CONNECT_TIMEOUT_SECONDS
from reportflow.core.tokens import CHANNEL, Caller, hash_token, lookup

log = logging.getLogger(__name__)

MAX_ENTRIES = 10_000
KEEPALIVE_SECONDS = 5.0


class TokenCache:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        # token hash -> (until, its caller, or None for a token that is not live)
        self._entries: dict[str, tuple[float, Caller | None]] = {}
        self._changes: _Changes | None = None

    async def start(self, engine: AsyncEngine) -> None:
        """Follow the tokens table of `engine`; until this runs the cache is bypassed."""
        if self.ttl <= 0:
            return
        if engine.url.get_backend_name() == "sqlite":
            self._changes = _SqliteChanges(engine.url.database or "", self.forget)
        else:
            self._changes = _PostgresChanges(engine, self.forget)
        await self._changes.start()

    async def close(self) -> None:
        if self._changes is not None:
            await self._changes.close()
            self._changes = None

    def forget(self, token_hash: str | None = None) -> None:
        """Drop one token's entry (a NOTIFY names it), or every entry."""
        if token_hash is None:
            self._entries.clear()
        else:
            self._entries.pop(token_hash, None)

    async def lookup(self, engine: AsyncEngine, token: str) -> Caller | None:
        if self.ttl <= 0 or self._changes is None or not self._changes.current():
            return await lookup(engine, token)
        key = hash_token(token)  # the cache, like the database, never holds a usable token
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        caller = await lookup(engine, token)
        ttl = self.ttl
        if caller is not None and caller.expires_at is not None:
            ttl = min(ttl, (caller.expires_at - datetime.now(UTC)).total_seconds())
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
        self._entries[key] = (now + ttl, caller)
        return caller


class _Changes:
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def current(self) -> bool:
        """Whether every change to the tokens table so far has been applied."""
        raise NotImplementedError


class _SqliteChanges(_Changes):
    def __init__(self, path: str, forget: Callable[[str | None], None]) -> None:
        self._path = path
        self._forget = forget
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._state: tuple[object, ...] | None = None

    async def start(self) -> None:
        if self._path and self._path != ":memory:":
            self._conn = sqlite3.connect(self._path, isolation_level=None)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def current(self) -> bool:
        if self._conn is None:
            return False
        try:
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
            if version != self._version:
                state = self._conn.execute(
                    "SELECT count(*), max(revoked_at) FROM api_tokens"
                ).fetchone()
                if state != self._state:
                    self._forget(None)
                    self._state = tuple(state)
                self._version = version
        except sqlite3.Error as err:
            log.warning("token cache bypassed: cannot read the tokens table: %s", err)
            return False
        return True


class _PostgresChanges(_Changes):
    def __init__(self, engine: AsyncEngine, forget: Callable[[str | None], None]) -> None:
        url = engine.url.set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._forget = forget
        self._listening = False
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="token-cache-listen")
        # A moment to connect, so the first requests already use the cache.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=2)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def current(self) -> bool:
        return self._listening

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._forget(payload or None)

    async def _listen(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=POSTGRES_CONNECT_TIMEOUT_SECONDS)
                await conn.add_listener(CHANNEL, self._notified)
                self._forget(None)  # whatever changed while nobody listened
                self._listening = True
                self._connected.set()
                while True:  # a held connection says nothing: ask it
                    await asyncio.sleep(KEEPALIVE_SECONDS)
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=KEEPALIVE_SECONDS)
            except Exception as err:  # not CancelledError: close() ends the loop
                if self._listening:
                    log.warning("token cache bypassed until LISTEN is back: %s", err)
            finally:
                self._listening = False
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(1.0)
