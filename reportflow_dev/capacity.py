"""The capacity model: from what `reportflow bench` measured on one machine to what a
daily volume of reports needs (worker hosts, and what Temporal must sustain).

Pure arithmetic, kept apart from the benchmark so it can be read and tested alone:

- a worker's throughput is the bench's end-to-end rate on one worker process,
  divided by the cores of the machine it ran on (those cores also ran Temporal,
  the API and the bench itself, so the figure errs on the safe side);
- the peak is the daily average times `peak_factor` (people ask for reports in
  working hours: a day's volume in 8 hours is a factor of 3);
- workers are sized to run at `utilization` of their measured rate at the peak,
  plus one spare host (a host lost, or one draining during a deploy);
- Temporal must take the peak's actions per second (Temporal Cloud's billing and
  rate-limit unit) and store each report's history for the namespace retention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Figures:
    """What one `reportflow bench` run measured."""

    reports_per_minute: float  # end to end, one worker process, many reports in flight
    cores: int  # of the machine the bench ran on
    actions_per_report: float  # Temporal actions one report costs (server's `action` counter)
    history_events: int  # events in one completed report's history
    history_bytes: int  # that history's size
    dev_server_reports_per_minute: float  # the embedded dev server's ceiling


@dataclass(frozen=True)
class Estimate:
    daily_reports: int
    peak_factor: float
    peak_reports_per_minute: float
    reports_per_core_minute: float
    worker_cores: int
    host_cores: int
    worker_hosts: int  # including the spare
    utilization: float
    dev_server_enough: bool
    peak_actions_per_second: float
    actions_per_day: float
    history_mb_per_day: float
    retention_days: int
    retained_history_gb: float


def estimate(
    figures: Figures,
    daily_reports: int,
    *,
    peak_factor: float = 3.0,
    host_cores: int | None = None,
    utilization: float = 0.7,
    retention_days: int = 30,
) -> Estimate:
    """What `daily_reports` a day need, from `figures` (see the module's docstring)."""
    bad_hosts = host_cores is not None and host_cores < 1
    if daily_reports < 0 or peak_factor < 1 or not 0 < utilization <= 1 or bad_hosts:
        raise ValueError(
            "need daily_reports >= 0, peak_factor >= 1, 0 < utilization <= 1 and "
            f"host_cores >= 1; got {daily_reports}, {peak_factor}, {utilization}, {host_cores}"
        )
    host_cores = host_cores or figures.cores
    per_core = figures.reports_per_minute / figures.cores
    peak_per_minute = daily_reports / (SECONDS_PER_DAY / 60) * peak_factor
    cores = math.ceil(peak_per_minute / (per_core * utilization)) if daily_reports else 0
    hosts = math.ceil(cores / host_cores) + 1 if cores else 0
    history_bytes_per_day = daily_reports * figures.history_bytes
    return Estimate(
        daily_reports=daily_reports,
        peak_factor=peak_factor,
        peak_reports_per_minute=peak_per_minute,
        reports_per_core_minute=per_core,
        worker_cores=cores,
        host_cores=host_cores,
        worker_hosts=hosts,
        utilization=utilization,
        dev_server_enough=peak_per_minute <= figures.dev_server_reports_per_minute * utilization,
        peak_actions_per_second=peak_per_minute / 60 * figures.actions_per_report,
        actions_per_day=daily_reports * figures.actions_per_report,
        history_mb_per_day=history_bytes_per_day / 1e6,
        retention_days=retention_days,
        retained_history_gb=history_bytes_per_day * retention_days / 1e9,
    )


def format_estimates(figures: Figures, estimates: list[Estimate]) -> str:
    """The estimates as the table `reportflow bench --capacity` prints."""
    lines = [
        f"capacity model from this run: {figures.reports_per_minute:.0f} reports/min on one "
        f"worker ({figures.cores} cores) = {figures.reports_per_minute / figures.cores:.0f} "
        "reports/min per worker core;",
        f"  one report: {figures.actions_per_report:.1f} Temporal actions, "
        f"{figures.history_events} history events, {figures.history_bytes / 1000:.1f} kB history; "
        f"dev server ceiling {figures.dev_server_reports_per_minute:.0f} reports/min",
        "",
        f"{'reports/day':>12} {'peak/min':>9} {'worker cores':>13} {'hosts':>6} "
        f"{'dev server':>10} {'actions/s':>10} {'actions/day':>12} {'history/day':>12} "
        f"{'retained':>10}",
    ]
    for e in estimates:
        lines.append(
            f"{e.daily_reports:>12,} {e.peak_reports_per_minute:>9.1f} {e.worker_cores:>13} "
            f"{e.worker_hosts:>6} {'enough' if e.dev_server_enough else 'too small':>10} "
            f"{e.peak_actions_per_second:>10.1f} {e.actions_per_day:>12,.0f} "
            f"{e.history_mb_per_day:>9.0f} MB {e.retained_history_gb:>7.1f} GB"
        )
    if estimates:
        e = estimates[0]
        lines += [
            "",
            f"peak = daily average x {e.peak_factor:g}; workers sized to "
            f"{e.utilization:.0%} of the measured rate, hosts of {e.host_cores} cores plus one "
            f"spare; retained = {e.retention_days} days of history (namespace retention)",
        ]
    return "\n".join(lines) + "\n"
