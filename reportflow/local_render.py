"""`reportflow render`: one report rendered on this machine, no Temporal involved.

The same SQL aggregation and the same template and Chromium settings as the
worker's query and render steps, so what it writes is what the email carries:
for template work, and the raw render figure of `reportflow bench`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from reportflow.activities.kind import query_context, read_only_engine, template_html, user_name
from reportflow.core.browser import Browser, count_pages, find_chromium
from reportflow.core.config import Settings
from reportflow.core.db import create_engine
from reportflow.kinds import load_kinds
from reportflow.report import render_html
from reportflow.report.query import aggregate
from reportflow.service.reports import KindRequest, report_id_for


@dataclass(frozen=True)
class LocalRender:
    report_id: str
    html_bytes: int
    pdf_bytes: int | None
    pages: int | None
    seconds: float


async def render_locally(
    settings: Settings,
    *,
    user_id: str,
    start: date,
    end: date,
    html_path: Path | None = None,
    pdf_path: Path | None = None,
) -> LocalRender:
    """Aggregate the user's range, then write its HTML and/or PDF.

    Raises the query step's ApplicationError (unknown user, no email address,
    bad range) with its message."""
    began = time.perf_counter()
    report_id = report_id_for(user_id, start, end)
    engine = create_engine(settings.database_url)
    try:
        data = await aggregate(engine, report_id=report_id, user_id=user_id, start=start, end=end)
    finally:
        await engine.dispose()
    html = render_html(data)
    if html_path is not None:
        await asyncio.to_thread(html_path.write_text, html, encoding="utf-8")
    pdf: bytes | None = None
    if pdf_path is not None:
        browser = Browser(
            find_chromium(settings.chromium_executable),
            timeout_seconds=settings.render_timeout_seconds,
        )
        try:
            pdf = await browser.pdf(html)
        finally:
            await browser.close()
        await asyncio.to_thread(pdf_path.write_bytes, pdf)
    return LocalRender(
        report_id=report_id,
        html_bytes=len(html.encode()),
        pdf_bytes=len(pdf) if pdf is not None else None,
        pages=await asyncio.to_thread(count_pages, pdf) if pdf is not None else None,
        seconds=time.perf_counter() - began,
    )


async def render_kind_locally(
    settings: Settings,
    *,
    kind_name: str,
    values: dict[str, Any],
    user_id: str,
    html_path: Path | None = None,
    output: Path | None = None,
) -> LocalRender:
    """Any kind's query and file on this machine, as the worker makes them (no Temporal).

    Raises KeyError for a kind not registered, pydantic's ValidationError for bad
    parameters, and what the kind's query raises."""
    began = time.perf_counter()
    kind = load_kinds(settings.report_kinds)[kind_name]
    params = kind.parse(values)
    report_id = KindRequest.of(kind, params).report_id(user_id)
    engine = read_only_engine(settings.report_kinds_database_url or settings.database_url)
    app = create_engine(settings.database_url)
    html: str | None = None
    body: bytes | None = None
    try:
        async with app.connect() as conn:
            name = await user_name(conn, user_id)
        async with query_context(engine, user_id=user_id, report_id=report_id) as ctx:
            if kind.export is not None:
                chunks = [chunk async for chunk in kind.export(ctx, params)]
                body = b"".join(chunks)
            data = None if kind.export is not None else await kind.query(ctx, params)
    finally:
        await engine.dispose()
        await app.dispose()
    if kind.template is not None:
        html = template_html(kind, data=data, params=params, user={"id": user_id, "name": name})
        if html_path is not None:
            await asyncio.to_thread(html_path.write_text, html, encoding="utf-8")
        if output is not None:
            browser = Browser(
                find_chromium(settings.chromium_executable),
                timeout_seconds=settings.render_timeout_seconds,
            )
            try:
                body = await browser.pdf(html)
            finally:
                await browser.close()
    elif kind.render is not None:
        body = kind.render(data, params)
    if output is not None and body is not None:
        await asyncio.to_thread(output.write_bytes, body)
    is_pdf = body is not None and kind.format == "pdf"
    return LocalRender(
        report_id=report_id,
        html_bytes=len(html.encode()) if html else 0,
        pdf_bytes=len(body) if body is not None else None,
        pages=await asyncio.to_thread(count_pages, body) if is_pdf and body else None,
        seconds=time.perf_counter() - began,
    )
