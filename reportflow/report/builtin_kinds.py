"""The kinds every reportflow serves: `transactions` (the PDF report, the default)
and `transactions-csv` (every transaction of the range, streamed to the store).

Both are ordinary `ReportKind`s, built with nothing a team's kind could not use.
The workflow runs `transactions` through its own typed steps (query -> ReportData
-> render), as it did before kinds existed, so its IDs, histories and runs started
on older code keep working; the object here describes it to every surface.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, func, select
from temporalio.exceptions import ApplicationError

from reportflow.contract import DateRange
from reportflow.core.db import transactions, users
from reportflow.models import DEFAULT_KIND, UNKNOWN_USER
from reportflow.report.kind import QueryContext, ReportKind

TEMPLATES = Path(__file__).with_name("templates")
# A CSV chunk handed to the store at a time: memory stays flat whatever the row count.
CSV_CHUNK_BYTES = 64 * 1024
CSV_COLUMNS = ["id", "posted_at", "amount_cents", "currency", "merchant", "category"]
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection);
# merchant names are untrusted, so such a cell is kept as text with a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _in_range(user_id: str, params: DateRange) -> Any:
    start, end = params.dates()
    t = transactions.c
    lower, upper = datetime.combine(start, time.min), datetime.combine(end, time.min)
    return and_(t.user_id == user_id, t.posted_at >= lower, t.posted_at < upper + timedelta(1))


async def _require_user(ctx: QueryContext) -> None:
    found = await ctx.connection.execute(select(users.c.id).where(users.c.id == ctx.user_id))
    if found.first() is None:
        raise ApplicationError(
            f"unknown user {ctx.user_id}: there is no such id in the users table",
            type=UNKNOWN_USER,
            non_retryable=True,
        )


async def query_transactions(ctx: QueryContext, params: DateRange) -> dict[str, Any]:
    from reportflow.report.query import aggregate

    start, end = params.dates()
    data = await aggregate(
        ctx.connection.engine, report_id=ctx.report_id, user_id=ctx.user_id, start=start, end=end
    )
    return dataclasses.asdict(data)


async def count_transactions(ctx: QueryContext, params: DateRange) -> dict[str, Any]:
    """What the CSV's email says: how many rows, of which range."""
    await _require_user(ctx)
    rows = await ctx.connection.scalar(
        select(func.count()).select_from(transactions).where(_in_range(ctx.user_id, params))
    )
    start, end = params.dates()
    return {"rows": int(rows or 0), "start": start.isoformat(), "end": end.isoformat()}


def _cell(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def _posted(value: datetime | str) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.isoformat(timespec="seconds")


def export_statement(user_id: str, params: DateRange) -> Select[Any]:
    """The export's SELECT: every transaction of the range, oldest first (the bench
    dumps this same statement with the database's own CSV output)."""
    t = transactions.c
    return (
        select(t.id, t.posted_at, t.amount_cents, t.currency, t.merchant, t.category)
        .where(_in_range(user_id, params))
        .order_by(t.posted_at, t.id)
    )


async def export_transactions(ctx: QueryContext, params: DateRange) -> AsyncIterator[bytes]:
    """Every transaction of the range, oldest first, from a server-side cursor."""
    result = await ctx.connection.stream(
        export_statement(ctx.user_id, params).execution_options(yield_per=2000)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    async for row in result:
        writer.writerow(
            [
                row.id,
                _posted(row.posted_at),
                int(row.amount_cents),
                row.currency,
                _cell(row.merchant),
                _cell(row.category),
            ]
        )
        if buffer.tell() >= CSV_CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


transactions_pdf = ReportKind(
    name=DEFAULT_KIND,
    title="Transaction report",
    params=DateRange,
    query=query_transactions,
    template=TEMPLATES / "report.html.j2",
    description="Totals, categories, weeks, top merchants and largest transactions "
    "of a date range, as a PDF (the default kind)",
)

transactions_csv = ReportKind(
    name="transactions-csv",
    title="Transactions (CSV)",
    params=DateRange,
    query=count_transactions,
    export=export_transactions,
    format="csv",
    description="Every transaction of a date range, one row each: amounts in cents, "
    "with their currency",
)

BUILTIN_KINDS = [transactions_pdf, transactions_csv]
