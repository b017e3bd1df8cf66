"""`reportflow chaos`: break one part of the service while reports are in flight, then
count the reports lost, the emails sent twice, and how long recovery took.

Every run of a scenario builds a world of its own in a directory of its own: a
Temporal dev server with its state in a file, an SMTP server that records each
message, a database seeded with one user per report, the API behind uvicorn in this
process, and workers as OS processes (`python -m reportflow.worker`, each with its
own Chromium). Retries are fast (0.5 s doubling to 2 s, 20 attempts) and a render
that stops heartbeating for 4 s is retried, so recovery takes seconds, not minutes.

A scenario requests K reports through the HTTP API (one user each), injects its
fault at a moment it makes certain (a frozen Chromium holds every render in flight;
a paused worker holds the query stage back until the database is cut), ends the
fault, and waits (bounded) for every report to finish:

- lost: a report not completed by the deadline, or completed with no email;
- duplicate emails: messages beyond one per report, counted by recipient (how many
  of them repeat a Message-ID, which mail clients fold into one, is noted);
- recovery: from the end of the fault, or from its injection for an instant fault
  such as a SIGKILL, to the last report completing (Temporal's close times).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import httpx
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowExecutionStatus

from reportflow.core.codec import data_converter
from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema, users
from reportflow.core.temporal import DEV_NAMESPACE
from reportflow.core.tokens import create_token
from reportflow.models import Backoff, RetrySchedule, Timeouts
from reportflow.seed import seed
from reportflow.service.history import activity_starts
from reportflow_dev.testing import (
    RecordingSmtpServer,
    TcpProxy,
    TemporalDevServer,
    WorkerProcess,
    harness_secrets,
    kill_chromiums,
    serve_api,
)

log = logging.getLogger(__name__)

FAST = Backoff(initial_seconds=0.5, coefficient=2.0, maximum_seconds=2.0, maximum_attempts=20)
TIMEOUTS = Timeouts(query=3, render=30, render_heartbeat=4, email=10)

# How long a report may take to reach the state a fault needs (worker start-up included).
STAGE_WITHIN = 90.0
# Once the fault has ended (or was injected), every report must be final by then.
REPORT_DEADLINE = 60.0

# Faults that last a period. Temporal stays away longer than a render's heartbeat
# timeout, so the server finds the in-flight renders timed out when it is back;
# SMTP and the database stay away longer than two retry intervals at their cap,
# so every report fails at that stage again and again before it comes back.
TEMPORAL_OUTAGE = TIMEOUTS.render_heartbeat + 2.0
SMTP_OUTAGE = 2 * FAST.maximum_seconds + 1.0
DATABASE_OUTAGE = 2 * FAST.maximum_seconds + 1.0

INJECTION = "injection"
FAULT_END = "fault end"

QUERY, RENDER, EMAIL = "query", "render", "send_email"
SLOT = "acquire_slot"  # a run's first step, and its first database write


class ChaosError(RuntimeError):
    """A scenario could not bring the world into the state its fault needs."""


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    scenario: str
    reports: int
    lost: int
    duplicates: int
    recovery_seconds: float | None
    measured_from: str
    attempts: dict[str, int] = field(default_factory=dict)
    fault_seconds: float | None = None  # how long a lasting fault lasted
    relaunches: int = 0  # Chromium relaunches the workers logged
    api_errors: int = 0  # status polls the API did not answer with 200
    repeated_message_ids: int = 0  # duplicates that repeat a Message-ID
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Row:
    """One scenario over all its runs: the table's line."""

    scenario: str
    runs: int
    reports: int
    lost: int
    duplicates: int
    p95_recovery: float | None
    measured_from: str
    attempts: dict[str, int]
    fault_seconds: float | None
    relaunches: int
    api_errors: int
    repeated_message_ids: int
    notes: list[str]
    errors: int

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.errors == 0


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile by nearest rank (with three runs, the slowest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summarize(results: Sequence[RunResult]) -> list[Row]:
    rows: list[Row] = []
    for name in dict.fromkeys(r.scenario for r in results):
        runs = [r for r in results if r.scenario == name]
        attempts: dict[str, int] = {}
        notes: list[str] = []
        for run in runs:
            for activity, count in run.attempts.items():
                attempts[activity] = max(attempts.get(activity, 0), count)
            notes.extend(n for n in run.notes if n not in notes)
            if run.error:
                notes.append(f"harness error: {run.error}")
        complete = all(r.recovery_seconds is not None for r in runs)
        lasted = [r.fault_seconds for r in runs if r.fault_seconds is not None]
        rows.append(
            Row(
                scenario=name,
                runs=len(runs),
                reports=sum(r.reports for r in runs),
                lost=sum(r.lost for r in runs),
                duplicates=sum(r.duplicates for r in runs),
                p95_recovery=(
                    p95([r.recovery_seconds for r in runs if r.recovery_seconds is not None])
                    if complete
                    else None
                ),
                measured_from=runs[0].measured_from,
                attempts=attempts,
                fault_seconds=max(lasted) if lasted else None,
                relaunches=sum(r.relaunches for r in runs),
                api_errors=sum(r.api_errors for r in runs),
                repeated_message_ids=sum(r.repeated_message_ids for r in runs),
                notes=notes,
                errors=sum(1 for r in runs if r.error),
            )
        )
    return rows


HEADERS = (
    "scenario",
    "runs",
    "reports",
    "lost",
    "duplicate emails",
    "p95 recovery",
    "measured from",
)


def format_table(rows: Sequence[Row], database: str) -> str:
    cells = [
        [
            row.scenario,
            str(row.runs),
            str(row.reports),
            str(row.lost),
            str(row.duplicates),
            f"{row.p95_recovery:.1f} s" if row.p95_recovery is not None else "-",
            row.measured_from,
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]

    def line(values: Sequence[str]) -> str:
        first, *middle, last = values
        parts = [first.ljust(widths[0])]
        parts += [v.rjust(w) for v, w in zip(middle, widths[1:-1], strict=True)]
        parts.append(last.ljust(widths[-1]))
        return "  ".join(parts).rstrip()

    out = [line(HEADERS), *(line(c) for c in cells), ""]
    out.append(
        "recovery: from the fault's end, or from its injection for an instant fault, "
        "to the last report completing"
    )
    out.append(f"database: {database}")
    for row in rows:
        out.append(f"{row.scenario}:")
        out.extend(f"  - {note}" for note in row.notes)
        if row.fault_seconds is not None:
            out.append(f"  - the fault lasted up to {row.fault_seconds:.1f} s")
        tried = ", ".join(f"{name} {n}" for name, n in sorted(row.attempts.items()))
        out.append(f"  - most attempts one report needed: {tried or '-'}")
        if row.relaunches:
            out.append(f"  - workers relaunched Chromium {row.relaunches} time(s)")
        if row.repeated_message_ids:
            out.append(f"  - {row.repeated_message_ids} duplicate(s) repeat a Message-ID")
        if row.api_errors:
            out.append(f"  - {row.api_errors} status poll(s) got no 200 from the API")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- databases


class Database(Protocol):
    api_url: str
    worker_url: str
    outage: str
    stage: str  # the report stage the outage stops

    async def cut(self) -> None: ...
    async def restore(self) -> None: ...
    async def close(self) -> None: ...


class SqliteDatabase:
    """A SQLite file; cutting it holds the file's write lock from another connection.

    A local file cannot drop off a network, and moving it (or its directory) away
    does not reach a running worker: its pooled connection keeps the file open and
    reads on. In WAL mode readers never wait on a writer, so a held lock stops the
    first step that writes: taking the user's running-report slot waits on it, its
    attempt times out and is retried.
    """

    outage = "the SQLite file's write lock held by another connection"
    stage = SLOT

    def __init__(self, path: Path) -> None:
        self.path = path
        self.api_url = self.worker_url = f"sqlite+aiosqlite:///{path}"
        self._lock: sqlite3.Connection | None = None

    async def cut(self) -> None:
        def lock() -> sqlite3.Connection:
            conn = sqlite3.connect(
                self.path, timeout=10, isolation_level=None, check_same_thread=False
            )
            conn.execute("BEGIN EXCLUSIVE")
            return conn

        self._lock = await asyncio.to_thread(lock)

    async def restore(self) -> None:
        conn, self._lock = self._lock, None
        if conn is not None:

            def release() -> None:
                conn.execute("ROLLBACK")
                conn.close()

            await asyncio.to_thread(release)

    async def close(self) -> None:
        await self.restore()


class PostgresDatabase:
    """A database of its own (`chaos_<hex>`, dropped at the end) on a PostgreSQL server.

    Workers reach it through a TCP proxy, and cutting it stops the proxy: new
    connections are refused and open ones are cut, as when the database host drops
    off the network. The API connects directly, so it can still check tokens.
    """

    outage = "the workers' TCP path to PostgreSQL cut (connections refused and reset)"
    stage = SLOT

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"chaos_{uuid.uuid4().hex[:12]}"
        direct = make_url(admin_url).set(database=self.name)
        self.proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
        self.api_url = direct.render_as_string(hide_password=False)
        self.worker_url = direct.set(host="127.0.0.1", port=self.proxy.port).render_as_string(
            hide_password=False
        )

    async def _admin(self, statement: str) -> None:
        engine = create_engine(self.admin_url)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    async def create(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.name}"')
        await self.proxy.start()

    async def cut(self) -> None:
        await self.proxy.stop()

    async def restore(self) -> None:
        await self.proxy.start()

    async def close(self) -> None:
        await self.proxy.stop()
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def describe_database(postgres_url: str | None) -> str:
    if postgres_url:
        return "PostgreSQL, a database of its own per run (database-down: a TCP proxy cut)"
    return "SQLite, a file of its own per run (database-down: the file's write lock held)"


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class ChaosUser:
    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Report:
    id: str
    user: ChaosUser
    run_id: str


@dataclass
class Fault:
    """What a scenario did: its reports, and the moment recovery is measured from."""

    reports: list[Report]
    clock: float  # time.time()
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None  # how long a lasting fault lasted


def chaos_settings(root: Path, *, smtp_port: int, database_url: str, reports: int) -> Settings:
    """Fast, finite retries and a short render heartbeat timeout: recovery in seconds."""
    return Settings(
        environment="test",
        database_url=database_url,
        report_store_url=str(root / "reports"),
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_timeout_seconds=5.0,
        retry=RetrySchedule(query=FAST, render=FAST, email=FAST),
        timeouts=TIMEOUTS,
        rate_limit_per_minute=max(30, 4 * reports),
        worker_grace_seconds=5.0,
        worker_metrics_bind="",  # workers would share the port
        # Every report's render can be in flight at once on one worker.
        worker_max_concurrent_activities=max(8, reports),
        **harness_secrets(),
    )


@dataclass
class World:
    root: Path
    settings: Settings  # what the workers run with
    database: Database
    temporal: TemporalDevServer
    smtp: RecordingSmtpServer
    client: Client
    http: httpx.AsyncClient
    users: list[ChaosUser]
    deadline: float = REPORT_DEADLINE
    workers: list[WorkerProcess] = field(default_factory=list)
    frozen: set[int] = field(default_factory=set)
    api_errors: int = 0

    async def start_worker(self, *, wait: bool = True) -> WorkerProcess:
        log_file = self.root / f"worker-{len(self.workers) + 1}.log"
        worker = WorkerProcess.start(self.settings, self.temporal.address, log_file)
        self.workers.append(worker)
        if wait:
            await worker.wait_ready()
        return worker

    def freeze_browser(self, worker: WorkerProcess) -> int:
        """SIGSTOP the worker's Chromium: every render on it waits until thawed or killed."""
        pids = worker.chromium_pids()
        if len(pids) != 1:
            raise ChaosError(f"expected one Chromium under worker {worker.pid}, found {pids}")
        os.kill(pids[0], signal.SIGSTOP)
        self.frozen.add(pids[0])
        return pids[0]

    def thaw(self, pid: int) -> None:
        self.frozen.discard(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    async def request_reports(self) -> list[Report]:
        """One report per user through `POST /reports`, as a person would click."""
        reports = []
        for user in self.users:
            response = await self.http.post("/reports", json={}, headers=user.headers)
            if response.status_code != 202:
                raise ChaosError(
                    f"POST /reports for {user.id} answered {response.status_code}: {response.text}"
                )
            report_id: str = response.json()["report_id"]
            description = await self.client.get_workflow_handle(report_id).describe()
            reports.append(Report(report_id, user, description.run_id or ""))
        return reports

    async def wait_activities(
        self,
        reports: Sequence[Report],
        activity: str,
        accept: Callable[[PendingActivityInfo], bool],
        what: str,
    ) -> None:
        """Until every report has a pending `activity` that `accept`s (by describe)."""
        seen: dict[str, list[str]] = {}
        try:
            async with asyncio.timeout(STAGE_WITHIN):
                while True:
                    ready = 0
                    for report in reports:
                        description = await self.client.get_workflow_handle(report.id).describe()
                        mine = [
                            p
                            for p in description.raw_description.pending_activities
                            if p.activity_type.name == activity
                        ]
                        seen[report.id] = [f"{_state(p)} attempt {p.attempt}" for p in mine]
                        ready += any(accept(p) for p in mine)
                    if ready == len(reports):
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise ChaosError(
                f"timed out after {STAGE_WITHIN:.0f}s waiting for {what}; "
                f"pending {activity} activities: {seen}; logs in {self.root}"
            ) from None

    async def wait_final(self, reports: Sequence[Report]) -> dict[str, str]:
        """Each report's status from `GET /reports/{id}`, once final or at the deadline."""
        statuses: dict[str, str] = {}
        final = {"completed", "failed", "cancelled"}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.deadline):
                while True:
                    for report in reports:
                        if statuses.get(report.id) in final:
                            continue
                        try:
                            response = await self.http.get(
                                f"/reports/{report.id}", headers=report.user.headers
                            )
                        except httpx.HTTPError:
                            self.api_errors += 1
                            continue
                        if response.status_code != 200:
                            self.api_errors += 1
                            continue
                        statuses[report.id] = response.json()["status"]
                    if all(statuses.get(r.id) in final for r in reports):
                        break
                    await asyncio.sleep(0.2)
        return statuses

    async def stop_workers(self) -> None:
        self._kill_frozen()
        for worker in self.workers:
            await asyncio.to_thread(worker.stop)

    def _kill_frozen(self) -> None:
        kill_chromiums(self.frozen)
        self.frozen.clear()


def _state(pending: PendingActivityInfo) -> str:
    started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    return "started" if started else "scheduled"


def _started(pending: PendingActivityInfo) -> bool:
    return pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED


def _retried(pending: PendingActivityInfo) -> bool:
    """The activity has failed at least once."""
    return pending.attempt >= 2


async def _seed(url: str, count: int) -> list[ChaosUser]:
    """`count` demo users with 90 days of transactions, and a token each."""
    engine = create_engine(url)
    try:
        await create_schema(engine)
        await seed(engine, users=count, days=90)
        async with engine.connect() as conn:
            query = select(users.c.id, users.c.email).order_by(users.c.id)
            rows = (await conn.execute(query)).all()
        return [
            ChaosUser(row.id, row.email, await create_token(engine, user_id=row.id, label="chaos"))
            for row in rows
        ]
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def open_world(
    root: Path,
    *,
    reports: int,
    postgres_url: str | None = None,
    deadline: float = REPORT_DEADLINE,
) -> AsyncIterator[World]:
    """Everything one run needs, in `root`; torn down (workers first) at the end."""
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        database: Database
        if postgres_url:
            postgres = PostgresDatabase(postgres_url)
            stack.push_async_callback(postgres.close)
            await postgres.create()
            database = postgres
        else:
            database = SqliteDatabase(root / "db" / "reportflow.db")
            stack.push_async_callback(database.close)
        smtp = RecordingSmtpServer()
        settings = chaos_settings(
            root, smtp_port=smtp.port, database_url=database.worker_url, reports=reports
        )
        chaos_users = await _seed(database.api_url, reports)
        temporal = TemporalDevServer(root / "temporal.db", root / "temporal.log")
        stack.push_async_callback(temporal.stop)
        await temporal.start()
        stack.push_async_callback(smtp.stop)
        await smtp.start()
        client = await Client.connect(
            temporal.address,
            namespace=DEV_NAMESPACE,
            data_converter=data_converter(settings.keyring()),
        )
        api_settings = settings.model_copy(update={"database_url": database.api_url})
        url = await stack.enter_async_context(
            serve_api(api_settings, temporal_address=temporal.address)
        )
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=15))
        world = World(root, settings, database, temporal, smtp, client, http, chaos_users, deadline)
        stack.push_async_callback(world.stop_workers)
        yield world


# --------------------------------------------------------------------------- scenarios


async def _worker_sigkill(world: World) -> Fault:
    first = await world.start_worker()
    world.freeze_browser(first)
    reports = await world.request_reports()
    await world.wait_activities(reports, RENDER, _started, "every render in flight")
    injected = time.time()
    first.kill_all()
    # What a supervisor does: start a replacement. Recovery includes its start-up.
    await world.start_worker(wait=False)
    return Fault(
        reports,
        injected,
        [
            "SIGKILL to the worker's process group and its Chromium with every render "
            "in flight; a new worker process was started at once"
        ],
    )


async def _temporal_restart(world: World) -> Fault:
    worker = await world.start_worker()
    chromium = world.freeze_browser(worker)
    reports = await world.request_reports()
    await world.wait_activities(reports, RENDER, _started, "every render in flight")
    await world.temporal.stop()
    stopped = time.time()
    # The renders finish while the server is away: their results cannot be reported.
    world.thaw(chromium)
    # The outage itself (see TEMPORAL_OUTAGE).
    await asyncio.sleep(TEMPORAL_OUTAGE)
    await world.temporal.start()
    back = time.time()
    notes = [
        "the dev server was stopped (SIGTERM) with every render in flight, then "
        "started again on the same port and database file"
    ]
    if worker.alive:
        notes.append(
            "the worker process and the API's Temporal client lived through the restart "
            "(no other worker; statuses read through the API)"
        )
    else:
        notes.append(
            f"the worker process exited ({worker.process.returncode}) while Temporal "
            "was away; a new one was started"
        )
        await world.start_worker(wait=False)
    return Fault(reports, back, notes, seconds=back - stopped)


async def _smtp_down(world: World) -> Fault:
    await world.start_worker()
    await world.smtp.stop()
    stopped = time.time()
    reports = await world.request_reports()
    await world.wait_activities(reports, EMAIL, _retried, "a failed email of every report")
    # The outage itself (see SMTP_OUTAGE).
    await asyncio.sleep(SMTP_OUTAGE)
    await world.smtp.start()
    back = time.time()
    return Fault(
        reports,
        back,
        ["the SMTP server's port was closed (connection refused) from before the requests"],
        seconds=back - stopped,
    )


async def _database_down(world: World) -> Fault:
    worker = await world.start_worker()
    # Hold the worker while the reports are requested, so that their stages start
    # only once the database is cut (the API needs the database itself, for the
    # requests' tokens).
    worker.pause()
    try:
        reports = await world.request_reports()
        await world.database.cut()
        cut = time.time()
    finally:
        worker.resume()
    stage = world.database.stage
    await world.wait_activities(reports, stage, _retried, f"a failed {stage} of every report")
    # The outage itself (see DATABASE_OUTAGE).
    await asyncio.sleep(DATABASE_OUTAGE)
    await world.database.restore()
    back = time.time()
    return Fault(reports, back, [world.database.outage], seconds=back - cut)


async def _chromium_kill(world: World) -> Fault:
    worker = await world.start_worker()
    chromium = world.freeze_browser(worker)
    reports = await world.request_reports()
    await world.wait_activities(reports, RENDER, _started, "every render in flight")
    injected = time.time()
    # The browser and its helpers (Chromium leads a process group of its own).
    try:
        os.killpg(chromium, signal.SIGKILL)
    except ProcessLookupError:
        os.kill(chromium, signal.SIGKILL)
    world.frozen.discard(chromium)
    return Fault(
        reports, injected, ["SIGKILL to Chromium's process group with every render in flight"]
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    measured_from: str
    inject: Callable[[World], Awaitable[Fault]]


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("worker-sigkill", INJECTION, _worker_sigkill),
        Scenario("temporal-restart", FAULT_END, _temporal_restart),
        Scenario("smtp-down", FAULT_END, _smtp_down),
        Scenario("database-down", FAULT_END, _database_down),
        Scenario("chromium-kill", INJECTION, _chromium_kill),
    )
}


# --------------------------------------------------------------------------- measuring


async def _attempts(client: Client, reports: Sequence[Report]) -> dict[str, int]:
    """The most attempts any one report needed, per activity (from the histories)."""
    most: dict[str, int] = {}
    for report in reports:
        for start in await activity_starts(client, report.id):
            most[start.activity] = max(most.get(start.activity, 0), start.attempt)
    return most


async def _measure(world: World, scenario: Scenario, fault: Fault) -> RunResult:
    statuses = await world.wait_final(fault.reports)
    # Workers drain before the emails are counted, so that a straggling attempt
    # has sent whatever it was going to send.
    await world.stop_workers()
    notes = list(fault.notes)
    lost = duplicates = repeated_ids = 0
    closed: list[float] = []
    for report in fault.reports:
        description = await world.client.get_workflow_handle(report.id).describe()
        emails = world.smtp.to(report.user.email)
        status = statuses.get(report.id, "unknown")
        completed = status == "completed" and (
            description.status == WorkflowExecutionStatus.COMPLETED
        )
        if not completed or not emails:
            lost += 1
            notes.append(f"LOST {report.id}: {status}, {len(emails)} emails; logs in {world.root}")
        elif description.close_time is not None:
            closed.append(description.close_time.timestamp())
        duplicates += max(0, len(emails) - 1)
        repeated_ids += len(emails) - len({e.message_id for e in emails})
        if description.run_id != report.run_id:
            notes.append(f"{report.id} finished on another run than it started on")
    recovery = max(closed) - fault.clock if lost == 0 and closed else None
    return RunResult(
        scenario=scenario.name,
        reports=len(fault.reports),
        lost=lost,
        duplicates=duplicates,
        recovery_seconds=recovery,
        measured_from=scenario.measured_from,
        attempts=await _attempts(world.client, fault.reports),
        fault_seconds=fault.seconds,
        relaunches=sum(max(0, w.log_text().count("launch #") - 1) for w in world.workers),
        api_errors=world.api_errors,
        repeated_message_ids=repeated_ids,
        notes=notes,
    )


async def run_once(
    name: str,
    root: Path,
    *,
    reports: int = 3,
    postgres_url: str | None = None,
    deadline: float = REPORT_DEADLINE,
) -> RunResult:
    """One run of one scenario in a world of its own under `root`; errors propagate.

    `deadline`: seconds after the fault within which every report must be final.
    """
    scenario = SCENARIOS[name]
    async with open_world(
        root, reports=reports, postgres_url=postgres_url, deadline=deadline
    ) as world:
        log.info("chaos %s: world ready in %s", name, root)
        fault = await scenario.inject(world)
        result = await _measure(world, scenario, fault)
    log.info(
        "chaos %s: lost %d, duplicates %d, recovery %s s",
        name,
        result.lost,
        result.duplicates,
        f"{result.recovery_seconds:.1f}" if result.recovery_seconds is not None else "-",
    )
    return result


@dataclass
class ChaosOptions:
    runs: int = 1
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    reports: int = 3
    postgres_url: str | None = None
    workdir: Path | None = None


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[tuple[Path, Callable[[], None]]]:
    """The given directory (kept), or a temporary one and a function that deletes it."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path, lambda: None
        return
    tmp = Path(tempfile.mkdtemp(prefix="reportflow-chaos-"))
    yield tmp, lambda: shutil.rmtree(tmp, ignore_errors=True)


async def run_chaos(options: ChaosOptions, out: TextIO) -> int:
    """Run each scenario `options.runs` times, write the table; 0 only if nothing was lost
    or duplicated. A run that breaks counts all its reports as lost."""
    unknown = [s for s in options.scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {unknown}; choose from {', '.join(SCENARIOS)}")
    # SIGTERM tears the worlds down as Ctrl-C does (the workers live in sessions of their own).
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await _run_all(options, out)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _run_all(options: ChaosOptions, out: TextIO) -> int:
    results: list[RunResult] = []
    with _workdir(options.workdir) as (root, remove):
        for name in options.scenarios:
            for n in range(1, options.runs + 1):
                log.info("chaos %s: run %d of %d", name, n, options.runs)
                try:
                    results.append(
                        await run_once(
                            name,
                            root / f"{name}-{n}",
                            reports=options.reports,
                            postgres_url=options.postgres_url,
                        )
                    )
                except Exception as err:
                    log.exception("chaos %s: run %d broke", name, n)
                    results.append(
                        RunResult(
                            scenario=name,
                            reports=options.reports,
                            lost=options.reports,
                            duplicates=0,
                            recovery_seconds=None,
                            measured_from=SCENARIOS[name].measured_from,
                            error=f"run {n}: {type(err).__name__}: {err}",
                        )
                    )
        rows = summarize(results)
        ok = all(row.ok for row in rows)
        out.write(format_table(rows, describe_database(options.postgres_url)))
        if ok:
            remove()
        else:
            out.write(f"logs and databases of every run: {root}\n")
    out.flush()
    return 0 if ok else 1
