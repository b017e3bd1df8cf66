"""A per-user limit on starting reports (the contract's 429), kept in the database
so it holds across API replicas and restarts.

The algorithm is GCRA (a token bucket in one number): each user's row holds a
"theoretical arrival time" `tat`. A start at `now` is allowed while
`tat - now <= window - interval` (so `per_minute` starts may come at once, then
one every `interval` = 60 s / per_minute) and moves `tat` on by one interval.
The check and the move are one conditional UPDATE, which the database applies
atomically per row, so two replicas cannot both take the last slot.

`now` is read before the row is: a request that waited on the database's lock
(or runs on a replica whose clock is a little behind) compares against a `tat`
another one moved from a later `now`. Without slack that request is refused the
last slot of a burst; `CLOCK_SLACK_SECONDS` (never more than a quarter interval,
so never a start beyond the limit) absorbs it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sqlalchemy import case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.db import rate_limits

CLOCK_SLACK_SECONDS = 1.0


class RateLimiter:
    def __init__(
        self,
        engine: AsyncEngine,
        per_minute: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.per_minute = per_minute
        self.window = window_seconds
        self.interval = window_seconds / per_minute
        self.clock = clock
        self.tolerance = self.window - self.interval + min(CLOCK_SLACK_SECONDS, self.interval / 4)

    async def retry_after(self, key: str) -> int:
        """0 and counts the start if allowed; else the seconds until the next one is."""
        tolerance = self.tolerance
        # More than one pass only when another replica's start changed the row
        # between this one's statements (it inserted the row, or moved it).
        for _ in range(4):
            now = self.clock()
            async with self.engine.begin() as conn:
                moved = await conn.execute(
                    update(rate_limits)
                    .where(rate_limits.c.key == key, rate_limits.c.tat - now <= tolerance)
                    .values(
                        tat=case((rate_limits.c.tat > now, rate_limits.c.tat), else_=now)
                        + self.interval
                    )
                )
                if moved.rowcount:
                    return 0
                tat: float | None = await conn.scalar(
                    select(rate_limits.c.tat).where(rate_limits.c.key == key)
                )
            if tat is not None:
                if tat - now > tolerance:
                    return max(1, math.ceil(tat - now - tolerance))
                continue  # the row appeared after the UPDATE looked: take a slot in it
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(insert(rate_limits).values(key=key, tat=now + self.interval))
                return 0
            except IntegrityError:
                continue
        raise RuntimeError(f"rate limit row for {key!r} neither updated nor inserted")
