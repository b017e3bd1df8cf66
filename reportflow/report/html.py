"""The report's HTML page from ReportData: the Jinja2 template and the formatting of figures.

Merchant names and categories are untrusted (DESIGN.md "Rendering and security").
The page holds the first two of the four walls; `reportflow.core.browser` holds the rest:

1. Jinja2 autoescaping (`autoescape=True`, never `|safe` on data), so no data
   can become markup at all.
2. A strict Content-Security-Policy meta tag as the first element of <head>.
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

from reportflow.models import CurrencyTotal, ReportData
from reportflow.report.chart import category_chart, week_chart

TEMPLATE = "report.html.j2"


def format_cents(cents: int, currency: str) -> str:
    """Integer cents as text: ``format_cents(-123456, "EUR") == "-1,234.56 EUR"``.

    ASCII hyphen-minus for negatives and a plain space before the code, so the
    string survives PDF text extraction unchanged.
    """
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(int(cents)), 100)
    return f"{sign}{units:,}.{rest:02d} {currency}"


def whole_units(cents: int) -> str:
    """Axis labels: whole currency units with thousands separators (``123456`` -> ``1,234``)."""
    return f"{int(cents) // 100:,}"


def short_datetime(value: str) -> str:
    """``2024-05-01T12:34:56`` -> ``2024-05-01 12:34``; a plain date stays a date."""
    text = str(value).replace("T", " ")
    if len(text) > 16 and text[10] == " ":
        return text[:16]
    return text


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reportflow.report", "templates"),
        autoescape=True,  # explicit: .j2 is not in select_autoescape's defaults
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = format_cents
    env.filters["short_dt"] = short_datetime
    env.filters["whole"] = whole_units
    return env


_ENV = _environment()


def currency_totals(data: ReportData) -> list[CurrencyTotal]:
    """One set of totals per currency; data recorded before `totals` existed has one
    set, in its one currency."""
    return data.totals or [
        CurrencyTotal(
            currency=data.currency,
            transaction_count=data.transaction_count,
            money_in_cents=data.money_in_cents,
            money_out_cents=data.money_out_cents,
            net_cents=data.net_cents,
        )
    ]


def render_html(data: ReportData) -> str:
    """The self-contained report page (inline CSS and SVG, no external resources)."""
    return _ENV.get_template(TEMPLATE).render(
        data=data,
        totals=currency_totals(data),
        week_chart=week_chart(data),
        categories=category_chart(data),
        empty=data.transaction_count == 0,
    )
