"""`/metrics`: queue depth and report counts in Prometheus text format, for the
main task queue and the email queue (label `task_queue`).

Read from Temporal, so every API replica reports the same truth, but at most
once per METRICS_CACHE_SECONDS in each process however many scrapers ask.
Scrapers send `Authorization: Bearer <METRICS_TOKEN>` (or an admin token);
with no METRICS_TOKEN the endpoint is open in dev and test only. Durations
(report and per stage) and the SDK's own metrics (schedule-to-start latency,
slots) are observed where they happen: on each worker's metrics endpoint
(WORKER_METRICS_BIND).
"""

from __future__ import annotations

import asyncio
import hmac
import time

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from temporalio.client import Client

from reportflow.api.deps import EngineDep, SettingsDep, TemporalDep
from reportflow.api.schemas import COMMON_ERRORS, problem
from reportflow.api.token_cache import TokenCache
from reportflow.core.config import Settings
from reportflow.service.queue import queue_stats

router = APIRouter(
    tags=["metrics"],
    responses={503: COMMON_ERRORS[503], 401: problem("METRICS_TOKEN or an admin token needed")},
)


class MetricsCache:
    """The last exposition, computed by one caller at a time and kept `ttl` seconds."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._lock = asyncio.Lock()
        self._text: bytes | None = None
        self._until = 0.0

    async def get(self, client: Client, settings: Settings) -> bytes:
        async with self._lock:
            if self._text is None or time.monotonic() >= self._until:
                self._text = await _exposition(client, settings)
                self._until = time.monotonic() + self.ttl
            return self._text


async def _authorize(request: Request, settings: SettingsDep, engine: EngineDep) -> None:
    # The header is read here, not through the bearer security scheme: the
    # schema would then say /metrics always needs a token, and in dev it does not.
    if settings.metrics_token is None and settings.is_dev:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if settings.metrics_token and hmac.compare_digest(
        token.encode(), settings.metrics_token.encode()
    ):
        return
    if token and len(token) <= 200:
        cache: TokenCache = request.app.state.token_cache
        caller = await cache.lookup(engine, token)
        if caller is not None and caller.is_admin:
            return
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="send `Authorization: Bearer <METRICS_TOKEN>` (the API's METRICS_TOKEN "
        "setting) or an admin token (`reportflow token create --admin`)",
        headers={"WWW-Authenticate": "Bearer"},
    )


@router.get("/metrics", response_class=Response, dependencies=[Depends(_authorize)])
async def metrics(request: Request, client: TemporalDep, settings: SettingsDep) -> Response:
    """Prometheus text: backlog, oldest backlog age, pollers, reports by status."""
    cache: MetricsCache = request.app.state.metrics_cache
    return Response(await cache.get(client, settings), media_type=CONTENT_TYPE_LATEST)


async def _exposition(client: Client, settings: Settings) -> bytes:
    stats = await queue_stats(client, settings.task_queue)
    registry = CollectorRegistry()
    backlog = Gauge(
        "reportflow_queue_backlog",
        "Tasks waiting in the task queue (workflow + activity)",
        ["task_queue"],
        registry=registry,
    )
    oldest = Gauge(
        "reportflow_queue_oldest_backlog_age_seconds",
        "Age of the oldest waiting task",
        ["task_queue"],
        registry=registry,
    )
    pollers = Gauge(
        "reportflow_queue_pollers",
        "Workers polling the task queue",
        ["task_queue", "kind"],
        registry=registry,
    )
    # The email queue beside the main one: held to EMAIL_RATE_PER_SECOND, it has
    # a backlog by design, and no workflow half (its `kind` is only "activity").
    for queue in (stats, stats.email_queue):
        backlog.labels(task_queue=queue.task_queue).set(queue.backlog_count)
        oldest.labels(task_queue=queue.task_queue).set(queue.oldest_backlog_age_seconds)
        for kind, count in queue.pollers.items():
            pollers.labels(task_queue=queue.task_queue, kind=kind).set(count)
    reports = Gauge(
        "reportflow_reports",
        "Reports by status (latest run of each)",
        ["status"],
        registry=registry,
    )
    for word, count in stats.reports_by_status.items():
        reports.labels(status=word).set(count)
    return generate_latest(registry)
