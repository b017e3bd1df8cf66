"""Token lookups kept a few seconds in each API process (TOKEN_CACHE_SECONDS).

A client polling its report's status once a second would otherwise cost one
database query per poll just to be recognised: more than half of the API's CPU
for a status read. Only known tokens are kept, so a new token works at once; a
revoked one may still be honoured for the TTL (2 s by default), an expired one
never (an entry ends at its token's expiry).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.tokens import Caller, hash_token, lookup

MAX_ENTRIES = 10_000


class TokenCache:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Caller]] = {}

    async def lookup(self, engine: AsyncEngine, token: str) -> Caller | None:
        if self.ttl <= 0:
            return await lookup(engine, token)
        key = hash_token(token)  # the cache, like the database, never holds a usable token
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        caller = await lookup(engine, token)
        if caller is not None:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
            ttl = self.ttl
            if caller.expires_at is not None:
                ttl = min(ttl, (caller.expires_at - datetime.now(UTC)).total_seconds())
            self._entries[key] = (now + ttl, caller)
        else:
            self._entries.pop(key, None)
        return caller
