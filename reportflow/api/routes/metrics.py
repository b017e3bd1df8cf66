"""`/metrics`: queue depth and report counts in Prometheus text format.

Read from Temporal at scrape time, so every API replica reports the same
truth. Durations (report and per stage) and the SDK's own metrics
(schedule-to-start latency, slots) are observed where they happen: on each
worker's metrics endpoint (WORKER_METRICS_PORT).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from reportflow.api.deps import SettingsDep, TemporalDep
from reportflow.api.schemas import COMMON_ERRORS
from reportflow.ops import queue_stats

router = APIRouter(tags=["metrics"], responses={503: COMMON_ERRORS[503]})


@router.get("/metrics", response_class=Response)
async def metrics(client: TemporalDep, settings: SettingsDep) -> Response:
    """Prometheus text: backlog, oldest backlog age, pollers, reports by status."""
    stats = await queue_stats(client, settings.task_queue)
    registry = CollectorRegistry()
    labels = {"task_queue": settings.task_queue}
    Gauge(
        "reportflow_queue_backlog",
        "Tasks waiting in the task queue (workflow + activity)",
        ["task_queue"],
        registry=registry,
    ).labels(**labels).set(stats.backlog_count)
    Gauge(
        "reportflow_queue_oldest_backlog_age_seconds",
        "Age of the oldest waiting task",
        ["task_queue"],
        registry=registry,
    ).labels(**labels).set(stats.oldest_backlog_age_seconds)
    pollers = Gauge(
        "reportflow_queue_pollers",
        "Workers polling the task queue",
        ["task_queue", "kind"],
        registry=registry,
    )
    for kind, count in stats.pollers.items():
        pollers.labels(task_queue=settings.task_queue, kind=kind).set(count)
    reports = Gauge(
        "reportflow_reports",
        "Reports by status (latest run of each)",
        ["status"],
        registry=registry,
    )
    for word, count in stats.reports_by_status.items():
        reports.labels(status=word).set(count)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
