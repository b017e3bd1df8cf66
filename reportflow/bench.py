"""`reportflow bench`: what the service costs, measured on the machine it runs on.

A private stack in a temporary directory (the Temporal dev server from the lock
file, a recording SMTP server, SQLite seeded with 90 days per user, the API
behind uvicorn, one worker process with its Chromium) and then:

- the API's answer time for `POST /reports` and `GET /reports/{id}`;
- reports end to end (click to email sent) with many in flight at once, and
  the throughput that gives;
- the parts alone: the SQL aggregation, a warm render, a Chromium launch.

Figures are printed, never asserted: speed is measured here, not in tests.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from temporalio.client import Client

from reportflow.activities.query import aggregate
from reportflow.codec import data_converter
from reportflow.config import Settings
from reportflow.db import create_engine, create_schema
from reportflow.models import Backoff, RetrySchedule
from reportflow.render import Browser, find_chromium, render_html
from reportflow.seed import seed, user_id_for
from reportflow.testing import (
    RecordingSmtpServer,
    TemporalDevServer,
    WorkerProcess,
    harness_secrets,
    serve_api,
)
from reportflow.tokens import create_token


@dataclass
class BenchOptions:
    users: int = 20
    requests: int = 40
    reports: int = 20
    samples: int = 10


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


async def _parts(settings: Settings, options: BenchOptions) -> list[Row]:
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


async def _service(
    settings: Settings, temporal: TemporalDevServer, options: BenchOptions, tokens: list[str]
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

        began = time.perf_counter()
        e2e = await asyncio.gather(*(one(i) for i in range(options.reports)))
        wall = time.perf_counter() - began
        rows.append(
            _row(
                f"report end to end, {options.reports} at once",
                list(e2e),
                f"{options.reports / wall * 60:.0f} reports/min on one worker",
                unit="s",
            )
        )
    return rows


async def run_bench(options: BenchOptions) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="reportflow-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        smtp = RecordingSmtpServer()
        temporal = TemporalDevServer(tmp / "temporal.db", tmp / "temporal.log")
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
            report_store_url=str(tmp / "reports"),
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            rate_limit_per_minute=100_000,
            worker_metrics_bind="",
            retry=RetrySchedule(email=Backoff(initial_seconds=0.5)),
            **harness_secrets(),
        )
        engine = create_engine(settings.database_url)
        await create_schema(engine)
        await seed(engine, users=options.users, days=400)
        tokens = [
            await create_token(engine, user_id=user_id_for(n + 1)) for n in range(options.users)
        ]
        await engine.dispose()

        rows = await _parts(settings, options)
        await smtp.start()
        await temporal.start()
        worker = WorkerProcess.start(settings, temporal.address, tmp / "worker.log")
        try:
            await worker.wait_ready()
            rows += await _service(settings, temporal, options, tokens)
        finally:
            worker.stop()
            await temporal.stop()
            await smtp.stop()
    return rows


def print_table(rows: list[Row]) -> None:
    out = sys.stdout
    out.write(f"{'measure':<40} {'n':>4} {'p50':>9} {'p95':>9}  note\n")
    for r in rows:
        p50, p95 = f"{r.p50:.1f}{r.unit}", f"{r.p95:.1f}{r.unit}"
        out.write(f"{r.measure:<40} {r.n:>4} {p50:>9} {p95:>9}  {r.note}\n")
