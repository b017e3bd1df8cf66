"""`reportflow bench` limits: how the query scales with the table (P5) and where the
embedded Temporal dev server stops keeping up with starts (P7).

Figures are printed with the ratios, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from reportflow.core.db import create_engine, create_schema, transactions, users
from reportflow.models import GenerateReportInput, RetrySchedule, Timeouts
from reportflow.report.query import aggregate
from reportflow.seed import seed, user_id_for
from reportflow.workflows.generate_report import GenerateReport
from reportflow_dev.bench_figures import Figure, ms, pct

# Rows of other users (and of this user outside the range) added between sizes.
_FILLER_USERS = 500
_BATCH = 20_000
_SAMPLES = 7


@contextlib.asynccontextmanager
async def scratch_database(postgres_url: str | None) -> AsyncIterator[tuple[str, str]]:
    """(SQLAlchemy URL, label) of an empty database: a SQLite file, or a PostgreSQL
    database created for the run and dropped after it (P5 and P8)."""
    if postgres_url is None:
        with tempfile.TemporaryDirectory(prefix="reportflow-scratch-") as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'scratch.db'}", "SQLite"
        return
    url = make_url(postgres_url).set(drivername="postgresql+asyncpg")
    name = f"reportflow_bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False), "PostgreSQL"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _filler(
    n: int, today: date, rng: random.Random, user: str | None, days: int
) -> list[dict[str, object]]:
    """`n` transactions over the last `days` days, of `user` or of the filler users."""
    return [
        {
            "user_id": user or f"p5-{rng.randrange(_FILLER_USERS):04d}",
            "posted_at": datetime.combine(
                today - timedelta(days=rng.randrange(days)), datetime.min.time()
            )
            + timedelta(minutes=rng.randrange(1440)),
            "amount_cents": -rng.randrange(100, 20_000),
            "currency": "EUR",
            "merchant": f"Merchant {rng.randrange(2000)}",
            "category": f"category-{rng.randrange(40)}",
        }
        for _ in range(n)
    ]


async def add_transactions(
    engine: AsyncEngine,
    count: int,
    today: date,
    rng: random.Random,
    *,
    user: str | None = None,
    days: int = 1095,
) -> None:
    """`count` transactions, of `user` or (by default) of the filler users over the
    last three years, in batches of a size that keeps the seeding's memory small."""
    for first in range(0, count, _BATCH):
        async with engine.begin() as conn:
            batch = min(_BATCH, count - first)
            await conn.execute(insert(transactions), _filler(batch, today, rng, user, days))


async def aggregate_scaling(sizes: Sequence[int], postgres_url: str | None = None) -> Figure:
    """P5: one user's 90-day aggregate while the table grows to each of `sizes` rows.
    Flat is the goal: the (user, posted_at) index reads only the rows in range."""
    async with scratch_database(postgres_url) as (url, label):
        engine = create_engine(url)
        try:
            await create_schema(engine)
            today = date.today()
            await seed(engine, users=1, days=90, today=today)
            target = user_id_for(1)
            async with engine.begin() as conn:
                await conn.execute(
                    insert(users),
                    [
                        {"id": f"p5-{n:04d}", "name": f"P5 {n}", "email": None}
                        for n in range(_FILLER_USERS)
                    ],
                )
                in_range = (
                    await conn.execute(select(func.count()).select_from(transactions))
                ).scalar_one()
            rng = random.Random(5)
            rows, times = in_range, {}
            start = today - timedelta(days=89)
            for size in sorted(sizes):
                if rows < size:
                    await add_transactions(engine, size - rows, today, rng)
                    rows = size
                async with engine.begin() as conn:  # the statistics a live database keeps
                    await conn.execute(text("ANALYZE"))
                samples = []
                for _ in range(_SAMPLES + 1):  # the first warms the cache
                    began = time.perf_counter()
                    await aggregate(engine, report_id="p5", user_id=target, start=start, end=today)
                    samples.append(time.perf_counter() - began)
                times[size] = pct(samples[1:], 0.5)
        finally:
            await engine.dispose()
    smallest, largest = min(times), max(times)
    ratio = times[largest] / times[smallest]
    return Figure(
        "P5",
        f"90-day aggregate, one user ({in_range} rows in range), {label}",
        ", ".join(f"{n:,} rows {ms(t)}" for n, t in times.items() if n != smallest),
        f"{smallest:,} rows {ms(times[smallest])}",
        ratio,
        "flat: <= 1.5",
        ratio <= 1.5,
        {f"p50_s_{n}": t for n, t in times.items()},
    )


async def start_knee(
    client: Client, rates: Sequence[float] = (5, 10, 20, 40, 80, 160), seconds: float = 5.0
) -> Figure:
    """P7: GenerateReport starts per second, paced, at rising rates on a task queue
    no worker polls (the server's start path alone), until the p99 of a start
    passes one second or the rate is not kept; the knee is the last rate held."""
    queue = f"bench-knee-{uuid.uuid4().hex[:8]}"
    today = date.today()
    held: tuple[float, float] | None = None
    steps: dict[str, float] = {}
    for rate in rates:
        latencies: list[float] = []

        async def one(i: int, rate: float = rate, latencies: list[float] = latencies) -> None:
            report_id = f"bench-knee-{queue}-{rate:g}-{i}"
            began = time.perf_counter()
            await client.start_workflow(
                GenerateReport.run,
                GenerateReportInput(
                    report_id=report_id,
                    user_id="bench",
                    start=str(today - timedelta(days=89)),
                    end=str(today),
                    retry=RetrySchedule(),
                    timeouts=Timeouts(),
                ),
                id=report_id,
                task_queue=queue,
            )
            latencies.append(time.perf_counter() - began)

        n = int(rate * seconds)
        began = time.perf_counter()
        tasks = []
        for i in range(n):
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        achieved = n / (time.perf_counter() - began)
        p99 = pct(latencies, 0.99)
        steps[f"rate_{rate:g}_achieved"] = achieved
        steps[f"rate_{rate:g}_p99_s"] = p99
        if p99 > 1.0 or achieved < 0.9 * rate:
            break
        held = (rate, p99)
    knee = held[0] if held is not None else 0.0
    return Figure(
        "P7",
        "dev server: starts/s held with start p99 <= 1 s",
        f"{knee:g} starts/s (p99 {ms(held[1]) if held else 'n/a'})",
        f"tried {', '.join(f'{r:g}' for r in rates[: len(steps) // 2])}/s",
        None,
        "past this, move to a Temporal cluster",
        None,
        {"knee_starts_per_s": knee, **steps},
    )
