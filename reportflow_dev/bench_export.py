"""The transactions-csv export's memory: N rows streamed from SQL to a file store.

    python -m reportflow_dev.bench_export --rows 1000000 [--database-url URL]

Seeds one user with N transactions over the last year (a fresh SQLite file unless
a URL is given), then runs the kind's export exactly as the render step does
(read-only connection, server-side cursor, the store's streaming put) and prints
the rows, bytes, seconds and the Python heap's peak during the export (tracemalloc)
beside the process's peak RSS, before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from reportflow.activities.kind import query_context, read_only_engine
from reportflow.core.db import create_engine, create_schema, transactions, users
from reportflow.core.store import FileStore
from reportflow.report.builtin_kinds import transactions_csv

BATCH = 20_000


async def _seed(url: str, rows: int) -> tuple[str, str]:
    engine = create_engine(url)
    await create_schema(engine)
    user = f"bench{int(time.time())}"
    end = datetime.now(UTC).replace(tzinfo=None)
    step = timedelta(days=365) / rows
    async with engine.begin() as conn:
        await conn.execute(insert(users).values(id=user, email=f"{user}@example.com", name="B"))
        for first in range(0, rows, BATCH):
            await conn.execute(
                insert(transactions),
                [
                    {"user_id": user, "posted_at": end - step * (i + 1),
                     "amount_cents": -(i % 9999), "currency": "EUR",
                     "merchant": f"Merchant {i % 500}", "category": "bench"}
                    for i in range(first, min(first + BATCH, rows))
                ],
            )  # fmt: skip
    await engine.dispose()
    return user, (end.date() - timedelta(days=365)).isoformat()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(rows: int, url: str | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    url = url or f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    user, start = await _seed(url, rows)
    params = transactions_csv.parse({"start": start})
    store = FileStore(folder / "reports")
    engine = read_only_engine(url)
    assert transactions_csv.export is not None
    rss_before = _rss_mb()
    tracemalloc.start()
    began = time.perf_counter()
    async with query_context(engine, user_id=user, report_id="bench") as ctx:
        size = await store.put_stream("bench/run.csv", transactions_csv.export(ctx, params))
    seconds = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await engine.dispose()
    print(  # noqa: T201 - the benchmark's table is its output
        f"rows {rows:,}  bytes {size:,}  seconds {seconds:.1f}  "
        f"python heap peak {peak / 2**20:.1f} MB  peak RSS {rss_before:.0f} -> {_rss_mb():.0f} MB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.database_url))
