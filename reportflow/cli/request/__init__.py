"""`reportflow request`: start a report and follow it to its PDF from a terminal.

The report is followed through the API's Server-Sent Events; if that stream
breaks, the status document is polled instead (backing off, honouring
`Retry-After`). Results (the PDF's URL, the saved file) go to stdout; the
progress bar and notices go to stderr, so `reportflow request ... > url.txt`
keeps the bar on screen. Ctrl-C asks whether to cancel the report or leave it
running; the report ID is deterministic, so the same command re-attaches.

What comes from libraries: httpx (through `reportflow.client`) talks to the
API, httpx-sse reads the event stream (lines, fields, multi-line data,
keep-alive comments), rich measures the terminal and cuts the progress line to
its width in cells (a wide character takes two; cutting by characters would
wrap the line and break the redraw). What stays written here, and why:

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

The modules: `progress.py` (the line), `follow.py` (events, polling),
`interrupt.py` (Ctrl-C), and this one (the command). Every call to the API goes
through the public client, `reportflow.client.ReportflowClient`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TextIO

import httpx

from reportflow.cli.request.follow import follow
from reportflow.cli.request.interrupt import EXIT_INTERRUPTED, CtrlC, on_interrupt
from reportflow.cli.request.progress import ProgressLine
from reportflow.client import FINAL, ReportflowClient, ReportflowError

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_CANCELLED = 3
EXIT_GAVE_UP = 4
EXIT_UNREACHABLE = 5

__all__ = ["EXIT_INTERRUPTED", "RequestOptions", "request_report"]


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


async def start_report(
    client: ReportflowClient,
    start: date | None,
    end: date | None,
    kind: str | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {k: v.isoformat() for k, v in {"start": start, "end": end}.items() if v}
    if kind:
        body |= params or {}
    return await client.request(kind, **body)


async def save_file(client: ReportflowClient, report_id: str, output: Path) -> int:
    """Download the report's file next to `output`, then move it into place; its size."""
    partial = output.with_name(output.name + ".part")
    size = await client.download(report_id, partial)
    await asyncio.to_thread(partial.replace, output)
    return size


async def _report(
    client: ReportflowClient,
    options: RequestOptions,
    progress: ProgressLine,
    stdout: TextIO,
    started: list[str],
) -> int:
    if options.report_id:
        doc = await client.status(options.report_id)
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
    stdout.write(f"{client.url_of(link)}\n")
    stdout.flush()
    if options.output:
        try:
            size = await save_file(client, report_id, options.output)
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
    async with ReportflowClient(options.url, options.token, timeout=30.0) as client:
        with CtrlC() as ctrl_c:
            try:
                return await _report(client, options, progress, stdout, started)
            except asyncio.CancelledError:
                if not ctrl_c.absorb():
                    raise
                return await on_interrupt(
                    client, started[0] if started else None, progress, stdin, ctrl_c
                )
            except ReportflowError as err:
                progress.say(f"the API answered {err.status_code}: {err.detail}")
                return EXIT_REFUSED if err.status_code < 500 else EXIT_UNREACHABLE
            except httpx.TransportError as err:
                progress.say(
                    f"cannot reach the API at {options.url} ({err or type(err).__name__}); "
                    "is it running? Set --url or REPORTFLOW_URL"
                )
                return EXIT_UNREACHABLE
