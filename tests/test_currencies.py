"""Totals are per currency: a range with two currencies shows two sets of totals,
from the SQL aggregation through the report's HTML and the PDF Chromium prints."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import date, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reportflow.core.browser import Browser, find_chromium
from reportflow.models import CurrencyTotal
from reportflow.report import render_html
from reportflow.report.query import aggregate
from tests.utils.data import Txn, create_user
from tests.utils.reportflow_http import pdf_text

pytestmark = pytest.mark.timeout(120)

EUR: list[Txn] = [
    (datetime(2024, 3, 1, 9, 0), 1000_00, "Payroll", "income"),
    (datetime(2024, 3, 4, 12, 0), -50_00, "REWE", "groceries"),
    (datetime(2024, 3, 5, 8, 0), -20_00, "BVG", "transport"),
]
# One USD spend in an EUR range: it used to go into the EUR net (900.00 EUR).
USD: list[Txn] = [(datetime(2024, 3, 6, 18, 0), -30_00, "Amazon US", "shopping")]
START, END = date(2024, 3, 1), date(2024, 3, 31)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    instance = Browser(find_chromium(os.environ.get("CHROMIUM_EXECUTABLE")))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


async def test_two_currencies_make_two_sets_of_totals(
    engine: AsyncEngine, browser: Browser
) -> None:
    user_id = await create_user(engine, transactions=EUR, currencies={"USD": USD})

    data = await aggregate(engine, report_id="r-fx", user_id=user_id, start=START, end=END)

    assert data.totals == [
        CurrencyTotal("EUR", 3, 1000_00, 70_00, 930_00),
        CurrencyTotal("USD", 1, 0, 30_00, -30_00),
    ]
    # The figures labelled with the main currency are that currency's alone.
    assert (data.currency, data.net_cents, data.money_out_cents) == ("EUR", 930_00, 70_00)
    assert data.transaction_count == 4
    assert sum(c.spent_cents for c in data.by_category) == 70_00
    assert sum(m.spent_cents for m in data.top_merchants) == 70_00
    assert sum(w.out_cents for w in data.by_week) == 70_00
    assert ("Amazon US", "USD") in {(t.merchant, t.currency) for t in data.largest}

    html = render_html(data)
    text = pdf_text(await browser.pdf(html))
    for page in (html, text):
        for figure in ("1,000.00 EUR", "70.00 EUR", "930.00 EUR", "30.00 USD", "-30.00 USD"):
            assert figure in page, figure
        assert "900.00 EUR" not in page
        assert "net (usd)" in page.lower()  # the label is upper-cased by CSS
    assert "Currencies EUR, USD" in text


async def test_one_currency_keeps_one_set_without_labels(engine: AsyncEngine) -> None:
    user_id = await create_user(engine, transactions=EUR)

    data = await aggregate(engine, report_id="r-one", user_id=user_id, start=START, end=END)
    html = render_html(data)

    assert data.totals == [CurrencyTotal("EUR", 3, 1000_00, 70_00, 930_00)]
    assert html.count('class="tiles"') == 1
    assert "Currency EUR" in html
    assert "(EUR)" not in html
