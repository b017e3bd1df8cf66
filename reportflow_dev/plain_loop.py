"""P2's other baseline: a report's work in a plain asyncio loop, with no Temporal.

    python -m reportflow_dev.plain_loop --reports 24 --users 24 --start 2026-09-06 --end 2026-12-04

`reportflow bench --ratios` runs this as a process of its own, as a worker is
(its own Chromium, its CPU counted apart, placed on the worker's cores), with
the worker's settings in its environment. For each of N reports, all at once,
it does what GenerateReport's activities do, through their own code and with
the dependencies a worker builds (`reportflow.worker.report_activities`): the
90-day aggregate in SQL (`query`), the HTML printed by the same Browser behind
the same walls under SCHED_BATCH, its pages counted and the PDF put in the store
(`render_report`), the email with its claim in the delivery ledger, sent to the
bench's SMTP server (`email_report`). Each step first takes one of the worker's
activity slots (WORKER_MAX_CONCURRENT_ACTIVITIES: one set for the reports' task
queue, one for the email queue) and each print one of the browser's
(RENDER_CONCURRENCY), as in a worker. What is left out is what reportflow adds
around the work: workflow tasks and history, payload encoding, the memo and
heartbeats, the user's slot, the API. A plain queue (Celery, RQ) adds its own
broker round trips, so this is any of them's ceiling on the machine.

The process warms up as the bench's worker has by then (one whole report),
logs READY_LINE, and starts the batch on SIGUSR1; the bench clocks it from that
signal to the SMTP server's last 250, as it clocks reportflow's own burst.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from reportflow.activities.email import Limits
from reportflow.activities.report import ReportActivities
from reportflow.core.config import Settings, get_settings
from reportflow.core.logs import setup_logging
from reportflow.kinds import load_kinds
from reportflow.models import EmailInput, QueryInput
from reportflow.seed import user_id_for
from reportflow.service.reports import report_id_for
from reportflow.worker import report_activities
from reportflow_dev.bench_figures import Figure
from reportflow_dev.load import CpuGroup
from reportflow_dev.testing import RecordingSmtpServer, WorkerProcess, _spawn

READY_LINE = "plain loop ready"


# ----------------------------------------------------------------- the loop


@dataclass
class PlainLoop:
    """One report's steps, each in a worker slot, as the worker runs its activities."""

    activities: ReportActivities
    settings: Settings
    start: date
    end: date

    def __post_init__(self) -> None:
        slots = self.settings.worker_max_concurrent_activities
        self.steps = asyncio.Semaphore(slots)  # the reports' task queue's worker
        self.emails = asyncio.Semaphore(slots)  # the email queue's worker

    async def report(self, user_id: str) -> None:
        report_id = report_id_for(user_id, self.start, self.end)
        run_id = str(uuid.uuid4())  # a run of its own: its own PDF key and email claim
        start, end = self.start.isoformat(), self.end.isoformat()
        async with self.steps:  # the query activity needs no activity context
            data = await self.activities.query(QueryInput(report_id, user_id, start, end))
        async with self.steps:
            rendered = await self.activities.render_report(data, run_id)
        email = EmailInput(
            report_id=report_id, user_id=user_id, pdf_key=rendered.key, start=start, end=end
        )
        async with self.emails:
            await self.activities.email_report(
                email, run_id, Limits.for_attempt(self.settings.timeouts.email)
            )


async def run(settings: Settings, *, reports: int, users: int, start: date, end: date) -> None:
    """Warm up, say READY_LINE, and on SIGUSR1 do `reports` reports at once."""
    loop = asyncio.get_running_loop()
    go = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    main = asyncio.current_task()
    assert main is not None
    loop.add_signal_handler(signal.SIGTERM, main.cancel)  # so Chromium is closed
    async with report_activities(settings, load_kinds(settings.report_kinds)) as activities:
        await activities.browser.ensure_started()
        plain = PlainLoop(activities, settings, start, end)
        await plain.report(user_id_for(1))  # warm, as the worker is after P3's report
        sys.stdout.write(f"{READY_LINE}: {reports} reports on SIGUSR1\n")
        sys.stdout.flush()
        await go.wait()
        await asyncio.gather(*(plain.report(user_id_for(i % users + 1)) for i in range(reports)))


def main() -> None:
    parser = argparse.ArgumentParser(description="P2's plain loop: N reports, no Temporal")
    parser.add_argument("--reports", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    args = parser.parse_args()
    setup_logging()  # as the worker logs each step
    asyncio.run(
        run(get_settings(), reports=args.reports, users=args.users, start=args.start, end=args.end)
    )


# ----------------------------------------------------------------- the bench's side


@dataclass(frozen=True)
class PlainRun:
    reports_per_s: float  # from SIGUSR1 to the SMTP server's last 250
    cpu: float  # share of one core the plain loop and its Chromium used meanwhile


async def plain_loop_rate(
    settings: Settings,
    smtp: RecordingSmtpServer,
    *,
    reports: int,
    users: int,
    start: date,
    end: date,
    logs: Path,
    tree_cpu: Callable[[int], float],
    pin: contextlib.AbstractContextManager[None] | None = None,
    group: CpuGroup | None = None,
) -> PlainRun:
    """One batch in a fresh plain-loop process, logging to a new file in `logs`.
    `pin` is held while it is spawned (its Chromium inherits the cores), `group`
    takes it in (the worker's CPU weight); `tree_cpu` reads a process tree's CPU seconds."""
    log = next(logs / f"plain-loop-{n}.log" for n in itertools.count(1)
               if not (logs / f"plain-loop-{n}.log").exists())  # fmt: skip
    argv = ["-m", "reportflow_dev.plain_loop", "--reports", str(reports), "--users", str(users),
            "--start", start.isoformat(), "--end", end.isoformat()]  # fmt: skip
    with pin or contextlib.nullcontext():
        process = WorkerProcess(_spawn(argv, settings, "", log, None, None), log)
    try:
        if group is not None:
            group.add([process.pid])  # before it launches Chromium, which inherits it
        await process.wait_ready(line=READY_LINE)
        delivered = len(smtp.deliveries)
        used = tree_cpu(process.pid)
        began = time.perf_counter()
        os.kill(process.pid, signal.SIGUSR1)
        async with asyncio.timeout(600):
            while len(smtp.deliveries) < delivered + reports:
                if not process.alive:
                    raise RuntimeError(
                        f"the plain loop exited with {process.process.returncode} before its "
                        f"last email; {log} ends with:\n{process.log_tail()}"
                    )
                await asyncio.sleep(0.02)
        wall = time.perf_counter() - began
        used = tree_cpu(process.pid) - used
        try:
            code = await asyncio.to_thread(process.process.wait, 60)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            raise RuntimeError(f"the plain loop ended with {code}; {log}:\n{process.log_tail()}")
        return PlainRun(reports / wall, used / wall)
    finally:
        await asyncio.to_thread(process.stop)


def p2_against_plain_loop(
    rate: float,
    worker_cpu: float,
    plain: tuple[PlainRun, PlainRun],
    layout: str,
) -> Figure:
    """reportflow's end-to-end rate (with the worker's CPU share during it) against
    the plain loop's, the mean of one batch just before and one just after."""
    before, after = plain
    baseline = (before.reports_per_s + after.reports_per_s) / 2
    # CPU seconds a report took: the worker and its Chromium, the plain loop and its.
    worker_per_report = worker_cpu / rate
    plain_per_report = sum(r.cpu / r.reports_per_s for r in plain) / 2
    return Figure(
        "P2",
        "reports/s end to end vs the same work in a plain loop",
        f"{rate:.2f}/s",
        f"{baseline:.2f}/s plain asyncio loop, no Temporal ({before.reports_per_s:.2f} before, "
        f"{after.reports_per_s:.2f} after); CPU a report {plain_per_report:.2f} s, "
        f"the worker's {worker_per_report:.2f} s; {layout}",
        rate / baseline,
        ">= 0.95",
        rate / baseline >= 0.95,
        {
            "reports_per_s": rate,
            "plain_reports_per_s": baseline,
            "plain_before": before.reports_per_s,
            "plain_after": after.reports_per_s,
            "plain_cpu_before": before.cpu,
            "plain_cpu_after": after.cpu,
            "plain_cpu_s_per_report": plain_per_report,
            "worker_cpu_s_per_report": worker_per_report,
        },
    )


if __name__ == "__main__":
    main()
