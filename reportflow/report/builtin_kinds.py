"""The kinds every reportflow serves: `transactions` (the PDF report, the default)
and `transactions-csv` (every transaction of the range, streamed to the store).

Both are ordinary `ReportKind`s, built with nothing a team's kind could not use.
The workflow runs `transactions` through its own typed steps (query -> ReportData
-> render), as it did before kinds existed, so its IDs, histories and runs started
on older code keep working; the object here describes it to every surface.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, and_, case, func, literal, select
from temporalio.exceptions import ApplicationError

from reportflow.contract import DateRange
from reportflow.core.db import transactions, users
from reportflow.models import DEFAULT_KIND, UNKNOWN_USER
from reportflow.report.csv_export import stream_csv
from reportflow.report.kind import QueryContext, ReportKind

TEMPLATES = Path(__file__).with_name("templates")
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


def export_statement(user_id: str, params: DateRange) -> Select[Any]:
    """Every transaction of the range as stored, oldest first: the export's rows (the
    bench dumps this statement with the database's own CSV output)."""
    t = transactions.c
    return (
        select(t.id, t.posted_at, t.amount_cents, t.currency, t.merchant, t.category)
        .where(_in_range(user_id, params))
        .order_by(t.posted_at, t.id)
    )


def _cell(column: ColumnElement[str]) -> ColumnElement[str]:
    """The column, with a leading quote where it starts with a formula character."""
    first = func.substr(column, 1, 1)
    return case((first.in_(_FORMULA_START), literal("'", Text) + column), else_=column)


def _posted(column: ColumnElement[Any], dialect: str) -> ColumnElement[str]:
    """`posted_at` as `datetime.isoformat(timespec="seconds")` writes it: seconds
    truncated, never rounded."""
    if dialect == "sqlite":  # SQLAlchemy stores it as text, 'YYYY-MM-DD HH:MM:SS.ffffff'
        return func.substr(column, 1, 10) + literal("T", Text) + func.substr(column, 12, 8)
    return func.to_char(column, 'YYYY-MM-DD"T"HH24:MI:SS', type_=Text)


async def export_transactions(ctx: QueryContext, params: DateRange) -> AsyncGenerator[bytes, None]:
    """Every transaction of the range, oldest first, each cell formatted by the
    database: the rows stream as CSV with no Python per row."""
    t = transactions.c
    dialect = ctx.connection.dialect.name
    # All NOT NULL, and none can be COPY_NULL: numbers, a timestamp, a three-letter
    # currency, and text whose leading "=" is guarded.
    cells = (t.id, _posted(t.posted_at, dialect), t.amount_cents, t.currency,
             _cell(t.merchant), _cell(t.category))  # fmt: skip
    statement = export_statement(ctx.user_id, params).with_only_columns(*cells)
    async with contextlib.aclosing(stream_csv(ctx.connection, statement, CSV_COLUMNS)) as chunks:
        async for chunk in chunks:  # closed with this one, so a COPY cut short ends here
            yield chunk


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
