"""The worker process: builds the dependencies once, runs the Temporal worker,
drains on SIGTERM/SIGINT.

On a signal the worker stops polling and gives running activities
`WORKER_GRACE_SECONDS` to finish (the SDK's default grace is zero, which would
cancel them at once); whatever is still running then is retried on another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from reportflow.activities.cancel import request_cancel
from reportflow.activities.email_file import EmailFiles
from reportflow.activities.kind import read_only_engine
from reportflow.activities.report import ReportActivities
from reportflow.activities.schedule import ScheduleActivities
from reportflow.activities.slots import SlotActivities
from reportflow.activities.webhook import WebhookActivities
from reportflow.core import tracing
from reportflow.core.browser import Browser, find_chromium
from reportflow.core.config import Settings, get_settings, require_secrets
from reportflow.core.db import create_engine, ensure_schema
from reportflow.core.logs import setup_logging
from reportflow.core.mailer import Mailer
from reportflow.core.store import open_store
from reportflow.core.temporal import connect, metrics_runtime, with_codec
from reportflow.core.workflow_runner import ContextFreeRunner
from reportflow.kinds import KindRegistry, load_kinds
from reportflow.models import email_queue
from reportflow.service import retention
from reportflow.workflows.build import workflows_build_id
from reportflow.workflows.deliver_webhooks import DeliverWebhooks
from reportflow.workflows.expire_reports import ExpireReports
from reportflow.workflows.generate_report import GenerateReport
from reportflow.workflows.scheduled_report import ScheduledReport

log = logging.getLogger(__name__)


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """Worker Versioning, on outside dev and test (WORKER_VERSIONING).

    Workflows are pinned: a run finishes on the build that started it, so a change
    to GenerateReport ships as a new build, never as a patch, and never replays an
    older run's history. New runs go to the deployment's current version
    (`reportflow deploy promote`, or `temporal worker deployment set-current-version`).
    """
    if not settings.versioned_worker:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=settings.worker_deployment_name,
            build_id=settings.worker_build_id or workflows_build_id(),
        ),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    client: Client | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run until `stop` is set (or SIGTERM/SIGINT when `stop` is not given)."""
    versioning = deployment_config(settings)
    # First: a kind that is wrong stops the worker here, naming its module.
    kinds = load_kinds(settings.report_kinds)
    if client is None:
        runtime = (
            metrics_runtime(settings.worker_metrics_bind) if settings.worker_metrics_bind else None
        )
        client = await connect(settings, runtime=runtime)
    # Whichever client it is given, the worker reads payloads with its own keyring
    # and, outside `reportflow dev`, refuses starts and signals written in clear.
    refusing = settings.refuses_clear_payloads
    client = with_codec(client, settings, mark_decrypted=refusing)
    async with report_activities(settings, kinds) as activities:
        engine = activities.engine
        hooks = WebhookActivities(
            engine=engine,
            allowed_hosts=settings.webhook_allowed,
            timeout=settings.webhook_timeout_seconds,
        )
        slots = SlotActivities(engine=engine, per_user=settings.max_running_reports_per_user)
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[GenerateReport, ExpireReports, ScheduledReport, DeliverWebhooks],
            workflow_runner=ContextFreeRunner(client.data_converter, refuse_clear=refusing),
            activities=[
                *activities.all,
                ScheduleActivities(settings, kinds).start_scheduled_report,
                hooks.webhook_targets,
                hooks.deliver_webhook,
                slots.acquire_slot,
                slots.release_slot,
                request_cancel,
            ],
            graceful_shutdown_timeout=timedelta(seconds=settings.worker_grace_seconds),
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            # After a worker dies, its runs' next workflow task waits this long on the
            # dead worker's sticky queue before any worker may take it (SDK default
            # 10 s). Report histories are short, so a replay elsewhere costs little.
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=5),
            deployment_config=versioning,
        )
        # The email step's own queue, on the same processes: the server hands out at
        # most EMAIL_RATE_PER_SECOND of its tasks a second, whatever the worker count.
        email_worker = Worker(
            client,
            task_queue=email_queue(settings.task_queue),
            activities=[activities.send_email],
            graceful_shutdown_timeout=timedelta(seconds=settings.worker_grace_seconds),
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            max_task_queue_activities_per_second=settings.email_rate_per_second,
        )
        await activities.browser.ensure_started()
        await retention.ensure_schedule(client, settings.task_queue)
        async with worker, email_worker:
            log.info("worker polling task queue %r", settings.task_queue)
            if ready is not None:
                ready.set()
            await stop.wait()
            log.info(
                "draining: waiting up to %ss for running activities", settings.worker_grace_seconds
            )
    log.info("worker stopped")


@contextlib.asynccontextmanager
async def report_activities(
    settings: Settings, kinds: KindRegistry
) -> AsyncIterator[ReportActivities]:
    """The report activities with what a worker gives them (the database engine, one
    Chromium behind its walls under SCHED_BATCH, the store, the mailer), closed at
    the end. The bench's plain loop (reportflow_dev/plain_loop.py) gets them here
    too, so it does a report's work exactly as a worker does, without Temporal."""
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    await ensure_schema(engine, migrate=settings.is_dev)
    reporting = read_only_engine(settings.report_kinds_database_url or settings.database_url)
    browser = Browser(
        find_chromium(settings.chromium_executable),
        timeout_seconds=settings.render_timeout_seconds,
        max_concurrent=settings.render_concurrency,
        require_sandbox=settings.chromium_sandbox_required,
        no_sandbox=settings.chromium_no_sandbox,
        nice=settings.chromium_nice,
    )
    try:
        yield ReportActivities(
            engine=engine,
            browser=browser,
            store=open_store(settings.report_store_url),
            mailer=Mailer.from_settings(settings),
            retention_days=settings.report_retention_days,
            kinds=kinds,
            reporting=reporting,
            email=EmailFiles(
                attach_max_bytes=settings.email_attach_max_bytes,
                link_days=settings.email_link_days,
                public_url=settings.public_url,
                secret=settings.secret_key,
            ),
        )
    finally:
        await browser.close()
        await engine.dispose()
        await reporting.dispose()


def main() -> None:
    setup_logging()
    tracing.configure("reportflow-worker")
    settings = get_settings()
    require_secrets(settings, "worker")
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
