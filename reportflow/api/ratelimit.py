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

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import HTTPException, Request, status
from sqlalchemy import BindParameter, Connection, Engine, bindparam, case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.db import rate_limits, sqlite_twin

CLOCK_SLACK_SECONDS = 1.0

# Built once (every start runs them; building one costs more CPU than running it).
_NOW: BindParameter[float] = bindparam("now")
_TAKE = (
    update(rate_limits)
    .where(
        rate_limits.c.key == bindparam("k"),
        rate_limits.c.tat - _NOW <= bindparam("tolerance"),
    )
    .values(tat=case((rate_limits.c.tat > _NOW, rate_limits.c.tat), else_=_NOW) + bindparam("step"))
)
_TAT = select(rate_limits.c.tat).where(rate_limits.c.key == bindparam("k"))
_FIRST = insert(rate_limits).values(key=bindparam("k"), tat=bindparam("tat"))


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
        # SQLite: the whole exchange on one thread of its own, with the stdlib driver.
        # Through aiosqlite every statement, BEGIN and COMMIT is a hop to its thread
        # and back: 0.7 ms a start at the median, 0.4 ms so. One thread is also one writer
        # at a time: connections of one process that race for SQLite's lock lose to
        # its busy handler, which sleeps 1, 2, 5 ... 100 ms between tries (50 starts
        # at once waited up to 1.7 s); queued here, each waits only for the writes
        # ahead of it. (Other processes still meet the busy handler.)
        self._sqlite: tuple[Engine, ThreadPoolExecutor] | None = None
        twin = sqlite_twin(engine)
        if twin is not None:
            self._sqlite = twin, ThreadPoolExecutor(1, thread_name_prefix="rate-limit")

    async def retry_after(self, key: str) -> int:
        """0 and counts the start if allowed; else the seconds until the next one is."""
        if self._sqlite is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(self._take, key)
        engine, thread = self._sqlite
        return await asyncio.get_running_loop().run_in_executor(thread, self._take_on, engine, key)

    def close(self) -> None:
        if self._sqlite is not None:
            engine, thread = self._sqlite
            thread.shutdown()
            engine.dispose()

    def _take_on(self, engine: Engine, key: str) -> int:
        with engine.connect() as conn:
            return self._take(conn, key)

    def _take(self, conn: Connection, key: str) -> int:
        tolerance = self.tolerance
        # More than one pass only when another replica's start changed the row
        # between this one's statements (it inserted the row, or moved it).
        for _ in range(4):
            now = self.clock()
            with conn.begin():
                moved = conn.execute(
                    _TAKE, {"k": key, "now": now, "tolerance": tolerance, "step": self.interval}
                )
                if moved.rowcount:
                    return 0
                tat: float | None = conn.scalar(_TAT, {"k": key})
            if tat is not None:
                if tat - now > tolerance:
                    return max(1, math.ceil(tat - now - tolerance))
                continue  # the row appeared after the UPDATE looked: take a slot in it
            try:
                with conn.begin():
                    conn.execute(_FIRST, {"k": key, "tat": now + self.interval})
                return 0
            except IntegrityError:
                continue
        raise RuntimeError(f"rate limit row for {key!r} neither updated nor inserted")


async def limit_creation(request: Request, what: str, user_id: str) -> None:
    """429 past CREATE_RATE_PER_MINUTE creations of `what` (webhooks, schedules) by
    one user: each kind a budget of its own, on keys apart from report starts."""
    limiter: RateLimiter = request.app.state.create_limiter
    wait = await limiter.retry_after(f"{what}:{user_id}")
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many {what} created in the last minute; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
