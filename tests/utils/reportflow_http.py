"""Following reports through the HTTP API in tests."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
from pypdf import PdfReader
from temporalio.client import Client

from tests.utils.wait import wait_until


class HasHeaders(Protocol):
    @property
    def headers(self) -> dict[str, str]: ...


class Bearer:
    """A caller known only by its token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}


FINAL = {"completed", "failed", "cancelled"}


def last_90_days() -> tuple[date, date]:
    end = datetime.now(UTC).date()
    return end - timedelta(days=89), end


async def wait_status(
    http: httpx.AsyncClient,
    user: HasHeaders,
    report_id: str,
    statuses: set[str],
    timeout: float = 60,
) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        response = await http.get(f"/reports/{report_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        doc: dict[str, Any] = response.json()
        return doc

    return await wait_until(
        probe, lambda d: d["status"] in statuses, timeout=timeout, what=f"{report_id} {statuses}"
    )


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


async def latest_run(client: Client, report_id: str) -> str:
    """The run ID of the report's latest run, from describe (not from the eventually
    consistent visibility store): unchanged means no newer run was started."""
    return (await client.get_workflow_handle(report_id).describe()).run_id


@contextlib.contextmanager
def render_held(report_store: Path, report_id: str) -> Iterator[None]:
    """Keep the report's render step failing (and retrying) while inside: a plain
    file sits where its run's PDF folder goes, so the PDF cannot be written.
    SMTP can accept mail meanwhile, so a test that cancels can fail."""
    blocker = report_store / report_id
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"in the way")
    try:
        yield
    finally:
        blocker.unlink(missing_ok=True)


def report_id_for(user_id: str) -> str:
    """The report ID of a request with no body (the last 90 days)."""
    start, end = last_90_days()
    return f"report-{user_id}-{start}-{end}"


async def download_pdf(http: httpx.AsyncClient, who: HasHeaders, report_id: str) -> bytes:
    """GET /reports/{id}/pdf answers 303 to a signed URL, which serves the PDF to a
    client that sends no token at all (a plain link in a page or an email)."""
    redirect = await http.get(f"/reports/{report_id}/pdf", headers=who.headers)
    assert redirect.status_code == 303, redirect.text
    assert redirect.headers["Cache-Control"] == "no-store"
    location = redirect.headers["Location"]
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=30) as anonymous:
        pdf = await anonymous.get(location)
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    return pdf.content
