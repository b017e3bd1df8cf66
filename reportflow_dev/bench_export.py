"""P8: the transactions-csv export against the database's own CSV dump of its rows.

    python -m reportflow_dev.bench_export --rows 1000000 [--postgres-url URL]

Seeds a scratch database (P5's: a SQLite file, or a PostgreSQL database made for
the run and dropped after it) with one user's N transactions over the last year,
dumps the export's own SELECT with the database's CSV output (the sqlite3 CLI's
`.mode csv`, else Python's sqlite3 and csv modules; PostgreSQL's `COPY (...) TO
STDOUT WITH CSV` through asyncpg) just before and just after the export, and runs
the export in a child process exactly as the render step does: a read-only
connection, a server-side cursor, the store's streaming put. The child reads its
own resident memory before the export and its peak after it (VmHWM, reset just
before), so the growth is the export's alone; no tracemalloc, which slows it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from reportflow.activities.kind import query_context, read_only_engine
from reportflow.contract import DateRange
from reportflow.core.db import create_engine, create_schema, users
from reportflow.core.store import FileStore
from reportflow.report.builtin_kinds import export_statement, transactions_csv
from reportflow_dev.bench_figures import Figure

_USER = "p8-user"
_GOAL = 0.5  # of the database's own dump's rows/s
_RSS_GOAL_MB = 50.0


def _status_kb(field: str) -> float | None:
    """A VmRSS/VmHWM line of /proc/self/status in kB (None where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Linux: make VmHWM start again from the current RSS (`5` to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def export_once(url: str, user: str, params: DateRange, folder: Path) -> dict[str, float]:
    """The export as the render step runs it, in this process: seconds, bytes and
    the process's resident memory before and at its peak during the export (MB)."""
    store = FileStore(folder)
    engine = read_only_engine(url)
    assert transactions_csv.export is not None
    try:
        reset = _reset_peak()
        before = _status_kb("VmRSS") if reset else None
        if before is None:  # ru_maxrss never goes down: growth past the old peak only
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        began = time.perf_counter()
        async with query_context(engine, user_id=user, report_id="bench-p8") as ctx:
            size = await store.put_stream("p8/run.csv", transactions_csv.export(ctx, params))
        seconds = time.perf_counter() - began
        peak = _status_kb("VmHWM") if reset else None
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        await engine.dispose()
    return {"seconds": seconds, "bytes": size, "rss_mb": before / 1024, "peak_mb": peak / 1024}


async def _export_in_child(url: str, user: str, params: DateRange, folder: Path) -> dict[str, Any]:
    """`export_once` in a fresh interpreter, so its memory is nobody else's."""
    argv = [sys.executable, "-m", "reportflow_dev.bench_export", "--database-url", url,
            "--user", user, "--start", str(params.start), "--end", str(params.end),
            "--folder", str(folder)]  # fmt: skip
    child = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the P8 export child exited {child.returncode}: {out.decode()!r}")
    result: dict[str, Any] = json.loads(out)
    return result


async def _dump(url: str, user: str, params: DateRange, path: Path) -> tuple[float, str]:
    """Seconds for the database's own CSV dump of the export's SELECT into `path`."""
    statement = export_statement(user, params)
    parsed = make_url(url)
    dialect = parsed.get_dialect()()
    if parsed.get_backend_name() == "sqlite":
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        database = str(parsed.database)
        cli = shutil.which("sqlite3")
        began = time.perf_counter()
        if cli is not None:
            with path.open("wb") as out:
                shell = await asyncio.create_subprocess_exec(
                    cli, "-readonly", "-csv", "-header", database, sql, stdout=out
                )
                if await shell.wait() != 0:
                    raise RuntimeError(f"sqlite3 exited {shell.returncode} dumping P8's rows")
            return time.perf_counter() - began, "sqlite3 CLI .mode csv"
        await asyncio.to_thread(_python_dump, database, sql, path)
        return time.perf_counter() - began, "Python sqlite3 + csv (no sqlite3 CLI)"

    compiled = statement.compile(dialect=dialect)
    args = [compiled.params[name] for name in compiled.positiontup or ()]
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        began = time.perf_counter()
        await conn.copy_from_query(
            str(compiled), *args, output=str(path), format="csv", header=True
        )
        return time.perf_counter() - began, "COPY ... TO STDOUT WITH CSV"
    finally:
        await conn.close()


def _python_dump(database: str, sql: str, path: Path) -> None:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db, path.open("w") as out:
        cursor = db.execute(sql)
        writer = csv.writer(out)
        writer.writerow(d[0] for d in cursor.description)
        writer.writerows(cursor)


async def export_speed(rows: int, postgres_url: str | None = None) -> Figure:
    """P8 on one database: the export's rows/s against the database's own dump's."""
    # Here, not at the top: the child that exports imports only what a worker does.
    from reportflow_dev.bench_limits import add_transactions, scratch_database

    today = date.today()
    params = DateRange(start=today - timedelta(days=365), end=today)
    async with scratch_database(postgres_url) as (url, label):
        engine = create_engine(url)
        try:
            await create_schema(engine)
            async with engine.begin() as conn:
                await conn.execute(insert(users).values(id=_USER, name="P8", email=None))
            await add_transactions(engine, rows, today, random.Random(8), user=_USER, days=365)
        finally:
            await engine.dispose()
        with tempfile.TemporaryDirectory(prefix="reportflow-p8-") as tmp:
            folder = Path(tmp)
            await _dump(url, _USER, params, folder / "dump.csv")  # warms the cache, untimed
            before, how = await _dump(url, _USER, params, folder / "dump.csv")
            export = await _export_in_child(url, _USER, params, folder / "store")
            after, _ = await _dump(url, _USER, params, folder / "dump.csv")
    dump_s = (before + after) / 2
    rate, dump_rate = rows / export["seconds"], rows / dump_s
    growth = export["peak_mb"] - export["rss_mb"]
    ratio = dump_s / export["seconds"]
    return Figure(
        "P8",
        f"transactions-csv export, {rows:,} rows, {label}",
        f"{rate:,.0f} rows/s, RSS +{growth:.0f} MB",
        f"{dump_rate:,.0f} rows/s {how} ({rows / before:,.0f} before, {rows / after:,.0f} after)",
        ratio,
        f">= {_GOAL}, RSS growth <= {_RSS_GOAL_MB:.0f} MB",
        ratio >= _GOAL and growth <= _RSS_GOAL_MB,
        {"rows": rows, "export_s": export["seconds"], "dump_s": dump_s, "bytes": export["bytes"],
         "dump_before_s": before, "dump_after_s": after, "rss_mb": export["rss_mb"],
         "rss_peak_mb": export["peak_mb"], "rss_growth_mb": growth},
    )  # fmt: skip


async def export_speeds(rows: int, postgres_url: str | None) -> list[Figure]:
    """P8 on SQLite, and on PostgreSQL too when a URL is given."""
    figures = [await export_speed(rows)]
    if postgres_url:
        figures.append(await export_speed(rows, postgres_url))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=None, help="P8 on PostgreSQL too")
    child = parser.add_argument_group("the child that exports (what P8 runs)")
    child.add_argument("--database-url", default=None)
    child.add_argument("--user")
    child.add_argument("--start", type=date.fromisoformat)
    child.add_argument("--end", type=date.fromisoformat)
    child.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.database_url is not None:
        params = DateRange(start=args.start, end=args.end)
        result = asyncio.run(export_once(args.database_url, args.user, params, args.folder))
        sys.stdout.write(json.dumps(result) + "\n")
        return
    from reportflow_dev.bench_figures import print_ratios

    print_ratios(asyncio.run(export_speeds(args.rows, args.postgres_url)))


if __name__ == "__main__":
    main()
