"""A worker dies or is stopped in the middle of a render: nothing is lost, nothing is doubled.

Everything is real: the Temporal dev server, the API behind uvicorn, the SMTP test
server, and workers as separate OS processes (`python -m reportflow.worker`) with
their own Chromium. Each test builds its own settings with a fresh task queue, so
the session's in-process worker never touches its reports.

To hold a render in flight, the worker's Chromium is frozen with SIGSTOP before the
report is requested: the render activity starts, then waits on the browser for as
long as the test wants. SIGKILL ends a stopped process too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import PendingActivityState, TimeoutType
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from reportflow.core.browser import CLOSE_TIMEOUT_SECONDS
from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.temporal import with_codec
from reportflow.core.tokens import create_token
from reportflow.models import Timeouts
from reportflow.service.history import ActivityStart, activity_starts
from reportflow_dev.testing import WorkerProcess, kill_chromiums, serve_api, worker_process
from tests.conftest import User, make_settings
from tests.utils.data import create_user, sample_transactions
from tests.utils.reportflow_http import FINAL, download_pdf, last_90_days, wait_status
from tests.utils.smtp import SmtpServer
from tests.utils.wait import wait_until

pytestmark = pytest.mark.faults

RENDER = "render"
# Worker processes import everything and launch Chromium before they poll; the
# machines running the suite may be busy, so these bounds are generous.
WORKER_START_TIMEOUT = 90.0
REPORT_TIMEOUT = 120.0
# For the SIGTERM tests, which are about draining, not heartbeats: the attempt stays
# alive however long the frozen Chromium holds it (a render waiting on the browser
# where it does not heartbeat would otherwise time out after the suite's 3 s and be
# retried, whatever the worker does).
PATIENT_HEARTBEAT = Timeouts(query=10, render=60, render_heartbeat=30, email=10)


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """One test's own API, user and worker processes, on one task queue."""

    settings: Settings
    http: httpx.AsyncClient
    user: User
    client: Client
    smtp: SmtpServer
    temporal_address: str
    tmp: Path
    frozen: list[int] = field(default_factory=list)

    @contextlib.contextmanager
    def worker(self, name: str) -> Iterator[WorkerProcess]:
        """A worker process; its log goes to `worker-<name>.log` in the test's tmp dir."""
        log = self.tmp / f"worker-{name}.log"
        with worker_process(self.settings, self.temporal_address, log) as process:
            yield process

    async def request_report(self) -> str:
        response = await self.http.post("/reports", json={}, headers=self.user.headers)
        assert response.status_code == 202, response.text
        report_id: str = response.json()["report_id"]
        return report_id

    def freeze(self, pid: int) -> None:
        """SIGSTOP a Chromium: every render on it waits until it is thawed (or killed)."""
        self.frozen.append(pid)
        os.kill(pid, signal.SIGSTOP)

    def thaw(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    def release_frozen(self) -> None:
        """Kill what is left of the Chromiums this test froze (a stopped one never exits).

        Only processes still carrying our marker switch are touched, in case a PID
        was reused by now.
        """
        kill_chromiums(self.frozen)


@contextlib.asynccontextmanager
async def own_stack(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment, **overrides: object
) -> AsyncIterator[Stack]:
    """Settings with a fresh task queue, a user with 90 days of data, the API on them.

    A failure inside gets the tail of every worker log attached as a note, so a
    failure on a busy CI machine can be understood from the report alone.
    """
    settings = make_settings(tmp_path, smtp.port, **overrides)
    engine = create_engine(settings.database_url)
    try:
        await create_schema(engine)
        start, _ = last_90_days()
        user_id = await create_user(engine, transactions=sample_transactions(start, 90, 17))
        token = await create_token(engine, user_id=user_id)
    finally:
        await engine.dispose()
    user = User(user_id, f"{user_id}@example.com", token)
    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        stack = Stack(
            settings=settings,
            http=http,
            user=user,
            client=with_codec(temporal_env.client, settings),
            smtp=smtp,
            temporal_address=temporal_env.client.service_client.config.target_host,
            tmp=tmp_path,
        )
        try:
            yield stack
        except Exception as err:
            err.add_note(_worker_logs(tmp_path))
            raise
        finally:
            stack.release_frozen()


def _worker_logs(tmp: Path, lines: int = 30) -> str:
    parts = []
    for log in sorted(tmp.glob("worker-*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- last {lines} lines of {log.name} ---\n" + "\n".join(tail))
    return "\n".join(parts)


# --------------------------------------------------------------------------- waiting


async def wait_for_browser(worker: WorkerProcess) -> int:
    """The PID of the worker's Chromium, once the worker is ready.

    The worker launches Chromium before it starts polling, so its "polling" log line
    is the signal. Freezing a Chromium found any earlier could catch it mid-launch:
    the launch then times out and the worker quietly renders on a second browser.
    """
    await wait_log(worker, "worker polling task queue", timeout=WORKER_START_TIMEOUT)
    pids = worker.chromium_pids()
    assert len(pids) == 1, f"one browser per worker process, found {pids}"
    return pids[0]


async def wait_render_started(client: Client, report_id: str) -> PendingActivityInfo:
    """The render activity once a worker has started it (describe needs no worker)."""

    async def probe() -> list[PendingActivityInfo]:
        description = await client.get_workflow_handle(report_id).describe()
        pending = description.raw_description.pending_activities
        return [p for p in pending if p.activity_type.name == RENDER]

    started = await wait_until(
        probe,
        lambda renders: any(
            p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED for p in renders
        ),
        timeout=WORKER_START_TIMEOUT,
        what=f"render of {report_id} started",
    )
    return started[0]


async def wait_exit(worker: WorkerProcess, timeout: float) -> int:
    """The worker's exit code; fails if it is still running after `timeout` seconds."""

    async def probe() -> int | None:
        return worker.process.poll()

    code = await wait_until(
        probe, lambda c: c is not None, timeout=timeout, what=f"worker {worker.process.pid} exit"
    )
    assert code is not None
    return code


async def wait_log(worker: WorkerProcess, text: str, timeout: float = 10.0) -> None:
    """Until the worker's log mentions `text`; fails at once if the worker exits first."""

    async def probe() -> str:
        log = worker.log.read_text(errors="replace") if worker.log.exists() else ""
        code = worker.process.poll()
        assert code is None or text in log, f"worker exited with {code} before logging {text!r}"
        return log

    await wait_until(
        probe, lambda log: text in log, timeout=timeout, interval=0.2, what=f"{text!r} in log"
    )


# --------------------------------------------------------------------------- evidence


async def render_starts(client: Client, report_id: str) -> list[ActivityStart]:
    """The render's ActivityTaskStarted events from the workflow history."""
    return [s for s in await activity_starts(client, report_id) if s.activity == RENDER]


def identity_of(worker: WorkerProcess) -> str:
    """The SDK's default worker identity starts with `<pid>@`."""
    return f"{worker.process.pid}@"


async def assert_one_email_with_the_pdf(stack: Stack, report_id: str) -> EmailMessage:
    address = stack.user.email or ""
    message = await stack.smtp.wait_for_message(address)
    sent = stack.smtp.messages_to(address)
    assert len(sent) == 1, f"{len(sent)} emails to {address}: {[m['Message-ID'] for m in sent]}"
    attachments = list(message.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["application/pdf"]
    pdf = await download_pdf(stack.http, stack.user, report_id)
    assert attachments[0].get_content() == pdf
    return message


async def wait_completed(stack: Stack, report_id: str) -> None:
    done = await wait_status(stack.http, stack.user, report_id, FINAL, timeout=REPORT_TIMEOUT)
    assert done["status"] == "completed", done


# --------------------------------------------------------------------------- the tests


async def test_worker_killed_while_rendering_new_worker_finishes_with_one_email(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    async with own_stack(tmp_path, smtp, temporal_env) as stack:
        with stack.worker("a") as a:
            stack.freeze(await wait_for_browser(a))
            report_id = await stack.request_report()
            render = await wait_render_started(stack.client, report_id)
            assert render.last_worker_identity.startswith(identity_of(a))

            a.kill_all()

            assert a.process.returncode == -signal.SIGKILL
        with stack.worker("b") as b:
            # No heartbeat from the dead worker: after `render_heartbeat` (3 s) the
            # render is retried, and worker B is the only one left to take it.
            await wait_completed(stack, report_id)
            [start] = await render_starts(stack.client, report_id)
            assert start.attempt >= 2, start
            assert start.identity.startswith(identity_of(b)), start
            assert (
                start.last_failure.timeout_failure_info.timeout_type
                == TimeoutType.TIMEOUT_TYPE_HEARTBEAT
            ), start
            await assert_one_email_with_the_pdf(stack, report_id)


async def test_sigterm_while_rendering_drains_and_exits_zero(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    grace = 20.0
    async with own_stack(
        tmp_path, smtp, temporal_env, worker_grace_seconds=grace, timeouts=PATIENT_HEARTBEAT
    ) as stack:
        with stack.worker("a") as a:
            chromium = await wait_for_browser(a)
            stack.freeze(chromium)
            report_id = await stack.request_report()
            await wait_render_started(stack.client, report_id)

            a.process.send_signal(signal.SIGTERM)
            await wait_log(a, "draining")
            await asyncio.sleep(0.5)  # the worker is draining, the render still stuck
            assert a.process.poll() is None, "the worker must wait for its running render"
            stack.thaw(chromium)

            code = await wait_exit(a, timeout=grace + 10)
            assert code == 0
            log = a.log.read_text(errors="replace")
            assert log.index("draining") < log.index("rendered"), "rendered during the drain"
        # Worker A stopped polling when it began draining: the email step needs B.
        with stack.worker("b"):
            await wait_completed(stack, report_id)
            [start] = await render_starts(stack.client, report_id)
            assert start.attempt == 1, start
            assert start.identity.startswith(identity_of(a)), start
            await assert_one_email_with_the_pdf(stack, report_id)


async def test_sigterm_grace_exceeded_activity_retried_elsewhere(
    tmp_path: Path, smtp: SmtpServer, temporal_env: WorkflowEnvironment
) -> None:
    grace = 1.0
    async with own_stack(
        tmp_path, smtp, temporal_env, worker_grace_seconds=grace, timeouts=PATIENT_HEARTBEAT
    ) as stack:
        with stack.worker("a") as a:
            stack.freeze(await wait_for_browser(a))
            report_id = await stack.request_report()
            await wait_render_started(stack.client, report_id)

            a.process.send_signal(signal.SIGTERM)

            # Chromium stays frozen: the render is cancelled after the grace, and
            # the worker must still exit, not hang on closing the stopped browser.
            code = await wait_exit(a, timeout=grace + CLOSE_TIMEOUT_SECONDS + 10)
            assert code == 0
        with stack.worker("b") as b:
            await wait_completed(stack, report_id)
            [start] = await render_starts(stack.client, report_id)
            assert start.attempt == 2, start
            assert start.identity.startswith(identity_of(b)), start
            # Worker A failed the attempt as it left (the SDK's words), so the retry
            # did not wait for the 30 s heartbeat timeout.
            assert "shutting down" in start.last_failure.message, start
            assert (
                start.last_failure.timeout_failure_info.timeout_type
                == TimeoutType.TIMEOUT_TYPE_UNSPECIFIED
            ), start
            await assert_one_email_with_the_pdf(stack, report_id)
