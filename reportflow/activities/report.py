"""The activities of GenerateReport, as methods of one class given its dependencies.

`worker.py` builds the database engine, the long-lived browser, the mailer and
the report store once and hands them in here. Each method is safe to run twice:
query only reads, render overwrites its run's key, email claims before it sends,
cleanup and expiry delete what may or may not be there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from reportflow.activities.email import Limits, send_report_email, sent_in_earlier_attempt
from reportflow.activities.email_file import EmailFiles
from reportflow.activities.kind import (
    INLINE_DATA_BYTES,
    data_of,
    encode_data,
    kind_of,
    query_context,
    template_html,
    user_name,
)
from reportflow.core import tracing
from reportflow.core.background import finish_within, heartbeating
from reportflow.core.browser import Browser, count_pages
from reportflow.core.mailer import Mailer
from reportflow.core.store import ReportStore, file_key, pdf_key
from reportflow.kinds import KindRegistry, load_kinds
from reportflow.models import (
    CleanupInput,
    EmailInput,
    EmailResult,
    ExpireInput,
    ExpireResult,
    KindData,
    KindQueryInput,
    KindRenderInput,
    QueryInput,
    RenderInput,
    RenderResult,
    ReportData,
)
from reportflow.report import render_html
from reportflow.report.query import aggregate

log = logging.getLogger(__name__)


def _attempt_seconds() -> float:
    timeout = activity.info().start_to_close_timeout
    return timeout.total_seconds() if timeout else 60.0


def _beat(detail: str) -> Callable[[], None]:
    """The step's heartbeat, silent for the first quarter of its heartbeat timeout: a
    render that waits its turn and prints within that costs Temporal no heartbeat
    (an action each), and the first one still comes well before the timeout. (Later
    ones the SDK itself holds to one per 80% of the timeout.)"""
    timeout = activity.info().heartbeat_timeout
    quiet_until = time.monotonic() + (timeout.total_seconds() / 4 if timeout else 0.0)

    def beat() -> None:
        if time.monotonic() >= quiet_until:
            activity.heartbeat(detail)

    return beat


def _run_id() -> str:
    return activity.info().workflow_run_id or ""


class ReportActivities:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        browser: Browser,
        store: ReportStore,
        mailer: Mailer,
        retention_days: float = 30.0,
        kinds: KindRegistry | None = None,
        reporting: AsyncEngine | None = None,
        email: EmailFiles | None = None,
    ) -> None:
        self.engine = engine
        self.browser = browser
        self.store = store
        self.mailer = mailer
        self.retention_days = retention_days
        self.kinds = kinds if kinds is not None else load_kinds()
        # Kinds' queries read here (REPORT_KINDS_DATABASE_URL), never writing.
        self.reporting = reporting or engine
        self.email_files = email or EmailFiles()

    @activity.defn(name="query")
    async def query(self, input: QueryInput) -> ReportData:
        # Run to the end even if the attempt is cancelled: a statement abandoned
        # mid-read leaves SQLite's lock held for ~30 s and stalls every other
        # report (found by `reportflow chaos`, database-down). The database bounds
        # its statements itself (SQLite's busy timeout, PostgreSQL's command timeout).
        data = await finish_within(self._aggregate(input), None)
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
        """The report's HTML, printed to PDF by the browser, put in the store."""
        return await self.render_report(input.data, _run_id(), heartbeat=_beat("printing pdf"))

    async def render_report(
        self, data: ReportData, run_id: str, *, heartbeat: Callable[[], None] | None = None
    ) -> RenderResult:
        """The render step's work, with the run given rather than read from an
        activity's context: the bench's plain loop does exactly this, no Temporal."""
        pdf = await self.browser.pdf(render_html(data), heartbeat=heartbeat)
        return await self._store_pdf(data.report_id, run_id, pdf)

    async def _store_pdf(self, report_id: str, run_id: str, pdf: bytes) -> RenderResult:
        """Put the PDF under this run's key (overwriting an earlier attempt's)."""
        pages = await asyncio.to_thread(count_pages, pdf)
        key = pdf_key(report_id, run_id)
        try:
            # A file store writes in a thread that neither a cancellation nor a
            # deadline can stop: wait for it, then remove what it wrote, so a
            # cancelled run leaves no file.
            await finish_within(self.store.put(key, pdf), None)
        except asyncio.CancelledError:
            await asyncio.shield(self.store.delete(key))
            raise
        log.info("rendered %d pages, %d bytes", pages, len(pdf), extra={"report_id": report_id})
        return RenderResult(key=key, pages=pages, bytes=len(pdf))

    @activity.defn(name="query_kind")
    async def query_kind(self, input: KindQueryInput) -> KindData:
        """A kind's query on the read-only connection; a large result by the store."""
        kind = kind_of(self.kinds, input.kind)
        params = kind.parse(json.loads(input.params or "{}"))
        async with self.engine.connect() as app:
            name = await user_name(app, input.user_id)
        attributes = {"db.system.name": self.reporting.dialect.name, "reportflow.kind": kind.name}
        with tracing.span("kind query", attributes):
            async with query_context(
                self.reporting, user_id=input.user_id, report_id=input.report_id
            ) as ctx:
                data = await finish_within(kind.query(ctx, params), None)
        text = encode_data(data)
        size = len(text.encode())
        log.info("%s query returned %d bytes", kind.name, size,
                 extra={"report_id": input.report_id, "kind": kind.name})  # fmt: skip
        if size <= INLINE_DATA_BYTES:
            return KindData(kind=kind.name, user_name=name, json=text, bytes=size)
        key = file_key(input.report_id, _run_id(), "data.json")
        await self.store.put(key, text.encode())
        return KindData(kind=kind.name, user_name=name, key=key, bytes=size)

    @activity.defn(name="render_kind")
    async def render_kind(self, input: KindRenderInput) -> RenderResult:
        """A kind's file in the store: printed from its template, built by `render`,
        or streamed from SQL by `export`."""
        kind = kind_of(self.kinds, input.kind)
        params = kind.parse(json.loads(input.params or "{}"))
        key = file_key(input.report_id, _run_id(), kind.format)
        extra = {"report_id": input.report_id, "kind": kind.name}
        if kind.export is not None:
            export = kind.export
            async with (
                heartbeating(_beat("exporting")),
                query_context(
                    self.reporting, user_id=input.user_id, report_id=input.report_id
                ) as ctx,
            ):
                size = await finish_within(self.store.put_stream(key, export(ctx, params)), None)
            log.info("%s exported %d bytes", kind.name, size, extra=extra)
            return RenderResult(key=key, pages=0, bytes=size, format=kind.format,
                                content_type=kind.content_type)  # fmt: skip
        stored = input.data
        data = data_of(stored, await self.store.get(stored.key) if stored.key else None)
        if kind.template is not None:
            user = {"id": input.user_id, "name": stored.user_name}
            html = template_html(kind, data=data, params=params, user=user)
            pdf = await self.browser.pdf(html, heartbeat=_beat("printing"))
            return await self._store_pdf(input.report_id, _run_id(), pdf)
        assert kind.render is not None
        body = await asyncio.to_thread(kind.render, data, params)
        await finish_within(self.store.put(key, body), None)
        log.info("%s rendered %d bytes", kind.name, len(body), extra=extra)
        return RenderResult(key=key, pages=0, bytes=len(body), format=kind.format,
                            content_type=kind.content_type)  # fmt: skip

    @activity.defn(name="send_email")
    async def send_email(self, input: EmailInput) -> EmailResult:
        # Run to the end even if the attempt is cancelled (a timeout, a worker
        # shutting down): the send finishes inside its own deadline and records
        # itself, so the next attempt finds the record instead of a stale claim.
        # No outer deadline: cutting a ledger statement halfway could leak the
        # connection with SQLite's write lock held (found by `reportflow chaos`).
        # Its one heartbeat, if any, is the result, when the ledger is slow to record
        # the server's 250 (see email.py).
        info = activity.info()
        return await finish_within(
            self.email_report(
                input,
                _run_id(),
                Limits.for_attempt(_attempt_seconds()),
                earlier=sent_in_earlier_attempt(info.heartbeat_details, input.report_id),
                heartbeat=activity.heartbeat,
            ),
            None,
        )

    async def email_report(
        self,
        input: EmailInput,
        run_id: str,
        limits: Limits,
        *,
        earlier: EmailResult | None = None,
        heartbeat: Callable[[dict[str, Any]], None] | None = None,
    ) -> EmailResult:
        """The email step's work (claim, send, record), with the run and limits given
        rather than read from an activity's context: the bench's plain loop does this."""
        if input.kind in self.kinds and not input.title:
            input.title = self.kinds[input.kind].title
        return await send_report_email(
            engine=self.engine,
            mailer=self.mailer,
            store=self.store,
            data=input,
            run_id=run_id,
            limits=limits,
            earlier=earlier,
            heartbeat=heartbeat,
            files=self.email_files,
        )

    @activity.defn(name="cleanup")
    async def cleanup(self, input: CleanupInput) -> None:
        key = input.pdf_key or pdf_key(input.report_id, _run_id())
        removed = await self.store.delete(key)
        log.info("cleaned up (pdf removed: %s)", removed, extra={"report_id": input.report_id})

    @activity.defn(name="expire_reports")
    async def expire_reports(self, input: ExpireInput) -> ExpireResult:
        days = self.retention_days if input.retention_days is None else input.retention_days
        cutoff = datetime.now(UTC) - timedelta(days=days)
        removed = await self.store.delete_older_than(cutoff)
        log.info("expired %d PDFs older than %s days", removed, days)
        return ExpireResult(removed=removed)

    @property
    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        return [
            self.query,
            self.render,
            self.query_kind,
            self.render_kind,
            self.send_email,
            self.cleanup,
            self.expire_reports,
        ]
