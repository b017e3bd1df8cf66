"""Ctrl-C while `reportflow request` follows a report: cancel it, or leave it running.

The question is asked while the event loop keeps the connection; rich's
`Prompt.ask` blocks the thread and cannot be interrupted by a second Ctrl-C the
way the task can.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any, TextIO

import httpx

from reportflow.cli.request.progress import ProgressLine
from reportflow.client import FINAL, ReportflowClient, ReportflowError

EXIT_INTERRUPTED = 130
CANCEL_CONFIRM_SECONDS = 15.0


class CtrlC:
    """SIGINT cancels the task that follows the report, so that it can ask what to do.

    (Without this, asyncio turns Ctrl-C into a KeyboardInterrupt that unwinds everything.)
    """

    def __init__(self) -> None:
        self._pending = 0
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> CtrlC:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        loop.add_signal_handler(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _interrupt(self) -> None:
        if self._task is not None:
            self._pending += 1
            self._task.cancel()

    def absorb(self) -> bool:
        """True if a cancellation came from Ctrl-C: it is handled, the task runs on.

        False for any other cancellation, which the caller must let through.
        """
        if not self._pending or self._task is None:
            return False
        self._pending -= 1
        self._task.uncancel()
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def read_answer(stdin: TextIO) -> str:
    """One line from stdin without blocking the event loop ("" at end of input)."""
    loop = asyncio.get_running_loop()
    try:
        fd = stdin.fileno()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _resolve, ready)
    except (AttributeError, OSError, ValueError, NotImplementedError):
        # Not a pipe or terminal (a regular file, a StringIO): reading it cannot hang.
        return stdin.readline()
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 4096).decode(errors="replace")


async def _wait_cancelled(client: ReportflowClient, report_id: str) -> str:
    """The report's status once it stops (bounded); the cancel is asynchronous."""
    status = "running"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CANCEL_CONFIRM_SECONDS):
            while status not in FINAL:
                status = (await client.status(report_id))["status"]
                if status not in FINAL:
                    await asyncio.sleep(0.5)
    return status


async def on_interrupt(
    client: ReportflowClient,
    report_id: str | None,
    progress: ProgressLine,
    stdin: TextIO,
    ctrl_c: CtrlC,
) -> int:
    """Ctrl-C while following: ask whether to cancel the report or leave it running."""
    if report_id is None:
        progress.say("interrupted; the report may have started: run the same command to follow it")
        return EXIT_INTERRUPTED
    progress.say(f"Cancel report {report_id}? [y/N] ", end="")
    try:
        answer = await read_answer(stdin)
        echoed = stdin.isatty()  # a terminal shows the typed answer and its newline
    except asyncio.CancelledError:
        if not ctrl_c.absorb():
            raise
        answer, echoed = "", False  # a second Ctrl-C means no
    if not echoed:
        progress.say(answer.strip() or "no")
    if answer.strip().lower() not in {"y", "yes"}:
        progress.say(
            f"left report {report_id} running; follow it again with the same command, "
            f"or with: reportflow request --report {report_id}"
        )
        return EXIT_INTERRUPTED
    try:
        await client.cancel(report_id)
        status = await _wait_cancelled(client, report_id)
    except ReportflowError as err:
        progress.say(f"could not cancel report {report_id}: {err.detail}")
        return EXIT_INTERRUPTED
    except httpx.TransportError as err:
        progress.say(f"could not cancel report {report_id}: cannot reach the API ({err})")
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        if not ctrl_c.absorb():
            raise
        progress.say(
            f"stopped waiting for report {report_id} to stop; "
            f"check it with: reportflow request --report {report_id}"
        )
        return EXIT_INTERRUPTED
    if status == "cancelled":
        progress.say(f"report {report_id} cancelled")
    elif status in FINAL:
        progress.say(f"report {report_id} had already {status}")
    else:
        progress.say(f"cancel of report {report_id} requested; it is still stopping")
    return EXIT_INTERRUPTED
