"""`reportflow request`: the real command, run as a person runs it, against the real stack."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reportflow.cli.request.follow import follow, follow_polling, poll_delays
from reportflow.cli.request.progress import ProgressLine, retry_notice, status_line
from reportflow.client import ReportflowClient, ReportflowError, sse_events
from reportflow.core.config import Settings
from reportflow.models import STAGES, Backoff, RetrySchedule
from tests.conftest import FAST_BACKOFF, MakeUser
from tests.utils.data import sample_transactions
from tests.utils.reportflow_http import (
    FINAL,
    last_90_days,
    render_held,
    report_id_for,
    wait_status,
)
from tests.utils.smtp import SmtpServer
from tests.utils.stack import serve_api

through_the_stack = pytest.mark.usefixtures("worker")

BAR = re.compile(r"^\[[#-]+\]\s+(\d+)%\s+(\w+)", re.MULTILINE)


@dataclass
class Command:
    """`reportflow request` running in a subprocess, its stderr read as it comes."""

    process: asyncio.subprocess.Process
    stdout: str = ""
    stderr: str = ""

    async def wait_for_stderr(self, text: str, timeout: float = 60) -> None:
        assert self.process.stderr is not None
        try:
            async with asyncio.timeout(timeout):
                while text not in self.stderr:
                    chunk = await self.process.stderr.read(4096)
                    if not chunk:
                        raise AssertionError(f"stderr ended before {text!r}:\n{self.stderr}")
                    self.stderr += chunk.decode()
        except TimeoutError:
            raise AssertionError(f"no {text!r} on stderr in {timeout} s:\n{self.stderr}") from None

    async def finish(self, answer: bytes | None = None, timeout: float = 120) -> int:
        async with asyncio.timeout(timeout):
            out, err = await self.process.communicate(answer)
        self.stdout += out.decode()
        self.stderr += err.decode()
        assert self.process.returncode is not None
        return self.process.returncode


@contextlib.asynccontextmanager
async def request_command(api_url: str, *args: str) -> AsyncIterator[Command]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTFLOW_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "reportflow.cli", "request", "--url", api_url, *args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        yield Command(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def run_request(api_url: str, *args: str) -> Command:
    async with request_command(api_url, *args) as command:
        await command.finish(b"")
    return command


def report_id_in(stderr: str) -> str:
    match = re.search(r"report (report-\S+):", stderr)
    assert match, stderr
    return match[1]


# --- through the real stack ---


@through_the_stack
async def test_request_follows_each_stage_and_saves_the_pdf(
    api_url: str, make_user: MakeUser, tmp_path: Path
) -> None:
    start, end = last_90_days()
    user = await make_user(sample_transactions(start, 90, rng_seed=41))
    output = tmp_path / "r.pdf"

    command = await run_request(
        api_url,
        *("--token", user.token, "--output", str(output)),
        *("--start", start.isoformat(), "--end", end.isoformat()),
    )

    assert command.process.returncode == 0, command.stderr
    report_id = report_id_in(command.stderr)
    assert f"{api_url}/reports/{report_id}/pdf" in command.stdout.splitlines()
    assert f"saved {output}" in command.stdout
    assert output.read_bytes().startswith(b"%PDF")
    assert not list(tmp_path.glob("*.part"))
    shown = [(int(pct), stage) for pct, stage in BAR.findall(command.stderr)]
    stages = [stage for _, stage in shown]
    assert stages == sorted(stages, key=list(STAGES).index), "stages in order"
    assert shown[-1] == (100, "done")
    assert len(set(stages)) >= 2, command.stderr
    assert "emailed to" in command.stderr


@through_the_stack
async def test_request_of_a_failing_report_exits_1_with_the_reason(
    api_url: str, make_user: MakeUser
) -> None:
    user = await make_user(email=None)

    command = await run_request(api_url, "--token", user.token)

    assert command.process.returncode == 1, command.stderr
    assert "failed: NoEmailAddress:" in command.stderr
    assert "no email address" in command.stderr
    assert command.stdout == ""


@through_the_stack
async def test_request_with_a_bad_token_exits_2_with_the_api_detail(api_url: str) -> None:
    command = await run_request(api_url, "--token", "not-a-token")

    assert command.process.returncode == 2
    assert "401" in command.stderr
    assert "missing, unknown, expired or revoked bearer token" in command.stderr


@through_the_stack
async def test_request_of_a_reversed_range_exits_2_with_the_api_detail(
    api_url: str, make_user: MakeUser
) -> None:
    user = await make_user()
    end = datetime.now(UTC).date()

    command = await run_request(
        api_url,
        *("--token", user.token, "--start", str(end), "--end", str(end - timedelta(days=9))),
    )

    assert command.process.returncode == 2
    assert "422" in command.stderr
    assert "is after end" in command.stderr
    assert "Value error" not in command.stderr


@pytest.fixture
async def patient_api_url(settings: Settings) -> AsyncIterator[str]:
    """A second API on the same stack whose reports retry the render and email steps
    for minutes, so a report stays in flight as long as a test holds it."""
    patient = Backoff(
        initial_seconds=0.5, coefficient=1.0, maximum_seconds=0.5, maximum_attempts=400
    )
    retry = RetrySchedule(query=FAST_BACKOFF, render=patient, email=patient)
    async with serve_api(settings.model_copy(update={"retry": retry})) as url:
        yield url


@through_the_stack
async def test_ctrl_c_then_yes_cancels_the_report_and_exits_130(
    patient_api_url: str,
    http: httpx.AsyncClient,
    make_user: MakeUser,
    smtp: SmtpServer,
    settings: Settings,
) -> None:
    """SMTP accepts mail here: were the cancel ignored, the email would go out."""
    user = await make_user()
    with render_held(settings.report_store_path, report_id_for(user.id)):
        async with request_command(patient_api_url, "--token", user.token) as command:
            await command.wait_for_stderr("PDF rendering failed (")
            report_id = report_id_in(command.stderr)
            command.process.send_signal(signal.SIGINT)
            await command.wait_for_stderr(f"Cancel report {report_id}? [y/N]")
            code = await command.finish(b"y\n")
    done = await wait_status(http, user, report_id, FINAL)

    assert code == 130, command.stderr
    assert f"[y/N] y\nreport {report_id} cancelled" in command.stderr
    assert done["status"] == "cancelled"
    assert re.search(r"attempt \d+/400", command.stderr), command.stderr
    assert smtp.attempts_to(user.email or "") == []


@through_the_stack
async def test_ctrl_c_then_no_leaves_the_report_running_and_report_follows_it(
    patient_api_url: str, http: httpx.AsyncClient, make_user: MakeUser, smtp: SmtpServer
) -> None:
    user = await make_user()
    smtp.refuse(1000, to=user.email)
    try:
        async with request_command(patient_api_url, "--token", user.token) as command:
            await command.wait_for_stderr("emailing")
            report_id = report_id_in(command.stderr)
            command.process.send_signal(signal.SIGINT)
            await command.wait_for_stderr("[y/N]")
            code = await command.finish(b"\n")
        running = await http.get(f"/reports/{report_id}", headers=user.headers)
        assert running.json()["status"] == "running"
        async with request_command(
            patient_api_url, "--token", user.token, "--report", report_id
        ) as again:
            await again.wait_for_stderr("emailing")
            smtp.reset()
            again_code = await again.finish()
    finally:
        smtp.reset()

    assert code == 130, command.stderr
    assert f"left report {report_id} running" in command.stderr
    assert f"reportflow request --report {report_id}" in command.stderr
    assert again_code == 0, again.stderr
    assert f"/reports/{report_id}/pdf" in again.stdout


# --- the progress line, without a server ---

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


def test_status_line_shows_bar_percentage_and_stage() -> None:
    line = status_line({"progress": 40, "stage": "rendering"}, now=NOW)

    assert line == "[########------------]  40%  rendering"


@pytest.mark.parametrize(("progress", "filled"), [(0, 0), (5, 0), (50, 5), (99, 9), (100, 10)])
def test_status_line_bar_has_the_given_width(progress: int, filled: int) -> None:
    line = status_line({"progress": progress, "stage": "querying"}, now=NOW, width=10)

    bar = line[1 : line.index("]")]
    assert len(bar) == 10
    assert bar.count("#") == filled
    assert f"{progress}%" in line


def test_status_line_words_a_pending_retry() -> None:
    doc = {
        "progress": 80,
        "stage": "emailing",
        "retry": {
            "activity": "send_email",
            "attempt": 3,
            "maximum_attempts": 6,
            "last_error": "(421, '4.3.2 Service not available, try again later')",
            "next_attempt_at": (NOW + timedelta(seconds=12)).isoformat(),
        },
    }

    line = status_line(doc, now=NOW)

    assert line == (
        "[################----]  80%  emailing  email server unavailable "
        "(421 4.3.2 Service not available, try again later), next try in 12 s, attempt 3/6"
    )


def test_retry_notice_without_limit_time_or_error() -> None:
    notice = retry_notice(
        {"activity": "render", "attempt": 2, "maximum_attempts": 0, "last_error": None}, NOW
    )

    assert notice == "PDF rendering failed, attempt 2"


def test_retry_notice_shortens_a_long_error_and_says_when_due() -> None:
    notice = retry_notice(
        {
            "activity": "query",
            "attempt": 4,
            "maximum_attempts": 6,
            "last_error": "x" * 200 + "\nsecond line",
            "next_attempt_at": "2026-11-27T09:59:59Z",
        },
        NOW,
    )

    assert notice == f"database unavailable ({'x' * 59}…), trying again now, attempt 4/6"


def test_progress_redraws_one_line_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = ProgressLine(stream, tty=True)

    progress.show({"progress": 10, "stage": "querying"}, now=NOW)
    progress.show({"progress": 10, "stage": "querying"}, now=NOW)
    progress.show({"progress": 40, "stage": "rendering"}, now=NOW)
    progress.say("done")

    assert stream.getvalue() == (
        "\r[##------------------]  10%  querying\x1b[K"
        "\r[########------------]  40%  rendering\x1b[K"
        "\ndone\n"
    )


def test_progress_prints_a_line_per_change_elsewhere() -> None:
    stream = io.StringIO()
    progress = ProgressLine(stream, tty=False)

    progress.show({"progress": 10, "stage": "querying"}, now=NOW)
    progress.show({"progress": 10, "stage": "querying"}, now=NOW)
    progress.show({"progress": 40, "stage": "rendering"}, now=NOW)

    assert stream.getvalue().splitlines() == [
        "[##------------------]  10%  querying",
        "[########------------]  40%  rendering",
    ]


async def test_sse_events_parses_events_and_skips_keep_alives() -> None:
    lines = ["event: status", "id: 1", 'data: {"a": 1}', "", ": keep-alive", ""]
    lines += ["data: x", "data: y", ""]
    response = httpx.Response(
        200, text="\n".join(lines) + "\n", headers={"content-type": "text/event-stream"}
    )

    events = [event async for event in sse_events(response)]

    assert events == [("status", '{"a": 1}'), ("message", "x\ny")]


def test_poll_delays_grow_by_half_up_to_30_seconds() -> None:
    delays = poll_delays()

    first = [next(delays) for _ in range(12)]

    assert first[:4] == [2.0, 3.0, 4.5, 6.75]
    assert max(first) == 30.0
    assert first[-1] == 30.0


# --- following without the event stream (a stand-in API) ---

RUNNING = {"report_id": "r", "status": "running", "stage": "rendering", "progress": 40}
COMPLETED = {"report_id": "r", "status": "completed", "stage": "done", "progress": 100}


def stand_in_api(
    events: httpx.Response, statuses: list[httpx.Response | Exception]
) -> ReportflowClient:
    answers = iter(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return events
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = httpx.AsyncClient(base_url="http://api.test", transport=httpx.MockTransport(handle))
    return ReportflowClient(http=http)


def sse(*docs: dict[str, Any]) -> httpx.Response:
    body = "".join(f"event: status\ndata: {json.dumps(d)}\n\n" for d in docs)
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize(
    ("events", "notice"),
    [
        (httpx.Response(503, json={"detail": "restarting"}), "live updates unavailable"),
        (sse(RUNNING), "live updates ended early"),
    ],
)
async def test_follow_polls_when_the_event_stream_fails(
    events: httpx.Response, notice: str
) -> None:
    stream = io.StringIO()
    statuses: list[httpx.Response | Exception] = [
        httpx.Response(200, json=RUNNING),
        httpx.Response(200, json=COMPLETED),
    ]

    async with stand_in_api(events, statuses) as client:
        doc = await follow(client, "r", ProgressLine(stream, tty=False), poll=itertools.repeat(0.0))

    assert doc == COMPLETED
    assert notice in stream.getvalue()
    assert "polling instead" in stream.getvalue()
    assert stream.getvalue().splitlines()[-1] == "[####################] 100%  done"


async def test_polling_backs_off_honours_retry_after_and_waits_out_outages() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    statuses: list[httpx.Response | Exception] = [
        httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "7"}),
        httpx.ConnectError("connection refused"),
        httpx.Response(200, json=RUNNING, headers={"Retry-After": "2"}),
        httpx.Response(503, json={"detail": "temporal unavailable"}),
        httpx.Response(200, json=COMPLETED),
    ]
    stream = io.StringIO()

    async with stand_in_api(sse(), statuses) as client:
        doc = await follow_polling(client, "r", ProgressLine(stream, tty=False), sleep=record)

    assert doc == COMPLETED
    assert waits == [7.0, 3.0, 4.5, 6.75]
    assert "cannot reach the API" in stream.getvalue()
    assert "the API answered 503" in stream.getvalue()


async def test_polling_stops_on_a_refusal() -> None:
    statuses: list[httpx.Response | Exception] = [
        httpx.Response(404, json={"detail": "no such report"}),
    ]
    async with stand_in_api(sse(), statuses) as client:
        with pytest.raises(ReportflowError, match="no such report") as raised:
            await follow_polling(client, "r", ProgressLine(io.StringIO(), tty=False))

    assert raised.value.status_code == 404
