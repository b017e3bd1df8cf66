"""The email step's task queue, held to EMAIL_RATE_PER_SECOND, is visible next to
the main queue: in GET /admin/queue, in /metrics (label `task_queue`) and so in the
worker-missing alert (ops/prometheus/alerts.yml, tested by promtool in test_alerts)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from reportflow.core.db import create_engine, create_schema
from reportflow.core.tokens import create_token
from reportflow.models import email_queue
from tests.conftest import make_settings
from tests.utils.data import create_user, sample_transactions
from tests.utils.reportflow_http import Bearer, last_90_days
from tests.utils.smtp import SmtpServer
from tests.utils.stack import in_process_worker, serve_api
from tests.utils.wait import wait_until


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_a_rate_held_email_backlog_shows_in_admin_queue_and_metrics(
    tmp_path: Path, smtp: SmtpServer, database_url: str, temporal_client: Client
) -> None:
    # One email a minute: of three reports, at least two wait on the email queue.
    settings = make_settings(
        tmp_path,
        smtp.port,
        database_url=database_url,
        email_rate_per_second=1 / 60,
        metrics_cache_seconds=0.0,
    )
    emails = email_queue(settings.task_queue)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    start, _ = last_90_days()
    users = [
        Bearer(
            await create_token(
                engine,
                user_id=await create_user(
                    engine, transactions=sample_transactions(start, 10, rng_seed=i)
                ),
            )
        )
        for i in range(3)
    ]
    admin = Bearer(await create_token(engine, admin=True)).headers
    await engine.dispose()
    report_ids: list[str] = []

    async with (
        serve_api(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
        in_process_worker(settings, temporal_client),
    ):
        try:
            for user in users:
                created = await http.post("/reports", json={}, headers=user.headers)
                report_ids.append(created.json()["report_id"])

            def held(answer: httpx.Response) -> bool:
                doc: dict[str, Any] = answer.json()["email_queue"]
                return bool(doc["backlog_count"] >= 1 and doc["pollers"].get("activity", 0) >= 1)

            queue = await wait_until(
                lambda: http.get("/admin/queue", headers=admin),
                held,
                timeout=60,
                what="emails waiting their turn on the email queue",
            )
            metrics = (await http.get("/metrics", headers=admin)).text
        finally:
            for report_id in report_ids:  # they would wait minutes for their turn
                with contextlib.suppress(Exception):
                    await temporal_client.get_workflow_handle(report_id).terminate("test over")

    doc = queue.json()
    assert doc["task_queue"] == settings.task_queue  # the main queue's figures stay as they were
    assert set(doc["pollers"]) == {"workflow", "activity"}
    assert doc["email_queue"]["task_queue"] == emails
    assert set(doc["email_queue"]["pollers"]) == {"activity"}, "no workflow tasks go there"
    assert doc["email_queue"]["oldest_backlog_age_seconds"] >= 0

    backlog = samples(metrics, "reportflow_queue_backlog")
    assert backlog[(("task_queue", emails),)] >= 1
    assert (("task_queue", settings.task_queue),) in backlog
    pollers = samples(metrics, "reportflow_queue_pollers")
    assert pollers[(("kind", "activity"), ("task_queue", emails))] >= 1
    assert (("kind", "workflow"), ("task_queue", emails)) not in pollers
    assert pollers[(("kind", "workflow"), ("task_queue", settings.task_queue))] >= 1
    assert (("task_queue", emails),) in samples(
        metrics, "reportflow_queue_oldest_backlog_age_seconds"
    )
