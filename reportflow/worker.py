"""The worker process: builds the dependencies once, runs the Temporal worker,
drains on SIGTERM/SIGINT.

On a signal the worker stops polling and gives running activities
`WORKER_GRACE_SECONDS` to finish (the SDK's default grace is zero, which would
cancel them at once); whatever is still running then is retried on another worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from reportflow.activities.report import ReportActivities
from reportflow.config import Settings, get_settings, require_secrets
from reportflow.db import create_engine, create_schema
from reportflow.logs import setup_logging
from reportflow.mailer import Mailer
from reportflow.render import Browser, find_chromium
from reportflow.store import ReportStore
from reportflow.temporal import connect, metrics_runtime
from reportflow.workflows.generate_report import GenerateReport

log = logging.getLogger(__name__)


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    client: Client | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run until `stop` is set (or SIGTERM/SIGINT when `stop` is not given)."""
    if client is None:
        runtime = (
            metrics_runtime(settings.worker_metrics_bind) if settings.worker_metrics_bind else None
        )
        client = await connect(settings, runtime=runtime)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    browser = Browser(
        find_chromium(settings.chromium_executable), timeout_seconds=settings.render_timeout_seconds
    )
    activities = ReportActivities(
        engine=engine,
        browser=browser,
        store=ReportStore(settings.report_store_path),
        mailer=Mailer.from_settings(settings),
    )
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[GenerateReport],
        activities=activities.all,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_grace_seconds),
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        # After a worker dies, its runs' next workflow task waits this long on the
        # dead worker's sticky queue before any worker may take it (SDK default
        # 10 s). Report histories are short, so a replay elsewhere costs little.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=5),
    )
    try:
        await browser.ensure_started()
        async with worker:
            log.info("worker polling task queue %r", settings.task_queue)
            if ready is not None:
                ready.set()
            await stop.wait()
            log.info(
                "draining: waiting up to %ss for running activities", settings.worker_grace_seconds
            )
    finally:
        await browser.close()
        await engine.dispose()
    log.info("worker stopped")


def main() -> None:
    setup_logging()
    settings = get_settings()
    require_secrets(settings, "worker")
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
