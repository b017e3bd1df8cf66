"""Builders for test data: users with transactions, and an independent SQL oracle."""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta

from sqlalchemy import DateTime, String, bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.db import transactions as transactions_table
from reportflow.core.db import users

# (posted_at, amount_cents, merchant, category)
Txn = tuple[datetime, int, str, str]

HOSTILE_MERCHANT = 'Bob\'s <Bistro> & "Bar"'


class _Default(enum.Enum):
    DEFAULT = enum.auto()


DEFAULT = _Default.DEFAULT


def new_user_id() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


async def create_user(
    engine: AsyncEngine,
    *,
    user_id: str | None = None,
    email: str | _Default | None = DEFAULT,
    name: str = "Test User",
    transactions: Sequence[Txn] = (),
    currencies: Mapping[str, Sequence[Txn]] | None = None,
) -> str:
    """Insert a user (unique id, `<id>@example.com` unless given; None = no email) and
    rows: `transactions` in EUR, and `currencies` maps another currency to its rows."""
    uid = user_id or new_user_id()
    address = f"{uid}@example.com" if email is DEFAULT else email
    async with engine.begin() as conn:
        await conn.execute(insert(users).values(id=uid, email=address, name=name))
        for currency, rows in {"EUR": transactions, **(currencies or {})}.items():
            if not rows:
                continue
            await conn.execute(
                insert(transactions_table),
                [
                    {
                        "user_id": uid,
                        "posted_at": posted_at,
                        "amount_cents": amount,
                        "currency": currency,
                        "merchant": merchant,
                        "category": category,
                    }
                    for posted_at, amount, merchant, category in rows
                ],
            )
    return uid


_TOTALS = text(
    "SELECT COALESCE(SUM(amount_cents), 0) AS net, COUNT(*) AS n FROM transactions "
    "WHERE user_id = :user_id AND posted_at >= :lower AND posted_at < :upper"
).bindparams(
    bindparam("user_id", type_=String),
    bindparam("lower", type_=DateTime),
    bindparam("upper", type_=DateTime),
)


async def expected_totals(
    engine: AsyncEngine, user_id: str, start: date, end: date
) -> tuple[int, int]:
    """(net_cents, count) for [start, end] inclusive, with a plain SQL query of its own."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                _TOTALS,
                {
                    "user_id": user_id,
                    "lower": datetime.combine(start, time.min),
                    "upper": datetime.combine(end + timedelta(days=1), time.min),
                },
            )
        ).one()
    return int(row.net), int(row.n)


_SPENDING = (
    ("groceries", ("REWE", "Lidl", "Москва Маркет"), 5_00, 90_00),
    ("restaurants", (HOSTILE_MERCHANT, "東京ラーメン", "Café Zürich", "مقهى"), 8_00, 70_00),
    ("transport", ("BVG", "Deutsche Bahn"), 2_00, 60_00),
    ("shopping", ("Amazon", "Marks & Spencer"), 10_00, 250_00),
    ("rent", ("Landlord",), 900_00, 900_00),
)


def sample_transactions(start: date, days: int, rng_seed: int) -> list[Txn]:
    """A varied, deterministic list: salary, refunds and spending in several categories."""
    rng = random.Random(rng_seed)
    rows: list[Txn] = []
    for offset in range(days):
        day = start + timedelta(days=offset)

        def at(day: date = day) -> datetime:
            return datetime.combine(day, time(rng.randint(0, 23), rng.randint(0, 59)))

        if offset % 30 == 0:
            rows.append((at(), rng.randint(2_000_00, 5_000_00), "Acme Payroll", "income"))
        for category, merchants, low, high in _SPENDING:
            if category == "rent":
                if offset % 30 == 1:
                    rows.append((at(), -high, merchants[0], category))
            elif rng.random() < 0.45:
                rows.append((at(), -rng.randint(low, high), rng.choice(merchants), category))
        if rng.random() < 0.05:
            rows.append((at(), rng.randint(5_00, 80_00), "Amazon", "refunds"))
    # Make sure the hostile name is always there, whatever the seed.
    rows.append((datetime.combine(start, time(12, 30)), -42_42, HOSTILE_MERCHANT, "restaurants"))
    return rows
