"""Following reports through the HTTP API in tests."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
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


async def count_runs(client: Client, report_id: str) -> int:
    """How many runs Temporal has of this report (visibility; closed runs count)."""
    return (await client.count_workflows(f"WorkflowId = '{report_id}'")).count


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
