"""The report's aggregates for one user and an inclusive date range, computed in SQL.

Every figure comes from a GROUP BY / aggregate query over the user's rows in
[start 00:00, end + 1 day 00:00); Python only reshapes the (small, bounded)
result rows. Amounts are summed per currency, never across currencies: the
totals are grouped by currency, and the breakdowns (categories, weeks,
merchants) cover the range's commonest currency, which labels them. Works on
SQLite and PostgreSQL; the only dialect-specific piece is the Monday-based week
truncation.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    and_,
    case,
    cast,
    desc,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.exceptions import ApplicationError

from reportflow.core.db import transactions, users
from reportflow.models import (
    INVALID_RANGE,
    NO_EMAIL_ADDRESS,
    UNKNOWN_USER,
    CategoryTotal,
    CurrencyTotal,
    MerchantTotal,
    ReportData,
    TransactionRow,
    WeekTotal,
)

DEFAULT_CURRENCY = "EUR"
# ReportData travels in Temporal's history, so everything in it is bounded:
# the top categories and merchants, then one "Other" row for the rest, and
# untrusted text cut to a length a report line can show.
TOP_CATEGORIES = 12
TOP_MERCHANTS = 10
LARGEST = 10
MAX_TEXT = 120

t = transactions.c


def _int_sum(expr: ColumnElement[Any]) -> ColumnElement[int]:
    """SUM that is 0 over no rows and an int on every driver (PostgreSQL sums bigint as numeric)."""
    return cast(func.coalesce(func.sum(expr), 0), BigInteger)


def _spent() -> ColumnElement[int]:
    """Spending as positive cents: minus the sum of the negative amounts."""
    return -_int_sum(case((t.amount_cents < 0, t.amount_cents), else_=0))


def _received() -> ColumnElement[int]:
    return _int_sum(case((t.amount_cents > 0, t.amount_cents), else_=0))


def _week_start(dialect: str) -> ColumnElement[date]:
    """The Monday (00:00) of posted_at's ISO week, as a DATE."""
    if dialect == "postgresql":
        # date_trunc('week', ...) truncates to the ISO week's Monday.
        return cast(func.date_trunc(literal_column("'week'"), t.posted_at), Date)
    # SQLite: 'weekday 0' moves forward to the next Sunday (a Sunday stays put),
    # then 6 days back is that week's Monday; a Monday goes to Sunday and back.
    return func.date(
        t.posted_at, literal_column("'weekday 0'"), literal_column("'-6 days'"), type_=Date
    )


def _by_name(column: ColumnElement[str], dialect: str) -> ColumnElement[str]:
    """Order text by code point on both databases (PostgreSQL's default is locale-aware)."""
    return column.collate("C") if dialect == "postgresql" else column


def _iso(value: date | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _others(
    rows: list[tuple[str, int, int]], *, total_spent: int, total_count: int, noun: str
) -> tuple[str, int, int] | None:
    """One row for what the top rows leave out, or None when they cover everything."""
    rest_spent = total_spent - sum(spent for _, spent, _ in rows)
    rest_count = total_count - sum(count for _, _, count in rows)
    return (f"Other {noun}", rest_spent, rest_count) if rest_count > 0 else None


def _timestamp(value: datetime | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.isoformat(timespec="seconds")


async def _user(conn: AsyncConnection, user_id: str) -> tuple[str, str | None]:
    row = (
        await conn.execute(select(users.c.name, users.c.email).where(users.c.id == user_id))
    ).first()
    if row is None:
        raise ApplicationError(
            f"unknown user {user_id}: there is no such id in the users table",
            type=UNKNOWN_USER,
            non_retryable=True,
        )
    return row.name, row.email


async def aggregate(
    engine: AsyncEngine, *, report_id: str, user_id: str, start: date, end: date
) -> ReportData:
    """All aggregates of `user_id`'s transactions from `start` to `end`, both inclusive.

    Raises a non-retryable ApplicationError of type InvalidRange (start > end),
    UnknownUser (no such user) or NoEmailAddress (the report could not be sent).
    """
    if start > end:
        raise ApplicationError(
            f"invalid range: start {start.isoformat()} is after end {end.isoformat()}",
            type=INVALID_RANGE,
            non_retryable=True,
        )
    lower = datetime.combine(start, time.min)
    upper = datetime.combine(end + timedelta(days=1), time.min)
    in_range = and_(t.user_id == user_id, t.posted_at >= lower, t.posted_at < upper)

    async with engine.connect() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            # One snapshot for all the queries below.
            await conn.execution_options(isolation_level="REPEATABLE READ")

        name, email = await _user(conn, user_id)
        if email is None or not email.strip():
            raise ApplicationError(
                f"user {user_id} has no email address; add one to the users table "
                "and redrive the report",
                type=NO_EMAIL_ADDRESS,
                non_retryable=True,
            )

        per_currency = (
            await conn.execute(
                select(
                    t.currency,
                    func.count().label("n"),
                    _received().label("money_in"),
                    _spent().label("money_out"),
                    _int_sum(t.amount_cents).label("net"),
                    _int_sum(case((t.amount_cents < 0, 1), else_=0)).label("spend_n"),
                )
                .where(in_range)
                .group_by(t.currency)
                .order_by(desc(func.count()), t.currency)
            )
        ).all()
        if per_currency:
            currency = per_currency[0].currency
        else:
            # Nothing in range: the user's usual currency, else the default.
            currency = (
                await conn.execute(
                    select(t.currency)
                    .where(t.user_id == user_id)
                    .group_by(t.currency)
                    .order_by(desc(func.count()), t.currency)
                    .limit(1)
                )
            ).scalar_one_or_none() or DEFAULT_CURRENCY
        totals = [
            CurrencyTotal(
                currency=r.currency,
                transaction_count=int(r.n),
                money_in_cents=int(r.money_in),
                money_out_cents=int(r.money_out),
                net_cents=int(r.net),
            )
            for r in per_currency
        ]
        main = per_currency[0] if per_currency else None
        main_spent, main_spend_n = (int(main.money_out), int(main.spend_n)) if main else (0, 0)
        # The breakdowns: the main currency's rows only, so each sum is in one currency.
        in_main = and_(in_range, t.currency == currency)

        spent = _spent().label("spent")
        spending = and_(in_main, t.amount_cents < 0)

        async def top(column: Any, limit: int, noun: str) -> list[tuple[str, int, int]]:
            """The largest spends by `column`, with the rest summed as one "other" row."""
            rows = [
                (_clip(r.name), int(r.spent), int(r.n))
                for r in await conn.execute(
                    select(column.label("name"), spent, func.count().label("n"))
                    .where(spending)
                    .group_by(column)
                    .order_by(desc(spent), _by_name(column, dialect))
                    .limit(limit)
                )
            ]
            other = _others(rows, total_spent=main_spent, total_count=main_spend_n, noun=noun)
            return [*rows, *filter(None, [other])]

        by_category = [
            CategoryTotal(*row) for row in await top(t.category, TOP_CATEGORIES, "categories")
        ]

        week = _week_start(dialect).label("week_start")
        week_rows = await conn.execute(
            select(week, _received().label("in_cents"), _spent().label("out_cents"))
            .where(in_main)
            .group_by(week)
            .order_by(week)
        )
        by_week = [
            WeekTotal(
                week_start=_iso(r.week_start), in_cents=int(r.in_cents), out_cents=int(r.out_cents)
            )
            for r in week_rows
        ]

        top_merchants = [
            MerchantTotal(*row) for row in await top(t.merchant, TOP_MERCHANTS, "merchants")
        ]

        largest_rows = await conn.execute(
            select(t.posted_at, t.merchant, t.category, t.amount_cents, t.currency)
            .where(in_range)  # every currency: each row shows its own
            .order_by(desc(func.abs(t.amount_cents)), t.posted_at, t.id)
            .limit(LARGEST)
        )
        largest = [
            TransactionRow(
                posted_at=_timestamp(r.posted_at),
                merchant=_clip(r.merchant),
                category=_clip(r.category),
                amount_cents=int(r.amount_cents),
                currency=r.currency,
            )
            for r in largest_rows
        ]

    return ReportData(
        report_id=report_id,
        user_id=user_id,
        user_name=name,
        start=start.isoformat(),
        end=end.isoformat(),
        currency=currency,
        transaction_count=sum(total.transaction_count for total in totals),
        money_in_cents=totals[0].money_in_cents if totals else 0,
        money_out_cents=main_spent,
        net_cents=totals[0].net_cents if totals else 0,
        by_category=by_category,
        by_week=by_week,
        top_merchants=top_merchants,
        largest=largest,
        totals=totals,
    )
