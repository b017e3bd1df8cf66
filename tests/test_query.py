"""The report aggregation against real databases, checked with plain-Python expectations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.converter import JSONPlainPayloadConverter
from temporalio.exceptions import ApplicationError

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
from reportflow.report.query import aggregate
from tests.utils.data import (
    HOSTILE_MERCHANT,
    Txn,
    create_user,
    expected_totals,
    new_user_id,
    sample_transactions,
)


def _top(totals: dict[str, list[int]], n: int, noun: str) -> list[tuple[str, int, int]]:
    """The n biggest (ties by name), then one row adding up the rest."""
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    rows = [(name, spent, count) for name, (spent, count) in ranked[:n]]
    rest = ranked[n:]
    if rest:
        rows.append((f"Other {noun}", sum(s for _, (s, _) in rest), sum(c for _, (_, c) in rest)))
    return rows


def _expected(
    rows: Sequence[Txn], start: date, end: date, *, user_id: str, user_name: str
) -> ReportData:
    """What the report must say, computed the slow, obvious way."""
    lower = datetime.combine(start, time.min)
    upper = datetime.combine(end + timedelta(days=1), time.min)
    # Insertion order is id order: the final tie-breaker of `largest`.
    picked = [(i, r) for i, r in enumerate(rows) if lower <= r[0] < upper]
    amounts = [r[1] for _, r in picked]

    categories: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    merchants: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    weeks: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for _, (posted_at, amount, merchant, category) in picked:
        monday = posted_at.date() - timedelta(days=posted_at.weekday())
        if amount < 0:
            categories[category][0] += -amount
            categories[category][1] += 1
            merchants[merchant][0] += -amount
            merchants[merchant][1] += 1
            weeks[monday][1] += -amount
        else:
            weeks[monday][0] += amount

    largest = sorted(picked, key=lambda p: (-abs(p[1][1]), p[1][0], p[0]))[:10]
    return ReportData(
        report_id="r-test",
        user_id=user_id,
        user_name=user_name,
        start=start.isoformat(),
        end=end.isoformat(),
        currency="EUR",
        transaction_count=len(picked),
        money_in_cents=sum(a for a in amounts if a > 0),
        money_out_cents=-sum(a for a in amounts if a < 0),
        net_cents=sum(amounts),
        by_category=[CategoryTotal(*row) for row in _top(categories, 12, "categories")],
        by_week=[WeekTotal(w.isoformat(), i, o) for w, (i, o) in sorted(weeks.items())],
        top_merchants=[MerchantTotal(*row) for row in _top(merchants, 10, "merchants")],
        largest=[
            TransactionRow(p.isoformat(timespec="seconds"), m, c, a, "EUR")
            for _, (p, a, m, c) in largest
        ],
        totals=[
            CurrencyTotal(
                "EUR",
                len(picked),
                sum(a for a in amounts if a > 0),
                -sum(a for a in amounts if a < 0),
                sum(amounts),
            )
        ]
        if picked
        else [],
    )


async def _report(engine: AsyncEngine, user_id: str, start: date, end: date) -> ReportData:
    return await aggregate(engine, report_id="r-test", user_id=user_id, start=start, end=end)


async def test_aggregates_match_an_independent_computation(engine: AsyncEngine) -> None:
    rows = sample_transactions(date(2024, 1, 1), 75, rng_seed=7)
    user_id = await create_user(engine, name="Zoë <O'Brien>", transactions=rows)
    start, end = date(2024, 1, 10), date(2024, 3, 5)

    got = await _report(engine, user_id, start, end)

    want = _expected(rows, start, end, user_id=user_id, user_name="Zoë <O'Brien>")
    assert got.transaction_count > 50
    assert got == want
    assert (got.net_cents, got.transaction_count) == await expected_totals(
        engine, user_id, start, end
    )
    assert got.money_in_cents - got.money_out_cents == got.net_cents
    assert sum(c.spent_cents for c in got.by_category) == got.money_out_cents
    assert sum(w.in_cents for w in got.by_week) == got.money_in_cents
    assert sum(w.out_cents for w in got.by_week) == got.money_out_cents
    spending_merchants = {r[2] for r in rows if r[1] < 0}
    assert len(spending_merchants) > 10  # so the top-10 cut is exercised
    assert len(got.top_merchants) == 11, "the top 10, then the others in one row"
    assert sum(m.spent_cents for m in got.top_merchants) == got.money_out_cents
    assert len(got.largest) == 10


async def test_a_user_with_thousands_of_merchants_and_categories_stays_small(
    engine: AsyncEngine,
) -> None:
    """Aggregates travel in Temporal's history: bounded whatever the data holds."""
    day = datetime(2024, 2, 1, 12)
    rows: list[Txn] = [
        (day + timedelta(minutes=i), -(100 + i), f"Merchant {i:05d} " + "x" * 300, f"Cat {i % 500}")
        for i in range(10_000)
    ]
    user_id = await create_user(engine, transactions=rows)

    got = await _report(engine, user_id, date(2024, 2, 1), date(2024, 2, 28))

    payload = JSONPlainPayloadConverter().to_payload(got)
    assert payload is not None
    assert len(payload.data) < 16_000, "far below Temporal's 256 KB warning"
    assert len(got.by_category) == 13 and got.by_category[-1].category == "Other categories"
    assert len(got.top_merchants) == 11 and got.top_merchants[-1].merchant == "Other merchants"
    assert sum(c.count for c in got.by_category) == 10_000
    assert sum(m.spent_cents for m in got.top_merchants) == got.money_out_cents
    assert max(len(m.merchant) for m in got.top_merchants) <= 120


async def test_weeks_start_on_monday(engine: AsyncEngine) -> None:
    rows: list[Txn] = [
        (datetime(2024, 1, 1, 0, 0, 0), 100_00, "Payroll", "income"),  # Monday, first second
        (datetime(2024, 1, 3, 12, 0, 0), -10_00, "REWE", "groceries"),  # Wednesday
        (datetime(2024, 1, 7, 23, 59, 59), -20_00, "REWE", "groceries"),  # Sunday, last second
        (datetime(2024, 1, 8, 0, 0, 0), -40_00, "BVG", "transport"),  # next Monday
        (datetime(2024, 1, 14, 18, 0, 0), 5_00, "Amazon", "refunds"),  # next Sunday
        (datetime(2024, 1, 29, 9, 0, 0), -1_00, "BVG", "transport"),  # a week later, a Monday
    ]
    user_id = await create_user(engine, transactions=rows)

    got = await _report(engine, user_id, date(2024, 1, 1), date(2024, 1, 31))

    assert got.by_week == [
        WeekTotal("2024-01-01", 100_00, 30_00),
        WeekTotal("2024-01-08", 5_00, 40_00),
        WeekTotal("2024-01-29", 0, 1_00),
    ]


async def test_week_of_a_range_starting_mid_week_is_that_weeks_monday(engine: AsyncEngine) -> None:
    # Sunday 2023-12-31 belongs to the ISO week that starts on Monday 2023-12-25.
    rows: list[Txn] = [(datetime(2023, 12, 31, 8, 0), -3_00, "BVG", "transport")]
    user_id = await create_user(engine, transactions=rows)

    got = await _report(engine, user_id, date(2023, 12, 31), date(2023, 12, 31))

    assert got.by_week == [WeekTotal("2023-12-25", 0, 3_00)]


async def test_range_is_inclusive_of_both_dates(engine: AsyncEngine) -> None:
    start, end = date(2024, 5, 1), date(2024, 5, 31)
    rows: list[Txn] = [
        (datetime(2024, 4, 30, 23, 59, 59), -1, "Before", "misc"),
        (datetime(2024, 5, 1, 0, 0, 0), -10, "AtStart", "misc"),
        (datetime(2024, 5, 15, 12, 0, 0), 1000, "Middle", "income"),
        (datetime(2024, 5, 31, 23, 59, 59), -100, "AtEnd", "misc"),
        (datetime(2024, 6, 1, 0, 0, 0), -10000, "After", "misc"),
    ]
    user_id = await create_user(engine, transactions=rows)

    got = await _report(engine, user_id, start, end)

    assert got.transaction_count == 3
    assert got.net_cents == 890
    assert (got.money_in_cents, got.money_out_cents) == (1000, 110)
    assert {m.merchant for m in got.top_merchants} == {"AtStart", "AtEnd"}
    assert await expected_totals(engine, user_id, start, end) == (890, 3)
    # A single-day range is that whole day.
    one_day = await _report(engine, user_id, end, end)
    assert (one_day.transaction_count, one_day.net_cents) == (1, -100)


async def test_empty_range_gives_zeros(engine: AsyncEngine) -> None:
    rows: list[Txn] = [(datetime(2024, 1, 15, 10, 0), -5_00, "REWE", "groceries")]
    user_id = await create_user(engine, name="Quiet User", transactions=rows)

    got = await _report(engine, user_id, date(2024, 2, 1), date(2024, 2, 29))

    assert got == ReportData(
        report_id="r-test",
        user_id=user_id,
        user_name="Quiet User",
        start="2024-02-01",
        end="2024-02-29",
        currency="EUR",
        transaction_count=0,
        money_in_cents=0,
        money_out_cents=0,
        net_cents=0,
    )


async def test_user_without_transactions_gives_zeros(engine: AsyncEngine) -> None:
    user_id = await create_user(engine)

    got = await _report(engine, user_id, date(2024, 1, 1), date(2024, 12, 31))

    assert (got.transaction_count, got.money_in_cents, got.money_out_cents, got.net_cents) == (
        0,
        0,
        0,
        0,
    )
    assert got.currency == "EUR"
    assert got.by_category == []
    assert got.by_week == []
    assert got.top_merchants == []
    assert got.largest == []


async def test_untrusted_text_comes_back_unchanged(engine: AsyncEngine) -> None:
    names = [HOSTILE_MERCHANT, "東京ラーメン", "Café Zürich", "Москва Маркет", "مقهى", "a%_\\b"]
    rows: list[Txn] = [
        (datetime(2024, 8, 1, 10, i), -(i + 1) * 100, name, f"cat <{i}> & 'x'")
        for i, name in enumerate(names)
    ]
    user_id = await create_user(engine, name='Robert"); DROP TABLE users;--', transactions=rows)

    got = await _report(engine, user_id, date(2024, 8, 1), date(2024, 8, 1))

    assert got.user_name == 'Robert"); DROP TABLE users;--'
    assert {m.merchant for m in got.top_merchants} == set(names)
    assert {r.merchant for r in got.largest} == set(names)
    assert {c.category for c in got.by_category} == {f"cat <{i}> & 'x'" for i in range(6)}


async def test_ties_are_broken_deterministically(engine: AsyncEngine) -> None:
    at = datetime(2024, 3, 4, 12, 0)
    rows: list[Txn] = [
        (at, -50_00, "alpha", "b-cat"),
        (at, -50_00, "Zeta", "a-cat"),
        (at, 50_00, "Refund", "refunds"),
        (at - timedelta(hours=1), -50_00, "Ärger", "c-cat"),
    ]
    user_id = await create_user(engine, transactions=rows)

    got = await _report(engine, user_id, date(2024, 3, 4), date(2024, 3, 4))

    # Equal spending: names by code point, on every database.
    assert [m.merchant for m in got.top_merchants] == ["Zeta", "alpha", "Ärger"]
    assert [c.category for c in got.by_category] == ["a-cat", "b-cat", "c-cat"]
    # Equal absolute amounts: earlier first, then insertion order.
    assert [(r.merchant, r.amount_cents) for r in got.largest] == [
        ("Ärger", -50_00),
        ("alpha", -50_00),
        ("Zeta", -50_00),
        ("Refund", 50_00),
    ]
    assert got.largest[0].posted_at == "2024-03-04T11:00:00"


async def test_only_the_users_own_rows_count(engine: AsyncEngine) -> None:
    rows: list[Txn] = [(datetime(2024, 7, 1, 9, 0), -7_00, "BVG", "transport")]
    mine = await create_user(engine, transactions=rows)
    await create_user(engine, transactions=rows * 3)

    got = await _report(engine, mine, date(2024, 7, 1), date(2024, 7, 1))

    assert (got.transaction_count, got.money_out_cents) == (1, 7_00)


async def test_unknown_user_is_non_retryable(engine: AsyncEngine) -> None:
    missing = new_user_id()

    with pytest.raises(ApplicationError) as caught:
        await _report(engine, missing, date(2024, 1, 1), date(2024, 1, 31))

    assert caught.value.type == UNKNOWN_USER
    assert caught.value.non_retryable
    assert missing in caught.value.message


@pytest.mark.parametrize("email", [None, "", "   "])
async def test_user_without_email_is_non_retryable(engine: AsyncEngine, email: str | None) -> None:
    user_id = await create_user(engine, email=email)

    with pytest.raises(ApplicationError) as caught:
        await _report(engine, user_id, date(2024, 1, 1), date(2024, 1, 31))

    assert caught.value.type == NO_EMAIL_ADDRESS
    assert caught.value.non_retryable
    assert user_id in caught.value.message
    assert "redrive" in caught.value.message


async def test_reversed_range_is_non_retryable(engine: AsyncEngine) -> None:
    user_id = await create_user(engine)

    with pytest.raises(ApplicationError) as caught:
        await _report(engine, user_id, date(2024, 2, 1), date(2024, 1, 31))

    assert caught.value.type == INVALID_RANGE
    assert caught.value.non_retryable
    assert "2024-02-01" in caught.value.message
