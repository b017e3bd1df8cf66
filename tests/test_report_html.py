"""The report's HTML without a browser: formatting, chart geometry, escaping and the empty cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from itertools import pairwise

import pytest

from reportflow.models import CategoryTotal, MerchantTotal, TransactionRow, WeekTotal
from reportflow.report import format_cents, render_html
from reportflow.report.chart import (
    MAX_WEEK_LABELS,
    category_chart,
    nice_ceiling,
    week_chart,
)
from reportflow.report.html import short_datetime, whole_units
from tests.utils.reports import make_empty_report_data, make_report_data

# --------------------------------------------------------------------------- amounts, escaping


def test_format_cents() -> None:
    assert format_cents(0, "EUR") == "0.00 EUR"
    assert format_cents(5, "EUR") == "0.05 EUR"
    assert format_cents(123456, "USD") == "1,234.56 USD"
    assert format_cents(-123456, "EUR") == "-1,234.56 EUR"
    assert format_cents(-99, "EUR") == "-0.99 EUR"
    assert format_cents(100_000_000_00, "JPY") == "100,000,000.00 JPY"


def test_html_escapes_untrusted_merchant_and_keeps_unicode() -> None:
    evil = '<b>&"x"\''
    unicode_name = "Café Zürich — 東京ラーメン"
    data = make_report_data(
        user_name="Zoë <i>O'Brien</i>",
        top_merchants=[MerchantTotal(evil, 1000, 1), MerchantTotal(unicode_name, 900, 2)],
        by_category=[CategoryTotal("<svg onload=x>", 1000, 1)],
        largest=[TransactionRow("2024-05-01T10:00:00", evil, "<g>cat</g>", -1000, "EUR")],
    )
    html = render_html(data)

    assert "<b>&" not in html
    assert "&lt;b&gt;&amp;&#34;x&#34;&#39;" in html
    assert "<svg onload" not in html and "&lt;svg onload=x&gt;" in html  # SVG text labels too
    assert "<g>cat</g>" not in html
    assert "<i>O'Brien</i>" not in html and "Zoë &lt;i&gt;O&#39;Brien&lt;/i&gt;" in html
    assert unicode_name in html
    # The CSP is the first element of <head>.
    head = html.split("<head>", 1)[1].lstrip()
    assert head.startswith(
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
    )


def test_html_of_empty_range() -> None:
    html = render_html(make_empty_report_data())
    assert "No transactions in this period" in html
    assert format_cents(0, "EUR") in html


def test_html_with_zero_valued_charts_does_not_divide_by_zero() -> None:
    data = make_report_data(
        by_category=[CategoryTotal("Fees", 0, 1)],
        top_merchants=[],
        largest=[],
    )
    data = replace(data, by_week=[replace(w, in_cents=0, out_cents=0) for w in data.by_week])
    html = render_html(data)
    assert "Fees" in html
    assert "No merchants in this period" in html


# --------------------------------------------------------------------------- formatting


def test_axis_labels_are_whole_units_with_thousands_separators() -> None:
    assert whole_units(0) == "0"
    assert whole_units(99) == "0"
    assert whole_units(123_456) == "1,234"
    assert whole_units(500_000_00) == "500,000"


def test_dates_and_times_are_shortened_to_the_minute() -> None:
    assert short_datetime("2024-05-01T12:34:56") == "2024-05-01 12:34"
    assert short_datetime("2024-05-01T12:34:56.123456+00:00") == "2024-05-01 12:34"
    assert short_datetime("2024-05-01 12:34") == "2024-05-01 12:34"
    assert short_datetime("2024-05-01") == "2024-05-01"


# --------------------------------------------------------------------------- chart geometry


@pytest.mark.parametrize(
    ("peak", "axis"),
    [
        (0, 100),
        (-5, 100),
        (1, 1),
        (7, 10),
        (10, 10),
        (11, 20),
        (250, 250),
        (251, 500),
        (120_000, 200_000),
        (430_000, 500_000),
        (510_000, 1_000_000),
    ],
)
def test_axis_maximum_is_a_round_number_at_or_above_the_peak(peak: int, axis: int) -> None:
    assert nice_ceiling(peak) == axis


def test_week_bars_stand_on_the_baseline_and_the_tallest_reaches_its_share_of_the_axis() -> None:
    weeks = [
        WeekTotal("2024-04-01", 100_000, 0),
        WeekTotal("2024-04-08", 50_000, 200_000),
        WeekTotal("2024-04-15", 0, -25_000),  # a negative total is drawn by its size
    ]
    chart = week_chart(make_report_data(by_week=weeks))

    assert [bar.label for bar in chart.bars] == ["04-01", "04-08", "04-15"]
    for bar in chart.bars:
        assert bar.in_y + bar.in_h == pytest.approx(chart.base)
        assert bar.out_y + bar.out_h == pytest.approx(chart.base)
    # The axis is 200,000 cents (the peak exactly): the peak bar fills the plot, half is half.
    top = chart.gridlines[-1]
    assert top.cents == 200_000
    assert chart.bars[1].out_y == pytest.approx(top.y)
    assert chart.bars[1].in_h == pytest.approx(chart.bars[1].out_h / 4)
    assert chart.bars[0].in_h == pytest.approx(chart.bars[1].out_h / 2)
    assert chart.bars[2].out_h == pytest.approx(chart.bars[1].out_h / 8)
    assert chart.bars[2].in_h == 0


def test_week_gridlines_split_the_axis_in_quarters_from_the_baseline() -> None:
    chart = week_chart(make_report_data(by_week=[WeekTotal("2024-04-01", 0, 430_000)]))
    assert [line.cents for line in chart.gridlines] == [0, 125_000, 250_000, 375_000, 500_000]
    assert chart.gridlines[0].y == chart.base
    ys = [line.y for line in chart.gridlines]
    assert ys == sorted(ys, reverse=True)  # upwards, evenly
    assert {round(a - b, 2) for a, b in pairwise(ys)} == {round(ys[0] - ys[1], 2)}


@pytest.mark.parametrize("count", [1, 13, 14, 15, 53, 60])
def test_week_bars_stay_inside_the_plot_in_order_and_labels_never_crowd(count: int) -> None:
    weeks = [
        WeekTotal(date.fromordinal(date(2023, 1, 2).toordinal() + 7 * i).isoformat(), i, 2 * i)
        for i in range(count)
    ]
    chart = week_chart(make_report_data(by_week=weeks))

    xs = [bar.x for bar in chart.bars]
    assert xs == sorted(xs)
    assert xs[0] >= chart.left
    assert xs[-1] + 2 * chart.bar_w + 2 <= chart.right  # the pair of bars and their gap
    assert chart.bar_w >= 2.0
    shown = len(range(0, count, chart.label_every))
    assert shown <= MAX_WEEK_LABELS
    assert chart.label_every == 1 or shown > MAX_WEEK_LABELS // 2  # not thinned more than needed


def test_week_chart_of_no_weeks_has_an_axis_and_no_bars() -> None:
    chart = week_chart(make_empty_report_data())
    assert chart.bars == []
    assert [line.cents for line in chart.gridlines] == [0, 25, 50, 75, 100]


def test_category_bars_are_largest_first_sized_against_the_largest_with_shares() -> None:
    data = make_report_data(
        by_category=[
            CategoryTotal("Transport", 25_000, 4),
            CategoryTotal("Rent", 100_000, 1),
            CategoryTotal("Groceries", 75_000, 12),
        ]
    )
    bars = category_chart(data)
    assert [(b.category, b.width, b.share, b.count) for b in bars] == [
        ("Rent", 100.0, 50.0, 1),
        ("Groceries", 75.0, 37.5, 12),
        ("Transport", 25.0, 12.5, 4),
    ]


def test_category_bars_of_nothing_spent_are_empty_not_a_division_by_zero() -> None:
    bars = category_chart(make_report_data(by_category=[CategoryTotal("Fees", 0, 1)]))
    assert [(b.width, b.share) for b in bars] == [(0.0, 0.0)]
    assert category_chart(make_empty_report_data()) == []


# --------------------------------------------------------------------------- the page


def test_page_shows_amounts_signs_axis_and_week_labels_as_a_reader_sees_them() -> None:
    data = make_report_data(by_week=[WeekTotal("2024-04-01", 10_000, 430_000)])
    html = render_html(data)

    assert data.net_cents < 0
    assert f'<div class="value neg">{format_cents(data.net_cents, "EUR")}</div>' in html
    assert f'<div class="value pos">{format_cents(data.money_in_cents, "EUR")}</div>' in html
    assert ">5,000</text>" in html  # the axis top, whole euros
    assert ">04-01</text>" in html
    assert "2024-04-25 08:12" in html  # a largest transaction's time, to the minute


def test_long_category_names_are_cut_with_an_ellipsis() -> None:
    name = "A category name far longer than the bar label has room for"
    html = render_html(make_report_data(by_category=[CategoryTotal(name, 1_000, 1)]))
    assert name[:25] + "…" in html
