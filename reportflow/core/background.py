"""Work that must not be abandoned halfway, and heartbeats while it runs.

`finish_within` runs a step past a cancellation of its caller, bounded by a
deadline: an email whose attempt is cancelled (a timeout, a worker shutting
down) finishes its SMTP transaction and writes its ledger row instead of
leaving the next attempt to guess. The caller waits for it before it re-raises
the cancellation, so the work keeps its worker's activity slot and worker
shutdown (which waits for every activity) waits for it too: nothing outlives
the attempt that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEAT_INTERVAL_SECONDS = 2.0


async def finish_within(work: Awaitable[T], deadline_seconds: float | None) -> T:
    """Await `work`, bounded by `deadline_seconds`, even if the caller is cancelled.

    A cancellation of the caller is held back until `work` has finished (or hit
    its deadline), then raised. The deadline raises TimeoutError. Pass None for
    work that bounds itself and must not be cut mid-call: a database statement
    cancelled halfway can leave SQLite's write lock held by a leaked connection.
    """

    async def bounded() -> T:
        async with asyncio.timeout(deadline_seconds):
            return await work

    task = asyncio.ensure_future(bounded())
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled() and task.exception() is not None:
            log.warning("work finished after its attempt was cancelled", exc_info=task.exception())
        raise asyncio.CancelledError
    return task.result()


@contextlib.asynccontextmanager
async def heartbeating(
    heartbeat: Callable[[], None] | None, interval: float = HEARTBEAT_INTERVAL_SECONDS
) -> AsyncIterator[None]:
    """Call `heartbeat` every `interval` seconds while the body runs, the first time
    `interval` after it starts: a body shorter than that sends none. (A heartbeat at
    the start tells Temporal nothing the start did not, and costs a call to it.)"""
    if heartbeat is None:
        yield
        return
    beat = asyncio.create_task(_heartbeat_loop(heartbeat, interval))
    try:
        yield
    finally:
        beat.cancel()
        await asyncio.wait([beat])  # never raises the task's CancelledError


async def _heartbeat_loop(heartbeat: Callable[[], None], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            heartbeat()
        except Exception:
            log.warning("heartbeat callback failed", exc_info=True)
