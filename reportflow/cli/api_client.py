"""`reportflow request`: start a report and follow it to its PDF from a terminal.

The report is followed through the API's Server-Sent Events; if that stream
breaks, the status document is polled instead (backing off, honouring
`Retry-After`). Results (the PDF's URL, the saved file) go to stdout; the
progress bar and notices go to stderr, so `reportflow request ... > url.txt`
keeps the bar on screen. Ctrl-C asks whether to cancel the report or leave it
running; the report ID is deterministic, so the same command re-attaches.

What comes from libraries: httpx talks to the API, httpx-sse reads the event
stream (lines, fields, multi-line data, keep-alive comments), rich measures
the terminal and cuts the progress line to its width in cells (a wide
character takes two; cutting by characters would wrap the line and break the
redraw). What stays written here, and why:

- The progress line itself (`status_line`, `ProgressLine`). Its text is part of the
  command's contract: off a terminal each change is one plain line
  (`[########------------]  40%  rendering`) that scripts and the tests read,
  and on a terminal it is that same line redrawn in place. rich's Progress
  draws its own bar glyphs, refreshes from a thread, hides the cursor and
  prints nothing per change off a terminal, so it would change that output.
- Ctrl-C (`CtrlC`, `read_answer`, `on_interrupt`): the question is asked while
  the event loop keeps the connection; rich's `Prompt.ask` blocks the thread
  and cannot be interrupted by a second Ctrl-C the way the task can.
- Polling with backoff and `Retry-After` (`follow_polling`): a dozen lines
  whose waits the tests check exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
from httpx_sse import EventSource, aconnect_sse
from rich.console import Console
from rich.text import Text

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_CANCELLED = 3
EXIT_GAVE_UP = 4
EXIT_UNREACHABLE = 5
EXIT_INTERRUPTED = 130

FINAL = frozenset({"completed", "failed", "cancelled"})
BAR_WIDTH = 20

# What a step waiting to be retried means to the person watching.
_RETRY_WORDS = {
    "query": "database unavailable",
    "render": "PDF rendering failed",
    "send_email": "email server unavailable",
}

_REPLY = re.compile(r"""\((?P<code>\d{3}), ['"](?P<text>.*)['"]\)""")

# Polling, used only when the event stream fails.
POLL_INITIAL_SECONDS = 2.0
POLL_FACTOR = 1.5
POLL_MAX_SECONDS = 30.0
# The API sends a keep-alive comment every 15 s; silence much longer means a dead stream.
EVENTS_READ_TIMEOUT = 60.0
CANCEL_CONFIRM_SECONDS = 15.0


@dataclass(frozen=True)
class RequestOptions:
    url: str
    token: str
    start: date | None = None
    end: date | None = None
    output: Path | None = None
    report_id: str | None = None
    timeout: float = 600.0
    # A report kind (GET /kinds) and its parameters; none: the transactions PDF.
    kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


class ApiError(Exception):
    """The API answered with an error; `detail` is its explanation for a person."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


# --- what the person sees ---


def retry_notice(retry: Mapping[str, Any], now: datetime) -> str:
    """`email server unavailable (421 ...), next try in 12 s, attempt 3/6`."""
    activity = str(retry.get("activity") or "a step")
    words = _RETRY_WORDS.get(activity, f"{activity} failed")
    error = str(retry.get("last_error") or "").strip().splitlines()
    if error:
        # A server reply as Python shows it, "(421, 'Service not available')", reads "421 ...".
        reply = _REPLY.fullmatch(error[0])
        reason = f"{reply['code']} {reply['text']}" if reply else error[0]
        words += f" ({reason if len(reason) <= 60 else reason[:59] + '…'})"
    next_at = retry.get("next_attempt_at")
    if next_at:
        when = datetime.fromisoformat(str(next_at).replace("Z", "+00:00"))
        seconds = round((when - now).total_seconds())
        words += f", next try in {seconds} s" if seconds > 0 else ", trying again now"
    attempt, maximum = int(retry.get("attempt") or 1), int(retry.get("maximum_attempts") or 0)
    # Temporal's maximum of 0 means "no limit".
    return words + (f", attempt {attempt}/{maximum}" if maximum else f", attempt {attempt}")


def status_line(doc: Mapping[str, Any], *, now: datetime, width: int = BAR_WIDTH) -> str:
    """One line of progress: `[########------------]  40%  rendering`, then any retry."""
    progress = min(max(int(doc.get("progress") or 0), 0), 100)
    filled = progress * width // 100
    line = f"[{'#' * filled}{'-' * (width - filled)}] {progress:3d}%  {doc.get('stage', '?')}"
    if doc.get("retry"):
        line += f"  {retry_notice(doc['retry'], now)}"
    return line


class ProgressLine:
    """The progress display on stderr: one redrawn line on a terminal, else a line per change."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._console = Console(file=stream)  # the terminal's width (or COLUMNS)
        self._last = ""
        self._open = False  # a redrawn line is on screen and not yet ended

    def show(self, doc: Mapping[str, Any], now: datetime | None = None) -> None:
        line = status_line(doc, now=now or datetime.now(UTC))
        if line == self._last:
            return
        self._last = line
        if self.tty:
            # A wrapped line cannot be redrawn with \r; leave room for the "^C" a terminal echoes.
            shown = Text(line)
            shown.truncate(max(self._console.width - 3, 10), overflow="crop")
            self.stream.write(f"\r{shown.plain}\x1b[K")
            self._open = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def say(self, text: str, end: str = "\n") -> None:
        """A notice on a line of its own (ending the bar's line first)."""
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.write(text + end)
        self.stream.flush()


# --- talking to the API ---


def _detail(response: httpx.Response) -> str:
    """The API's `detail` in words (FastAPI's validation errors are a list of them)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip() or response.reason_phrase
    if isinstance(detail, list):
        messages = []
        for item in detail:
            if isinstance(item, dict):
                message = str(item.get("msg", item)).removeprefix("Value error, ")
                messages.append(message)
            else:
                messages.append(str(item))
        return "; ".join(messages)
    return str(detail)


def _check(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise ApiError(response.status_code, _detail(response))
    return response


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("Retry-After", 0)), 0.0)
    except ValueError:
        return 0.0


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a Server-Sent Events response (SSEError if it is not one)."""
    async for event in EventSource(response).aiter_sse():
        # A block without data (a keep-alive comment after an event with an ID) is no
        # event by the spec; httpx-sse yields it, with empty data, once an ID was seen.
        if event.data:
            yield event.event, event.data


def _run_params(run_id: str | None) -> dict[str, str]:
    """`?run_id=`: the run this command started or found. With several API replicas,
    one that did not start the run may otherwise describe the report's previous run
    (a failed report tried again would show its old failure and stop)."""
    return {"run_id": run_id} if run_id else {}


async def follow_events(
    client: httpx.AsyncClient, report_id: str, progress: ProgressLine, run_id: str | None = None
) -> dict[str, Any] | None:
    """Follow `/events` to the final status; None if the stream ended before it."""
    timeout = httpx.Timeout(30.0, read=EVENTS_READ_TIMEOUT)
    events = aconnect_sse(
        client,
        "GET",
        f"/reports/{report_id}/events",
        params=_run_params(run_id),
        timeout=timeout,
    )
    async with events as source:
        if source.response.is_error:
            await source.response.aread()
            _check(source.response)
        async for kind, data in sse_events(source.response):
            if kind != "status":
                continue
            doc: dict[str, Any] = json.loads(data)
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
    client: httpx.AsyncClient,
    report_id: str,
    progress: ProgressLine,
    delays: Iterable[float] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Poll the status document until it is final; network and server errors are waited out."""
    for delay in poll_delays() if delays is None else delays:
        try:
            response = await client.get(f"/reports/{report_id}", params=_run_params(run_id))
        except httpx.TransportError as err:
            progress.say(f"cannot reach the API ({err or type(err).__name__}); trying again")
            await sleep(delay)
            continue
        if response.status_code == 429 or response.is_server_error:
            progress.say(f"the API answered {response.status_code}; trying again")
        else:
            doc: dict[str, Any] = _check(response).json()
            progress.show(doc)
            if doc["status"] in FINAL:
                return doc
        await sleep(max(delay, _retry_after(response)))
    raise TimeoutError(f"stopped polling report {report_id}")


async def follow(
    client: httpx.AsyncClient,
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
    except ApiError as err:
        # 429: this token holds too many event streams; polling still works.
        if err.status_code < 500 and err.status_code != 429:
            raise
        progress.say(f"live updates unavailable ({err}); polling instead")
    else:
        if doc is not None:
            return doc
        progress.say("live updates ended early; polling instead")
    return await follow_polling(client, report_id, progress, poll, run_id=run_id)


async def start_report(
    client: httpx.AsyncClient,
    start: date | None,
    end: date | None,
    kind: str | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    body: dict[str, Any] = {k: v.isoformat() for k, v in {"start": start, "end": end}.items() if v}
    if kind:
        body = {**body, **(params or {}), "kind": kind}
    return _check(await client.post("/reports", json=body)).json()


async def save_pdf(client: httpx.AsyncClient, report_id: str, output: Path) -> int:
    """Download the PDF next to `output`, then move it into place; returns its size."""
    # 303 to a signed URL (another host for an S3 store; httpx drops the token there).
    response = _check(await client.get(f"/reports/{report_id}/file", follow_redirects=True))
    partial = output.with_name(output.name + ".part")
    await asyncio.to_thread(partial.write_bytes, response.content)
    await asyncio.to_thread(partial.replace, output)
    return len(response.content)


# --- Ctrl-C ---


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


async def _wait_cancelled(client: httpx.AsyncClient, report_id: str) -> str:
    """The report's status once it stops (bounded); the cancel is asynchronous."""
    status = "running"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CANCEL_CONFIRM_SECONDS):
            while status not in FINAL:
                response = await client.get(f"/reports/{report_id}")
                status = _check(response).json()["status"]
                if status not in FINAL:
                    await asyncio.sleep(0.5)
    return status


async def on_interrupt(
    client: httpx.AsyncClient,
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
        _check(await client.post(f"/reports/{report_id}/cancel"))
        status = await _wait_cancelled(client, report_id)
    except ApiError as err:
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


# --- the command ---


async def _report(
    client: httpx.AsyncClient,
    options: RequestOptions,
    progress: ProgressLine,
    stdout: TextIO,
    started: list[str],
) -> int:
    if options.report_id:
        doc = _check(await client.get(f"/reports/{options.report_id}")).json()
    else:
        doc = await start_report(client, options.start, options.end, options.kind, options.params)
    report_id = str(doc["report_id"])
    started.append(report_id)
    progress.say(f"report {report_id}: {doc['status']}")
    progress.show(doc)
    if doc["status"] not in FINAL:
        try:
            async with asyncio.timeout(options.timeout):
                doc = await follow(client, report_id, progress, run_id=doc.get("run_id"))
        except TimeoutError:
            progress.say(
                f"gave up after {options.timeout:g} s; report {report_id} runs on: "
                f"follow it again with: reportflow request --report {report_id}"
            )
            return EXIT_GAVE_UP
    if doc["status"] == "failed":
        error = doc.get("error") or {}
        progress.say(
            f"report {report_id} failed: {error.get('type', 'Unknown')}: "
            f"{error.get('message', doc.get('last_error') or 'no reason recorded')}"
        )
        return EXIT_FAILED
    if doc["status"] == "cancelled":
        error = doc.get("error") or {}
        progress.say(f"report {report_id} was cancelled: {error.get('message', '')}".rstrip(": "))
        return EXIT_CANCELLED
    result = doc.get("result") or {}
    if result.get("emailed_to"):
        progress.say(f"emailed to {', '.join(result['emailed_to'])}")
    link = result.get("pdf_url") or result.get("file_url") or doc["links"]["pdf"]
    stdout.write(f"{client.base_url.join(link)}\n")
    stdout.flush()
    if options.output:
        try:
            size = await save_pdf(client, report_id, options.output)
        except OSError as err:
            progress.say(f"could not save the PDF to {options.output}: {err}")
            return EXIT_FAILED
        stdout.write(f"saved {options.output.resolve()} ({size} bytes)\n")
        stdout.flush()
    return EXIT_COMPLETED


def _check_options(options: RequestOptions) -> str | None:
    if not options.token:
        return (
            "no token: pass --token or set REPORTFLOW_TOKEN (`reportflow token create --user ID`)"
        )
    if options.report_id and (options.start or options.end):
        return "--report follows an existing report; --start and --end only apply to a new one"
    if options.output and not options.output.resolve().parent.is_dir():
        return f"cannot save to {options.output}: its folder does not exist"
    if options.timeout <= 0:
        return "--timeout must be a positive number of seconds"
    return None


async def request_report(
    options: RequestOptions,
    *,
    stdout: TextIO,
    stderr: TextIO,
    stdin: TextIO,
) -> int:
    """Start (or find) the report, follow it to the end, print and save its PDF."""
    progress = ProgressLine(stderr)
    problem = _check_options(options)
    if problem:
        progress.say(f"reportflow request: {problem}")
        return EXIT_REFUSED
    started: list[str] = []  # the report ID, once known (for Ctrl-C)
    async with httpx.AsyncClient(
        base_url=options.url,
        headers={"Authorization": f"Bearer {options.token}"},
        timeout=30.0,
    ) as client:
        with CtrlC() as ctrl_c:
            try:
                return await _report(client, options, progress, stdout, started)
            except asyncio.CancelledError:
                if not ctrl_c.absorb():
                    raise
                return await on_interrupt(
                    client, started[0] if started else None, progress, stdin, ctrl_c
                )
            except ApiError as err:
                progress.say(f"the API answered {err.status_code}: {err.detail}")
                return EXIT_REFUSED if err.status_code < 500 else EXIT_UNREACHABLE
            except httpx.TransportError as err:
                progress.say(
                    f"cannot reach the API at {options.url} ({err or type(err).__name__}); "
                    "is it running? Set --url or REPORTFLOW_URL"
                )
                return EXIT_UNREACHABLE
