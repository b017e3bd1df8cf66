"""The geometry of the report's two SVG charts (weekly bars, category bars) from ReportData."""

from __future__ import annotations

from dataclasses import dataclass

from reportflow.models import ReportData

# The weekly chart's box (SVG user units): the plot sits inside these margins.
WEEK_WIDTH = 520.0
WEEK_HEIGHT = 160.0
WEEK_TOP = 10.0
WEEK_LEFT = 64.0
WEEK_RIGHT_MARGIN = 8.0
WEEK_BOTTOM = 26.0
# Never more x labels than this, so they never collide.
MAX_WEEK_LABELS = 14
# Category bars are percentages of the widest.
CATEGORY_BAR_MAX = 100.0


@dataclass(frozen=True)
class WeekBar:
    """One week's pair of bars (money in, money out) from the baseline up."""

    label: str
    x: float
    in_y: float
    in_h: float
    out_y: float
    out_h: float
    in_cents: int
    out_cents: int


@dataclass(frozen=True)
class Gridline:
    """A horizontal line of the weekly chart and the amount (cents) it stands for."""

    y: float
    cents: int


@dataclass(frozen=True)
class WeekChart:
    width: float
    height: float
    left: float
    right: float
    base: float
    bar_w: float
    bars: list[WeekBar]
    gridlines: list[Gridline]
    label_every: int


@dataclass(frozen=True)
class CategoryBar:
    category: str
    width: float  # percent of the widest bar
    spent_cents: int
    count: int
    share: float  # percent of all spending, one decimal


def nice_ceiling(value: int) -> int:
    """A round axis maximum >= value (1, 2, 2.5, 5 times a power of ten), never zero."""
    if value <= 0:
        return 100
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 2.5, 5, 10):
        candidate = int(step * magnitude)
        if candidate >= value:
            return candidate
    return 10 * magnitude  # pragma: no cover - loop always returns


def week_chart(data: ReportData) -> WeekChart:
    """Money in and out per week, as bars on an axis rounded up to a nice maximum."""
    weeks = data.by_week
    peak = max([abs(w.in_cents) for w in weeks] + [abs(w.out_cents) for w in weeks] + [0])
    axis_max = nice_ceiling(peak)
    plot_h = WEEK_HEIGHT - WEEK_TOP - WEEK_BOTTOM
    plot_w = WEEK_WIDTH - WEEK_LEFT - WEEK_RIGHT_MARGIN
    slot = plot_w / max(len(weeks), 1)
    bar_w = max(min(slot * 0.34, 22.0), 2.0)
    base = WEEK_TOP + plot_h
    bars: list[WeekBar] = []
    for i, week in enumerate(weeks):
        in_h = plot_h * abs(week.in_cents) / axis_max
        out_h = plot_h * abs(week.out_cents) / axis_max
        center = WEEK_LEFT + slot * (i + 0.5)
        bars.append(
            WeekBar(
                label=week.week_start[5:10] if len(week.week_start) >= 10 else week.week_start,
                x=round(center - bar_w - 1.0, 2),
                in_y=round(base - in_h, 2),
                in_h=round(in_h, 2),
                out_y=round(base - out_h, 2),
                out_h=round(out_h, 2),
                in_cents=week.in_cents,
                out_cents=week.out_cents,
            )
        )
    gridlines = [
        Gridline(y=round(base - plot_h * k / 4, 2), cents=axis_max * k // 4) for k in range(5)
    ]
    return WeekChart(
        width=WEEK_WIDTH,
        height=WEEK_HEIGHT,
        left=WEEK_LEFT,
        right=WEEK_WIDTH - WEEK_RIGHT_MARGIN,
        base=base,
        bar_w=round(bar_w, 2),
        bars=bars,
        gridlines=gridlines,
        label_every=max(1, -(-len(weeks) // MAX_WEEK_LABELS)),
    )


def category_chart(data: ReportData) -> list[CategoryBar]:
    """Spending per category, largest first, each bar a share of the largest."""
    rows = sorted(data.by_category, key=lambda c: abs(c.spent_cents), reverse=True)
    peak = max([abs(c.spent_cents) for c in rows] + [0])
    total = sum(abs(c.spent_cents) for c in rows)
    return [
        CategoryBar(
            category=c.category,
            width=round(CATEGORY_BAR_MAX * abs(c.spent_cents) / peak, 2) if peak else 0.0,
            spent_cents=c.spent_cents,
            count=c.count,
            share=round(100.0 * abs(c.spent_cents) / total, 1) if total else 0.0,
        )
        for c in rows
    ]
