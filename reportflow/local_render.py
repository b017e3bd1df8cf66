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

from reportflow.activities.query import aggregate
from reportflow.core.browser import Browser, count_pages, find_chromium
from reportflow.core.config import Settings
from reportflow.core.db import create_engine
from reportflow.report import render_html
from reportflow.service.reports import report_id_for


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
