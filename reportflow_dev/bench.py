"""`reportflow bench`: what the service costs, measured on the machine it runs on.

A private stack in a temporary directory (the Temporal dev server from the lock
file, a recording SMTP server, SQLite seeded with 90 days per user, the API
behind uvicorn, one worker process with its Chromium) and then:

- the API's answer time for `POST /reports` and `GET /reports/{id}`;
- reports end to end (click to email sent) with many in flight at once, and
  the throughput that gives;
- the parts alone: the SQL aggregation, a warm render, a Chromium launch;
- what Temporal carries per report: the actions one costs (the server's own
  `action` counter over the burst) and one completed report's history;
- the embedded dev server's ceiling: GenerateReport runs with instant stand-in
  activities, as many as it completes per minute.

These figures feed the capacity model (`reportflow_dev.capacity`, `--capacity N`).

Figures are printed, never asserted: speed is measured here, not in tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from reportflow.core.browser import Browser, find_chromium
from reportflow.core.codec import data_converter
from reportflow.core.config import Settings
from reportflow.core.db import create_engine, create_schema
from reportflow.core.temporal import DEV_NAMESPACE
from reportflow.core.tokens import create_token
from reportflow.models import (
    Backoff,
    CleanupInput,
    EmailInput,
    EmailResult,
    GenerateReportInput,
    QueryInput,
    RenderInput,
    RenderResult,
    ReportData,
    RetrySchedule,
    SlotGrant,
    SlotInput,
    Timeouts,
    email_queue,
)
from reportflow.report import render_html
from reportflow.report.query import aggregate
from reportflow.seed import seed, user_id_for
from reportflow.workflows.generate_report import GenerateReport
from reportflow_dev.capacity import Figures
from reportflow_dev.testing import (
    RecordingSmtpServer,
    TemporalDevServer,
    WorkerProcess,
    free_port,
    harness_secrets,
    serve_api,
)

log = logging.getLogger(__name__)


@dataclass
class BenchOptions:
    users: int = 20
    requests: int = 40
    reports: int = 20
    samples: int = 10
    ceiling_reports: int = 200


@dataclass
class Row:
    measure: str
    n: int
    p50: float
    p95: float
    unit: str = "ms"
    note: str = ""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(measure: str, seconds: list[float], note: str = "", unit: str = "ms") -> Row:
    scale = 1000.0 if unit == "ms" else 1.0
    values = [s * scale for s in seconds]
    return Row(
        measure, len(values), statistics.median(values), _percentile(values, 0.95), unit, note
    )


async def _timed(n: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    times = []
    for i in range(n):
        began = time.perf_counter()
        await call(i)
        times.append(time.perf_counter() - began)
    return times


@dataclass
class BenchResult:
    rows: list[Row] = field(default_factory=list)
    # Filled in by the run, for the capacity model.
    reports_per_minute: float = 0.0
    actions_per_report: float = 0.0
    history_events: int = 0
    history_bytes: int = 0
    dev_server_reports_per_minute: float = 0.0
    data: ReportData | None = None

    def figures(self) -> Figures:
        return Figures(
            reports_per_minute=self.reports_per_minute,
            cores=os.cpu_count() or 1,
            actions_per_report=self.actions_per_report,
            history_events=self.history_events,
            history_bytes=self.history_bytes,
            dev_server_reports_per_minute=self.dev_server_reports_per_minute,
        )


async def _parts(settings: Settings, options: BenchOptions, result: BenchResult) -> list[Row]:
    """The SQL aggregation, a warm render and a cold Chromium launch, alone."""
    engine = create_engine(settings.database_url)
    end = datetime.now(UTC).date()
    start = end - timedelta(days=89)

    async def query(i: int) -> object:
        user = user_id_for(i % options.users + 1)
        return await aggregate(engine, report_id="bench", user_id=user, start=start, end=end)

    query_times = await _timed(options.samples, query)
    data = await aggregate(engine, report_id="bench", user_id=user_id_for(1), start=start, end=end)
    await engine.dispose()
    result.data = data

    browser = Browser(find_chromium(settings.chromium_executable))
    began = time.perf_counter()
    await browser.start()
    launch = time.perf_counter() - began
    html = render_html(data)
    render_times = await _timed(options.samples, lambda _: browser.pdf(html))
    await browser.close()
    return [
        _row("query: 90-day aggregates in SQL", query_times, f"{data.transaction_count} rows/user"),
        _row("render: HTML -> PDF, warm Chromium", render_times),
        _row("chromium launch (once per worker)", [launch]),
    ]


async def _actions(temporal: TemporalDevServer, http: httpx.AsyncClient) -> Counter[str]:
    """The dev server's `action` counter (Temporal Cloud's billing unit) in our
    namespace, by action type."""
    text = (await http.get(f"http://127.0.0.1:{temporal.metrics_port}/metrics")).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples if family.name == "action" else []:
            if sample.labels.get("namespace") == DEV_NAMESPACE:
                counts[sample.labels.get("action_type", "")] += int(sample.value)
    return counts


async def _history(client: Client, report_id: str) -> tuple[int, int]:
    """(events, bytes) of a report's history."""
    history = await client.get_workflow_handle(report_id).fetch_history()
    return len(history.events), sum(event.ByteSize() for event in history.events)


async def _service(
    settings: Settings,
    temporal: TemporalDevServer,
    options: BenchOptions,
    tokens: list[str],
    result: BenchResult,
) -> list[Row]:
    """The API's answers, and reports end to end with many in flight."""
    client = await Client.connect(
        temporal.address, data_converter=data_converter(settings.keyring())
    )
    end = datetime.now(UTC).date()
    rows: list[Row] = []
    api = serve_api(settings, temporal_address=temporal.address)
    async with api as url, httpx.AsyncClient(base_url=url, timeout=60) as http:

        def headers(i: int) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}

        async def post(i: int) -> object:
            # Each request a new report (its own range), so each starts a workflow.
            day = end - timedelta(days=i // len(tokens) + 1)
            body = {"start": str(day - timedelta(days=89)), "end": str(day)}
            response = await http.post("/reports", json=body, headers=headers(i))
            response.raise_for_status()
            ids.append(response.json()["report_id"])
            return response

        ids: list[str] = []
        post_times = await _timed(options.requests, post)
        get_times = await _timed(
            options.requests,
            lambda i: http.get(f"/reports/{ids[i]}", headers=headers(i)),
        )
        rows += [
            _row("POST /reports (starts a workflow)", post_times),
            _row("GET /reports/{id} (describe)", get_times),
        ]
        await asyncio.gather(*(client.get_workflow_handle(i).result() for i in ids))

        # A burst: `reports` new reports at once, each timed from POST to done.
        async def one(i: int) -> float:
            day = end - timedelta(days=i // len(tokens) + 200)
            body = {"start": str(day - timedelta(days=89)), "end": str(day)}
            began = time.perf_counter()
            response = await http.post("/reports", json=body, headers=headers(i))
            await client.get_workflow_handle(response.json()["report_id"]).result()
            return time.perf_counter() - began

        actions_before = await _actions(temporal, http)
        began = time.perf_counter()
        e2e = await asyncio.gather(*(one(i) for i in range(options.reports)))
        wall = time.perf_counter() - began
        actions = await _actions(temporal, http)
        actions.subtract(actions_before)
        result.reports_per_minute = options.reports / wall * 60
        result.actions_per_report = actions.total() / options.reports
        log.info(
            "temporal actions per report, by type: %s",
            ", ".join(f"{kind} {n / options.reports:.2f}" for kind, n in actions.most_common()),
        )
        result.history_events, result.history_bytes = await _history(client, ids[0])
        rows.append(
            _row(
                f"report end to end, {options.reports} at once",
                list(e2e),
                f"{options.reports / wall * 60:.0f} reports/min on one worker",
                unit="s",
            )
        )
        rows.append(
            Row(
                "temporal per report",
                options.reports,
                result.actions_per_report,
                result.actions_per_report,
                " act",
                f"{result.history_events} history events, {result.history_bytes / 1000:.1f} kB",
            )
        )
    return rows


class _InstantActivities:
    """Stand-ins under the real activities' names that return at once, so a run
    costs only Temporal and the workflow code."""

    def __init__(self, data: ReportData) -> None:
        self.data = data

    @activity.defn(name="query")
    async def query(self, input: QueryInput) -> ReportData:
        return self.data

    @activity.defn(name="render")
    async def render(self, input: RenderInput) -> RenderResult:
        return RenderResult(key=f"{input.data.report_id}.pdf", pages=1, bytes=1)

    @activity.defn(name="send_email")
    async def send_email(self, input: EmailInput) -> EmailResult:
        return EmailResult(message_id=f"<{input.report_id}@bench>", recipients=["bench@invalid"])

    @activity.defn(name="cleanup")
    async def cleanup(self, input: CleanupInput) -> None:
        return None

    @activity.defn(name="acquire_slot")
    async def acquire_slot(self, input: SlotInput) -> SlotGrant:
        return SlotGrant(webhooks=False)

    @activity.defn(name="release_slot")
    async def release_slot(self, input: SlotInput) -> None:
        return None


async def _dev_server_ceiling(
    temporal: TemporalDevServer, data: ReportData, n: int, result: BenchResult
) -> Row:
    """`n` GenerateReport runs at once with instant activities (one in-process worker):
    how many reports a minute the dev server itself completes."""
    client = await Client.connect(temporal.address)
    stand_ins = _InstantActivities(data)
    queue = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[GenerateReport],
        activities=[
            stand_ins.query,
            stand_ins.render,
            stand_ins.cleanup,
            stand_ins.acquire_slot,
            stand_ins.release_slot,
        ],
    )
    email_worker = Worker(client, task_queue=email_queue(queue), activities=[stand_ins.send_email])

    async def one(i: int) -> float:
        report_id = f"bench-ceiling-{queue}-{i}"
        began = time.perf_counter()
        await client.execute_workflow(
            GenerateReport.run,
            GenerateReportInput(
                report_id=report_id,
                user_id="bench",
                start=data.start,
                end=data.end,
                retry=RetrySchedule(),
                timeouts=Timeouts(),
            ),
            id=report_id,
            task_queue=queue,
        )
        return time.perf_counter() - began

    async with worker, email_worker:
        began = time.perf_counter()
        times = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - began
    result.dev_server_reports_per_minute = n / wall * 60
    return _row(
        f"dev server ceiling, {n} at once",
        list(times),
        f"{result.dev_server_reports_per_minute:.0f} reports/min, instant activities",
        unit="s",
    )


@dataclass
class BenchStack:
    """A private stack in a temporary directory, not yet started: a recording SMTP
    server, the Temporal dev server (its metrics on a port of its own), settings
    for the API and the worker, and a token for each seeded user."""

    smtp: RecordingSmtpServer
    temporal: TemporalDevServer
    metrics_port: int
    settings: Settings
    tokens: list[str]


async def bench_stack(tmp: Path, users: int) -> BenchStack:
    smtp = RecordingSmtpServer()
    metrics_port = free_port()
    temporal = TemporalDevServer(
        tmp / "temporal.db", tmp / "temporal.log", metrics_port=metrics_port
    )
    settings = Settings(
        # Said, not defaulted: unset is production (sandbox required, /metrics closed).
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        report_store_url=str(tmp / "reports"),
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        rate_limit_per_minute=1_000_000,
        events_max_streams_per_token=1_000,  # P4's SSE streams share the seeded users' tokens
        worker_metrics_bind="",
        retry=RetrySchedule(email=Backoff(initial_seconds=0.5)),
        **harness_secrets(),
    )
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    await seed(engine, users=users, days=400)
    tokens = [await create_token(engine, user_id=user_id_for(n + 1)) for n in range(users)]
    await engine.dispose()
    return BenchStack(smtp, temporal, metrics_port, settings, tokens)


async def run_bench(options: BenchOptions) -> BenchResult:
    result = BenchResult()
    with tempfile.TemporaryDirectory(prefix="reportflow-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        stack = await bench_stack(tmp, options.users)
        smtp, temporal, settings, tokens = stack.smtp, stack.temporal, stack.settings, stack.tokens
        result.rows = await _parts(settings, options, result)
        await smtp.start()
        await temporal.start()
        worker = WorkerProcess.start(settings, temporal.address, tmp / "worker.log")
        try:
            await worker.wait_ready()
            result.rows += await _service(settings, temporal, options, tokens, result)
            worker.stop()
            assert result.data is not None
            result.rows.append(
                await _dev_server_ceiling(temporal, result.data, options.ceiling_reports, result)
            )
        finally:
            worker.stop()
            await temporal.stop()
            await smtp.stop()
    return result


def print_table(rows: list[Row]) -> None:
    out = sys.stdout
    out.write(f"{'measure':<40} {'n':>4} {'p50':>9} {'p95':>9}  note\n")
    for r in rows:
        p50, p95 = f"{r.p50:.1f}{r.unit}", f"{r.p95:.1f}{r.unit}"
        out.write(f"{r.measure:<40} {r.n:>4} {p50:>9} {p95:>9}  {r.note}\n")
