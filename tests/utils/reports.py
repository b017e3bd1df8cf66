"""Builders of realistic `ReportData` for tests that need report aggregates without a database."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from reportflow.models import CategoryTotal, MerchantTotal, ReportData, TransactionRow, WeekTotal

_CATEGORIES: list[tuple[str, int, int]] = [
    ("Rent", 360_000, 3),
    ("Groceries", 84_213, 38),
    ("Restaurants", 41_890, 21),
    ("Transport", 22_450, 17),
    ("Utilities", 19_875, 6),
    ("Entertainment", 12_340, 9),
    ("Health", 8_960, 4),
]

_MERCHANTS: list[tuple[str, int, int]] = [
    ("Hausverwaltung Müller GmbH", 360_000, 3),
    ("Lidl", 38_120, 16),
    ("REWE Markt", 29_874, 14),
    ("Café Zürich", 14_230, 11),
    ("Stadtwerke Berlin", 19_875, 6),
    ("Deutsche Bahn", 13_900, 5),
    ("Kino International", 7_640, 4),
    ("Apotheke am Markt", 5_410, 3),
]

_LARGEST: list[tuple[str, str, str, int]] = [
    ("2024-04-01T09:00:00", "Hausverwaltung Müller GmbH", "Rent", -120_000),
    ("2024-05-01T09:00:00", "Hausverwaltung Müller GmbH", "Rent", -120_000),
    ("2024-06-01T09:00:00", "Hausverwaltung Müller GmbH", "Rent", -120_000),
    ("2024-04-25T08:12:00", "ACME Corp Payroll", "Salary", 310_000),
    ("2024-05-27T08:10:00", "ACME Corp Payroll", "Salary", 310_000),
    ("2024-06-25T08:09:00", "ACME Corp Payroll", "Salary", 310_000),
    ("2024-05-14T18:41:00", "Deutsche Bahn", "Transport", -8_990),
    ("2024-04-18T11:02:00", "Stadtwerke Berlin", "Utilities", -6_625),
    ("2024-06-08T20:15:00", "Café Zürich", "Restaurants", -4_870),
    ("2024-05-03T17:30:00", "Lidl", "Groceries", -3_912),
]


def _weeks(start: date, count: int) -> list[WeekTotal]:
    weeks: list[WeekTotal] = []
    for i in range(count):
        week_start = start + timedelta(days=7 * i)
        salary = 310_000 if i % 4 == 3 else 0
        refund = 2_500 if i % 5 == 1 else 0
        out = 30_000 + (i * 7_919) % 25_000 + (120_000 if i % 4 == 0 else 0)
        weeks.append(WeekTotal(week_start.isoformat(), salary + refund, out))
    return weeks


def make_report_data(**overrides: Any) -> ReportData:
    """~90 days of one user's aggregates (EUR), consistent totals; any field can be overridden.

    Totals (money in/out, net, count) are derived from `by_week` unless overridden,
    so `make_report_data(by_week=[...])` stays consistent.
    """
    by_week = overrides.pop("by_week", None)
    if by_week is None:
        by_week = _weeks(date(2024, 4, 1), 13)
    money_in = sum(w.in_cents for w in by_week)
    money_out = sum(w.out_cents for w in by_week)
    rows = bool(by_week)
    fields: dict[str, Any] = {
        "report_id": "rep-0001-test",
        "user_id": "user-42",
        "user_name": "Ada Lovelace",
        "start": "2024-04-01",
        "end": "2024-06-30",
        "currency": "EUR",
        "transaction_count": 98 if rows else 0,
        "money_in_cents": money_in,
        "money_out_cents": money_out,
        "net_cents": money_in - money_out,
        "by_category": [CategoryTotal(c, s, n) for c, s, n in _CATEGORIES] if rows else [],
        "by_week": by_week,
        "top_merchants": [MerchantTotal(m, s, n) for m, s, n in _MERCHANTS] if rows else [],
        "largest": [TransactionRow(p, m, c, a, "EUR") for p, m, c, a in _LARGEST] if rows else [],
    }
    fields.update(overrides)
    if "net_cents" not in overrides and (
        "money_in_cents" in overrides or "money_out_cents" in overrides
    ):
        fields["net_cents"] = fields["money_in_cents"] - fields["money_out_cents"]
    return ReportData(**fields)


def make_empty_report_data(**overrides: Any) -> ReportData:
    """A range with no transactions at all."""
    return make_report_data(by_week=[], **overrides)
