"""Following a report to its end: its live events first, polling if they fail.

Both go through the public client (`reportflow.client`). Polling backs off and
honours `Retry-After`, and waits out network errors, 429 and 5xx answers: a
dozen lines whose waits the tests check exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import httpx

from reportflow.cli.request.progress import ProgressLine
from reportflow.client import FINAL, ReportflowClient, ReportflowError

# Polling, used only when the event stream fails.
POLL_INITIAL_SECONDS = 2.0
POLL_FACTOR = 1.5
POLL_MAX_SECONDS = 30.0


async def follow_events(
    client: ReportflowClient, report_id: str, progress: ProgressLine, run_id: str | None = None
) -> dict[str, Any] | None:
    """Follow `/events` to the final status; None if the stream ended before it."""
    async for doc in client.status_events(report_id, run_id=run_id):
        progress.show(doc)
        if doc["status"] in FINAL:
            return doc
    return None


def poll_delays(
    initial: float = POLL_INITIAL_SECONDS,
    factor: float = POLL_FACTOR,
    maximum: float = POLL_MAX_SECONDS,
) -> Iterator[float]:
    """2, 3, 4.5, ... seconds, never more than `maximum`."""
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * factor, maximum)


async def follow_polling(
    client: ReportflowClient,
    report_id: str,
    progress: ProgressLine,
    delays: Iterable[float] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Poll the status document until it is final; network and server errors are waited out."""
    for delay in poll_delays() if delays is None else delays:
        try:
            doc, wait = await client.status_and_wait(report_id, run_id=run_id)
        except httpx.TransportError as err:
            progress.say(f"cannot reach the API ({err or type(err).__name__}); trying again")
            await sleep(delay)
            continue
        except ReportflowError as err:
            if err.status_code != 429 and err.status_code < 500:
                raise
            progress.say(f"the API answered {err.status_code}; trying again")
            wait = err.retry_after
        else:
            progress.show(doc)
            if doc["status"] in FINAL:
                return doc
        await sleep(max(delay, wait))
    raise TimeoutError(f"stopped polling report {report_id}")


async def follow(
    client: ReportflowClient,
    report_id: str,
    progress: ProgressLine,
    poll: Iterable[float] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The report's (or its run's) final status document: live events first,
    polling if they fail."""
    try:
        doc = await follow_events(client, report_id, progress, run_id)
    except (httpx.TransportError, httpx.StreamError, ValueError) as err:
        progress.say(f"live updates stopped ({err or type(err).__name__}); polling instead")
    except ReportflowError as err:
        # 429: this token holds too many event streams; polling still works.
        if err.status_code < 500 and err.status_code != 429:
            raise
        progress.say(f"live updates unavailable ({err}); polling instead")
    else:
        if doc is not None:
            return doc
        progress.say("live updates ended early; polling instead")
    return await follow_polling(client, report_id, progress, poll, run_id=run_id)
