"""The activities of GenerateReport, as methods of one class given its dependencies.

`worker.py` builds the database engine, the long-lived browser, the mailer and
the report store once and hands them in here. Each method is safe to run twice:
query only reads, render overwrites the same key, email consults its ledger,
cleanup deletes what may or may not be there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from reportflow import tracing
from reportflow.activities.email import send_report_email
from reportflow.activities.query import aggregate
from reportflow.mailer import Mailer
from reportflow.models import (
    CleanupInput,
    EmailInput,
    EmailResult,
    QueryInput,
    RenderInput,
    RenderResult,
    ReportData,
)
from reportflow.render import Browser, count_pages, render_html
from reportflow.store import ReportStore, pdf_key

log = logging.getLogger(__name__)


class ReportActivities:
    def __init__(
        self, *, engine: AsyncEngine, browser: Browser, store: ReportStore, mailer: Mailer
    ) -> None:
        self.engine = engine
        self.browser = browser
        self.store = store
        self.mailer = mailer

    @activity.defn(name="query")
    async def query(self, input: QueryInput) -> ReportData:
        # Shielded: a timed-out attempt lets its statement finish instead of
        # abandoning it mid-read, which leaves SQLite's lock held for ~30 s and
        # stalls every other report (found by `reportflow chaos`, database-down).
        data = await asyncio.shield(self._aggregate(input))
        log.info(
            "aggregated %d transactions",
            data.transaction_count,
            extra={"report_id": input.report_id},
        )
        return data

    async def _aggregate(self, input: QueryInput) -> ReportData:
        with tracing.span("sql aggregate", {"db.system.name": self.engine.dialect.name}):
            return await aggregate(
                self.engine,
                report_id=input.report_id,
                user_id=input.user_id,
                start=date.fromisoformat(input.start),
                end=date.fromisoformat(input.end),
            )

    @activity.defn(name="render")
    async def render(self, input: RenderInput) -> RenderResult:
        report_id = input.data.report_id
        activity.heartbeat("rendering html")
        html = render_html(input.data)
        with tracing.span("chromium print") as span:
            pdf = await self.browser.pdf(html, heartbeat=lambda: activity.heartbeat("printing pdf"))
            span.set_attribute("reportflow.pdf_bytes", len(pdf))
        pages = await asyncio.to_thread(count_pages, pdf)
        key = pdf_key(report_id)
        await self.store.put(key, pdf)
        log.info("rendered %d pages, %d bytes", pages, len(pdf), extra={"report_id": report_id})
        return RenderResult(key=key, pages=pages, bytes=len(pdf))

    @activity.defn(name="send_email")
    async def send_email(self, input: EmailInput) -> EmailResult:
        # Shielded: a send that outlives its attempt's timeout still finishes and
        # writes its delivery record, so the next attempt finds it and does not
        # send again. (Cancellation reaches this step only through a timeout:
        # it does not heartbeat, so a cancelled report's started email completes.)
        return await asyncio.shield(
            send_report_email(
                engine=self.engine,
                mailer=self.mailer,
                store=self.store,
                data=input,
                run_id=activity.info().workflow_run_id or "",
            )
        )

    @activity.defn(name="cleanup")
    async def cleanup(self, input: CleanupInput) -> None:
        removed = await self.store.delete(input.pdf_key or pdf_key(input.report_id))
        log.info("cleaned up (pdf removed: %s)", removed, extra={"report_id": input.report_id})

    @property
    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [self.query, self.render, self.send_email, self.cleanup]
