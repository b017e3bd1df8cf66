"""The capacity model's arithmetic (`reportflow bench --capacity N`)."""

from __future__ import annotations

import pytest

from reportflow_dev.capacity import Figures, estimate, format_estimates

# Round figures, so every expected value below can be checked by hand.
FIGURES = Figures(
    reports_per_minute=120.0,  # one worker on a 2-core machine: 60 a minute per core
    cores=2,
    actions_per_report=5.0,
    history_events=30,
    history_bytes=10_000,
    dev_server_reports_per_minute=300.0,
)


def test_estimate_sizes_workers_for_the_peak_with_headroom_and_a_spare() -> None:
    # 144,000 a day = 100 a minute on average, 300 a minute at a peak factor of 3.
    e = estimate(FIGURES, 144_000, peak_factor=3.0, utilization=0.5)

    assert e.peak_reports_per_minute == pytest.approx(300.0)
    assert e.reports_per_core_minute == pytest.approx(60.0)
    # 300 / (60 * 0.5) = 10 cores, 5 hosts of 2 cores, plus one spare.
    assert e.worker_cores == 10
    assert e.worker_hosts == 6
    assert e.peak_actions_per_second == pytest.approx(300 / 60 * 5)
    assert e.actions_per_day == pytest.approx(720_000)
    assert e.history_mb_per_day == pytest.approx(1_440)
    assert e.retained_history_gb == pytest.approx(1.44 * 30)


def test_estimate_rounds_up_and_uses_bigger_hosts_when_told() -> None:
    e = estimate(FIGURES, 144_000, peak_factor=3.0, utilization=0.7, host_cores=8)

    # 300 / 42 = 7.1 -> 8 cores: one 8-core host, plus the spare.
    assert e.worker_cores == 8
    assert e.worker_hosts == 2


def test_dev_server_is_enough_only_below_its_ceiling_with_headroom() -> None:
    # The ceiling is 300 a minute; with 70% headroom, up to 210 a minute at the peak.
    small = estimate(FIGURES, 100_000, peak_factor=3.0)  # 208 a minute at the peak
    large = estimate(FIGURES, 101_000, peak_factor=3.0)  # 210.4 a minute

    assert small.dev_server_enough
    assert not large.dev_server_enough


def test_no_reports_need_no_workers() -> None:
    e = estimate(FIGURES, 0)

    assert (e.worker_cores, e.worker_hosts, e.actions_per_day) == (0, 0, 0)


def test_estimate_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="daily_reports >= 0"):
        estimate(FIGURES, -1)
    with pytest.raises(ValueError, match="peak_factor >= 1"):
        estimate(FIGURES, 1000, peak_factor=0.5)
    with pytest.raises(ValueError, match="0 < utilization <= 1"):
        estimate(FIGURES, 1000, utilization=0.0)
    with pytest.raises(ValueError, match="host_cores >= 1"):
        estimate(FIGURES, 1000, host_cores=0)


def test_format_prints_one_row_per_volume_and_the_measured_figures() -> None:
    text = format_estimates(FIGURES, [estimate(FIGURES, n) for n in (10_000, 100_000, 1_000_000)])

    assert "60 reports/min per worker core" in text
    assert "5.0 Temporal actions, 30 history events, 10.0 kB history" in text
    table_lines = text.split("reports/day", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    rows = [line.split() for line in table_lines]
    assert [row[0] for row in rows] == ["10,000", "100,000", "1,000,000"]
    assert [row[4] for row in rows] == ["enough", "enough", "too"]
